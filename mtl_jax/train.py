"""Training: a jitted step, epochs fused with `lax.scan`, data resident on the device,
and several seeds trained at once by `jax.vmap` over stacked parameters."""
import dataclasses
import functools
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mtl_jax.errors import InputError
from mtl_jax.losses import masked_logistic_loss, per_task_logistic_loss
from mtl_jax.models import Model

INIT_STREAM, SHUFFLE_STREAM = 0, 1
OPTIMIZERS = {"adam": optax.adam, "sgd": optax.sgd}
# Which epoch's parameters a run keeps: the one with the lowest validation J (per
# seed; the test split is never looked at), or simply the last.
EPOCH_SELECTION = ("best_val", "last")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  learning_rate: float = 3e-3
  batch_size: int = 128
  epochs: int = 10
  optimizer: str = "adam"  # a key of OPTIMIZERS
  select_epoch: str = "last"  # one of EPOCH_SELECTION; best_val needs validation data


@dataclasses.dataclass
class TrainResult:
  params: dict  # leaves stacked on a leading seed axis [S, ...], of the selected epochs
  loss_ExS: np.ndarray  # mean training J per epoch and seed
  # Validation J per epoch and seed ([E, S]; per task, [E, S, T], for separate networks).
  val_loss_ExS: Optional[np.ndarray]
  selected_epoch_S: np.ndarray  # the epoch (1-based) whose parameters `params` holds, [S] or [S, T]
  seconds: float  # training only; compilation is timed apart
  compile_seconds: float
  steps: int  # optimizer steps per seed


def seed_keys(seeds) -> jax.Array:
  """One PRNG key per seed; everything else is derived from it with fold_in."""
  return jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds, jnp.uint32))


class TrainingDiverged(InputError):
  """Non-finite loss or predictions: usually a learning rate that is too high."""


def _epoch_fn(model: Model, optimizer, num_examples: int, batch_size: int):
  num_batches = num_examples // batch_size

  def loss_fn(params, x, y):
    return masked_logistic_loss(model.apply(params, x), y)

  # The data arrives as arguments, not closed over: a closed-over array would be
  # baked into the compiled program as a constant (tens of MB of HLO per 6k images).
  def epoch(params, opt_state, key, x_NxD, y_NxT):
    def step(carry, idx_B):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(loss_fn)(params, x_NxD[idx_B], y_NxT[idx_B])
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    order = jax.random.permutation(key, num_examples)
    batches_KxB = order[: num_batches * batch_size].reshape(num_batches, batch_size)
    (params, opt_state), losses_K = jax.lax.scan(step, (params, opt_state), batches_KxB)
    return params, opt_state, losses_K.mean()

  return epoch, num_batches


def _val_loss_fn(model: Model, x_val, y_val, chunk: int = 512):
  """Per seed, J over the whole validation split, [S], or its per-task terms, [S, T],
  for separate networks. In chunks that bound memory; the last chunk is padded with
  missing labels, which the masked loss ignores."""
  num_val = len(y_val)
  chunk = min(chunk, num_val)
  pad = -num_val % chunk
  x = np.concatenate([x_val, np.zeros((pad, *x_val.shape[1:]), x_val.dtype)])
  y = np.concatenate([y_val, np.full((pad, y_val.shape[1]), -1, y_val.dtype)])
  x_CxKx = jnp.asarray(x.reshape(-1, chunk, *x.shape[1:]))
  y_CxKxT = jnp.asarray(y.reshape(-1, chunk, y.shape[1]))

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


def _optimizer(config: TrainConfig, freeze_encoder: bool) -> optax.GradientTransformation:
  optimizer = OPTIMIZERS[config.optimizer](config.learning_rate)
  if not freeze_encoder:
    return optimizer
  label = lambda params: {k: jax.tree.map(lambda _: k == "encoder", v) for k, v in params.items()}
  return optax.multi_transform({False: optimizer, True: optax.set_to_zero()}, label)


