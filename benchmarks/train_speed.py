"""Training throughput of joint vs vmapped separate networks on the driving scenes.

  python -m benchmarks.train_speed [--seeds=3] [--epochs=3] [--json=train_speed.json]

Prints optimizer steps/s (all seeds together, compilation excluded) and training
examples/s (steps x batch x seeds) for each encoder and arm at the default settings.
"""
import json
import platform

import jax
from absl import app, flags, logging

from mtl_jax.data import driving
from mtl_jax.models import EncoderSpec, make_model, param_count
from mtl_jax.train import TrainConfig, train

SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds trained together (vmapped).", lower_bound=1)
EPOCHS = flags.DEFINE_integer("epochs", 3, "Timed epochs (after compilation).", lower_bound=1)
NUM_TRAIN = flags.DEFINE_integer("num_train", 6000, "Training examples.", lower_bound=1)
JSON = flags.DEFINE_string("json", None, "Also write the rows to this JSON file.")

ENCODERS = [EncoderSpec("cnn", 32, 3), EncoderSpec("mlp", 256, 2)]


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # no start-up chatter about absent TPU plugins
  x, y = driving.render_scenes(NUM_TRAIN.value, 0)
  config = TrainConfig(epochs=EPOCHS.value)
  seeds = list(range(SEEDS.value))
  rows = []
  print(f"{jax.devices()[0].device_kind} ({platform.processor() or platform.machine()}), "
        f"{NUM_TRAIN.value} examples, batch {config.batch_size}, {len(seeds)} seeds")
  print(f"{'encoder':<14} {'arm':<9} {'params/seed':>11} {'steps/s':>9} {'examples/s':>11} {'compile s':>9}")
  for spec in ENCODERS:
    for arm in ("joint", "separate"):
      model = make_model(arm, spec, len(driving.TASK_NAMES), x.shape[1:])
      result = train(model, x, y, seeds, config)
      steps_per_s = result.steps / result.seconds
      row = dict(encoder=spec.kind, width=spec.width, depth=spec.depth, arm=arm, seeds=len(seeds),
                 params_per_seed=param_count(result.params) // len(seeds),
                 steps_per_s=round(steps_per_s, 2),
                 examples_per_s=round(steps_per_s * config.batch_size * len(seeds)),
                 compile_s=round(result.compile_seconds, 2), device=jax.devices()[0].device_kind)
      rows.append(row)
      print(f"{spec.kind + f' w{spec.width} d{spec.depth}':<14} {arm:<9} {row['params_per_seed']:>11,}"
            f" {row['steps_per_s']:>9.1f} {row['examples_per_s']:>11,} {row['compile_s']:>9.1f}", flush=True)
  if JSON.value:
    with open(JSON.value, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  app.run(main)
