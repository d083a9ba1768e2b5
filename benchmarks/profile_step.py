"""Where a training step's time goes, op by op: the joint network's epochs through
`train`, under JAX's profiler, with XLA's per-op events summed by kind of op.

  python -m benchmarks.profile_step [--encoder=cnn] [--width=32] [--depth=3] [--tasks=4] [--epochs=6]

XLA:CPU records one event per executed op (a fusion, a dot, a copy) on its worker
threads; `jax.profiler.ProfileData` reads them back without TensorFlow. The kind of an
op is its name before the first '.' (dot, concatenate, pad_slice_fusion, ...). Op time
is summed over the worker threads, so it can exceed the wall time when ops run side by
side. Batch 128, Adam, 4 tasks, 2,048 driving scenes with random labels (16 steps per
epoch), every epoch's steps counted, the first (warm-up) included.
"""
import collections
import glob
import tempfile
import time

import numpy as np
from absl import app, flags

ENCODER = flags.DEFINE_enum("encoder", "cnn", ["cnn", "mlp"], "Encoder kind.")
WIDTH = flags.DEFINE_integer("width", 32, "Encoder width.", lower_bound=1)
DEPTH = flags.DEFINE_integer("depth", 3, "Encoder depth.", lower_bound=1)
EPOCHS = flags.DEFINE_integer("epochs", 6, "Epochs profiled.", lower_bound=1)
TASKS = flags.DEFINE_integer("tasks", 4, "Tasks (1: one of the separate networks).", lower_bound=1)
TOP = flags.DEFINE_integer("top", 12, "Kinds of op listed.", lower_bound=1)
NUM_SCENES, BATCH = 2048, 128
# Events that are not ops: the executor's own spans, its threads waiting, and the short
# "end: OP" markers that close an op run asynchronously (its time is the op's event).
NOT_OPS = ("ThunkExecutor", "SlinkyThreadPool", "end: ")


def op_times(xplane_path: str) -> tuple[collections.Counter, collections.Counter]:
  """Nanoseconds and count of XLA's op events by kind, from the worker threads."""
  import jax
  profile = jax.profiler.ProfileData.from_file(xplane_path)
  nanoseconds, count = collections.Counter(), collections.Counter()
  for plane in profile.planes:
    for line in plane.lines:
      if not line.name.startswith("tf_XLAEigen"):  # XLA:CPU's op threads
        continue
      for event in line.events:
        if event.name.startswith(NOT_OPS):
          continue
        kind = event.name.split(".")[0]
        nanoseconds[kind] += event.duration_ns
        count[kind] += 1
  return nanoseconds, count


def main(argv):
  del argv
  import jax
  from mtl_jax.data import driving
  from mtl_jax.models import EncoderSpec, joint_model
  from mtl_jax.train import TrainConfig, train
  x, _ = driving.render_scenes(NUM_SCENES, 0)
  y = np.random.default_rng(0).integers(0, 2, (NUM_SCENES, TASKS.value)).astype(np.int8)
  model = joint_model(EncoderSpec(ENCODER.value, WIDTH.value, DEPTH.value), TASKS.value, x.shape[1:])
  ends = []
  with tempfile.TemporaryDirectory(prefix="profile_step_") as trace_dir:
    with jax.profiler.trace(trace_dir):
      train(model, x, y, [0], TrainConfig(batch_size=BATCH, epochs=EPOCHS.value),
            log=lambda epoch, loss: ends.append(time.perf_counter()))
    nanoseconds, count = op_times(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[0])
  steps = EPOCHS.value * (NUM_SCENES // BATCH)
  wall_ms = 1e3 * float(np.median(np.diff(ends))) / (NUM_SCENES // BATCH) if len(ends) > 1 else float("nan")
  total = sum(nanoseconds.values())
  print(f"{jax.devices()[0].device_kind}: joint {ENCODER.value} width {WIDTH.value} depth {DEPTH.value}, "
        f"batch {BATCH}, {TASKS.value} tasks; per step: wall {wall_ms:.2f} ms (median epoch after the first), "
        f"op time {total / steps / 1e6:.2f} ms over {sum(count.values()) / steps:.0f} ops")
  print("| kind of op | ms per step | share of op time | ops per step |\n|---|---|---|---|")
  for kind, ns in nanoseconds.most_common(TOP.value):
    print(f"| {kind} | {ns / steps / 1e6:.3f} | {ns / total:.0%} | {count[kind] / steps:.1f} |")


if __name__ == "__main__":
  app.run(main)
