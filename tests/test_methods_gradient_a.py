"""Gradient combination, part A: MGDA (and MGDA-UB), PCGrad, GradVac, IMTL-G, CAGrad.
Each against TorchJD's published reference outputs for J = [[-4, 1, 1], [6, 1, 1]]
(TorchJD/torchjd, tests/unit/aggregation/), two-task closed forms, solvers against
scipy in float64, hypothesis properties (non-conflict, task order), absent tasks, and a
short training run each."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import minimize

from mtl_jax.methods import REPR_GRADS, SHARED_GRADS, Terms
from mtl_jax.methods import cagrad as cagrad_module
from mtl_jax.methods import gradvac as gradvac_module
from mtl_jax.methods import imtl as imtl_module
from mtl_jax.methods import mgda as mgda_module
from mtl_jax.methods import pcgrad as pcgrad_module
from mtl_jax.methods.cagrad import cagrad
from mtl_jax.methods.gradvac import gradvac
from mtl_jax.methods.imtl import imtl_g
from mtl_jax.methods.mgda import mgda, mgda_ub
from mtl_jax.methods.pcgrad import pcgrad
from mtl_jax.models import EncoderSpec, build_model
from mtl_jax.train import TrainConfig, train
from property_budget import EXAMPLES, jacobians

J_TORCHJD = jnp.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
ALL = jnp.array([True, True])

mgda_dir = jax.jit(mgda_module.aggregate)
imtl_dir = jax.jit(imtl_module.aggregate)
cagrad_dir = jax.jit(cagrad_module.aggregate, static_argnames=("c", "steps"))
pcgrad_dir = jax.jit(pcgrad_module.aggregate)
gradvac_dir = jax.jit(gradvac_module.aggregate, static_argnames=("beta",))


def _gradvac_direction(j, present=None, targets=None, key=None):
  return gradvac_dir(j, present, targets, key)[0]


# --- TorchJD's reference values ---

@pytest.mark.parametrize("direction,expected", [
    (mgda_dir, [0.0, 1.0, 1.0]),
    (pcgrad_dir, [0.5848, 3.8012, 3.8012]),
    (_gradvac_direction, [0.5848, 3.8012, 3.8012]),  # zero targets: the first step is PCGrad
    (imtl_dir, [0.0767, 1.0, 1.0]),
    (cagrad_dir, [0.1835, 1.2041, 1.2041]),  # c = 0.5, no division by 1 + c^2
])
def test_torchjd_reference_values(direction, expected):
  np.testing.assert_allclose(direction(J_TORCHJD), expected, atol=1e-3)
  # Task order does not matter for any of them on two tasks (PCGrad's order only
  # matters from three tasks on).
  np.testing.assert_allclose(direction(J_TORCHJD[::-1]), expected, atol=1e-3)


def test_cagrad_scaling_against_the_original_code():
  """The original code and LibMTL divide by 1 + c^2 (rescale=1); we do not (TorchJD)."""
  ours = cagrad_dir(J_TORCHJD, c=0.5)
  libmtl_reference = np.array([0.14680274, 0.96329932, 0.96329932])  # computed with scipy, see below
  np.testing.assert_allclose(ours / (1 + 0.5 ** 2), libmtl_reference, atol=1e-5)


# --- Two-task closed forms ---

def _two_task_matrices():
  return arrays(np.float32, st.tuples(st.just(2), st.integers(1, 5)),
                elements=st.floats(-3, 3, width=32)).filter(
                    lambda j: np.all(np.sum(j.astype(np.float64) ** 2, 1) > 1e-2))


@settings(max_examples=EXAMPLES, deadline=None)
@given(_two_task_matrices())
def test_mgda_two_tasks_is_sener_and_koltuns_closed_form(j):
  j = jnp.asarray(j)
  gamma = mgda_module.two_task_weight(j[0], j[1])
  np.testing.assert_allclose(mgda_dir(j), gamma * j[0] + (1 - gamma) * j[1], atol=1e-4)


@settings(max_examples=EXAMPLES, deadline=None)
@given(_two_task_matrices())
def test_pcgrad_two_tasks_closed_form(j):
  j64 = j.astype(np.float64)
  g1, g2 = j64
  dot = g1 @ g2
  expected = g1 + g2
  if dot < 0:
    expected = (g1 - dot / (g2 @ g2) * g2) + (g2 - dot / (g1 @ g1) * g1)
  np.testing.assert_allclose(pcgrad_dir(jnp.asarray(j)), expected, atol=1e-4 * (1 + np.abs(expected).max()))


gradvac_weights = jax.jit(gradvac_module.gradvac_weights, static_argnames=("beta",))


@settings(max_examples=EXAMPLES, deadline=None)
@given(_two_task_matrices(), st.floats(-0.9, 0.9))
def test_gradvac_two_tasks_reaches_the_target_similarity(j, target):
  """Each task's adjusted gradient has cosine exactly the target with the other's (if
  it was below), and the target moves by beta towards the observed cosine."""
  targets = jnp.array([[0.0, target], [target, 0.0]])
  w, new_targets = gradvac_weights(jnp.asarray(j @ j.T), ALL, targets, jnp.array([[0, 1], [1, 0]]), beta=0.5)
  g = j.astype(np.float64)
  cos = g[0] @ g[1] / np.linalg.norm(g[0]) / np.linalg.norm(g[1])
  np.testing.assert_allclose(new_targets[0, 1], 0.5 * target + 0.5 * cos, atol=1e-5)
  np.testing.assert_allclose(new_targets[1, 0], 0.5 * target + 0.5 * cos, atol=1e-5)
  expected_w = np.ones(2)
  for i in (0, 1):
    gi, gj = g[i], g[1 - i]
    if cos < target:  # the paper's update, then the promised cosine
      coefficient = (np.linalg.norm(gi) * (target * np.sqrt(1 - cos ** 2) - cos * np.sqrt(1 - target ** 2))
                     / (np.linalg.norm(gj) * np.sqrt(1 - target ** 2)))
      expected_w[1 - i] += coefficient
      adjusted = gi + coefficient * gj
      if np.linalg.norm(adjusted) < 1e-3 * np.linalg.norm(gi):
        continue  # anti-parallel gradients adjusted to zero: no cosine to check
      np.testing.assert_allclose(adjusted @ gj / np.linalg.norm(adjusted) / np.linalg.norm(gj), target, atol=1e-6)
  np.testing.assert_allclose(w, expected_w, rtol=1e-3, atol=1e-3)


@settings(max_examples=EXAMPLES, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(2, 4), st.integers(4, 6)), elements=st.floats(-3, 3, width=32)))
def test_imtl_g_projects_equally_on_every_unit_gradient(j):
  j64 = j.astype(np.float64)
  if np.linalg.cond(j64 @ j64.T) > 1e3:
    return  # the property needs independent gradients
  d = np.asarray(imtl_dir(jnp.asarray(j)), np.float64)
  projections = j64 @ d / np.linalg.norm(j64, axis=1)
  np.testing.assert_allclose(projections, projections.mean(), atol=1e-3 * (1 + np.abs(projections).max()))
  # The weights sum to one: d is in the affine hull of the gradients.
  w = imtl_module.imtl_g_weights(jnp.asarray(j @ j.T))
  np.testing.assert_allclose(w.sum(), 1.0, atol=1e-4)


# --- Solvers against scipy (float64) ---

def _simplex_minimum(objective, num_tasks):
  constraint = {"type": "eq", "fun": lambda w: w.sum() - 1}
  starts = [np.ones(num_tasks) / num_tasks] + [0.9 * np.eye(num_tasks)[i] + 0.1 / num_tasks
                                              for i in range(num_tasks)]
  return min((minimize(objective, x0, method="SLSQP", bounds=[(0, 1)] * num_tasks, constraints=constraint,
                       options={"ftol": 1e-14, "maxiter": 1000}) for x0 in starts), key=lambda r: r.fun).fun


def test_mgda_and_cagrad_solvers_reach_scipys_optimum():
  rng = np.random.default_rng(0)
  for _ in range(25):
    t, p = rng.integers(2, 6), rng.integers(2, 8)
    j = rng.normal(size=(t, p))
    gramian = j @ j.T
    best = _simplex_minimum(lambda w: w @ gramian @ w, t)
    w = np.asarray(mgda_module.min_norm_weights(jnp.asarray(gramian, jnp.float32), jnp.ones(t, bool)), np.float64)
    assert abs(w.sum() - 1) < 1e-5 and w.min() >= 0
    assert w @ gramian @ w - best < 1e-4 * (1 + np.trace(gramian))
    g0 = j.mean(0)
    k = 0.5 * np.linalg.norm(g0)
    dual = lambda w: w @ j @ g0 + k * np.sqrt(max(w @ gramian @ w, 0))
    w, _, _ = cagrad_module.dual_weights(jnp.asarray(gramian, jnp.float32), jnp.ones(t, bool), 0.5)
    assert dual(np.asarray(w, np.float64)) - _simplex_minimum(dual, t) < 1e-4 * (1 + np.trace(gramian))


def test_libmtl_cagrad_value_used_above():
  j = np.asarray(J_TORCHJD, np.float64)
  g0 = j.mean(0)
  k = 0.5 * np.linalg.norm(g0)
  res = min((minimize(lambda x: (np.array([x[0], 1 - x[0]]) @ j @ g0
                                 + k * np.linalg.norm(np.array([x[0], 1 - x[0]]) @ j)), [s], bounds=[(0, 1)])
             for s in np.linspace(0, 1, 11)), key=lambda r: r.fun)
  gw = np.array([res.x[0], 1 - res.x[0]]) @ j
  d = (g0 + k / np.linalg.norm(gw) * gw) / (1 + 0.5 ** 2)
  np.testing.assert_allclose(d, [0.14680274, 0.96329932, 0.96329932], atol=1e-5)


def test_cagrad_without_the_ball_is_the_mean_gradient():
  j = jnp.asarray(np.random.default_rng(1).normal(size=(4, 5)), jnp.float32)
  np.testing.assert_allclose(cagrad_dir(j, c=0.0), j.mean(0), atol=1e-5)


# --- Hypothesis properties ---

def _matrices():
  return jacobians((2, 5), (1, 6), bound=3)


@settings(max_examples=EXAMPLES, deadline=None)
@given(_matrices())
def test_mgda_direction_does_not_conflict_with_any_task(j):
  """g_t . d >= |d|^2 >= 0 at the optimum. In float32 on the Gramian the direction is
  known to ~3e-4 |g| when the min-norm point is ~0, hence the tolerance."""
  j64 = j.astype(np.float64)
  d = np.asarray(mgda_dir(jnp.asarray(j)), np.float64)
  scale = np.max(np.sum(j64 ** 2, axis=1))
  assert np.min(j64 @ d) >= -1e-3 * scale - 1e-6
  assert np.min(j64 @ d) >= d @ d - 1e-3 * scale - 1e-6


def test_mgda_direction_does_not_conflict_away_from_pareto_stationarity():
  """Where 0 is far from the hull, the strict tolerance holds."""
  rng = np.random.default_rng(3)
  for _ in range(30):
    j = rng.normal(size=(4, 8)) + 2.0  # a common component: 0 is outside the hull
    d = np.asarray(mgda_dir(jnp.asarray(j, jnp.float32)), np.float64)
    assert np.min(j @ d) >= d @ d * (1 - 1e-4) - 1e-5


@settings(max_examples=EXAMPLES, deadline=None)
@given(_matrices(), st.randoms(use_true_random=False))
def test_deterministic_methods_do_not_depend_on_task_order(j, random):
  j = jnp.asarray(j)
  order = list(range(j.shape[0]))
  random.shuffle(order)
  scale = 1 + float(jnp.max(jnp.sum(j ** 2, axis=1)))
  for direction, tol in ((mgda_dir, 2e-3), (cagrad_dir, 2e-3)):
    np.testing.assert_allclose(direction(j[jnp.array(order)]), direction(j), atol=tol * scale)
  if np.linalg.cond(np.asarray(j @ j.T, np.float64)) < 1e3:
    np.testing.assert_allclose(imtl_dir(j[jnp.array(order)]), imtl_dir(j), atol=1e-3 * scale)


@settings(max_examples=EXAMPLES, deadline=None)
@given(_matrices(), st.integers(0, 2 ** 31 - 1))
def test_pcgrad_and_gradvac_are_the_sum_when_nothing_conflicts(j, seed):
  j = jnp.asarray(j)
  key = jax.random.PRNGKey(seed)
  gramian = np.asarray(j @ j.T, np.float64)
  if np.all(gramian >= 0):
    np.testing.assert_allclose(pcgrad_dir(j, None, key), j.sum(0), atol=1e-4 * (1 + np.abs(j).sum()))
    np.testing.assert_allclose(_gradvac_direction(j, None, None, key), j.sum(0),
                               atol=1e-4 * (1 + np.abs(j).sum()))


# --- Absent tasks ---

J3 = jnp.array([[1.0, 2.0, -1.0, 0.5], [-2.0, 0.5, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])  # task 2 absent
PRESENT3 = jnp.array([True, True, False])


@pytest.mark.parametrize("direction", [mgda_dir, imtl_dir, cagrad_dir, pcgrad_dir, _gradvac_direction],
                         ids=["mgda", "imtl_g", "cagrad", "pcgrad", "gradvac"])
def test_an_absent_task_is_left_out(direction):
  with_absent = direction(J3, PRESENT3)
  alone = direction(J3[:2], ALL)
  np.testing.assert_allclose(with_absent, alone, atol=1e-5)
  assert np.linalg.norm(alone) > 0.1
  # Treating the zero gradient as a task would differ (MGDA would pick 0; the means halve).
  if direction in (mgda_dir, cagrad_dir):
    assert np.linalg.norm(direction(J3, jnp.ones(3, bool)) - alone) > 1e-2
  # One present task: its own gradient, up to the method's scale.
  one = direction(J3, jnp.array([False, True, False]))
  cosine = one @ J3[1] / jnp.linalg.norm(one) / jnp.linalg.norm(J3[1])
  np.testing.assert_allclose(cosine, 1.0, atol=1e-5)
  # None present: zero, no NaN.
  np.testing.assert_array_equal(direction(J3, jnp.zeros(3, bool)), jnp.zeros(4))


def test_gradvac_does_not_update_targets_of_absent_pairs():
  targets = jnp.full((3, 3), 0.2)
  _, new = gradvac_dir(J3, PRESENT3, targets, jax.random.PRNGKey(0))
  np.testing.assert_array_equal(new[2], targets[2])
  np.testing.assert_array_equal(new[:, 2], targets[:, 2])
  np.testing.assert_array_equal(jnp.diagonal(new), jnp.diagonal(targets))
  j = np.asarray(J3[:2], np.float64)
  cos = j[0] @ j[1] / np.linalg.norm(j[0]) / np.linalg.norm(j[1])
  np.testing.assert_allclose([new[0, 1], new[1, 0]][:1], [0.5 * 0.2 + 0.5 * cos], atol=1e-5)


def test_pcgrad_three_tasks_order_comes_from_the_key():
  """With three mutually conflicting tasks the order matters; the same key gives the
  same result, and each result is one of the orders' exact PCGrad."""
  j = np.array([[1.0, 0.0], [-0.6, 0.8], [-0.6, -0.8]])
  results = [np.asarray(pcgrad_dir(jnp.asarray(j, jnp.float32), None, jax.random.PRNGKey(s))) for s in range(12)]

  def reference(orders):
    out = np.zeros(2)
    for i, order in enumerate(orders):
      g = j[i].copy()
      for k in order:
        if k != i and g @ j[k] < 0:
          g = g - (g @ j[k]) / (j[k] @ j[k]) * j[k]
      out += g
    return out
  candidates = [reference(o) for o in itertools.product(itertools.permutations(range(3)), repeat=3)]
  for r in results:
    assert min(np.abs(r - c).max() for c in candidates) < 1e-5
  assert len({tuple(np.round(r, 4)) for r in results}) > 1
  np.testing.assert_array_equal(pcgrad_dir(jnp.asarray(j, jnp.float32), None, jax.random.PRNGKey(3)),
                                results[3])


