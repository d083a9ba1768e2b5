"""Training: a jitted step, epochs fused with `lax.scan`, data resident on the device,
and several seeds trained in one program over stacked parameters (vmapped on
accelerators, in turn on a CPU). Each step's gradient comes from the MTL method's
combination step (step.py), on a CPU summed over micro-batches that keep its
activations in cache (micro_batch.py)."""
import dataclasses
import functools
import math
import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import PartitionSpec as P

from mtl_jax import devices, methods
from mtl_jax.checkpoints import EpochCheckpoints
from mtl_jax.devices import NETS_AXIS, SEEDS_AXIS, Placement
from mtl_jax.errors import InputError
from mtl_jax.losses import per_task_logistic_loss
from mtl_jax.micro_batch import choose_micro_batch
from mtl_jax.models import Model
from mtl_jax.step import make_batch_gradient

INIT_STREAM, SHUFFLE_STREAM, METHOD_STREAM = 0, 1, 2
OPTIMIZERS = {"adam": optax.adam, "sgd": optax.sgd}
# A run has diverged once its training loss is NaN or inf, or this many times its first
# positive step loss (batches without any label have a loss of 0).
DIVERGENCE_FACTOR = 1000.0
# Which epoch's parameters a run keeps: the one with the lowest validation J (per
# seed; the test split is never looked at), or simply the last.
EPOCH_SELECTION = ("best_val", "last")
# The selected epoch of a run whose validation loss never improved on its initial
# value (NaN every epoch, say): no epoch was selected, and the record says so.
NO_EPOCH = 0


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
  # Stop once no seed (nor, for separate networks, task) has improved its validation
  # loss for this many epochs; 0: train every epoch.
  patience: int = 0
  method: str = methods.DEFAULT_METHOD  # a key of methods.METHODS: the combination step
  # The method's hyper-parameters that differ from its defaults, (name, value) pairs.
  method_options: tuple[tuple[str, float], ...] = ()
  # > 0: train this many optimizer steps instead of `epochs`, rounded up to whole epochs
  # (planned_epochs): how read data of any size gets enough steps (cli.train_config).
  steps: int = 0
  # Decoupled weight decay (AdamW, Loshchilov & Hutter 2019; for sgd the same
  # p -= lr * (g + weight_decay * p)) on every parameter; 0: plain Adam / SGD.
  weight_decay: float = 0.0


@dataclasses.dataclass
class TrainResult:
  params: dict  # leaves stacked on a leading seed axis [S, ...], of the selected epochs
  loss_ExS: np.ndarray  # mean training J per epoch and seed
  # The validation loss that selects epochs, per epoch and seed ([E, S]; per task,
  # [E, S, T], for separate networks): J over the selected tasks.
  val_loss_ExS: Optional[np.ndarray]
  # The epoch (1-based) whose parameters `params` holds, [S] or [S, T]; NO_EPOCH where
  # the validation loss never improved on the initial parameters'.
  selected_epoch_S: np.ndarray
  # Per seed, the first optimizer step (1-based) whose training loss was NaN, inf or above
  # DIVERGENCE_FACTOR times the first positive step loss; 0 if none.
  diverged_step_S: np.ndarray
  seconds: float  # training only; compilation is timed apart
  compile_seconds: float
  steps: int  # optimizer steps per seed (fewer than planned if stopped early)
  stopped_early: bool = False  # by patience, or because every seed diverged
  method_state: Any = None  # the combination step's final state, stacked over seeds
  # Diagnostics per epoch and seed: the mean training loss of each task (its term of J),
  # [E, S, T], and the mean pairwise cosine of the task gradients the method combined
  # (conflict.py), [E, S], NaN for methods that take no per-task gradients.
  task_loss_ExSxT: Optional[np.ndarray] = None
  cosine_ExS: Optional[np.ndarray] = None


@struct.dataclass
class TrainState:
  """What a run carries on the device from epoch to epoch, stacked over seeds."""
  params: Any
  opt_state: Any
  method_state: Any  # the combination step's own state (learned weights, averages)
  best_params: Any  # of the epoch with the lowest validation loss so far
  best_val_loss: jax.Array  # [S] or [S, T]
  best_epoch: jax.Array  # [S] or [S, T]; NO_EPOCH until one improves


