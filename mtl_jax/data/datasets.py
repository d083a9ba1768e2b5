"""Datasets as in-memory train / validation / test splits.

Two are generated (any size, every label known): the driving scenes and the related
vectors. The rest are read: a user's CSV or NPZ table (`csv:PATH`, `npz:PATH`, see
tables.py), an ARFF file with its label file and test file (`arff:PATH`, see
arff_table.py) or a prepared TFDS multi-label image set (`tfds:NAME`). Their splits are
their own where they have them; the rest are cut from the train split by a seed.

Missing labels (--missing_frac) are hidden in the train and validation splits only:
they model a labeller who skipped cells, while the test split keeps every label for
scoring. A label budget caps how many labels a task keeps in the train split, by
hiding the rest: the images stay, so every arm of a comparison sees the same inputs.
"""
import dataclasses
import functools
import os
from typing import Optional

import numpy as np

from mtl_jax.data import (arff_table, driving, driving_tasks, files, impute, label_sources, missing,
                          related, tables)
from mtl_jax.data.resampling import Resampling, resample
from mtl_jax.errors import InputError

# driving: rendered road scenes; related: vectors whose tasks share features to a degree rho.
GENERATED = ("driving", "related")
# Read from files: KIND:PATH, or tfds:NAME for a prepared TFDS dataset.
READ_KINDS = (*tables.READERS, "arff", "tfds")
# Kinds whose columns have names: --label_columns first:N / last:N, --ignore_columns, --impute.
NAMED_COLUMN_KINDS = ("csv", "arff")
DATASETS = (*GENERATED, *(f"{kind}:{'NAME' if kind == 'tfds' else 'PATH'}" for kind in READ_KINDS))
SPLITS = ("train", "val", "test")
# How the training split treats a missing label: the masked loss ignores it; the two
# common alternatives call it a "no", or drop every example that has one.
LABEL_HANDLING = ("mask", "as_negative", "drop_incomplete")


@dataclasses.dataclass(frozen=True)
class Split:
  x: np.ndarray  # [N, ...] float32 features or uint8 images
  y: np.ndarray  # [N, T] int8: 1 yes, 0 no, -1 missing


@dataclasses.dataclass(frozen=True)
class MultiTaskData:
  name: str
  task_names: tuple[str, ...]
  train: Split
  val: Split
  test: Split
  # Where each split's examples came from, recorded with every result.
  origins: dict = dataclasses.field(default_factory=dict)
  # Read data: the name of each feature column, what the reader decided that the user
  # should see (label source, columns left out, cells imputed), printed at the start,
  # and how float features were scaled (None: not scaled), which --save_params keeps
  # so that new data is read alike.
  feature_names: tuple[str, ...] = ()
  notes: tuple[str, ...] = ()
  standardisation: Optional["Standardisation"] = None

  @property
  def input_shape(self) -> tuple[int, ...]:
    return tuple(self.train.x.shape[1:])


@dataclasses.dataclass(frozen=True)
class DataConfig:
  dataset: str = "driving"  # driving, related, csv:PATH, npz:PATH or tfds:NAME
  # Generated data: how many examples. Read data: at most this many (None: all).
  num_train: Optional[int] = 6000
  num_val: Optional[int] = 1000
  num_test: Optional[int] = 3000
  # Read data without its own validation / test split: the share of its train split
  # that a seed sets aside for it.
  val_frac: float = 0.15
  test_frac: float = 0.15
  # csv / npz / arff: the label columns (names, or one last:N / first:N); empty means the
  # file's own convention (tables.py, label_sources.py).
  label_columns: tuple[str, ...] = ()
  # csv / arff: columns that are neither features nor labels (ids, unwanted labels).
  ignore_columns: tuple[str, ...] = ()
  # csv / arff: how missing feature cells are filled (impute.IMPUTE); none: an error.
  impute: str = "none"
  # arff: the standard split's test file ('': none; or arff:TRAIN,TEST), and the MULAN
  # label file ('': PATH.xml or STEM.xml beside the train file, if there is one).
  test_file: str = ""
  label_file: str = ""
  data_dir: str = "~/tensorflow_datasets"  # tfds only
  missing_frac: float = 0.0
  data_seed: int = 0
  label_handling: str = "mask"  # one of LABEL_HANDLING, applied to the train split
  # Which tasks to train, by name; empty means the dataset's own (driving: the four
  # presence tasks of driving_tasks.ALL_TASK_NAMES; read data: every label column).
  tasks: tuple[str, ...] = ()
  # (task, n): keep only n of that task's train labels, chosen at random, hiding the
  # rest; its validation labels are cut in the same proportion (apply_label_budget).
  label_budget: tuple[tuple[str, int], ...] = ()
  scenes: driving.SceneConfig = driving.SceneConfig()
  relatedness: related.RelatedConfig = related.RelatedConfig()  # the related dataset only
  # The split to train on: the data's own, a fold of K or a random re-split of the
  # pooled examples (resampling.py; --folds, --split_seeds).
  resampling: Resampling = Resampling()
  # Part of every result's config hash, so results from an older renderer are never
  # reused as if they came from this one.
  generator_version: int = driving.GENERATOR_VERSION


