"""Gradient-combination methods, part B: UPGrad, DualProj, Aligned-MTL, Nash-MTL,
GradNorm, DB-MTL. Checked against TorchJD's published reference outputs, exact solvers
(scipy's active-set NNLS, an independent numpy fixed point), closed forms of one step,
hypothesis properties (non-conflict, the mean when nothing conflicts, task order), absent
tasks, and an end-to-end run through train()."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from hypothesis import given, settings, strategies as st

from mtl_jax.methods import aligned_mtl, cone, db_mtl, dualproj, gradnorm, nash_mtl, upgrad
from mtl_jax.methods.base import Terms
from mtl_jax.models import EncoderSpec, build_model
from mtl_jax.train import TrainConfig, train
from property_budget import EXAMPLES
from property_budget import jacobians as padded_jacobians  # `jacobians` below is the strategy

J_REF = jnp.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
# TorchJD's published outputs for J_REF (tests/unit/aggregation/, docs).
REFERENCES = {
    "upgrad": (upgrad.aggregate, [0.2929, 1.9004, 1.9004]),
    "dualproj": (dualproj.aggregate, [0.5563, 1.1109, 1.1109]),
    "aligned_mtl": (aligned_mtl.aggregate, [0.2133, 0.9673, 0.9673]),
    "nash_mtl": (nash_mtl.aggregate, [0.0542, 0.7061, 0.7061]),
}
AGGREGATORS = {name: jax.jit(fn) for name, (fn, _) in REFERENCES.items()}


@pytest.mark.parametrize("name", REFERENCES)
def test_torchjd_reference_values(name):
  fn, expected = REFERENCES[name]
  np.testing.assert_allclose(fn(J_REF), expected, atol=1e-3)


def _exact_projection_weights(u, G):
  """argmin_{v >= u} v^T G v by scipy's active-set NNLS on ||L^T (u + lam)||, G = L L^T."""
  L = np.linalg.cholesky(np.asarray(G, np.float64))
  lam, _ = scipy.optimize.nnls(L.T, -L.T @ np.asarray(u, np.float64), maxiter=1000)
  return np.asarray(u) + lam


def test_unregularised_projections_match_the_exact_closed_form():
  """Without reg_eps, TorchJD's references move to the exact projections: for J_REF
  (G = [[18, -22], [-22, 38]]): DualProj = J^T (11/18, 1/2) = [5/9, 10/9, 10/9] (the
  first constraint active: 18 v1 = 22 / 2), UPGrad by scipy's exact active-set solver."""
  np.testing.assert_allclose(dualproj.aggregate(J_REF, reg_eps=0.0),
                             [5 / 9, 10 / 9, 10 / 9], rtol=1e-5)
  G = np.asarray(J_REF @ J_REF.T, np.float64)
  w = _exact_projection_weights([0.5, 0], G) + _exact_projection_weights([0, 0.5], G)
  np.testing.assert_allclose(upgrad.aggregate(J_REF, reg_eps=0.0), w @ np.asarray(J_REF), rtol=1e-5)


@pytest.mark.parametrize("T,spread", [(2, 1.0), (5, 1.0), (8, 0.05), (12, 1.0), (12, 0.05)])
def test_dual_cone_solver_matches_an_exact_active_set_solution(T, spread):
  """Coordinate descent against scipy's NNLS, also with nearly collinear, conflicting rows."""
  rng = np.random.default_rng(T)
  for _ in range(5):
    base = rng.normal(size=(1, 30))
    J = jnp.asarray(base * rng.choice([-1, 1], size=(T, 1)) + spread * rng.normal(size=(T, 30)), jnp.float32)
    G = cone.normalized_gramian(J, jnp.ones(T, bool), 1e-4, 1e-4)
    for u in [np.full(T, 1 / T), np.eye(T)[rng.integers(T)] / T]:
      got = jax.jit(cone.project_weights)(jnp.asarray(u, jnp.float32), G)
      exact = _exact_projection_weights(u, G)
      np.testing.assert_allclose(got, exact, rtol=1e-4, atol=1e-4 * np.abs(exact).max())


jacobians = padded_jacobians((2, 5), (1, 6), bound=1)


@pytest.mark.parametrize("module", [upgrad, dualproj])
@settings(max_examples=EXAMPLES, deadline=None)
@given(J=jacobians)
def test_no_conflict_with_any_task(module, J):
  """J d >= 0 up to the reg_eps the Gramian is regularised by: the KKT conditions of the
  regularised QP give J d >= -reg_eps |J|_F^2 w (w the weights), plus float32 noise."""
  J = jnp.asarray(J)
  present = jnp.ones(J.shape[0], bool)
  d = jax.jit(module.aggregate)(J, present)
  w = jax.jit(module.weights)(J, present)
  fro2 = float(jnp.sum(J ** 2))
  assert np.all(np.asarray(J @ d) >= -(1e-4 * fro2 * np.abs(np.asarray(w)) + 1e-5 * fro2 + 1e-6))


