"""One optimizer step's gradient: the per-task terms the MTL method needs, summed over
micro-batches inside the compiled step, combined by the method into one update.

Per-task gradients of the shared parameters are a [T, ...] Jacobian taken by pulling
each task's unit cotangent back through one VJP, over the task axis either vmapped or
in turn (lax.map). On a CPU in turn is far faster: for the width-32 CNN at batch 128,
vmapping the VJP over tasks took 135 ms per step at T = 4 and 1,028 ms at T = 34,
lax.map 19 and 124 ms (benchmarks/run.py, table `combination`).
"""
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from mtl_jax.conflict import mean_pairwise_cosine
from mtl_jax.devices import BATCH_AXIS
from mtl_jax.errors import InputError
from mtl_jax.losses import MISSING, per_task_logistic_loss
from mtl_jax.methods import LOSSES, REPR_GRADS, SHARED_GRADS, Method, Terms, flat_jacobian
from mtl_jax.models import Model


def tasks_in_turn_default() -> bool:
  return jax.default_backend() == "cpu"


def method_misfit(model: Model, needs: frozenset, method: str = "this method",
                  arch: str = "this architecture") -> Optional[str]:
  """Why a method with these `needs` cannot train this model, or None if it can."""
  if REPR_GRADS in needs and model.encode is None:
    return (f"--method={method} takes per-task gradients of the one shared representation, "
            f"which --arch={arch} does not have: use --arch=hps")
  if needs & {SHARED_GRADS, REPR_GRADS} and not model.shared:
    return (f"--method={method} combines per-task gradients of shared parameters; --arch={arch} "
            "shares none (separate networks train with equal weighting)")
  return None


def check_method_fits(model: Model, needs: frozenset, method: str = "this method",
                      arch: str = "this architecture") -> None:
  """InputError (one line for the user) if the method cannot train this model."""
  misfit = method_misfit(model, needs, method, arch)
  if misfit:
    raise InputError(misfit)


# fold_in data of the step key's dropout stream (any constant the method does not use).
DROPOUT_STREAM = 0x0D50


