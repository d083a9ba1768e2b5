"""Named datasets as in-memory train / validation / test splits.

Missing labels are hidden in the train and validation splits only: they model a
labeller who skipped cells, while the test split keeps every label for scoring. A
label budget caps how many labels a task keeps in the train split, by hiding the
rest: the images stay, so every arm of a comparison sees the same inputs.
"""
import dataclasses

import numpy as np

from mtl_jax.data import driving, driving_tasks, missing, related
from mtl_jax.errors import InputError

# driving: rendered road scenes; related: vectors whose tasks share features to a degree rho.
DATASETS = ("driving", "related")
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
  # driving: which tasks (driving_tasks.ALL_TASK_NAMES); empty means the four presence tasks.
  tasks: tuple[str, ...] = ()
  # (task, n): keep only n of that task's train labels, chosen at random, hiding the rest.
  label_budget: tuple[tuple[str, int], ...] = ()
  scenes: driving.SceneConfig = driving.SceneConfig()
  relatedness: related.RelatedConfig = related.RelatedConfig()  # the related dataset only
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
  if config.tasks and config.dataset != "driving":
    raise InputError(f"choosing tasks by name needs the driving dataset, not {config.dataset!r}")
  driving_tasks.check_task_names(config.tasks)
  names = task_names(config)
  for task, count in config.label_budget:
    if task not in names:
      raise InputError(f"label budget for {task!r}, which is not one of the tasks {', '.join(names)}")
    if count < 0:
      raise InputError(f"label budget for {task!r} must be >= 0; got {count}")


def task_names(config: DataConfig) -> tuple[str, ...]:
  if config.dataset == "related":
    return tuple(f"task_{j + 1}" for j in range(config.relatedness.num_tasks))
  return config.tasks or driving.TASK_NAMES


def _stream_seed(data_seed: int, stream: str) -> int:
  """An independent seed per use of the data seed (split rendering, label hiding)."""
  words = [data_seed] + [ord(c) for c in stream]
  return int(np.random.SeedSequence(words).generate_state(1)[0])


def _generate(config: DataConfig, num: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  if config.dataset == "related":
    teacher = related.make_teacher(_stream_seed(config.data_seed, "teacher"), config.relatedness)
    return related.sample(num, seed, teacher, config.relatedness)
  if not config.tasks:
    return driving.render_scenes(num, seed, config.scenes)
  images, _, params = driving.render_scenes_with_params(num, seed, config.scenes)
  return images, driving_tasks.task_labels(params, config.scenes, config.tasks)


def load_dataset(config: DataConfig) -> MultiTaskData:
  check_data_config(config)
  names = task_names(config)

  def split(name: str, num: int, hide: bool) -> Split:
    # Each split has its own seed, so a test set does not change when num_train does.
    x, labels = _generate(config, num, _stream_seed(config.data_seed, name))
    if hide:
      labels = missing.hide_labels(labels, config.missing_frac,
                                   _stream_seed(config.data_seed, name + "/missing"))
    return Split(x, labels)

  train = split("train", config.num_train, hide=True)
  train = Split(train.x, apply_label_budget(train.y, names, config.label_budget,
                                            _stream_seed(config.data_seed, "train/budget")))
  return MultiTaskData(
      name=config.dataset,
      task_names=names,
      train=handle_missing(train, config.label_handling),
      val=split("val", config.num_val, hide=True),
      test=split("test", config.num_test, hide=False),
  )


def apply_label_budget(labels_NxT: np.ndarray, task_names: tuple[str, ...],
                       budget: tuple[tuple[str, int], ...], seed: int) -> np.ndarray:
  """Hides all but `count` of each budgeted task's labels, chosen uniformly at random."""
  labels = labels_NxT.copy()
  rng = np.random.default_rng(seed)
  for task, count in budget:
    j = task_names.index(task)
    labelled = np.flatnonzero(labels[:, j] != missing.MISSING)
    if count > len(labelled):
      raise InputError(f"label budget of {count} for task {task!r} exceeds the {len(labelled)} "
                       f"labels it has in the train split")
    labels[rng.permutation(labelled)[count:], j] = missing.MISSING
  return labels


def handle_missing(split: Split, label_handling: str) -> Split:
  if label_handling == "as_negative":
    return Split(split.x, np.where(split.y == -1, 0, split.y).astype(split.y.dtype))
  if label_handling == "drop_incomplete":
    complete = np.all(split.y != -1, axis=1)
    return Split(split.x[complete], split.y[complete])
  return split
