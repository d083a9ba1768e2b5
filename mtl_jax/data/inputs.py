"""A new file's inputs, read as a trained run read its own (python -m mtl_jax.predict):
the run's feature columns, found by name and put in the run's order, whatever the new
file's column order; label columns may be there or not and are left out.

Named-column files (csv, arff) must hold exactly the run's
feature columns: a column missing, or one the run never saw (that is neither a label
nor the split column), is one error naming them all, never a silent guess. An NPZ's
`x` has no column names, so it serves only runs trained on unnamed inputs (an NPZ or
images), checked by shape where the run's inputs are known (inference.py).

Each kind is one reader in INPUT_READERS, by the --dataset prefix, as the training
readers are in tables.READERS.
"""
import dataclasses
from typing import Callable

import numpy as np

from mtl_jax.data import arff, arff_table, files, tables
from mtl_jax.errors import InputError

# How many names an error lists before "and N more".
_SHOWN = 8


@dataclasses.dataclass(frozen=True)
class RunColumns:
  """What a trained run knows of its inputs' columns."""
  features: tuple[str, ...]  # in the order the model reads them; empty: unnamed inputs
  # Names that a new file may hold and that are not inputs: the run's tasks (with or
  # without the label: prefix) and label columns. Any `label:` column and the split
  # column are left out too.
  not_features: tuple[str, ...] = ()
  # Whether a missing feature cell is read as NaN, for the run to fill as training did
  # (--impute); otherwise it is refused as in training.
  fills_missing: bool = False

  def is_not_feature(self, name: str) -> bool:
    return (name.startswith(tables.LABEL_PREFIX) or name == tables.SPLIT_COLUMN
            or name in self.not_features)


def _listed(names: list[str]) -> str:
  shown = ", ".join(repr(n) for n in names[:_SHOWN])
  return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def feature_indices(path: str, header: list[str], run: RunColumns) -> list[int]:
  """Where each of the run's features is in `header`, in the run's order; one
  InputError naming every missing and every unknown column."""
  missing = [name for name in run.features if name not in header]
  extra = [name for name in header if name not in run.features and not run.is_not_feature(name)]
  if missing or extra:
    parts = ([f"missing {_listed(missing)}"] if missing else []) + (
        [f"not a feature of the run: {_listed(extra)}"] if extra else [])
    raise InputError(f"{path}: its columns are not the {len(run.features)} feature columns the run "
                     f"was trained on: {'; '.join(parts)} (label columns and '{tables.SPLIT_COLUMN}' "
                     "are left out; any other column must be one of the run's features)")
  return [header.index(name) for name in run.features]


def _refuse_missing(path: str, x: np.ndarray, run: RunColumns, row_name) -> np.ndarray:
  """x, unless a feature cell is missing (NaN) and the run has no fill values for it."""
  if run.fills_missing or not np.isnan(x).any():
    return x
  row, column = np.argwhere(np.isnan(x))[0]
  raise InputError(f"{path}: {row_name(row)}, feature column {run.features[column]!r} is missing; the "
                   "run was trained without --impute, so it has no value to fill in: give every "
                   "feature, or train again with --impute=mean|zero and --save_params")


def _csv_inputs(path: str, data: bytes, run: RunColumns) -> np.ndarray:
  header, cells, lines = tables._csv_cells(path, data)  # the training reader's own parse
  index = feature_indices(path, header, run)
  x = tables._parse_features(path, cells[:, index], list(run.features), lines, impute=True)
  return _refuse_missing(path, x, run, lambda row: f"line {lines[row]}")


def _arff_inputs(path: str, data: bytes, run: RunColumns) -> np.ndarray:
  """As training reads an ARFF file (arff_table): a nominal attribute of more than two
  values is one column per value, named ATTRIBUTE=VALUE, so new data is matched value by
  value; string, date and identifier attributes are never features."""
  parsed = arff.parse(path, data)
  used, offered = [], []
  for j, attribute in enumerate(parsed.attributes):
    names = arff_table._feature_names(attribute)
    if any(name in run.features for name in names):
      used.append(j)
    elif arff_table._identifier_reason(attribute, parsed.codes[:, j]):
      continue
    offered += names  # must all be the run's features, or labels (feature_indices)
  feature_indices(path, offered, run)
  x = arff_table._features(parsed, tuple(used), impute=True)
  columns = [name for j in used for name in arff_table._feature_names(parsed.attributes[j])]
  x = x[:, [columns.index(name) for name in run.features]]
  return _refuse_missing(path, x, run, lambda row: f"data row {row + 1}")


def _npz_inputs(path: str, data: bytes, run: RunColumns) -> np.ndarray:
  arrays = tables._npz_arrays(path, data)  # the training reader's own checks
  if "x" not in arrays:
    raise InputError(f"{path} has no array 'x'; it has {', '.join(arrays) or 'none'}")
  return tables._npz_features(path, arrays["x"])


@dataclasses.dataclass(frozen=True)
class InputReader:
  read: Callable[[str, bytes, RunColumns], np.ndarray]  # (path, bytes, run) -> x [N, ...]
  named: bool  # whether the file's columns have names (then they are matched by name)


INPUT_READERS = {"csv": InputReader(_csv_inputs, named=True),
                 "arff": InputReader(_arff_inputs, named=True),
                 "npz": InputReader(_npz_inputs, named=False)}


def read_inputs(dataset: str, run: RunColumns) -> np.ndarray:
  """x [N, ...] of `dataset` (KIND:PATH), in its row order, its columns as `run` reads them."""
  kind, sep, ref = dataset.partition(":")
  if not sep or kind not in INPUT_READERS:
    raise InputError(f"--dataset={dataset}: predictions read "
                     f"{', '.join(f'{k}:PATH' for k in INPUT_READERS)}")
  reader = INPUT_READERS[kind]
  if reader.named != bool(run.features):
    trained = "named feature columns" if run.features else "unnamed inputs (an NPZ's x, or images)"
    kinds = [f"{k}:PATH" for k, r in INPUT_READERS.items() if r.named == bool(run.features)]
    raise InputError(f"--dataset={dataset}: the run was trained on {trained}, so new data must come "
                     f"as {' or '.join(kinds)}")
  path = files.check_path(kind, ref)
  x = reader.read(path, files.read(path).data, run)
  if len(x) == 0:
    raise InputError(f"{path} holds no examples to predict")
  return x
