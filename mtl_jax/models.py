"""Shared encoder + per-task heads as pure functions over explicit parameter pytrees.

A `Model` is a pair of pure functions: `init(key) -> params` and
`apply(params, x_BxHxWxC) -> logits_BxT`. `joint_model` shares one encoder among T
heads; `separate_models` stacks T single-task networks of the same architecture on
a leading parameter axis and runs them in one program, vmapped or one after another
(`separate_strategy_default` says which).
"""
import dataclasses
import inspect
from typing import Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtl_jax.errors import InputError

ENCODERS = ("mlp", "cnn")
# Compute dtypes: bfloat16 runs the matmuls in bfloat16 while parameters, optimizer
# state, loss and logits stay float32 (mixed precision, for accelerators with bf16 units).
DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
  kind: str = "cnn"  # one of ENCODERS
  width: int = 16  # hidden units (mlp) or channels (cnn)
  depth: int = 2  # hidden layers (mlp) or conv blocks (cnn)
  dtype: str = "float32"  # compute dtype, one of DTYPES
  # Dropout rate after every hidden layer (mlp) or conv block (cnn) while training
  # (Srivastava et al. 2014); never when predicting or selecting epochs. 0: none.
  dropout: float = 0.0

  def __post_init__(self):
    if not 0 <= self.dropout < 1:
      raise InputError(f"dropout is the probability of dropping a unit, in [0, 1); got {self.dropout}")
    if self.dtype not in DTYPES:
      raise InputError(f"unknown compute dtype {self.dtype!r}; choose from {', '.join(DTYPES)}")
    if self.kind not in ENCODERS:
      raise InputError(f"unknown encoder {self.kind!r}; choose from {', '.join(ENCODERS)}")
    if self.width < 1 or self.depth < 1:
      raise InputError(f"encoder width and depth must be positive; got {self.width}, {self.depth}")


def _dropped(h, rate: float, deterministic: bool):
  """Dropout (inverted: kept units scaled by 1/(1 - rate)); a no-op at rate 0 or when
  deterministic, so that the parameters and the program are those without it."""
  return nn.Dropout(rate, deterministic=deterministic)(h) if rate else h


class MLPEncoder(nn.Module):
  width: int
  depth: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x_BxD, deterministic: bool = True):
    h = x_BxD.reshape(x_BxD.shape[0], -1)
    for _ in range(self.depth):
      h = _dropped(nn.relu(nn.Dense(self.width)(h)), self.dropout, deterministic)
    return h


