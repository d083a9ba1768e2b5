"""One framework, one case, timed in this process alone; prints one JSON row as its last line.

  python benchmarks/framework_case.py --framework=jax --case=joint --encoder=cnn --width=16
  python benchmarks/framework_case.py --framework=torch_eager --case=separate --encoder=mlp \
      --width=256 --tasks=16
  python benchmarks/framework_case.py --framework=jax --case=separate --strategy=loop ...

Run by benchmarks/frameworks.py, each row in a fresh process: two frameworks in one
process fight over the cores with two thread pools (XLA's and PyTorch's OpenMP), which
made PyTorch's separate CNNs 100x slower than alone on a 2-core machine.

The row: ms_per_step (median of the timed repeats), repeat_ms (every timed repeat, per
step), warmup_s (from the start of training to the first timed repeat: init, compile,
one untimed repeat), compile_s (as the framework reports it), threads, versions; or
`error` (and ms_per_step null) when the case cannot run here (torch missing,
torch.compile failing, a JAX strategy this package lacks).

Both frameworks: batch 128, Adam (learning rate 3e-3), the masked logistic loss, one
seed, the same driving scenes and random labels, resident in memory before timing.
A repeat is `--steps` steps (an epoch of steps x 128 scenes, shuffled); JAX runs each
epoch as one compiled lax.scan through this package's own `train`.
JAX strategies for separate networks: vmap, in_turn and one_at_a_time (the strategies of
separate_models, models.SEPARATE_STRATEGIES), and loop (each network trained by its own
`train` call, one after another; its repeat is the sum of the T networks' repeats).
PyTorch as a user would set it up on a CPU: every core (set_num_threads(os.cpu_count())),
denormals flushed, channels_last for the CNN (--channels_last), data as tensors, T
separate networks trained in a Python loop; torch_compile wraps the forward pass and
loss in torch.compile (inductor) and warms it up before timing.
"""
import inspect
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np
from absl import app, flags

# Run as a script (by own_process, or by hand): the package is the checkout above this file.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import torch_reference  # noqa: E402 (after the path it needs)

FRAMEWORK = flags.DEFINE_enum("framework", "jax", ["jax", "torch_eager", "torch_compile"], "Which framework.")
CASE = flags.DEFINE_enum("case", "joint", ["joint", "separate"], "One joint network, or T separate ones.")
ENCODER = flags.DEFINE_enum("encoder", "cnn", ["cnn", "mlp"], "Encoder kind.")
WIDTH = flags.DEFINE_integer("width", 16, "Encoder width.", lower_bound=1)
DEPTH = flags.DEFINE_integer("depth", None, "Encoder depth (default: 3 for a CNN, 2 for an MLP).")
TASKS = flags.DEFINE_integer("tasks", 4, "Number of tasks T.", lower_bound=1)
STEPS = flags.DEFINE_integer("steps", 16, "Steps per repeat (an epoch of steps x 128 scenes).", lower_bound=1)
REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repeats after the untimed first one.", lower_bound=1)
STRATEGY = flags.DEFINE_enum("strategy", "vmap", ["vmap", "in_turn", "one_at_a_time", "loop"],
                              "JAX separate networks: how (a strategy of separate_models, or the loop).")
CHANNELS_LAST = flags.DEFINE_bool("channels_last", True, "PyTorch CNN in channels_last memory format.")
TORCH_ADAM = flags.DEFINE_enum("torch_adam", torch_reference.TORCH_ADAMS[0], list(torch_reference.TORCH_ADAMS),
                               "PyTorch's Adam: fused, its CPU default (a loop over tensors), or foreach.")
TORCH_THREADS = flags.DEFINE_integer("torch_threads", None, "PyTorch threads (default: os.cpu_count(), every core).")
DATA = flags.DEFINE_string("data", None, "An .npz of scenes (x) and labels (y) to read; made if missing.")
WRITE_DATA = flags.DEFINE_string("write_data", None, "Only write the scenes to this .npz (steps x 128 of them).")
BATCH, LEARNING_RATE, MAX_TASKS = 128, 3e-3, 40
DEFAULT_DEPTH = {"cnn": 3, "mlp": 2}


class Unavailable(Exception):
  """This case cannot run here; the row says why instead of timing it."""


def write_data(path: str, num: int) -> None:
  """Driving scenes and random labels for MAX_TASKS tasks (speed does not depend on what
  the labels say), as benchmarks/run.py trains on; a case uses the first T columns."""
  from mtl_jax.data import driving
  x, _ = driving.render_scenes(num, 0)
  y = np.random.default_rng(0).integers(0, 2, (num, MAX_TASKS)).astype(np.int8)
  np.savez(path, x=x, y=y)