@dataclasses.dataclass
class History:
  """What a run records on the host once per epoch."""
  loss_ExS: np.ndarray
  task_loss_ExSxT: np.ndarray  # each task's term of loss_ExS
  cosine_ExS: np.ndarray  # mean pairwise cosine of the task gradients, over the epoch's steps
  val_loss_Ex: np.ndarray  # [E, *selection shape]
  first_loss_S: np.ndarray  # each seed's first positive step loss, the divergence reference
  diverged_step_S: np.ndarray


def seed_keys(seeds) -> jax.Array:
  """One PRNG key per seed; everything else is derived from it with fold_in."""
  return jax.vmap(jax.random.PRNGKey)(jax.device_put(np.asarray(seeds, np.uint32)))


def _epoch_fn(model: Model, method: methods.Method, optimizer, num_examples: int,
              batch_size: int, micro_batch: int, data_parallel: int = 1):
  num_batches = num_examples // batch_size
  batch_gradient = make_batch_gradient(model, method, batch_size, micro_batch,
                                       data_parallel=data_parallel)

  # The data arrives as arguments, not closed over: a closed-over array would be
  # baked into the compiled program as a constant (tens of MB of HLO per 6k images).
  def epoch(params, opt_state, method_state, shuffle_key, method_key, x_NxD, y_NxT):
    def step(carry, idx_and_step):
      params, opt_state, method_state = carry
      idx_B, step_index = idx_and_step
      losses_T, grads, method_state, cosine = batch_gradient(
          params, method_state, jax.random.fold_in(method_key, step_index), step_index == 0,
          x_NxD, y_NxT, idx_B)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state, method_state), (losses_T, cosine)

    order = jax.random.permutation(shuffle_key, num_examples)
    batches_KxB = order[: num_batches * batch_size].reshape(num_batches, batch_size)
    (params, opt_state, method_state), (losses_KxT, cosine_K) = jax.lax.scan(
        step, (params, opt_state, method_state), (batches_KxB, jnp.arange(num_batches)))
    return params, opt_state, method_state, losses_KxT, cosine_K

  return epoch, num_batches


def one_network_at_a_time(model: Model, method: methods.Method, place: Optional[Placement]) -> bool:
  """Whether `train` runs each of the T separate networks through its whole epoch before
  the next one starts: where the model allows it (Model.network), on one device, and
  with equal weighting, whose gradient splits into the networks' own (any other method
  weighs each task's loss by something that depends on every task's)."""
  return model.network is not None and place is None and methods.is_equal_weighting(method)


def _epoch_network_at_a_time(model: Model, method: methods.Method, optimizer, num_examples: int,
                             batch_size: int, micro_batch: int):
  """The epoch of T separate networks as a `lax.map` over the networks of each one's
  epoch (`_epoch_fn` of Model.network(j) on task j's labels), instead of one epoch whose
  every step runs all T. Same batches, keys, losses and updates (network j's gradient is
  its own task loss's, its Adam moments its own); different float rounding at most.
  Why: on a CPU it is as fast as a loop of single-network programs, which interleaving
  the networks at every step was not (0.84-0.92x for MLPs, docs/speed.md): one
  network's parameters and moments stay in cache through its steps, and no step slices
  them out of the stack and back."""
  def epoch(params, opt_state, method_state, shuffle_key, method_key, x_NxD, y_NxT):
    num_nets = y_NxT.shape[1]
    # Adam's step count is one scalar for all the networks; each network's map step gets a copy.
    per_net = functools.partial(optax.tree_utils.tree_map_params, optimizer, lambda moment: moment)
    opt_state_T = per_net(opt_state, transform_non_params=lambda v: jnp.broadcast_to(v, (num_nets, *v.shape)))

    def train_network(args):
      j, params_j, opt_state_j = args
      network_epoch, _ = _epoch_fn(model.network(j), method, optimizer, num_examples, batch_size, micro_batch)
      params_j, opt_state_j, _, losses_Kx1, _ = network_epoch(
          params_j, opt_state_j, method_state, shuffle_key, method_key, x_NxD,
          jax.lax.dynamic_slice_in_dim(y_NxT, j, 1, axis=1))
      return params_j, opt_state_j, losses_Kx1[:, 0]

    params, opt_state_T, losses_TxK = jax.lax.map(train_network, (jnp.arange(num_nets), params, opt_state_T))
    opt_state = per_net(opt_state_T, transform_non_params=lambda v_T: v_T[0])
    # No per-task gradients are combined, so there is no cosine between them (NaN).
    return params, opt_state, method_state, losses_TxK.T, jnp.full(losses_TxK.shape[1], jnp.nan)

  return epoch, num_examples // batch_size


