"""Multi-gate Mixture-of-Experts (Ma, Zhao, Yi, Chen, Hong and Chi, "Modeling Task
Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts", KDD 2018).

E expert encoders see the input; task t's gate, a softmax of a linear map of the
flattened input, weighs their outputs, and the weighted sum is task t's features for
its linear head: f_t(x) = sum_e softmax(W_t x + b_t)_e expert_e(x).
"""
import jax
import jax.numpy as jnp

from mtl_jax.architectures.experts import (apply_stack, encoder_stage, flat, init_gates, init_heads,
                                           pure_model, softmax_gate, task_logits)
from mtl_jax.models import EncoderSpec, Model


def mmoe(encoder: EncoderSpec, num_tasks: int, input_shape: tuple[int, ...], experts: int = 4,
         expert_width: int = 0) -> Model:
  """MMoE (Ma et al. 2018): expert encoders mixed per task by a softmax gate on the input.

  experts: how many expert encoders (each an encoder of `encoder`'s kind and depth);
  expert_width: each expert's width (0: the encoder's width).
  Parameters: experts [E, ...] (shared: every task's gate weighs every expert), gates
  [T, D, E] and heads [F, T] (task t reaches its own gate and head column alone).
  """
  stage = encoder_stage(encoder, input_shape, expert_width)

  def init(draws):
    return {"experts": stage.init(draws, (experts,)),
            "gates": init_gates(draws, num_tasks, input_shape, experts),
            "heads": init_heads(draws, stage.features, num_tasks)}

  def forward(params, x):
    outputs_ExBxF = apply_stack(lambda p, h: flat(stage.apply(p, h)), params["experts"], x)
    weights_TxBxE = jax.vmap(softmax_gate, in_axes=(0, None))(params["gates"], x)
    features_TxBxF = jnp.einsum("tbe,ebf->tbf", weights_TxBxE, outputs_ExBxF)
    return task_logits(params["heads"], features_TxBxF)

  return pure_model(encoder, init, forward, shared=("experts",))
