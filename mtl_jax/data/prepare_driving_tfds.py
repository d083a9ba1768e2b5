"""Prepares the driving scenes as a TFDS dataset (array_record, no network, no TF).

  python -m mtl_jax.data.prepare_driving_tfds --data_dir=~/tensorflow_datasets

A module of its own because TFDS registers builders by class: running the builder's
module as __main__ would define `driving_scenes` twice.
"""
from absl import app, flags

from mtl_jax.data import driving_tfds

DATA_DIR = flags.DEFINE_string("data_dir", "~/tensorflow_datasets", "TFDS data directory.")
NUM_TRAIN = flags.DEFINE_integer("num_train", 8000, "Train examples.", lower_bound=1)
NUM_TEST = flags.DEFINE_integer("num_test", 2000, "Test examples.", lower_bound=1)
IMAGE_SIZE = flags.DEFINE_integer("image_size", 32, "Image side in pixels.", lower_bound=8)


def main(argv):
  del argv
  builder = driving_tfds.prepare(DATA_DIR.value, NUM_TRAIN.value, NUM_TEST.value, IMAGE_SIZE.value)
  print(f"prepared {builder.name}/{builder.builder_config.name} in {builder.data_dir}: "
        + ", ".join(f"{k} {v.num_examples}" for k, v in builder.info.splits.items()))


if __name__ == "__main__":
  app.run(main)
