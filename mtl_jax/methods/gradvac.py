"""GradVac: gradient vaccine.

Paper: Zirui Wang, Yulia Tsvetkov, Orhan Firat and Yuan Cao (2021), "Gradient Vaccine:
Investigating and Improving Multi-task Optimization in Massively Multilingual Models"
(ICLR).

What it does: like PCGrad, each task's gradient g_i visits the other tasks j in a
random order, but instead of only removing conflicts it pulls the cosine similarity
phi_ij = cos(g_i, g_j) up to a target phi^_ij whenever phi_ij < phi^_ij:
    g_i <- g_i + ||g_i|| (phi^ sqrt(1 - phi^2) - phi sqrt(1 - phi^2^)) / (||g_j|| sqrt(1 - phi^^2)) g_j,
after which cos(g_i, g_j) = phi^_ij exactly. The target is an exponential moving
average of the observed similarities, phi^_ij <- (1 - beta) phi^_ij + beta phi_ij,
updated for every visited pair (phi_ij is measured with the current g_i, before its
adjustment), kept in the method's state ([T, T], starting at 0, so the first step is
PCGrad). The step is the sum of the adjusted gradients. We follow LibMTL's
implementation (median-research-group/LibMTL, LibMTL/weighting/GradVac.py) with one
group spanning all shared parameters (the paper also applies it per layer); each task
draws its own order from the step's `key`. (A TorchJD GradVac draft,
TorchJD/torchjd src/torchjd/aggregation/gradvac.py, updates the EMA before comparing
and defaults to beta = 1e-2; we compare with the target first, as LibMTL does.)

As in pcgrad.py everything runs on coefficients over the Gramian G = J J^T: the
adjusted g_i = sum_k C_ik g_k; the direction is J^T w with w = sum_i C_i, returned as
task_weights_T (informative).

Scale: the sum, as in LibMTL and the paper.

Hyper-parameters: beta = 0.5 (LibMTL's default; the paper's EMA rate for its
experiments is 1e-2).

Absent tasks: no adjusted gradient of their own, nobody is adjusted towards them, and
the targets of pairs involving an absent task are not updated. No task present: zero
direction, unchanged state.

Solver: exact (closed-form adjustments in lax.scan, vmapped over tasks).
"""
import jax
import jax.numpy as jnp

from mtl_jax.methods.base import SHARED_GRADS, Method, Terms, Update, flat_jacobian, unflatten_like
from mtl_jax.methods.mgda import masked_gramian
from mtl_jax.methods.pcgrad import task_orders

_EPS = 1e-8


def gradvac_weights(gramian_TxT, present_T, targets_TxT, orders_TxT, beta: float):
  """(w, new targets): J^T w = sum_i of GradVac's adjusted g_i."""
  gramian = gramian_TxT.astype(jnp.float32)
  num_tasks = gramian.shape[0]
  norms_T = jnp.sqrt(jnp.maximum(jnp.diagonal(gramian), 0.0))

  def adjust(i, order_T, targets_T):
    def body(carry, j):
      c_T, targets_T = carry
      norm_i = jnp.sqrt(jnp.maximum(c_T @ gramian @ c_T, 0.0))
      visit = present_T[i] & present_T[j] & (j != i) & (norm_i > 0) & (norms_T[j] > 0)
      scale = jnp.where(visit, norm_i * norms_T[j], 1.0)
      rho = jnp.clip((c_T @ gramian[:, j]) / scale, -1.0, 1.0)
      target = targets_T[j]
      root_target = jnp.sqrt(jnp.maximum(1 - target ** 2, _EPS))
      coefficient = (norm_i * (target * jnp.sqrt(jnp.maximum(1 - rho ** 2, 0.0)) - rho * root_target)
                     / (jnp.where(visit, norms_T[j], 1.0) * root_target))
      c_T = c_T + jnp.where(visit & (rho < target), coefficient, 0.0) * jax.nn.one_hot(
          j, num_tasks, dtype=c_T.dtype)
      targets_T = targets_T.at[j].set(jnp.where(visit, (1 - beta) * target + beta * rho, target))
      return (c_T, targets_T), None
    start_T = jax.nn.one_hot(i, num_tasks, dtype=jnp.float32) * present_T[i]
    return jax.lax.scan(body, (start_T, targets_T), order_T)[0]

  c_TxT, targets = jax.vmap(adjust)(jnp.arange(num_tasks), orders_TxT, targets_TxT.astype(jnp.float32))
  return c_TxT.sum(0), targets


def aggregate(jacobian_TxP, present_T=None, targets_TxT=None, key=None, beta: float = 0.5):
  """(GradVac's direction, new targets) for a raw Jacobian (rows = tasks)."""
  num_tasks = jacobian_TxP.shape[0]
  if present_T is None:
    present_T = jnp.ones(num_tasks, bool)
  if targets_TxT is None:
    targets_TxT = jnp.zeros((num_tasks, num_tasks))
  key = jax.random.PRNGKey(0) if key is None else key
  w_T, targets = gradvac_weights(masked_gramian(jacobian_TxP, present_T), present_T, targets_TxT,
                                 task_orders(key, num_tasks), beta)
  return w_T @ jacobian_TxP, targets


def gradvac(beta: float = 0.5) -> Method:
  def init(num_tasks: int):
    return jnp.zeros((num_tasks, num_tasks), jnp.float32)

  def combine(terms: Terms, targets_TxT, key):
    jacobian_TxP = flat_jacobian(terms.shared_grads)
    num_tasks = jacobian_TxP.shape[0]
    w_T, targets = gradvac_weights(masked_gramian(jacobian_TxP, terms.present_T), terms.present_T,
                                   targets_TxT, task_orders(key, num_tasks), beta)
    return Update(w_T, unflatten_like(w_T @ jacobian_TxP, terms.shared_grads)), targets

  return Method(init, combine, frozenset({SHARED_GRADS}))
