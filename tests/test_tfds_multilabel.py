"""TFDS multi-label loading: the adapters on mocked celeb_a / voc / coco, the real
array_record path on a tiny locally prepared dataset, and the errors. No TensorFlow.

How tfds.testing.mock_data (TFDS 4.9.10) meets this loader:
* The loader opens the builder from the prepared files (builder_from_files). mock_data
  redirects that to its data_dir, by default the package's testing/metadata folder, which
  the pip package does not ship: with no metadata files the dataset reads as not
  prepared. MockPolicy.USE_CODE does not help (it points at a folder that never exists
  and leaves info.splits empty). So the test writes the metadata (dataset_info.json,
  features.json) from the builder code into tmp_path and passes mock_data(data_dir=...),
  as the mock_data docstring suggests for real metadata files.
* The mocked as_data_source yields the same num_examples random examples for every
  split, whatever the split sizes in dataset_info.json.
* Its __getitems__ is a functools.partial set on a MagicMock, never bound to the
  source: calling it raises TypeError, so the loader (and this test) index one by one.
"""

import sys

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from mtl_jax.data import tfds_multilabel  # noqa: E402
from mtl_jax.errors import InputError  # noqa: E402

N_MOCK = 3
SIZE = 16


def _write_metadata(name, data_dir, monkeypatch, n=N_MOCK):
  """dataset_info.json / features.json of `name` with train, validation and test
  splits, as a real array_record build would leave them (no data files)."""
  if name.startswith("coco"):
    # Coco._info spells a dtype tf.int64, which imports TensorFlow; any int64 will do.
    module = sys.modules[tfds.builder_cls("coco").__module__]
    monkeypatch.setattr(module, "tf", type("tf", (), {"int64": np.int64}))
  builder = tfds.builder(name, data_dir=str(data_dir), file_format="array_record")
  if name.startswith("coco"):
    # The real build sets the names from the annotation file (person first), the code
    # only knows there are 80.
    label = builder.info.features["objects"]["label"]
    label.names = ["person"] + [f"class_{i}" for i in range(1, 80)]
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=split, shard_lengths=[n], num_bytes=0,
                          filename_template=tfds.core.ShardedFileTemplate(
                              data_dir=builder.data_path, dataset_name=builder.name,
                              split=split, filetype_suffix="array_record"))
      for split in ("train", "validation", "test")]))
  builder.data_path.mkdir(parents=True)
  builder.info.write_to_directory(builder.data_path)


def _multi_hot(ids, num):
  out = np.zeros(num, np.int8)
  out[np.asarray(ids, int)] = 1
  return out


@pytest.mark.parametrize("name, num_tasks, task, splits", [
    ("celeb_a", 40, "Smiling", ("train", "validation", "test")),
    ("voc/2007", 20, "dog", ("train", "validation", "test")),
    ("coco/2017", 80, "person", ("train", "validation")),  # coco test: no annotations
])
def test_adapters_on_mocked_data(name, num_tasks, task, splits, tmp_path, monkeypatch):
  _write_metadata(name, tmp_path, monkeypatch)
  with tfds.testing.mock_data(num_examples=N_MOCK, data_dir=str(tmp_path)):
    parts, names = tfds_multilabel.load_tfds_splits(name, "/nowhere", SIZE)
    raw = tfds.core.read_only_builder.builder_from_files(name).as_data_source(split="train")
    raw = [raw[i] for i in range(N_MOCK)]
  assert len(names) == num_tasks and task in names
  assert tuple(parts) == splits
  if name == "celeb_a":
    assert list(names) == sorted(names)
    expected = [[ex["attributes"][t] for t in names] for ex in raw]
  elif name.startswith("voc"):
    expected = [_multi_hot(ex["labels"], 20) for ex in raw]
  else:
    expected = [_multi_hot(ex["objects"]["label"], 80) for ex in raw]
  for images, labels in parts.values():
    assert images.shape == (N_MOCK, SIZE, SIZE, 3) and images.dtype == np.uint8
    assert labels.shape == (N_MOCK, num_tasks) and labels.dtype == np.int8
    assert set(np.unique(labels)) <= {0, 1}
    np.testing.assert_array_equal(labels, np.array(expected, np.int8))
    np.testing.assert_array_equal(images[0], tfds_multilabel.square_image(raw[0]["image"], SIZE))


CLASSES = ["cat", "dog", "bird", "fish"]
SPLIT_SIZES = {"train": 12, "validation": 6}


def _tiny_example(split, i):
  """Deterministic example i of a split: a non-square image (some grayscale) and 0-3
  labels."""
  rng = np.random.default_rng([len(split), i])
  h, w = rng.integers(10, 40, 2)
  image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
  if i % 4 == 3:
    image[:] = image[..., :1]  # gray pixels in an RGB image
  return image, sorted(set(rng.integers(0, len(CLASSES), rng.integers(0, 4)).tolist()))


