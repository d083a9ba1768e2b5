"""The benchmark suite: the speed a user would see of this package's training, against
PyTorch eager and torch.compile, and the other costs a user meets.

  python -m benchmarks.run [--quick] [--json=benchmarks.json] [--launch]

Prints one table per question and writes every row to --json:
  frameworks  ms per step of one joint network per encoder and width of the size sweep,
             and of T = 4, 16, 40 separate networks (JAX vmapped, a loop over the T
             networks, and in turn where the package has it), in JAX, PyTorch eager and
             torch.compile: every framework and case in its own fresh process, alternated
             over rounds, best of rounds with their spread, and no ratio printed from a
             measurement that looks pathological (benchmarks/frameworks.py);
  tasks      the joint step's cost as T grows from 4 to 40;
  seeds      three seeds in one program, vmapped vs in turn;
  micro_batch  CNN steps with the gradient over the whole batch vs over micro-batches;
  flops      achieved FLOP/s of the widest networks, float32 and bfloat16, against the
             device's own large-matmul rate;
  data       scenes generated per second;
  memory     peak host RSS (and device memory where the backend reports it);
  launch     wall time of `python launch.py` with no flags (only with --launch).
The JAX-only tables run in this process; their ratios are taken within one run, side
by side, because a shared machine is noisy. Only one seed is trained in the framework
table, so that every framework trains exactly one model per network.
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
from absl import app, flags, logging

from benchmarks import frameworks
from mtl_jax.data import driving
from mtl_jax.losses import masked_logistic_loss
from mtl_jax.models import DTYPES, EncoderSpec, joint_model, make_model
from mtl_jax.provenance import provenance
from mtl_jax.micro_batch import choose_micro_batch
from mtl_jax.train import TrainConfig, train

QUICK = flags.DEFINE_bool("quick", False, "Fewer widths and steps, one round: a smoke check of a few minutes.")
JSON = flags.DEFINE_string("json", "benchmarks.json", "Where to write every row.")
LAUNCH = flags.DEFINE_bool("launch", False, "Also time `python launch.py` with no flags (about 2.5 min).")
BATCH = 128
NUM_SCENES = 2048  # 16 steps per epoch
WIDTHS = {"cnn": [4, 8, 16, 32, 64], "mlp": [64, 128, 256, 512]}
DEPTH = {"cnn": 3, "mlp": 2}


def _data(num: int, num_tasks: int):
  """Driving scenes with random labels: speed does not depend on what the labels say."""
  x, _ = driving.render_scenes(num, 0)
  y = np.random.default_rng(0).integers(0, 2, (num, num_tasks)).astype(np.int8)
  return x, y


def _jax_seconds_per_step(model, x, y, epochs: int, seeds=(0,), seeds_in_turn=None,
                          micro_batch=None) -> tuple[float, float]:
  """Median over epochs after the first (which pays for warming up the executable), per
  step, and the compile time. Each epoch is one lax.scan, timed to its one host sync."""
  ends = []
  result = train(model, x, y, list(seeds), TrainConfig(batch_size=BATCH, epochs=epochs),
                 log=lambda epoch, loss: ends.append(time.perf_counter()),
                 seeds_in_turn=seeds_in_turn, micro_batch=micro_batch)
  steps_per_epoch = result.steps // epochs
  return float(np.median(np.diff(ends))) / steps_per_epoch, result.compile_seconds


def framework_rows() -> list[dict]:
  """The joint and separate networks in JAX, PyTorch eager and torch.compile, each run in
  its own process (benchmarks/frameworks.py): in this process PyTorch's OpenMP threads
  and XLA's would fight over the cores, which made PyTorch up to 100x slower."""
  rounds = 1 if QUICK.value else 2
  rows = frameworks.measure(QUICK.value, rounds)
  print("\n" + frameworks.header(rows, rounds) + "\n\n" + frameworks.tables(rows, QUICK.value), flush=True)
  return [{"table": "frameworks", **row} for row in rows]


def task_rows(x, y_all, epochs: int) -> list[dict]:
  rows = []
  for kind, width in (("cnn", 32), ("mlp", 256)):
    spec = EncoderSpec(kind, width, DEPTH[kind])
    base = None
    for num_tasks in (4, 40) if QUICK.value else (4, 10, 20, 40):
      step_s, _ = _jax_seconds_per_step(joint_model(spec, num_tasks, x.shape[1:]), x,
                                        y_all[:, :num_tasks], epochs)
      base = base or step_s
      row = dict(table="tasks", encoder=kind, width=width, tasks=num_tasks,
                 ms_per_step=round(1000 * step_s, 2), cost_over_4_tasks=round(step_s / base, 2))
      rows.append(row)
      _print(row)
  return rows


def seed_rows(x, y, epochs: int) -> list[dict]:
  """Three seeds in one program: vmapped, or in turn (lax.map), the CPU default."""
  rows = []
  for arm in ("joint", "separate"):
    model = make_model(arm, EncoderSpec("cnn", 32, 3), y.shape[1], x.shape[1:])
    vmapped_s, _ = _jax_seconds_per_step(model, x, y, epochs, (0, 1, 2), seeds_in_turn=False)
    in_turn_s, _ = _jax_seconds_per_step(model, x, y, epochs, (0, 1, 2), seeds_in_turn=True)
    row = dict(table="seeds", arm=arm, encoder="cnn", width=32, seeds=3,
               vmapped_ms_per_step=round(1000 * vmapped_s, 1), in_turn_ms_per_step=round(1000 * in_turn_s, 1),
               in_turn_speedup=round(vmapped_s / in_turn_s, 2))
    rows.append(row)
    _print(row)
  return rows