def _stride2_patches(x_BxHxWxC: jax.Array) -> jax.Array:
  """The 3x3 neighbourhoods of a stride-2 'SAME' convolution, [B, H/2, W/2, 9C].

  Nine strided slices instead of `lax.conv`: under `jax.vmap` over stacked kernels a
  convolution lowers to a grouped convolution, whose gradient XLA:CPU runs 5-30x
  slower than this slice + matmul form (benchmarks/conv_layout.py measures it).
  """
  _, h, w, _ = x_BxHxWxC.shape
  out_h, out_w = -(-h // 2), -(-w // 2)
  pad_h, pad_w = max(2 * out_h + 1 - h, 0), max(2 * out_w + 1 - w, 0)
  x = jnp.pad(x_BxHxWxC, ((0, 0), (pad_h // 2, pad_h - pad_h // 2),
                          (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
  cols = [x[:, i:i + 2 * out_h:2, j:j + 2 * out_w:2, :] for i in range(3) for j in range(3)]
  return jnp.concatenate(cols, axis=-1)


class CNNEncoder(nn.Module):
  """Blocks of 3x3 stride-2 convolution + ReLU: each halves the resolution like a
  conv + 2x2 pool would, at a quarter of the convolution cost."""
  width: int
  depth: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x_BxHxWxC, deterministic: bool = True):
    h = x_BxHxWxC
    for i in range(self.depth):
      h = _dropped(nn.relu(nn.Dense(self.width, name=f"conv{i}")(_stride2_patches(h))), self.dropout,
                   deterministic)
    return h.reshape(h.shape[0], -1)


class MultiTaskNet(nn.Module):
  """Encoder features -> T linear heads, one logit each (stored as one [F, T] kernel).
  `encode` is the encoder alone under the same module path, so that a dropout key
  draws the same masks whether the net runs whole or split at the representation."""
  encoder_spec: EncoderSpec
  num_tasks: int

  def setup(self):
    spec = self.encoder_spec
    encoder_cls = MLPEncoder if spec.kind == "mlp" else CNNEncoder
    self.encoder = encoder_cls(spec.width, spec.depth, spec.dropout)
    self.heads = nn.Dense(self.num_tasks)

  def __call__(self, x, deterministic: bool = True):
    return self.heads(self.encode(x, deterministic))

  def encode(self, x, deterministic: bool = True):
    return self.encoder(x, deterministic)


class Model(NamedTuple):
  """Pure functions over a parameter pytree, plus what training must know about them."""
  init: Callable[[jax.Array], dict]
  apply: Callable[[dict, jax.Array], jax.Array]
  # True when every parameter has a leading task axis and task j's logits depend on
  # slice j alone (separate networks): then each task's network can keep its own epoch.
  per_task_params: bool = False
  # Top-level parameter keys that every task's loss reaches (what a combination step
  # gets per-task gradients of, what transfer learning pretrains and freezing freezes);
  # the rest are task-specific. Empty: nothing is shared.
  shared: tuple[str, ...] = ()
  # The split apply = decode(params, encode(params, x)) at the shared representation
  # [B, F], for methods that take per-task gradients of it (MGDA-UB); None if the
  # architecture has no single shared representation.
  encode: Optional[Callable[[dict, jax.Array], jax.Array]] = None
  decode: Optional[Callable[[dict, jax.Array], jax.Array]] = None
  # The dropout rate while training (EncoderSpec.dropout). When > 0, training calls
  # apply(params, x, dropout_key) and encode(params, x, dropout_key): a key makes the
  # pass stochastic; without one (predicting, selecting epochs) it is deterministic.
  dropout: float = 0.0
  # Separate networks that may train one at a time: j -> network j alone, a one-task
  # Model over slice j of every parameter (separate_models' "one_at_a_time"); else None.
  network: Optional[Callable[[jax.Array], "Model"]] = None


# How uint8 pixels become floats, per encoder. Images stay uint8 on the device (4x
# less memory) and are scaled per batch inside the step. The MLP needs centred inputs:
# with pixels in [0, 1] every weight of a first-layer unit gets a gradient of one sign,
# one Adam step moves the unit's pre-activation by about lr * sum(x) on every image at
# once, and 88-99% of the units end up off for every image, so the MLP could not even
# fit its training set (benchmarks/mlp_on_images.py). The CNN's units see 27 pixels
# each and keep [0, 1], so that its results stay comparable across releases
# (centring would move its test AUC by about +0.01).
PIXEL_SCALE = {"mlp": lambda x: x / 127.5 - 1.0, "cnn": lambda x: x / 255.0}


def _as_float(x, kind: str):
  return PIXEL_SCALE[kind](x.astype(jnp.float32)) if x.dtype == jnp.uint8 else x


def _dropout_args(dropout_key) -> dict:
  """flax's apply arguments: stochastic with a key, deterministic without."""
  if dropout_key is None:
    return {"deterministic": True}
  return {"deterministic": False, "rngs": {"dropout": dropout_key}}


def joint_model(encoder: EncoderSpec, num_tasks: int, input_shape: tuple[int, ...]) -> Model:
  """Hard parameter sharing: one shared encoder, a linear head per task."""
  net = MultiTaskNet(encoder, num_tasks)
  dummy_x = jnp.zeros((1, *input_shape), jnp.float32)
  heads_net = nn.Dense(num_tasks)
  compute = jnp.dtype(encoder.dtype)

  def init(key):
    return net.init(key, dummy_x)["params"]

  def cast(params):  # gradients flow back through the casts to float32 params
    return params if compute == jnp.float32 else jax.tree.map(lambda p: p.astype(compute), params)

  def apply(params, x, dropout_key=None):
    return net.apply({"params": cast(params)}, _as_float(x, encoder.kind).astype(compute),
                     **_dropout_args(dropout_key)).astype(jnp.float32)

  def encode(params, x, dropout_key=None):
    return net.apply({"params": cast(params)}, _as_float(x, encoder.kind).astype(compute),
                     method=MultiTaskNet.encode, **_dropout_args(dropout_key))

  def decode(params, features_BxF):
    return heads_net.apply({"params": cast(params["heads"])}, features_BxF).astype(jnp.float32)

  return Model(init, apply, shared=("encoder",), encode=encode, decode=decode, dropout=encoder.dropout)


# How `separate_models` runs its T networks:
#   vmap           one vmapped program (accelerators: the networks run in parallel);
#   in_turn        one after another inside each step (`lax.map` over the stacked
#                  parameters; autodiff makes the backward pass in turn too);
#   one_at_a_time  as in_turn when applied, and `train` runs each network's whole epoch
#                  before the next network starts (Model.network), where the method and
#                  the devices allow (train.one_network_at_a_time).
SEPARATE_STRATEGIES = ("vmap", "in_turn", "one_at_a_time")
# The strategy on a CPU: the one place of the rule. Each encoder's networks run vmapped
# up to this many of them, and one at a time beyond. Against a loop of single-network
# programs (benchmarks/separate_strategies.py, and T real `train` calls in
# benchmarks/frameworks.py; batch 128, Adam, T = 4, 16, 40, each case in its own
# process, best of 2 alternated rounds; tables in docs/speed.md), one at a time ran at
# 0.94-1.45x the loop's speed for CNNs of width 16 and MLPs of width 256, in turn
# 0.92-1.04x, vmapped MLPs 0.72-0.81x. Four vmapped CNNs beat one at a time 1.27x and
# 1.33x in two of three sittings (their small matmuls batch well); at T = 16 the
# sittings split, at T = 40 one at a time won. (Vmapped, the MLP's first-layer
# gradient is one [3072 x T*256] matmul that XLA transposes into the parameters' layout
# every step; in turn, every step slices each network's parameters and moments out of
# the stack and back; one at a time, each network's stay in cache through its steps.)
VMAPPED_ON_CPU_UP_TO = {"mlp": 0, "cnn": 4}


def separate_strategy_on_cpu(kind: str, num_tasks: int) -> str:
  """The fastest measured way to run num_tasks separate networks of this encoder on a CPU."""
  return "vmap" if num_tasks <= VMAPPED_ON_CPU_UP_TO[kind] else "one_at_a_time"


def separate_strategy_default(kind: str, num_tasks: int) -> str:
  """How `separate_models` runs T networks when not told: vmapped on a GPU or TPU, so
  that they run in parallel; on a CPU, whichever was fastest (separate_strategy_on_cpu)."""
  return separate_strategy_on_cpu(kind, num_tasks) if jax.default_backend() == "cpu" else "vmap"


def separate_models(encoder: EncoderSpec, num_tasks: int, input_shape: tuple[int, ...], *,
                    strategy: Optional[str] = None) -> Model:
  """One single-task network per task; network j is initialised from split(key, T)[j].

  The T networks' parameters are stacked on a leading axis and run inside one program,
  as `strategy` (one of SEPARATE_STRATEGIES) says; the logits and the trained
  parameters are the same either way, up to float rounding. None:
  `separate_strategy_default(encoder.kind, num_tasks)`. (Keyword-only, so not an architecture
  option of the command line.)"""
  single = joint_model(encoder, 1, input_shape)
  strategy = strategy or separate_strategy_default(encoder.kind, num_tasks)
  if strategy not in SEPARATE_STRATEGIES:
    raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(SEPARATE_STRATEGIES)}")
  in_turn = strategy != "vmap"

  def init(key):
    return jax.vmap(single.init)(jax.random.split(key, num_tasks))

  def apply(params, x, dropout_key=None):
    # The leading axis holds this program's networks: all T, or a device's share of them
    # when they are sharded over devices (devices.py), so it is read, not assumed.
    if dropout_key is None:
      one, per_net = (lambda p: single.apply(p, x)), params
    else:  # each network draws its own masks
      one = lambda p_and_key: single.apply(p_and_key[0], x, p_and_key[1])
      per_net = (params, jax.random.split(dropout_key, jax.tree.leaves(params)[0].shape[0]))
    logits_TxBx1 = jax.lax.map(one, per_net) if in_turn else jax.vmap(one)(per_net)
    return logits_TxBx1[..., 0].T

  def network(j):
    """Network j (a traced index) of all T alone: one task, drawing the dropout masks
    that it draws in `apply`."""
    def apply_one(params, x, dropout_key=None):
      key = None if dropout_key is None else jax.random.split(dropout_key, num_tasks)[j]
      return single.apply(params, x, key)
    return Model(single.init, apply_one, dropout=encoder.dropout)

  return Model(init, apply, per_task_params=True, dropout=encoder.dropout,
               network=network if strategy == "one_at_a_time" else None)


# The soft-sharing architectures build on the encoder blocks above, so they are
# imported once those exist (mtl_jax/architectures/__init__.py keeps that order).
from mtl_jax.architectures import cgc, cross_stitch, dselect_k, mmoe, mtan  # noqa: E402

# Architectures by name: a builder (encoder, num_tasks, input_shape, **options) -> Model,
# whose keyword options (sizes, with defaults) each have an entry in ARCH_OPTIONS.
# Adding one is a builder function and a line here (docs/architectures.md).
MODELS: dict[str, Callable[..., Model]] = {
    "hps": joint_model,  # hard parameter sharing, the course note's network
    "separate": separate_models,  # one network per task
    "mmoe": mmoe.mmoe,
    "cgc": cgc.cgc,
    "ple": cgc.ple,
    "cross_stitch": cross_stitch.cross_stitch,
    "mtan": mtan.mtan,
    "dselect_k": dselect_k.dselect_k,
}


@dataclasses.dataclass(frozen=True)
class ArchOption:
  """What an architecture keyword means and the values it takes, for its flag
  --ARCH_KEYWORD (experiments/cli.py) and for build_model's check."""
  meaning: str
  valid: Callable[[float], bool]
  rule: str  # the valid values, in words


ARCH_OPTIONS = {
    "experts": ArchOption("expert encoders", lambda v: v >= 1, "at least 1"),
    "shared_experts": ArchOption("experts that every task's gate weighs", lambda v: v >= 0, "0 or more"),
    "task_experts": ArchOption("each task's own experts", lambda v: v >= 0, "0 or more"),
    "levels": ArchOption("extraction levels, among which the encoder's blocks are split",
                         lambda v: v >= 1, "at least 1"),
    "expert_width": ArchOption("each expert's width (0: the encoder's --width)", lambda v: v >= 0, "0 or more"),
    "k": ArchOption("selectors per task, so at most k experts each", lambda v: v >= 1, "at least 1"),
    "gamma": ArchOption("the smooth-step's width", lambda v: v > 0, "positive"),
    "alpha_self": ArchOption("each column's initial cross-stitch weight on itself, the rest of "
                             "the weight spread evenly over the other columns", lambda v: 0 <= v <= 1,
                             "in [0, 1]"),
    "attention_width": ArchOption("hidden units of each attention module (0: the encoder's --width)",
                                  lambda v: v >= 0, "0 or more"),
}


def architecture_options(arch: str) -> dict[str, float]:
  """An architecture's options and their defaults: its builder's keywords after
  (encoder, num_tasks, input_shape), keyword-only ones (how to run it, not what it is)
  left out."""
  parameters = list(inspect.signature(MODELS[arch]).parameters.values())[3:]
  return {p.name: p.default for p in parameters if p.kind == p.POSITIONAL_OR_KEYWORD}


def architecture_summary(arch: str) -> str:
  """The first line of the builder's docstring: what the architecture is."""
  return inspect.getdoc(MODELS[arch]).splitlines()[0]


def _checked_options(arch: str, options) -> dict:
  """The options as keywords of the builder, each checked and of its default's type
  (flags and JSON give floats for integer options)."""
  defaults, checked = architecture_options(arch), {}
  for key, value in options:
    if key not in defaults:
      raise InputError(f"architecture {arch!r} has no option {key!r}; it has "
                       f"{', '.join(defaults) or 'none'}")
    option, whole = ARCH_OPTIONS[key], isinstance(defaults[key], int)
    if whole and value != int(value):
      raise InputError(f"--{arch}_{key} ({option.meaning}) must be a whole number; got {value}")
    if not option.valid(value):
      raise InputError(f"--{arch}_{key} ({option.meaning}) must be {option.rule}; got {value}")
    checked[key] = int(value) if whole else float(value)
  return checked


# The architectures whose encoders take --dropout (the soft-sharing ones build their
# own blocks, which do not).
DROPOUT_ARCHS = ("hps", "separate")

# Experiment arms that are not architectures train the joint architecture (--arch).
SEPARATE_ARM = "separate"


def build_model(arch: str, encoder: EncoderSpec, num_tasks: int, input_shape,
                options: tuple[tuple[str, float], ...] = ()) -> Model:
  """The architecture `arch`; `options` are (keyword, value) pairs for its builder
  (sizes such as the number of experts), its defaults where absent."""
  if arch not in MODELS:
    raise InputError(f"unknown architecture {arch!r}; choose from {', '.join(MODELS)}")
  if encoder.dropout and arch not in DROPOUT_ARCHS:
    raise InputError(f"--dropout applies to {' and '.join(DROPOUT_ARCHS)} networks; the {arch} "
                     "architecture does not take it (use --dropout=0)")
  if encoder.kind == "cnn" and len(input_shape) != 3:
    raise InputError(f"the cnn encoder needs images [height, width, channels]; this data has "
                     f"inputs of shape {tuple(input_shape)}: use --encoder=mlp")
  return MODELS[arch](encoder, num_tasks, tuple(input_shape), **_checked_options(arch, options))


def make_model(arm: str, encoder: EncoderSpec, num_tasks: int, input_shape, arch: str = "hps",
               arch_options: tuple[tuple[str, float], ...] = ()) -> Model:
  """The model of an experiment arm: "separate" is one network per task; any other
  arm (joint, a fine-tuned transfer arm, a single-task baseline) is `arch`."""
  if arm == SEPARATE_ARM:
    return build_model(SEPARATE_ARM, encoder, num_tasks, input_shape)
  return build_model(arch, encoder, num_tasks, input_shape, arch_options)


def shared_params(model: Model, params: dict) -> dict:
  return {k: params[k] for k in model.shared}


def param_count(params) -> int:
  return sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
