"""Network size: joint vs separate networks as the encoder grows, for the note's claim
"if the network is too small, performance will degrade compared to separate networks".

Run:  python launch.py --experiment=network_size
      python launch.py --experiment=network_size --encoder=cnn --widths=4,16,64
Time: 13.4 minutes with the defaults on a 2-core CPU (MLP widths 8..512 and CNN
      widths 2..64, joint and separate, 3 seeds each, 6000 training scenes, 12 epochs).
Finds: the claim holds for the CNN at equal width: joint - separate mean test AUC is
      -0.10, -0.08, -0.07 at widths 2, 4, 8, -0.02 at 16 and 0.00 from 32 on. At equal
      total parameters joint is as good or better. The MLP on raw pixels fits its
      training set but is data-limited at 6000 scenes: 0.61-0.62 test AUC at every
      width, joint and separate alike (0.75 with 48000 scenes,
      benchmarks/mlp_on_images.py), so its panel cannot test the claim.
Writes: OUT_DIR/results.jsonl, OUT_DIR/summary.csv, OUT_DIR/network_size.{png,svg}.
"""
import dataclasses

import numpy as np
from absl import flags

from experiments import cli, experiment
from experiments.experiment import (FULL_SCENES, QUICK_SCENES, Experiment, Grid, Groups, Summary,
                                    needs_images_for_cnn, records_of)
from mtl_jax import plots
from mtl_jax.data.datasets import check_data_config
from mtl_jax.errors import InputError
from mtl_jax.models import ENCODERS
from mtl_jax.results import DIFF_ARM, format_cell, summarize_arms
from mtl_jax.runs import ARMS

flags.adopt_module_key_flags(cli)

NAME = "network_size"
DEFAULT_WIDTHS = {"mlp": (8, 16, 32, 64, 128, 256, 512), "cnn": (2, 4, 8, 16, 32, 64)}

WIDTHS = flags.DEFINE_list(
    "widths", None, "network_size: encoder widths to sweep, e.g. 4,16,64 (default: "
    + "; ".join(f"{k} {','.join(map(str, v))}" for k, v in DEFAULT_WIDTHS.items()) + ").")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(experiment.Settings):
  # Encoder kind -> the widths to sweep. The sweep sets the encoder's kind and width;
  # its depth and dtype come from `encoder`.
  widths: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=lambda: dict(DEFAULT_WIDTHS))


def settings_from_flags() -> Settings:
  """Both encoders unless --encoder is given, the defaults unless --widths is."""
  encoders = [cli.ENCODER.value] if flags.FLAGS["encoder"].present else list(ENCODERS)
  if WIDTHS.value is None:
    return cli.settings(Settings, widths={e: DEFAULT_WIDTHS[e] for e in encoders})
  try:
    widths = tuple(int(w) for w in WIDTHS.value)
  except ValueError:
    raise InputError(f"--widths must be a comma-separated list of integers; got {','.join(WIDTHS.value)}")
  return cli.settings(Settings, widths={e: widths for e in encoders})


def grid(settings: Settings) -> Grid:
  """(encoder, width, arm) -> seed configs."""
  widths = {encoder: sorted(set(ws)) for encoder, ws in settings.widths.items()}
  if not widths or any(not ws or ws[0] < 1 for ws in widths.values()):
    raise InputError("--widths must list at least one positive width")
  check_data_config(settings.data)
  groups = {(encoder, width, arm): settings.seed_configs(
                NAME, arm, settings.data, dataclasses.replace(settings.encoder, kind=encoder, width=width))
            for encoder, ws in widths.items() for width in ws for arm in ARMS}
  return Grid(groups, f"{NAME}: {len(groups)} groups (encoder x width x arm) of {settings.seeds} seeds")


