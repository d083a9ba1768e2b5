"""Prediction files, by --out's extension: one row per example of the new file, in its
order, with `example` (its index from 0), then per task `probability:TASK` and
`decision:TASK` (1 or 0). A probability is written as the shortest text that reads back
to the same float64. Each file is written atomically (results.write_atomically)."""
import csv
from typing import Callable, Iterator, Sequence

import numpy as np

from mtl_jax.results import write_atomically


def columns(task_names: Sequence[str]) -> list[str]:
  return ["example"] + [f"{kind}:{t}" for t in task_names for kind in ("probability", "decision")]


def _rows(prob_NxT: np.ndarray, decision_NxT: np.ndarray) -> Iterator[list]:
  for i, (probs, decisions) in enumerate(zip(prob_NxT, decision_NxT)):
    yield [i] + [cell for p, d in zip(probs, decisions) for cell in (repr(float(p)), int(d))]


def _write_csv(tmp: str, task_names: Sequence[str], prob_NxT: np.ndarray, decision_NxT: np.ndarray) -> None:
  with open(tmp, "w", newline="") as f:
    out = csv.writer(f)
    out.writerow(columns(task_names))
    out.writerows(_rows(prob_NxT, decision_NxT))


def _arff_name(name: str) -> str:
  """An attribute name in single quotes (a task may hold spaces, commas or quotes)."""
  return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _write_arff(tmp: str, task_names: Sequence[str], prob_NxT: np.ndarray, decision_NxT: np.ndarray) -> None:
  with open(tmp, "w") as f:
    f.write("@relation predictions\n\n")
    for name in columns(task_names):
      kind = "{0,1}" if name.startswith("decision:") else "numeric"
      f.write(f"@attribute {_arff_name(name)} {kind}\n")
    f.write("\n@data\n")
    f.writelines(",".join(map(str, row)) + "\n" for row in _rows(prob_NxT, decision_NxT))


WRITERS: dict[str, Callable[..., None]] = {".csv": _write_csv, ".arff": _write_arff}


def write(path: str, task_names: Sequence[str], prob_NxT: np.ndarray, decision_NxT: np.ndarray) -> None:
  """`path` ends with a key of WRITERS (the caller checks)."""
  writer = next(w for ext, w in WRITERS.items() if path.endswith(ext))
  write_atomically(path, lambda tmp: writer(tmp, task_names, prob_NxT, decision_NxT))
