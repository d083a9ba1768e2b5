"""The combination step's interface: how per-task terms become one update.

A method is a pure function with its own state, in the spirit of an optax
GradientTransformation. Training computes only the terms a method `needs`, inside the
compiled step, and applies what it returns:
  - `task_weights_T` is the cotangent of the per-task losses: every parameter the
    method does not set itself gets the gradient of sum_t w_t L_t (equal weighting:
    w = 1, the course note's J);
  - `shared_grad`, when set, replaces the gradient of the shared parameters (gradient
    combination methods); task-specific parameters (heads) then keep their ordinary
    gradient, that of sum_t L_t.
`observe`, if set, sees this batch's losses after the gradient (see Method).
A task with no valid label in the batch is *absent* (`present_T` False): its loss and
gradients are zero because there was nothing to learn from, and a method must leave
it out of the combination rather than treat it as a task whose gradient is zero.
"""
import itertools
import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from flax import struct

# What a method can ask the step for, beyond which tasks are present:
LOSSES = "losses"  # this batch's per-task losses, before the gradient is formed (the weights depend on them)
SHARED_GRADS = "shared_grads"  # per-task gradients of the shared parameters, leaves [T, ...]
REPR_GRADS = "repr_grads"  # per-task gradients of the shared representation, [T, B, F]
NEEDS = (LOSSES, SHARED_GRADS, REPR_GRADS)


@struct.dataclass
class Terms:
  """Per-task quantities of one batch (means over the batch, as in J)."""
  present_T: jax.Array  # bool [T]: the task has at least one valid label in the batch
  epoch_start: jax.Array  # bool []: this is the first step of an epoch (for per-epoch statistics)
  losses_T: Optional[jax.Array] = None  # [T], if the method needs LOSSES or gradients
  shared_grads: Any = None  # the shared parameters' pytree, leaves [T, ...]
  repr_grads: Optional[jax.Array] = None  # [T, B, F]; rows padding a micro-batch are zero


@struct.dataclass
class Update:
  task_weights_T: jax.Array  # [T]
  shared_grad: Any = None  # the shared parameters' pytree, or None: sum_t w_t grad L_t


class Method(NamedTuple):
  # num_tasks -> the method's state (a pytree; () if it has none), or (num_tasks,
  # num_shared_params) -> state for a state sized by the shared parameters. Made per
  # seed, carried in the training state and checkpointed with it.
  init: Callable[[int], Any]
  # (terms, state, key) -> (update, new state); traced into the compiled step.
  combine: Callable[[Terms, Any, jax.Array], tuple[Update, Any]]
  needs: frozenset = frozenset()  # a subset of NEEDS
  # (terms, state) -> new state, or None: called after the gradient is formed, with this
  # batch's per-task losses from the same pass (free), for a method whose state learns
  # from them but whose weights do not depend on them (UW, DWA): no extra forward pass.
  observe: Optional[Callable[[Terms, Any], Any]] = None


def no_state(num_tasks: int) -> tuple:
  del num_tasks
  return ()


def flat_jacobian(shared_grads) -> jax.Array:
  """The per-task gradients of the shared parameters as one [T, P] matrix."""
  return jnp.concatenate([g.reshape(g.shape[0], -1) for g in jax.tree.leaves(shared_grads)], axis=1)


def unflatten_like(vector_P: jax.Array, shared_grads) -> Any:
  """A [P] vector back into the shared parameters' pytree (shared_grads without its task axis)."""
  leaves, treedef = jax.tree.flatten(shared_grads)
  sizes = [math.prod(leaf.shape[1:]) for leaf in leaves]
  parts = jnp.split(vector_P, list(itertools.accumulate(sizes))[:-1])
  return jax.tree.unflatten(treedef, [p.reshape(leaf.shape[1:]) for p, leaf in zip(parts, leaves)])


def jacobian_weighting(weights: Callable[[jax.Array, jax.Array], jax.Array]) -> Method:
  """A stateless method whose shared gradient is sum_t w_t g_t over the present tasks,
  with w = weights(J_TxP, present_T) computed from the per-task Jacobian."""
  def combine(terms: Terms, state, key):
    del key
    J_TxP = flat_jacobian(terms.shared_grads)
    w_T = jax.lax.stop_gradient(weights(J_TxP, terms.present_T))
    return Update(w_T, unflatten_like(w_T @ (J_TxP * terms.present_T[:, None]), terms.shared_grads)), state

  return Method(no_state, combine, frozenset({SHARED_GRADS}))
