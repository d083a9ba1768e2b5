"""UPGrad: Quinton & Rey (2024), "Jacobian descent for multi-objective optimization"
(TorchJD, torchjd/aggregation/_upgrad.py).

Each task's gradient, weighted by the preference 1/m (m present tasks), is projected onto
the dual cone {x : J x >= 0} of the rows of J, and the projections are summed (so
averaged): d = sum_i proj(J^T e_i / m). The result never conflicts with a task
(J d >= 0), equals the mean gradient when no two gradients conflict (all projections are
then the gradients themselves), and is equivariant to the order of the tasks. Each
projection is the QP w_i = argmin_{v >= e_i / m} v^T G v on the Gramian, solved in
cone.py; d = J^T sum_i w_i.

Hyper-parameters (TorchJD's defaults): reg_eps = 1e-4 (added to the diagonal of the
trace-normalised Gramian; it is what moves TorchJD's reference [0.2929, 1.9004, 1.9004]
from the unregularised [0.2924, 1.9006, 1.9006]), norm_eps = 1e-4 (a Gramian with a
smaller trace counts as zero).
Absent tasks: no projection of their own and no weight; m counts present tasks; none
present gives a zero update.
Exactness: coordinate descent then a fixed number of active-set iterations (cone.py): an
exact KKT point up to float32 (relative error <= 1e-5 well-conditioned, <= 1e-3 for
nearly collinear conflicting rows).
"""
import jax
import jax.numpy as jnp

from mtl_jax.methods.base import Method, jacobian_weighting
from mtl_jax.methods.cone import normalized_gramian, project_weights


def weights(J_TxP, present_T, reg_eps=1e-4, norm_eps=1e-4):
  """The combination weights w_T (d = J^T w): the sum of the T projections' weights."""
  mask = present_T.astype(J_TxP.dtype)
  m = jnp.maximum(mask.sum(), 1.0)
  G = normalized_gramian(J_TxP, present_T, reg_eps, norm_eps)
  U_KxT = jnp.diag(mask / m)  # row i: task i's preference; absent rows are zero
  return project_weights(U_KxT, G).sum(0) * mask


def aggregate(J_TxP, present_T=None, reg_eps=1e-4, norm_eps=1e-4):
  present_T = jnp.ones(J_TxP.shape[0], bool) if present_T is None else present_T
  return weights(J_TxP, present_T, reg_eps, norm_eps) @ (J_TxP * present_T[:, None])


def upgrad(reg_eps: float = 1e-4, norm_eps: float = 1e-4) -> Method:
  return jacobian_weighting(lambda J, present: weights(J, present, reg_eps, norm_eps))