def _val_loss_fn(model: Model, x_val, y_val, select_T: np.ndarray, chunk: int = 512,
                 place: Optional[Placement] = None):
  """Per seed, the validation loss that selects epochs: the per-task terms of J, [S, T],
  for separate networks, else their sum over the selected tasks, [S]. In chunks that
  bound memory; the last chunk is padded with missing labels, which the loss ignores."""
  num_val = len(y_val)
  chunk = min(chunk, num_val)
  pad = -num_val % chunk
  x = np.concatenate([x_val, np.zeros((pad, *x_val.shape[1:]), x_val.dtype)])
  y = np.concatenate([y_val, np.full((pad, y_val.shape[1]), -1, y_val.dtype)])
  x_CxKx, y_CxKxT, select_T = _replicated(place, (
      x.reshape(-1, chunk, *x.shape[1:]), y.reshape(-1, chunk, y.shape[1]), np.asarray(select_T, np.float32)))

  def val_loss(params, x_CxKx, y_CxKxT, select_T):  # arguments, not constants baked into the program
    def add_chunk(total_T, xy):
      x_K, y_KxT = xy
      return total_T + per_task_logistic_loss(model.apply(params, x_K), y_KxT) * chunk, None
    total_T, _ = jax.lax.scan(add_chunk, jnp.zeros(y_CxKxT.shape[-1]), (x_CxKx, y_CxKxT))
    if model.per_task_params:
      return total_T / num_val
    # `where`, not a product: NaN * 0 is NaN, and a task that does not select would
    # then stop every epoch from being selected.
    return jnp.where(select_T > 0, total_T, 0.0).sum() / num_val

  val_loss_S = jax.jit(jax.vmap(val_loss, in_axes=(0, None, None, None)))
  return lambda params: val_loss_S(params, x_CxKx, y_CxKxT, select_T)


@jax.jit
def _keep_best(state: TrainState, val_loss, epoch) -> TrainState:
  """The parameters of the epoch with the lowest validation loss so far, per seed [S]
  or per seed and task [S, T] (as the leading axes of the parameters)."""
  improved = val_loss < state.best_val_loss  # a NaN loss never improves
  pick = lambda best, new: jnp.where(
      improved.reshape(improved.shape + (1,) * (new.ndim - improved.ndim)), new, best)
  return state.replace(best_params=jax.tree.map(pick, state.best_params, state.params),
                       best_val_loss=jnp.where(improved, val_loss, state.best_val_loss),
                       best_epoch=jnp.where(improved, epoch, state.best_epoch))


def _over_seeds(epoch, in_turn: Optional[bool]):
  """Every seed's epoch in one program. By default the seeds are vmapped on a GPU or
  TPU, so they run in parallel, and on a CPU run one after another (lax.map), because
  XLA:CPU runs the batched matmuls that vmap makes 1.2-1.6x slower than the same
  matmuls in turn (benchmarks/run.py measures both)."""
  if not (jax.default_backend() == "cpu" if in_turn is None else in_turn):
    return jax.vmap(epoch, in_axes=(0, 0, 0, 0, 0, None, None))

  def in_turn(params_S, opt_state_S, method_state_S, shuffle_keys_S, method_keys_S, x, y):
    return jax.lax.map(lambda args: epoch(*args, x, y),
                       (params_S, opt_state_S, method_state_S, shuffle_keys_S, method_keys_S))
  return in_turn


