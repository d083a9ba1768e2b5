"""Training throughput against the number of devices the run is sharded over
(mtl_jax/devices.py), each device count in a fresh process.

  python -m benchmarks.devices [--counts=1,2,4] [--epochs=3] [--json=devices.json]

On a CPU the devices are simulated (XLA_FLAGS=--xla_force_host_platform_device_count=N,
set in each case's process before jax is imported): they share the machine's cores,
so on a 2-core CPU they cannot train faster than one device; what the table shows
there is what sharding costs (the layout, the psum over the batch axis, a program per
device). On a machine with N GPUs the same command, with --real_devices, uses the
first 1, 2, ... of them.

Cases: the joint network with 1 seed (all devices on the batch: data parallel, a psum
per step) and with 4 seeds (the seeds axis: no communication), and 4 separate networks
with 1 seed (the nets axis: no communication). examples/s counts each training example
once per seed (steps x batch x seeds), as benchmarks/train_speed.py does.
"""
import json
import os
import platform

from absl import app, flags, logging

COUNTS = flags.DEFINE_list("counts", ["1", "2", "4"], "Device counts, one process each.")
EPOCHS = flags.DEFINE_integer("epochs", 3, "Timed epochs (after compilation).", lower_bound=1)
NUM_TRAIN = flags.DEFINE_integer("num_train", 2048, "Training examples (32x32 RGB).", lower_bound=128)
REAL_DEVICES = flags.DEFINE_bool("real_devices", False, "Use the machine's own devices (GPUs) "
                                 "instead of simulated CPU devices.")
JSON = flags.DEFINE_string("json", None, "Also write the rows to this JSON file.")
CASE = flags.DEFINE_integer("case", None, "Internal: measure on this many devices and print one JSON row.")

# name -> (arm, encoder (kind, width, depth), seeds)
CASES = {
    "joint cnn w16, 1 seed (batch axis)": ("joint", ("cnn", 16, 3), 1),
    "joint cnn w16, 4 seeds (seeds axis)": ("joint", ("cnn", 16, 3), 4),
    "4 separate mlp w64, 1 seed (nets axis)": ("separate", ("mlp", 64, 2), 1),
}
NUM_TASKS = 4


def measure(count: int) -> dict:
  """examples/s of every case on `count` devices (in this process)."""
  import jax
  import numpy as np

  from mtl_jax import devices
  from mtl_jax.models import EncoderSpec, make_model
  from mtl_jax.train import TrainConfig, train

  devices.use_devices(count)
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, size=(NUM_TRAIN.value, 32, 32, 3), dtype=np.uint8)
  y = rng.integers(-1, 2, size=(NUM_TRAIN.value, NUM_TASKS)).astype(np.int8)
  row = {"devices": count, "device_kind": jax.devices()[0].device_kind}
  for name, (arm, encoder, seeds) in CASES.items():
    model = make_model(arm, EncoderSpec(*encoder), NUM_TASKS, x.shape[1:])
    result = train(model, x, y, list(range(seeds)), TrainConfig(epochs=EPOCHS.value))
    place = devices.placement(seeds, NUM_TASKS if arm == "separate" else 1)
    row[name] = {"examples_per_s": result.steps * 128 * seeds / result.seconds,
                 "layout": place.layout.shape if place else (1, 1, 1),
                 "compile_s": result.compile_seconds}
  return row


def run_case(count: int) -> dict:
  from benchmarks.own_process import run_case as in_own_process
  env_flags = [] if REAL_DEVICES.value else [f"--xla_force_host_platform_device_count={count}"]
  os.environ["XLA_FLAGS"] = " ".join(env_flags)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return in_own_process(__file__, [f"--case={count}", f"--epochs={EPOCHS.value}",
                                   f"--num_train={NUM_TRAIN.value}"], root)


def table(rows: list[dict]) -> str:
  lines = [f"{'case':<40} {'devices':>7} {'layout s,n,b':>12} {'examples/s':>11} {'vs 1':>6}"]
  for name in CASES:
    base = rows[0][name]["examples_per_s"]
    for row in rows:
      case = row[name]
      layout = ",".join(str(v) for v in case["layout"])
      lines.append(f"{name:<40} {row['devices']:>7} {layout:>12} {case['examples_per_s']:>11,.0f} "
                   f"{case['examples_per_s'] / base:>6.2f}")
  return "\n".join(lines)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  if CASE.value is not None:
    print(json.dumps(measure(CASE.value)))
    return
  rows = [run_case(int(count)) for count in COUNTS.value]
  print(f"{rows[0]['device_kind']} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores), "
        f"{NUM_TRAIN.value} examples, batch 128, {EPOCHS.value} timed epochs; "
        f"{'real' if REAL_DEVICES.value else 'simulated'} devices")
  print(table(rows))
  if JSON.value:
    with open(JSON.value, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  app.run(main)
