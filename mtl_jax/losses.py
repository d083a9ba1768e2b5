"""The seed's multi-task cost: summed per-task logistic losses over valid labels only.

J = (1/m) sum_i sum_j [y_ij != -1] * L(logit_ij, y_ij), with m the batch size and
-1 the seed's missing label "?".
"""
import jax
import jax.numpy as jnp

MISSING = -1


def logistic_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Elementwise -[y log s(z) + (1-y) log(1-s(z))], stable for any finite logit.

  softplus(z) - y*z equals the textbook form but never takes log(0).
  """
  return jax.nn.softplus(logits) - labels * logits


def _task_loss_sum(logits_B: jax.Array, labels_B: jax.Array) -> jax.Array:
  valid_B = labels_B != MISSING
  # Masked labels become 0 before the loss so that no NaN from a garbage label can
  # leak through `where`'s backward pass; the mask then zeroes value and gradient.
  safe_labels_B = jnp.where(valid_B, labels_B, 0).astype(logits_B.dtype)
  losses_B = logistic_loss(logits_B, safe_labels_B)
  return jnp.sum(jnp.where(valid_B, losses_B, 0.0))


def per_task_logistic_loss(logits_BxT: jax.Array, labels_BxT: jax.Array) -> jax.Array:
  """Per-task terms of J, shape [T]: (1/B) sum_i [y_ij valid] L(logit_ij, y_ij)."""
  batch_size = logits_BxT.shape[0]
  sums_T = jax.vmap(_task_loss_sum, in_axes=1)(logits_BxT, labels_BxT)
  return sums_T / batch_size


def masked_logistic_loss(logits_BxT: jax.Array, labels_BxT: jax.Array) -> jax.Array:
  """The seed's J: the sum over tasks of `per_task_logistic_loss`."""
  if logits_BxT.ndim != 2 or logits_BxT.shape != labels_BxT.shape:
    raise ValueError(
        f"logits and labels must both be [B, T]; got {logits_BxT.shape} and {labels_BxT.shape}")
  return jnp.sum(per_task_logistic_loss(logits_BxT, labels_BxT))