def planned_epochs(config: TrainConfig, num_examples: int) -> int:
  """config.epochs, or with config.steps the fewest whole epochs holding that many steps."""
  if not config.steps:
    return config.epochs
  return -(-config.steps // max(num_examples // config.batch_size, 1))


def make_optimizer(name: str, learning_rate: float, weight_decay: float = 0.0) -> optax.GradientTransformation:
  """OPTIMIZERS[name], with decoupled weight decay added before the learning rate
  scales the update (AdamW's order) when weight_decay > 0."""
  if not weight_decay:
    return OPTIMIZERS[name](learning_rate)
  if name == "adam":
    return optax.adamw(learning_rate, weight_decay=weight_decay)
  return optax.chain(optax.add_decayed_weights(weight_decay), OPTIMIZERS[name](learning_rate))


def _replicated(place: Optional[Placement], tree):
  """On the one device, or a whole copy on every device of the mesh."""
  return jax.device_put(tree) if place is None else place.put(tree, P())


@dataclasses.dataclass(frozen=True)
class _Specs:
  """Where each array of the training state lies on the mesh: every leaf is stacked
  over seeds; separate networks' parameters (and their optimizer moments), their
  labels and per-task values over nets too."""
  params: Any
  opt_state: Any
  per_seed: P  # method state, keys, per-seed values
  per_task: P  # [S, T] selection values; [S, ...] when nets are not sharded
  y: P

  def state(self) -> TrainState:
    return TrainState(self.params, self.opt_state, self.per_seed, self.params, self.per_task, self.per_task)


def _specs(optimizer, opt_state, by_net: bool) -> _Specs:
  if not by_net:
    return _Specs(P(SEEDS_AXIS), P(SEEDS_AXIS), P(SEEDS_AXIS), P(SEEDS_AXIS), P())
  net_spec = P(SEEDS_AXIS, NETS_AXIS)
  opt_specs = optax.tree_utils.tree_map_params(optimizer, lambda _: net_spec, opt_state,
                                               transform_non_params=lambda _: P(SEEDS_AXIS))
  return _Specs(net_spec, opt_specs, P(SEEDS_AXIS), net_spec, P(None, NETS_AXIS))


def _place_state(place: Placement, specs: _Specs, state: TrainState) -> TrainState:
  return _placed(place, state, specs.state())


def _sharded_epoch(over_seeds, place: Placement, specs: _Specs):
  """The epoch of every seed as one program over the mesh: each device runs the
  unsharded epoch on its own seeds (and nets) and its share of every batch; the step's
  only collective is the psum over the batch axis (step.py)."""
  seeds = specs.per_seed
  losses_spec = P(SEEDS_AXIS, None, NETS_AXIS) if specs.y != P() else seeds
  # check_vma=False: the per-device sums are made invariant over the batch axis by the
  # step's psum, which the scan carries cannot declare.
  return jax.shard_map(
      over_seeds, mesh=place.mesh, check_vma=False,
      in_specs=(specs.params, specs.opt_state, seeds, seeds, seeds, P(), specs.y),
      out_specs=(specs.params, specs.opt_state, seeds, losses_spec, seeds))


def _on_mesh(place: Optional[Placement], tree, spec: P):
  """`tree`'s leaves placed as `spec` says, or left where they are on one device."""
  return tree if place is None else place.put(tree, spec)


def _placed(place: Placement, tree, specs):
  """`tree` on the mesh, each leaf as its spec in `specs` (a tree of PartitionSpecs)."""
  return jax.tree.map(lambda spec, sub: place.put(sub, spec), specs, tree, is_leaf=lambda x: isinstance(x, P))


# The most parameter values (over all seeds) initialised by a program compiled at XLA's
# optimisation level 0. Each run compiles its initialisation and runs it once: at the
# default level compiling took 1.4-2.6 s for the package's small networks, at level 0
# half that, while running took about 6x longer (19 against 5 ms for a width-32 CNN;
# 2.6 against 0.4 s at 16M values). Below this size the saving wins. The values agree
# with the default level's to float32 rounding (1 ulp), not bit for bit.
QUICK_INIT_MAX_VALUES = 1_000_000


def initial_params(model: Model, seeds: Sequence[int]):
  """The parameters `train` starts from for these seeds (before any pretrained encoder
  replaces the shared ones), stacked over the seeds."""
  return _initialise(model, seed_keys(seeds))


def _initialise(model: Model, keys_S):
  """Every seed's parameters. Compiled: op by op, initialising a small CNN took seconds
  of dispatch (2.6 s against 4.9 s for a joint CNN, 4.4 s against 6.5 s for four
  separate ones)."""
  lowered = jax.jit(jax.vmap(lambda k: model.init(jax.random.fold_in(k, INIT_STREAM)))).lower(keys_S)
  size = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(lowered.out_info))
  quick = jax.default_backend() == "cpu" and size <= QUICK_INIT_MAX_VALUES
  return lowered.compile({"xla_backend_optimization_level": 0} if quick else None)(keys_S)


