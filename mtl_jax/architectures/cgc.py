"""Customized Gate Control (CGC) and Progressive Layered Extraction (PLE) (Tang, Liu,
Zhao and Gong, "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL)
Model for Personalized Recommendations", RecSys 2020).

CGC: S shared experts and E task-specific experts per task see the input; task t's
gate, a softmax of a linear map of the input, weighs the shared experts and task t's
own, and the weighted sum feeds task t's head. Unlike MMoE's, a task's gate cannot
reach another task's experts.

PLE stacks extraction levels. Each level is a CGC whose experts are a slice of the
encoder's blocks (the depth split into `levels` consecutive parts); task t's branch
feeds the next level's task-t experts and gate, and a shared gate at every inner level
weighs ALL the level's experts (shared and every task's) into the input of the next
level's shared experts. The last level has no shared gate: it is a CGC.

Parameters: the last level's shared_experts [S, ...], task_experts [T, E, ...] and
task_gates [T, D, S + E]; PLE's inner levels under extraction/level{l}; heads [F, T].
"""
import math

import jax
import jax.numpy as jnp
import numpy as np

from mtl_jax.architectures.experts import (Stage, apply_stack, dense_init, init_gates, init_heads, mix,
                                           per_task, pure_model, softmax_gate, task_logits)
from mtl_jax.errors import InputError
from mtl_jax.models import EncoderSpec, Model

FINAL_LEVEL_KEYS = ("shared_experts", "task_experts", "task_gates")


def cgc(encoder: EncoderSpec, num_tasks: int, input_shape: tuple[int, ...], shared_experts: int = 1,
        task_experts: int = 1, expert_width: int = 0) -> Model:
  """CGC (Tang et al. 2020): shared and task-specific experts, a gate per task over its own.

  shared_experts: experts every task's gate weighs (S); task_experts: each task's own
  experts (E); expert_width: each expert's width (0: the encoder's width). S = 0 is T
  separate networks; E = 0 is MMoE with S experts.
  """
  return _extraction_network(encoder, num_tasks, input_shape, shared_experts, task_experts, 1,
                             expert_width, "cgc")


def ple(encoder: EncoderSpec, num_tasks: int, input_shape: tuple[int, ...], shared_experts: int = 1,
        task_experts: int = 1, levels: int = 2, expert_width: int = 0) -> Model:
  """PLE (Tang et al. 2020): CGC levels stacked, a shared gate at each inner level.

  levels: extraction levels, each a consecutive part of the encoder's depth blocks (at
  most the depth; 1 is CGC); the other options as CGC's.
  """
  return _extraction_network(encoder, num_tasks, input_shape, shared_experts, task_experts, levels,
                             expert_width, "ple")


def _level_stages(encoder: EncoderSpec, input_shape, levels: int, width: int, arch: str) -> list[Stage]:
  """The experts' architecture at each level: the encoder's blocks split in `levels`
  consecutive parts, the first levels one block longer when they do not divide evenly."""
  if levels > encoder.depth:
    raise InputError(f"{arch} splits the encoder's --depth={encoder.depth} blocks into "
                     f"--{arch}_levels={levels} levels of at least one block each: use at most "
                     f"{encoder.depth} levels, or a deeper encoder")
  stages, shape = [], tuple(input_shape)
  for blocks in np.array_split(np.arange(encoder.depth), levels):
    stages.append(Stage(encoder.kind, width or encoder.width, shape, len(blocks)))
    shape = stages[-1].out_shape
  return stages


def _extraction_network(encoder, num_tasks, input_shape, shared_experts, task_experts, levels,
                        expert_width, arch) -> Model:
  if shared_experts + task_experts < 1:
    raise InputError(f"{arch} needs at least one expert: --{arch}_shared_experts and "
                     f"--{arch}_task_experts are both 0")
  stages = _level_stages(encoder, input_shape, levels, expert_width, arch)
  num_shared, num_own = shared_experts, task_experts

  def init_level(draws, stage: Stage, inner: bool) -> dict:
    level = {"task_gates": init_gates(draws, num_tasks, stage.in_shape, num_shared + num_own)}
    if num_shared:
      level["shared_experts"] = stage.init(draws, (num_shared,))
    if num_own:  # [T, E, ...]: task t's experts
      level["task_experts"] = stage.init(draws, (num_tasks, num_own))
    if inner and num_shared:  # one gate over all S + T E experts of the level
      level["shared_gate"] = dense_init(draws, math.prod(stage.in_shape), num_shared + num_tasks * num_own)
    return level

  def init(draws):
    inner = {f"level{l}": init_level(draws, stage, True) for l, stage in enumerate(stages[:-1])}
    params = {**init_level(draws, stages[-1], False),
              "heads": init_heads(draws, stages[-1].features, num_tasks)}
    return {**params, "extraction": inner} if inner else params

  def level_forward(stage: Stage, level: dict, shared_in, task_in_T):
    """One level: task t's gated mixture [T, B, ...] of the shared experts and its own,
    and (inner levels) the shared gate's mixture [B, ...] of every expert of the level."""
    outputs = []  # [S, B, ...] shared experts, then [T, E, B, ...] task experts
    if num_shared:
      outputs.append(apply_stack(stage.apply, level["shared_experts"], shared_in))
    if num_own:
      outputs.append(jax.vmap(jax.vmap(stage.apply, in_axes=(0, None)))(level["task_experts"], task_in_T))
    weights_TxBxN = jax.vmap(softmax_gate)(level["task_gates"], task_in_T)
    task_mix_TxB = 0
    if num_shared:
      task_mix_TxB += jnp.einsum("tbs,sb...->tb...", weights_TxBxN[..., :num_shared], outputs[0])
    if num_own:
      task_mix_TxB += jnp.einsum("tbe,teb...->tb...", weights_TxBxN[..., num_shared:], outputs[-1])
    if "shared_gate" not in level:
      return shared_in, task_mix_TxB
    every_NxB = jnp.concatenate([o.reshape(-1, shared_in.shape[0], *stage.out_shape) for o in outputs])
    return mix(softmax_gate(level["shared_gate"], shared_in), every_NxB), task_mix_TxB

  def forward(params, x):
    shared_in, task_in_T = x, per_task(x, num_tasks)
    for l, stage in enumerate(stages[:-1]):
      shared_in, task_in_T = level_forward(stage, params["extraction"][f"level{l}"], shared_in, task_in_T)
    final = {k: params[k] for k in FINAL_LEVEL_KEYS if k in params}
    _, features_TxB = level_forward(stages[-1], final, shared_in, task_in_T)
    return task_logits(params["heads"], features_TxB.reshape(num_tasks, x.shape[0], -1))

  # With shared experts, every task reaches them and, through the shared gates, every
  # inner level (all but the last inner level's task gates, whose gradient is task t's
  # alone: the other tasks' rows of its Jacobian are zero). Without, the T branches
  # never meet: nothing is shared.
  shared = ("shared_experts", "extraction") if levels > 1 else ("shared_experts",)
  return pure_model(encoder, init, forward, shared=shared if num_shared else ())
