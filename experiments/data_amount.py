"""Data amount: one target task with few labels, trained alone or beside k auxiliary
tasks with plentiful labels, for the note's claim that "the aggregate data of many
tasks boosts the one task you focus on".

Run:  python launch.py --experiment=data_amount
      python launch.py --experiment=data_amount --target_task=stop_sign --num_aux=0,4,all
Time: 96 s with --preset=quick on a 2-core CPU (3000 training scenes, 8 epochs,
      k in 0,2,8,21, 3 seeds); the defaults (6000 scenes, 12 epochs, 7 values of k)
      train about four times as much.
Finds: holds only while the target's labels are scarce. Car test AUC with 25 / 100
      labels: 0.49 / 0.51 alone, 0.57 / 0.58 beside 21 auxiliary tasks; with 1600
      labels it reverses, 0.78 alone vs 0.66 joint (quick preset, 3 seeds).
Writes: OUT_DIR/results.jsonl, OUT_DIR/summary.csv, OUT_DIR/data_amount.{png,svg}.

The target keeps only --target_budget of its training labels (the missing-label mask
hides the rest; every image stays), while each auxiliary task keeps all of its labels
but the --missing_frac share. The auxiliary tasks come from the driving scenes'
attributes (driving_tasks.py) and exclude every task about the target's object class,
so they share features with the target but carry no information about its labels.
k = 0 is the target-only network. A second sweep varies the target's label count
(--target_budgets) at the largest k, against the target-only network. Every network
keeps the epoch with the lowest validation loss of the target alone: the question is
how well the target is learnt, not the auxiliary tasks.
"""
import dataclasses
from typing import Union

from absl import flags

from experiments import cli, experiment
from experiments.experiment import (FULL_SCENES, QUICK_SCENES, Experiment, Grid, Groups, Summary,
                                    generated_train_size, records_of)
from mtl_jax import plots
from mtl_jax.data.datasets import auxiliary_tasks, check_data_config, task_names, with_tasks
from mtl_jax.errors import InputError
from mtl_jax.results import format_cell, summarize_arms

flags.adopt_module_key_flags(cli)

NAME = "data_amount"
ALL = "all"  # as a number of auxiliary tasks: every one the target has
TARGET_TASK = flags.DEFINE_string(
    "target_task", "car", "data_amount: the task with few labels, one of the dataset's tasks "
    "(driving: any of mtl_jax/data/driving_tasks.py; csv/npz/tfds: a label column).")
NUM_AUX = flags.DEFINE_list(
    "num_aux", ["0", "1", "2", "4", "8", "16", ALL],
    "data_amount: numbers k of auxiliary tasks to train beside the target ('all' = every "
    "task not about the target's object class; 0 = the target alone).")
TARGET_BUDGET = flags.DEFINE_integer(
    "target_budget", 100, "data_amount: training labels the target keeps in the sweep over k.",
    lower_bound=1)