def read_kind(dataset: str) -> Optional[str]:
  """'csv', 'npz' or 'tfds' for data read from elsewhere; None for generated data."""
  kind, sep, _ = dataset.partition(":")
  return kind if sep and kind in READ_KINDS else None


def check_data_config(config: DataConfig) -> None:
  kind = read_kind(config.dataset)
  if config.dataset not in GENERATED and kind is None:
    raise InputError(f"unknown dataset {config.dataset!r}; available: {', '.join(DATASETS)}")
  if kind in tables.READERS:
    files.check_path(kind, config.dataset.partition(":")[2])
  elif kind == "arff":
    arff_paths(config)
  elif kind and not config.dataset.partition(":")[2].strip():
    raise InputError(f"--dataset={config.dataset} names no dataset after '{kind}:'")
  for tasks, what in ((config.tasks, "tasks"), (config.label_columns, "label columns")):
    twice = [t for i, t in enumerate(tasks) if t in tasks[:i]]
    if twice:
      raise InputError(f"the {what} name task {twice[0]!r} twice; each task must appear once")
  if not 0.0 <= config.missing_frac < 1.0:
    raise InputError(f"missing_frac must be in [0, 1); got {config.missing_frac}")
  if config.label_handling not in LABEL_HANDLING:
    raise InputError(f"unknown label handling {config.label_handling!r}; "
                     f"choose from {', '.join(LABEL_HANDLING)}")
  sizes = (config.num_train, config.num_val, config.num_test)
  if (kind is None and None in sizes) or any(n is not None and n < 1 for n in sizes):
    raise InputError("num_train, num_val and num_test must be positive")
  if not (0 < config.val_frac < 1 and 0 < config.test_frac < 1 and config.val_frac + config.test_frac < 1):
    raise InputError(f"val_frac and test_frac must be in (0, 1) with a sum below 1; "
                     f"got {config.val_frac}, {config.test_frac}")
  if config.label_columns and kind not in (*tables.READERS, "arff"):
    raise InputError(f"label columns are for csv: and npz: datasets (and arff:), not {config.dataset!r}")
  _check_column_options(config, kind)
  if config.tasks and config.dataset == "related":
    raise InputError("the related dataset's tasks cannot be chosen by name; set their number")
  if config.dataset == "driving":
    driving_tasks.check_task_names(config.tasks)
  names = task_names(config)
  budgeted = [task for task, _ in config.label_budget]
  if len(set(budgeted)) < len(budgeted):
    raise InputError(f"two label budgets for one task: {', '.join(budgeted)}")
  for task, count in config.label_budget:
    if task not in names:
      raise InputError(f"label budget for {task!r}, which is not one of the tasks {', '.join(names)}")
    if count < 0:
      raise InputError(f"label budget for {task!r} must be >= 0; got {count}")


def _check_column_options(config: DataConfig, kind: Optional[str]) -> None:
  if config.impute not in impute.IMPUTE:
    raise InputError(f"unknown --impute={config.impute}; choose from {', '.join(impute.IMPUTE)}")
  chosen = [flag for flag, value in (("ignore_columns", config.ignore_columns),
                                     ("impute", config.impute != "none")) if value]
  if chosen and kind not in NAMED_COLUMN_KINDS:
    raise InputError(f"--{chosen[0]} is for csv: and arff: datasets, not {config.dataset!r}")
  for flag, value in (("test_file", config.test_file), ("label_file", config.label_file)):
    if value and kind != "arff":
      raise InputError(f"--{flag} is for arff: datasets, not {config.dataset!r}")


