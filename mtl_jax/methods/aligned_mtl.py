"""Aligned-MTL: Senushkin, Patakin, Kuznetsov & Konushin (2023), "Independent component
alignment for multi-task learning" (CVPR); as in TorchJD, torchjd/aggregation/_aligned_mtl.py.

The task gradients' principal components are aligned: with the Gramian G = J J^T =
V diag(lambda) V^T (jnp.linalg.eigh), the balance transformation
B = sqrt(lambda_min) V diag(lambda^-1/2) V^T makes the rows of B J orthogonal with equal
norms sqrt(lambda_min) (the condition number of the aligned system is 1); the update is
d = J^T B w with the preference w = 1/m (m present tasks), i.e. the mean of the aligned
gradients. Eigenvalues at or below lambda_max * T * eps(float32) are treated as zero and
their directions dropped (rank-deficient J), as TorchJD does; lambda_min is the smallest
kept eigenvalue. With no kept eigenvalue, B = I.

Hyper-parameters: none (TorchJD's scale_mode "min", the paper's choice).
Absent tasks: their rows of J are zeroed, so their eigen-directions are in the dropped
null space and their weights are 0; m counts present tasks; none present: zero update.
Exactness: closed form (one symmetric eigen-decomposition of the trace-normalised
Gramian; B is invariant to that scale).
"""
import jax
import jax.numpy as jnp

from mtl_jax.methods.base import Method, jacobian_weighting


def weights(J_TxP, present_T):
  mask = present_T.astype(J_TxP.dtype)
  J = J_TxP * mask[:, None]
  G = J @ J.T
  G = G / jnp.maximum(jnp.trace(G), jnp.finfo(G.dtype).tiny)
  lam, V = jnp.linalg.eigh(G)
  tol = jnp.max(lam) * G.shape[0] * jnp.finfo(G.dtype).eps
  keep = lam > tol
  scale = jnp.min(jnp.where(keep, lam, jnp.inf))
  inv_sqrt = jnp.where(keep, 1.0 / jnp.sqrt(jnp.where(keep, lam, 1.0)), 0.0)
  B = jnp.sqrt(scale) * (V * inv_sqrt) @ V.T
  B = jnp.where(jnp.any(keep), B, jnp.eye(G.shape[0], dtype=G.dtype))
  w = mask / jnp.maximum(mask.sum(), 1.0)
  return (B @ w) * mask


def aggregate(J_TxP, present_T=None):
  present_T = jnp.ones(J_TxP.shape[0], bool) if present_T is None else present_T
  return weights(J_TxP, present_T) @ (J_TxP * present_T[:, None])


def aligned_mtl() -> Method:
  return jacobian_weighting(weights)
