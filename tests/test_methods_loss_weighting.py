"""Loss-weighting methods (uw, dwa, rlw, gls, famo): each weight rule against a numpy
hand computation or an autodiff of the paper's objective, absent tasks, the state
carried across steps, and an end-to-end training run."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mtl_jax.methods.base import Terms
from mtl_jax.methods.loss_weighting import (dwa_weights, dynamic_weight_averaging, famo, famo_logit_grad,
                                            famo_weights, geometric_loss_strategy, gls_weights,
                                            random_loss_weighting, rlw_weights, uncertainty_weighting,
                                            uw_weights)
from mtl_jax.models import EncoderSpec, build_model
from mtl_jax.train import TrainConfig, train
from property_budget import EXAMPLES

KEY = jax.random.PRNGKey(0)


def _terms(present, losses=None, epoch_start=False):
  return Terms(jnp.asarray(present, bool), jnp.asarray(epoch_start),
               None if losses is None else jnp.asarray(losses, jnp.float32))


def _step(method):
  """combine, then observe with the same terms: what the training step does."""
  def step(terms, state, key):
    update, state = method.combine(terms, state, key)
    return update, state if method.observe is None else method.observe(terms, state)
  return jax.jit(step)


def _softmax(a):
  e = np.exp(a - np.max(a))
  return e / e.sum()


class NumpyAdam:
  """torch.optim.Adam on a vector, L2 weight decay added to the gradient."""

  def __init__(self, n, lr, weight_decay=0.0):
    self.m, self.v, self.t = np.zeros(n), np.zeros(n), np.zeros(n)
    self.lr, self.wd = lr, weight_decay

  def step(self, p, g, mask):
    p = p.copy()
    for i in np.flatnonzero(mask):
      gi = g[i] + self.wd * p[i]
      self.t[i] += 1
      self.m[i] = 0.9 * self.m[i] + 0.1 * gi
      self.v[i] = 0.999 * self.v[i] + 0.001 * gi * gi
      m_hat, v_hat = self.m[i] / (1 - 0.9 ** self.t[i]), self.v[i] / (1 - 0.999 ** self.t[i])
      p[i] -= self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)
    return p


def _assert_no_task_present_is_a_zero_update(method, losses=(0.0, 0.0, 0.0)):
  state = method.init(3)
  update, new_state = _step(method)(_terms([False] * 3, losses), state, KEY)
  np.testing.assert_array_equal(update.task_weights_T, np.zeros(3))
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(new_state)):
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------- UW

def test_uw_weights_and_log_variance_updates_match_a_hand_computation():
  lr = 0.1
  method = uncertainty_weighting(lr=lr)
  state = method.init(3)
  s = np.zeros(3)
  adam = NumpyAdam(3, lr)
  batches = [([True, True, True], [0.7, 2.0, 0.1]),
             ([True, False, True], [0.5, 0.0, 0.3]),  # task 1 absent: s_1 untouched, weight 0
             ([True, True, True], [0.4, 1.5, 0.2])]
  combine = _step(method)
  for present, losses in batches:
    update, state = combine(_terms(present, losses), state, KEY)
    present, losses = np.array(present), np.array(losses)
    np.testing.assert_allclose(update.task_weights_T, np.where(present, np.exp(-s), 0.0), rtol=1e-5)
    s = adam.step(s, 1.0 - np.exp(-s) * losses, present)  # d/ds of exp(-s) L + s
    np.testing.assert_allclose(state["log_var"], s, rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(state["count"], [3, 2, 3])


def test_uw_is_twice_libmtl_and_drives_s_to_log_loss():
  """LibMTL's objective sum L/(2 e^s) + s/2 is half of ours, weights included; the
  stationary point of s_t is log L_t, where the weighted loss exp(-s) L is 1."""
  s = jnp.array([-0.5, 0.3])
  np.testing.assert_allclose(uw_weights(s, [True, True]), 2 * (1 / (2 * np.exp(np.array([-0.5, 0.3])))), rtol=1e-6)
  method = uncertainty_weighting(lr=0.05)
  state = method.init(2)
  combine = _step(method)
  for _ in range(600):
    _, state = combine(_terms([True, True], [0.25, 3.0]), state, KEY)
  np.testing.assert_allclose(state["log_var"], np.log([0.25, 3.0]), atol=0.05)


def test_uw_no_task_present():
  _assert_no_task_present_is_a_zero_update(uncertainty_weighting())


# ------------------------------------------------------------------------- DWA

def test_dwa_equal_weights_for_two_epochs_then_the_formula_on_recorded_averages():
  method = dynamic_weight_averaging()
  combine = _step(method)
  state = method.init(3)
  rng = np.random.default_rng(0)
  epochs = []
  for e in range(2):
    steps = []
    for k in range(4):
      losses = rng.uniform(0.1, 2.0, 3)
      present = np.array([True, k != 1, e != 0 or k < 3])  # some absent steps
      update, state = combine(_terms(present, losses, epoch_start=k == 0), state, KEY)
      np.testing.assert_array_equal(update.task_weights_T, present.astype(np.float32))
      steps.append((present, losses))
    epochs.append(steps)
  # Averages over present steps only.
  avg = [np.array([np.mean([l[t] for p, l in steps if p[t]]) for t in range(3)]) for steps in epochs]
  np.testing.assert_allclose(state["sum"] / state["count"], avg[1], rtol=1e-6)
  update, state = combine(_terms([True, True, True], [1.0, 1.0, 1.0], epoch_start=True), state, KEY)
  expected = 3 * _softmax(avg[1] / avg[0] / 2.0)
  np.testing.assert_allclose(update.task_weights_T, expected, rtol=1e-5)
  np.testing.assert_allclose(state["avg_last"], avg[1], rtol=1e-6)
  np.testing.assert_allclose(state["avg_before"], avg[0], rtol=1e-6)
  assert int(state["epochs"]) == 2
  # An absent task: weight 0, the softmax renormalised over the two present ones (K = 2).
  update, _ = combine(_terms([True, False, True], [1.0, 0.0, 1.0]), state, KEY)
  r = avg[1] / avg[0] / 2.0
  np.testing.assert_allclose(update.task_weights_T, [*2 * _softmax(r[[0, 2]])[:1], 0.0,
                                                     *2 * _softmax(r[[0, 2]])[1:]], rtol=1e-5)


def test_dwa_weights_closed_form_and_missing_averages():
  last, before = np.array([0.5, 1.0, 2.0]), np.array([1.0, 1.0, 1.0])
  np.testing.assert_allclose(dwa_weights(last, before, [True] * 3, [True] * 3, 2.0),
                             3 * np.exp(last / 2) / np.exp(last / 2).sum(), rtol=1e-6)
  # A task without an average in one of the epochs gets the neutral ratio 1.
  np.testing.assert_allclose(dwa_weights(last, before, [True, True, False], [True] * 3, 2.0),
                             3 * _softmax(np.array([0.5, 1.0, 1.0]) / 2), rtol=1e-6)


def test_dwa_no_task_present():
  _assert_no_task_present_is_a_zero_update(dynamic_weight_averaging())


# ------------------------------------------------------------------------- RLW

def test_rlw_is_k_times_a_softmax_of_normal_draws_over_present_tasks():
  method = random_loss_weighting()
  key = jax.random.PRNGKey(7)
  draws = np.asarray(jax.random.normal(key, (4,), jnp.float32))
  update, state = method.combine(_terms([True] * 4), (), key)
  np.testing.assert_allclose(update.task_weights_T, 4 * _softmax(draws), rtol=1e-6)
  assert state == ()
  update, _ = method.combine(_terms([True, False, True, True]), (), key)
  sub = 3 * _softmax(draws[[0, 2, 3]])
  np.testing.assert_allclose(update.task_weights_T, [sub[0], 0.0, sub[1], sub[2]], rtol=1e-6)
  # Different keys, different weights; each sums to K.
  other, _ = method.combine(_terms([True] * 4), (), jax.random.PRNGKey(8))
  assert not np.allclose(other.task_weights_T, 4 * _softmax(draws))
  np.testing.assert_allclose(np.sum(other.task_weights_T), 4.0, rtol=1e-6)
  _assert_no_task_present_is_a_zero_update(method)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=2, max_size=5), st.integers(0, 2 ** 16))
def test_rlw_weights_sum_to_the_number_of_present_tasks(draws, mask_bits):
  present = np.array([(mask_bits >> i) & 1 for i in range(len(draws))], bool)
  w = np.asarray(rlw_weights(np.array(draws, np.float32), present))
  assert np.all(w[~present] == 0) and np.all(w[present] > 0)
  np.testing.assert_allclose(w.sum(), present.sum(), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------- GLS

def test_gls_weights_are_the_gradient_of_the_geometric_mean():
  losses = np.array([0.3, 1.2, 2.5], np.float32)
  g = np.prod(losses) ** (1 / 3)
  np.testing.assert_allclose(gls_weights(losses, [True] * 3), g / (3 * losses), rtol=1e-5)
  # Independent: autodiff of (prod_t L_t)^(1/K) over the present tasks.
  geo = lambda l: jnp.prod(l) ** (1 / 2)
  auto = jax.grad(geo)(jnp.asarray(losses[[0, 2]]))
  np.testing.assert_allclose(gls_weights(losses, [True, False, True]), [auto[0], 0.0, auto[1]], rtol=1e-5)
  # Through the method (needs this batch's losses).
  method = geometric_loss_strategy()
  update, _ = method.combine(_terms([True] * 3, losses), (), KEY)
  np.testing.assert_allclose(update.task_weights_T, g / (3 * losses), rtol=1e-5)


def test_gls_zero_loss_is_treated_as_absent_and_nothing_is_nan():
  w = np.asarray(gls_weights(np.array([0.0, 0.5, 2.0]), [True, True, True]))
  np.testing.assert_allclose(w, [0.0, *(np.sqrt(1.0) / (2 * np.array([0.5, 2.0])))], rtol=1e-5)
  _assert_no_task_present_is_a_zero_update(geometric_loss_strategy())
  assert np.all(np.asarray(gls_weights(np.zeros(3), [True] * 3)) == 0)


# ------------------------------------------------------------------------- FAMO

def test_famo_weights_are_the_gradient_of_its_weighted_log_loss():
  logits = np.array([0.2, -0.4, 0.9], np.float32)
  losses = np.array([0.5, 1.5, 0.2], np.float32)
  z = _softmax(logits)
  d = losses + 1e-8
  expected = (z / d) / np.sum(z / d)
  np.testing.assert_allclose(famo_weights(logits, losses, [True] * 3), expected, rtol=1e-5)
  # d/dL of sum_t z_t log(L_t) / c with c held fixed: the weights, summing to 1.
  c = np.sum(z / d)
  auto = jax.grad(lambda l: jnp.sum(z * jnp.log(l + 1e-8)) / c)(jnp.asarray(losses))
  np.testing.assert_allclose(famo_weights(logits, losses, [True] * 3), auto, rtol=1e-5)
  # Absent task: softmax and c over the present ones.
  z2 = _softmax(logits[[0, 2]])
  sub = (z2 / d[[0, 2]]) / np.sum(z2 / d[[0, 2]])
  np.testing.assert_allclose(famo_weights(logits, losses, [True, False, True]), [sub[0], 0.0, sub[1]], rtol=1e-5)


def test_famo_logit_gradient_is_the_softmax_jacobian_times_the_log_loss_decrease():
  logits = jnp.array([0.1, 0.5, -0.3])
  prev, now = jnp.array([1.0, 0.8, 0.6]), jnp.array([0.7, 0.79, 0.65])
  delta = jnp.log(prev + 1e-8) - jnp.log(now + 1e-8)
  _, vjp = jax.vjp(jax.nn.softmax, logits)
  np.testing.assert_allclose(famo_logit_grad(logits, prev, now, jnp.array([True] * 3)), vjp(delta)[0],
                             rtol=1e-5, atol=1e-7)
  _, vjp2 = jax.vjp(jax.nn.softmax, logits[jnp.array([0, 2])])
  g2 = vjp2(delta[jnp.array([0, 2])])[0]
  np.testing.assert_allclose(famo_logit_grad(logits, prev, now, jnp.array([True, False, True])),
                             [g2[0], 0.0, g2[1]], rtol=1e-5, atol=1e-7)


def test_famo_state_across_steps_matches_a_hand_computation():
  lr, gamma = 0.025, 0.01
  method = famo(lr=lr, gamma=gamma)
  combine = _step(method)
  state = method.init(3)
  xi = np.zeros(3)
  adam = NumpyAdam(3, lr, gamma)
  prev, prev_present = None, np.zeros(3, bool)
  batches = [([True, True, True], [1.0, 0.9, 0.7]),
             ([True, True, True], [0.8, 0.88, 0.5]),
             ([True, False, True], [0.7, 0.0, 0.55]),  # task 1 absent: no update of xi_1
             ([True, True, True], [0.6, 0.85, 0.4]),   # task 1 absent last step: still none
             ([True, True, True], [0.5, 0.8, 0.45])]
  for present, losses in batches:
    present, losses = np.array(present), np.array(losses)
    update, state = combine(_terms(present, losses), state, KEY)
    both = present & prev_present
    if both.any():
      delta = np.log(prev + 1e-8) - np.log(losses + 1e-8)
      z = np.zeros(3)
      z[both] = _softmax(xi[both])
      g = np.where(both, z * (delta - np.sum(np.where(both, z * delta, 0.0))), 0.0)
      xi = adam.step(xi, g, both)
    np.testing.assert_allclose(state["logits"], xi, rtol=1e-5, atol=1e-7)
    z = np.zeros(3)
    z[present] = _softmax(xi[present])
    r = np.where(present, z / (losses + 1e-8), 0.0)
    np.testing.assert_allclose(update.task_weights_T, r / r.sum(), rtol=1e-5, atol=1e-7)
    prev, prev_present = losses, present
  np.testing.assert_array_equal(state["count"], [4, 2, 4])
  assert not np.allclose(xi, 0.0)


def test_famo_moves_weight_to_the_task_whose_loss_decreases_slower():
  method = famo()
  combine = _step(method)
  state = method.init(2)
  losses = np.array([1.0, 1.0])
  for _ in range(50):
    losses = losses * np.array([0.95, 0.995])  # task 0 improves faster
    _, state = combine(_terms([True, True], losses), state, KEY)
  assert state["logits"][1] > state["logits"][0]


def test_famo_no_task_present():
  _assert_no_task_present_is_a_zero_update(famo())


# ------------------------------------------------------------------------- end to end

BUILDERS = [uncertainty_weighting, dynamic_weight_averaging, random_loss_weighting,
            geometric_loss_strategy, famo]


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_training_runs_end_to_end(builder):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 6)).astype(np.float32)
  y = rng.integers(0, 2, (64, 3)).astype(np.int8)
  y[rng.random((64, 3)) < 0.3] = -1
  y[:20, 2] = -1  # make task 2 absent from some batches more often
  config = TrainConfig(batch_size=16, epochs=3 if builder is dynamic_weight_averaging else 2)
  result = train(build_model("hps", EncoderSpec("mlp", 4, 1), 3, (6,)), x, y, [0, 1], config,
                 method=builder())
  assert np.all(np.isfinite(result.loss_ExS))
  for leaf in jax.tree.leaves(result.params):
    assert np.all(np.isfinite(leaf))
  for leaf in jax.tree.leaves(result.method_state):
    assert np.all(np.isfinite(np.asarray(leaf, np.float64)))
  if builder is dynamic_weight_averaging:
    assert np.all(np.asarray(result.method_state["epochs"]) == 2)
