"""MGDA and MGDA-UB: the minimum-norm point in the convex hull of the tasks' gradients.

Paper: Jean-Antoine Désidéri (2012), "Multiple-gradient descent algorithm (MGDA) for
multiobjective optimization"; Ozan Sener and Vladlen Koltun (2018), "Multi-Task Learning
as Multi-Objective Optimization" (MGDA-UB, the upper bound on the shared representation).

What it does: with g_t the present tasks' gradients of the shared parameters, it finds
weights w on the simplex minimising ||sum_t w_t g_t||^2 and steps along d = sum_t w_t g_t.
d is either zero (a Pareto-stationary point) or a descent direction for every task:
g_t . d >= ||d||^2 > 0. The problem is solved on the Gramian G = J J^T ([T, T]), never in
parameter space. Two tasks have the closed form w_1 = clip((g_2 - g_1) . g_2 / ||g_1 -
g_2||^2, 0, 1) (Sener & Koltun, Algorithm 1).

Scale: the direction is J^T w with w on the simplex, the convention of Sener & Koltun,
of LibMTL (median-research-group/LibMTL, LibMTL/weighting/MGDA.py, mgda_gn='none') and
of TorchJD (TorchJD/torchjd, src/torchjd/aggregation/_mgda.py), whose reference value
MGDA(J = [[-4, 1, 1], [6, 1, 1]]) = [0, 1, 1] we reproduce. Its norm is at most that of
the mean gradient, so about T times smaller than equal weighting's sum; under Adam (the
default optimizer) a constant scale of the gradient hardly matters.

`mgda_ub` is the same solver on the per-task gradients of the shared representation
([T, B, F] flattened to [T, B*F]); it returns the weights only (task_weights_T = w, on
the simplex as in the paper), so every parameter gets the gradient of sum_t w_t L_t.
Deviation: Sener & Koltun (and LibMTL) give the task-specific heads their own unweighted
gradient; the REPR_GRADS interface weighs the heads by w as well.

Hyper-parameters: none (no gradient normalisation, LibMTL's default mgda_gn='none').

Absent tasks: excluded from the hull (weight 0); the solver starts from the uniform
weights over the present tasks and moves only towards present vertices, so an absent
task's zero gradient is never picked. No task present: zero weights, zero direction.

Solver: pairwise Frank-Wolfe on the simplex (Lacoste-Julien & Jaggi 2015: weight moves
from the support's worst vertex to the best one, with the exact line search, the
two-task closed form along that edge), FRANK_WOLFE_STEPS fixed iterations in a
lax.fori_loop; it converges linearly, unlike plain Frank-Wolfe's O(1/k) (plain FW left
violations of g_t . d >= 0 of 6e-3 after 256 steps on random 6x7 Jacobians, pairwise
2e-4). With two tasks one step is exact. The floor is float32: |d|^2 = w^T G w is
known to ~1e-7 |g|^2, so where the min-norm point is ~0 (0 in the hull), d is known
only to ~3e-4 |g| and g_t . d >= -1e-3 max_t |g_t|^2 is what the tests check.
"""
import jax
import jax.numpy as jnp

from mtl_jax.methods.base import (REPR_GRADS, SHARED_GRADS, Method, Terms, Update, flat_jacobian,
                                  no_state, unflatten_like)

FRANK_WOLFE_STEPS = 256
_TINY = 1e-20


def masked_gramian(jacobian_TxP: jax.Array, present_T: jax.Array) -> jax.Array:
  """J J^T with the rows and columns of absent tasks zero."""
  present = present_T.astype(jacobian_TxP.dtype)
  jacobian_TxP = jacobian_TxP * present[:, None]
  return jacobian_TxP @ jacobian_TxP.T


def uniform_over_present(present_T: jax.Array) -> jax.Array:
  present = present_T.astype(jnp.float32)
  return present / jnp.maximum(present.sum(), 1.0)


def min_norm_weights(gramian_TxT: jax.Array, present_T: jax.Array,
                     steps: int = FRANK_WOLFE_STEPS) -> jax.Array:
  """w on the simplex of the present tasks minimising w^T G w (pairwise Frank-Wolfe,
  exact line search, `steps` iterations); zeros if no task is present."""
  gramian = gramian_TxT.astype(jnp.float32)
  diagonal_T = jnp.diagonal(gramian)

  def step(_, w_T):
    gw_T = gramian @ w_T  # g_t . g_w: the gradient of |g_w|^2 / 2
    toward = jnp.argmin(jnp.where(present_T, gw_T, jnp.inf))  # Frank-Wolfe vertex
    away = jnp.argmax(jnp.where(w_T > 0, gw_T, -jnp.inf))  # worst vertex in the support
    # |g_w + gamma (g_toward - g_away)|^2 is least at gamma = -slope / curvature.
    curvature = diagonal_T[toward] - 2 * gramian[toward, away] + diagonal_T[away]
    slope = gw_T[toward] - gw_T[away]
    gamma = jnp.where(curvature > 0, jnp.clip(-slope / jnp.where(curvature > 0, curvature, 1.0),
                                              0.0, w_T[away]), 0.0)
    return w_T + gamma * (jax.nn.one_hot(toward, w_T.shape[0], dtype=w_T.dtype)
                          - jax.nn.one_hot(away, w_T.shape[0], dtype=w_T.dtype))

  return jax.lax.fori_loop(0, steps, step, uniform_over_present(present_T))


def two_task_weight(g1_P: jax.Array, g2_P: jax.Array) -> jax.Array:
  """Sener & Koltun's closed form: the weight of g_1 in the min-norm point of [g_1, g_2]."""
  difference = g1_P - g2_P
  return jnp.clip((g2_P - g1_P) @ g2_P / jnp.maximum(difference @ difference, _TINY), 0.0, 1.0)


def aggregate(jacobian_TxP: jax.Array, present_T=None, steps: int = FRANK_WOLFE_STEPS) -> jax.Array:
  """MGDA's direction J^T w for a raw Jacobian (rows = tasks)."""
  if present_T is None:
    present_T = jnp.ones(jacobian_TxP.shape[0], bool)
  w_T = min_norm_weights(masked_gramian(jacobian_TxP, present_T), present_T, steps)
  return w_T @ jacobian_TxP


def _combine(terms: Terms, state, key):
  del key
  jacobian_TxP = flat_jacobian(terms.shared_grads)
  w_T = min_norm_weights(masked_gramian(jacobian_TxP, terms.present_T), terms.present_T)
  return Update(w_T, unflatten_like(w_T @ jacobian_TxP, terms.shared_grads)), state


def _combine_ub(terms: Terms, state, key):
  del key
  grads_TxN = terms.repr_grads.reshape(terms.repr_grads.shape[0], -1)
  return Update(min_norm_weights(masked_gramian(grads_TxN, terms.present_T), terms.present_T)), state


def mgda() -> Method:
  return Method(no_state, _combine, frozenset({SHARED_GRADS}))


def mgda_ub() -> Method:
  return Method(no_state, _combine_ub, frozenset({REPR_GRADS}))