def _initial_values(model: Model, method: methods.Method, optimizer, keys_S, x_train, y_train,
                    batch_size: int, micro_batch: Optional[int], pretrained_shared: Optional[dict]):
  """(parameters, optimizer state, method state) of every seed, and the micro-batch."""
  params = _initialise(model, keys_S)
  if micro_batch is None:
    one_seed = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape[1:], p.dtype), params)
    micro_batch = choose_micro_batch(model, one_seed, x_train, y_train, batch_size)
  if not 1 <= micro_batch <= batch_size:
    raise InputError(f"micro-batch size {micro_batch} must be in [1, {batch_size}] (the batch size)")
  if pretrained_shared is not None:
    params = {**params, **jax.tree.map(jnp.array, pretrained_shared)}
  opt_state = jax.jit(jax.vmap(optimizer.init))(params)
  num_tasks = y_train.shape[1]
  shared_size = sum(math.prod(leaf.shape[1:]) for k in model.shared for leaf in jax.tree.leaves(params[k]))
  method_state = jax.vmap(lambda _: methods.init_state(method, num_tasks, shared_size))(keys_S)
  return params, opt_state, method_state, micro_batch


@dataclasses.dataclass(frozen=True)
class EpochProgram:
  run_epoch: jax.stages.Compiled  # (params, opt_state, method_state, shuffle keys, method keys, x, y)
  place: Optional[Placement]  # None on one device
  specs: Optional[_Specs]
  placed: tuple  # params, opt_state, method_state, x, y where the program takes them
  num_batches: int
  compile_seconds: float


def _epoch_program(model: Model, method: methods.Method, optimizer, batch_size: int, micro_batch: int,
                   seeds_in_turn: Optional[bool], keys_S, params, opt_state, method_state,
                   x_train, y_train) -> EpochProgram:
  """One epoch of every seed, compiled for the chosen devices (devices.placement)."""
  num_tasks = y_train.shape[1]
  # Separate networks spread over devices by network too, unless the method keeps a
  # state per task, which would then have to be split as well.
  by_net = model.per_task_params and not jax.tree.leaves(method_state)
  place = devices.placement(len(keys_S), num_tasks if by_net else 1)
  specs = place and _specs(optimizer, opt_state, by_net)
  if one_network_at_a_time(model, method, place):
    epoch, num_batches = _epoch_network_at_a_time(model, method, optimizer, len(x_train), batch_size,
                                                  micro_batch)
  else:
    epoch, num_batches = _epoch_fn(model, method, optimizer, len(x_train), batch_size, micro_batch,
                                   place.layout.batch if place else 1)
  over_seeds = _over_seeds(epoch, seeds_in_turn)
  if place:
    over_seeds = _sharded_epoch(over_seeds, place, specs)
    params, opt_state = place.put(params, specs.params), _placed(place, opt_state, specs.opt_state)
    method_state = place.put(method_state, specs.per_seed)
    x_train, y_train = place.put(x_train, P()), place.put(y_train, specs.y)
  keys = _on_mesh(place, (keys_S, keys_S), P(SEEDS_AXIS))  # stand-ins for the epochs' keys
  start = time.perf_counter()
  run_epoch = jax.jit(over_seeds, donate_argnums=(0, 1, 2)).lower(
      params, opt_state, method_state, *keys, x_train, y_train).compile()
  return EpochProgram(run_epoch, place, specs, (params, opt_state, method_state, x_train, y_train),
                      num_batches, time.perf_counter() - start)


def epoch_program(model: Model, x_train, y_train, seeds, config: TrainConfig,
                  seeds_in_turn: Optional[bool] = None) -> EpochProgram:
  """The compiled epoch that `train` runs for these arguments, on the devices it would
  use: to read (tests check which collectives it holds) or to time."""
  method = methods.build_method(config.method, config.method_options)
  optimizer, keys_S = _optimizer(config, model, False), seed_keys(seeds)
  x_train, y_train = jax.device_put(x_train), jax.device_put(y_train)
  params, opt_state, method_state, micro_batch = _initial_values(
      model, method, optimizer, keys_S, x_train, y_train, config.batch_size, None, None)
  return _epoch_program(model, method, optimizer, config.batch_size, micro_batch, seeds_in_turn,
                        keys_S, params, opt_state, method_state, x_train, y_train)


def _optimizer(config: TrainConfig, model: Model, freeze_shared: bool) -> optax.GradientTransformation:
  optimizer = make_optimizer(config.optimizer, config.learning_rate, config.weight_decay)
  if not freeze_shared:
    return optimizer
  label = lambda params: {k: jax.tree.map(lambda _: k in model.shared, v) for k, v in params.items()}
  return optax.multi_transform({False: optimizer, True: optax.set_to_zero()}, label)


