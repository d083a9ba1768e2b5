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

from absl import flags

from experiments import cli, experiment
from experiments.experiment import Experiment, Grid, Groups, Summary, records_of
from mtl_jax import plots
from mtl_jax.data.datasets import check_data_config
from mtl_jax.data.related import RelatedConfig
from mtl_jax.errors import InputError
from mtl_jax.results import DIFF_ARM, format_cell, summarize_arms
from mtl_jax.runs import ARMS

flags.adopt_module_key_flags(cli)

NAME = "relatedness"
RHOS = flags.DEFINE_list(
    "rhos", ["0", "0.25", "0.5", "0.75", "1"],
    "relatedness: values of rho, the share of each task's logit variance that comes from "
    "features shared by all tasks, each in [0, 1].")
RELATED_TASKS = flags.DEFINE_integer(
    "related_tasks", 8, "relatedness: number of synthetic tasks.", lower_bound=1)
# This experiment's defaults for the shared flags (a preset or the command line wins).
# Small data is where sharing can matter: with plenty, separate networks learn every
# task on their own.
DEFAULTS = dict(dataset="related", encoder="mlp", depth=2, num_train=200, num_val=200,
                num_test=4000, epochs=100, batch_size=32, seeds=5)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(experiment.Settings):
  rhos: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
  related_tasks: int = 8  # data.relatedness is set per rho, with this many tasks


def settings_from_flags() -> Settings:
  try:
    rhos = tuple(float(r) for r in RHOS.value)
  except ValueError:
    raise InputError(f"--rhos must be numbers; got {','.join(RHOS.value)}")
  with cli.flag_defaults(DEFAULTS):
    return cli.settings(Settings, rhos=rhos, related_tasks=RELATED_TASKS.value)


def grid(settings: Settings) -> Grid:
  """(rho, arm) -> seed configs."""
  if settings.data.dataset != "related":
    raise InputError(f"relatedness needs --dataset=related (tasks with a relatedness knob); "
                     f"got --dataset={settings.data.dataset}")
  rhos = sorted(set(settings.rhos))
  if not rhos or rhos[0] < 0 or rhos[-1] > 1:
    raise InputError("--rhos must list at least one value, each in [0, 1]")
  groups = {}
  for rho in rhos:
    data = dataclasses.replace(settings.data,
                               relatedness=RelatedConfig(rho=rho, num_tasks=settings.related_tasks))
    check_data_config(data)
    for arm in ARMS:
      groups[rho, arm] = settings.seed_configs(NAME, arm, data)
  return Grid(groups, f"{NAME}: {len(groups)} groups (rho x arm) of {settings.seeds} seeds")


def summarize(settings: Settings, groups: Groups, done: dict[str, dict]) -> Summary:
  rows = []
  for rho in sorted({rho for rho, _ in groups}):
    by_arm = {arm: records_of(groups[rho, arm], done) for arm in ARMS}
    rows += summarize_arms(by_arm, by_arm["joint"][0]["task_names"], dict(rho=rho))
  data, encoder = settings.data, settings.encoder
  title = (f"{data.dataset}: {settings.related_tasks} tasks, {encoder.kind} width "
           f"{encoder.width} depth {encoder.depth}, {data.num_train or 'all'} train, "
           f"{settings.train.epochs} epochs, {data.missing_frac:.0%} labels missing, "
           f"{settings.seeds} seeds (95% CI)")
  return Summary(rows, title)


def table(settings: Settings, rows: list[dict]) -> str:
  cell = {(r["rho"], r["arm"]): r for r in plots.select(rows, split="test", metric="auc", task="mean")}
  lines = [f"\nTest ROC-AUC, mean over tasks, mean ± 95% CI over {settings.seeds} seeds:",
           f"{'rho':>5} {'joint':>15} {'separate':>15} {'joint-sep':>15}"]
  for rho in sorted({rho for rho, _ in cell}):
    lines.append(f"{rho:>5.2f} " + " ".join(f"{format_cell(cell[rho, arm]):>15}" for arm in (*ARMS, DIFF_ARM)))
  return "\n".join(lines)


def draw(rows: list[dict], out_path: str, title: str, metric: str = "auc", split: str = "test") -> None:
  """Joint and separate networks against the relatedness rho, and their paired
  difference, with 95% CI bands; below zero is negative transfer."""
  rows = plots.select(rows, split=split, metric=metric, task="mean")
  fig, (ax_arms, ax_diff) = plots.subplots(1, 2, figsize=(10, 3.8))
  for arm, color in plots.ARM_COLORS.items():
    plots.line_with_band(ax_arms, *plots.series(rows, "rho", arm=arm), color=color, label=arm)
  plots.line_with_band(ax_diff, *plots.series(rows, "rho", arm=DIFF_ARM), color="#2ca02c",
                       label="joint − separate")
  ax_diff.axhline(0.0, color="black", linewidth=0.8)
  ax_arms.set_ylabel(f"{split} {plots.metric_label(metric)}, mean over tasks")
  ax_diff.set_ylabel(f"joint − separate {plots.metric_label(metric)} (paired by seed)")
  for ax in (ax_arms, ax_diff):
    ax.set_xlabel("relatedness rho (share of logit variance from shared features)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
  plots.finish(fig, title, out_path, top=0.95)


EXPERIMENT = Experiment(
    name=NAME, summary="joint vs separate networks as shared features give way to private ones",
    settings_from_flags=settings_from_flags, grid=grid, summarize=summarize, table=table,
    draw=draw, presets={
        "quick": dict(seeds=5),
        "full": dict(seeds=10, rhos=[str(r / 10) for r in range(11)]),
    },
    # Its sweep is the generator's relatedness knob, which no other data has.
    requires=(experiment.needs_dataset("related", "needs --dataset=related (tasks with a relatedness knob)"),
              experiment.needs_images_for_cnn()))

if __name__ == "__main__":
  cli.run(EXPERIMENT.main)
