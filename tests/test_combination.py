"""The combination step: equal weighting is the course note's J trained as before, and
the interface carries per-task losses, per-task gradients (of the shared parameters
and of the shared representation), the method's own state and a PRNG key, each checked
against an independent computation with jax.jacrev."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mtl_jax.checkpoints import CheckpointSettings, EpochCheckpoints
from mtl_jax.losses import masked_logistic_loss, per_task_logistic_loss
from mtl_jax.methods import LOSSES, REPR_GRADS, SHARED_GRADS, Method, Update
from mtl_jax.models import EncoderSpec, build_model
from mtl_jax.step import make_batch_gradient
from mtl_jax.train import TrainConfig, train

T = 3


def _data(num, shape=(6,), seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num, *shape)).astype(np.float32) if len(shape) == 1 else \
      rng.integers(0, 255, (num, *shape), dtype=np.uint8)
  y = rng.integers(0, 2, (num, T)).astype(np.int8)
  y[rng.random((num, T)) < 0.3] = -1  # missing labels
  return x, y


def _reference_params(model, x, y, seed, config):
  """Plain Python loop: Adam on the gradient of the course note's J, batch by batch,
  with the package's documented initialisation and shuffling streams."""
  key = jax.random.PRNGKey(seed)
  params = model.init(jax.random.fold_in(key, 0))
  optimizer = optax.adam(config.learning_rate)
  opt_state = optimizer.init(params)
  grad = jax.jit(jax.grad(lambda p, xb, yb: masked_logistic_loss(model.apply(p, xb), yb)))
  for epoch in range(config.epochs):
    order = np.asarray(jax.random.permutation(jax.random.fold_in(jax.random.fold_in(key, 1), epoch), len(x)))
    for k in range(len(x) // config.batch_size):
      idx = order[k * config.batch_size:(k + 1) * config.batch_size]
      updates, opt_state = optimizer.update(grad(params, x[idx], y[idx]), opt_state, params)
      params = optax.apply_updates(params, updates)
  return params


@pytest.mark.parametrize("kind,shape,micro_batch,in_turn", [
    ("mlp", (6,), 16, True), ("mlp", (6,), 5, False), ("cnn", (8, 8, 3), 3, True)])
def test_equal_weighting_trains_the_reference_parameters(kind, shape, micro_batch, in_turn):
  x, y = _data(64, shape)
  config = TrainConfig(learning_rate=1e-2, batch_size=16, epochs=2)
  model = build_model("hps", EncoderSpec(kind, 4, 2), T, shape)
  result = train(model, x, y, [0, 1], config, micro_batch=micro_batch, seeds_in_turn=in_turn)
  for s in (0, 1):
    expected = _reference_params(model, x, y, s, config)
    got = jax.tree.map(lambda p: p[s], result.params)
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
      np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


WEIGHTS_T = jnp.array([0.5, 2.0, 1.5])


def _toy_combine(terms, state, key):
  """Fixed per-task weights on present tasks; the state counts steps and adds up what
  the step gave it, so a test can see every input arrive."""
  shared_sq_T = sum(jnp.sum(g.reshape(T, -1) ** 2, axis=1) for g in jax.tree.leaves(terms.shared_grads))
  state = {"steps": state["steps"] + 1, "losses_T": state["losses_T"] + terms.losses_T,
           "shared_sq_T": state["shared_sq_T"] + shared_sq_T,
           "draws": state["draws"] + jax.random.uniform(key),
           "present_T": state["present_T"] + terms.present_T}
  return Update(WEIGHTS_T * terms.present_T), state


def _toy_init(num_tasks):
  zeros = jnp.zeros(num_tasks)
  return {"steps": jnp.zeros((), jnp.int32), "losses_T": zeros, "shared_sq_T": zeros,
          "draws": jnp.zeros(()), "present_T": zeros}


TOY = Method(_toy_init, _toy_combine, frozenset({LOSSES, SHARED_GRADS}))


def _per_task_jacobian(model, params, x, y):
  return jax.jacrev(lambda p: per_task_logistic_loss(model.apply(p, x), y))(params)


@pytest.mark.parametrize("in_turn", [True, False])
def test_a_step_gets_per_task_gradients_of_the_shared_parameters(in_turn):
  model = build_model("hps", EncoderSpec("cnn", 4, 2), T, (8, 8, 3))
  x, y = _data(16, (8, 8, 3))
  y[:, 2] = -1  # task 2 is absent from this batch
  params = model.init(jax.random.PRNGKey(0))
  idx = jnp.arange(3, 11)
  step = make_batch_gradient(model, TOY, batch_size=8, micro_batch=3, tasks_in_turn=in_turn)
  losses_T, grads, state, cosine = jax.jit(step)(params, _toy_init(T), jax.random.PRNGKey(1), True, x, y, idx)

  jacobian = _per_task_jacobian(model, params, x[3:11], y[3:11])  # leaves [T, ...]
  np.testing.assert_allclose(losses_T, per_task_logistic_loss(model.apply(params, x[3:11]), y[3:11]), rtol=1e-5)
  np.testing.assert_array_equal(state["present_T"], [1, 1, 0])
  weights = WEIGHTS_T * jnp.array([1, 1, 0])
  # Shared parameters: the method's combination; heads: the ordinary gradient of sum_t L_t.
  for got, j in zip(jax.tree.leaves(grads["encoder"]), jax.tree.leaves(jacobian["encoder"])):
    np.testing.assert_allclose(got, jnp.tensordot(weights, j, axes=1), rtol=1e-4, atol=1e-6)
  for got, j in zip(jax.tree.leaves(grads["heads"]), jax.tree.leaves(jacobian["heads"])):
    np.testing.assert_allclose(got, j.sum(0), rtol=1e-4, atol=1e-6)
  expected_sq = sum(jnp.sum(j.reshape(T, -1) ** 2, axis=1) for j in jax.tree.leaves(jacobian["encoder"]))
  np.testing.assert_allclose(state["shared_sq_T"], expected_sq, rtol=1e-4)
  assert expected_sq[2] == 0
  # The conflict diagnostic: the cosine of the two present tasks' gradients (task 2,
  # absent, takes no part), by hand in numpy.
  g = np.concatenate([np.asarray(j).reshape(T, -1) for j in jax.tree.leaves(jacobian["encoder"])], axis=1)
  np.testing.assert_allclose(cosine, g[0] @ g[1] / np.linalg.norm(g[0]) / np.linalg.norm(g[1]), rtol=1e-4)


@pytest.mark.parametrize("micro_batch", [4, 10], ids=["micro-batches", "one-pass"])
def test_loss_weights_from_this_batch_weigh_every_parameter(micro_batch):
  """A method whose weights depend on the batch's losses (GLS-like: w_t = 1 / L_t)
  gets them before the gradient is formed: over micro-batches (a forward pass first)
  and in one micro-batch (one VJP pulled back with the weights)."""
  method = Method(lambda n: (), lambda terms, state, key: (Update(1.0 / terms.losses_T), state),
                  frozenset({LOSSES}))
  model = build_model("hps", EncoderSpec("mlp", 5, 1), T, (6,))
  x, y = _data(10)
  params = model.init(jax.random.PRNGKey(0))
  step = make_batch_gradient(model, method, batch_size=10, micro_batch=micro_batch)
  losses_T, grads, _, cosine = jax.jit(step)(params, (), jax.random.PRNGKey(1), True, x, y, jnp.arange(10))
  assert np.isnan(cosine)  # a loss-weighting method takes no per-task gradients
  jacobian = _per_task_jacobian(model, params, x, y)
  for got, j in zip(jax.tree.leaves(grads), jax.tree.leaves(jacobian)):
    np.testing.assert_allclose(got, jnp.tensordot(1.0 / losses_T, j, axes=1), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("micro_batch", [4, 10], ids=["micro-batches", "one-pass"])
def test_a_step_gets_per_task_gradients_of_the_shared_representation(micro_batch):
  """The [T, B, F] representation gradients, and the gradient of sum_t w_t L_t with the
  method's weights: over micro-batches (the encoder runs again for the weighted pass)
  and in one micro-batch (one encoder forward pass, its VJP pulled back once)."""
  weights_T = jnp.array([1.0, 2.0, 0.5])

  def combine(terms, state, key):
    return Update(weights_T), state + jnp.sum(terms.repr_grads ** 2, axis=(1, 2))
  method = Method(lambda n: jnp.zeros(n), combine, frozenset({REPR_GRADS}))
  model = build_model("hps", EncoderSpec("mlp", 5, 2), T, (6,))
  x, y = _data(10)
  params = model.init(jax.random.PRNGKey(0))
  step = make_batch_gradient(model, method, batch_size=10, micro_batch=micro_batch)
  _, grads, state, cosine = jax.jit(step)(params, jnp.zeros(T), jax.random.PRNGKey(1), True, x, y, jnp.arange(10))
  jacobian = _per_task_jacobian(model, params, x, y)
  for got, j in zip(jax.tree.leaves(grads), jax.tree.leaves(jacobian)):
    np.testing.assert_allclose(got, jnp.tensordot(weights_T, j, axes=1), rtol=1e-4, atol=1e-6)
  features = model.encode(params, x)
  expected = jax.jacrev(lambda f: per_task_logistic_loss(model.decode(params, f), y))(features)
  np.testing.assert_allclose(state, jnp.sum(expected ** 2, axis=(1, 2)), rtol=1e-5)
  g = np.asarray(expected).reshape(T, -1)
  unit = g / np.linalg.norm(g, axis=1, keepdims=True)
  pairs = [unit[i] @ unit[j] for i in range(T) for j in range(i + 1, T)]
  np.testing.assert_allclose(cosine, np.mean(pairs), rtol=1e-4)


@pytest.mark.parametrize("micro_batch", [4, 10], ids=["micro-batches", "one-pass"])
def test_observe_sees_the_losses_of_the_pass_that_made_the_gradient(micro_batch):
  """A method that only learns from the losses (UW, DWA) asks for no extra forward
  pass: `observe` gets the batch's per-task losses after the gradient, with the state
  that `combine` returned."""
  combine = lambda terms, state, key: (Update(jnp.full(T, 2.0)), state.at[0].add(1.0))
  observe = lambda terms, state: state.at[1:].add(terms.losses_T * terms.present_T)
  method = Method(lambda n: jnp.zeros(n + 1), combine, observe=observe)
  model = build_model("hps", EncoderSpec("mlp", 5, 1), T, (6,))
  x, y = _data(10)
  y[:, 2] = -1  # task 2 absent
  params = model.init(jax.random.PRNGKey(0))
  step = make_batch_gradient(model, method, batch_size=10, micro_batch=micro_batch)
  losses_T, grads, state, _ = jax.jit(step)(params, jnp.zeros(T + 1), jax.random.PRNGKey(1), True, x, y,
                                            jnp.arange(10))
  expected = per_task_logistic_loss(model.apply(params, x), y)
  np.testing.assert_allclose(losses_T, expected, rtol=1e-5)
  np.testing.assert_allclose(state, [1.0, *np.asarray(expected[:2]), 0.0], rtol=1e-5)
  jacobian = _per_task_jacobian(model, params, x, y)
  for got, j in zip(jax.tree.leaves(grads), jax.tree.leaves(jacobian)):
    np.testing.assert_allclose(got, 2.0 * jnp.sum(j, axis=0), rtol=1e-4, atol=1e-6)


def test_method_state_and_keys_are_per_seed_carried_across_epochs_and_checkpointed(tmp_path):
  model = build_model("hps", EncoderSpec("mlp", 4, 1), T, (6,))
  x, y = _data(64)
  validation = _data(16, seed=1)
  config = TrainConfig(1e-2, 16, 4, select_epoch="best_val")
  result = train(model, x, y, [0, 1], config, method=TOY, validation=validation)
  state = result.method_state
  np.testing.assert_array_equal(state["steps"], [16, 16])  # 4 epochs of 4 steps, per seed
  # The logged training loss of each step is sum_t L_t: the state saw every step's losses.
  np.testing.assert_allclose(state["losses_T"].sum(1), result.loss_ExS.sum(0) * 4, rtol=1e-5)
  # One key per seed and step: draws differ between seeds and average about 1/2.
  assert state["draws"][0] != state["draws"][1]
  assert np.all(np.abs(state["draws"] / 16 - 0.5) < 0.25)

  # Preempted after epoch 3 with a checkpoint at epoch 2, resumed: the same state.
  class Preempted(Exception):
    pass

  def preempt(epoch, loss):
    if epoch == 3:
      raise Preempted
  settings = CheckpointSettings(str(tmp_path / "run"), every=2, resume=False)
  with pytest.raises(Preempted):
    train(model, x, y, [0, 1], config, preempt, method=TOY, validation=validation,
          checkpoints=EpochCheckpoints(settings))
  assert os.listdir(tmp_path / "run") == ["2"]
  checkpoints = EpochCheckpoints(CheckpointSettings(settings.directory, every=2, resume=True))
  resumed = train(model, x, y, [0, 1], config, method=TOY, validation=validation, checkpoints=checkpoints)
  checkpoints.close(finished=True)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(resumed.method_state)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(result.params), jax.tree.leaves(resumed.params)):
    np.testing.assert_array_equal(a, b)


def test_methods_that_combine_shared_gradients_refuse_separate_networks():
  model = build_model("separate", EncoderSpec("mlp", 4, 1), T, (6,))
  with pytest.raises(ValueError, match="shares none"):
    make_batch_gradient(model, TOY, batch_size=8, micro_batch=8)


@pytest.mark.parametrize("name", sorted(__import__("mtl_jax.methods", fromlist=["METHODS"]).METHODS))
def test_every_registered_method_trains_with_seeds_micro_batches_and_absent_tasks(name):
  """Through train(): two seeds in one program, micro-batches, a task absent from
  most batches (its labels mostly missing) and one missing everywhere but 4 rows."""
  from mtl_jax.methods import build_method
  x, y = _data(64)
  y[8:, 2] = -1
  model = build_model("hps", EncoderSpec("mlp", 4, 2), T, (6,))
  result = train(model, x, y, [0, 1], TrainConfig(1e-2, 16, 2, method=name), micro_batch=5)
  assert np.all(np.isfinite(result.loss_ExS)) and not result.diverged_step_S.any()
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(result.params))
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(result.method_state))
  build_method(name)  # the registry's defaults build