def _data(num_tasks: int, num: int, in_this_process: bool, scratch: str) -> tuple[np.ndarray, np.ndarray]:
  """The scenes, rendered here only for JAX: the renderer is JAX, and its thread pool has
  no business in a PyTorch process, so PyTorch gets them from a child process."""
  path = DATA.value or os.path.join(scratch, "scenes.npz")
  if not os.path.exists(path):
    if in_this_process:
      write_data(path, num)
    else:
      subprocess.run([sys.executable, os.path.abspath(__file__), f"--write_data={path}", f"--steps={STEPS.value}"],
                     check=True, capture_output=True)
  data = np.load(path)
  if len(data["x"]) < num:
    raise ValueError(f"{path} holds {len(data['x'])} scenes; this case needs {num}")
  return data["x"][:num], data["y"][:num, :num_tasks]


def _threads_common() -> dict:
  return {"os_cpu_count": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
          "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "XLA_FLAGS": os.environ.get("XLA_FLAGS")}


def _summary(repeat_s: list[float], steps: int) -> dict:
  per_step_ms = [1000 * s / steps for s in repeat_s]
  return {"ms_per_step": float(np.median(per_step_ms)), "repeat_ms": [round(t, 3) for t in per_step_ms]}


# --- JAX -----------------------------------------------------------------------------

def _jax_train(model, x, y) -> tuple[list[float], float, float]:
  """Seconds of each timed epoch, the warm-up seconds and the compile seconds of one
  `train` call: REPEATS + 1 epochs, the first untimed (it warms the executable up)."""
  from mtl_jax.train import TrainConfig, train
  ends = []
  start = time.perf_counter()
  result = train(model, x, y, [0], TrainConfig(batch_size=BATCH, epochs=REPEATS.value + 1,
                                                learning_rate=LEARNING_RATE),
                 log=lambda epoch, loss: ends.append(time.perf_counter()))
  return list(np.diff(ends)), ends[0] - start, result.compile_seconds


def _jax_models(spec, x, y) -> list[tuple]:
  """(model, labels) pairs that the case trains one after another."""
  from mtl_jax.models import joint_model, separate_models
  shape, num_tasks = x.shape[1:], y.shape[1]
  if CASE.value == "joint":
    return [(joint_model(spec, num_tasks, shape), y)]
  if STRATEGY.value == "loop":
    return [(joint_model(spec, 1, shape), y[:, j:j + 1]) for j in range(num_tasks)]
  # Older checkouts of the package lack the strategy keyword (they vmapped): say so.
  if "strategy" not in inspect.signature(separate_models).parameters:
    if STRATEGY.value != "vmap":
      raise Unavailable(f"unavailable (no strategy {STRATEGY.value!r} in this checkout)")
    return [(separate_models(spec, num_tasks, shape), y)]
  return [(separate_models(spec, num_tasks, shape, strategy=STRATEGY.value), y)]


def jax_row(x, y, depth: int) -> dict:
  import jax
  from mtl_jax.models import EncoderSpec
  spec = EncoderSpec(ENCODER.value, WIDTH.value, depth)
  runs = [_jax_train(model, x, labels) for model, labels in _jax_models(spec, x, y)]
  repeat_s = list(np.sum([r[0] for r in runs], axis=0))  # the loop: the T networks' repeats, summed
  return {**_summary(repeat_s, STEPS.value), "warmup_s": sum(r[1] for r in runs),
          "compile_s": sum(r[2] for r in runs), "threads": _threads_common(),
          "versions": {"jax": jax.__version__, "backend": jax.default_backend()}}


# --- PyTorch -------------------------------------------------------------------------

def _torch_setup() -> dict:
  """What a user would set on a CPU; returns the settings for the row."""
  import torch
  torch.set_num_threads(TORCH_THREADS.value or os.cpu_count())
  torch.set_flush_denormal(True)
  torch.manual_seed(0)
  return {**_threads_common(), "torch_threads": torch.get_num_threads(),
          "torch_interop_threads": torch.get_num_interop_threads(), "flush_denormal": True,
          "inductor_cache": "fresh", "adam": TORCH_ADAM.value,
          "channels_last": CHANNELS_LAST.value and ENCODER.value == "cnn"}


def _torch_tensors(x: np.ndarray, y: np.ndarray):
  """Float images scaled as the JAX encoders scale them (models.PIXEL_SCALE), NCHW."""
  import torch
  x = x.astype(np.float32)
  x = x / 255.0 if ENCODER.value == "cnn" else x / 127.5 - 1.0
  xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
  if CHANNELS_LAST.value and ENCODER.value == "cnn":
    xt = xt.contiguous(memory_format=torch.channels_last)
  return xt, torch.from_numpy(y.astype(np.float32))


def _torch_trainers(input_shape: tuple[int, ...], num_tasks: int, depth: int):
  """(network, label columns, Adam) per network: one joint network, or T single-task ones."""
  import torch
  network = lambda tasks: torch_reference.network(ENCODER.value, WIDTH.value, depth, tasks, input_shape)
  if CASE.value == "joint":
    nets = [(network(num_tasks), slice(None))]
  else:
    nets = [(network(1), slice(j, j + 1)) for j in range(num_tasks)]
  if CHANNELS_LAST.value and ENCODER.value == "cnn":
    nets = [(net.to(memory_format=torch.channels_last), columns) for net, columns in nets]
  adam = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[TORCH_ADAM.value]
  return [(net, columns, torch.optim.Adam(net.parameters(), lr=LEARNING_RATE, **adam))
          for net, columns in nets]


def _torch_loss_fn(compiled: bool):
  import torch

  def loss(net, xb, yb):
    return torch_reference.masked_logistic_loss(net(xb), yb)
  # One compiled function for every network: PyTorch traces the modules' parameters as
  # inputs, so the T same-shaped separate networks share one compiled graph.
  return torch.compile(loss, dynamic=False) if compiled else loss


def _torch_epoch(trainers, loss_fn, xt, yt, generator) -> float:
  """One shuffled epoch of STEPS steps, each step training every network in turn, as a
  Python loop would; returns its seconds."""
  import torch
  start = time.perf_counter()
  order = torch.randperm(len(xt), generator=generator)
  for i in range(STEPS.value):
    batch = order[i * BATCH:(i + 1) * BATCH]
    xb, yb = xt[batch], yt[batch]
    for net, columns, optimizer in trainers:
      optimizer.zero_grad(set_to_none=True)
      loss_fn(net, xb, yb[:, columns]).backward()
      optimizer.step()
  return time.perf_counter() - start


def torch_row(x, y, depth: int) -> dict:
  import torch
  threads = _torch_setup()
  xt, yt = _torch_tensors(x, y)
  trainers = _torch_trainers(x.shape[1:], y.shape[1], depth)
  loss_fn = _torch_loss_fn(FRAMEWORK.value == "torch_compile")
  generator = torch.Generator().manual_seed(0)
  start = time.perf_counter()
  net, columns, _ = trainers[0]
  loss_fn(net, xt[:BATCH], yt[:BATCH, columns]).backward()  # compiles, for torch_compile
  compile_s = time.perf_counter() - start
  _torch_epoch(trainers, loss_fn, xt, yt, generator)  # untimed, as JAX's first epoch
  warmup_s = time.perf_counter() - start
  repeat_s = [_torch_epoch(trainers, loss_fn, xt, yt, generator) for _ in range(REPEATS.value)]
  return {**_summary(repeat_s, STEPS.value), "warmup_s": warmup_s, "compile_s": compile_s,
          "threads": threads, "versions": {"torch": torch.__version__}}


# --- the row -------------------------------------------------------------------------

def measure(scratch: str) -> dict:
  """The row of the case the flags name; `scratch` is a folder removed afterwards."""
  depth = DEPTH.value or DEFAULT_DEPTH[ENCODER.value]
  row = {"framework": FRAMEWORK.value, "case": CASE.value, "encoder": ENCODER.value, "width": WIDTH.value,
         "depth": depth, "tasks": TASKS.value, "strategy": STRATEGY.value if FRAMEWORK.value == "jax" else None,
         "batch": BATCH, "steps": STEPS.value, "repeats": REPEATS.value,
         "machine": platform.processor() or platform.machine(),
         # Other work on the machine shows here: PyTorch's OpenMP threads slow down
         # several-fold when the cores they spin on are busy.
         "load_average_at_start": os.getloadavg()[0]}
  try:
    if FRAMEWORK.value != "jax":
      # Set before torch is imported. A fresh inductor cache: torch.compile's compile time
      # is a first run's, as JAX's is (no persistent cache), not a hit from an earlier case.
      os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(scratch, "inductor")
    if FRAMEWORK.value != "jax" and not torch_reference.available():
      raise Unavailable("torch not installed")
    x, y = _data(TASKS.value, STEPS.value * BATCH, FRAMEWORK.value == "jax", scratch)
    row.update(jax_row(x, y, depth) if FRAMEWORK.value == "jax" else torch_row(x, y, depth))
  except Unavailable as e:
    row.update(ms_per_step=None, error=str(e), unavailable=True)
  except Exception as e:  # noqa: BLE001 -- a failing case is a row, not a crash of the whole table
    traceback.print_exc()  # the whole story on stderr; the row gets its first line
    first_line = (str(e).strip().splitlines() or [""])[0]
    row.update(ms_per_step=None, error=f"{type(e).__name__}: {first_line[:300]}")
  return row


def main(argv):
  del argv
  from absl import logging
  logging.set_verbosity(logging.WARNING)  # no start-up chatter about absent TPU plugins
  if WRITE_DATA.value:
    return write_data(WRITE_DATA.value, STEPS.value * BATCH)
  with tempfile.TemporaryDirectory(prefix="framework_case_") as scratch:
    row = measure(scratch)
  print(json.dumps(row), flush=True)


if __name__ == "__main__":
  app.run(main)