def _prepare_tiny(data_dir):
  from PIL import Image

  # Not registered: tfds finds it only from its files, like a dataset prepared elsewhere
  # and copied here (tfds.builder falls back to a read-only builder from files).
  class TinyMultiLabel(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("1.0.0")

    # Skip the builder source folder lookup (see driving_tfds.py).
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
      return None

    def _info(self):
      # DatasetInfo directly: dataset_info_from_configs reads metadata files next to
      # the module that defines the builder.
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "image": tfds.features.Image(encoding_format="png"),
          "index": np.int64,
          "labels": tfds.features.Sequence(tfds.features.ClassLabel(names=CLASSES)),
      }))

    def _split_generators(self, dl_manager):
      return {split: self._generate_examples(split, n) for split, n in SPLIT_SIZES.items()}

    def _generate_examples(self, split, num):
      for i in range(num):
        image, labels = _tiny_example(split, i)
        # PIL images: TFDS encodes numpy images with TensorFlow.
        yield i, {"image": Image.fromarray(image), "index": i, "labels": labels}

  builder = TinyMultiLabel(data_dir=str(data_dir), file_format="array_record")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return builder


def test_prepared_dataset_round_trip(tmp_path, monkeypatch):
  _prepare_tiny(tmp_path)
  monkeypatch.setattr(tfds_multilabel, "_CHUNK", 5)  # several chunks, read by threads
  parts, names = tfds_multilabel.load_tfds_splits("tiny_multi_label", str(tmp_path), SIZE)
  assert names == tuple(CLASSES)  # found by the generic adapter
  assert set(parts) == set(SPLIT_SIZES)
  source = tfds.builder("tiny_multi_label", data_dir=str(tmp_path)).as_data_source("train")
  order = [int(source[i]["index"]) for i in range(len(source))]  # records are shuffled
  for split, (images, labels) in parts.items():
    assert images.shape == (SPLIT_SIZES[split], SIZE, SIZE, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int8
    if split == "train":
      examples = [_tiny_example(split, i) for i in order]
      np.testing.assert_array_equal(
          labels, [_multi_hot(ids, len(CLASSES)) for _, ids in examples])
      for (image, _), got in zip(examples, images):
        np.testing.assert_array_equal(got, tfds_multilabel.square_image(image, SIZE))
  # A 10x30 image keeps its center 10x10 square.
  wide = np.zeros((10, 30, 3), np.uint8)
  wide[:, 10:20] = 255
  assert (tfds_multilabel.square_image(wide, 5) == 255).all()
  assert tfds_multilabel.square_image(np.zeros((7, 9, 1), np.uint8), 4).shape == (4, 4, 3)
  assert "tensorflow" not in sys.modules


def test_tfrecord_files_ask_for_a_rebuild(tmp_path):
  import json
  builder = _prepare_tiny(tmp_path)
  # TFDS cannot write tfrecord files without TensorFlow; relabel the metadata instead.
  info_path = builder.data_path / "dataset_info.json"
  info = json.loads(info_path.read_text())
  info["fileFormat"] = "tfrecord"
  info_path.write_text(json.dumps(info))
  with pytest.raises(InputError, match="file_format=array_record"):
    tfds_multilabel.load_tfds_splits("tiny_multi_label", str(tmp_path), SIZE)


def test_errors(tmp_path):
  with pytest.raises(InputError, match="no_such_dataset_xyz"):
    tfds_multilabel.load_tfds_splits("no_such_dataset_xyz", str(tmp_path), SIZE)
  with pytest.raises(InputError, match="prepare") as err:
    tfds_multilabel.load_tfds_splits("celeb_a", str(tmp_path), SIZE)
  assert "tfds build celeb_a" in str(err.value) and "\n" not in str(err.value)
  with pytest.raises(InputError, match="prepare"):
    tfds_multilabel.load_tfds_splits("coco/2017", "~/no_such_tfds_dir", SIZE)


def test_generic_adapter():
  f = tfds.features
  find = lambda features: tfds_multilabel._find_adapter(f.FeaturesDict(features), tfds)
  assert find({"image": f.Image(), "label": f.ClassLabel(num_classes=3)}) is None  # one label
  assert find({"image": f.Image(), "objects": f.Sequence({
      "bbox": f.BBoxFeature(), "label": f.ClassLabel(num_classes=3)})}).target == (
          "objects", "label")
  assert find({"photo": f.Image(), "tags": {"a": np.bool_, "b": np.bool_}}) == (
      tfds_multilabel.Adapter(("tags",), "photo"))
