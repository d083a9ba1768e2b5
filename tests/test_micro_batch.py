"""A step's gradient may be summed over micro-batches (for cache locality on a CPU):
that changes float rounding only, padding rows add nothing, and the automatic size
follows from the model's largest per-example intermediate array."""
import jax
import numpy as np
import pytest

from mtl_jax.models import EncoderSpec, joint_model, separate_models
from mtl_jax.micro_batch import MICRO_BATCH_BYTES, choose_micro_batch, per_example_bytes
from mtl_jax.train import TrainConfig, train

IMAGE = (32, 32, 3)


def _data(num, shape, num_tasks=3):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (num, *shape), dtype=np.uint8)
  return x, rng.integers(-1, 2, (num, num_tasks)).astype(np.int8)


@pytest.mark.parametrize("micro_batch", [5, 3])  # 3 does not divide 10: the last micro-batch is padded
def test_micro_batches_give_the_whole_batch_gradient(micro_batch):
  x, y = _data(40, (8, 8, 3))
  model = separate_models(EncoderSpec("cnn", 4, 2), 3, (8, 8, 3))
  config = TrainConfig(learning_rate=1e-2, batch_size=10, epochs=2)
  whole = train(model, x, y, [0, 1], config, micro_batch=10)
  split = train(model, x, y, [0, 1], config, micro_batch=micro_batch)
  np.testing.assert_allclose(split.loss_ExS, whole.loss_ExS, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(split.params), jax.tree.leaves(whole.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_largest_per_example_array_is_the_patch_matrix():
  # CNN width 64 on 32x32x3: block 2 turns 16x16x64 into an 8x8 grid of 3x3x64 patches.
  cnn = joint_model(EncoderSpec("cnn", 64, 3), 4, IMAGE)
  x, y = _data(5, IMAGE, 4)
  assert per_example_bytes(cnn, cnn.init(jax.random.PRNGKey(0)), x, y) == 8 * 8 * (9 * 64) * 4
  # An MLP's largest per-example array is the image as float32.
  mlp = joint_model(EncoderSpec("mlp", 256, 2), 4, IMAGE)
  assert per_example_bytes(mlp, mlp.init(jax.random.PRNGKey(0)), x, y) == 32 * 32 * 3 * 4


def test_automatic_micro_batch_keeps_the_largest_array_under_the_budget():
  x, y = _data(5, IMAGE, 4)
  cnn = joint_model(EncoderSpec("cnn", 64, 3), 4, IMAGE)
  micro = choose_micro_batch(cnn, cnn.init(jax.random.PRNGKey(0)), x, y, 128)
  assert micro * 8 * 8 * 9 * 64 * 4 <= MICRO_BATCH_BYTES < 2 * micro * 8 * 8 * 9 * 64 * 4
  mlp = joint_model(EncoderSpec("mlp", 256, 2), 4, IMAGE)
  assert choose_micro_batch(mlp, mlp.init(jax.random.PRNGKey(0)), x, y, 128) == 128


def test_networks_in_turn_get_one_networks_micro_batch():
  """Run in turn, T separate networks need the cache of one network at a time, so they
  get its micro-batch; vmapped, their arrays are T times larger and micro-batches smaller."""
  x, y = _data(5, IMAGE, 4)
  spec = EncoderSpec("cnn", 16, 3)
  single = joint_model(spec, 1, IMAGE)
  expected = choose_micro_batch(single, single.init(jax.random.PRNGKey(0)), x, y[:, :1], 128)
  chosen = {}
  for in_turn in (True, False):
    model = separate_models(spec, 4, IMAGE, strategy="in_turn" if in_turn else "vmap")
    chosen[in_turn] = choose_micro_batch(model, model.init(jax.random.PRNGKey(0)), x, y, 128)
  assert chosen[True] == expected == 64
  assert chosen[False] < expected
