"""Preview grid of driving scenes.

  python -m mtl_jax.data.preview --out=figures/driving_scenes.png --n=32 --seed=0
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np


def _label_str(row: np.ndarray) -> str:
  return "[" + ",".join("?" if int(x) < 0 else str(int(x)) for x in row) + "]"


def save_scene_grid(images: np.ndarray, labels: np.ndarray, task_names: Sequence[str],
                    path: str, ncols: int = 8) -> str:
  """Saves a PNG grid of scenes, each titled with its label vector.

  Args:
    images: uint8 [N, H, W, 3].
    labels: int [N, T] with 1 = yes, 0 = no, -1 = missing (shown as "?").
    task_names: T names (the order of the label vector, shown in the suptitle).
    path: output PNG path (parent dirs are created).
    ncols: grid columns.
  Returns:
    path.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  images, labels = np.asarray(images), np.asarray(labels)
  n = len(images)
  ncols = max(1, min(ncols, n))
  nrows = max(1, -(-n // ncols))
  fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols, 2.1 * nrows + 0.4), squeeze=False)
  abbrev = [t.replace("_", " ") for t in task_names]
  for i, ax in enumerate(axes.flat):
    ax.axis("off")
    if i >= n:
      continue
    ax.imshow(images[i], interpolation="nearest")
    ax.set_title(_label_str(labels[i]), fontsize=10, family="monospace")
  fig.suptitle("labels = [" + ", ".join(abbrev) + "]   (1 yes, 0 no, ? missing)", fontsize=11)
  fig.tight_layout(rect=(0, 0, 1, 0.97))
  d = os.path.dirname(path)
  if d:
    os.makedirs(d, exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def main(argv):
  del argv
  from absl import flags
  from mtl_jax.data import driving
  from mtl_jax.data.missing import hide_labels
  F = flags.FLAGS
  cfg = driving.SceneConfig(image_size=F.image_size)
  images, labels = driving.render_scenes(F.n, F.seed, cfg)
  if F.missing_frac > 0:
    labels = hide_labels(labels, F.missing_frac, F.seed)
  path = save_scene_grid(images, labels, driving.TASK_NAMES, F.out, ncols=F.ncols)
  print(f"wrote {path}")


if __name__ == "__main__":
  from absl import app, flags
  flags.DEFINE_string("out", "figures/driving_scenes.png", "Output PNG path.")
  flags.DEFINE_integer("n", 32, "Number of scenes.")
  flags.DEFINE_integer("seed", 0, "Scene seed.")
  flags.DEFINE_integer("ncols", 8, "Grid columns.")
  flags.DEFINE_integer("image_size", 32, "Image size in pixels.")
  flags.DEFINE_float("missing_frac", 0.0, "Fraction of labels to hide (shown as ?).")
  app.run(main)
