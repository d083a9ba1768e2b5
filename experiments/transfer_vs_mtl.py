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
per seed group and is shared by the two transfer arms.
"""
import time

from absl import flags

from experiments import cli
from mtl_jax.data.datasets import check_data_config, with_tasks
from mtl_jax.errors import InputError
from mtl_jax.plots import plot_transfer_vs_mtl
from mtl_jax.results import format_cell, summarize_arms, write_summary_and_plots
from mtl_jax.runs import TRANSFER_ARMS, RunConfig

flags.adopt_module_key_flags(cli)

NAME = "transfer_vs_mtl"
APPROACHES = ("b_only", *TRANSFER_ARMS, "joint")
TASK_A = flags.DEFINE_string("task_a", "car", "transfer_vs_mtl: the task with plentiful labels "
                             "(driving: any of mtl_jax/data/driving_tasks.py; csv/npz/tfds: a label column).")
TASK_B = flags.DEFINE_string("task_b", "stop_sign", "transfer_vs_mtl: the task with few labels.")
B_BUDGETS = flags.DEFINE_list(
    "b_budgets", ["25", "100", "400", "1600"], "transfer_vs_mtl: training label counts of task B.")


def b_budgets() -> list[int]:
  try:
    budgets = sorted({int(b) for b in B_BUDGETS.value})
  except ValueError:
    raise InputError(f"--b_budgets must be a comma-separated list of integers; got {','.join(B_BUDGETS.value)}")
  num_train = cli.generated_train_size()
  if not budgets or budgets[0] < 1 or (num_train and budgets[-1] > num_train):
    raise InputError(f"--b_budgets must list label counts in [1, --num_train={num_train}]; "
                     f"got {','.join(B_BUDGETS.value)}")
  return budgets


def run_groups() -> dict[tuple[str, int], list[RunConfig]]:
  """(approach, B's label count) -> seed configs."""
  base, train = cli.data_config(), cli.train_config()
  if base.dataset == "related":
    raise InputError("transfer_vs_mtl needs named tasks; --dataset=related has none to choose from")
  a, b = TASK_A.value, TASK_B.value
  if a == b:
    raise InputError(f"--task_a and --task_b must differ; both are {a!r}")
  pretrain = with_tasks(base, (a,))
  groups = {}
  for budget in b_budgets():
    only_b = with_tasks(base, (b,), ((b, budget),))
    both = with_tasks(base, (a, b), ((b, budget),))
    check_data_config(both)
    for approach in APPROACHES:
      arm, data = ("joint", both) if approach == "joint" else (
          ("joint", only_b) if approach == "b_only" else (approach, only_b))
      groups[approach, budget] = [
          RunConfig(NAME, arm, seed, data, cli.encoder_spec(), train,
                    pretrain=pretrain if approach in TRANSFER_ARMS else None)
          for seed in range(cli.SEEDS.value)]
  return groups


def main(argv):
  del argv
  groups = run_groups()
  out = cli.out_dir(NAME)
  start = time.perf_counter()
  a, b = TASK_A.value, TASK_B.value
  print(f"{NAME}: A = {a} (all labels), B = {b}; {len(groups)} groups (approach x B labels) "
        f"of {cli.SEEDS.value} seeds", flush=True)
  results_path, done = cli.train_pending(list(groups.values()), out)

  rows = []
  for (approach, budget), group in groups.items():
    records = [done[c.hash] for c in group]
    keys = dict(b_budget=budget, task_a=a, task_b=b)
    rows += [r for r in summarize_arms({approach: records}, records[0]["task_names"], keys)
             if r["task"] == b]
  first = next(iter(groups.values()))[0]
  title = (f"{first.data.dataset}: A = {a}, B = {b}, {first.encoder.kind} width {first.encoder.width} "
           f"depth {first.encoder.depth}, {first.data.num_train or 'all'} train, {first.train.epochs} "
           f"epochs, {cli.SEEDS.value} seeds (95% CI)")
  written = write_summary_and_plots(out, NAME, rows, title, plot_transfer_vs_mtl)

  cell = {(r["arm"], r["b_budget"]): r for r in rows if r["split"] == "test" and r["metric"] == "auc"}
  print(f"\nTest ROC-AUC of B = {b}, mean ± 95% CI over {cli.SEEDS.value} seeds:")
  print(f"{'B labels':>8} " + " ".join(f"{approach:>17}" for approach in APPROACHES))
  for budget in b_budgets():
    print(f"{budget:>8} " + " ".join(
        format_cell(cell[approach, budget]).rjust(17)
        for approach in APPROACHES))
  print(f"\nwrote {results_path}, {', '.join(written)} ({time.perf_counter() - start:.0f}s)")


if __name__ == "__main__":
  cli.run(main)
