"""A user's own data: a CSV table or an NPZ file of features and yes/no labels.

CSV: a header row, then one row per example. Every column whose header starts with
`label:` is a label column (the task is the rest of the name), as is every column
named in `label_columns`, which also picks the tasks to train and their order (with or
without the prefix); by default they are all the `label:` columns. A label cell is 1 or 0, or missing as `?`, empty or NaN. An
optional column `split` (train / val / test) gives the dataset's own split. Every
other column is a numeric feature.

NPZ: arrays `x` [N, ...] (features or images, numeric) and `y` [N, T] (1, 0, and -1
or NaN for missing); optional `task_names` [T] and `split` [N] as string arrays. It is
opened with allow_pickle=False, so a user's file is never unpickled.

Both return a `Table`; every problem is an InputError naming the file and where.
"""
import csv
import dataclasses
import os
import zipfile
from typing import Optional, Sequence

import numpy as np

from mtl_jax.data.missing import MISSING
from mtl_jax.errors import InputError

LABEL_PREFIX = "label:"
SPLIT_COLUMN = "split"
SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "test": "test"}
MISSING_SPELLINGS = ("?", "", "nan")  # compared after strip() and lower()
YES_SPELLINGS, NO_SPELLINGS = ("1", "1.0"), ("0", "0.0")


@dataclasses.dataclass(frozen=True)
class Table:
  x: np.ndarray  # [N, ...] float32 features or uint8 images
  y: np.ndarray  # [N, T] int8: 1, 0, or -1 missing
  task_names: tuple[str, ...]
  split: Optional[np.ndarray]  # [N] of "train" / "val" / "test", or None: split by seed


def open_error(path: str, e: Exception) -> InputError:
  if isinstance(e, FileNotFoundError):
    return InputError(f"{path}: no such file")
  if isinstance(e, IsADirectoryError):
    return InputError(f"{path} is a directory, not a file")
  return InputError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}")


def _split_values(path: str, values: Sequence[str], where: str) -> np.ndarray:
  out = []
  for i, value in enumerate(values):
    name = SPLIT_NAMES.get(str(value).strip().lower())
    if name is None:
      raise InputError(f"{path}: {where(i)} has split {str(value)!r}; use train, val or test")
    out.append(name)
  return np.asarray(out)


def _check_finite(path: str, x: np.ndarray, where) -> None:
  bad = np.argwhere(~np.isfinite(x))
  if bad.size:
    raise InputError(f"{path}: {where(bad[0])} is {x[tuple(bad[0])]}; features must be finite")


def _parse_labels(path: str, cells_NxT: np.ndarray, names: Sequence[str]) -> np.ndarray:
  cells = np.char.lower(np.char.strip(cells_NxT))
  yes, no = np.isin(cells, YES_SPELLINGS), np.isin(cells, NO_SPELLINGS)
  unknown = np.argwhere(~(yes | no | np.isin(cells, MISSING_SPELLINGS)))
  if unknown.size:
    row, col = unknown[0]
    raise InputError(f"{path}: line {row + 2}, label column {names[col]!r}: "
                     f"{str(cells_NxT[row, col])!r} is not 1, 0 or missing (?, empty, NaN)")
  return np.where(yes, 1, np.where(no, 0, MISSING)).astype(np.int8)


def _parse_features(path: str, cells_NxD: np.ndarray, names: Sequence[str]) -> np.ndarray:
  try:
    x = cells_NxD.astype(np.float64)
  except ValueError:
    for (row, col), cell in np.ndenumerate(cells_NxD):
      try:
        float(cell)
      except ValueError:
        raise InputError(f"{path}: line {row + 2}, feature column {names[col]!r}: {str(cell)!r} is "
                         f"not a number (list label columns with --label_columns)") from None
    raise
  _check_finite(path, x, lambda rc: f"line {rc[0] + 2}, feature column {names[rc[1]]!r}")
  return x.astype(np.float32)


def _label_columns(path: str, header: list[str], label_columns: Sequence[str]
                   ) -> tuple[list[int], list[int]]:
  """(the columns to train on, in order; every label column, none of them a feature)."""
  prefixed = [i for i, name in enumerate(header) if name.startswith(LABEL_PREFIX)]
  if not label_columns:
    if not prefixed:
      raise InputError(f"{path}: no label columns; name them with --label_columns, or start "
                       f"their headers with {LABEL_PREFIX!r}")
    return prefixed, prefixed
  chosen = []
  for name in label_columns:
    for candidate in (name, LABEL_PREFIX + name):
      if candidate in header:
        chosen.append(header.index(candidate))
        break
    else:
      raise InputError(f"{path}: no label column {name!r}; the columns are {', '.join(header)}")
  return chosen, sorted(set(chosen) | set(prefixed))


