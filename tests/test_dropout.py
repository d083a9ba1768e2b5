"""--dropout: inverted dropout after every hidden layer while training, checked by hand
against numpy; the training step's gradient is that of the loss under the step's own
masks; rate 0 is exactly the network without it; architectures without it refuse it."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl_jax import methods
from mtl_jax.errors import InputError
from mtl_jax.losses import masked_logistic_loss
from mtl_jax.models import EncoderSpec, build_model, joint_model
from mtl_jax.step import DROPOUT_STREAM, make_batch_gradient
from mtl_jax.train import TrainConfig, train

RATE = 0.4


def _mlp(rate, depth=1):
  return joint_model(EncoderSpec("mlp", 64, depth, dropout=rate), 3, (10,))


def test_each_hidden_unit_is_dropped_or_scaled_by_one_over_keep():
  model = _mlp(RATE)
  params = model.init(jax.random.PRNGKey(0))
  x = np.random.default_rng(0).normal(size=(32, 10)).astype(np.float32)
  dense = params["encoder"]["Dense_0"]
  hidden = np.maximum(x @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"]), 0)  # numpy, by hand
  np.testing.assert_allclose(model.encode(params, x), hidden, rtol=1e-5, atol=1e-6)  # no key: no dropout
  dropped = np.asarray(model.encode(params, x, jax.random.PRNGKey(1)))
  kept = dropped != 0
  np.testing.assert_allclose(dropped[kept], hidden[kept] / (1 - RATE), rtol=1e-5)
  live = hidden > 0
  assert abs(1 - kept[live].mean() - RATE) < 0.05  # about RATE of the live units dropped
  other = np.asarray(model.encode(params, x, jax.random.PRNGKey(2)))
  assert ((other != 0) != kept)[live].any()  # another key, another mask


def test_rate_zero_is_the_network_without_dropout():
  with_zero, plain = _mlp(0.0, depth=2), joint_model(EncoderSpec("mlp", 64, 2), 3, (10,))
  params = plain.init(jax.random.PRNGKey(0))
  assert jax.tree.structure(with_zero.init(jax.random.PRNGKey(0))) == jax.tree.structure(params)
  x = jnp.ones((4, 10))
  np.testing.assert_array_equal(with_zero.apply(params, x, jax.random.PRNGKey(3)), plain.apply(params, x))


@pytest.mark.parametrize("method", ["ew", "mgda", "mgda_ub"])
def test_the_step_gradient_is_the_loss_gradient_under_the_steps_masks(method):
  """Whatever path the method takes (one weighted pass, per-task gradients of the shared
  parameters, or of the representation), the update uses one set of masks per step:
  with equal weights it is the gradient of J under the masks of the step's key."""
  model = _mlp(RATE, depth=2)
  params = model.init(jax.random.PRNGKey(0))
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(16, 10)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 2, (16, 3)), jnp.int8)
  idx = jnp.arange(16)
  batch_gradient = make_batch_gradient(model, methods.build_method("ew"), 16, 16)
  key = jax.random.PRNGKey(7)
  _, grads, _, _ = batch_gradient(params, methods.init_state(methods.build_method("ew"), 3, 0), key,
                                  True, x, y, idx)
  mask_key = jax.random.fold_in(jax.random.fold_in(key, DROPOUT_STREAM), 0)
  expected = jax.grad(lambda p: masked_logistic_loss(model.apply(p, x, mask_key), y))(params)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(expected)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  if method != "ew":  # the other paths: same masks, so the same losses as ew's pass
    m = methods.build_method(method)
    shared = sum(leaf.size for leaf in jax.tree.leaves(params["encoder"]))
    losses, _, _, _ = make_batch_gradient(model, m, 16, 16)(params, methods.init_state(m, 3, shared), key,
                                                           True, x, y, idx)
    logits = model.apply(params, x, mask_key)
    want_T = [masked_logistic_loss(logits[:, t:t + 1], y[:, t:t + 1]) for t in range(3)]
    np.testing.assert_allclose(losses, want_T, rtol=1e-5)


def test_training_with_dropout_is_reproducible_and_differs_from_without():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(128, 10)).astype(np.float32)
  y = (x[:, :3] > 0).astype(np.int8)
  config = TrainConfig(batch_size=32, epochs=2)
  runs = [train(model, x, y, [0], config).loss_ExS for model in (_mlp(RATE), _mlp(RATE), _mlp(0.0))]
  np.testing.assert_array_equal(runs[0], runs[1])
  assert not np.allclose(runs[0], runs[2])


def test_architectures_without_dropout_refuse_it():
  with pytest.raises(InputError, match="--dropout applies to hps and separate"):
    build_model("mmoe", EncoderSpec("mlp", 8, 2, dropout=0.1), 2, (10,))
  with pytest.raises(InputError, match=r"in \[0, 1\)"):
    EncoderSpec("mlp", 8, 2, dropout=1.0)


@pytest.mark.parametrize("strategy", ["vmap", "in_turn", "one_at_a_time"])
def test_each_separate_network_draws_its_own_masks(strategy):
  """Network j under dropout key k is the single-task network j under split(k, T)[j],
  vmapped, in turn or alone (Model.network); without a key, the networks are deterministic."""
  from mtl_jax.models import separate_models
  spec = EncoderSpec("mlp", 32, 1, dropout=RATE)
  model = separate_models(spec, 3, (10,), strategy=strategy)
  single = joint_model(spec, 1, (10,))
  params = model.init(jax.random.PRNGKey(0))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 10)), jnp.float32)
  key = jax.random.PRNGKey(5)
  logits = model.apply(params, x, key)
  for j, k in enumerate(jax.random.split(key, 3)):
    one = jax.tree.map(lambda p: p[j], params)
    np.testing.assert_allclose(logits[:, j], single.apply(one, x, k)[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.apply(params, x)[:, j], single.apply(one, x)[:, 0], rtol=1e-5, atol=1e-6)
    if model.network is not None:  # network j alone, as training one at a time runs it
      np.testing.assert_allclose(model.network(j).apply(one, x, key)[:, 0], logits[:, j], rtol=1e-5, atol=1e-6)
