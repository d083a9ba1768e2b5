"""What the soft-sharing architectures are made of, as pure functions over explicit
parameters: the encoder's blocks, stages of consecutive blocks, stacks of stages run
with jax.vmap (experts, columns), softmax gates and per-task linear heads.

Blocks and their parameter names are those of models.MLPEncoder and models.CNNEncoder
(an MLP block is Dense + ReLU named Dense_i; a CNN block is a 3x3 stride-2 convolution
+ ReLU named conv_i, written as patches @ kernel), so a stage of all `depth` blocks holds
exactly the parameters of hard sharing's `encoder`: an expert, a column or a trunk can
be given hps's encoder, which is how the equivalence tests compare them.

Initial values come from a `Draws` (one random draw per distribution for the whole
model, cut into parameters), not from a key per layer: see Draws for why.
"""
import dataclasses
import math
from typing import Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtl_jax.models import EncoderSpec, Model, _as_float, _stride2_patches


def block_name(kind: str, i: int) -> str:
  return f"Dense_{i}" if kind == "mlp" else f"conv{i}"


def block_in_dim(kind: str, in_shape: Sequence[int]) -> int:
  """The input size of a block's Dense: the flattened input (mlp) or a 3x3 patch (cnn)."""
  return math.prod(in_shape) if kind == "mlp" else 9 * in_shape[-1]


