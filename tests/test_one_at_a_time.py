"""Separate networks trained one network's epoch at a time (models.separate_models'
"one_at_a_time", train._epoch_network_at_a_time) train exactly what the interleaved
program trains: the same batches, dropout masks, losses, updates and selected epochs."""
import jax
import numpy as np
import optax
import pytest

from mtl_jax import methods
from mtl_jax.models import EncoderSpec, separate_models
from mtl_jax.train import TrainConfig, _epoch_network_at_a_time, one_network_at_a_time, train

T, SHAPE = 3, (8, 8, 3)


def _data():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (160, *SHAPE)).astype(np.uint8)
  y = rng.integers(-1, 2, (160, T)).astype(np.int8)
  y[32:][rng.random(128) < 0.9, 2] = -1  # task 2 has few training labels, some batches none
  return x, y


def _trained(spec: EncoderSpec, strategy: str, method: str = "ew", **config_options):
  x, y = _data()
  config = TrainConfig(learning_rate=1e-2, batch_size=32, epochs=3, select_epoch="best_val", method=method,
                       **config_options)
  return train(separate_models(spec, T, SHAPE, strategy=strategy), x[32:], y[32:], [0, 1], config,
               validation=(x[:32], y[:32]))


@pytest.mark.parametrize("spec", [EncoderSpec("cnn", 6, 2), EncoderSpec("mlp", 8, 2, dropout=0.3)],
                         ids=["cnn", "mlp-dropout"])
def test_one_at_a_time_trains_what_in_turn_trains(spec):
  alone, interleaved = _trained(spec, "one_at_a_time"), _trained(spec, "in_turn")
  for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(interleaved.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(alone.task_loss_ExSxT, interleaved.task_loss_ExSxT, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(alone.val_loss_ExS, interleaved.val_loss_ExS, rtol=1e-5)
  np.testing.assert_array_equal(alone.selected_epoch_S, interleaved.selected_epoch_S)
  assert alone.selected_epoch_S.shape == (2, T)
  assert np.isnan(alone.cosine_ExS).all() and np.isnan(interleaved.cosine_ExS).all()


@pytest.mark.parametrize("options", [dict(optimizer="sgd"), dict(weight_decay=0.1)], ids=["sgd", "adamw"])
def test_every_optimizer_state_splits_into_networks(options):
  """SGD's state has no leaves, AdamW's a chain of them: each network gets its own part."""
  spec = EncoderSpec("mlp", 6, 1)
  alone, interleaved = _trained(spec, "one_at_a_time", **options), _trained(spec, "in_turn", **options)
  for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(interleaved.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _scan_lengths(jaxpr, depth=0):
  """(nesting depth, length) of every scan in a jaxpr, its sub-jaxprs' included."""
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "scan":
      yield depth, eqn.params["length"]
    for param in eqn.params.values():
      inner = getattr(param, "jaxpr", None)
      if inner is not None:
        yield from _scan_lengths(getattr(inner, "jaxpr", inner), depth + (eqn.primitive.name == "scan"))


def test_each_network_runs_its_whole_epoch_before_the_next():
  """The epoch is a scan over the T networks whose body scans over the epoch's steps."""
  x, y = _data()
  model = separate_models(EncoderSpec("mlp", 4, 1), T, SHAPE, strategy="one_at_a_time")
  method, optimizer = methods.build_method("ew"), optax.adam(1e-3)
  epoch, num_batches = _epoch_network_at_a_time(model, method, optimizer, len(x), 32, 32)
  params = model.init(jax.random.PRNGKey(0))
  key = jax.random.PRNGKey(1)
  jaxpr = jax.make_jaxpr(epoch)(params, optimizer.init(params), (), key, key, x, y).jaxpr
  scans = list(_scan_lengths(jaxpr))
  assert scans[0] == (0, T) and (1, num_batches) in scans and num_batches == 5
  assert all(depth >= 1 for depth, _ in scans[1:])


def test_only_equal_weighting_splits_into_networks():
  """Any other method weighs each task by something that depends on every task's loss
  (uncertainty weighting: learned weights in one state), so the epoch stays interleaved."""
  model = separate_models(EncoderSpec("mlp", 4, 1), T, SHAPE, strategy="one_at_a_time")
  assert one_network_at_a_time(model, methods.build_method("ew"), None)
  assert not one_network_at_a_time(model, methods.build_method("uw"), None)
  assert not one_network_at_a_time(separate_models(EncoderSpec("mlp", 4, 1), T, SHAPE, strategy="in_turn"),
                                   methods.build_method("ew"), None)
  spec = EncoderSpec("mlp", 6, 1)
  for a, b in zip(jax.tree.leaves(_trained(spec, "one_at_a_time", "uw").params),
                  jax.tree.leaves(_trained(spec, "in_turn", "uw").params)):
    np.testing.assert_array_equal(a, b)
