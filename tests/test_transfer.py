"""Fine-tuning from a pretrained encoder: frozen means frozen, and the start is the
pretrained weights."""
import jax
import numpy as np

from mtl_jax.models import EncoderSpec, joint_model
from mtl_jax.train import TrainConfig, train

SHAPE = (8, 8, 3)
CONFIG = TrainConfig(learning_rate=1e-2, batch_size=16, epochs=2)


def data(seed, num_tasks):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 255, (64, *SHAPE), dtype=np.uint8), rng.integers(0, 2, (64, num_tasks)).astype(np.int8)


def test_frozen_encoder_stays_pretrained_and_fine_tuned_one_moves():
  encoder = EncoderSpec("cnn", 4, 2)
  pretrained = train(joint_model(encoder, 2, SHAPE), *data(0, 2), [0, 1], CONFIG).params["encoder"]
  x, y = data(1, 1)
  target = joint_model(encoder, 1, SHAPE)
  frozen = train(target, x, y, [0, 1], CONFIG, pretrained_shared={"encoder": pretrained}, freeze_shared=True)
  tuned = train(target, x, y, [0, 1], CONFIG, pretrained_shared={"encoder": pretrained})
  fresh = train(target, x, y, [0, 1], CONFIG)
  same = jax.tree.map(np.array_equal, frozen.params["encoder"], pretrained)
  assert all(jax.tree.leaves(same))
  moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), tuned.params["encoder"], pretrained)
  assert all(jax.tree.leaves(moved))
  # The heads learn in every case and start from the same fresh initialisation.
  assert not np.array_equal(frozen.params["heads"]["kernel"], fresh.params["heads"]["kernel"])
  # Fine-tuning starts where pretraining ended, not at a fresh encoder: it stays closer.
  distance = lambda a, b: sum(float(np.sum((np.asarray(u) - np.asarray(v)) ** 2))
                              for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  assert distance(tuned.params["encoder"], pretrained) < distance(fresh.params["encoder"], pretrained)
