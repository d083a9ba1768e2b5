"""Equal weighting (EW): the course note's J = sum_t L_t, the default. No state, no
hyper-parameters; it needs no per-task term, so it costs what plain training costs."""
import jax.numpy as jnp

from mtl_jax.methods.base import Method, Terms, Update, no_state


def combine(terms: Terms, state, key):
  del key
  return Update(jnp.ones(terms.present_T.shape, jnp.float32)), state


def equal_weighting() -> Method:
  return Method(no_state, combine)


EQUAL_WEIGHTING = equal_weighting()


def is_equal_weighting(method: Method) -> bool:
  """Whether `method` is equal weighting: every task's loss weighed by 1 whatever the
  batch, so that the gradient of separate networks splits into independent networks'
  (train.one_network_at_a_time)."""
  return method.combine is combine
