"""Cross-check against TorchJD itself (optional): our gradient-combination methods and
TorchJD 0.18.0's aggregators on the same random Jacobians.

TorchJD is not a requirement of the package. To run these tests:
  pip install torch==2.13.0   # the CPU build, as for benchmarks/torch_reference.py
  pip install "torchjd[quadprog-projector,cagrad,nash-mtl]==0.18.0"
(pip 23 does not normalise the extra spelled `quadprog_projector`: it warns that the
extra does not exist and installs no QP solver). Without torchjd the module is skipped;
without an aggregator's extra, that aggregator's test is skipped.

Conventions: every method compared here is on TorchJD's scale (docs/methods.md; CAGrad
without LibMTL's division by 1 + c^2, MGDA on the simplex, Nash-MTL rescaled to
max_norm 1), so the relation tested is equality of the directions, with the registered
method's default hyper-parameters against the aggregator's defaults (CAGrad: c = 0.5,
which TorchJD requires explicitly). Ours run in float32 through the registered
Method's `combine` (built by name, as training builds it); TorchJD gets the float64
matrix, its most accurate answer.

Three comparisons need care:
- MGDA: TorchJD's solver is plain Frank-Wolfe that stops when a step is below
  epsilon = 1e-3 (at most 100 iterations), so from three tasks on it stops well short of
  the min-norm point (2e-1 relative on the 5-task matrix below); ours is pairwise
  Frank-Wolfe, 256 steps. Two tasks: both exact, compared directly. More: for the
  min-norm point d* of the hull and any h in it, |h|^2 >= |d*|^2 + |h - d*|^2, so with
  ours at d*, |d_torchjd - d_ours|^2 <= |d_torchjd|^2 - |d_ours|^2 (up to float32).
- PCGrad: TorchJD draws each task's order with torch.randperm(T), one per task in
  task order, from torch's global generator; ours draws them from a JAX key. The test
  replays TorchJD's draws (same torch seed) and gives those orders to our
  pcgrad_weights, so the comparison is exact for any number of tasks.
- Nash-MTL is left out on the rank-3, five-task matrix: there 0 is inside the hull of
  the gradients (a positive combination of them vanishes), so G alpha = 1 / alpha has
  no solution; ours returns the solution regularised by reg_eps (a short step, norm
  0.004), TorchJD whatever its 20 cvxpy iterations reach (norm 0.93), and they differ.
The matrices are padded with zero columns to 8 parameters for ours (the Gramian and the
direction's first P entries are unchanged), so each method compiles once per number
of tasks.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="optional cross-check: needs torch (CPU) and torchjd==0.18.0")
torchjd = pytest.importorskip("torchjd",
                              reason='optional cross-check: pip install "torchjd[quadprog-projector,cagrad,'
                                     'nash-mtl]==0.18.0" (and torch)')
from torchjd import aggregation  # noqa: E402

from mtl_jax.methods import Terms, build_method  # noqa: E402
from mtl_jax.methods.mgda import masked_gramian  # noqa: E402
from mtl_jax.methods.pcgrad import pcgrad_weights  # noqa: E402

PADDED_P = 8


def _normal(seed, shape, shift=0.0):
  return np.random.default_rng(seed).normal(size=shape) + shift


# name -> J [T, P] in float64. Conflicts (pairs with g_i . g_j < 0) noted.
JACOBIANS = {
    "torchjd_reference": np.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]]),  # 1 conflict
    "T2_P3": _normal(2, (2, 3)),  # 1 conflict
    "T4_P8": _normal(2, (4, 8)),  # 3 conflicts
    "T4_P7_aligned": _normal(5, (4, 7), shift=1.0),  # no conflict: every projection is the identity
    "T5_P6": _normal(3, (5, 6)),  # 6 conflicts
    "T5_P3_rank3": _normal(4, (5, 3)),  # 8 conflicts, rank 3, 0 inside the hull
}
# Nash-MTL has no solution where 0 is inside the hull (module docstring).
NASH_JACOBIANS = [name for name in JACOBIANS if name != "T5_P3_rank3"]

# Ours by registered name -> TorchJD's aggregator for a [T, P] matrix, at defaults.
AGGREGATORS = {
    "upgrad": lambda T: aggregation.UPGrad(),
    "dualproj": lambda T: aggregation.DualProj(),
    "imtl_g": lambda T: aggregation.IMTLG(),
    "aligned_mtl": lambda T: aggregation.AlignedMTL(),
    "cagrad": lambda T: aggregation.CAGrad(c=0.5),
    "nash_mtl": lambda T: aggregation.NashMTL(n_tasks=T),
}


@functools.lru_cache(maxsize=None)
def _combine(name):
  return jax.jit(build_method(name).combine)


def _ours(name, J):
  """The registered method's shared gradient for J (all tasks present), float64 [P]."""
  T, P = J.shape
  padded = np.zeros((T, PADDED_P), np.float32)
  padded[:, :P] = J
  terms = Terms(jnp.ones(T, bool), jnp.array(True), jnp.ones(T), shared_grads={"w": jnp.asarray(padded)})
  update, _ = _combine(name)(terms, (), jax.random.PRNGKey(0))
  direction = np.asarray(update.shared_grad["w"], np.float64)
  np.testing.assert_array_equal(direction[P:], 0.0)
  return direction[:P]