def arff_paths(config: DataConfig) -> dict:
  """The files of an arff: dataset by role: 'file' (train), and 'test_file' and
  'label_file' where there are any. `arff:TRAIN,TEST` names a test file too."""
  ref = config.dataset.partition(":")[2]
  train, test = ref, config.test_file
  if "," in ref and not os.path.exists(os.path.expanduser(ref)):
    train, _, second = ref.partition(",")
    if test:
      raise InputError(f"--dataset={config.dataset} names a test file and so does --test_file; "
                       "give one of them")
    test = second
  paths = {"file": files.check_path("arff", train)}
  if test.strip():
    paths["test_file"] = os.path.expanduser(test.strip())
  label_file = os.path.expanduser(config.label_file) if config.label_file else None
  label_file = label_file or label_sources.find_label_file(paths["file"])
  if label_file:
    paths["label_file"] = label_file
  return paths


def task_names(config: DataConfig) -> tuple[str, ...]:
  """The tasks a config trains, in order (reading the source, once, for read data)."""
  if config.dataset == "related":
    return tuple(f"task_{j + 1}" for j in range(config.relatedness.num_tasks))
  if config.dataset == "driving":
    return config.tasks or driving.TASK_NAMES
  available = _read_source(config).task_names
  unknown = [t for t in config.tasks if t not in available]
  if unknown:
    raise InputError(f"{config.dataset} has no task {unknown[0]!r}; its tasks are {', '.join(available)}")
  return config.tasks or available


def auxiliary_tasks(config: DataConfig, target: str) -> tuple[str, ...]:
  """Tasks that can train beside `target`: for the driving scenes those not about its
  object class (which would leak its labels), for read data every other task."""
  if config.dataset == "driving":
    return driving_tasks.auxiliary_tasks(target)
  return tuple(t for t in task_names(dataclasses.replace(config, tasks=())) if t != target)


def with_tasks(config: DataConfig, tasks: tuple[str, ...],
               budget: tuple[tuple[str, int], ...] = ()) -> DataConfig:
  """The config narrowed to `tasks`, keeping the label budgets of those tasks and adding `budget`."""
  kept = tuple((task, count) for task, count in config.label_budget if task in tasks)
  return dataclasses.replace(config, tasks=tasks, label_budget=kept + budget)


# The DataConfig fields that change the data, by kind of source: a run's config hash
# covers these alone, so that (say) a CSV run is not retrained when the scene
# renderer's defaults change.
_COMMON_FIELDS = ("dataset", "num_train", "num_val", "num_test", "missing_frac", "data_seed",
                  "label_handling", "tasks", "label_budget")
_KIND_FIELDS = {
    "driving": ("scenes", "generator_version"),
    "related": ("relatedness",),
    "csv": ("val_frac", "test_frac", "label_columns"),
    "npz": ("val_frac", "test_frac", "label_columns"),
    "arff": ("val_frac", "test_frac", "label_columns", "ignore_columns", "impute", "test_file",
             "label_file"),
    "tfds": ("val_frac", "test_frac"),
}


def data_identity(config: DataConfig) -> dict:
  """What identifies a config's data, for result hashes: its relevant fields, plus the
  sha1 of a csv / npz file's bytes (so an edited file makes new runs) or the image
  size a TFDS set is resized to."""
  kind = read_kind(config.dataset) or config.dataset
  fields = dataclasses.asdict(config)
  identity = {name: fields[name] for name in (*_COMMON_FIELDS, *_KIND_FIELDS.get(kind, ()))}
  if not config.resampling.is_own:  # only when set, so that other runs keep their hashes
    identity["resampling"] = fields["resampling"]
  if kind == "csv":  # only when set, so that a CSV run's hash is what it was before them
    identity.update({name: fields[name] for name in ("ignore_columns", "impute")
                     if fields[name] != getattr(DataConfig, name)})
  if kind in tables.READERS:
    identity["file_sha1"] = file_digest(config)
  if kind == "arff":
    identity.update({f"{role}_sha1": files.read(path).sha1 for role, path in arff_paths(config).items()})
  if kind == "tfds":
    identity["image_size"] = config.scenes.image_size
  return identity


