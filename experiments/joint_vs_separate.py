"""Joint vs separate networks: one shared encoder with T heads against T single-task
networks of the same architecture, on the same data, splits, steps and seeds.

Run:  python launch.py                       (or: python -m experiments.joint_vs_separate)
      python launch.py --encoder=mlp --width=256 --seeds=5 --out_dir=runs/mlp
Time: about 2.5 minutes with the defaults on a 2-core CPU (6000 training scenes, CNN
      width 32 depth 3, 12 epochs, 3 seeds, both arms).
Finds: see the README; the table printed at the end gives mean and 95% CI per task.
Writes: OUT_DIR/results.jsonl (one line per arm and seed, with its full config),
      OUT_DIR/summary.csv and OUT_DIR/joint_vs_separate.png.
"""
import os
import time

import numpy as np
from absl import flags

from experiments import cli
from mtl_jax import metrics
from mtl_jax.data.datasets import check_data_config, load_dataset
from mtl_jax.plots import plot_joint_vs_separate
from mtl_jax.results import RESULTS_FILE, SUMMARY_FILE, append_result, mean_ci95, read_results, write_csv
from mtl_jax.runs import ARMS, EVAL_SPLITS, RunConfig, run_arm

flags.adopt_module_key_flags(cli)

NAME = "joint_vs_separate"
PLOT_FILE = f"{NAME}.png"
DIFF_ARM = "joint_minus_separate"


def run_configs() -> dict[str, list[RunConfig]]:
  data, encoder, train = cli.data_config(), cli.encoder_spec(), cli.train_config()
  check_data_config(data)
  return {arm: [RunConfig(NAME, arm, seed, data, encoder, train) for seed in range(cli.SEEDS.value)]
          for arm in ARMS}


def _metric_values(record: dict, split: str, metric: str, task_index):
  m = record["metrics"][split][metric]
  value = m["mean"] if task_index is None else m["per_task"][task_index]
  return np.nan if value is None else value


def summarize(records_by_arm: dict[str, list[dict]], task_names) -> list[dict]:
  """Mean and 95% CI over seeds per split, metric, task and arm, plus the paired
  per-seed difference joint - separate (same seed = same data order)."""
  rows = []
  tasks = list(enumerate(task_names)) + [(None, "mean")]
  for split in EVAL_SPLITS:
    for metric in metrics.METRICS:
      for index, task in tasks:
        values = {arm: np.array([_metric_values(r, split, metric, index) for r in records_by_arm[arm]])
                  for arm in ARMS}
        values[DIFF_ARM] = values["joint"] - values["separate"]
        for arm, v in values.items():
          mean, ci, n = mean_ci95(v)
          rows.append(dict(split=split, metric=metric, task=task, arm=arm,
                           mean=round(mean, 5), ci95=round(ci, 5), n=n))
  return rows


def format_table(rows: list[dict], split: str = "test") -> str:
  cell = {(r["metric"], r["task"], r["arm"]): r for r in rows if r["split"] == split}
  tasks = list(dict.fromkeys(r["task"] for r in rows))
  fmt = lambda r: f"{r['mean']:.3f} ± {r['ci95']:.3f}" if r["n"] > 1 else f"{r['mean']:.3f}"
  header = (f"{'task':<14} {'AUC joint':>15} {'AUC separate':>15} {'AUC joint-sep':>15}"
            f" {'AP joint':>15} {'AP separate':>15}")
  lines = [header, "-" * len(header)]
  for task in tasks:
    lines.append(f"{task:<14} {fmt(cell['auc', task, 'joint']):>15} {fmt(cell['auc', task, 'separate']):>15}"
                 f" {fmt(cell['auc', task, DIFF_ARM]):>15} {fmt(cell['ap', task, 'joint']):>15}"
                 f" {fmt(cell['ap', task, 'separate']):>15}")
  return "\n".join(lines)


def _progress(arm: str, epochs: int, start: float):
  def log(epoch: int, loss_S: np.ndarray):
    print(f"  [{arm:>8}] epoch {epoch:>3}/{epochs}  train J {loss_S.mean():.4f}"
          f" (mean of {loss_S.size} seeds)  {time.perf_counter() - start:6.1f}s", flush=True)
  return log


def _write_atomically(path: str, write) -> None:
  # The temporary name keeps the extension, which matplotlib reads to pick the format.
  tmp = os.path.join(os.path.dirname(path), ".partial-" + os.path.basename(path))
  write(tmp)
  os.replace(tmp, path)


def main(argv):
  del argv
  configs = run_configs()
  out = cli.out_dir(NAME)  # checked before the slow part; created by the first record
  first = configs["joint"][0]
  start = time.perf_counter()
  data = load_dataset(first.data)
  print(f"{NAME}: dataset {data.name} {data.input_shape}, train/val/test "
        f"{len(data.train.y)}/{len(data.val.y)}/{len(data.test.y)}, tasks {', '.join(data.task_names)}, "
        f"missing {first.data.missing_frac:.0%} of train labels ({time.perf_counter() - start:.1f}s)")
  results_path = os.path.join(out, RESULTS_FILE)
  done = {r["hash"]: r for r in read_results(results_path)}

  for arm, arm_configs in configs.items():
    todo = [c for c in arm_configs if c.hash not in done]
    if not todo:
      print(f"  [{arm:>8}] all {len(arm_configs)} seeds already in {results_path}; skipped")
      continue
    arm_start = time.perf_counter()
    print(f"  [{arm:>8}] training seeds {[c.seed for c in todo]} for {first.train.epochs} epochs")
    for record in run_arm(todo, data, _progress(arm, first.train.epochs, arm_start)):
      append_result(results_path, record)
      done[record["hash"]] = record
    print(f"  [{arm:>8}] {record['param_count']:,} parameters per seed, "
          f"{record['train_steps'] / record['train_seconds_all_seeds']:.1f} steps/s for all seeds together")

  records_by_arm = {arm: [done[c.hash] for c in arm_configs] for arm, arm_configs in configs.items()}
  rows = summarize(records_by_arm, data.task_names)
  summary_path = os.path.join(out, SUMMARY_FILE)
  _write_atomically(summary_path, lambda p: write_csv(p, rows))
  params = {arm: records_by_arm[arm][0]["param_count"] for arm in ARMS}
  title = (f"{first.data.dataset}: {first.encoder.kind} width {first.encoder.width} depth {first.encoder.depth}, "
           f"{first.data.num_train} train, {first.data.missing_frac:.0%} labels missing, "
           f"{len(configs['joint'])} seeds (95% CI)\n"
           f"joint {params['joint']:,} params, separate {params['separate']:,} params")
  plot_path = os.path.join(out, PLOT_FILE)
  _write_atomically(plot_path, lambda p: plot_joint_vs_separate(summary_path, p, title))
  print(f"\nTest metrics, mean ± 95% CI over {len(configs['joint'])} seeds:")
  print(format_table(rows))
  print(f"\nwrote {results_path}, {summary_path}, {plot_path} ({time.perf_counter() - start:.0f}s)")


if __name__ == "__main__":
  cli.run(main)
