"""Training keeps the data on the device and syncs with the host once per epoch, never
per step: the epoch is one compiled scan with no host callback in it, and the host
fetches the same number of arrays per epoch whatever the number of steps."""
import importlib

import jax
import numpy as np
import optax

from mtl_jax.methods.equal_weighting import EQUAL_WEIGHTING
from mtl_jax.models import EncoderSpec, joint_model
from mtl_jax.train import TrainConfig, train

train_module = importlib.import_module("mtl_jax.train")  # the module; mtl_jax.train is also a function
MODEL = joint_model(EncoderSpec("mlp", 4, 1), 2, (5,))


def _data(num):
  rng = np.random.default_rng(0)
  return rng.normal(size=(num, 5)).astype(np.float32), rng.integers(0, 2, (num, 2)).astype(np.int8)


def test_an_epoch_is_one_program_without_host_callbacks():
  x, y = _data(64)
  optimizer = optax.adam(1e-3)
  epoch, steps = train_module._epoch_fn(MODEL, EQUAL_WEIGHTING, optimizer, len(x), 8, micro_batch=3)
  params = MODEL.init(jax.random.PRNGKey(0))
  hlo = jax.jit(epoch).lower(params, optimizer.init(params), (), jax.random.PRNGKey(1),
                             jax.random.PRNGKey(2), x, y).as_text()
  assert steps == 8 and "while" in hlo  # the 8 steps (of 3 micro-batches) loop inside the program
  for host_op in ("callback", "outfeed", "infeed", "send", "recv"):
    assert host_op not in hlo.lower(), host_op


def test_host_fetches_per_epoch_do_not_grow_with_the_steps(monkeypatch):
  fetches = []
  real_get = jax.device_get
  monkeypatch.setattr(train_module.jax, "device_get", lambda tree: fetches.append(1) or real_get(tree))
  counts = []
  for num in (32, 256):  # 4 and 32 steps per epoch
    fetches.clear()
    x, y = _data(num)
    # train() runs each epoch under jax.transfer_guard("disallow"): only these explicit
    # fetches may cross (on CPU the guard catches host-to-device copies only).
    train(MODEL, x, y, [0, 1], TrainConfig(batch_size=8, epochs=3, select_epoch="best_val"),
          validation=_data(16))
    counts.append(len(fetches))
  assert counts[0] == counts[1] == 3 + 1  # one per epoch, one for the selected epochs