TARGET_BUDGETS = flags.DEFINE_list(
    "target_budgets", ["25", "100", "400", "1600"],
    "data_amount: training label counts of the target in the second sweep, at the largest k.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(experiment.Settings):
  target_task: str = "car"
  num_aux: tuple[Union[int, str], ...] = (0, 1, 2, 4, 8, 16, ALL)  # values of k; ALL: every one
  target_budget: int = 100  # the target's training labels in the sweep over k
  target_budgets: tuple[int, ...] = (25, 100, 400, 1600)  # its label counts in the second sweep


def _ints(flag, allow_all: bool = False) -> tuple[Union[int, str], ...]:
  try:
    return tuple(v if allow_all and v == ALL else int(v) for v in flag.value)
  except ValueError:
    raise InputError(f"--{flag.name} must be a comma-separated list of integers; got {','.join(flag.value)}")


def settings_from_flags() -> Settings:
  return cli.settings(Settings, target_task=TARGET_TASK.value, num_aux=_ints(NUM_AUX, allow_all=True),
                      target_budget=TARGET_BUDGET.value, target_budgets=_ints(TARGET_BUDGETS))


def target_and_aux(settings: Settings) -> tuple[str, tuple[str, ...]]:
  base, target = settings.data, settings.target_task
  if base.dataset == "related":
    raise InputError("data_amount needs named tasks; --dataset=related has none to choose from")
  every = task_names(base) if base.dataset != "driving" else (target,)
  if target not in every:
    raise InputError(f"--target_task={target} is not a task of {base.dataset}; its tasks are "
                     f"{', '.join(every)}")
  return target, auxiliary_tasks(base, target)


def sweep_points(settings: Settings, available: int) -> tuple[list[int], list[int]]:
  """The k values of the first sweep and the target budgets of the second."""
  ks = sorted({available if k == ALL else k for k in settings.num_aux})
  if not ks:
    raise InputError("--num_aux must list at least one value")
  if ks[0] < 0 or ks[-1] > available:
    raise InputError(f"--num_aux must be in [0, {available}]: the target {settings.target_task!r} "
                     f"has {available} auxiliary tasks; got {','.join(map(str, settings.num_aux))}")
  budgets = sorted(set(settings.target_budgets))
  if not budgets:
    raise InputError("--target_budgets must list at least one value")
  num_train = generated_train_size(settings.data)
  for budget in [settings.target_budget, *budgets]:
    if budget < 1 or (num_train and budget > num_train):
      raise InputError(f"a target budget of {budget} labels is outside [1, --num_train="
                       f"{num_train}]")
  return ks, budgets


def grid(settings: Settings) -> Grid:
  """(sweep, k, target budget) -> seed configs."""
  target, aux = target_and_aux(settings)
  ks, budgets = sweep_points(settings, len(aux))
  # Joint networks train more tasks than the target; their epoch is chosen on it alone.
  train = dataclasses.replace(settings.train, select_tasks=(target,))
  points = [("num_aux", k, settings.target_budget) for k in ks]
  points += [("target_budget", k, b) for k in sorted({0, ks[-1]}) for b in budgets]
  groups = {}
  for sweep, k, budget in points:
    data = with_tasks(settings.data, (target, *aux[:k]), ((target, budget),))
    check_data_config(data)
    groups[sweep, k, budget] = settings.seed_configs(NAME, "joint", data, train=train)
  # Groups that differ only in their sweep name are the same runs: trained once.
  return Grid(groups, f"{NAME}: target {target}, {len(groups)} groups (k auxiliary tasks x "
                      f"target labels) of {settings.seeds} seeds")


def summarize(settings: Settings, groups: Groups, done: dict[str, dict]) -> Summary:
  target = settings.target_task
  rows = []
  for (sweep, k, budget), group in groups.items():
    records = records_of(group, done)
    keys = dict(sweep=sweep, num_aux=k, target_budget=budget, target_task=target)
    arm = "target_only" if k == 0 else "joint"
    rows += [r for r in summarize_arms({arm: records}, records[0]["task_names"], keys)
             if r["task"] == target]
  data, encoder = settings.data, settings.encoder
  title = (f"{data.dataset}: target {target}, joint {encoder.kind} width "
           f"{encoder.width}, {data.num_train or 'all'} train, {settings.train.epochs} epochs, "
           f"{settings.seeds} seeds (95% CI)")
  return Summary(rows, title)


def table(settings: Settings, rows: list[dict]) -> str:
  target = settings.target_task
  cell = {(r["sweep"], r["num_aux"], r["target_budget"]): r
          for r in plots.select(rows, split="test", metric="auc")}
  fmt = format_cell
  lines = [f"\nTest ROC-AUC of {target}, mean ± 95% CI over {settings.seeds} seeds, "
           f"with {settings.target_budget} of its labels:"]
  lines += [f"  k = {k:>2} auxiliary tasks: {fmt(r)}"
            for (sweep, k, _), r in cell.items() if sweep == "num_aux"]
  k_max = max(k for sweep, k, _ in cell if sweep == "num_aux")
  lines.append(f"\n{target} labels   target only   with k = {k_max} auxiliary tasks")
  for budget in sorted({b for sweep, _, b in cell if sweep == "target_budget"}):
    lines.append(f"{budget:>13}   {fmt(cell['target_budget', 0, budget]):>11}   "
                 f"{fmt(cell['target_budget', k_max, budget])}")
  return "\n".join(lines)


def draw(rows: list[dict], out_path: str, title: str, metric: str = "auc", split: str = "test") -> None:
  """The target task's metric against the number k of auxiliary tasks trained beside it
  (the target-only network, k = 0, as a reference band), and against the target's own
  label count, alone and with the most auxiliary tasks."""
  rows = plots.select(rows, split=split, metric=metric)
  target = rows[0]["target_task"]
  fig, (ax_k, ax_n) = plots.subplots(1, 2, figsize=(10, 3.8))
  k_rows = plots.select(rows, sweep="num_aux")
  ks, means, cis = plots.series(k_rows, "num_aux", arm="joint")
  if ks.size:
    plots.line_with_band(ax_k, ks, means, cis, color=plots.ARM_COLORS["joint"],
                         label="joint: target + k tasks")
  alone = plots.select(k_rows, arm="target_only")
  if alone:
    plots.reference_band(ax_k, alone[0]["mean"], alone[0]["ci95"], "target only (k = 0)")
  ax_k.set_xscale("symlog", linthresh=1)  # k = 0 sits on the axis, and k grows by doubling
  ax_k.set_xticks(ks, [f"{k:g}" for k in ks])
  ax_k.set_xlabel(f"auxiliary tasks k (target keeps {k_rows[0]['target_budget']} labels)")
  n_rows = plots.select(rows, sweep="target_budget")
  k_max = max(r["num_aux"] for r in n_rows)
  for arm, k, label in (("target_only", 0, "target only"), ("joint", k_max, f"joint, k = {k_max}")):
    x, means, cis = plots.series(n_rows, "target_budget", arm=arm, num_aux=k)
    if x.size:
      plots.line_with_band(ax_n, x, means, cis, color=plots.ARM_COLORS["separate" if k == 0 else "joint"],
                           label=label)
  plots.log_x_at_points(ax_n, sorted({float(r["target_budget"]) for r in n_rows}))
  ax_n.set_xlabel(f"training labels of {target}")
  for ax in (ax_k, ax_n):
    ax.set_ylabel(f"{target}: {split} {plots.metric_label(metric)}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
  plots.finish(fig, title, out_path, top=0.95)


EXPERIMENT = Experiment(
    name=NAME, summary="a target task with few labels, alone or beside k auxiliary tasks",
    settings_from_flags=settings_from_flags, grid=grid, summarize=summarize, table=table,
    draw=draw, presets={
        "quick": dict(QUICK_SCENES, num_aux=["0", "2", "8", "all"]),
        "full": dict(FULL_SCENES, target_budgets=["25", "100", "400", "1600", "6400"]),
    },
    # A target task chosen by name, among the data's tasks (read data: its columns).
    requires=(experiment.needs_named_tasks("target_task"), experiment.needs_images_for_cnn()))

if __name__ == "__main__":
  cli.run(EXPERIMENT.main)