def make_batch_gradient(model: Model, method: Method, batch_size: int, micro_batch: int,
                        tasks_in_turn: Optional[bool] = None, data_parallel: int = 1) -> Callable:
  """batch_gradient(params, method_state, key, epoch_start, x_NxD, y_NxT, idx_B) ->
  (losses_T, grads, method_state, cosine): the batch's per-task losses (their sum is
  J), the gradient to hand to the optimizer, and the mean pairwise cosine of the task
  gradients the method combined (conflict.py; NaN for methods that take none).

  `data_parallel` > 1: called inside a shard_map over the mesh axis BATCH_AXIS of that
  many devices; each takes its share of idx_B and the sums over the batch are summed
  over the axis, so that every device gets the whole batch's losses and gradient."""
  if {SHARED_GRADS, REPR_GRADS} <= method.needs:
    raise ValueError("a method takes per-task gradients of the shared parameters or of the "
                     "representation, not both")
  check_method_fits(model, method.needs)
  in_turn = tasks_in_turn_default() if tasks_in_turn is None else tasks_in_turn
  local_batch = -(-batch_size // data_parallel)  # this device's share of each batch
  micro_batch = min(micro_batch, local_batch)
  num_micro = -(-local_batch // micro_batch)
  pad = data_parallel * num_micro * micro_batch - batch_size

  def over_tasks(f, num_tasks: int):
    """f(unit cotangent of task t) for every task, stacked on a leading task axis."""
    eye_TxT = jnp.eye(num_tasks, dtype=jnp.float32)
    return jax.lax.map(f, eye_TxT) if in_turn else jax.vmap(f)(eye_TxT)

  def forward(params, x, dropout_key):  # logits; stochastic only with dropout
    return model.apply(params, x, dropout_key) if model.dropout else model.apply(params, x)

  def encode(params, x, dropout_key):
    return model.encode(params, x, dropout_key) if model.dropout else model.encode(params, x)

  def loss_sums_T(params, x, y, dropout_key):  # per-task J terms times the micro-batch size: they add up
    return per_task_logistic_loss(forward(params, x, dropout_key), y) * y.shape[0]

  def head_loss_sums_T(params, features, y):  # the same from the shared representation
    return per_task_logistic_loss(model.decode(params, features), y) * y.shape[0]

  def over_micro_batches(fn, x_NxD, y_NxT, idx_B, dropout_key, total=None):
    """fn(x_U, y_U, dropout key) summed over the micro-batches of idx_B (or, with
    total=None, stacked). Rows padding the last micro-batch have every label missing:
    they add nothing to a loss or gradient. Data-parallel, over this device's share of
    the batch, then summed (or stacked) over the batch axis. Each micro-batch's dropout
    key is the step's folded with its first row, the same in every pass of a step."""
    rows = jnp.arange(batch_size + pad)
    idx_MxU = this_devices_part(jnp.pad(idx_B, (0, pad)))
    real_MxU = this_devices_part(rows < batch_size)
    first_row_M = this_devices_part(rows)[:, 0]

    def body(acc, idx_real_first):
      idx_U, real_U, first_row = idx_real_first
      y_UxT = jnp.where(real_U[:, None], y_NxT[idx_U], MISSING).astype(y_NxT.dtype)
      out = fn(x_NxD[idx_U], y_UxT, jax.random.fold_in(dropout_key, first_row))
      return (out, None) if acc is None else (jax.tree.map(jnp.add, acc, out), None)

    parts = (idx_MxU, real_MxU, first_row_M)
    if total is None:
      return over_devices(jax.lax.map(lambda args: body(None, args)[0], parts), stack=True)
    return over_devices(jax.lax.scan(body, total, parts)[0], stack=False)

  def this_devices_part(rows):
    """[padded batch] -> this device's [micro-batches, micro-batch size]."""
    if data_parallel == 1:
      return rows.reshape(num_micro, micro_batch)
    return rows.reshape(data_parallel, num_micro, micro_batch)[jax.lax.axis_index(BATCH_AXIS)]

  def over_devices(tree, stack: bool):
    """Per-device sums summed over the batch axis, or per-micro-batch values [M, ...]
    stacked into [devices * M, ...] in batch order; unchanged on one device."""
    if data_parallel == 1:
      return tree
    if stack:
      return jax.tree.map(lambda t: jax.lax.all_gather(t, BATCH_AXIS, axis=0, tiled=True), tree)
    return jax.lax.psum(tree, BATCH_AXIS)

  def mean(tree):
    return jax.tree.map(lambda t: t / batch_size, tree)

  def weighted_gradient(params, weights_T, x_NxD, y_NxT, idx_B, dropout_key):
    """Per-task losses and the gradient of sum_t w_t L_t, in one pass."""
    def fn(x, y, k):
      losses_T, pull_back = jax.vjp(lambda p: loss_sums_T(p, x, y, k), params)
      return losses_T, pull_back(weights_T)[0]
    zeros = (jnp.zeros(y_NxT.shape[1]), jax.tree.map(jnp.zeros_like, params))
    return mean(over_micro_batches(fn, x_NxD, y_NxT, idx_B, dropout_key, zeros))

  def jacobian_gradient(params, method_state, key, present_T, epoch_start, x_NxD, y_NxT, idx_B,
                        dropout_key):
    """Per-task gradients of the shared parameters for the method to combine; the
    task-specific parameters get the ordinary gradient of sum_t L_t."""
    shared = {k: params[k] for k in model.shared}
    specific = {k: v for k, v in params.items() if k not in model.shared}
    num_tasks = y_NxT.shape[1]

    def fn(x, y, k):
      losses_T, pull_back = jax.vjp(lambda sh, sp: loss_sums_T({**sh, **sp}, x, y, k), shared, specific)
      jacobian = over_tasks(lambda e_T: pull_back(e_T)[0], num_tasks)
      return losses_T, jacobian, pull_back(jnp.ones(num_tasks))[1]

    zeros = (jnp.zeros(num_tasks), jax.tree.map(lambda p: jnp.zeros((num_tasks, *p.shape), p.dtype), shared),
             jax.tree.map(jnp.zeros_like, specific))
    losses_T, jacobian, specific_grad = mean(over_micro_batches(fn, x_NxD, y_NxT, idx_B, dropout_key, zeros))
    update, method_state = method.combine(Terms(present_T, epoch_start, losses_T, shared_grads=jacobian),
                                          method_state, key)
    shared_grad = update.shared_grad
    if shared_grad is None:
      shared_grad = jax.tree.map(lambda j: jnp.tensordot(update.task_weights_T, j, axes=1), jacobian)
    cosine = mean_pairwise_cosine(flat_jacobian(jacobian), present_T)
    return losses_T, {**shared_grad, **specific_grad}, method_state, cosine

  def representation_terms(params, x_NxD, y_NxT, idx_B, dropout_key):
    """Per-task losses and per-task gradients of the shared representation [T, B, F]
    (through the heads only: no backward pass through the encoder)."""
    num_tasks = y_NxT.shape[1]

    def fn(x, y, k):
      features = encode(params, x, k)
      losses_T, pull_back = jax.vjp(lambda f: head_loss_sums_T(params, f, y), features)
      return losses_T, over_tasks(lambda e_T: pull_back(e_T)[0], num_tasks)

    losses_MxT, grads_MxTxUxF = over_micro_batches(fn, x_NxD, y_NxT, idx_B, dropout_key)
    grads_TxBxF = jnp.moveaxis(grads_MxTxUxF, 1, 0).reshape(num_tasks, -1, grads_MxTxUxF.shape[-1])
    return losses_MxT.sum(0) / batch_size, grads_TxBxF / batch_size

  def terms_then_gradient(params, method_state, key, terms, x_NxD, y_NxT, idx_B, dropout_key):
    """Over micro-batches: the terms the method weighs by first, then the weighted
    forward and backward pass (the forward pass runs twice: the weights need every
    micro-batch's terms before any gradient can be formed)."""
    if REPR_GRADS in method.needs:
      losses_T, repr_grads = representation_terms(params, x_NxD, y_NxT, idx_B, dropout_key)
      terms = terms.replace(losses_T=losses_T, repr_grads=repr_grads)
    elif LOSSES in method.needs:
      loss = lambda x, y, k: loss_sums_T(params, x, y, k)
      terms = terms.replace(losses_T=mean(over_micro_batches(loss, x_NxD, y_NxT, idx_B, dropout_key,
                                                             jnp.zeros(y_NxT.shape[1]))))
    update, method_state = method.combine(terms, method_state, key)
    losses_T, grads = weighted_gradient(params, jax.lax.stop_gradient(update.task_weights_T),
                                        x_NxD, y_NxT, idx_B, dropout_key)
    return losses_T, grads, method_state, terms

  def one_pass(params, method_state, key, terms, x_NxD, y_NxT, idx_B, dropout_key):
    """With the batch in one micro-batch (accelerators, small networks): the terms and
    the weighted gradient from a single forward pass, whose VJP is pulled back once per
    task (REPR_GRADS, through the heads only) and once with the method's weights."""
    x, y = x_NxD[idx_B], y_NxT[idx_B]
    dropout_key = jax.random.fold_in(dropout_key, 0)  # as the one micro-batch, first row 0
    if REPR_GRADS in method.needs:
      features, encoder_pull_back = jax.vjp(lambda p: encode(p, x, dropout_key), params)
      losses_T, head_pull_back = jax.vjp(lambda p, f: head_loss_sums_T(p, f, y), params, features)
      repr_grads = over_tasks(lambda e_T: head_pull_back(e_T)[1], y.shape[1])
      terms = terms.replace(losses_T=losses_T / batch_size, repr_grads=repr_grads / batch_size)

      def pull_back(weights_T):
        head_grads, features_cotangent = head_pull_back(weights_T)
        return jax.tree.map(jnp.add, head_grads, encoder_pull_back(features_cotangent)[0])
    else:
      losses_T, loss_pull_back = jax.vjp(lambda p: loss_sums_T(p, x, y, dropout_key), params)
      terms = terms.replace(losses_T=losses_T / batch_size)
      pull_back = lambda weights_T: loss_pull_back(weights_T)[0]
    update, method_state = method.combine(terms, method_state, key)
    grads = mean(pull_back(jax.lax.stop_gradient(update.task_weights_T)))
    return terms.losses_T, grads, method_state, terms

  def batch_gradient(params, method_state, key, epoch_start, x_NxD, y_NxT, idx_B):
    present_T = jnp.any(y_NxT[idx_B] != MISSING, axis=0)
    terms = Terms(present_T, epoch_start)
    # An independent stream of the step's key: the method's own draws (RLW) stay as they were.
    dropout_key = jax.random.fold_in(key, DROPOUT_STREAM)
    if SHARED_GRADS in method.needs:
      losses_T, grads, method_state, cosine = jacobian_gradient(
          params, method_state, key, present_T, epoch_start, x_NxD, y_NxT, idx_B, dropout_key)
    else:
      # One pass needs the whole batch on this device; data-parallel devices have a share.
      fused = num_micro == 1 and data_parallel == 1 and method.needs & {LOSSES, REPR_GRADS}
      losses_T, grads, method_state, terms = (one_pass if fused else terms_then_gradient)(
          params, method_state, key, terms, x_NxD, y_NxT, idx_B, dropout_key)
      cosine = jnp.float32(jnp.nan)
      if terms.repr_grads is not None:
        cosine = mean_pairwise_cosine(terms.repr_grads.reshape(terms.repr_grads.shape[0], -1), present_T)
    if method.observe is not None:  # this batch's losses, from the pass that made the gradient
      method_state = method.observe(Terms(present_T, epoch_start, losses_T), method_state)
    return losses_T, grads, method_state, cosine

  return batch_gradient
