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
import time

from absl import flags

from experiments import cli
from mtl_jax.data.datasets import check_data_config
from mtl_jax.plots import plot_joint_vs_separate
from mtl_jax.results import DIFF_ARM, format_cell, summarize_arms, write_summary_and_plots
from mtl_jax.runs import ARMS, RunConfig

flags.adopt_module_key_flags(cli)

NAME = "joint_vs_separate"


def run_configs() -> dict[str, list[RunConfig]]:
  data, encoder, train = cli.data_config(), cli.encoder_spec(), cli.train_config()
  check_data_config(data)
  return {arm: [RunConfig(NAME, arm, seed, data, encoder, train) for seed in range(cli.SEEDS.value)]
          for arm in ARMS}


def format_table(rows: list[dict], split: str = "test") -> str:
  cell = {(r["metric"], r["task"], r["arm"]): r for r in rows if r["split"] == split}
  tasks = list(dict.fromkeys(r["task"] for r in rows))
  fmt = format_cell
  header = (f"{'task':<14} {'AUC joint':>15} {'AUC separate':>15} {'AUC joint-sep':>15}"
            f" {'AP joint':>15} {'AP separate':>15}")
  lines = [header, "-" * len(header)]
  for task in tasks:
    lines.append(f"{task:<14} {fmt(cell['auc', task, 'joint']):>15} {fmt(cell['auc', task, 'separate']):>15}"
                 f" {fmt(cell['auc', task, DIFF_ARM]):>15} {fmt(cell['ap', task, 'joint']):>15}"
                 f" {fmt(cell['ap', task, 'separate']):>15}")
  return "\n".join(lines)


def main(argv):
  del argv
  configs = run_configs()
  out = cli.out_dir(NAME)  # checked before the slow part; created by the first record
  first = configs["joint"][0]
  start = time.perf_counter()
  print(f"{NAME}: joint vs separate {first.encoder.kind} networks, {len(configs['joint'])} seeds", flush=True)
  results_path, done = cli.train_pending(list(configs.values()), out)

  records_by_arm = {arm: [done[c.hash] for c in arm_configs] for arm, arm_configs in configs.items()}
  rows = summarize_arms(records_by_arm, records_by_arm["joint"][0]["task_names"])
  params = {arm: records_by_arm[arm][0]["param_count"] for arm in ARMS}
  title = (f"{first.data.dataset}: {first.encoder.kind} width {first.encoder.width} depth {first.encoder.depth}, "
           f"{first.data.num_train or 'all'} train, {first.data.missing_frac:.0%} labels missing, "
           f"{len(configs['joint'])} seeds (95% CI)\n"
           f"joint {params['joint']:,} params, separate {params['separate']:,} params")
  written = write_summary_and_plots(out, NAME, rows, title, plot_joint_vs_separate)
  print(f"\nTest metrics, mean ± 95% CI over {len(configs['joint'])} seeds:")
  print(format_table(rows))
  print(f"\nwrote {results_path}, {', '.join(written)} ({time.perf_counter() - start:.0f}s)")


if __name__ == "__main__":
  cli.run(main)
