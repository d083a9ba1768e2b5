"""Named datasets as in-memory train / validation / test splits.

Missing labels are hidden in the train and validation splits only: they model a
labeller who skipped cells, while the test split keeps every label for scoring.
"""
import dataclasses

import numpy as np

from mtl_jax.data import driving, missing
from mtl_jax.errors import InputError

DATASETS = ("driving",)
# How the training split treats a missing label: the masked loss ignores it; the two
# common alternatives call it a "no", or drop every example that has one.
LABEL_HANDLING = ("mask", "as_negative", "drop_incomplete")


@dataclasses.dataclass(frozen=True)
class Split:
  x: np.ndarray  # [N, ...] features or uint8 images
  y: np.ndarray  # [N, T] int8: 1 yes, 0 no, -1 missing


@dataclasses.dataclass(frozen=True)
class MultiTaskData:
  name: str
  task_names: tuple[str, ...]
  train: Split
  val: Split
  test: Split

  @property
  def input_shape(self) -> tuple[int, ...]:
    return tuple(self.train.x.shape[1:])


@dataclasses.dataclass(frozen=True)
class DataConfig:
  dataset: str = "driving"
  num_train: int = 6000
  num_val: int = 1000
  num_test: int = 3000
  missing_frac: float = 0.0
  data_seed: int = 0
  label_handling: str = "mask"  # one of LABEL_HANDLING, applied to the train split
  scenes: driving.SceneConfig = driving.SceneConfig()
  # Part of every result's config hash, so results from an older renderer are never
  # reused as if they came from this one.
  generator_version: int = driving.GENERATOR_VERSION


def check_data_config(config: DataConfig) -> None:
  if config.dataset not in DATASETS:
    raise InputError(f"unknown dataset {config.dataset!r}; available: {', '.join(DATASETS)}")
  if not 0.0 <= config.missing_frac < 1.0:
    raise InputError(f"missing_frac must be in [0, 1); got {config.missing_frac}")
  if config.label_handling not in LABEL_HANDLING:
    raise InputError(f"unknown label handling {config.label_handling!r}; "
                     f"choose from {', '.join(LABEL_HANDLING)}")
  if min(config.num_train, config.num_val, config.num_test) < 1:
    raise InputError("num_train, num_val and num_test must be positive")


def _stream_seed(data_seed: int, stream: str) -> int:
  """An independent seed per use of the data seed (split rendering, label hiding)."""
  words = [data_seed] + [ord(c) for c in stream]
  return int(np.random.SeedSequence(words).generate_state(1)[0])


def load_dataset(config: DataConfig) -> MultiTaskData:
  check_data_config(config)

  def split(name: str, num: int, hide: bool) -> Split:
    # Each split has its own seed, so a test set does not change when num_train does.
    images, labels = driving.render_scenes(num, _stream_seed(config.data_seed, name), config.scenes)
    if hide:
      labels = missing.hide_labels(labels, config.missing_frac,
                                   _stream_seed(config.data_seed, name + "/missing"))
    return Split(images, labels)

  return MultiTaskData(
      name=config.dataset,
      task_names=tuple(driving.TASK_NAMES),
      train=handle_missing(split("train", config.num_train, hide=True), config.label_handling),
      val=split("val", config.num_val, hide=True),
      test=split("test", config.num_test, hide=False),
  )


def handle_missing(split: Split, label_handling: str) -> Split:
  if label_handling == "as_negative":
    return Split(split.x, np.where(split.y == -1, 0, split.y).astype(split.y.dtype))
  if label_handling == "drop_incomplete":
    complete = np.all(split.y != -1, axis=1)
    return Split(split.x[complete], split.y[complete])
  return split
