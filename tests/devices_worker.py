"""Run by test_sharding.py in a process of its own, whose XLA_FLAGS simulate 4 CPU
devices (they must be set before jax is imported): the same sweep on 1 device and on
all 4, and the compiled epoch programs, written under OUT for the tests to read.

python tests/devices_worker.py OUT FLAG...  (FLAG: launch.py's flags of the sweep)
"""
import json
import os
import sys

import jax
import numpy as np
from entry_points import launch_in_process

from mtl_jax import devices
from mtl_jax.models import EncoderSpec, joint_model, separate_models
from mtl_jax.train import TrainConfig, epoch_program, train

# (name, model builder, seeds, method): a layout of each kind on 4 devices.
PROGRAMS = [
    ("joint_seeds_and_batch", joint_model, [0, 1], "ew"),  # seeds 2 x batch 2: psum over the batch
    ("joint_representation_gradients", joint_model, [0, 1], "mgda_ub"),  # all-gather over the batch
    ("separate_seeds_and_nets", separate_models, [0, 1], "ew"),  # seeds 2 x nets 2: nothing to talk about
]


def write_programs(out: str) -> None:
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(64, 6)).astype(np.float32), rng.integers(-1, 2, size=(64, 4)).astype(np.int8)
  layouts = {}
  for name, build, seeds, method in PROGRAMS:
    program = epoch_program(build(EncoderSpec("mlp", 4, 1), 4, (6,)), x, y, seeds,
                            TrainConfig(1e-2, 16, 1, method=method))
    with open(os.path.join(out, f"{name}.hlo"), "w") as f:
      f.write(program.run_epoch.as_text())
    layouts[name] = {"shape": program.place.layout.shape,
                     "device_ids": [d.id for d in program.place.mesh.devices.flat]}
  with open(os.path.join(out, "layouts.json"), "w") as f:
    json.dump(layouts, f)


# Methods whose step differs most once the batch is split: per-task gradients of the
# shared parameters (summed over devices before MGDA combines them), and of the
# representation (gathered over devices); 3 seeds on 4 devices: batch axis 4.
METHODS = ("mgda", "mgda_ub")


def write_method_results(out: str) -> None:
  """Per method and device count, the training losses and final parameters, flat."""
  rng = np.random.default_rng(1)
  x, y = rng.normal(size=(64, 6)).astype(np.float32), rng.integers(-1, 2, size=(64, 4)).astype(np.int8)
  results = {}
  for method in METHODS:
    for count in (1, 4):
      devices.use_devices(count)
      result = train(joint_model(EncoderSpec("mlp", 4, 1), 4, (6,)), x, y, [0, 1, 2],
                     TrainConfig(1e-2, 16, 2, method=method), micro_batch=8)
      leaves = [result.loss_ExS, *jax.tree.leaves(result.params)]
      results[f"{method} {count}"] = np.concatenate([np.ravel(leaf) for leaf in leaves]).tolist()
  with open(os.path.join(out, "methods.json"), "w") as f:
    json.dump(results, f)


def main(out: str, *flags: str) -> None:
  assert len(jax.devices()) == 4, "XLA_FLAGS must simulate 4 CPU devices"
  for count in (1, 4):
    result = launch_in_process(*flags, f"--devices={count}", f"--out_dir={os.path.join(out, str(count))}")
    assert result.returncode == 0, result.stderr
  write_method_results(out)
  devices.use_devices(0)
  write_programs(out)


if __name__ == "__main__":
  main(*sys.argv[1:])
