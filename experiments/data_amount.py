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
(--target_budgets) at the largest k, against the target-only network.
"""
import time

from absl import flags

from experiments import cli
from mtl_jax.data.datasets import auxiliary_tasks, check_data_config, task_names, with_tasks
from mtl_jax.errors import InputError
from mtl_jax.plots import plot_data_amount
from mtl_jax.results import format_cell, summarize_arms, write_summary_and_plots
from mtl_jax.runs import RunConfig

flags.adopt_module_key_flags(cli)

NAME = "data_amount"
TARGET_TASK = flags.DEFINE_string(
    "target_task", "car", "data_amount: the task with few labels, one of the dataset's tasks "
    "(driving: any of mtl_jax/data/driving_tasks.py; csv/npz/tfds: a label column).")
NUM_AUX = flags.DEFINE_list(
    "num_aux", ["0", "1", "2", "4", "8", "16", "all"],
    "data_amount: numbers k of auxiliary tasks to train beside the target ('all' = every "
    "task not about the target's object class; 0 = the target alone).")
TARGET_BUDGET = flags.DEFINE_integer(
    "target_budget", 100, "data_amount: training labels the target keeps in the sweep over k.",
    lower_bound=1)
TARGET_BUDGETS = flags.DEFINE_list(
    "target_budgets", ["25", "100", "400", "1600"],
    "data_amount: training label counts of the target in the second sweep, at the largest k.")


def _ints(flag, values: list[str], available: int) -> list[int]:
  try:
    numbers = sorted({available if v == "all" else int(v) for v in values})
  except ValueError:
    raise InputError(f"--{flag.name} must be a comma-separated list of integers; got {','.join(values)}")
  if not numbers:
    raise InputError(f"--{flag.name} must list at least one value")
  return numbers


def target_and_aux(base) -> tuple[str, tuple[str, ...]]:
  if base.dataset == "related":
    raise InputError("data_amount needs named tasks; --dataset=related has none to choose from")
  target = TARGET_TASK.value
  every = task_names(base) if base.dataset != "driving" else (target,)
  if target not in every:
    raise InputError(f"--target_task={target} is not a task of {base.dataset}; its tasks are "
                     f"{', '.join(every)}")
  return target, auxiliary_tasks(base, target)


def sweep_points(base) -> tuple[list[int], list[int]]:
  """The k values of the first sweep and the target budgets of the second."""
  available = len(target_and_aux(base)[1])
  ks = _ints(NUM_AUX, NUM_AUX.value, available)
  if ks[0] < 0 or ks[-1] > available:
    raise InputError(f"--num_aux must be in [0, {available}]: the target {TARGET_TASK.value!r} "
                     f"has {available} auxiliary tasks; got {','.join(NUM_AUX.value)}")
  budgets = _ints(TARGET_BUDGETS, TARGET_BUDGETS.value, 0)
  num_train = cli.generated_train_size()
  for budget in [TARGET_BUDGET.value, *budgets]:
    if budget < 1 or (num_train and budget > num_train):
      raise InputError(f"a target budget of {budget} labels is outside [1, --num_train="
                       f"{num_train}]")
  return ks, budgets


def run_groups() -> dict[tuple[str, int, int], list[RunConfig]]:
  """(sweep, k, target budget) -> seed configs."""
  base, train = cli.data_config(), cli.train_config()
  ks, budgets = sweep_points(base)
  target, aux = target_and_aux(base)
  points = [("num_aux", k, TARGET_BUDGET.value) for k in ks]
  points += [("target_budget", k, b) for k in sorted({0, ks[-1]}) for b in budgets]
  groups = {}
  for sweep, k, budget in points:
    data = with_tasks(base, (target, *aux[:k]), ((target, budget),))
    check_data_config(data)
    groups[sweep, k, budget] = [RunConfig(NAME, "joint", seed, data, cli.encoder_spec(), train)
                                for seed in range(cli.SEEDS.value)]
  return groups


def main(argv):
  del argv
  groups = run_groups()
  out = cli.out_dir(NAME)
  start = time.perf_counter()
  target = TARGET_TASK.value
  print(f"{NAME}: target {target}, {len(groups)} groups (k auxiliary tasks x target labels) of "
        f"{cli.SEEDS.value} seeds", flush=True)
  # Groups that differ only in their sweep name are the same runs: trained once.
  results_path, done = cli.train_pending(list(groups.values()), out)

  rows = []
  for (sweep, k, budget), group in groups.items():
    records = [done[c.hash] for c in group]
    keys = dict(sweep=sweep, num_aux=k, target_budget=budget, target_task=target)
    arm = "target_only" if k == 0 else "joint"
    rows += [r for r in summarize_arms({arm: records}, records[0]["task_names"], keys)
             if r["task"] == target]
  first = next(iter(groups.values()))[0]
  title = (f"{first.data.dataset}: target {target}, joint {first.encoder.kind} width "
           f"{first.encoder.width}, {first.data.num_train or 'all'} train, {first.train.epochs} epochs, "
           f"{cli.SEEDS.value} seeds (95% CI)")
  written = write_summary_and_plots(out, NAME, rows, title, plot_data_amount)

  cell = {(r["sweep"], r["num_aux"], r["target_budget"]): r for r in rows
          if r["split"] == "test" and r["metric"] == "auc"}
  fmt = format_cell
  print(f"\nTest ROC-AUC of {target}, mean ± 95% CI over {cli.SEEDS.value} seeds, "
        f"with {TARGET_BUDGET.value} of its labels:")
  for (sweep, k, budget), r in cell.items():
    if sweep == "num_aux":
      print(f"  k = {k:>2} auxiliary tasks: {fmt(r)}")
  ks, budgets = sweep_points(first.data)
  print(f"\n{target} labels   target only   with k = {ks[-1]} auxiliary tasks")
  for budget in budgets:
    print(f"{budget:>13}   {fmt(cell['target_budget', 0, budget]):>11}   "
          f"{fmt(cell['target_budget', ks[-1], budget])}")
  print(f"\nwrote {results_path}, {', '.join(written)} ({time.perf_counter() - start:.0f}s)")


if __name__ == "__main__":
  cli.run(main)
