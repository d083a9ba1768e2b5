"""CAGrad: conflict-averse gradient descent.

Paper: Bo Liu, Xingchao Liu, Xiaojie Jin, Peter Stone and Qiang Liu (2021),
"Conflict-Averse Gradient Descent for Multi-task Learning" (NeurIPS).

What it does: with g_0 the average gradient of the present tasks, it looks for the
direction d within the ball ||d - g_0|| <= c ||g_0|| that maximises the worst task's
improvement min_t g_t . d. Its dual is a problem over the simplex,
    min_w  g_w . g_0 + c ||g_0|| ||g_w||,     g_w = sum_t w_t g_t,
and the direction is d = g_0 + (c ||g_0|| / ||g_w||) g_w. c = 0 is the average gradient;
large c approaches MGDA's min-norm direction. The problem is solved on the Gramian
G = J J^T ([T, T]), never in parameter space.

Scale: d as above, without the original code's final division by 1 + c^2 (its
rescale=1 default, kept by LibMTL, median-research-group/LibMTL,
LibMTL/weighting/CAGrad.py); this is TorchJD's convention (TorchJD/torchjd,
src/torchjd/aggregation/_cagrad.py), whose reference CAGrad(c = 0.5)(J = [[-4, 1, 1], [6, 1, 1]])
= [0.1835, 1.2041, 1.2041] we reproduce; LibMTL's direction is ours / 1.25. g_0 is the
mean, as in the paper, so the step is about 1/T of equal weighting's sum (immaterial
under Adam, the default optimizer).

Hyper-parameters: c = 0.5 (the paper's default for its multi-task experiments).

Absent tasks: left out of g_0's mean and of the simplex (weight 0). No task present:
zero direction.

Solver: pairwise Frank-Wolfe over the present tasks' simplex (as in mgda.py),
CAGRAD_STEPS fixed iterations in a lax.fori_loop, with an exact line search: along an
edge the objective is l*gamma + k*sqrt(A gamma^2 + 2 B gamma + C), whose minimiser has a
closed form. Two tasks: exact after one step. The tests compare it with
scipy.optimize on random Jacobians.
"""
import jax
import jax.numpy as jnp

from mtl_jax.methods.base import SHARED_GRADS, Method, Terms, Update, flat_jacobian, no_state, unflatten_like
from mtl_jax.methods.mgda import masked_gramian, uniform_over_present

CAGRAD_STEPS = 256
_TINY = 1e-30


def _edge_minimiser(linear, k, a, b, c, limit):
  """argmin over gamma in [0, limit] of linear*gamma + k*sqrt(a gamma^2 + 2 b gamma + c)
  (a, c >= 0, k >= 0). With s = a gamma + b the derivative is
  linear + k sqrt(a) s / sqrt(s^2 + D), D = a c - b^2 >= 0."""
  root_a = jnp.sqrt(jnp.maximum(a, 0.0))
  scale = k * root_a
  r = -linear / jnp.where(scale > 0, scale, 1.0)
  r_inside = jnp.clip(r, -1 + 1e-7, 1 - 1e-7)
  d = jnp.maximum(a * c - b * b, 0.0)
  s = r_inside * jnp.sqrt(d / (1 - r_inside ** 2))
  interior = jnp.clip((s - b) / jnp.where(a > 0, a, 1.0), 0.0, limit)
  curved = jnp.where(r >= 1, limit, jnp.where(r <= -1, 0.0, interior))
  straight = jnp.where(linear < 0, limit, 0.0)  # the sqrt term is constant (a = 0) or absent (k = 0)
  return jnp.where(scale > 0, curved, straight)


def dual_weights(gramian_TxT, present_T, c: float, steps: int = CAGRAD_STEPS):
  """(w, g_0 coefficients, k): w on the present simplex minimising w^T G m + k sqrt(w^T G w),
  with m the mean's coefficients and k = c ||g_0||."""
  gramian = gramian_TxT.astype(jnp.float32)
  diagonal_T = jnp.diagonal(gramian)
  mean_T = uniform_over_present(present_T)
  b_T = gramian @ mean_T  # g_t . g_0
  k = c * jnp.sqrt(jnp.maximum(mean_T @ b_T, 0.0))

  def step(_, w_T):
    gw_T = gramian @ w_T
    norm_sq = jnp.maximum(w_T @ gw_T, 0.0)
    gradient_T = b_T + k * gw_T / jnp.sqrt(jnp.maximum(norm_sq, _TINY))
    toward = jnp.argmin(jnp.where(present_T, gradient_T, jnp.inf))
    away = jnp.argmax(jnp.where(w_T > 0, gradient_T, -jnp.inf))
    a = diagonal_T[toward] - 2 * gramian[toward, away] + diagonal_T[away]
    gamma = _edge_minimiser(b_T[toward] - b_T[away], k, a, gw_T[toward] - gw_T[away], norm_sq,
                            w_T[away])
    gamma = jnp.where(toward == away, 0.0, gamma)
    return w_T + gamma * (jax.nn.one_hot(toward, w_T.shape[0], dtype=w_T.dtype)
                          - jax.nn.one_hot(away, w_T.shape[0], dtype=w_T.dtype))

  return jax.lax.fori_loop(0, steps, step, mean_T), mean_T, k


def direction_weights(gramian_TxT, present_T, c: float, steps: int = CAGRAD_STEPS):
  """The coefficients of d = g_0 + (k / ||g_w||) g_w on the task gradients."""
  w_T, mean_T, k = dual_weights(gramian_TxT, present_T, c, steps)
  norm = jnp.sqrt(jnp.maximum(w_T @ gramian_TxT.astype(jnp.float32) @ w_T, 0.0))
  return mean_T + jnp.where(norm > 0, k / jnp.where(norm > 0, norm, 1.0), 0.0) * w_T


def aggregate(jacobian_TxP, present_T=None, c: float = 0.5, steps: int = CAGRAD_STEPS):
  """CAGrad's direction for a raw Jacobian (rows = tasks)."""
  if present_T is None:
    present_T = jnp.ones(jacobian_TxP.shape[0], bool)
  return direction_weights(masked_gramian(jacobian_TxP, present_T), present_T, c, steps) @ jacobian_TxP


def cagrad(c: float = 0.5) -> Method:
  def combine(terms: Terms, state, key):
    del key
    jacobian_TxP = flat_jacobian(terms.shared_grads)
    weights_T = direction_weights(masked_gramian(jacobian_TxP, terms.present_T), terms.present_T, c)
    return Update(weights_T, unflatten_like(weights_T @ jacobian_TxP, terms.shared_grads)), state
  return Method(no_state, combine, frozenset({SHARED_GRADS}))