def selection_mask(task_names, select_tasks) -> np.ndarray:
  """[T] 1.0 for the tasks whose validation loss selects the epoch."""
  unknown = [t for t in select_tasks if t not in task_names]
  if unknown:
    raise InputError(f"epoch selection on task {unknown[0]!r}, which is not one of the tasks "
                     f"{', '.join(task_names)}")
  return np.array([not select_tasks or t in select_tasks for t in task_names], np.float32)


def _check_selection_labels(y_val, task_names, select_T, per_task: bool, config: TrainConfig) -> None:
  """A task that selects an epoch, or stops training early, needs validation labels:
  without any, its loss is 0 every epoch, so epoch 1 would be "selected" on nothing
  and patience would stop training after `patience` epochs for no reason."""
  unlabelled = [t for t, selects, count in zip(task_names, select_T, np.sum(np.asarray(y_val) != -1, axis=0))
                if (selects or per_task) and count == 0]
  if not unlabelled:
    return
  if config.select_epoch == "best_val":
    raise InputError(f"task {unlabelled[0]!r} has no validation labels to select an epoch on; "
                     "label some validation examples, or use --select_epoch=last")
  raise InputError(f"task {unlabelled[0]!r} has no validation labels to stop early on "
                   f"(--patience={config.patience}); label some validation examples, or use --patience=0")