def summarize(settings: Settings, groups: Groups, done: dict[str, dict]) -> Summary:
  rows = []
  for encoder, width in sorted({(encoder, width) for encoder, width, _ in groups}):
    by_arm = {arm: records_of(groups[encoder, width, arm], done) for arm in ARMS}
    keys = dict(encoder=encoder, width=width,
                **{f"params_{arm}": by_arm[arm][0]["param_count"] for arm in ARMS})
    rows += summarize_arms(by_arm, by_arm["joint"][0]["task_names"], keys)
  data = settings.data
  title = (f"{data.dataset}: depth {settings.encoder.depth}, {data.num_train or 'all'} train, "
           f"{settings.train.epochs} epochs, {data.missing_frac:.0%} labels missing, "
           f"{settings.seeds} seeds (95% CI)")
  return Summary(rows, title)


def table(settings: Settings, rows: list[dict]) -> str:
  cell = {(r["encoder"], r["width"], r["arm"]): r
          for r in plots.select(rows, split="test", metric="auc", task="mean")}
  lines = [f"\nTest ROC-AUC, mean over tasks, mean ± 95% CI over {settings.seeds} seeds:",
           f"{'encoder':<8} {'width':>6} {'params joint':>13} {'params sep':>11} {'joint':>15} "
           f"{'separate':>15} {'joint-sep':>15}"]
  fmt = format_cell
  for encoder, width in sorted({(encoder, width) for encoder, width, _ in cell}):
    j, s, d = (cell[encoder, width, arm] for arm in (*ARMS, DIFF_ARM))
    lines.append(f"{encoder:<8} {width:>6} {j['params_joint']:>13,} {j['params_separate']:>11,} "
                 f"{fmt(j):>15} {fmt(s):>15} {fmt(d):>15}")
  return "\n".join(lines)


def draw(rows: list[dict], out_path: str, title: str, metric: str = "auc", split: str = "test") -> None:
  """Mean-over-tasks metric against encoder width and against parameter count, one row
  per encoder, joint vs separate, with 95% CI bands over seeds."""
  rows = plots.select(rows, split=split, metric=metric, task="mean")
  encoders = list(dict.fromkeys(r["encoder"] for r in rows))
  fig, axes = plots.subplots(len(encoders), 2, figsize=(10, 3.6 * len(encoders)), squeeze=False)
  for row_axes, encoder in zip(axes, encoders):
    for arm, color in plots.ARM_COLORS.items():
      points = sorted((r["width"], r[f"params_{arm}"], r["mean"], r["ci95"])
                      for r in plots.select(rows, encoder=encoder, arm=arm))
      widths, params, means, cis = (np.array(c, float) for c in zip(*points))
      for ax, x in zip(row_axes, (widths, params)):
        plots.line_with_band(ax, x, means, cis, color=color, label=arm)
    for ax, xlabel, base in zip(row_axes, ("encoder width (units or channels)", "parameters (all tasks)"),
                                (2, 10)):
      ax.set_xscale("log", base=base)
      ax.set_xlabel(f"{encoder}: {xlabel}")
      ax.set_ylabel(f"{split} {plots.metric_label(metric)}, mean over tasks")
      ax.grid(alpha=0.3)
    if encoder in PANEL_NOTES:
      row_axes[0].set_title(PANEL_NOTES[encoder], fontsize=8, loc="left")
  axes[0][0].legend(loc="lower right")
  plots.finish(fig, title, out_path)


# What a panel cannot show, measured elsewhere: said on the panel itself.
PANEL_NOTES = {"mlp": "MLP on raw pixels: fits its training set, but is data-limited at a few thousand "
                      "scenes at every width\n(test AUC rises with data: benchmarks/mlp_on_images.py), "
                      "so this panel cannot test the claim"}


EXPERIMENT = Experiment(
    name=NAME, summary="joint vs separate networks as the encoder grows",
    settings_from_flags=settings_from_flags, grid=grid, summarize=summarize, table=table,
    draw=draw, presets={"quick": QUICK_SCENES, "full": FULL_SCENES},
    # Both encoders unless --encoder picks one: the CNN sweep needs images, not a table.
    requires=(needs_images_for_cnn(lambda s: tuple(s.widths)),))

if __name__ == "__main__":
  cli.run(EXPERIMENT.main)
