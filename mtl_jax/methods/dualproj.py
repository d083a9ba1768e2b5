"""DualProj: Quinton & Rey (2024), "Jacobian descent for multi-objective optimization"
(TorchJD, torchjd/aggregation/_dualproj.py).

The mean gradient of the present tasks is projected onto the dual cone {x : J x >= 0} of
the rows of J: d = J^T w with w = argmin_{v >= 1/m} v^T G v (G the Gramian, m present
tasks), solved in cone.py. d never conflicts with a task, equals the mean gradient when
that does not conflict, and is equivariant to the order of the tasks.

Hyper-parameters (TorchJD's defaults): reg_eps = 1e-4 (added to the diagonal of the
trace-normalised Gramian; TorchJD's reference [0.5563, 1.1109, 1.1109] includes it, the
unregularised projection is [0.5556, 1.1111, 1.1111]), norm_eps = 1e-4.
Absent tasks: left out of the mean and given weight 0; none present gives a zero update.
Exactness: coordinate descent then a fixed number of active-set iterations (cone.py): an
exact KKT point up to float32 (relative error <= 1e-5 well-conditioned, <= 1e-3 for
nearly collinear conflicting rows).
"""
import jax
import jax.numpy as jnp

from mtl_jax.methods.base import Method, jacobian_weighting
from mtl_jax.methods.cone import normalized_gramian, project_weights


def weights(J_TxP, present_T, reg_eps=1e-4, norm_eps=1e-4):
  mask = present_T.astype(J_TxP.dtype)
  u = mask / jnp.maximum(mask.sum(), 1.0)
  return project_weights(u, normalized_gramian(J_TxP, present_T, reg_eps, norm_eps)) * mask


def aggregate(J_TxP, present_T=None, reg_eps=1e-4, norm_eps=1e-4):
  present_T = jnp.ones(J_TxP.shape[0], bool) if present_T is None else present_T
  return weights(J_TxP, present_T, reg_eps, norm_eps) @ (J_TxP * present_T[:, None])


def dualproj(reg_eps: float = 1e-4, norm_eps: float = 1e-4) -> Method:
  return jacobian_weighting(lambda J, present: weights(J, present, reg_eps, norm_eps))
