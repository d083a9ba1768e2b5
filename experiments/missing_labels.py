"""Missing labels: the masked loss against the two usual workarounds, treating "?" as
"no" and dropping every example that has a "?", as the missing fraction grows.

Run:  python launch.py --experiment=missing_labels
      python launch.py --experiment=missing_labels --missing_fracs=0,0.5,0.9 --seeds=5
Time: 4.5 minutes with the defaults on a 2-core CPU (joint CNN width 32 depth 3,
      6000 training scenes, 12 epochs, 3 seeds, 5 fractions x 3 ways).
Finds: the masked loss wins at every fraction. Mean test AUC at p = 0.2/0.5/0.8/0.9:
      mask 0.852/0.830/0.762/0.672; '?' as "no" 0.823/0.754/0.675/0.612; dropping
      incomplete examples 0.790/0.589/0.501/none left (0.858 with all labels).
Writes: OUT_DIR/results.jsonl, OUT_DIR/summary.csv, OUT_DIR/missing_labels.{png,svg}.

All three ways train the joint network on the same images, seeds and epochs; only what
the training split's "?" cells become differs. Validation and test labels are the same
for all three. When dropping leaves fewer examples than a batch, the batch shrinks to
what is left; when it leaves none, that point has no result and the table says so.
"""
import dataclasses
import time

import numpy as np
from absl import flags

from experiments import cli
from mtl_jax.data.datasets import LABEL_HANDLING, check_data_config, load_dataset
from mtl_jax.errors import InputError
from mtl_jax.plots import plot_missing_labels
from mtl_jax.results import format_cell, summarize_arms, write_summary_and_plots
from mtl_jax.runs import RunConfig

flags.adopt_module_key_flags(cli)

NAME = "missing_labels"
MISSING_FRACS = flags.DEFINE_list(
    "missing_fracs", ["0", "0.2", "0.5", "0.8", "0.9"],
    "missing_labels: fractions of training labels hidden, each in [0, 1).")


def missing_fracs() -> list[float]:
  try:
    fracs = sorted({float(f) for f in MISSING_FRACS.value})
  except ValueError:
    raise InputError(f"--missing_fracs must be numbers; got {','.join(MISSING_FRACS.value)}")
  if not fracs or fracs[0] < 0 or fracs[-1] >= 1:
    raise InputError("--missing_fracs must list at least one fraction, each in [0, 1)")
  return fracs


def _complete_rows(data_config) -> int:
  return len(load_dataset(data_config).train.y)


def run_groups():
  """(missing_frac, handling) -> seed configs, or the reason there are none."""
  base_data, train = cli.data_config(), cli.train_config()
  check_data_config(base_data)
  groups, empty = {}, {}
  for frac in missing_fracs():
    for handling in LABEL_HANDLING:
      # With nothing missing the three ways are one run: the same config hash trains it once.
      data = dataclasses.replace(base_data, missing_frac=frac,
                                 label_handling=handling if frac > 0 else "mask")
      train_here = train
      if handling == "drop_incomplete" and frac > 0:
        rows = _complete_rows(data)
        if rows == 0:
          empty[frac, handling] = "no training example has all its labels"
          continue
        train_here = dataclasses.replace(train, batch_size=min(train.batch_size, rows))
      groups[frac, handling] = [RunConfig(NAME, "joint", seed, data, cli.encoder_spec(), train_here)
                                for seed in range(cli.SEEDS.value)]
  return groups, empty


def main(argv):
  del argv
  groups, empty = run_groups()
  out = cli.out_dir(NAME)
  start = time.perf_counter()
  print(f"{NAME}: {len(groups)} groups (missing fraction x handling) of {cli.SEEDS.value} seeds",
        flush=True)
  results_path, done = cli.train_pending(list(groups.values()), out)

  rows = []
  for (frac, handling), group in groups.items():
    records = [done[c.hash] for c in group]
    keys = dict(missing_frac=frac, label_handling=handling,
                train_examples=records[0]["train_examples"], train_labels=records[0]["train_labels"])
    rows += summarize_arms({"joint": records}, records[0]["task_names"], keys)
  for (frac, handling) in empty:
    rows.append(dict(missing_frac=frac, label_handling=handling, train_examples=0, train_labels=0,
                     split="test", metric="auc", task="mean", arm="joint", mean=np.nan, ci95=np.nan, n=0,
                     diverged=0))
  first = next(iter(groups.values()))[0]
  title = (f"{first.data.dataset}: joint {first.encoder.kind} width {first.encoder.width} "
           f"depth {first.encoder.depth}, {first.data.num_train or 'all'} train, {first.train.epochs} epochs, "
           f"{cli.SEEDS.value} seeds (95% CI)")
  written = write_summary_and_plots(out, NAME, rows, title, plot_missing_labels)

  cell = {(r["missing_frac"], r["label_handling"]): r for r in rows
          if r["split"] == "test" and r["metric"] == "auc" and r["task"] == "mean"}
  print(f"\nTest ROC-AUC, mean over tasks, mean ± 95% CI over {cli.SEEDS.value} seeds "
        "(training labels used in brackets):")
  print(f"{'missing':>8} " + " ".join(f"{h:>24}" for h in LABEL_HANDLING))
  for frac in missing_fracs():
    cells = []
    for handling in LABEL_HANDLING:
      r = cell[frac, handling]
      cells.append(f"{'none left':>24}" if r["n"] == 0 else
                   f"{format_cell(r)} [{r['train_labels']:>6}]".rjust(24))
    print(f"{frac:>8.2f} " + " ".join(cells))
  print(f"\nwrote {results_path}, {', '.join(written)} ({time.perf_counter() - start:.0f}s)")


if __name__ == "__main__":
  cli.run(main)
