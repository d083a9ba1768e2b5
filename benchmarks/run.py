"""The benchmark suite: training throughput of joint and separate networks next to an
equivalent PyTorch eager loop in the same process, and the other costs a user meets.

  python -m benchmarks.run [--quick] [--json=benchmarks.json] [--launch]

Prints one table per question and writes every row to --json:
  joint      examples/s of one joint network per encoder and width of the size sweep,
             JAX (jit, epoch = lax.scan) vs PyTorch eager, and the JAX compile time;
  separate   T single-task networks as one program (vmapped, or in turn where
             models.nets_in_turn_default says so: MLPs on a CPU; the jax_vmapped
             columns) vs a loop over the same T networks (JAX), and vs PyTorch
             training them in a loop (benchmarks/separate_strategies.py compares
             the ways of running them);
  tasks      the joint step's cost as T grows from 4 to 40;
  seeds      three seeds in one program, vmapped vs in turn;
  micro_batch  CNN steps with the gradient over the whole batch vs over micro-batches;
  flops      achieved FLOP/s of the widest networks, float32 and bfloat16, against the
             device's own large-matmul rate;
  data       scenes generated per second;
  memory     peak host RSS (and device memory where the backend reports it);
  launch     wall time of `python launch.py` with no flags (only with --launch).
Ratios are taken within one run, side by side, because this machine is shared and noisy.
Only one seed is trained, so that both frameworks train exactly one model per network.
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Optional

import jax
import numpy as np
from absl import app, flags, logging

from benchmarks import torch_reference
from mtl_jax.data import driving
from mtl_jax.losses import masked_logistic_loss
from mtl_jax.models import DTYPES, EncoderSpec, joint_model, make_model
from mtl_jax.provenance import provenance
from mtl_jax.micro_batch import choose_micro_batch
from mtl_jax.train import TrainConfig, train

QUICK = flags.DEFINE_bool("quick", False, "Fewer widths and steps: a check in about 2 minutes.")
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
                          micro_batch=None, between_epochs=None) -> tuple[float, float]:
  """Median over epochs after the first (which pays for warming up the executable), per
  step, and the compile time. Each epoch is one lax.scan, timed to its one host sync.
  `between_epochs()` runs after every epoch, outside the timing: a reference measured
  there samples the same moments of this shared machine as the JAX epochs do."""
  starts, ends = [None], []

  def log(epoch, loss):
    ends.append(time.perf_counter())
    if between_epochs:
      between_epochs()
    starts.append(time.perf_counter())

  result = train(model, x, y, list(seeds), TrainConfig(batch_size=BATCH, epochs=epochs), log=log,
                 seeds_in_turn=seeds_in_turn, micro_batch=micro_batch)
  steps_per_epoch = result.steps // epochs
  epoch_seconds = [end - start for start, end in zip(starts[1:], ends[1:])]
  return float(np.median(epoch_seconds)) / steps_per_epoch, result.compile_seconds


def _interleaved(model, x, y, epochs: int, torch_stepper, torch_steps: int) -> tuple[float, float, Optional[float]]:
  """JAX seconds per step, its compile time, and PyTorch seconds per step (None without
  torch), with `torch_steps` PyTorch steps spread over the gaps between JAX epochs."""
  torch_times = []
  between = torch_stepper and (lambda: torch_times.extend(torch_stepper(-(-torch_steps // epochs))))
  jax_s, compile_s = _jax_seconds_per_step(model, x, y, epochs, between_epochs=between)
  return jax_s, compile_s, float(np.median(torch_times)) if torch_times else None


def joint_rows(x, y, epochs: int, torch_steps: int) -> list[dict]:
  rows = []
  for kind, widths in WIDTHS.items():
    for width in widths[1::2] if QUICK.value else widths:
      spec = EncoderSpec(kind, width, DEPTH[kind])
      stepper = torch_reference.available() and torch_reference.joint_stepper(kind, width, spec.depth, x, y, BATCH)
      jax_s, compile_s, torch_s = _interleaved(joint_model(spec, y.shape[1], x.shape[1:]), x, y, epochs,
                                               stepper, torch_steps)
      row = dict(table="joint", encoder=kind, width=width, depth=spec.depth, tasks=y.shape[1],
                 jax_examples_per_s=round(BATCH / jax_s), jax_compile_s=round(compile_s, 2))
      if torch_s:
        row.update(torch_examples_per_s=round(BATCH / torch_s), jax_over_torch=round(torch_s / jax_s, 2))
      rows.append(row)
      _print(row)
  return rows


def separate_rows(x, y_all, epochs: int, torch_steps: int) -> list[dict]:
  rows = []
  for kind, width in (("cnn", 16), ("mlp", 256)):
    spec = EncoderSpec(kind, width, DEPTH[kind])
    for num_tasks in (4,) if QUICK.value else (4, 16, 40):
      y = y_all[:, :num_tasks]
      stepper = torch_reference.available() and torch_reference.separate_stepper(kind, width, spec.depth, x, y, BATCH)
      vmapped_s, compile_s, torch_s = _interleaved(make_model("separate", spec, num_tasks, x.shape[1:]), x, y,
                                                   epochs, stepper, torch_steps)
      single = joint_model(spec, 1, x.shape[1:])
      loop_s = sum(_jax_seconds_per_step(single, x, y[:, j:j + 1], epochs)[0] for j in range(num_tasks))
      row = dict(table="separate", encoder=kind, width=width, depth=spec.depth, tasks=num_tasks,
                 jax_vmapped_examples_per_s=round(BATCH / vmapped_s),
                 jax_loop_examples_per_s=round(BATCH / loop_s),
                 vmapped_over_loop=round(loop_s / vmapped_s, 2), jax_compile_s=round(compile_s, 2))
      if torch_s:
        row.update(torch_loop_examples_per_s=round(BATCH / torch_s),
                   jax_over_torch=round(torch_s / vmapped_s, 2))
      rows.append(row)
      _print(row)
  return rows


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
  epochs, torch_steps = (4, 12) if QUICK.value else (6, 30)
  x, y_all = _data(NUM_SCENES, 40)
  y4 = y_all[:, :4]
  print(f"{provenance()['device']}, jax {jax.__version__}, batch {BATCH}, {NUM_SCENES} training scenes "
        f"32x32, Adam; PyTorch reference: "
        f"{'torch ' + __import__('torch').__version__ if torch_reference.available() else 'not installed (pip install torch==2.13.0)'}")
  rows = []
  for title, measure in [("joint network, one seed", lambda: joint_rows(x, y4, epochs, torch_steps)),
                         ("separate networks", lambda: separate_rows(x, y_all, epochs, torch_steps)),
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