@pytest.mark.parametrize("module", [upgrad, dualproj])
@settings(max_examples=EXAMPLES, deadline=None)
@given(J=jacobians)
def test_the_mean_when_no_gradients_conflict(module, J):
  J = jnp.abs(jnp.asarray(J))  # non-negative rows: every pair has a non-negative inner product
  np.testing.assert_allclose(jax.jit(module.aggregate)(J, jnp.ones(J.shape[0], bool)), J.mean(0),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", REFERENCES)
@settings(max_examples=EXAMPLES, deadline=None)
@given(J=jacobians, seed=st.integers(0, 1000))
def test_invariant_to_task_order(name, J, seed):
  J = jnp.asarray(J) + 0.05 * jnp.eye(*J.shape)  # no exactly zero rows
  if name == "nash_mtl":
    # The bargaining solution exists only if some direction improves every task; with
    # linearly dependent rows (e.g. opposite gradients) it is set by reg_eps alone.
    J = jnp.concatenate([J, jnp.eye(J.shape[0])], axis=1)
  order = np.random.default_rng(seed).permutation(J.shape[0])
  present = jnp.ones(J.shape[0], bool)
  a, b = AGGREGATORS[name](J, present), AGGREGATORS[name](J[order], present)
  # The float32 solvers (eigendecompositions, projections) are accurate to a fraction of
  # the input's scale |J|, not of the output's: Aligned-MTL scales its output by the
  # smallest singular value, so on a nearly singular J (hypothesis found rows 0.05 apart)
  # an output 1e-3 |J| moved by 0.4e-5 |J| when the tasks were reordered.
  atol = 2e-4 * float(jnp.linalg.norm(a)) + 1e-5 * float(jnp.linalg.norm(J)) + 1e-6
  np.testing.assert_allclose(a, b, rtol=2e-3, atol=atol)


@pytest.mark.parametrize("name", REFERENCES)
def test_absent_task_is_left_out(name):
  """An absent task (zero row, present False) changes nothing: the result is that of the
  present tasks alone; with none present the update is zero."""
  rng = np.random.default_rng(1)
  J = jnp.asarray(rng.normal(size=(3, 7)), jnp.float32)
  J4 = jnp.concatenate([J[:2], jnp.zeros((1, 7)), J[2:]])
  present = jnp.array([True, True, False, True])
  fn = AGGREGATORS[name]
  np.testing.assert_allclose(fn(J4, present), fn(J, jnp.ones(3, bool)), rtol=1e-4, atol=1e-6)
  # Its row is ignored even if not zero.
  np.testing.assert_allclose(fn(J4.at[2].set(5.0), present), fn(J, jnp.ones(3, bool)), rtol=1e-4, atol=1e-6)
  none = fn(J4, jnp.zeros(4, bool))
  assert np.all(np.asarray(none) == 0)


def test_aligned_mtl_balances_the_principal_components():
  """The aligned gradients B J are orthogonal with equal norms sqrt(lambda_min)."""
  rng = np.random.default_rng(2)
  J = jnp.asarray(rng.normal(size=(4, 9)), jnp.float32)
  G = np.asarray(J @ J.T, np.float64)
  lam, V = np.linalg.eigh(G)
  B = math.sqrt(lam.min()) * V @ np.diag(lam ** -0.5) @ V.T
  np.testing.assert_allclose(B @ G @ B, lam.min() * np.eye(4), atol=1e-8 * lam.max())
  np.testing.assert_allclose(aligned_mtl.aggregate(J), (B @ np.full(4, 0.25)) @ np.asarray(J), rtol=2e-3,
                             atol=1e-5)


@pytest.mark.parametrize("T,spread", [(2, 1.0), (3, 0.1), (6, 1.0), (12, 1.0), (12, 0.1)])
def test_nash_solves_the_bargaining_equation(T, spread):
  """alpha (before the max_norm rescaling) solves G alpha = 1 / alpha, also with nearly
  opposite gradients; the update's norm is max_norm since |J^T alpha|^2 = T >= 1."""
  rng = np.random.default_rng(T)
  base = rng.normal(size=(1, 20))
  J = jnp.asarray(base * rng.choice([-1, 1], size=(T, 1)) + spread * rng.normal(size=(T, 20)), jnp.float32)
  G = np.asarray(J @ J.T, np.float64)
  alpha = np.asarray(nash_mtl.weights(J, jnp.ones(T, bool), max_norm=0.0, reg_eps=0.0), np.float64)
  assert np.all(alpha > 0)
  np.testing.assert_allclose(G @ alpha * alpha, np.ones(T), rtol=2e-3)
  np.testing.assert_allclose(jnp.linalg.norm(nash_mtl.aggregate(J)), 1.0, rtol=1e-4)
  # An independent solver: scipy's root finder on G a - 1/a from the same start.
  exact = scipy.optimize.fsolve(lambda a: G @ a - 1 / a, 1 / np.sqrt(np.diag(G)), xtol=1e-12)
  if np.allclose(G @ exact * exact, 1, rtol=1e-8):
    np.testing.assert_allclose(alpha, exact, rtol=2e-3)


# ---------------- GradNorm ----------------

def _gradnorm_step_numpy(w, L0, J, L, alpha, lr):
  """The paper's update for all-present tasks, written out in numpy."""
  norms = np.linalg.norm(J, axis=1)
  G = w * norms
  r = (L / L0) / np.mean(L / L0)
  target = G.mean() * r ** alpha
  w_new = np.maximum(w - lr * np.sign(G - target) * norms, 1e-3)
  return w_new * w.sum() / w_new.sum()


def test_gradnorm_closed_form_steps():
  rng = np.random.default_rng(3)
  T, alpha, lr = 3, 1.5, 0.025
  state = gradnorm.init(T)
  w = np.ones(T)
  L0 = None
  for k in range(4):
    J = rng.normal(size=(T, 5)) * np.array([[1.0], [3.0], [0.3]])
    L = rng.uniform(0.2, 1.0, size=T)
    L0 = L if L0 is None else L0
    used, state = gradnorm.step(state, jnp.asarray(J, jnp.float32), jnp.asarray(L, jnp.float32),
                                jnp.ones(T, bool), alpha, lr)
    np.testing.assert_allclose(used, w, rtol=1e-5)
    w = _gradnorm_step_numpy(w, L0, J, L, alpha, lr)
    np.testing.assert_allclose(state["weights_T"], w, rtol=1e-5)
    np.testing.assert_allclose(state["initial_losses_T"], L0, rtol=1e-6)
  assert abs(float(state["weights_T"].sum()) - T) < 1e-4
  # The task with the largest gradient norm loses weight, the smallest gains.
  assert state["weights_T"][1] < 1 < state["weights_T"][2]


def test_gradnorm_absent_task():
  """An absent task: weight 0 in the update, the present tasks' weights renormalised to
  their number; its own weight and initial loss untouched; the present tasks evolve as
  if it did not exist (up to the share of the total weight)."""
  rng = np.random.default_rng(4)
  J = rng.normal(size=(3, 5)).astype(np.float32)
  L = np.array([0.7, 0.5, 0.9], np.float32)
  present = jnp.array([True, False, True])
  state3 = gradnorm.init(3)
  state2 = gradnorm.init(2)
  for k in range(3):
    Jk, Lk = J * (1 + k), L / (1 + k)
    used3, state3 = gradnorm.step(state3, jnp.asarray(Jk).at[1].set(0), jnp.asarray(Lk).at[1].set(0), present)
    used2, state2 = gradnorm.step(state2, jnp.asarray(Jk[[0, 2]]), jnp.asarray(Lk[[0, 2]]), jnp.ones(2, bool))
    np.testing.assert_allclose(np.asarray(used3)[[0, 2]], used2, rtol=1e-5)
    assert used3[1] == 0
  assert state3["weights_T"][1] == 1 and state3["initial_losses_T"][1] == 0 and not state3["seen_T"][1]
  np.testing.assert_allclose(np.asarray(state3["weights_T"])[[0, 2]], state2["weights_T"], rtol=1e-5)
  used, same = gradnorm.step(state3, jnp.zeros((3, 5)), jnp.zeros(3), jnp.zeros(3, bool))
  assert np.all(np.asarray(used) == 0)
  jax.tree.map(np.testing.assert_array_equal, same, state3)


# ---------------- DB-MTL ----------------

def test_db_mtl_closed_form_steps():
  """LibMTL's update: m <- g + beta / k^beta_sigma (m - g) with g = grad / L, then the
  averages scaled to the largest norm and summed."""
  rng = np.random.default_rng(5)
  T, P = 3, 6
  state = db_mtl.init_state(T, P)
  m = np.zeros((T, P))
  for k in range(1, 5):
    J = rng.normal(size=(T, P)) * np.array([[1.0], [10.0], [0.1]])
    L = rng.uniform(0.1, 2.0, size=T)
    g = J / (L[:, None] + 1e-8)
    m = g + 0.9 / k ** 0.5 * (m - g)
    norms = np.linalg.norm(m, axis=1)
    expected = (norms.max() / norms) @ m
    d, scale, state = db_mtl.step(state, jnp.asarray(J, jnp.float32), jnp.asarray(L, jnp.float32), jnp.ones(T, bool))
    np.testing.assert_allclose(state["average_TxP"], m, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(d, expected, rtol=1e-4, atol=1e-5)
  # Every task contributes a vector of the same (largest) norm.
  np.testing.assert_allclose(np.linalg.norm(np.asarray(scale)[:, None] * m, axis=1), norms.max(), rtol=1e-4)


def test_db_mtl_absent_task():
  rng = np.random.default_rng(6)
  J = rng.normal(size=(3, 4)).astype(np.float32)
  L = np.array([0.4, 0.8, 1.2], np.float32)
  state3, state2 = db_mtl.init_state(3, 4), db_mtl.init_state(2, 4)
  present = jnp.array([True, True, False])
  for k in range(3):
    d3, s3, state3 = db_mtl.step(state3, jnp.asarray(J * (k + 1)).at[2].set(0), jnp.asarray(L).at[2].set(0), present)
    d2, s2, state2 = db_mtl.step(state2, jnp.asarray(J[:2] * (k + 1)), jnp.asarray(L[:2]), jnp.ones(2, bool))
    np.testing.assert_allclose(d3, d2, rtol=1e-5)
    assert s3[2] == 0
  assert state3["count_T"][2] == 0 and np.all(np.asarray(state3["average_TxP"][2]) == 0)
  np.testing.assert_allclose(state3["average_TxP"][:2], state2["average_TxP"], rtol=1e-6)
  d, s, same = db_mtl.step(state3, jnp.zeros((3, 4)), jnp.zeros(3), jnp.zeros(3, bool))
  assert np.all(np.asarray(d) == 0) and np.all(np.isfinite(np.asarray(s)))
  jax.tree.map(np.testing.assert_array_equal, same, state3)


# ---------------- combine() on a pytree and end to end ----------------

def _data(num, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num, 6)).astype(np.float32)
  y = rng.integers(0, 2, (num, 3)).astype(np.int8)
  y[rng.random((num, 3)) < 0.3] = -1
  return x, y


def _model():
  return build_model("hps", EncoderSpec("mlp", 4, 1), 3, (6,))


def _num_shared(model):
  params = model.init(jax.random.PRNGKey(0))
  return sum(p.size for k in model.shared for p in jax.tree.leaves(params[k]))


BUILDERS = {
    "upgrad": upgrad.upgrad, "dualproj": dualproj.dualproj, "aligned_mtl": aligned_mtl.aligned_mtl,
    "nash_mtl": nash_mtl.nash_mtl, "gradnorm": gradnorm.gradnorm,
    "db_mtl": lambda: db_mtl.db_mtl_sized(_num_shared(_model())),
}


@pytest.mark.parametrize("name", ["upgrad", "dualproj", "aligned_mtl", "nash_mtl"])
def test_combine_on_a_pytree_is_the_aggregate(name):
  """combine() flattens the shared gradients, aggregates, and unflattens; absent tasks
  get weight 0."""
  rng = np.random.default_rng(7)
  grads = {"a": jnp.asarray(rng.normal(size=(3, 2, 2)), jnp.float32), "b": jnp.asarray(rng.normal(size=(3, 3)), jnp.float32)}
  present = jnp.array([True, False, True])
  grads = jax.tree.map(lambda g: g * present.reshape(-1, *[1] * (g.ndim - 1)), grads)
  method = BUILDERS[name]()
  terms = Terms(present, jnp.array(False), jnp.array([0.5, 0.0, 0.7]), shared_grads=grads)
  update, state = jax.jit(method.combine)(terms, method.init(3), jax.random.PRNGKey(0))
  J = jnp.concatenate([grads["a"].reshape(3, -1), grads["b"]], axis=1)
  expected = REFERENCES[name][0](J, present)
  np.testing.assert_allclose(jnp.concatenate([update.shared_grad["a"].ravel(), update.shared_grad["b"]]),
                             expected, rtol=1e-5, atol=1e-6)
  assert update.task_weights_T[1] == 0


# End to end: tests/test_combination.py trains every registered method (seeds,
# micro-batches, absent tasks).