def block_out_shape(kind: str, width: int, in_shape: Sequence[int]) -> tuple[int, ...]:
  if kind == "mlp":
    return (width,)
  height, wide, _ = in_shape
  return (-(-height // 2), -(-wide // 2), width)  # stride 2, 'SAME'


def block(kind: str, params: dict, h: jax.Array) -> jax.Array:
  """One encoder block on a batch [B, ...]: [B, width] (mlp) or [B, H/2, W/2, width] (cnn)."""
  inputs = flat(h) if kind == "mlp" else _stride2_patches(h)
  return nn.relu(dense(params, inputs))


# The LeCun-normal initialiser of nn.Dense (variance_scaling(1, "fan_in",
# "truncated_normal")): a standard normal truncated to [-2, 2], whose standard
# deviation is this, scaled to sqrt(1 / fan_in).
TRUNCATED_NORMAL_STDDEV = 0.87962566103423978


class Draws:
  """A whole model's random initial values, cut from ONE threefry draw per distribution.

  Each separate jax.random call in a compiled init adds its own unrolled hash to the
  program, about a second of XLA compilation per call on a CPU once vmapped over seeds:
  drawn layer by layer, PLE's init took 13 s to compile on a busy 2-core machine, longer
  than its training epoch; drawn at once, 2 s. pure_model runs an init twice while
  tracing it: first with Draws(None), which only counts what is asked for (and returns
  zeros), then with the real draws.
  """

  def __init__(self, key: Optional[jax.Array], sizes: Optional[dict] = None):
    self.used = {"normal": 0, "uniform": 0}
    self.pools = None
    if key is not None:
      normal_key, uniform_key = jax.random.split(key)
      self.pools = {"normal": jax.random.truncated_normal(normal_key, -2.0, 2.0, (sizes["normal"],)),
                    "uniform": jax.random.uniform(uniform_key, (sizes["uniform"],))}

  def _take(self, pool: str, shape) -> jax.Array:
    size, start = math.prod(shape), self.used[pool]
    self.used[pool] += size
    if self.pools is None:
      return jnp.zeros(shape, jnp.float32)
    return self.pools[pool][start:start + size].reshape(shape)

  def lecun_normal(self, shape, fan_in: int) -> jax.Array:
    """nn.Dense's kernel initialisation (LeCun normal, truncated at 2 deviations)."""
    return self._take("normal", shape) * (math.sqrt(1.0 / fan_in) / TRUNCATED_NORMAL_STDDEV)

  def uniform(self, shape, low: float, high: float) -> jax.Array:
    return low + (high - low) * self._take("uniform", shape)


def dense_init(draws: Draws, in_dim: int, out_dim: int, stack: tuple[int, ...] = ()) -> dict:
  """nn.Dense's initialisation, a LeCun-normal kernel [in, out] and a zero bias, for
  prod(stack) independent layers stacked on leading axes `stack`."""
  return {"kernel": draws.lecun_normal((*stack, in_dim, out_dim), in_dim),
          "bias": jnp.zeros((*stack, out_dim), jnp.float32)}


def dense(params: dict, h: jax.Array) -> jax.Array:
  """A linear layer on the last axis."""
  return h @ params["kernel"] + params["bias"]


def flat(h: jax.Array) -> jax.Array:
  return h.reshape(h.shape[0], -1)


@dataclasses.dataclass(frozen=True)
class Stage:
  """`count` consecutive encoder blocks of kind `kind`, `width` wide, on examples of
  shape `in_shape`: a whole encoder (count = depth), or one level of a PLE network."""
  kind: str
  width: int
  in_shape: tuple[int, ...]
  count: int

  @property
  def shapes(self) -> list[tuple[int, ...]]:
    """The example shape before each block and after the last."""
    shapes = [tuple(self.in_shape)]
    for _ in range(self.count):
      shapes.append(block_out_shape(self.kind, self.width, shapes[-1]))
    return shapes

  @property
  def out_shape(self) -> tuple[int, ...]:
    return self.shapes[-1]

  @property
  def features(self) -> int:
    return math.prod(self.out_shape)

  def init(self, draws: Draws, stack: tuple[int, ...] = ()) -> dict:
    """Parameters of prod(stack) independent copies (experts, columns) on leading axes."""
    return {block_name(self.kind, i): dense_init(draws, block_in_dim(self.kind, shape), self.width, stack)
            for i, shape in enumerate(self.shapes[:-1])}

  def apply(self, params: dict, h: jax.Array) -> jax.Array:
    for i in range(self.count):
      h = block(self.kind, params[block_name(self.kind, i)], h)
    return h


def encoder_stage(encoder: EncoderSpec, input_shape, width: int = 0) -> Stage:
  """The whole encoder of `encoder`, `width` wide (0: the encoder's own width)."""
  return Stage(encoder.kind, width or encoder.width, tuple(input_shape), encoder.depth)


def apply_stack(apply: Callable, params_N: dict, h: jax.Array) -> jax.Array:
  """Every copy of a stack on the same input [B, ...], in one vmapped program: [N, B, ...]."""
  return jax.vmap(apply, in_axes=(0, None))(params_N, h)


def init_gates(draws: Draws, gates: int, in_shape, choices: int) -> dict:
  """`gates` linear softmax gates over `choices`, on inputs of `in_shape` (flattened):
  kernel [G, D, choices], bias [G, choices]."""
  return dense_init(draws, math.prod(in_shape), choices, (gates,))


def softmax_gate(gate: dict, h: jax.Array) -> jax.Array:
  """One gate's mixture weights [B, choices] for the inputs h [B, ...]; the softmax in
  float32 so that bfloat16 runs still get weights that sum to 1."""
  logits = dense(gate, flat(h))
  return jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(logits.dtype)


def mix(weights_BxN: jax.Array, outputs_NxB: jax.Array) -> jax.Array:
  """Per example, the weighted sum of N outputs [N, B, ...] -> [B, ...]."""
  return jnp.einsum("bn,nb...->b...", weights_BxN, outputs_NxB)


def init_heads(draws: Draws, features: int, num_tasks: int) -> dict:
  """Task j's logit is features @ kernel[:, j] + bias[j]: hard sharing's heads layout."""
  return dense_init(draws, features, num_tasks)


def task_logits(heads: dict, features_TxBxF: jax.Array) -> jax.Array:
  """Task j's head on task j's own features: logits [B, T]."""
  return jnp.einsum("tbf,ft->bt", features_TxBxF, heads["kernel"]) + heads["bias"]


def per_task(h: jax.Array, num_tasks: int) -> jax.Array:
  """The same input for every task's branch: [T, B, ...]."""
  return jnp.broadcast_to(h, (num_tasks, *h.shape))


def pure_model(encoder: EncoderSpec, init: Callable[[Draws], dict],
               forward: Callable[[dict, jax.Array], jax.Array], shared: Sequence[str]) -> Model:
  """A Model from init(draws) -> params and forward(params, x float [B, ...]) -> logits
  [B, T]. Inputs are scaled as hard sharing scales them, and the computation runs in the
  encoder's compute dtype while parameters and logits stay float32 (gradients flow back
  through the casts)."""
  compute = jnp.dtype(encoder.dtype)

  # Jitted, so that training's eager vmap over seeds compiles it once, as one program.
  @jax.jit
  def init_from_key(key):
    counting = Draws(None)
    init(counting)  # traced only for the sizes: none of it is in the compiled program
    return init(Draws(key, counting.used))

  def apply(params, x):
    if compute != jnp.float32:
      params = jax.tree.map(lambda p: p.astype(compute), params)
    return forward(params, _as_float(x, encoder.kind).astype(compute)).astype(jnp.float32)

  return Model(init_from_key, apply, shared=tuple(shared))
