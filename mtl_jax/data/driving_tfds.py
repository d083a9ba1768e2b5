"""TFDS packaging of the procedural driving scenes (no TensorFlow needed).

Prepared locally (no downloads) into array_record files and read back via
``builder.as_data_source()``:

  builder = DrivingScenes(data_dir=d, config=make_config(num_train=64, num_test=32),
                          file_format="array_record")
  builder.download_and_prepare()
  images, labels = load_driving_tfds(d, "train", num_train=64, num_test=32)

Each split is ``render_scenes(num, seed=SPLIT_SEEDS[split], SceneConfig(image_size))``.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from mtl_jax.data import driving

SPLIT_SEEDS = {"train": 1, "test": 2}


class DrivingScenesConfig(tfds.core.BuilderConfig):
  """Example counts / image size are configurable so tests can build tiny sets."""

  def __init__(self, *, num_train: int = 8000, num_test: int = 2000, image_size: int = 32,
               **kwargs):
    kwargs.setdefault("name", f"s{image_size}_tr{num_train}_te{num_test}")
    kwargs.setdefault("version", tfds.core.Version("1.0.0"))
    kwargs.setdefault("description",
                      f"{image_size}x{image_size} scenes, {num_train} train / {num_test} test")
    super().__init__(**kwargs)
    self.num_train = num_train
    self.num_test = num_test
    self.image_size = image_size


def make_config(num_train: int = 8000, num_test: int = 2000, image_size: int = 32
                ) -> DrivingScenesConfig:
  return DrivingScenesConfig(num_train=num_train, num_test=num_test, image_size=image_size)


class DrivingScenes(tfds.core.GeneratorBasedBuilder):
  """Procedural road scenes with 4 binary labels (TASK_NAMES order)."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [make_config()]
  DEFAULT_CONFIG_NAME = BUILDER_CONFIGS[0].name

  # TFDS locates the builder's source dir (for checksums / metadata files)
  # through a code path that needs the optional `importlib_resources` package;
  # this builder has neither, so skip the lookup.
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    return None

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.image_size
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(s, s, 3), dtype=np.uint8,
                                         encoding_format="png"),
            "labels": tfds.features.Tensor(shape=(driving.NUM_TASKS,), dtype=np.int8),
            # Position in render_scenes(num, seed) (TFDS may reorder records).
            "index": tfds.features.Scalar(dtype=np.int64),
        }),
        supervised_keys=("image", "labels"),
        homepage="https://example.invalid/mtl_jax",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    cfg = self.builder_config
    return {"train": self._generate_examples("train", cfg.num_train),
            "test": self._generate_examples("test", cfg.num_test)}

  def _generate_examples(self, split: str, num: int):
    images, labels = driving.render_scenes(
        num, SPLIT_SEEDS[split], driving.SceneConfig(image_size=self.builder_config.image_size))
    from PIL import Image  # TFDS encodes numpy images with TF; PIL images without.
    for i in range(num):
      yield i, {"image": Image.fromarray(images[i]), "labels": labels[i], "index": i}


def prepare(data_dir: str, num_train: int = 8000, num_test: int = 2000, image_size: int = 32
            ) -> DrivingScenes:
  """Builds (if needed) the array_record dataset under data_dir; returns the builder."""
  builder = DrivingScenes(data_dir=os.path.expanduser(data_dir),
                          config=make_config(num_train, num_test, image_size),
                          file_format="array_record")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return builder


def load_driving_tfds(data_dir: str, split: str, num_train: int = 8000, num_test: int = 2000,
                      image_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
  """Prepares if needed, then reads a whole split back via the random-access
  data source -> (images uint8 [N,S,S,3], labels int8 [N,4]), in generator
  order: equal to ``driving.render_scenes(N, SPLIT_SEEDS[split],
  SceneConfig(image_size))``."""
  builder = prepare(data_dir, num_train, num_test, image_size)
  source = builder.as_data_source(split=split)
  n = len(source)
  S = image_size
  images = np.empty((n, S, S, 3), np.uint8)
  labels = np.empty((n, driving.NUM_TASKS), np.int8)
  records = source.__getitems__(list(range(n))) if hasattr(source, "__getitems__") else [
      source[i] for i in range(n)]
  for ex in records:               # records are stored in shuffled order
    i = int(ex["index"])
    images[i] = ex["image"]
    labels[i] = ex["labels"]
  return images, labels