def train(model: Model, x_train, y_train, seeds, config: TrainConfig,
          log: Optional[Callable[[int, np.ndarray], None]] = None,
          pretrained_encoder: Optional[dict] = None, freeze_encoder: bool = False,
          validation: Optional[tuple[np.ndarray, np.ndarray]] = None) -> TrainResult:
  """Trains one copy of `model` per seed, all seeds in one compiled program.

  Seed s initialises from fold_in(key_s, INIT_STREAM) and shuffles epoch e with
  fold_in(fold_in(key_s, SHUFFLE_STREAM), e), so two models trained with the same
  seeds see exactly the same batches in the same order. `pretrained_encoder` (stacked
  per seed, as in another TrainResult's params["encoder"]) replaces the encoder's
  initial weights, for fine-tuning; `freeze_encoder` then trains the heads only.
  `validation` = (x_val, y_val) is scored after every epoch; with
  config.select_epoch == "best_val" each seed keeps its best epoch's parameters.
  """
  if not 1 <= config.batch_size <= len(x_train):
    raise InputError(f"batch size {config.batch_size} must be in [1, {len(x_train)}] "
                     "(the number of training examples)")
  x_train, y_train = jnp.asarray(x_train), jnp.asarray(y_train)
  if freeze_encoder and pretrained_encoder is None:
    raise ValueError("freeze_encoder needs a pretrained_encoder")
  if config.select_epoch not in EPOCH_SELECTION:
    raise InputError(f"unknown epoch selection {config.select_epoch!r}; choose from {', '.join(EPOCH_SELECTION)}")
  if config.select_epoch == "best_val" and validation is None:
    raise ValueError("select_epoch='best_val' needs validation data")
  optimizer = _optimizer(config, freeze_encoder)
  epoch, num_batches = _epoch_fn(model, optimizer, len(x_train), config.batch_size)

  keys_S = seed_keys(seeds)
  params = jax.vmap(lambda k: model.init(jax.random.fold_in(k, INIT_STREAM)))(keys_S)
  if pretrained_encoder is not None:
    params = {**params, "encoder": jax.tree.map(jnp.array, pretrained_encoder)}
  opt_state = jax.vmap(optimizer.init)(params)
  shuffle_keys_S = jax.vmap(lambda k: jax.random.fold_in(k, SHUFFLE_STREAM))(keys_S)
  compile_start = time.perf_counter()
  run_epoch = jax.jit(jax.vmap(epoch, in_axes=(0, 0, 0, None, None)), donate_argnums=(0, 1)
                      ).lower(params, opt_state, shuffle_keys_S, x_train, y_train).compile()
  start = time.perf_counter()

  val_loss_fn = validation and _val_loss_fn(model, *validation)
  selecting = config.select_epoch == "best_val"
  # One epoch per seed, or per seed and task for separate networks.
  selection_shape = (len(keys_S), *([y_train.shape[1]] if model.per_task_params else []))
  # A copy, because run_epoch donates (reuses the memory of) the parameters it is given.
  best = (jax.tree.map(jnp.copy, params), jnp.full(selection_shape, jnp.inf),
          jnp.full(selection_shape, config.epochs)) if selecting else None
  losses, val_losses = [], []
  for e in range(config.epochs):
    epoch_keys_S = jax.vmap(lambda k: jax.random.fold_in(k, e))(shuffle_keys_S)
    params, opt_state, loss_S = run_epoch(params, opt_state, epoch_keys_S, x_train, y_train)
    if val_loss_fn:
      val_loss_S = val_loss_fn(params)
      if selecting:
        best = _keep_best(*best, params, val_loss_S, e + 1)
      val_losses.append(np.asarray(val_loss_S))
    losses.append(np.asarray(loss_S))  # the host syncs once per epoch
    if not np.all(np.isfinite(losses[-1])):
      raise TrainingDiverged(f"training loss became non-finite in epoch {e + 1} "
                             f"(learning rate {config.learning_rate}); try a lower learning rate")
    if log:
      log(e + 1, losses[-1])
  if selecting:
    params, selected_S = best[0], np.asarray(best[2])
  else:
    selected_S = np.full(selection_shape, config.epochs)
  return TrainResult(params, np.stack(losses), np.stack(val_losses) if val_losses else None,
                     selected_S, time.perf_counter() - start, start - compile_start,
                     config.epochs * num_batches)


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
  logits_SxNxT = np.concatenate(parts, axis=1)
  if not np.all(np.isfinite(logits_SxNxT)):
    raise TrainingDiverged("the trained model predicts non-finite logits; "
                           "try a lower learning rate")
  return logits_SxNxT
