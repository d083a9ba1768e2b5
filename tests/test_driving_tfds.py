import sys

import numpy as np



def test_tfds_round_trip_without_tensorflow(tmp_path):
  from mtl_jax.data import driving, driving_tfds

  for split, num in (("train", 64), ("test", 32)):
    images, labels = driving_tfds.load_driving_tfds(str(tmp_path), split, num_train=64,
                                                    num_test=32)
    ref_images, ref_labels = driving.render_scenes(num, driving_tfds.SPLIT_SEEDS[split])
    assert images.dtype == np.uint8 and labels.dtype == np.int8
    np.testing.assert_array_equal(images, ref_images)
    np.testing.assert_array_equal(labels, ref_labels)

  builder = driving_tfds.prepare(str(tmp_path), 64, 32)
  assert builder.name == "driving_scenes"
  assert builder.info.splits["train"].num_examples == 64
  assert list(tmp_path.rglob("*.array_record*"))
  source = builder.as_data_source(split="test")
  assert len(source) == 32 and source[0]["image"].shape == (32, 32, 3)
  assert "tensorflow" not in sys.modules