def train(model: Model, x_train, y_train, seeds, config: TrainConfig,
          log: Optional[Callable[[int, np.ndarray], None]] = None,
          pretrained_shared: Optional[dict] = None, freeze_shared: bool = False,
          validation: Optional[tuple[np.ndarray, np.ndarray]] = None,
          checkpoints: Optional[EpochCheckpoints] = None,
          seeds_in_turn: Optional[bool] = None, micro_batch: Optional[int] = None,
          task_names: Optional[tuple[str, ...]] = None,
          method: Optional[methods.Method] = None, require_selection: bool = False) -> TrainResult:
  """Trains one copy of `model` per seed, all seeds in one compiled program.

  Seed s initialises from fold_in(key_s, INIT_STREAM), shuffles epoch e with
  fold_in(fold_in(key_s, SHUFFLE_STREAM), e) and gives the method the key
  fold_in(fold_in(fold_in(key_s, METHOD_STREAM), e), step), so two models trained
  with the same seeds see exactly the same batches in the same order.
  `pretrained_shared` (the model's shared parameters, stacked per seed, as in another
  TrainResult's params) replaces their initial values, for fine-tuning;
  `freeze_shared` then trains the task-specific parameters only.
  `validation` = (x_val, y_val) is scored after every epoch; with
  config.select_epoch == "best_val" each seed keeps its best epoch's parameters,
  judged on the tasks config.select_tasks names (`task_names` gives the order).
  `checkpoints` saves the run every few epochs and resumes it from the latest save.
  `seeds_in_turn` runs the seeds one after another instead of vmapped (default: on a CPU).
  `micro_batch` splits each batch's gradient into sums over micro-batches of this many
  examples (default: `choose_micro_batch`); it changes speed and float rounding only.
  `method` overrides config.method with a Method object (one not in the registry).
  `require_selection`: with best_val selection, a seed (or task) whose validation loss
  was NaN or inf every epoch, so that no epoch was selected, is an InputError rather
  than a result holding the untrained initial parameters (for a caller that would use
  them as trained, as pretraining does); otherwise its selected epoch is NO_EPOCH.
  """
  if not 1 <= config.batch_size <= len(x_train):
    raise InputError(f"batch size {config.batch_size} must be in [1, {len(x_train)}] "
                     "(the number of training examples)")
  epochs = planned_epochs(config, len(x_train))
  method = method or methods.build_method(config.method, config.method_options)
  x_train, y_train = jax.device_put(x_train), jax.device_put(y_train)  # resident from here on
  if freeze_shared and pretrained_shared is None:
    raise ValueError("freeze_shared needs pretrained_shared")
  if config.select_epoch not in EPOCH_SELECTION:
    raise InputError(f"unknown epoch selection {config.select_epoch!r}; choose from {', '.join(EPOCH_SELECTION)}")
  if config.select_epoch == "best_val" and validation is None:
    raise ValueError("select_epoch='best_val' needs validation data")
  num_tasks = y_train.shape[1]
  task_names = task_names or tuple(f"task {j}" for j in range(num_tasks))
  select_T = selection_mask(task_names, config.select_tasks)
  if validation is not None and len(validation[1]) == 0:
    raise InputError("the validation split is empty: there is nothing to score each epoch on")
  if validation is not None and (config.select_epoch == "best_val" or config.patience):
    _check_selection_labels(validation[1], task_names, select_T, model.per_task_params, config)
  optimizer = _optimizer(config, model, freeze_shared)
  keys_S = seed_keys(seeds)
  params, opt_state, method_state, micro_batch = _initial_values(
      model, method, optimizer, keys_S, x_train, y_train, config.batch_size, micro_batch, pretrained_shared)
  program = _epoch_program(model, method, optimizer, config.batch_size, micro_batch, seeds_in_turn,
                           keys_S, params, opt_state, method_state, x_train, y_train)
  place, specs, num_batches, run_epoch = program.place, program.specs, program.num_batches, program.run_epoch
  params, opt_state, method_state, x_train, y_train = program.placed
  if checkpoints and devices.several_processes():
    raise InputError(devices.NO_MULTI_PROCESS_CHECKPOINTS)
  stream_keys = lambda stream: jax.vmap(lambda k: jax.random.fold_in(k, stream))(keys_S)
  shuffle_keys_S, method_keys_S = stream_keys(SHUFFLE_STREAM), stream_keys(METHOD_STREAM)
  compile_seconds = program.compile_seconds
  start = time.perf_counter()

  val_loss_fn = validation and _val_loss_fn(model, *validation, select_T, place=place)
  # Validation picks one epoch per seed, or per seed and task for separate networks.
  selection_shape = (len(keys_S), *([num_tasks] if model.per_task_params else []))
  state, history = _initial_state(params, opt_state, method_state, selection_shape, epochs,
                                  num_tasks)
  epochs_done = 0
  restored = checkpoints and checkpoints.restore(_checkpointed(state, history))
  if restored:
    epochs_done, saved = restored
    state, history = saved["state"], History(**{k: np.array(v) for k, v in saved["history"].items()})
  if place:
    state = _place_state(place, specs, state)
  # Made before the loop, so that the loop itself moves no Python numbers to the device.
  epoch_numbers = jnp.arange(1, epochs + 1)
  per_epoch = lambda keys_S: list(jax.vmap(lambda e: jax.vmap(lambda k: jax.random.fold_in(k, e))(keys_S))(
      epoch_numbers - 1))
  shuffle_epoch_keys, method_epoch_keys = (_on_mesh(place, per_epoch(keys), P(SEEDS_AXIS))
                                           for keys in (shuffle_keys_S, method_keys_S))
  epoch_numbers = _on_mesh(place, list(epoch_numbers), P())
  stopped_early = False
  for e in range(epochs_done, epochs):
    # Inside an epoch nothing moves between host and device but its losses, fetched
    # explicitly once at the end (enforced where transfers are real, on accelerators).
    with jax.transfer_guard("disallow"):
      params, opt_state, method_state, losses_SxKxT, cosine_SxK = run_epoch(
          state.params, state.opt_state, state.method_state, shuffle_epoch_keys[e],
          method_epoch_keys[e], x_train, y_train)
      state = state.replace(params=params, opt_state=opt_state, method_state=method_state)
      val_loss = val_loss_fn(state.params) if val_loss_fn else None
      if val_loss_fn:
        state = _keep_best(state, val_loss, epoch_numbers[e])
      losses_SxKxT, cosine_SxK, val_loss, best_epoch = devices.fetch(
          (losses_SxKxT, cosine_SxK, val_loss, state.best_epoch))
    if val_loss is not None:
      history.val_loss_Ex[e] = val_loss
    _record_epoch(history, losses_SxKxT, cosine_SxK, e)
    epochs_done = e + 1
    if checkpoints:
      checkpoints.save(epochs_done, _checkpointed(state, history))
    if log:
      log(epochs_done, history.loss_ExS[e])
    if history.diverged_step_S.all() or (
        config.patience and val_loss_fn and epochs_done - best_epoch.max() >= config.patience):
      stopped_early = epochs_done < epochs
      break  # every seed has diverged, or none has improved for `patience` epochs
  if config.select_epoch == "best_val":
    params, selected = state.best_params, np.asarray(devices.fetch(state.best_epoch))
    if require_selection and np.any(selected == NO_EPOCH):
      raise InputError(no_selection_message(selected, list(seeds)))
  else:
    params, selected = state.params, np.full(selection_shape, epochs_done)
  method_state = state.method_state
  if place:  # whole, on this process's default device, for predict and the caller
    params, method_state = jax.tree.map(jnp.asarray, devices.fetch((params, method_state)))
  return TrainResult(params, history.loss_ExS[:epochs_done],
                     history.val_loss_Ex[:epochs_done] if val_loss_fn else None, selected,
                     history.diverged_step_S, time.perf_counter() - start,
                     compile_seconds, epochs_done * num_batches, stopped_early,
                     method_state, history.task_loss_ExSxT[:epochs_done],
                     history.cosine_ExS[:epochs_done])