# --- Through combine, with a pytree of shared gradients ---

def _terms(jacobian_TxP, present_T):
  shared = {"a": jacobian_TxP[:, :3].reshape(-1, 3, 1), "b": jacobian_TxP[:, 3:]}
  return Terms(present_T, jnp.array(True), jnp.ones(jacobian_TxP.shape[0]), shared_grads=shared)


@pytest.mark.parametrize("builder,direction", [
    (mgda, mgda_dir), (imtl_g, imtl_dir), (cagrad, cagrad_dir), (pcgrad, pcgrad_dir),
    (gradvac, _gradvac_direction)], ids=["mgda", "imtl_g", "cagrad", "pcgrad", "gradvac"])
def test_combine_returns_the_direction_as_the_shared_gradient(builder, direction):
  method = builder()
  assert method.needs == frozenset({SHARED_GRADS})
  key = jax.random.PRNGKey(5)
  update, state = jax.jit(method.combine)(_terms(J3, PRESENT3), method.init(3), key)
  if direction is pcgrad_dir:
    expected = direction(J3, PRESENT3, key)
  elif direction is _gradvac_direction:
    expected = direction(J3, PRESENT3, None, key)
  else:
    expected = direction(J3, PRESENT3)
  got = jnp.concatenate([update.shared_grad["a"].reshape(-1), update.shared_grad["b"]])
  np.testing.assert_allclose(got, expected, atol=1e-5)
  np.testing.assert_allclose(update.task_weights_T @ J3, expected, atol=1e-5)
  assert update.task_weights_T[2] == 0
  # No task present: zero update, unchanged state, no NaN.
  update, new_state = jax.jit(method.combine)(_terms(J3 * 0, jnp.zeros(3, bool)), state, key)
  assert all(np.all(leaf == 0) for leaf in jax.tree.leaves(update))
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(new_state)):
    np.testing.assert_array_equal(a, b)


