"""Named datasets as in-memory train / validation / test splits.

Missing labels are hidden in the train and validation splits only: they model a
labeller who skipped cells, while the test split keeps every label for scoring.
"""
import dataclasses

import numpy as np

from mtl_jax.errors import InputError

DATASETS = ("driving",)


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
  image_size: int = 32
  missing_frac: float = 0.0
  data_seed: int = 0


def check_data_config(config: DataConfig) -> None:
  if config.dataset not in DATASETS:
    raise InputError(f"unknown dataset {config.dataset!r}; available: {', '.join(DATASETS)}")
  if not 0.0 <= config.missing_frac < 1.0:
    raise InputError(f"missing_frac must be in [0, 1); got {config.missing_frac}")
  if min(config.num_train, config.num_val, config.num_test) < 1:
    raise InputError("num_train, num_val and num_test must be positive")


def _split_slices(config: DataConfig):
  edges = np.cumsum([0, config.num_train, config.num_val, config.num_test])
  return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def load_dataset(config: DataConfig) -> MultiTaskData:
  check_data_config(config)
  from mtl_jax.data import driving, missing

  scenes = driving.SceneConfig(image_size=config.image_size)
  total = config.num_train + config.num_val + config.num_test
  # Scenes are i.i.d., so contiguous slices of one generated set are random splits.
  images, labels = driving.render_scenes(total, config.data_seed, scenes)
  train_s, val_s, test_s = _split_slices(config)
  hide = lambda y, stream: missing.hide_labels(y, config.missing_frac, config.data_seed * 2 + stream)
  return MultiTaskData(
      name=config.dataset,
      task_names=tuple(driving.TASK_NAMES),
      train=Split(images[train_s], hide(labels[train_s], 0)),
      val=Split(images[val_s], hide(labels[val_s], 1)),
      test=Split(images[test_s], labels[test_s]),
  )
