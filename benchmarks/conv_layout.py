"""Gradient time of the CNN with `lax.conv` (flax nn.Conv) vs the patch-matmul form
that mtl_jax.models uses, for the joint network and for T vmapped separate networks.

  python -m benchmarks.conv_layout [--width=32] [--depth=3] [--batch=128]

Under vmap over stacked kernels a convolution becomes a grouped convolution, whose
gradient XLA:CPU runs far slower than T single convolutions; the slice + matmul form
vmaps into plain batched matmuls.
"""
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from mtl_jax import models
from mtl_jax.losses import masked_logistic_loss

WIDTH = flags.DEFINE_integer("width", 32, "Channels per conv block.", lower_bound=1)
DEPTH = flags.DEFINE_integer("depth", 3, "Conv blocks.", lower_bound=1)
TASKS = flags.DEFINE_integer("tasks", 4, "Tasks (heads, or separate networks).", lower_bound=1)
BATCH = flags.DEFINE_integer("batch", 128, "Images per step.", lower_bound=1)
REPEATS = flags.DEFINE_integer("repeats", 15, "Timed calls (median reported).", lower_bound=1)


class LaxConvEncoder(nn.Module):
  """The same encoder as models.CNNEncoder, written with nn.Conv."""
  width: int
  depth: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, deterministic: bool = True):
    for _ in range(self.depth):
      x = models._dropped(nn.relu(nn.Conv(self.width, (3, 3), strides=(2, 2))(x)), self.dropout, deterministic)
    return x.reshape(x.shape[0], -1)


def median_ms(fn, *args) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(REPEATS.value):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return 1e3 * float(np.median(times))


def grad_ms(arm: str) -> float:
  model = models.make_model(arm, models.EncoderSpec("cnn", WIDTH.value, DEPTH.value),
                            TASKS.value, (32, 32, 3))
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.integers(0, 256, (BATCH.value, 32, 32, 3), dtype=np.uint8))
  y = jnp.asarray(rng.integers(-1, 2, (BATCH.value, TASKS.value), dtype=np.int8))
  grad = jax.jit(jax.grad(lambda p: masked_logistic_loss(model.apply(p, x), y)))
  return median_ms(grad, model.init(jax.random.PRNGKey(0)))


def main(argv):
  del argv
  print(f"{jax.devices()[0].device_kind}: CNN width {WIDTH.value} depth {DEPTH.value}, "
        f"batch {BATCH.value}, 32x32x3, {TASKS.value} tasks, median of {REPEATS.value}")
  print(f"{'form':<10} {'joint grad ms':>14} {'separate grad ms':>17}")
  results = {}
  patch_encoder = models.CNNEncoder
  for form, encoder in (("patches", patch_encoder), ("lax.conv", LaxConvEncoder)):
    models.CNNEncoder = encoder  # MultiTaskNet looks the class up at call time
    results[form] = (grad_ms("joint"), grad_ms("separate"))
    print(f"{form:<10} {results[form][0]:>14.1f} {results[form][1]:>17.1f}", flush=True)
  models.CNNEncoder = patch_encoder
  print(f"lax.conv / patches: joint {results['lax.conv'][0] / results['patches'][0]:.1f}x, "
        f"separate {results['lax.conv'][1] / results['patches'][1]:.1f}x")


if __name__ == "__main__":
  app.run(main)