def file_digest(config: DataConfig) -> str:
  """sha1 (12 hex) of a csv / npz file's bytes, recomputed whenever its size or
  modification time change (so a sweep that hashes many configs reads the file once).
  The parse reads the same bytes (files.py), so a pipe works and an edit in between
  cannot make the hash describe other data than was trained on."""
  kind, _, ref = config.dataset.partition(":")
  return files.read(files.check_path(kind, ref)).sha1


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


@dataclasses.dataclass(frozen=True)
class _Source:
  task_names: tuple[str, ...]
  splits: dict  # a subset of SPLITS -> Split, as the source has them
  feature_names: tuple[str, ...] = ()  # along x's last axis, for messages; empty: x[..., j]
  notes: tuple[str, ...] = ()  # what the reader decided, for the run to print


def _read_source(config: DataConfig) -> _Source:
  kind, _, ref = config.dataset.partition(":")
  if kind == "tfds":
    return _read_tfds(ref, config.data_dir, config.scenes.image_size)
  # The very bytes the run's hash (file_digest) was taken of: an edited file is a new
  # cache key, and a pipe is read only once.
  if kind == "arff":
    read = {role: (path, files.read(path).data) for role, path in arff_paths(config).items()}
    return _read_arff(read["file"], read.get("test_file"), read.get("label_file"), config.label_columns,
                      config.ignore_columns, config.impute)
  contents = files.read(files.check_path(kind, ref))
  options = dict(ignore_columns=config.ignore_columns, impute=config.impute != "none") if kind == "csv" else {}
  return _read_table(kind, ref, config.label_columns, contents, tuple(options.items()))


@functools.lru_cache(maxsize=2)
def _read_tfds(name: str, data_dir: str, image_size: int) -> _Source:
  from mtl_jax.data import tfds_multilabel  # imports tensorflow_datasets, which is slow
  parts, names = tfds_multilabel.load_tfds_splits(name, data_dir, image_size)
  renamed = {"validation": "val"}
  return _Source(names, {renamed.get(k, k): Split(x, y) for k, (x, y) in parts.items()
                         if renamed.get(k, k) in SPLITS})


@functools.lru_cache(maxsize=2)
def _read_table(kind: str, ref: str, label_columns: tuple[str, ...], contents: files.Contents,
                options: tuple = ()) -> _Source:
  return _source_of(tables.read_table(kind, ref, label_columns, contents.data, **dict(options)))


@functools.lru_cache(maxsize=2)
def _read_arff(train: tuple[str, bytes], test: Optional[tuple[str, bytes]],
               label_file: Optional[tuple[str, bytes]], label_columns: tuple[str, ...],
               ignore_columns: tuple[str, ...], how_to_impute: str) -> _Source:
  return _source_of(arff_table.read_arff(train, test, label_file, label_columns, ignore_columns,
                                         impute=how_to_impute != "none"))


def _source_of(table: tables.Table) -> _Source:
  if table.split is None:
    splits = {"train": Split(table.x, table.y)}
  else:
    splits = {name: Split(table.x[table.split == name], table.y[table.split == name])
              for name in SPLITS if np.any(table.split == name)}
  return _Source(table.task_names, splits, table.feature_names, table.notes)


def _take(split: Split, index: np.ndarray) -> Split:
  return Split(split.x[index], split.y[index])


def _cut_read_splits(config: DataConfig, source: _Source) -> tuple[dict, dict]:
  """Train / val / test from the source's own splits; a missing test split is the
  source's validation split if it has one (as TFDS sets without test labels), and any
  split still missing is cut from train by data_seed. Then each is capped at num_*."""
  if "train" not in source.splits:
    raise InputError(f"{config.dataset} has no train split")
  splits, origins = dict(source.splits), {name: name for name in source.splits}
  if "test" not in splits and "val" in splits:
    splits["test"], origins["test"] = splits.pop("val"), "val"
    del origins["val"]
  available = len(splits["train"].y)
  for name, frac in (("test", config.test_frac), ("val", config.val_frac)):
    if name in splits:
      continue
    train = splits["train"]
    order = np.random.default_rng(_stream_seed(config.data_seed, "cut/" + name)).permutation(len(train.y))
    count = max(1, round(frac * available))  # a share of the whole, not of what is left
    if count >= len(order):
      raise InputError(f"{config.dataset}: {len(order)} train examples are too few to set "
                       f"aside a {name} split")
    splits[name], splits["train"] = _take(train, np.sort(order[:count])), _take(train, np.sort(order[count:]))
    origins[name] = f"train, {count} of its {len(order)} examples set aside by data_seed {config.data_seed}"
    origins["train"] += f" less {name}"
  caps = {"train": config.num_train, "val": config.num_val, "test": config.num_test}
  for name, cap in caps.items():
    if cap is not None and cap < len(splits[name].y):
      order = np.random.default_rng(_stream_seed(config.data_seed, "cap/" + name)).permutation(len(splits[name].y))
      splits[name] = _take(splits[name], np.sort(order[:cap]))
      origins[name] += f", {cap} of them kept by data_seed {config.data_seed}"
  return splits, {name: f"{config.dataset} {origin}" for name, origin in origins.items()}


