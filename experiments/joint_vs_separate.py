"""Joint vs separate networks: one shared encoder with T heads against T single-task
networks of the same architecture, on the same data, splits, steps and seeds.

Run:  python launch.py                       (or: python -m experiments.joint_vs_separate)
      python launch.py --encoder=mlp --width=256 --seeds=5 --out_dir=runs/mlp
Time: about 2.5 minutes with the defaults on a 2-core CPU (6000 training scenes, CNN
      width 32 depth 3, 12 epochs, 3 seeds, both arms).
Finds: see the README; the table printed at the end gives mean and 95% CI per task.
Writes: OUT_DIR/results.jsonl (one line per arm and seed, with its full config),
      OUT_DIR/summary.csv and OUT_DIR/joint_vs_separate.png (and .svg).
"""
import dataclasses

from absl import flags

from experiments import cli, experiment
from experiments.experiment import (FULL_SCENES, QUICK_SCENES, Experiment, Grid, Groups, Summary,
                                    needs_images_for_cnn, records_of)
from mtl_jax import plots
from mtl_jax.data.datasets import check_data_config
from mtl_jax.metrics import METRICS
from mtl_jax.results import DIFF_ARM, format_cell, summarize_arms
from mtl_jax.runs import ARMS

flags.adopt_module_key_flags(cli)

NAME = "joint_vs_separate"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(experiment.Settings):
  # The printed table's metrics (--metrics); summary.csv has every metric regardless.
  table_metrics: tuple[str, ...] = cli.DEFAULT_TABLE_METRICS


def settings_from_flags() -> Settings:
  return cli.settings(Settings, table_metrics=cli.table_metrics())


def grid(settings: Settings) -> Grid:
  check_data_config(settings.data)
  groups = {arm: settings.seed_configs(NAME, arm, settings.data) for arm in ARMS}
  return Grid(groups, f"{NAME}: joint vs separate {settings.encoder.kind} networks, "
                      f"{experiment.runs_per_arm(settings)}")


def summarize(settings: Settings, groups: Groups, done: dict[str, dict]) -> Summary:
  records_by_arm = {arm: records_of(group, done) for arm, group in groups.items()}
  rows = summarize_arms(records_by_arm, records_by_arm["joint"][0]["task_names"])
  params = {arm: records_by_arm[arm][0]["param_count"] for arm in ARMS}
  data, encoder = settings.data, settings.encoder
  title = (f"{data.dataset}: {encoder.kind} width {encoder.width} depth {encoder.depth}, "
           f"{data.num_train or 'all'} train, {data.missing_frac:.0%} labels missing, "
           f"95% CI over {rows[0]['interval']}\n"
           f"joint {params['joint']:,} params, separate {params['separate']:,} params")
  return Summary(rows, title)


# The printed table without --metrics: (metric, arm) columns as they have always been.
DEFAULT_COLUMNS = (("auc", "joint"), ("auc", "separate"), ("auc", DIFF_ARM), ("ap", "joint"),
                   ("ap", "separate"))
_ARM_LABELS = {"joint": "joint", "separate": "separate", DIFF_ARM: "joint-sep"}
_SHORT_NAMES = {"auc": "AUC", "ap": "AP"}


def columns(metrics: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
  """The table's (metric, arm) columns: joint, separate and their paired difference for
  each metric chosen; today's columns for the default metrics."""
  if tuple(metrics) == cli.DEFAULT_TABLE_METRICS:
    return DEFAULT_COLUMNS
  return tuple((metric, arm) for metric in metrics for arm in _ARM_LABELS)


def format_table(rows: list[dict], split: str = "test",
                 table_columns: tuple[tuple[str, str], ...] = DEFAULT_COLUMNS) -> str:
  """One line per task (and their mean); an example-based metric has only the mean's
  cell, '-' elsewhere."""
  cell = {(r["metric"], r["task"], r["arm"]): r for r in rows if r["split"] == split}
  tasks = list(dict.fromkeys(r["task"] for r in rows))
  headers = [f"{_SHORT_NAMES.get(m, m)} {_ARM_LABELS[arm]}"
             for m, arm in table_columns]
  widths = [max(15, len(h)) for h in headers]
  header = f"{'task':<14}" + "".join(f" {h:>{w}}" for h, w in zip(headers, widths))
  lines = [header, "-" * len(header)]
  for task in tasks:
    texts = [format_cell(cell[m, task, arm]) if (m, task, arm) in cell else "-"
             for m, arm in table_columns]
    lines.append(f"{task:<14}" + "".join(f" {t:>{w}}" for t, w in zip(texts, widths)))
  return "\n".join(lines)


def table(settings: Settings, rows: list[dict]) -> str:
  return (f"\nTest metrics, mean ± 95% CI over {rows[0]['interval']}:\n"
          + format_table(rows, table_columns=columns(settings.table_metrics)))


def draw(rows: list[dict], out_path: str, title: str, split: str = "test") -> None:
  """Per-task bars for joint vs separate networks, one panel per metric, with the 95%
  CI over seeds as error bars."""
  rows = plots.select(rows, split=split)
  # The per-task metrics; the multi-label ones are in summary.csv and docs/metrics.md.
  metric_names = [m for m in dict.fromkeys(r["metric"] for r in rows) if m in METRICS]
  tasks = list(dict.fromkeys(r["task"] for r in rows))
  fig, axes = plots.subplots(1, len(metric_names), figsize=(4.2 * len(metric_names), 3.8),
                             squeeze=False)
  for ax, metric in zip(axes[0], metric_names):
    bars = {}
    for arm in ARMS:
      cells = {r["task"]: r for r in plots.select(rows, metric=metric, arm=arm)}
      bars[arm] = ([cells[t]["mean"] for t in tasks], [cells[t]["ci95"] for t in tasks])
    plots.bars_with_ci(ax, tasks, bars, plots.ARM_COLORS)
    ax.set_ylabel(f"{split} {plots.metric_label(metric)}")
    ax.grid(axis="y", alpha=0.3)
  handles, labels = axes[0][0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="upper right", ncols=len(labels), frameon=False)
  plots.finish(fig, title, out_path)


EXPERIMENT = Experiment(
    name=NAME, summary="one shared encoder with a head per task against a network per task",
    settings_from_flags=settings_from_flags, grid=grid, summarize=summarize, table=table,
    draw=draw, presets={"quick": QUICK_SCENES, "full": FULL_SCENES},
    requires=(needs_images_for_cnn(),),  # any data: it only compares the two arms
    resamples=True)

if __name__ == "__main__":
  cli.run(EXPERIMENT.main)
