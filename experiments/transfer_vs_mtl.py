"""Transfer vs multi-task learning: lots of labels for task A, few for task B, the
setting where the note says transfer learning is "very common".

Run:  python launch.py --experiment=transfer_vs_mtl
      python launch.py --experiment=transfer_vs_mtl --task_a=traffic_light --task_b=pedestrian
Time: 143 s with --preset=quick on a 2-core CPU (3000 training scenes, 8 epochs,
      3 seeds, B label counts 25..1600); the defaults use 6000 scenes and 12 epochs.
Finds: fine-tuning a car-pretrained encoder is best for stop signs from 400 labels on
      (AUC 0.78 / 0.88 at 400 / 1600 labels vs 0.73 / 0.82 for B alone); a frozen
      encoder is worst there (0.65 / 0.68); joint MTL is level with B alone; below
      100 labels everything is near chance.
Writes: OUT_DIR/results.jsonl, OUT_DIR/summary.csv, OUT_DIR/transfer_vs_mtl.{png,svg}.

Four ways to learn B from --b_budgets labels, all on the same training images (B's
other labels are hidden by the missing-label mask), seeds and epochs:
  b_only             one network trained on B alone;
  transfer_frozen    an encoder pretrained on all of A's labels, then a new head for B
                     trained on top of the frozen encoder;
  transfer_finetune  the same pretrained encoder, then every weight trained on B;
  joint              one network trained on A and B together (multi-task).
Pretraining uses the same images, encoder, seed and training settings; it runs once
per seed group and is shared by the two transfer arms. Every way keeps the epoch with
the lowest validation loss of B alone (pretraining, of A).
"""
import dataclasses

from absl import flags

from experiments import cli, experiment
from experiments.experiment import (FULL_SCENES, QUICK_SCENES, Experiment, Grid, Groups, Summary,
                                    generated_train_size, records_of)
from mtl_jax import plots
from mtl_jax.data.datasets import check_data_config, with_tasks
from mtl_jax.errors import InputError
from mtl_jax.results import format_cell, summarize_arms
from mtl_jax.runs import TRANSFER_ARMS

flags.adopt_module_key_flags(cli)

NAME = "transfer_vs_mtl"
APPROACHES = ("b_only", *TRANSFER_ARMS, "joint")
APPROACH_STYLES = {"b_only": dict(color="#ff7f0e", label="B only"),
                   "transfer_frozen": dict(color="#9467bd", label="transfer, frozen encoder"),
                   "transfer_finetune": dict(color="#2ca02c", label="transfer, fine-tuned"),
                   "joint": dict(color="#1f77b4", label="joint MTL on A + B")}
TASK_A = flags.DEFINE_string("task_a", "car", "transfer_vs_mtl: the task with plentiful labels "
                             "(driving: any of mtl_jax/data/driving_tasks.py; csv/npz/tfds: a label column).")
