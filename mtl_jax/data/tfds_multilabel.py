"""Multi-label image datasets prepared with TFDS (celeb_a, voc, coco, ...) as numpy arrays.

Nothing is downloaded: the dataset must already be prepared in data_dir as
array_record files, which ``builder.as_data_source()`` reads by random access
without TensorFlow. The builder is opened from those files (a read-only
builder), not from the TFDS builder code: the files carry the exact features
and label names of the build, any prepared version works, and some builders'
code (coco) needs TensorFlow just to be constructed.

An adapter says where a dataset keeps its labels: a dict of bool features (one
task per key, celeb_a) or a sequence of class labels (one task per class, voc,
coco). Other datasets work when their features hold one of these shapes.

tensorflow_datasets is imported inside the functions only: this module must
import where TFDS is not installed.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from typing import Any, Callable

import numpy as np

from mtl_jax.errors import InputError

_CHUNK = 256  # records per read: batches array_record reads and spreads decoding over threads


@dataclasses.dataclass(frozen=True)
class Adapter:
  """Where a dataset keeps its image and its labels."""
  # Path to a dict of bool features or to a (Sequence of) ClassLabel feature.
  target: tuple[str, ...]
  image: str = "image"
  # (config name, split) -> True where the split was built without annotations:
  # skipped without decoding its images.
  unlabeled: Callable[[str, str], bool] = lambda config, split: False


ADAPTERS: dict[str, Adapter] = {
    "celeb_a": Adapter(("attributes",)),  # 40 bool attributes
    "voc": Adapter(("labels",),  # 20 classes; VOC 2012 has no test annotations
                   unlabeled=lambda config, split: config == "2012" and split == "test"),
    "coco": Adapter(("objects", "label"),  # 80 classes; the test splits have no annotations
                    unlabeled=lambda config, split: split.startswith("test")),
}


def _tfds():
  try:
    import tensorflow_datasets as tfds
  except ImportError:
    raise InputError("reading a TFDS dataset needs tensorflow-datasets and array_record: "
                     "pip install tensorflow-datasets array_record") from None
  return tfds


def _adapters() -> str:
  return ", ".join(sorted(ADAPTERS))


def _open(name: str, data_dir: str):
  """The read-only builder of the prepared dataset, or an InputError saying why not."""
  tfds = _tfds()
  not_found = tfds.core.registered.DatasetNotFoundError
  try:
    return tfds.core.read_only_builder.builder_from_files(name, data_dir=data_dir)
  except not_found:
    pass
  try:  # Known to TFDS (so it could be prepared) or not? Loads the code, builds nothing.
    tfds.builder_cls(name.split(":")[0].split("/")[0])
  except not_found:
    raise InputError(f"unknown TFDS dataset {name!r} (no TFDS builder of that name and nothing "
                     f"prepared in {data_dir}); multi-label adapters: {_adapters()}") from None
  raise InputError(
      f"tfds dataset {name!r} is not prepared in {data_dir}; prepare it where there is internet "
      f"with `tfds build {name} --data_dir={data_dir} --file_format=array_record` (or python -c "
      f"\"import tensorflow_datasets as tfds; tfds.builder('{name}', data_dir='{data_dir}', "
      f"file_format='array_record').download_and_prepare()\") and copy it there")


def _get(tree, path: tuple[str, ...]):
  for key in path:
    tree = tree[key]
  return tree


def _is_bool_dict(feature, tfds) -> bool:
  return (isinstance(feature, tfds.features.FeaturesDict) and len(feature.keys()) > 0
          and all(isinstance(f, tfds.features.Tensor) and f.shape == () and f.np_dtype == np.bool_
                  for f in feature.values()))


def _class_label(feature, tfds):
  """The ClassLabel of a ClassLabel or Sequence(ClassLabel) feature, else None."""
  if isinstance(feature, tfds.features.Sequence):
    feature = feature.feature
  return feature if isinstance(feature, tfds.features.ClassLabel) else None


def _find_adapter(features, tfds) -> Adapter | None:
  """A generic adapter: the first image and multi-label feature found at the top level
  (or one level into a Sequence of dicts, like coco's objects/label)."""
  image = next((k for k, f in features.items() if isinstance(f, tfds.features.Image)), None)
  if image is None:
    return None
  for key, feature in features.items():
    if _is_bool_dict(feature, tfds) or (isinstance(feature, tfds.features.Sequence)
                                        and _class_label(feature, tfds)):
      return Adapter((key,), image)
    inner = feature.feature if isinstance(feature, tfds.features.Sequence) else None
    if isinstance(inner, tfds.features.FeaturesDict):
      sub = next((k for k, f in inner.items() if _class_label(f, tfds)), None)
      if sub is not None:
        return Adapter((key, sub), image)
  return None


def _target(features, path: tuple[str, ...], tfds
            ) -> tuple[tuple[str, ...], Callable[[Any], np.ndarray]]:
  """(task names, example -> int8 [T] of 1/0) for the feature at path."""
  feature = _get(features, path)
  classes = _class_label(feature, tfds)
  if classes is not None:
    names = tuple(classes.names)

    def multi_hot(example) -> np.ndarray:
      out = np.zeros(len(names), np.int8)
      out[np.asarray(_get(example, path), np.int64)] = 1
      return out
    return names, multi_hot
  if _is_bool_dict(feature, tfds):
    names = tuple(sorted(feature.keys()))
    return names, lambda example: np.array([_get(example, path)[n] for n in names], np.int8)
  raise InputError(f"feature {'/'.join(path)!r} is neither a dict of bool features nor a "
                   "Sequence(ClassLabel)")


def square_image(image: np.ndarray, size: int) -> np.ndarray:
  """Center-crops to a square, then resizes -> uint8 [size, size, 3] RGB, so every
  dataset, whatever its image sizes and channels, stacks into one array."""
  from PIL import Image
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  img = Image.fromarray(image).convert("RGB")
  w, h = img.size
  s = min(w, h)
  left, top = (w - s) // 2, (h - s) // 2
  # crop() first: resize(box=...) would blend in pixels from outside the box at its edges.
  img = img.crop((left, top, left + s, top + s)).resize((size, size), Image.Resampling.BILINEAR)
  return np.asarray(img, np.uint8)


def _read(source, keys: list[int]) -> list:
  try:
    return source.__getitems__(keys)
  # Indexed one at a time without __getitems__: older TFDS, and tfds.testing.mock_data,
  # whose mocked __getitems__ is not bound to its source (TypeError).
  except (AttributeError, TypeError):
    return [source[k] for k in keys]


def _load_split(source, adapter: Adapter, labels_of, num_tasks: int, image_size: int
                ) -> tuple[np.ndarray, np.ndarray]:
  n = len(source)
  images = np.empty((n, image_size, image_size, 3), np.uint8)
  labels = np.empty((n, num_tasks), np.int8)

  def load_chunk(start: int) -> None:  # PIL decodes and resizes without the GIL
    for i, example in enumerate(_read(source, list(range(start, min(start + _CHUNK, n)))),
                                start):
      images[i] = square_image(example[adapter.image], image_size)
      labels[i] = labels_of(example)

  with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
    list(pool.map(load_chunk, range(0, n, _CHUNK)))  # list(): re-raises a chunk's error
  return images, labels


def load_tfds_splits(name: str, data_dir: str, image_size: int
                     ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], tuple[str, ...]]:
  """name like "celeb_a", "voc/2007", "coco/2017" (anything tfds.builder accepts, optionally
  with config and version). Returns ({tfds_split_name: (images uint8 [N, S, S, 3], labels
  int8 [N, T])}, task_names) for every split of the prepared dataset that has labels, with
  S = image_size. A split without annotations (coco's test) is left out, and so is one
  where no example has any label set."""
  tfds = _tfds()
  data_dir = os.path.expanduser(data_dir)
  builder = _open(name, data_dir)
  features = builder.info.features
  adapter = ADAPTERS.get(builder.name)
  if adapter is None or adapter.target[0] not in features:  # e.g. coco/2017_panoptic
    adapter = _find_adapter(features, tfds)
  if adapter is None:
    raise InputError(f"tfds dataset {name!r} has no multi-label target (an image with a "
                     f"Sequence(ClassLabel) or a dict of bool features); adapters: {_adapters()}")
  task_names, labels_of = _target(features, adapter.target, tfds)
  config = builder.builder_config.name if builder.builder_config else ""
  splits = {}
  for split in builder.info.splits.keys():
    if adapter.unlabeled(config, split):
      continue
    try:
      source = builder.as_data_source(split=split)
    except NotImplementedError:  # no random access to tfrecord files without TensorFlow
      file_format = getattr(builder.info.file_format, "value", builder.info.file_format)
      raise InputError(
          f"tfds dataset {name!r} in {data_dir} is stored as {file_format} files, which "
          f"need TensorFlow to read; rebuild it with file_format=array_record "
          f"(`tfds build {name} --data_dir={data_dir} --file_format=array_record`)") from None
    images, labels = _load_split(source, adapter, labels_of, len(task_names), image_size)
    if labels.any():
      splits[split] = (images, labels)
  if not splits:
    raise InputError(f"tfds dataset {name!r} has no split with labels")
  return splits, task_names