@dataclasses.dataclass(frozen=True)
class Standardisation:
  """Float features scaled by the train split's mean and std (per last-axis feature),
  computed in float64: in float32 the variance of a column around 1e20 overflows, and
  the column would become all zeros. A constant train column keeps std 1. With
  --impute, a missing (NaN) cell of new data is first filled as training filled its own."""
  mean: np.ndarray  # float64 [D]
  std: np.ndarray  # float64 [D]
  fill: Optional[np.ndarray] = None  # float32 [D]: --impute's values; None: missing cells refused

  @classmethod
  def of(cls, x_train: np.ndarray) -> "Standardisation":
    axes = tuple(range(x_train.ndim - 1))
    x64 = x_train.astype(np.float64)
    std = x64.std(axes)
    return cls(x64.mean(axes), np.where(std > 0, std, 1.0))

  def apply(self, x: np.ndarray, split: str, dataset: str, feature_names: tuple[str, ...]) -> np.ndarray:
    if self.fill is not None:
      x = np.where(np.isnan(x), self.fill, x)
    with np.errstate(over="ignore"):
      scaled = ((x.astype(np.float64) - self.mean) / self.std).astype(np.float32)
    _check_standardised(scaled, split, dataset, feature_names, self.mean, self.std)
    return scaled


def _standardise(splits: dict, dataset: str, feature_names: tuple[str, ...]
                 ) -> tuple[dict, Optional[Standardisation]]:
  """Every split scaled by the train split's Standardisation; uint8 images are left
  for the model to scale (None)."""
  if splits["train"].x.dtype == np.uint8:
    return splits, None
  scaling = Standardisation.of(splits["train"].x)
  return {name: Split(scaling.apply(s.x, name, dataset, feature_names), s.y)
          for name, s in splits.items()}, scaling


def _check_standardised(x: np.ndarray, split: str, dataset: str, feature_names: tuple[str, ...],
                        mean: np.ndarray, std: np.ndarray) -> None:
  """What the model sees must be finite: a split far outside the train split's spread
  (a train column almost constant, say) can leave float32's range once standardised."""
  bad = np.argwhere(~np.isfinite(x))
  if bad.size:
    j = bad[0][-1]
    column = repr(feature_names[j]) if feature_names else f"x[..., {j}]"
    raise InputError(f"{dataset}: feature column {column} of the {split} split leaves float32's range "
                     f"once standardised by the train split's mean {mean[j]:g} and std {std[j]:g}; "
                     "rescale that feature, or drop it")


# Why each split needs a label of every task: train to learn it, val to select its
# epoch and score it, test to score it (a task without any would report no metric).
_LABELS_NEEDED_FOR = {"train": "to learn from", "val": "to select an epoch on and score",
                      "test": "to score"}


def _check_every_task_labelled(config: DataConfig, splits: dict, names: tuple[str, ...]) -> None:
  for split in SPLITS:
    y = splits[split].y
    unlabelled = [t for t, count in zip(names, np.sum(y != missing.MISSING, axis=0)) if count == 0]
    if unlabelled:
      raise InputError(f"{config.dataset}: task {unlabelled[0]!r} has no labels in the {split} split "
                       f"({len(y)} examples), so nothing {_LABELS_NEEDED_FOR[split]}; drop it or "
                       "label some")


