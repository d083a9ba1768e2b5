"""IMTL-G: the gradient part of impartial multi-task learning.

Paper: Liyang Liu, Yi Li, Zhanghui Kuang, Jing-Hao Xue, Yimin Chen, Wenming Yang,
Qingmin Liao and Wayne Zhang (2021), "Towards Impartial Multi-task Learning" (ICLR).

What it does: it finds weights w with sum_t w_t = 1 such that the combined gradient
d = sum_t w_t g_t has the same projection onto every task's unit gradient u_t = g_t /
||g_t||: d . u_t is equal for all t, so no task is favoured by the step. The paper's
closed form is w_{2:T} = g_1 U^T (D U^T)^{-1}, w_1 = 1 - sum_{t>1} w_t, with rows
D_t = g_1 - g_t and U_t = u_1 - u_t. Equivalently (J J^T) v = (||g_t||)_t, w = v /
sum_t v_t: (J d)_t = ||g_t|| / sum(v) makes d . u_t the same for every t. We solve the
latter with the pseudo-inverse of the Gramian, as TorchJD does (TorchJD/torchjd,
src/torchjd/aggregation/_imtl_g.py), which also covers linearly dependent gradients; if sum(v) is
~0 the weights are zero. (LibMTL, median-research-group/LibMTL,
LibMTL/weighting/IMTL.py, implements the paper's form, together with IMTL-L's loss
scaling, which this module leaves out.)

Scale: d = J^T w with sum_t w_t = 1 (the paper's and TorchJD's), whose reference
IMTL-G(J = [[-4, 1, 1], [6, 1, 1]]) = [0.0767, 1, 1] we reproduce.

Hyper-parameters: none.

Absent tasks: their rows and columns of the Gramian and their norms are zero, so the
pseudo-inverse gives them weight 0 and the others are solved among themselves. No
task present: zero weights.

Solver: closed form (jnp.linalg.pinv of the [T, T] Gramian, in float32).
"""
import jax.numpy as jnp

from mtl_jax.methods.base import SHARED_GRADS, Method, Terms, Update, flat_jacobian, no_state, unflatten_like
from mtl_jax.methods.mgda import masked_gramian


def imtl_g_weights(gramian_TxT, present_T=None):
  """w with sum 1 (or zero) making d = J^T w equally projected on every unit task gradient."""
  gramian = gramian_TxT.astype(jnp.float32)
  if present_T is not None:
    present = present_T.astype(jnp.float32)
    gramian = gramian * present[:, None] * present[None, :]
  norms_T = jnp.sqrt(jnp.maximum(jnp.diagonal(gramian), 0.0))
  v_T = jnp.linalg.pinv(gramian, hermitian=True) @ norms_T
  total = v_T.sum()
  ok = jnp.abs(total) > 1e-12
  return jnp.where(ok, v_T / jnp.where(ok, total, 1.0), 0.0)


def aggregate(jacobian_TxP, present_T=None):
  """IMTL-G's direction for a raw Jacobian (rows = tasks)."""
  if present_T is None:
    present_T = jnp.ones(jacobian_TxP.shape[0], bool)
  return imtl_g_weights(masked_gramian(jacobian_TxP, present_T), present_T) @ jacobian_TxP


def _combine(terms: Terms, state, key):
  del key
  jacobian_TxP = flat_jacobian(terms.shared_grads)
  w_T = imtl_g_weights(masked_gramian(jacobian_TxP, terms.present_T), terms.present_T)
  return Update(w_T, unflatten_like(w_T @ jacobian_TxP, terms.shared_grads)), state


def imtl_g() -> Method:
  return Method(no_state, _combine, frozenset({SHARED_GRADS}))
