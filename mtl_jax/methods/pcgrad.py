"""PCGrad: projecting conflicting gradients.

Paper: Tianhe Yu, Saurabh Kumar, Abhishek Gupta, Sergey Levine, Karol Hausman and
Chelsea Finn (2020), "Gradient Surgery for Multi-Task Learning" (NeurIPS).

What it does: for each task i, its gradient g_i is taken through the other tasks j in a
random order; whenever the current g_i conflicts with the original g_j (g_i . g_j < 0),
g_i is projected onto the normal plane of g_j: g_i <- g_i - (g_i . g_j / ||g_j||^2) g_j.
The step is the sum of the projected gradients. Each task draws its own order (as in
TorchJD, TorchJD/torchjd, src/torchjd/aggregation/_pcgrad.py, and LibMTL,
median-research-group/LibMTL, LibMTL/weighting/PCGrad.py), from the step's `key`; a
task is not projected onto itself. With two tasks the result does not depend on the
order.

Every projected gradient stays a combination of the original ones, so the projections
run on coefficients over the Gramian G = J J^T ([T, T]): g_i = sum_k C_ik g_k, g_i . g_j
= (C_i G)_j. The direction is J^T w with w = sum_i C_i, the weights returned as
task_weights_T (informative: the shared parameters get exactly J^T w).

Scale: the sum (the paper's, TorchJD's and LibMTL's), the same as equal weighting's when
nothing conflicts; TorchJD's reference PCGrad(J = [[-4, 1, 1], [6, 1, 1]]) = [0.5848,
3.8012, 3.8012] is reproduced.

Hyper-parameters: none.

Absent tasks: they contribute no projected gradient and nobody is projected onto them
(weight 0). No task present: zero direction.

Solver: exact (T passes of T projections each, in lax.scan, vmapped over tasks).
"""
import jax
import jax.numpy as jnp

from mtl_jax.methods.base import SHARED_GRADS, Method, Terms, Update, flat_jacobian, no_state, unflatten_like
from mtl_jax.methods.mgda import masked_gramian


def task_orders(key, num_tasks: int) -> jax.Array:
  """[T, T]: row i is the random order in which task i visits the tasks."""
  return jax.vmap(lambda k: jax.random.permutation(k, num_tasks))(jax.random.split(key, num_tasks))


def pcgrad_weights(gramian_TxT, present_T, orders_TxT) -> jax.Array:
  """w with J^T w = sum_i of PCGrad's projected g_i, each task in its order."""
  gramian = gramian_TxT.astype(jnp.float32)
  num_tasks = gramian.shape[0]
  diagonal_T = jnp.diagonal(gramian)

  def project(i, order_T):
    def body(c_T, j):
      dot = c_T @ gramian[:, j]
      conflict = present_T[j] & (j != i) & (diagonal_T[j] > 0) & (dot < 0)
      step = jnp.where(conflict, dot / jnp.where(diagonal_T[j] > 0, diagonal_T[j], 1.0), 0.0)
      return c_T - step * jax.nn.one_hot(j, num_tasks, dtype=c_T.dtype), None
    start_T = jax.nn.one_hot(i, num_tasks, dtype=jnp.float32) * present_T[i]
    return jax.lax.scan(body, start_T, order_T)[0]

  return jax.vmap(project)(jnp.arange(num_tasks), orders_TxT).sum(0)


def aggregate(jacobian_TxP, present_T=None, key=None):
  """PCGrad's direction for a raw Jacobian (rows = tasks); key draws the orders."""
  num_tasks = jacobian_TxP.shape[0]
  if present_T is None:
    present_T = jnp.ones(num_tasks, bool)
  key = jax.random.PRNGKey(0) if key is None else key
  w_T = pcgrad_weights(masked_gramian(jacobian_TxP, present_T), present_T, task_orders(key, num_tasks))
  return w_T @ jacobian_TxP


def _combine(terms: Terms, state, key):
  jacobian_TxP = flat_jacobian(terms.shared_grads)
  num_tasks = jacobian_TxP.shape[0]
  w_T = pcgrad_weights(masked_gramian(jacobian_TxP, terms.present_T), terms.present_T,
                       task_orders(key, num_tasks))
  return Update(w_T, unflatten_like(w_T @ jacobian_TxP, terms.shared_grads)), state


def pcgrad() -> Method:
  return Method(no_state, _combine, frozenset({SHARED_GRADS}))