def _resampled(config: DataConfig, splits: dict, origins: dict) -> tuple[dict, dict]:
  """The splits config.resampling asks for, cut from these (the data's own) pooled."""
  if config.resampling.is_own:
    return splits, origins
  splits, held = resample(splits, config.resampling,
                           lambda stream: _stream_seed(config.data_seed, "resample/" + stream))
  return splits, {name: f"{config.dataset}: {held[name]}" for name in SPLITS}


def _read(config: DataConfig) -> tuple[dict, dict, tuple[str, ...], _Source, Optional[Standardisation]]:
  names = task_names(config)
  source = _read_source(config)
  columns = [source.task_names.index(t) for t in names]
  splits, origins = _resampled(config, *_cut_read_splits(config, source))
  splits = {name: Split(s.x, s.y[:, columns]) for name, s in splits.items()}
  _check_every_task_labelled(config, splits, names)
  # Filled after the cut, so that a mean comes from the train split alone.
  xs, filled, fill_values = impute.fill({name: s.x for name, s in splits.items()}, config.impute,
                                        source.feature_names, config.dataset)
  splits = {name: Split(xs[name], s.y) for name, s in splits.items()}
  if filled:
    source = dataclasses.replace(source, notes=source.notes + (filled,))
  splits, scaling = _standardise(splits, config.dataset, source.feature_names)
  if scaling is not None and fill_values is not None:  # kept for new data (--save_params)
    scaling = dataclasses.replace(scaling, fill=fill_values)
  return splits, origins, names, source, scaling


def load_dataset(config: DataConfig) -> MultiTaskData:
  check_data_config(config)
  source, scaling = None, None
  if read_kind(config.dataset):
    splits, origins, names, source, scaling = _read(config)
  else:
    names = task_names(config)
    # Each split has its own seed, so a test set does not change when num_train does.
    splits = {name: Split(*_generate(config, getattr(config, "num_" + name),
                                     _stream_seed(config.data_seed, name)))
              for name in SPLITS}
    origins = {name: f"generated {config.dataset} (data_seed {config.data_seed}, stream {name!r})"
               for name in SPLITS}
    splits, origins = _resampled(config, splits, origins)
  hidden = {name: Split(s.x, missing.hide_labels(s.y, config.missing_frac,
                                                 _stream_seed(config.data_seed, name + "/missing")))
            for name, s in splits.items() if name != "test"}
  train, val = hidden["train"], hidden["val"]
  train_y, val_y = apply_label_budget(train.y, val.y, names, config.label_budget,
                                      _stream_seed(config.data_seed, "train/budget"))
  train, val = Split(train.x, train_y), Split(val.x, val_y)
  return MultiTaskData(
      name=config.dataset,
      task_names=names,
      train=handle_missing(train, config.label_handling),
      val=val,
      test=splits["test"],
      origins=origins,
      feature_names=source.feature_names if source else (),
      notes=source.notes if source else (),
      standardisation=scaling,
  )


def apply_label_budget(train_NxT: np.ndarray, val_MxT: np.ndarray, task_names: tuple[str, ...],
                       budget: tuple[tuple[str, int], ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Hides all but `count` of each budgeted task's train labels, chosen uniformly at
  random, and its validation labels in the same proportion (at least one while count
  > 0): a user with 25 labels has no 800 more to select an epoch on."""
  train, val = train_NxT.copy(), val_MxT.copy()
  rng = np.random.default_rng(seed)
  for task, count in budget:
    j = task_names.index(task)
    labelled = np.flatnonzero(train[:, j] != missing.MISSING)
    if count > len(labelled):
      raise InputError(f"label budget of {count} for task {task!r} exceeds the {len(labelled)} "
                       f"labels it has in the train split")
    train[rng.permutation(labelled)[count:], j] = missing.MISSING
    val_labelled = np.flatnonzero(val[:, j] != missing.MISSING)
    val_count = min(len(val_labelled), max(int(count > 0), round(count * len(val_labelled) / max(len(labelled), 1))))
    val[rng.permutation(val_labelled)[val_count:], j] = missing.MISSING
  return train, val


def handle_missing(split: Split, label_handling: str) -> Split:
  if label_handling == "as_negative":
    return Split(split.x, np.where(split.y == -1, 0, split.y).astype(split.y.dtype))
  if label_handling == "drop_incomplete":
    complete = np.all(split.y != -1, axis=1)
    return Split(split.x[complete], split.y[complete])
  return split