TASK_B = flags.DEFINE_string("task_b", "stop_sign", "transfer_vs_mtl: the task with few labels.")
B_BUDGETS = flags.DEFINE_list(
    "b_budgets", ["25", "100", "400", "1600"], "transfer_vs_mtl: training label counts of task B.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(experiment.Settings):
  task_a: str = "car"  # all of its labels
  task_b: str = "stop_sign"  # few labels: each of b_budgets
  b_budgets: tuple[int, ...] = (25, 100, 400, 1600)


def settings_from_flags() -> Settings:
  try:
    budgets = tuple(int(b) for b in B_BUDGETS.value)
  except ValueError:
    raise InputError(f"--b_budgets must be a comma-separated list of integers; got {','.join(B_BUDGETS.value)}")
  return cli.settings(Settings, task_a=TASK_A.value, task_b=TASK_B.value, b_budgets=budgets)


def b_budgets(settings: Settings) -> list[int]:
  budgets = sorted(set(settings.b_budgets))
  num_train = generated_train_size(settings.data)
  if not budgets or budgets[0] < 1 or (num_train and budgets[-1] > num_train):
    raise InputError(f"--b_budgets must list label counts in [1, --num_train={num_train}]; "
                     f"got {','.join(map(str, settings.b_budgets))}")
  return budgets


def grid(settings: Settings) -> Grid:
  """(approach, B's label count) -> seed configs."""
  base = settings.data
  if base.dataset == "related":
    raise InputError("transfer_vs_mtl needs named tasks; --dataset=related has none to choose from")
  a, b = settings.task_a, settings.task_b
  if a == b:
    raise InputError(f"--task_a and --task_b must differ; both are {a!r}")
  pretrain = with_tasks(base, (a,))
  # The joint arm also trains A; every arm keeps its epoch by B's validation loss.
  train = dataclasses.replace(settings.train, select_tasks=(b,))
  groups = {}
  for budget in b_budgets(settings):
    only_b = with_tasks(base, (b,), ((b, budget),))
    both = with_tasks(base, (a, b), ((b, budget),))
    check_data_config(both)
    for approach in APPROACHES:
      arm, data = ("joint", both) if approach == "joint" else (
          ("joint", only_b) if approach == "b_only" else (approach, only_b))
      groups[approach, budget] = settings.seed_configs(
          NAME, arm, data, train=train, pretrain=pretrain if approach in TRANSFER_ARMS else None)
  return Grid(groups, f"{NAME}: A = {a} (all labels), B = {b}; {len(groups)} groups (approach x B labels) "
                      f"of {settings.seeds} seeds")


def summarize(settings: Settings, groups: Groups, done: dict[str, dict]) -> Summary:
  a, b = settings.task_a, settings.task_b
  rows = []
  for (approach, budget), group in groups.items():
    records = records_of(group, done)
    keys = dict(b_budget=budget, task_a=a, task_b=b)
    rows += [r for r in summarize_arms({approach: records}, records[0]["task_names"], keys)
             if r["task"] == b]
  data, encoder = settings.data, settings.encoder
  title = (f"{data.dataset}: A = {a}, B = {b}, {encoder.kind} width {encoder.width} "
           f"depth {encoder.depth}, {data.num_train or 'all'} train, {settings.train.epochs} "
           f"epochs, {settings.seeds} seeds (95% CI)")
  return Summary(rows, title)


def table(settings: Settings, rows: list[dict]) -> str:
  cell = {(r["arm"], r["b_budget"]): r for r in plots.select(rows, split="test", metric="auc")}
  lines = [f"\nTest ROC-AUC of B = {settings.task_b}, mean ± 95% CI over {settings.seeds} seeds:",
           f"{'B labels':>8} " + " ".join(f"{approach:>17}" for approach in APPROACHES)]
  for budget in sorted({budget for _, budget in cell}):
    lines.append(f"{budget:>8} " + " ".join(format_cell(cell[approach, budget]).rjust(17)
                                           for approach in APPROACHES))
  return "\n".join(lines)


def draw(rows: list[dict], out_path: str, title: str, metric: str = "auc", split: str = "test") -> None:
  """Task B's metric against its label count, one line per way of learning it."""
  rows = plots.select(rows, split=split, metric=metric)
  a, b = rows[0]["task_a"], rows[0]["task_b"]
  fig, ax = plots.subplots(figsize=(6.5, 4.2))
  for approach in dict.fromkeys(r["arm"] for r in rows):
    plots.line_with_band(ax, *plots.series(rows, "b_budget", arm=approach),
                         **APPROACH_STYLES.get(approach, dict(label=approach)))
  plots.log_x_at_points(ax, sorted({float(r["b_budget"]) for r in rows}))
  ax.set_xlabel(f"training labels of B = {b} (A = {a} has all of its labels)")
  ax.set_ylabel(f"{b}: {split} {plots.metric_label(metric)}")
  ax.grid(alpha=0.3)
  ax.legend(loc="lower right")
  plots.finish(fig, title, out_path, top=0.9)


EXPERIMENT = Experiment(
    name=NAME, summary="task B with few labels: alone, transferred from task A, or joint with A",
    settings_from_flags=settings_from_flags, grid=grid, summarize=summarize, table=table,
    draw=draw, presets={
        "quick": QUICK_SCENES,
        "full": dict(FULL_SCENES, b_budgets=["25", "100", "400", "1600", "6400"]),
    },
    # Tasks A and B chosen by name, among the data's tasks (read data: its columns).
    requires=(experiment.needs_named_tasks("task_a", "task_b"), experiment.needs_images_for_cnn()))

if __name__ == "__main__":
  cli.run(EXPERIMENT.main)