def no_selection_message(selected: np.ndarray, seeds) -> str:
  """Which seeds selected no epoch. The best loss starts at inf, so any finite
  validation loss is selected: none was means it was NaN or inf in every epoch (inputs
  the model cannot read, or a model that overflows)."""
  unselected = np.flatnonzero(np.any((selected == NO_EPOCH).reshape(len(selected), -1), axis=1))
  listed = ", ".join(str(seeds[s]) for s in unselected)
  return (f"no epoch was selected for seed {listed}: the validation loss was NaN or inf in every "
          "epoch, so only the untrained initial parameters could be kept")


def _initial_state(params, opt_state, method_state, selection_shape: tuple[int, ...],
                   epochs: int, num_tasks: int) -> tuple[TrainState, History]:
  """Everything a run carries from epoch to epoch, and so what a checkpoint holds."""
  num_seeds = selection_shape[0]
  state = TrainState(
      params=params, opt_state=opt_state, method_state=method_state,
      # A copy, because run_epoch donates (reuses the memory of) the parameters it is given.
      best_params=jax.tree.map(jnp.copy, params),
      best_val_loss=jnp.full(selection_shape, jnp.inf),
      best_epoch=jnp.full(selection_shape, NO_EPOCH))
  history = History(
      loss_ExS=np.full((epochs, num_seeds), np.nan, np.float32),
      task_loss_ExSxT=np.full((epochs, num_seeds, num_tasks), np.nan, np.float32),
      cosine_ExS=np.full((epochs, num_seeds), np.nan, np.float32),
      val_loss_Ex=np.full((epochs, *selection_shape), np.nan, np.float32),
      first_loss_S=np.zeros(num_seeds, np.float32),
      diverged_step_S=np.zeros(num_seeds, np.int64))
  return state, history


def _checkpointed(state: TrainState, history: History) -> dict:
  return {"state": state, "history": dataclasses.asdict(history)}


def _record_epoch(history: History, losses_SxKxT: np.ndarray, cosine_SxK: np.ndarray,
                  epoch: int) -> None:
  """The epoch's mean losses and gradient cosine, and the first step of each seed
  whose loss went bad."""
  losses_SxK = losses_SxKxT.sum(axis=2)
  history.loss_ExS[epoch] = losses_SxK.mean(axis=1)
  history.task_loss_ExSxT[epoch] = losses_SxKxT.mean(axis=1)
  # Steps where the cosine is undefined (fewer than two tasks in the batch) are skipped.
  defined_SxK = np.isfinite(cosine_SxK)
  history.cosine_ExS[epoch] = np.where(
      defined_SxK.any(axis=1), np.where(defined_SxK, cosine_SxK, 0).sum(axis=1) / np.maximum(defined_SxK.sum(axis=1), 1),
      np.nan)
  # The reference is each seed's first step with a positive loss: with scarce labels a
  # batch can hold none, and its J of 0 would make any later step look 1000x worse.
  positive_SxK = losses_SxK > 0
  first_positive_S = losses_SxK[np.arange(len(losses_SxK)), positive_SxK.argmax(axis=1)]
  unset_S = (history.first_loss_S == 0) & positive_SxK.any(axis=1)
  history.first_loss_S[unset_S] = first_positive_S[unset_S]
  # Adam at a huge learning rate can send a stable loss to 1e9 without a NaN; such a
  # run is as lost as one that overflows.
  bad_SxK = ~np.isfinite(losses_SxK) | (losses_SxK > DIVERGENCE_FACTOR * history.first_loss_S[:, None])
  newly_S = (history.diverged_step_S == 0) & bad_SxK.any(axis=1)
  steps_per_epoch = losses_SxK.shape[1]
  history.diverged_step_S[newly_S] = epoch * steps_per_epoch + bad_SxK.argmax(axis=1)[newly_S] + 1


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
