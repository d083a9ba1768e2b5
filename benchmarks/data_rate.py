"""Images/s of the procedural driving-scenes generator.

  python -m benchmarks.data_rate [--image_size=32] [--sizes=1000,10000,50000] [--repeats=3]

Reports the median over repeats (after a warm-up call that compiles the
jitted renderer), for the full pipeline (parameter sampling + rendering).
"""

import time

import numpy as np
from absl import app, flags

from mtl_jax.data import driving

flags.DEFINE_integer("image_size", 32, "Image size.")
flags.DEFINE_list("sizes", ["1000", "10000", "50000"], "Batch sizes.")
flags.DEFINE_integer("repeats", 3, "Timed repeats per size (median reported).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import jax
  cfg = driving.SceneConfig(image_size=FLAGS.image_size)
  t0 = time.perf_counter()
  driving.render_scenes(256, seed=0, config=cfg)             # warm-up / compile
  print(f"backend={jax.default_backend()} image_size={cfg.image_size} "
        f"compile+first call {time.perf_counter() - t0:.2f}s")
  for n in map(int, FLAGS.sizes):
    times = []
    for r in range(FLAGS.repeats):
      t = time.perf_counter()
      driving.render_scenes(n, seed=r + 1, config=cfg)
      times.append(time.perf_counter() - t)
    med = float(np.median(times))
    print(f"N={n:>7d}: {n / med:>10,.0f} images/s (median of {FLAGS.repeats}: {med:.3f}s)")


if __name__ == "__main__":
  app.run(main)
