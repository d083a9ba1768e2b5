"""Training: a jitted step, epochs fused with `lax.scan`, data resident on the device,
and several seeds trained in one program over stacked parameters (vmapped on
accelerators, in turn on a CPU). On a CPU each step's gradient is summed over
micro-batches that keep its activations in cache."""
import dataclasses
import functools
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.extend.core import ClosedJaxpr, Jaxpr

from mtl_jax.checkpoints import EpochCheckpoints
from mtl_jax.errors import InputError
from mtl_jax.losses import MISSING, masked_logistic_loss, per_task_logistic_loss
from mtl_jax.models import Model

INIT_STREAM, SHUFFLE_STREAM = 0, 1
OPTIMIZERS = {"adam": optax.adam, "sgd": optax.sgd}
# A run has diverged once its training loss is NaN or inf, or this many times its first
# positive step loss (batches without any label have a loss of 0).
DIVERGENCE_FACTOR = 1000.0
# Which epoch's parameters a run keeps: the one with the lowest validation J (per
# seed; the test split is never looked at), or simply the last.
EPOCH_SELECTION = ("best_val", "last")
# On a CPU, a step's largest intermediate array is kept under this size by splitting
# the batch into micro-batches (see choose_micro_batch).
MICRO_BATCH_BYTES = 5 * 2**19


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  learning_rate: float = 3e-3
  batch_size: int = 128
  epochs: int = 10
  optimizer: str = "adam"  # a key of OPTIMIZERS
  select_epoch: str = "last"  # one of EPOCH_SELECTION; best_val needs validation data
  # The tasks whose validation loss selects the epoch, by name; empty: every task. An
  # experiment about one target task selects on that task alone.
  select_tasks: tuple[str, ...] = ()


@dataclasses.dataclass
class TrainResult:
  params: dict  # leaves stacked on a leading seed axis [S, ...], of the selected epochs
  loss_ExS: np.ndarray  # mean training J per epoch and seed
  # Validation J per epoch and seed ([E, S]; per task, [E, S, T], for separate networks).
  val_loss_ExS: Optional[np.ndarray]
  selected_epoch_S: np.ndarray  # the epoch (1-based) whose parameters `params` holds, [S] or [S, T]
  # Per seed, the first optimizer step (1-based) whose training loss was NaN, inf or above
  # DIVERGENCE_FACTOR times the first positive step loss; 0 if none.
  diverged_step_S: np.ndarray
  seconds: float  # training only; compilation is timed apart
  compile_seconds: float
  steps: int  # optimizer steps per seed (fewer than planned if every seed diverged)


def seed_keys(seeds) -> jax.Array:
  """One PRNG key per seed; everything else is derived from it with fold_in."""
  return jax.vmap(jax.random.PRNGKey)(jax.device_put(np.asarray(seeds, np.uint32)))


