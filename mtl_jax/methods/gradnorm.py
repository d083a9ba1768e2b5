"""GradNorm: Chen, Badrinarayanan, Lee & Rabinovich (2018), "GradNorm: Gradient
normalization for adaptive loss balancing in deep multitask networks" (ICML); cf.
LibMTL/weighting/GradNorm.py.

Learnable task weights w_t (state, initially 1) scale the losses. At each step, with
g_t the gradient of L_t w.r.t. the shared parameters (the paper uses the last shared
layer; we use all shared parameters, as LibMTL does), G_t = w_t |g_t|, Gbar their mean,
the inverse training rate r_t = (L_t / L_t(0)) / mean_s(L_s / L_s(0)) and the target
Gbar r_t^alpha (held constant), the weights take one plain gradient step of size `lr`
on L_grad = sum_t |G_t - Gbar r_t^alpha| (d L_grad / d w_t = sign(G_t - target_t) |g_t|),
are floored at 1e-3 and renormalised so that they keep their sum (the number of tasks).
The step's update uses the weights before this step's change (the paper's Algorithm 1):
shared_grad = sum_t w_t g_t, with the present tasks' weights renormalised to sum to the
number of present tasks. L_t(0) is the task's loss the first time it is present.

Hyper-parameters: alpha = 1.5 (the paper's most used value); lr = 0.025 (the step size of
the weights' own plain gradient step: our choice; the paper steps the weights with the
network's optimiser).
Absent tasks: weight 0 in the update, left out of Gbar and the mean training rate, their
state weight unchanged and their L_t(0) not set; none present: zero update, state kept.
Task-specific heads get the ordinary gradient of sum_t L_t (the interface's rule for
shared-gradient methods), not the weighted one.
Exactness: closed form (one gradient step per training step).
"""
import jax
import jax.numpy as jnp

from mtl_jax.methods.base import LOSSES, SHARED_GRADS, Method, Terms, Update, flat_jacobian, unflatten_like

MIN_WEIGHT = 1e-3


def init(num_tasks):
  return {"weights_T": jnp.ones(num_tasks, jnp.float32), "initial_losses_T": jnp.zeros(num_tasks, jnp.float32),
          "seen_T": jnp.zeros(num_tasks, bool)}


def step(state, J_TxP, losses_T, present_T, alpha=1.5, lr=0.025):
  """(weights used for this step's update [T], new state)."""
  mask = present_T.astype(jnp.float32)
  n = mask.sum()
  any_present = n > 0
  w = state["weights_T"]
  w_used = w * mask
  w_used = w_used * n / jnp.where(any_present, w_used.sum(), 1.0)
  initial = jnp.where(present_T & ~state["seen_T"], losses_T, state["initial_losses_T"])
  seen = state["seen_T"] | present_T
  norms = jnp.sqrt(jnp.sum(J_TxP ** 2, axis=1))
  g_w = w_used * norms
  safe_n = jnp.maximum(n, 1.0)
  g_mean = jnp.sum(g_w * mask) / safe_n
  rate = jnp.where(present_T, losses_T / jnp.maximum(initial, 1e-12), 0.0)
  rate_mean = jnp.sum(rate) / safe_n
  relative = jnp.where(present_T, rate / jnp.where(rate_mean > 0, rate_mean, 1.0), 1.0)
  target = g_mean * relative ** alpha
  grad_w = jnp.sign(g_w - target) * norms * mask
  new_w = jnp.maximum(w - lr * grad_w, MIN_WEIGHT)
  new_w = jnp.where(present_T, new_w * jnp.sum(w * mask) / jnp.maximum(jnp.sum(new_w * mask), 1e-30), w)
  new_state = {"weights_T": jnp.where(any_present, new_w, w), "initial_losses_T": initial, "seen_T": seen}
  return jax.lax.stop_gradient(w_used), jax.lax.stop_gradient(new_state)


def gradnorm(alpha: float = 1.5, lr: float = 0.025) -> Method:
  def combine(terms: Terms, state, key):
    del key
    J = flat_jacobian(terms.shared_grads)
    w, state = step(state, J, terms.losses_T, terms.present_T, alpha, lr)
    return Update(w, unflatten_like(w @ (J * terms.present_T[:, None]), terms.shared_grads)), state

  return Method(init, combine, frozenset({LOSSES, SHARED_GRADS}))