def read_csv(path: str, label_columns: Sequence[str] = ()) -> Table:
  try:
    with open(path, newline="") as f:
      rows = list(csv.reader(f))
  except (OSError, UnicodeDecodeError) as e:
    raise open_error(path, e) from None
  except csv.Error as e:
    raise InputError(f"{path}: not a readable CSV ({e})") from None
  rows = [row for row in rows if row]  # blank lines, as at the end of a file
  if len(rows) < 2:
    raise InputError(f"{path} is empty: it needs a header row and at least one data row")
  header = [name.strip() for name in rows[0]]
  for line, row in enumerate(rows[1:], 2):
    if len(row) != len(header):
      raise InputError(f"{path}: line {line} has {len(row)} cells but the header has {len(header)}")
  if len(set(header)) < len(header):
    raise InputError(f"{path}: the header repeats a column name")
  cells = np.asarray(rows[1:], dtype=str)
  label_idx, not_features = _label_columns(path, header, label_columns)
  split_idx = [header.index(SPLIT_COLUMN)] if SPLIT_COLUMN in header else []
  feature_idx = [i for i in range(len(header)) if i not in not_features + split_idx]
  if not feature_idx:
    raise InputError(f"{path}: no feature columns, only labels")
  names = [header[i].removeprefix(LABEL_PREFIX) for i in label_idx]
  return Table(
      x=_parse_features(path, cells[:, feature_idx], [header[i] for i in feature_idx]),
      y=_parse_labels(path, cells[:, label_idx], [header[i] for i in label_idx]),
      task_names=tuple(names),
      split=(_split_values(path, cells[:, split_idx[0]], lambda i: f"line {i + 2}")
             if split_idx else None))


def _npz_labels(path: str, y: np.ndarray) -> np.ndarray:
  if y.ndim != 2 or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
    raise InputError(f"{path}: y must be a numeric [N, T] array; got {y.dtype} {y.shape}")
  y = y.astype(np.float64)
  missing = np.isnan(y) | (y == MISSING)
  bad = np.argwhere(~(missing | (y == 0) | (y == 1)))
  if bad.size:
    row, col = bad[0]
    raise InputError(f"{path}: y[{row}, {col}] is {y[row, col]:g}; labels must be 1, 0, "
                     "or -1 / NaN for missing")
  return np.where(missing, MISSING, y).astype(np.int8)


def read_npz(path: str, label_columns: Sequence[str] = ()) -> Table:
  try:
    is_zip = zipfile.is_zipfile(path)
    with open(path, "rb"):
      pass
  except OSError as e:
    raise open_error(path, e) from None
  if not is_zip:  # np.load would try it as a pickle
    raise InputError(f"cannot read {path}: not an NPZ file (write one with numpy.savez)")
  try:
    with np.load(path, allow_pickle=False) as npz:
      arrays = {name: npz[name] for name in npz.files}
  except (OSError, zipfile.BadZipFile, EOFError) as e:
    raise open_error(path, e) from None
  except ValueError as e:  # object arrays, which only unpickling could read
    raise InputError(f"{path}: {e}; store x and y as numeric arrays") from None
  for name in ("x", "y"):
    if name not in arrays:
      raise InputError(f"{path} has no array {name!r}; it has {', '.join(arrays) or 'none'}")
  x, y = arrays["x"], _npz_labels(path, arrays["y"])
  if len(x) != len(y):
    raise InputError(f"{path}: x has {len(x)} examples but y has {len(y)}")
  if len(y) == 0:
    raise InputError(f"{path} is empty: x and y have no examples")
  if not np.issubdtype(x.dtype, np.number) or x.ndim < 2:
    raise InputError(f"{path}: x must be a numeric [N, ...] array; got {x.dtype} {x.shape}")
  if x.dtype != np.uint8:  # uint8 stays as images; anything else becomes float features
    x = x.astype(np.float32)
    _check_finite(path, x, lambda index: f"x[{', '.join(map(str, index))}]")
  names = tuple(str(n) for n in arrays.get("task_names", [f"task_{j + 1}" for j in range(y.shape[1])]))
  if len(names) != y.shape[1]:
    raise InputError(f"{path}: {len(names)} task_names for the {y.shape[1]} columns of y")
  split = arrays.get("split")
  if split is not None and len(split) != len(y):
    raise InputError(f"{path}: split has {len(split)} entries but y has {len(y)}")
  table = Table(x, y, names, None if split is None else
                _split_values(path, split, lambda i: f"split[{i}]"))
  return select_tasks(path, table, label_columns) if label_columns else table


def select_tasks(path: str, table: Table, names: Sequence[str]) -> Table:
  unknown = [n for n in names if n not in table.task_names]
  if unknown:
    raise InputError(f"{path}: no task {unknown[0]!r}; its tasks are {', '.join(table.task_names)}")
  idx = [table.task_names.index(n) for n in names]
  return dataclasses.replace(table, y=table.y[:, idx], task_names=tuple(names))


READERS = {"csv": read_csv, "npz": read_npz}


def read_table(kind: str, path: str, label_columns: Sequence[str] = ()) -> Table:
  return READERS[kind](os.path.expanduser(path), label_columns)