def test_mgda_ub_weighs_the_losses_by_the_min_norm_point_of_representation_gradients():
  method = mgda_ub()
  assert method.needs == frozenset({REPR_GRADS})
  rng = np.random.default_rng(2)
  repr_grads = jnp.asarray(rng.normal(size=(3, 4, 2)), jnp.float32).at[2].set(0.0)
  terms = Terms(PRESENT3, jnp.array(True), jnp.ones(3), repr_grads=repr_grads)
  update, _ = jax.jit(method.combine)(terms, (), jax.random.PRNGKey(0))
  assert update.shared_grad is None
  flat = repr_grads[:2].reshape(2, -1)
  gamma = mgda_module.two_task_weight(flat[0], flat[1])
  np.testing.assert_allclose(update.task_weights_T, [gamma, 1 - gamma, 0.0], atol=1e-5)
  np.testing.assert_allclose(update.task_weights_T.sum(), 1.0, atol=1e-6)  # the simplex (paper)
  update, _ = jax.jit(method.combine)(terms.replace(present_T=jnp.zeros(3, bool)), (), jax.random.PRNGKey(0))
  np.testing.assert_array_equal(update.task_weights_T, jnp.zeros(3))


# End to end: tests/test_combination.py trains every registered method (seeds,
# micro-batches, absent tasks).


@settings(max_examples=EXAMPLES, deadline=None)
@given(_matrices(), st.integers(0, 2 ** 31 - 1))
def test_gradvac_with_zero_targets_is_pcgrad_for_any_number_of_tasks(j, seed):
  """A zero target makes GradVac's adjustment PCGrad's projection (same orders, same key)."""
  j = jnp.asarray(j)
  key = jax.random.PRNGKey(seed)
  np.testing.assert_allclose(_gradvac_direction(j, None, None, key), pcgrad_dir(j, None, key),
                             atol=1e-4 * (1 + float(jnp.abs(j).sum())))
