"""Cross-stitch networks (Misra, Shrivastava, Gupta and Hebert, "Cross-stitch Networks
for Multi-task Learning", CVPR 2016).

One column (a whole encoder) per task, stacked on a leading axis and run with jax.vmap.
After every block a cross-stitch unit mixes the columns' activations with a learned
matrix alpha [T, T]: column t continues from sum_s alpha[t, s] h_s. The paper's units
hold one alpha per pair of tasks (not per channel) and start near the identity, 0.9 on
the diagonal; the rest of each row is spread evenly, so rows sum to 1 as the paper's
(0.9, 0.1) do for two tasks. Column t's last block, stitched, feeds task t's head.
"""
import jax
import jax.numpy as jnp

from mtl_jax.architectures.experts import (block, block_name, encoder_stage, init_heads,
                                           per_task, pure_model, task_logits)
from mtl_jax.models import EncoderSpec, Model


def initial_alphas(num_tasks: int, alpha_self: float) -> jax.Array:
  """[T, T]: alpha_self on the diagonal, the rest of each row spread evenly (1 for T = 1)."""
  if num_tasks == 1:
    return jnp.ones((1, 1), jnp.float32)
  off = (1.0 - alpha_self) / (num_tasks - 1)
  return jnp.full((num_tasks, num_tasks), off, jnp.float32) + (alpha_self - off) * jnp.eye(num_tasks)


def cross_stitch(encoder: EncoderSpec, num_tasks: int, input_shape: tuple[int, ...],
                 alpha_self: float = 0.9) -> Model:
  """Cross-stitch (Misra et al. 2016): a column per task, mixed by learned alphas after each block.

  alpha_self: each column's initial weight on itself, the diagonal of every alpha.
  Parameters: columns [T, ...] (hps's encoder layout, per task), alphas [depth, T, T]
  and heads [F, T]. Every task reaches every column through the alphas, so columns
  and alphas are shared.
  """
  stage = encoder_stage(encoder, input_shape)

  def init(draws):
    return {"columns": stage.init(draws, (num_tasks,)),
            "alphas": jnp.broadcast_to(initial_alphas(num_tasks, alpha_self),
                                       (encoder.depth, num_tasks, num_tasks)),
            "heads": init_heads(draws, stage.features, num_tasks)}

  def forward(params, x):
    h_TxB = per_task(x, num_tasks)
    for i in range(encoder.depth):
      columns_block = params["columns"][block_name(encoder.kind, i)]
      h_TxB = jax.vmap(lambda p, h: block(encoder.kind, p, h))(columns_block, h_TxB)
      h_TxB = jnp.einsum("ts,sb...->tb...", params["alphas"][i], h_TxB)  # the cross-stitch unit
    return task_logits(params["heads"], h_TxB.reshape(num_tasks, x.shape[0], -1))

  return pure_model(encoder, init, forward, shared=("columns", "alphas"))
