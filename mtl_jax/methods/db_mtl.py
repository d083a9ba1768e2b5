"""DB-MTL: Lin, Ye, Xu, Shi & Zhang (2023), "Dual-balancing multi-task learning"; as in
LibMTL/weighting/DB_MTL.py.

Loss-scale balancing: each task's gradient is that of log L_t, i.e. g_t / (L_t + 1e-8).
Gradient-magnitude balancing: an exponential moving average of those gradients per task,
m_t <- g + (beta / k_t^beta_sigma) (m_t - g) (k_t the number of steps at which task t was
present, so the averaging weight decays as in LibMTL, with m_t = 0 at first), is rescaled
to the largest norm among the tasks: d = sum_t (max_s |m_s| / (|m_t| + 1e-8)) m_t.

Hyper-parameters (LibMTL's defaults): beta = 0.9, beta_sigma = 0.5.
State: the averages [T, P] (P the number of shared parameters) and the counts k_T.
Absent tasks: their average and count are not updated and they are left out of this
step's sum and of the max; none present: zero update, state kept.
Task-specific heads get the ordinary gradient of sum_t L_t (the interface's rule for
shared-gradient methods), not that of sum_t log L_t as in LibMTL.
Exactness: closed form.

The state's shape needs P, which init(num_tasks) is not given: `db_mtl_sized(P, ...)`
builds the Method for a known P; the registry builder `db_mtl` returns a Method whose
init takes (num_tasks, num_shared_params).
"""
import jax
import jax.numpy as jnp

from mtl_jax.methods.base import LOSSES, SHARED_GRADS, Method, Terms, Update, flat_jacobian, unflatten_like

EPS = 1e-8


def init_state(num_tasks, num_shared_params):
  return {"average_TxP": jnp.zeros((num_tasks, num_shared_params), jnp.float32),
          "count_T": jnp.zeros(num_tasks, jnp.int32)}


def step(state, J_TxP, losses_T, present_T, beta=0.9, beta_sigma=0.5):
  """(the combined direction [P], the per-task scales [T], the new state)."""
  g = J_TxP / (losses_T + EPS)[:, None]
  count = state["count_T"] + present_T.astype(jnp.int32)
  coef = beta / jnp.maximum(count, 1).astype(jnp.float32) ** beta_sigma
  average = g + coef[:, None] * (state["average_TxP"] - g)
  average = jnp.where(present_T[:, None], average, state["average_TxP"])
  norms = jnp.sqrt(jnp.sum(average ** 2, axis=1))
  top = jnp.max(jnp.where(present_T, norms, 0.0))
  scale = jnp.where(present_T, top / (norms + EPS), 0.0)
  new_state = {"average_TxP": average, "count_T": count}
  return jax.lax.stop_gradient(scale @ average), jax.lax.stop_gradient(scale), jax.lax.stop_gradient(new_state)


def _method(init, beta, beta_sigma) -> Method:
  def combine(terms: Terms, state, key):
    del key
    J = flat_jacobian(terms.shared_grads)
    direction, scale, state = step(state, J, terms.losses_T, terms.present_T, beta, beta_sigma)
    return Update(scale, unflatten_like(direction, terms.shared_grads)), state

  return Method(init, combine, frozenset({LOSSES, SHARED_GRADS}))


def db_mtl_sized(num_shared_params: int, beta: float = 0.9, beta_sigma: float = 0.5) -> Method:
  return _method(lambda num_tasks: init_state(num_tasks, num_shared_params), beta, beta_sigma)


def db_mtl(beta: float = 0.9, beta_sigma: float = 0.5) -> Method:
  return _method(init_state, beta, beta_sigma)
