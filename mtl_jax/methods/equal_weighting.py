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
