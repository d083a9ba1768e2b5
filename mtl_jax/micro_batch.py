"""How many examples a CPU step's gradient takes at a time: the fewest micro-batches
that keep every intermediate array of the step in cache, found by walking the
gradient's jaxpr (no compilation, no run)."""
import jax
from jax.extend.core import ClosedJaxpr, Jaxpr

from mtl_jax.losses import masked_logistic_loss
from mtl_jax.models import Model

# A step's largest intermediate array is kept under this size on a CPU.
MICRO_BATCH_BYTES = 5 * 2**19


def per_example_bytes(model: Model, params, x, y) -> int:
  """Bytes that one more example adds to the largest array of a gradient step: how
  each intermediate grows from a batch of 3 to a batch of 5, at its maximum (not from
  1, where some operations trace to different shapes). Only shapes and dtypes are
  read: params may be jax.ShapeDtypeStructs, and x, y any examples of the data."""
  def sizes(batch: int) -> list[int]:
    x_batch, y_batch = (jax.ShapeDtypeStruct((batch, *a.shape[1:]), a.dtype) for a in (x, y))
    loss = lambda p, x, y: masked_logistic_loss(model.apply(p, x), y)
    jaxpr = jax.make_jaxpr(jax.grad(loss))(params, x_batch, y_batch).jaxpr
    return [v.aval.size * v.aval.dtype.itemsize for v in intermediates(jaxpr, scan_outputs=False)]
  return max([(five - three) // 2 for three, five in zip(sizes(3), sizes(5))], default=0)


def intermediates(jaxpr, scan_outputs: bool = True):
  """Every intermediate array of a jaxpr, its sub-jaxprs' included (pjit, custom_jvp).

  scan_outputs=False leaves out what a scan (lax.map) stacks over its iterations: it is
  written a slice per iteration, and each iteration's working set is its body's arrays.
  So separate networks run in turn (models.separate_models) get the micro-batch of one
  network, not of T stacked ones (which gave the width-16 CNN micro-batches of 2 at T = 40)."""
  for eqn in jaxpr.eqns:
    if scan_outputs or eqn.primitive.name != "scan":
      yield from eqn.outvars
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else (param,):
        if isinstance(sub, ClosedJaxpr):
          yield from intermediates(sub.jaxpr, scan_outputs)
        elif isinstance(sub, Jaxpr):
          yield from intermediates(sub, scan_outputs)


def choose_micro_batch(model: Model, params, x, y, batch_size: int) -> int:
  """The whole batch on an accelerator. On a CPU, the fewest micro-batches that keep
  every intermediate array under MICRO_BATCH_BYTES, so that a step's working set
  stays in cache: a [128, 8, 8, 576] patch matrix (18 MB) made a width-64 CNN step
  2x slower than the same step over 16-example micro-batches (benchmarks/run.py)."""
  if jax.default_backend() != "cpu":
    return batch_size
  num_micro = max(1, min(batch_size, -(-batch_size * per_example_bytes(model, params, x, y) // MICRO_BATCH_BYTES)))
  return -(-batch_size // num_micro)