def _epoch_fn(model: Model, optimizer, num_examples: int, batch_size: int, micro_batch: int):
  num_batches = num_examples // batch_size
  num_micro = -(-batch_size // micro_batch)
  pad = num_micro * micro_batch - batch_size

  def loss_sum(params, x, y):  # J times the micro-batch size: sums add up across micro-batches
    return masked_logistic_loss(model.apply(params, x), y) * y.shape[0]

  # The data arrives as arguments, not closed over: a closed-over array would be
  # baked into the compiled program as a constant (tens of MB of HLO per 6k images).
  def epoch(params, opt_state, key, x_NxD, y_NxT):
    def batch_loss_and_grad(params, idx_B):
      """J and its gradient over one batch, summed over micro-batches of `micro_batch`
      examples, so that each micro-batch's activations stay in the CPU's cache. Rows
      that pad the last micro-batch have every label missing: they add nothing."""
      idx_MxU = jnp.pad(idx_B, (0, pad)).reshape(num_micro, micro_batch)
      real_MxU = (jnp.arange(num_micro * micro_batch) < batch_size).reshape(num_micro, micro_batch)

      def add_micro(total, idx_and_real):
        idx_U, real_U = idx_and_real
        y_UxT = jnp.where(real_U[:, None], y_NxT[idx_U], MISSING).astype(y_NxT.dtype)
        return jax.tree.map(jnp.add, total, jax.value_and_grad(loss_sum)(params, x_NxD[idx_U], y_UxT)), None

      zeros = (jnp.zeros(()), jax.tree.map(jnp.zeros_like, params))
      total, _ = jax.lax.scan(add_micro, zeros, (idx_MxU, real_MxU))
      return jax.tree.map(lambda t: t / batch_size, total)

    def step(carry, idx_B):
      params, opt_state = carry
      loss, grads = batch_loss_and_grad(params, idx_B)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    order = jax.random.permutation(key, num_examples)
    batches_KxB = order[: num_batches * batch_size].reshape(num_batches, batch_size)
    (params, opt_state), losses_K = jax.lax.scan(step, (params, opt_state), batches_KxB)
    return params, opt_state, losses_K

  return epoch, num_batches


def per_example_bytes(model: Model, params, x, y) -> int:
  """Bytes that one more example adds to the largest array of a gradient step: how
  each intermediate grows from a batch of 3 to a batch of 5, at its maximum (not from
  1, where some operations trace to different shapes)."""
  def sizes(batch: int) -> list[int]:
    x_batch, y_batch = np.resize(x, (batch, *x.shape[1:])), np.resize(y, (batch, *y.shape[1:]))
    loss = lambda p, x, y: masked_logistic_loss(model.apply(p, x), y)
    jaxpr = jax.make_jaxpr(jax.grad(loss))(params, x_batch, y_batch).jaxpr
    return [v.aval.size * v.aval.dtype.itemsize for v in _outvars(jaxpr)]
  return max([(five - three) // 2 for three, five in zip(sizes(3), sizes(5))], default=0)


def _outvars(jaxpr):
  """Every intermediate array of a jaxpr, its sub-jaxprs' included (pjit, custom_jvp)."""
  for eqn in jaxpr.eqns:
    yield from eqn.outvars
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else (param,):
        if isinstance(sub, ClosedJaxpr):
          yield from _outvars(sub.jaxpr)
        elif isinstance(sub, Jaxpr):
          yield from _outvars(sub)


def choose_micro_batch(model: Model, params, x, y, batch_size: int) -> int:
  """The whole batch on an accelerator. On a CPU, the fewest micro-batches that keep
  every intermediate array under MICRO_BATCH_BYTES, so that a step's working set
  stays in cache: a [128, 8, 8, 576] patch matrix (18 MB) made a width-64 CNN step
  2x slower than the same step over 16-example micro-batches (benchmarks/run.py)."""
  if jax.default_backend() != "cpu":
    return batch_size
  num_micro = max(1, min(batch_size, -(-batch_size * per_example_bytes(model, params, x, y) // MICRO_BATCH_BYTES)))
  return -(-batch_size // num_micro)


def _val_loss_fn(model: Model, x_val, y_val, chunk: int = 512):
  """Per seed, J over the whole validation split, [S], or its per-task terms, [S, T],
  for separate networks. In chunks that bound memory; the last chunk is padded with
  missing labels, which the masked loss ignores."""
  num_val = len(y_val)
  chunk = min(chunk, num_val)
  pad = -num_val % chunk
  x = np.concatenate([x_val, np.zeros((pad, *x_val.shape[1:]), x_val.dtype)])
  y = np.concatenate([y_val, np.full((pad, y_val.shape[1]), -1, y_val.dtype)])
  x_CxKx = jax.device_put(x.reshape(-1, chunk, *x.shape[1:]))
  y_CxKxT = jax.device_put(y.reshape(-1, chunk, y.shape[1]))

  def val_loss(params, x_CxKx, y_CxKxT):  # arguments, not constants baked into the program
    def add_chunk(total_T, xy):
      x_K, y_KxT = xy
      return total_T + per_task_logistic_loss(model.apply(params, x_K), y_KxT) * chunk, None
    total_T, _ = jax.lax.scan(add_chunk, jnp.zeros(y_CxKxT.shape[-1]), (x_CxKx, y_CxKxT))
    return total_T / num_val if model.per_task_params else total_T.sum() / num_val

  val_loss_S = jax.jit(jax.vmap(val_loss, in_axes=(0, None, None)))
  return lambda params: val_loss_S(params, x_CxKx, y_CxKxT)


@jax.jit
def _keep_best(best_params, best_loss, best_epoch, params, val_loss, epoch):
  """The parameters of the epoch with the lowest validation loss so far, per seed [S]
  or per seed and task [S, T] (as the leading axes of the parameters)."""
  improved = val_loss < best_loss  # a NaN loss never improves
  pick = lambda best, new: jnp.where(
      improved.reshape(improved.shape + (1,) * (new.ndim - improved.ndim)), new, best)
  return (jax.tree.map(pick, best_params, params), jnp.where(improved, val_loss, best_loss),
          jnp.where(improved, epoch, best_epoch))


def _over_seeds(epoch, in_turn: Optional[bool]):
  """Every seed's epoch in one program. By default the seeds are vmapped on a GPU or
  TPU, so they run in parallel, and on a CPU run one after another (lax.map), because
  XLA:CPU runs the batched matmuls that vmap makes 1.2-1.6x slower than the same
  matmuls in turn (benchmarks/run.py measures both)."""
  if not (jax.default_backend() == "cpu" if in_turn is None else in_turn):
    return jax.vmap(epoch, in_axes=(0, 0, 0, None, None))

  def in_turn(params_S, opt_state_S, keys_S, x, y):
    return jax.lax.map(lambda args: epoch(*args, x, y), (params_S, opt_state_S, keys_S))
  return in_turn


def _optimizer(config: TrainConfig, freeze_encoder: bool) -> optax.GradientTransformation:
  optimizer = OPTIMIZERS[config.optimizer](config.learning_rate)
  if not freeze_encoder:
    return optimizer
  label = lambda params: {k: jax.tree.map(lambda _: k == "encoder", v) for k, v in params.items()}
  return optax.multi_transform({False: optimizer, True: optax.set_to_zero()}, label)


def train(model: Model, x_train, y_train, seeds, config: TrainConfig,
          log: Optional[Callable[[int, np.ndarray], None]] = None,
          pretrained_encoder: Optional[dict] = None, freeze_encoder: bool = False,
          validation: Optional[tuple[np.ndarray, np.ndarray]] = None,
          checkpoints: Optional[EpochCheckpoints] = None,
          seeds_in_turn: Optional[bool] = None, micro_batch: Optional[int] = None) -> TrainResult:
  """Trains one copy of `model` per seed, all seeds in one compiled program.

  Seed s initialises from fold_in(key_s, INIT_STREAM) and shuffles epoch e with
  fold_in(fold_in(key_s, SHUFFLE_STREAM), e), so two models trained with the same
  seeds see exactly the same batches in the same order. `pretrained_encoder` (stacked
  per seed, as in another TrainResult's params["encoder"]) replaces the encoder's
  initial weights, for fine-tuning; `freeze_encoder` then trains the heads only.
  `validation` = (x_val, y_val) is scored after every epoch; with
  config.select_epoch == "best_val" each seed keeps its best epoch's parameters.
  `checkpoints` saves the run every few epochs and resumes it from the latest save.
  `seeds_in_turn` runs the seeds one after another instead of vmapped (default: on a CPU).
  `micro_batch` splits each batch's gradient into sums over micro-batches of this many
  examples (default: `choose_micro_batch`); it changes speed and float rounding only.
  """
  if not 1 <= config.batch_size <= len(x_train):
    raise InputError(f"batch size {config.batch_size} must be in [1, {len(x_train)}] "
                     "(the number of training examples)")
  x_train, y_train = jax.device_put(x_train), jax.device_put(y_train)  # resident from here on
  if freeze_encoder and pretrained_encoder is None:
    raise ValueError("freeze_encoder needs a pretrained_encoder")
  if config.select_epoch not in EPOCH_SELECTION:
    raise InputError(f"unknown epoch selection {config.select_epoch!r}; choose from {', '.join(EPOCH_SELECTION)}")
  if config.select_epoch == "best_val" and validation is None:
    raise ValueError("select_epoch='best_val' needs validation data")
  optimizer = _optimizer(config, freeze_encoder)
  keys_S = seed_keys(seeds)
  params = jax.vmap(lambda k: model.init(jax.random.fold_in(k, INIT_STREAM)))(keys_S)
  if micro_batch is None:
    micro_batch = choose_micro_batch(model, jax.tree.map(lambda p: p[0], params), x_train[:5],
                                     y_train[:5], config.batch_size)
  if not 1 <= micro_batch <= config.batch_size:
    raise InputError(f"micro-batch size {micro_batch} must be in [1, {config.batch_size}] (the batch size)")
  epoch, num_batches = _epoch_fn(model, optimizer, len(x_train), config.batch_size, micro_batch)
  if pretrained_encoder is not None:
    params = {**params, "encoder": jax.tree.map(jnp.array, pretrained_encoder)}
  opt_state = jax.vmap(optimizer.init)(params)
  shuffle_keys_S = jax.vmap(lambda k: jax.random.fold_in(k, SHUFFLE_STREAM))(keys_S)
  compile_start = time.perf_counter()
  run_epoch = jax.jit(_over_seeds(epoch, seeds_in_turn), donate_argnums=(0, 1)
                      ).lower(params, opt_state, shuffle_keys_S, x_train, y_train).compile()
  start = time.perf_counter()

  val_loss_fn = validation and _val_loss_fn(model, *validation)
  # Validation picks one epoch per seed, or per seed and task for separate networks.
  selection_shape = (len(keys_S), *([y_train.shape[1]] if model.per_task_params else []))
  state = _initial_state(params, opt_state, selection_shape, config.epochs)
  epochs_done = 0
  restored = checkpoints and checkpoints.restore(state)
  if restored:
    epochs_done, state = restored
    state.update({k: np.array(state[k]) for k in _HOST_KEYS})
  # Made before the loop, so that the loop itself moves no Python numbers to the device.
  epoch_numbers = jnp.arange(1, config.epochs + 1)
  epoch_keys = list(jax.vmap(lambda e: jax.vmap(lambda k: jax.random.fold_in(k, e))(shuffle_keys_S))(
      epoch_numbers - 1))
  epoch_numbers = list(epoch_numbers)
  for e in range(epochs_done, config.epochs):
    # Inside an epoch nothing moves between host and device but its losses, fetched
    # explicitly once at the end (enforced where transfers are real, on accelerators).
    with jax.transfer_guard("disallow"):
      state["params"], state["opt_state"], losses_SxK = run_epoch(
          state["params"], state["opt_state"], epoch_keys[e], x_train, y_train)
      val_loss = val_loss_fn(state["params"]) if val_loss_fn else None
      if val_loss_fn:
        state["best_params"], state["best_val_loss"], state["best_epoch"] = _keep_best(
            state["best_params"], state["best_val_loss"], state["best_epoch"], state["params"],
            val_loss, epoch_numbers[e])
      losses_SxK, val_loss = jax.device_get((losses_SxK, val_loss))
    if val_loss is not None:
      state["val_loss_Ex"][e] = val_loss
    _record_epoch(state, losses_SxK, e)
    epochs_done = e + 1
    if checkpoints:
      checkpoints.save(epochs_done, state)
    if log:
      log(epochs_done, state["loss_ExS"][e])
    if state["diverged_step_S"].all():
      break  # every seed has diverged: nothing is left to train
  if config.select_epoch == "best_val":
    params, selected = state["best_params"], jax.device_get(state["best_epoch"])
  else:
    params, selected = state["params"], np.full(selection_shape, epochs_done)
  return TrainResult(params, state["loss_ExS"][:epochs_done],
                     state["val_loss_Ex"][:epochs_done] if val_loss_fn else None, selected,
                     state["diverged_step_S"], time.perf_counter() - start,
                     start - compile_start, epochs_done * num_batches)


# State kept on the host (numpy), updated in place once per epoch.
_HOST_KEYS = ("loss_ExS", "val_loss_Ex", "first_loss_S", "diverged_step_S")


def _initial_state(params, opt_state, selection_shape: tuple[int, ...], epochs: int) -> dict:
  """Everything a run carries from epoch to epoch, and so what a checkpoint holds."""
  num_seeds = selection_shape[0]
  return {
      "params": params,
      "opt_state": opt_state,
      # A copy, because run_epoch donates (reuses the memory of) the parameters it is given.
      "best_params": jax.tree.map(jnp.copy, params),
      "best_val_loss": jnp.full(selection_shape, jnp.inf),
      "best_epoch": jnp.full(selection_shape, epochs),
      "loss_ExS": np.full((epochs, num_seeds), np.nan, np.float32),
      "val_loss_Ex": np.full((epochs, *selection_shape), np.nan, np.float32),
      "first_loss_S": np.zeros(num_seeds, np.float32),
      "diverged_step_S": np.zeros(num_seeds, np.int64),
  }


def _record_epoch(state: dict, losses_SxK: np.ndarray, epoch: int) -> None:
  """The epoch's mean loss, and the first step of each seed whose loss went bad."""
  state["loss_ExS"][epoch] = losses_SxK.mean(axis=1)
  # The reference is each seed's first step with a positive loss: with scarce labels a
  # batch can hold none, and its J of 0 would make any later step look 1000x worse.
  positive_SxK = losses_SxK > 0
  first_positive_S = losses_SxK[np.arange(len(losses_SxK)), positive_SxK.argmax(axis=1)]
  unset_S = (state["first_loss_S"] == 0) & positive_SxK.any(axis=1)
  state["first_loss_S"][unset_S] = first_positive_S[unset_S]
  # Adam at a huge learning rate can send a stable loss to 1e9 without a NaN; such a
  # run is as lost as one that overflows.
  bad_SxK = ~np.isfinite(losses_SxK) | (losses_SxK > DIVERGENCE_FACTOR * state["first_loss_S"][:, None])
  newly_S = (state["diverged_step_S"] == 0) & bad_SxK.any(axis=1)
  steps_per_epoch = losses_SxK.shape[1]
  state["diverged_step_S"][newly_S] = epoch * steps_per_epoch + bad_SxK.argmax(axis=1)[newly_S] + 1


@functools.lru_cache(maxsize=16)
def _apply_all_seeds(model: Model):
  return jax.jit(jax.vmap(model.apply, in_axes=(0, None)))


def predict(model: Model, params_S, x, chunk: int = 512) -> np.ndarray:
  """Logits [S, N, T] for every seed's parameters, in chunks to bound memory.

  The last chunk is padded to full size so that one compiled program serves all."""
  apply_all = _apply_all_seeds(model)
  parts = []
  for i in range(0, len(x), chunk):
    x_chunk = x[i:i + chunk]
    pad = chunk - len(x_chunk) if len(x) > chunk else 0
    padded = np.concatenate([x_chunk, np.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x_chunk
    parts.append(np.asarray(apply_all(params_S, jnp.asarray(padded)))[:, :len(x_chunk)])
  return np.concatenate(parts, axis=1)
