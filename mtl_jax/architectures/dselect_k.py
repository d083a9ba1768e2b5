"""DSelect-k gates (Hazimeh, Zhao, Chowdhery, Sathiamoorthy, Chen, Mazumder, Hong and Chi,
"DSelect-k: Differentiable Selection in the Mixture of Experts with Applications to
Multi-Task Learning", NeurIPS 2021).

E expert encoders (E a power of 2, E = 2^m) and, per task, k single-expert selectors.
Selector i holds m logits z_i; with the smooth-step
    S(t) = 0 for t <= -gamma/2, 1 for t >= gamma/2, -2 t^3 / gamma^3 + 3 t / (2 gamma) + 1/2 between,
it weighs expert e (binary code b_1..b_m, most significant bit first) by
    r_i(e) = prod_j (S(z_ij) if b_j = 1 else 1 - S(z_ij)),
a distribution over the experts that is one-hot once every S(z_ij) is 0 or 1. The
task's mixture weights are sum_i softmax(w)_i r_i: at most k experts once the selectors
have converged, and differentiable all along.

What is implemented: the paper's static (task-only) gate, whose z and w are per-task
parameters, with its initialisations (z uniform in +-gamma/100, w uniform in +-0.05,
as the authors' code, google-research/dselect_k_moe); not the per-example gate. Left
out: the optional entropy regulariser that speeds up convergence to k experts, and the
regulariser the authors add when E is not a power of 2 (so E must be one here). Every
expert is computed, as in the paper's dense implementation, whatever its weight.
"""
import jax
import jax.numpy as jnp
import numpy as np

from mtl_jax.architectures.experts import (apply_stack, encoder_stage, flat, init_heads, pure_model,
                                           task_logits)
from mtl_jax.errors import InputError
from mtl_jax.models import EncoderSpec, Model


def smooth_step(t: jax.Array, gamma: float) -> jax.Array:
  """The cubic smooth-step: 0 below -gamma/2, 1 above gamma/2, C^1 in between."""
  cubic = -2.0 / gamma**3 * t**3 + 3.0 / (2.0 * gamma) * t + 0.5
  return jnp.where(t <= -gamma / 2, 0.0, jnp.where(t >= gamma / 2, 1.0, cubic)).astype(t.dtype)


def binary_codes(experts: int) -> np.ndarray:
  """[E, m] booleans: row e is e in binary, most significant bit first."""
  bits = experts.bit_length() - 1
  codes = [[(e >> (bits - 1 - j)) & 1 for j in range(bits)] for e in range(experts)]
  return np.array(codes, bool).reshape(experts, bits)


def expert_weights(selectors: dict, codes_ExM: np.ndarray, gamma: float) -> jax.Array:
  """One task's mixture weights [E] from its k selectors (z [k, m], w [k])."""
  on_KxM = smooth_step(selectors["z"], gamma)
  chosen_KxExM = jnp.where(codes_ExM, on_KxM[:, None, :], 1.0 - on_KxM[:, None, :])
  single_KxE = jnp.prod(chosen_KxExM, axis=-1)  # each selector's distribution over the experts
  return jax.nn.softmax(selectors["w"]) @ single_KxE


def dselect_k(encoder: EncoderSpec, num_tasks: int, input_shape: tuple[int, ...], experts: int = 4,
              k: int = 2, gamma: float = 1.0, expert_width: int = 0) -> Model:
  """DSelect-k (Hazimeh et al. 2021): each task selects k of E experts by a smooth binary code.

  experts: expert encoders (E, a power of 2); k: selectors per task, at most k experts
  each; gamma: the smooth-step's width (larger: slower to reach exact 0/1);
  expert_width: each expert's width (0: the encoder's width).
  Parameters: experts [E, ...] (shared: every task's selectors start on every expert),
  selectors {z [T, k, m], w [T, k]} and heads [F, T], task t's alone.
  """
  if experts < 1 or experts & (experts - 1):
    raise InputError(f"dselect_k's binary encoding needs a power of 2 experts (--dselect_k_experts); "
                     f"got {experts}")
  stage = encoder_stage(encoder, input_shape, expert_width)
  codes_ExM = binary_codes(experts)

  def init(draws):
    bits = codes_ExM.shape[1]
    return {"experts": stage.init(draws, (experts,)),
            "selectors": {"z": draws.uniform((num_tasks, k, bits), -gamma / 100, gamma / 100),
                          "w": draws.uniform((num_tasks, k), -0.05, 0.05)},
            "heads": init_heads(draws, stage.features, num_tasks)}

  def forward(params, x):
    outputs_ExBxF = apply_stack(lambda p, h: flat(stage.apply(p, h)), params["experts"], x)
    weights_TxE = jax.vmap(lambda s: expert_weights(s, codes_ExM, gamma))(params["selectors"])
    features_TxBxF = jnp.einsum("te,ebf->tbf", weights_TxE.astype(outputs_ExBxF.dtype), outputs_ExBxF)
    return task_logits(params["heads"], features_TxBxF)

  return pure_model(encoder, init, forward, shared=("experts",))
