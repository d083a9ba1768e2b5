"""Relatedness: joint vs separate networks as the tasks' shared low-level features give
way to private ones, for the note's claim that multi-task learning makes sense when
"the tasks ... benefit from similar processing" (shared low-level features).

Run:  python launch.py --experiment=relatedness
      python launch.py --experiment=relatedness --rhos=0,1 --related_tasks=16 --seeds=5
Time: 20 s on a 2-core CPU with the defaults (MLP width 32 depth 2, 8 tasks, 200
      training examples, 100 epochs, 5 seeds, 5 values of rho).
Finds: holds, with negative transfer below it: joint - separate mean test AUC is
      -0.023 / -0.025 / -0.019 / -0.006 / +0.013 at rho = 0 / 0.25 / 0.5 / 0.75 / 1.
Writes: OUT_DIR/results.jsonl, OUT_DIR/summary.csv, OUT_DIR/relatedness.{png,svg}.

The data is mtl_jax/data/related.py's: at rho = 1 every task's logit is a function
of the same random features of a shared input block, at rho = 0 of features of its
own private block, in between a mix with share rho of the variance from the shared
features. Joint and separate networks see the same data, seeds and epochs at each rho.
"""
import dataclasses
import time

from absl import flags

from experiments import cli
from mtl_jax.data.datasets import check_data_config
from mtl_jax.data.related import RelatedConfig
from mtl_jax.errors import InputError
from mtl_jax.plots import plot_relatedness
from mtl_jax.results import DIFF_ARM, format_cell, summarize_arms, write_summary_and_plots
from mtl_jax.runs import ARMS, RunConfig

flags.adopt_module_key_flags(cli)

NAME = "relatedness"
RHOS = flags.DEFINE_list(
    "rhos", ["0", "0.25", "0.5", "0.75", "1"],
    "relatedness: values of rho, the share of each task's logit variance that comes from "
    "features shared by all tasks, each in [0, 1].")
RELATED_TASKS = flags.DEFINE_integer(
    "related_tasks", 8, "relatedness: number of synthetic tasks.", lower_bound=1)
# Small data is where sharing can matter: with plenty, separate networks learn every
# task on their own.
DEFAULTS = dict(dataset="related", encoder="mlp", depth=2, num_train=200, num_val=200,
                num_test=4000, epochs=100, batch_size=32, seeds=5)


def rhos() -> list[float]:
  try:
    values = sorted({float(r) for r in RHOS.value})
  except ValueError:
    raise InputError(f"--rhos must be numbers; got {','.join(RHOS.value)}")
  if not values or values[0] < 0 or values[-1] > 1:
    raise InputError("--rhos must list at least one value, each in [0, 1]")
  return values


def run_groups() -> dict[tuple[float, str], list[RunConfig]]:
  base, train = cli.data_config(), cli.train_config()
  if base.dataset != "related":
    raise InputError(f"relatedness needs --dataset=related (tasks with a relatedness knob); "
                     f"got --dataset={base.dataset}")
  groups = {}
  for rho in rhos():
    data = dataclasses.replace(base, relatedness=RelatedConfig(rho=rho, num_tasks=RELATED_TASKS.value))
    check_data_config(data)
    for arm in ARMS:
      groups[rho, arm] = [RunConfig(NAME, arm, seed, data, cli.encoder_spec(), train)
                          for seed in range(cli.SEEDS.value)]
  return groups


def main(argv):
  with cli.flag_defaults(DEFAULTS):
    _main(argv)


def _main(argv):
  del argv
  groups = run_groups()
  out = cli.out_dir(NAME)
  start = time.perf_counter()
  print(f"{NAME}: {len(groups)} groups (rho x arm) of {cli.SEEDS.value} seeds", flush=True)
  results_path, done = cli.train_pending(list(groups.values()), out)

  rows = []
  for rho in rhos():
    by_arm = {arm: [done[c.hash] for c in groups[rho, arm]] for arm in ARMS}
    rows += summarize_arms(by_arm, by_arm["joint"][0]["task_names"], dict(rho=rho))
  first = next(iter(groups.values()))[0]
  title = (f"{first.data.dataset}: {RELATED_TASKS.value} tasks, {first.encoder.kind} width "
           f"{first.encoder.width} depth {first.encoder.depth}, {first.data.num_train or 'all'} train, "
           f"{first.train.epochs} epochs, {first.data.missing_frac:.0%} labels missing, "
           f"{cli.SEEDS.value} seeds (95% CI)")
  written = write_summary_and_plots(out, NAME, rows, title, plot_relatedness)

  cell = {(r["rho"], r["arm"]): r for r in rows
          if r["split"] == "test" and r["metric"] == "auc" and r["task"] == "mean"}
  fmt = format_cell
  print(f"\nTest ROC-AUC, mean over tasks, mean ± 95% CI over {cli.SEEDS.value} seeds:")
  print(f"{'rho':>5} {'joint':>15} {'separate':>15} {'joint-sep':>15}")
  for rho in rhos():
    print(f"{rho:>5.2f} " + " ".join(f"{fmt(cell[rho, arm]):>15}" for arm in (*ARMS, DIFF_ARM)))
  print(f"\nwrote {results_path}, {', '.join(written)} ({time.perf_counter() - start:.0f}s)")


if __name__ == "__main__":
  cli.run(main)
