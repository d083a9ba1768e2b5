"""Multi-Task Attention Network (Liu, Johns and Davison, "End-to-End Multi-Task Learning
with Attention", CVPR 2019), for the encoder-plus-heads networks of this package.

A shared trunk (the encoder) and, per task and per block, a soft attention module. At
block l, task t's module g_{t,l} (two pointwise layers, ReLU then sigmoid, as the
paper's 1x1 convolutions) turns the trunk's features h_l, concatenated from the second
block on with task t's previous attended features brought to this resolution, into a
mask in (0, 1) of h_l's shape; task t's attended features are a_{t,l} = mask * h_l.
The paper's shared block f_l (a convolution + pooling, the same for every task) brings
a_{t,l-1} to block l's resolution; here it is a block like the trunk's (stride-2
convolution, or Dense + ReLU). a_{t,depth-1} feeds task t's head.

Simplifications, because a block here is one layer: the mask is computed from the
block's output h_l (the paper's from the block's first layer), and there is no batch
normalisation. With every mask at 1 the network is hard sharing (tested).
"""
import jax
import jax.numpy as jnp

from mtl_jax.architectures.experts import (block, block_in_dim, block_name, dense, dense_init,
                                           encoder_stage, init_heads, per_task, pure_model,
                                           task_logits)
from mtl_jax.models import EncoderSpec, Model


def attention_mask(module: dict, inputs: jax.Array) -> jax.Array:
  """One task's soft attention at one block: sigmoid(W2 relu(W1 u)), pointwise over the
  channels (last axis) of u."""
  return jax.nn.sigmoid(dense(module["mask"], jax.nn.relu(dense(module["hidden"], inputs))))


def mtan(encoder: EncoderSpec, num_tasks: int, input_shape: tuple[int, ...],
         attention_width: int = 0) -> Model:
  """MTAN (Liu et al. 2019): a shared trunk, a per-task soft attention mask on each block's output.

  attention_width: hidden units of each attention module (0: the encoder's width).
  Parameters: trunk (hps's encoder layout) and attention_blocks (the f_l, one per block
  after the first), shared: every task's branch runs through both; attention
  {block{l}: [T, ...]} and heads [F, T], task t's alone.
  """
  trunk = encoder_stage(encoder, input_shape)
  width, hidden = encoder.width, attention_width or encoder.width

  def init_attention(draws, l):  # [T, ...]; from block 1 on, g sees [h_l, f_l(a_{t,l-1})]
    in_dim = width if l == 0 else 2 * width
    return {"hidden": dense_init(draws, in_dim, hidden, (num_tasks,)),
            "mask": dense_init(draws, hidden, width, (num_tasks,))}

  def init(draws):
    params = {"trunk": trunk.init(draws),
              "attention": {f"block{l}": init_attention(draws, l)
                            for l in range(encoder.depth)},
              "heads": init_heads(draws, trunk.features, num_tasks)}
    if encoder.depth > 1:  # f_l takes a_{t,l-1}, shaped like the trunk's input to block l
      params["attention_blocks"] = {
          f"block{l}": dense_init(draws, block_in_dim(encoder.kind, trunk.shapes[l]), width)
          for l in range(1, encoder.depth)}
    return params

  def forward(params, x):
    h, attended_TxB = x, None
    for l in range(encoder.depth):
      h = block(encoder.kind, params["trunk"][block_name(encoder.kind, l)], h)  # [B, ..., width]
      inputs_TxB = per_task(h, num_tasks)
      if l > 0:  # f_l brings task t's attended features to this block's resolution
        f_l = params["attention_blocks"][f"block{l}"]
        previous_TxB = jax.vmap(lambda a: block(encoder.kind, f_l, a))(attended_TxB)
        inputs_TxB = jnp.concatenate([inputs_TxB, previous_TxB], axis=-1)
      masks_TxB = jax.vmap(attention_mask)(params["attention"][f"block{l}"], inputs_TxB)
      attended_TxB = masks_TxB * h
    return task_logits(params["heads"], attended_TxB.reshape(num_tasks, x.shape[0], -1))

  shared = ("trunk", "attention_blocks") if encoder.depth > 1 else ("trunk",)
  return pure_model(encoder, init, forward, shared=shared)
