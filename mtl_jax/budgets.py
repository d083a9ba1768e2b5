"""Parameter budgets: how many parameters an architecture has, and the encoder width at
which it has about as many as a reference, for comparisons at equal parameter counts
(experiments/architectures.py, benchmarks/architectures.py).

Counts come from the shapes that `init` would produce (jax.eval_shape: nothing is
drawn or compiled), so they are exactly the trained models' `param_count`.
"""
import dataclasses
import functools

import jax

from mtl_jax.models import EncoderSpec, make_model


@functools.lru_cache(maxsize=None)
def count_params(arch: str, encoder: EncoderSpec, num_tasks: int, input_shape: tuple[int, ...],
                 options: tuple[tuple[str, float], ...] = ()) -> int:
  """Parameters of one network (one seed) of `arch` ("separate": all T networks)."""
  model = make_model(arch, encoder, num_tasks, tuple(input_shape), arch, options)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(shapes))


def width_for_params(arch: str, encoder: EncoderSpec, num_tasks: int, input_shape: tuple[int, ...],
                     target: int, options: tuple[tuple[str, float], ...] = ()) -> int:
  """The encoder width (>= 1) at which `arch` has the parameter count closest to
  `target` (the smaller width on a tie). Every architecture's count grows with the
  width, so a bisection finds it in about 2 log2(width) counts. Parts that do not grow
  with it (the MMoE, CGC and PLE gates on the input) can leave even width 1 above the
  target: then it is 1."""
  count = lambda width: count_params(arch, dataclasses.replace(encoder, width=width), num_tasks,
                                     tuple(input_shape), options)
  low, high = 1, 2  # count(low) < target <= count(high) once the loop ends
  if count(low) >= target:
    return low
  while count(high) < target:
    low, high = high, 2 * high
  while high - low > 1:
    middle = (low + high) // 2
    low, high = (middle, high) if count(middle) < target else (low, middle)
  return low if target - count(low) <= count(high) - target else high