def _aggregator(name, T):
  try:
    return AGGREGATORS[name](T)
  except ImportError as error:  # an extra of torchjd is missing (qpsolvers, cvxpy, ...)
    pytest.skip(f"torchjd's {name} needs an optional dependency: {error}")


def _theirs(aggregator, J):
  return aggregator(torch.tensor(J, dtype=torch.float64)).numpy()


def _pairs(names):
  return [(m, j) for m in AGGREGATORS for j in names if m != "nash_mtl" or j in NASH_JACOBIANS]


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
@pytest.mark.parametrize("method,jacobian", _pairs(JACOBIANS))
def test_same_direction_as_torchjd(method, jacobian):
  J = JACOBIANS[jacobian]
  theirs = _theirs(_aggregator(method, J.shape[0]), J)
  ours = _ours(method, J)
  # Float32 against a float64 reference: 1e-3 of the largest entry (the rank-3 matrix,
  # the worst conditioned, is at 1.6e-4; the others are at 3e-5 or below).
  np.testing.assert_allclose(ours, theirs, atol=1e-3 * np.abs(theirs).max(), rtol=0)


def test_the_matrices_are_what_the_names_say():
  for name, J in JACOBIANS.items():
    G = J @ J.T
    conflicts = int((G[np.triu_indices(len(G), 1)] < 0).sum())
    assert (conflicts == 0) == name.endswith("aligned"), name
  assert np.linalg.matrix_rank(JACOBIANS["T5_P3_rank3"]) == 3


@pytest.mark.parametrize("jacobian", list(JACOBIANS))
def test_mgda_against_torchjd(jacobian):
  J = JACOBIANS[jacobian]
  theirs = _theirs(aggregation.MGDA(), J)
  ours = _ours("mgda", J)
  scale = np.max(np.sum(J ** 2, axis=1))
  if J.shape[0] == 2:  # both exact (one line search)
    np.testing.assert_allclose(ours, theirs, atol=1e-4 * np.sqrt(scale), rtol=0)
  # Ours is at the min-norm point; TorchJD's is a point of the hull at least as long.
  assert ours @ ours <= theirs @ theirs + 1e-5 * scale
  gap = (theirs - ours) @ (theirs - ours) - (theirs @ theirs - ours @ ours)
  assert gap <= 1e-4 * scale, gap


@pytest.mark.parametrize("jacobian", list(JACOBIANS))
def test_pcgrad_against_torchjd_with_its_task_orders(jacobian):
  J = JACOBIANS[jacobian]
  T = J.shape[0]
  torch.manual_seed(1234)
  orders = np.stack([torch.randperm(T).numpy() for _ in range(T)])  # the draws PCGrad will make
  torch.manual_seed(1234)
  theirs = _theirs(aggregation.PCGrad(), J)
  J32 = jnp.asarray(J, jnp.float32)
  present = jnp.ones(T, bool)
  w = jax.jit(pcgrad_weights)(masked_gramian(J32, present), present, jnp.asarray(orders, jnp.int32))
  ours = np.asarray(w @ J32, np.float64)
  np.testing.assert_allclose(ours, theirs, atol=1e-4 * np.abs(theirs).max(), rtol=0)
  if T == 2:  # no order ambiguity: the registered method (its own orders) agrees too
    np.testing.assert_allclose(_ours("pcgrad", J), theirs, atol=1e-4 * np.abs(theirs).max(), rtol=0)
