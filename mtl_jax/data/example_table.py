"""Writes an example table of your-own-data shape: numeric features and yes/no labels
with missing cells, as CSV (`?`, empty and NaN all appear) or NPZ (-1).

  python -m mtl_jax.data.example_table --out=example.csv
  python launch.py --dataset=csv:example.csv

The rows come from the related-tasks generator (related.py), so the four tasks share
half of their signal (rho = 0.5) and a shared network has something to share.
"""
import csv
import os

import numpy as np
from absl import app, flags

from mtl_jax.data import missing, related

OUT = flags.DEFINE_string("out", "example.csv", "Where to write: a .csv or .npz path.")
ROWS = flags.DEFINE_integer("rows", 2000, "Number of examples.", lower_bound=10)
MISSING_FRAC = flags.DEFINE_float("missing_frac", 0.3, "Share of label cells left missing.",
                                  lower_bound=0.0, upper_bound=0.9)
SEED = flags.DEFINE_integer("seed", 0, "Seed of the rows and of the missing cells.")
TASKS = ("task_a", "task_b", "task_c", "task_d")
MISSING_SPELLINGS = ("?", "", "NaN")


def make_table(rows: int, missing_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Features [rows, 40] float32 and labels [rows, 4] int8 with -1 for missing."""
  config = related.RelatedConfig(rho=0.5, num_tasks=len(TASKS))
  teacher = related.make_teacher(seed, config)
  x, y = related.sample(rows, seed + 1, teacher, config)
  return x.astype(np.float32), missing.hide_labels(y, missing_frac, seed + 2)


def write_csv(path: str, x: np.ndarray, y: np.ndarray) -> None:
  spellings = np.random.default_rng(0).integers(len(MISSING_SPELLINGS), size=y.shape)
  header = [f"x{i + 1}" for i in range(x.shape[1])] + [f"label:{t}" for t in TASKS]
  with open(path, "w", newline="") as f:
    out = csv.writer(f)
    out.writerow(header)
    for features, labels, spelling in zip(x, y, spellings):
      cells = [MISSING_SPELLINGS[s] if v == missing.MISSING else str(v) for v, s in zip(labels, spelling)]
      out.writerow([f"{v:.5g}" for v in features] + cells)


def main(argv):
  del argv
  x, y = make_table(ROWS.value, MISSING_FRAC.value, SEED.value)
  path = OUT.value
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  if path.endswith(".npz"):
    np.savez(path, x=x, y=y, task_names=np.array(TASKS))
  else:
    write_csv(path, x, y)
  print(f"wrote {path}: {len(y)} rows, {x.shape[1]} features, tasks {', '.join(TASKS)}, "
        f"{np.mean(y == missing.MISSING):.0%} of labels missing")


if __name__ == "__main__":
  app.run(main)
