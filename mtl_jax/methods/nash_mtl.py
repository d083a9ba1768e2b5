"""Nash-MTL: Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik & Fetaya (2022),
"Multi-task learning as a bargaining game" (ICML); cf. TorchJD,
torchjd/aggregation/_nash_mtl.py, and LibMTL/weighting/Nash_MTL.py.

The update is d = J^T alpha where alpha > 0 is the Nash bargaining solution
(G alpha)_i = 1 / alpha_i for every task (G = J J^T): each task's directional derivative
g_i . d equals 1/alpha_i. The paper (and TorchJD, LibMTL) approaches it with a sequence of
convex programs in cvxpy; here it is the unique minimiser of the strictly convex,
self-concordant f(alpha) = 1/2 alpha^T G alpha - sum_i log alpha_i (grad f = G alpha -
1/alpha), found by `NEWTON_STEPS` damped Newton steps alpha += delta / (1 + |delta|_H)
(Nesterov's damped Newton: every iterate stays positive, and the convergence is quadratic
once the Newton decrement is below 1/4), started at alpha_i = 1 / sqrt(G_ii) (the
solution for orthogonal gradients). G is normalised by its trace first (alpha then
scales by sqrt(trace), undone after) and `reg_eps` I is added so that f is bounded below
when gradients cancel exactly. Finally, as in the paper's code (max_norm = 1.0) and
TorchJD, the update is rescaled to norm max_norm if it is longer (at the exact solution
|d|^2 = alpha^T G alpha = m, so with max_norm = 1 the update is the unit vector along the
Nash direction; TorchJD's reference [0.0542, 0.7061, 0.7061] is exactly that).

Hyper-parameters: max_norm = 1.0 (0 disables the rescaling); reg_eps = 1e-6.
Absent tasks: their rows and columns of G are the identity's (decoupled), then their
weight is set to 0; none present: zero update.
Exactness: on random 2-12 task Jacobians the residual |G alpha - 1/alpha| / |1/alpha| is
below 1e-4 after NEWTON_STEPS steps (tests check it), against TorchJD's stopping rule
|G alpha - 1/alpha| < 1e-3 (on its Frobenius-normalised G) after at most 20 cvxpy solves.
The paper's update_weights_every (recompute alpha every k steps) is not implemented: alpha
is solved at every step.
"""
import jax
import jax.numpy as jnp

from mtl_jax.methods.base import Method, jacobian_weighting

NEWTON_STEPS = 40


def solve_alpha(G_TxT, steps=NEWTON_STEPS):
  """alpha > 0 with G alpha = 1 / alpha (G positive definite)."""
  def step(_, alpha):
    grad = G_TxT @ alpha - 1.0 / alpha
    H = G_TxT + jnp.diag(1.0 / alpha ** 2)
    delta = -jnp.linalg.solve(H, grad)
    decrement = jnp.sqrt(jnp.maximum(-grad @ delta, 0.0))
    return alpha + delta / (1.0 + decrement)
  return jax.lax.fori_loop(0, steps, step, 1.0 / jnp.sqrt(jnp.diagonal(G_TxT)))


def weights(J_TxP, present_T, max_norm=1.0, reg_eps=1e-6):
  mask = present_T.astype(J_TxP.dtype)
  J = J_TxP * mask[:, None]
  G = J @ J.T
  trace = jnp.maximum(jnp.trace(G), jnp.finfo(G.dtype).tiny)
  Gn = (G / trace + reg_eps * jnp.eye(G.shape[0])) * (mask[:, None] * mask[None, :]) + jnp.diag(1.0 - mask)
  alpha = solve_alpha(Gn) / jnp.sqrt(trace) * mask
  norm = jnp.sqrt(jnp.maximum(alpha @ G @ alpha, 0.0))
  factor = jnp.where((max_norm > 0) & (norm > max_norm), max_norm / jnp.maximum(norm, 1e-30), 1.0)
  return alpha * factor


def aggregate(J_TxP, present_T=None, max_norm=1.0, reg_eps=1e-6):
  present_T = jnp.ones(J_TxP.shape[0], bool) if present_T is None else present_T
  return weights(J_TxP, present_T, max_norm, reg_eps) @ (J_TxP * present_T[:, None])


def nash_mtl(max_norm: float = 1.0, reg_eps: float = 1e-6) -> Method:
  return jacobian_weighting(lambda J, present: weights(J, present, max_norm, reg_eps))