def micro_batch_rows(x, y, epochs: int) -> list[dict]:
  """The gradient over the whole batch at once vs summed over micro-batches of the
  size that train() picks by default on a CPU (choose_micro_batch)."""
  rows = []
  for arm, width in [("joint", 16), ("joint", 32), ("joint", 64), ("separate", 16)]:
    model = make_model(arm, EncoderSpec("cnn", width, 3), y.shape[1], x.shape[1:])
    micro = choose_micro_batch(model, model.init(jax.random.PRNGKey(0)), x[:5], y[:5], BATCH)
    # Alternated over rounds, the best round of each kept: a burst of load from other
    # users of the machine then slows one round, not one side of the comparison.
    rounds = [[_jax_seconds_per_step(model, x, y, epochs, micro_batch=size)[0] for size in (BATCH, micro)]
              for _ in range(1 if QUICK.value else 3)]
    whole_s, micro_s = np.min(rounds, axis=0)
    row = dict(table="micro_batch", arm=arm, encoder="cnn", width=width, tasks=y.shape[1], micro_batch=micro,
               whole_batch_ms_per_step=round(1000 * whole_s, 1), micro_batch_ms_per_step=round(1000 * micro_s, 1),
               micro_batch_speedup=round(whole_s / micro_s, 2))
    rows.append(row)
    _print(row)
  return rows


def _matmul_flop_per_s(dtype: str, size: int = 4096) -> float:
  """The device's measured rate for one large square matmul in `dtype`."""
  a = jax.device_put(np.ones((size, size), np.float32)).astype(dtype)
  matmul = jax.jit(lambda a: a @ a)
  jax.block_until_ready(matmul(a))
  times = []
  for _ in range(5):
    start = time.perf_counter()
    jax.block_until_ready(matmul(a))
    times.append(time.perf_counter() - start)
  return 2 * size ** 3 / float(np.median(times))


def flop_rows(x, y, epochs: int) -> list[dict]:
  """Achieved FLOP/s of the widest joint CNN and MLP, float32 and bfloat16 compute:
  XLA's count of one gradient step's floating-point operations over its measured time,
  against the same device's rate for a large matmul in that dtype."""
  rows = []
  matmul_rate = {dtype: _matmul_flop_per_s(dtype) for dtype in DTYPES}
  for kind in ("cnn", "mlp"):
    for dtype in DTYPES:
      model = joint_model(EncoderSpec(kind, WIDTHS[kind][-1], DEPTH[kind], dtype), y.shape[1], x.shape[1:])
      step_s, _ = _jax_seconds_per_step(model, x, y, epochs)
      grad = jax.jit(jax.grad(lambda p, xb, yb: masked_logistic_loss(model.apply(p, xb), yb)))
      flops = grad.lower(model.init(jax.random.PRNGKey(0)), x[:BATCH], y[:BATCH]).compile().cost_analysis()["flops"]
      row = dict(table="flops", encoder=kind, width=WIDTHS[kind][-1], dtype=dtype, ms_per_step=round(1000 * step_s, 2),
                 gflop_per_step=round(flops / 1e9, 3), achieved_tflop_per_s=round(flops / step_s / 1e12, 3),
                 matmul_tflop_per_s=round(matmul_rate[dtype] / 1e12, 3),
                 fraction_of_matmul_rate=round(flops / step_s / matmul_rate[dtype], 2))
      rows.append(row)
      _print(row)
  return rows


def data_row() -> dict:
  driving.render_scenes(256, 1)  # compiles the renderer
  start = time.perf_counter()
  driving.render_scenes(10_000, 2)
  row = dict(table="data", scenes_per_s=round(10_000 / (time.perf_counter() - start)))
  _print(row)
  return row


def memory_row() -> dict:
  stats = jax.devices()[0].memory_stats() or {}
  row = dict(table="memory", host_peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
             device_peak_mb=round(stats["peak_bytes_in_use"] / 2**20) if "peak_bytes_in_use" in stats else None)
  _print(row)
  return row


def launch_row() -> dict:
  with tempfile.TemporaryDirectory() as out:
    start = time.perf_counter()
    subprocess.run([sys.executable, "launch.py", f"--out_dir={out}"], check=True,
                   capture_output=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    row = dict(table="launch", seconds=round(time.perf_counter() - start, 1))
  _print(row)
  return row


def _print(row: dict) -> None:
  print("  " + "  ".join(f"{k}={v}" for k, v in row.items() if k != "table"), flush=True)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  epochs = 4 if QUICK.value else 6
  x, y_all = _data(NUM_SCENES, 40)
  y4 = y_all[:, :4]
  print(f"{provenance()['device']}, jax {jax.__version__}, batch {BATCH}, {NUM_SCENES} training scenes "
        f"32x32, Adam")
  rows = []
  for title, measure in [("JAX, PyTorch eager and torch.compile, each in its own process", framework_rows),
                         ("joint step as T grows", lambda: task_rows(x, y_all, epochs)),
                         ("3 seeds in one program", lambda: seed_rows(x, y4, epochs)),
                         ("micro-batches (CPU default) vs the whole batch", lambda: micro_batch_rows(x, y4, epochs)),
                         ("achieved FLOP/s, float32 and bfloat16", lambda: flop_rows(x, y4, epochs)),
                         ("data generation", lambda: [data_row()]),
                         ("memory", lambda: [memory_row()])] + (
                             [("launch.py with no flags", lambda: [launch_row()])] if LAUNCH.value else []):
    print(f"\n{title}:", flush=True)
    rows += measure()
  with open(JSON.value, "w") as f:
    json.dump({"provenance": provenance(), "rows": rows}, f, indent=1)
  print(f"\nwrote {JSON.value}")


if __name__ == "__main__":
  app.run(main)
