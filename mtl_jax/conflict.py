"""Gradient conflict, the diagnostic behind gradient-combination methods: the mean
pairwise cosine similarity of the task gradients (Yu et al. 2020 call two tasks'
gradients conflicting when their cosine is negative).

Computed inside the step from what the method already has, the [T, P] Jacobian of the
shared parameters or the [T, B, F] gradients of the shared representation, so it
costs one T x T Gramian. Tasks absent from the batch (no valid label) and tasks whose
gradient is exactly zero take no part: their cosine is undefined.
"""
import jax.numpy as jnp

# Below this squared norm a task's gradient counts as zero (a cosine would be noise).
_TINY = 1e-30


def mean_pairwise_cosine(gradients_TxP, present_T) -> jnp.ndarray:
  """Mean over pairs i < j of present tasks of cos(g_i, g_j); NaN with fewer than two."""
  gram_TxT = gradients_TxP @ gradients_TxP.T
  squared_norms_T = jnp.diag(gram_TxT)
  usable_T = present_T & (squared_norms_T > _TINY)
  inverse_norms_T = jnp.where(usable_T, 1.0 / jnp.sqrt(jnp.where(usable_T, squared_norms_T, 1.0)), 0.0)
  cosine_TxT = gram_TxT * inverse_norms_T[:, None] * inverse_norms_T[None, :]
  num_tasks = gram_TxT.shape[0]
  pairs_TxT = usable_T[:, None] & usable_T[None, :] & (jnp.arange(num_tasks)[:, None] < jnp.arange(num_tasks))
  num_pairs = pairs_TxT.sum()
  return jnp.where(num_pairs > 0, jnp.sum(jnp.where(pairs_TxT, cosine_TxT, 0.0)) / jnp.maximum(num_pairs, 1),
                   jnp.nan)
