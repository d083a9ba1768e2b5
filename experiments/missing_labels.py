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

import numpy as np
from absl import flags

from experiments import cli, experiment
from experiments.experiment import FULL_SCENES, QUICK_SCENES, Experiment, Grid, Groups, Summary, records_of
from mtl_jax import plots
from mtl_jax.data.datasets import LABEL_HANDLING, check_data_config, load_dataset
from mtl_jax.errors import InputError
from mtl_jax.results import format_cell, summarize_arms

flags.adopt_module_key_flags(cli)

NAME = "missing_labels"
MISSING_FRACS = flags.DEFINE_list(
    "missing_fracs", ["0", "0.2", "0.5", "0.8", "0.9"],
    "missing_labels: fractions of training labels hidden, each in [0, 1).")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(experiment.Settings):
  # The sweep sets data.missing_frac and data.label_handling.
  missing_fracs: tuple[float, ...] = (0.0, 0.2, 0.5, 0.8, 0.9)


def settings_from_flags() -> Settings:
  try:
    fracs = tuple(float(f) for f in MISSING_FRACS.value)
  except ValueError:
    raise InputError(f"--missing_fracs must be numbers; got {','.join(MISSING_FRACS.value)}")
  return cli.settings(Settings, missing_fracs=fracs)


def _complete_rows(data_config) -> int:
  return len(load_dataset(data_config).train.y)


def grid(settings: Settings) -> Grid:
  """(missing_frac, handling) -> seed configs; an empty group where dropping the
  incomplete examples leaves none (the point has no result)."""
  check_data_config(settings.data)
  fracs = sorted(set(settings.missing_fracs))
  if not fracs or fracs[0] < 0 or fracs[-1] >= 1:
    raise InputError("--missing_fracs must list at least one fraction, each in [0, 1)")
  groups = {}
  for frac in fracs:
    for handling in LABEL_HANDLING:
      # With nothing missing the three ways are one run: the same config hash trains it once.
      data = dataclasses.replace(settings.data, missing_frac=frac,
                                 label_handling=handling if frac > 0 else "mask")
      train = settings.train
      if handling == "drop_incomplete" and frac > 0:
        rows = _complete_rows(data)
        if rows == 0:  # no training example has all its labels
          groups[frac, handling] = []
          continue
        train = dataclasses.replace(train, batch_size=min(train.batch_size, rows))
      groups[frac, handling] = settings.seed_configs(NAME, "joint", data, train=train)
  trained = sum(bool(group) for group in groups.values())
  return Grid(groups, f"{NAME}: {trained} groups (missing fraction x handling) of {settings.seeds} seeds")


def summarize(settings: Settings, groups: Groups, done: dict[str, dict]) -> Summary:
  rows = []
  for (frac, handling), group in groups.items():
    if group:
      records = records_of(group, done)
      keys = dict(missing_frac=frac, label_handling=handling,
                  train_examples=records[0]["train_examples"], train_labels=records[0]["train_labels"])
      rows += summarize_arms({"joint": records}, records[0]["task_names"], keys)
  # A point with nothing to train gets one row, after the others, saying so (n = 0).
  for (frac, handling), group in groups.items():
    if not group:
      rows.append(dict(missing_frac=frac, label_handling=handling, train_examples=0, train_labels=0,
                       split="test", metric="auc", task="mean", arm="joint", mean=np.nan, ci95=np.nan,
                       n=0, diverged=0))
  data, encoder = settings.data, settings.encoder
  title = (f"{data.dataset}: joint {encoder.kind} width {encoder.width} "
           f"depth {encoder.depth}, {data.num_train or 'all'} train, {settings.train.epochs} epochs, "
           f"{settings.seeds} seeds (95% CI)")
  return Summary(rows, title)


def table(settings: Settings, rows: list[dict]) -> str:
  cell = {(r["missing_frac"], r["label_handling"]): r
          for r in plots.select(rows, split="test", metric="auc", task="mean")}
  lines = [f"\nTest ROC-AUC, mean over tasks, mean ± 95% CI over {settings.seeds} seeds "
           "(training labels used in brackets):",
           f"{'missing':>8} " + " ".join(f"{h:>24}" for h in LABEL_HANDLING)]
  for frac in sorted({frac for frac, _ in cell}):
    cells = []
    for handling in LABEL_HANDLING:
      r = cell[frac, handling]
      cells.append(f"{'none left':>24}" if r["n"] == 0 else
                   f"{format_cell(r)} [{r['train_labels']:>6}]".rjust(24))
    lines.append(f"{frac:>8.2f} " + " ".join(cells))
  return "\n".join(lines)


def draw(rows: list[dict], out_path: str, title: str, metric: str = "auc", split: str = "test") -> None:
  """Mean-over-tasks metric against the fraction of missing labels, one line per way of
  handling them (95% CI bands), beside the training labels each way keeps."""
  rows = plots.select(rows, split=split, metric=metric, task="mean")
  fig, (ax_metric, ax_labels) = plots.subplots(1, 2, figsize=(10, 3.8))
  for handling in dict.fromkeys(r["label_handling"] for r in rows):
    points = sorted((r["missing_frac"], r["mean"], r["ci95"], r["train_labels"])
                    for r in plots.select(rows, label_handling=handling))
    fracs, means, cis, labels = (np.array(c, float) for c in zip(*points))
    line = plots.line_with_band(ax_metric, fracs, means, cis, label=handling.replace("_", " "))
    ax_labels.plot(fracs, np.maximum(labels, 1), "o-", color=line.get_color())
  ax_metric.set_ylabel(f"{split} {plots.metric_label(metric)}, mean over tasks")
  ax_labels.set_ylabel("training labels used (0 plotted at 1)")
  ax_labels.set_yscale("log")
  for ax in (ax_metric, ax_labels):
    ax.set_xlabel("fraction of training labels missing")
    ax.grid(alpha=0.3)
  ax_metric.legend(loc="lower left")
  plots.finish(fig, title, out_path, top=0.95)


EXPERIMENT = Experiment(
    name=NAME, summary="the masked loss against '?' as 'no' and dropping incomplete examples",
    settings_from_flags=settings_from_flags, grid=grid, summarize=summarize, table=table,
    draw=draw, presets={"quick": QUICK_SCENES, "full": FULL_SCENES},
    requires=(experiment.needs_images_for_cnn(),))  # any data: it hides more of its labels

if __name__ == "__main__":
  cli.run(EXPERIMENT.main)
