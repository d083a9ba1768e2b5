"""A user's own data: a CSV table or an NPZ file of features and yes/no labels.

CSV: a header row, then one row per example. Every column whose header starts with
`label:` is a label column (the task is the rest of the name), as is every column
named in `label_columns`, which also picks the tasks to train and their order (with or
without the prefix; or `last:N` / `first:N`, see columns.py); by default they are all
the `label:` columns. A label cell is 1 or 0, or missing as `?`, empty or NaN. An
optional column `split` (train / val / test) gives the dataset's own split. Columns in
`ignore_columns` are left out. Every other column is a numeric feature; one with
missing cells (`?`, empty) is refused, naming the flags that say what it is, unless
`impute` (the cells are then NaN, for datasets.py to fill from the train split).

NPZ: arrays `x` [N, ...] (features or images, numeric) and `y` [N, T] (1, 0, and -1
or NaN for missing); optional `task_names` [T] and `split` [N] as string arrays. It is
opened with allow_pickle=False, so a user's file is never unpickled.

Both return a `Table`; every problem is an InputError naming the file and where. Each
file's bytes are read once (files.py), so the run's hash describes what was parsed and
a pipe can be read. A CSV is UTF-8, with or without the byte-order mark a spreadsheet
writes. Features must hold in float32, the precision the model computes in. A task
appears once.
"""
import csv
import dataclasses
import io
import zipfile
import zlib
from typing import Optional, Sequence

import numpy as np

from mtl_jax.data import columns, files
from mtl_jax.data.files import open_error  # noqa: F401 (kept where callers found it)
from mtl_jax.data.missing import MISSING
from mtl_jax.errors import InputError

LABEL_PREFIX = "label:"
SPLIT_COLUMN = "split"
SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "test": "test"}
MISSING_SPELLINGS = ("?", "", "nan")  # compared after strip() and lower()
# A feature cell that is missing (a NaN is refused as not finite, as before).
MISSING_FEATURE_SPELLINGS = ("?", "")
YES_SPELLINGS, NO_SPELLINGS = ("1", "1.0"), ("0", "0.0")
# The model computes in float32: a feature beyond this is inf to it.
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Separators a spreadsheet may write instead of commas (a European locale's ';').
OTHER_SEPARATORS = (";", "\t", "|")


@dataclasses.dataclass(frozen=True)
class Table:
  x: np.ndarray  # [N, ...] float32 features or uint8 images
  y: np.ndarray  # [N, T] int8: 1, 0, or -1 missing
  task_names: tuple[str, ...]
  split: Optional[np.ndarray]  # [N] of "train" / "val" / "test", or None: split by seed
  # The name of each feature along x's last axis, for messages; empty: x[..., j].
  feature_names: tuple[str, ...] = ()
  # What the reader decided that the user should see (a column left out, a label source
  # ignored), printed at the start of a run.
  notes: tuple[str, ...] = ()


def _text(value) -> str:
  """A cell or array entry as text: an NPZ's byte strings (dtype S) are text too, not
  "b'train'"."""
  return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _split_values(path: str, values: Sequence[str], where) -> np.ndarray:
  out = []
  for i, value in enumerate(values):
    name = SPLIT_NAMES.get(_text(value).strip().lower())
    if name is None:
      raise InputError(f"{path}: {where(i)} has split {_text(value)!r}; use train, val or test")
    out.append(name)
  return np.asarray(out)


def _check_finite(path: str, x: np.ndarray, where, missing: Optional[np.ndarray] = None) -> None:
  """missing: where x is NaN because the cell was missing (to be imputed)."""
  bad = np.argwhere(~np.isfinite(x) if missing is None else ~(np.isfinite(x) | missing))
  if bad.size:
    raise InputError(f"{path}: {where(bad[0])} is {x[tuple(bad[0])]}; features must be finite")


def to_float32(path: str, x: np.ndarray, where, missing: Optional[np.ndarray] = None) -> np.ndarray:
  """x as the model will see it, float32, refusing a value float32 cannot hold:
  finite in the file (float64), 1e39 would be inf to the model. `missing`: cells that
  are NaN because they were missing, and stay NaN."""
  _check_finite(path, x, where, missing)
  with np.errstate(over="ignore", under="ignore"):
    x32 = x.astype(np.float32)
  beyond = np.argwhere(np.isfinite(x) & ~np.isfinite(x32))
  if beyond.size:
    index = tuple(beyond[0])
    raise InputError(f"{path}: {where(beyond[0])} is {x[index]:g}, beyond float32's range "
                     f"(±{FLOAT32_MAX:.1e}), in which the model computes; rescale that feature")
  return x32


def _check_unique_tasks(path: str, names: Sequence[str], source: str) -> None:
  """The same task twice would be trained and scored twice, and count twice in
  every mean over tasks."""
  seen = set()
  for name in names:
    if name in seen:
      raise InputError(f"{path}: {source} name task {name!r} twice; each task must appear once")
    seen.add(name)


# -- CSV ------------------------------------------------------------------------------

def decode(path: str, data: bytes, save_as: str = "CSV UTF-8") -> str:
  """UTF-8 text, without the byte-order mark a spreadsheet's "CSV UTF-8" puts before
  the first header (which would turn `label:t0` into a feature column)."""
  try:
    return data.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
      raise InputError(f"{path} is UTF-16 text; save it as {save_as}") from None
    line = data[:e.start].count(b"\n") + 1
    raise InputError(f"{path}: line {line} is not UTF-8 text (byte {data[e.start]:#04x}); "
                     f"save it as {save_as}") from None


def _csv_rows(path: str, text: str) -> tuple[list[int], list[list[str]]]:
  """The rows that hold anything, and the file line each starts on (blank lines, and
  rows of empty cells as a spreadsheet writes below its data, are skipped but counted;
  a quoted cell may span lines)."""
  reader = csv.reader(io.StringIO(text, newline=""))
  lines, rows, end = [], [], 0
  try:
    for row in reader:
      start, end = end + 1, reader.line_num
      if any(cell.strip() for cell in row):
        lines.append(start)
        rows.append(row)
  except csv.Error as e:
    raise InputError(f"{path}: line {reader.line_num} is not readable CSV ({e})") from None
  return lines, rows


def _check_header(path: str, header: list[str]) -> None:
  if len(header) == 1:
    separator = next((s for s in OTHER_SEPARATORS if s in header[0]), None)
    if separator:
      raise InputError(f"{path}: the header is one column, {header[0]!r}; the file seems separated "
                       f"by {separator!r}, and a CSV here is separated by commas")
  for i, name in enumerate(header):
    if not name:
      raise InputError(f"{path}: column {i + 1} of the header has no name")
    if name.startswith(LABEL_PREFIX) and not name.removeprefix(LABEL_PREFIX).strip():
      raise InputError(f"{path}: column {i + 1}, {name!r}, names no task after {LABEL_PREFIX!r}")
    if name in header[:i]:
      raise InputError(f"{path}: the header repeats the column {name!r}")


def _parse_labels(path: str, cells_NxT: np.ndarray, names: Sequence[str], lines: Sequence[int]
                  ) -> np.ndarray:
  cells = np.char.lower(np.char.strip(cells_NxT))
  yes, no = np.isin(cells, YES_SPELLINGS), np.isin(cells, NO_SPELLINGS)
  unknown = np.argwhere(~(yes | no | np.isin(cells, MISSING_SPELLINGS)))
  if unknown.size:
    row, col = unknown[0]
    cell = str(cells_NxT[row, col])
    raise InputError(f"{path}: line {lines[row]}, label column {names[col]!r}: {cell!r} is not 1, "
                     f"0 or missing (?, empty, NaN); {_label_hint(cell)}")
  return np.where(yes, 1, np.where(no, 0, MISSING)).astype(np.int8)


def _label_hint(cell: str) -> str:
  """What to write instead of a label cell that is none of the spellings."""
  word = cell.strip().lower()
  if word in ("na", "n/a", "null", "none", "-", "-nan"):
    return "write ? for a missing label"
  if word in ("true", "false", "yes", "no", "y", "n", "t", "f"):
    return "write 1 for yes and 0 for no"
  try:
    value = float(word)
  except ValueError:
    return "a task is a yes/no question, labelled 1 or 0"
  if value in (0.0, 1.0):
    return f"write it as {abs(value):.0f}"
  if value == MISSING:
    return "-1 means missing in an NPZ file only; in a CSV write ?"
  return "a task is a yes/no question: turn a class number or a probability into 1 or 0"


def _not_a_number(path: str, cell: str, line: int, name: str) -> InputError:
  return InputError(f"{path}: line {line}, feature column {name!r}: {cell!r} is not a number "
                    f"(list label columns with --label_columns, or leave it out with "
                    f"--ignore_columns={name})")


def _missing_feature(path: str, cells_N: np.ndarray, missing_N: np.ndarray, line: int, name: str
                     ) -> InputError:
  """The error for a feature column with a missing cell: most often a label column that
  --label_columns left out, which would train as an input (label leakage)."""
  cell = str(cells_N[np.argmax(missing_N)])
  known = np.char.strip(cells_N[~missing_N])
  if known.size and np.all(np.isin(known, YES_SPELLINGS + NO_SPELLINGS)):
    return InputError(
        f"{path}: column {name!r} holds only 0, 1 and missing cells (line {line}: {cell!r}), as a "
        f"label does, but is not a label column, so it would train as a feature: if it is a label, "
        f"name it in --label_columns (names, or last:N / first:N); if not, leave it out with "
        f"--ignore_columns={name}, or fill it with --impute=mean|zero")
  return InputError(
      f"{path}: line {line}, feature column {name!r} is missing ({cell!r}); only labels may be "
      f"missing: name a label in --label_columns (or last:N / first:N), leave the column out with "
      f"--ignore_columns={name}, or fill missing features with --impute=mean|zero")


def _parse_features(path: str, cells_NxD: np.ndarray, names: Sequence[str], lines: Sequence[int],
                    impute: bool = False) -> np.ndarray:
  """Float32 features; missing cells are refused, or NaN where `impute`."""
  missing = np.isin(np.char.strip(cells_NxD), MISSING_FEATURE_SPELLINGS)
  if missing.any() and not impute:
    row, col = np.argwhere(missing)[0]
    raise _missing_feature(path, cells_NxD[:, col], missing[:, col], lines[row], names[col])
  cells_NxD = np.where(missing, "nan", cells_NxD)
  try:
    x = cells_NxD.astype(np.float64)
  except ValueError:
    for (row, col), cell in np.ndenumerate(cells_NxD):
      try:
        float(cell)
      except ValueError:
        raise _not_a_number(path, str(cell), lines[row], names[col]) from None
    raise
  return to_float32(path, x, lambda rc: f"line {lines[rc[0]]}, feature column {names[rc[1]]!r}",
                    missing)


def _label_columns(path: str, header: list[str], label_columns: Sequence[str], ignore: set[str]
                   ) -> tuple[list[int], list[int]]:
  """(the columns to train on, in order; every label column, none of them a feature)."""
  prefixed = [i for i, name in enumerate(header) if name.startswith(LABEL_PREFIX)]
  position = columns.position_spec(label_columns)
  if position:
    candidates = [name for name in header if name != SPLIT_COLUMN and name not in ignore]
    label_columns = columns.by_position(path, candidates, *position)
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


def _csv_cells(path: str, data: bytes) -> tuple[list[str], np.ndarray, list[int]]:
  """The header, the cells [N, columns] and the file line of each of the N rows."""
  lines, rows = _csv_rows(path, decode(path, data))
  if len(rows) < 2:
    raise InputError(f"{path} is empty: it needs a header row and at least one data row")
  header, lines = [name.strip() for name in rows[0]], lines[1:]
  for line, row in zip(lines, rows[1:]):
    if len(row) != len(header):
      raise InputError(f"{path}: line {line} has {len(row)} cells but the header has {len(header)}")
  cells = np.asarray(rows[1:], dtype=str)
  # A column without a name or any value (a trailing comma on every line) holds nothing.
  kept = [i for i, name in enumerate(header) if name or np.any(np.char.strip(cells[:, i]) != "")]
  header, cells = [header[i] for i in kept], cells[:, kept]
  _check_header(path, header)
  return header, cells, lines


def read_csv(path: str, label_columns: Sequence[str] = (), data: Optional[bytes] = None,
             ignore_columns: Sequence[str] = (), impute: bool = False) -> Table:
  """`data`: the file's bytes, if read already (files.read); else the file is read
  (a pipe that was read already gives the same bytes again)."""
  header, cells, lines = _csv_cells(path, files.read(path, reuse=False).data if data is None else data)
  ignore = columns.ignored(path, header, ignore_columns)
  label_idx, not_features = _label_columns(path, header, label_columns, ignore)
  columns.check_not_ignored(path, [header[i] for i in label_idx], ignore)
  split_idx = [header.index(SPLIT_COLUMN)] if SPLIT_COLUMN in header else []
  feature_idx = [i for i in range(len(header))
                 if i not in not_features + split_idx and header[i] not in ignore]
  if not feature_idx:
    raise InputError(f"{path}: no feature columns, only labels")
  names = [header[i].removeprefix(LABEL_PREFIX).strip() for i in label_idx]
  _check_unique_tasks(path, names, "the label columns")
  feature_names = [header[i] for i in feature_idx]
  return Table(
      x=_parse_features(path, cells[:, feature_idx], feature_names, lines, impute),
      y=_parse_labels(path, cells[:, label_idx], [header[i] for i in label_idx], lines),
      task_names=tuple(names),
      split=(_split_values(path, cells[:, split_idx[0]], lambda i: f"line {lines[i]}")
             if split_idx else None),
      feature_names=tuple(feature_names))


# -- NPZ ------------------------------------------------------------------------------

# What a damaged zip raises while its members are read.
_DAMAGED_ZIP = (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)


def _npz_arrays(path: str, data: bytes) -> dict:
  """The arrays of an NPZ file's bytes; a file that is no zip, a truncated or damaged
  one, or a member that is no .npy array is one clear error."""
  if not zipfile.is_zipfile(io.BytesIO(data)):  # np.load would try it as a pickle
    truncated = " (it starts like one, but its end is missing: truncated?)" if data[:4] == b"PK\x03\x04" else ""
    raise InputError(f"cannot read {path}: not an NPZ file{truncated} (write one with numpy.savez)")
  arrays = {}
  try:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
      for name in npz.files:
        try:
          arrays[name] = npz[name]
        except ValueError as e:  # object arrays, which only unpickling could read, or a bad header
          if "allow_pickle" in str(e):
            raise InputError(f"{path}: array {name!r}: {e}; store x and y as numeric arrays") from None
          raise InputError(f"{path}: member {name!r} is not a readable .npy array ({e})") from None
  except _DAMAGED_ZIP as e:
    raise InputError(f"cannot read {path}: {e} (a damaged NPZ; write it again)") from None
  for name, value in arrays.items():
    if not isinstance(value, np.ndarray):  # np.load hands back a member's raw bytes
      raise InputError(f"{path}: member {name!r} is not a .npy array; write the file with numpy.savez")
  return arrays


def _is_real_number(a: np.ndarray) -> bool:
  return a.dtype == bool or (np.issubdtype(a.dtype, np.number) and not np.issubdtype(a.dtype, np.complexfloating))


def _npz_labels(path: str, y: np.ndarray) -> np.ndarray:
  if y.ndim != 2 or not _is_real_number(y):
    raise InputError(f"{path}: y must be a numeric [N, T] array; got {y.dtype} {y.shape}")
  if y.shape[1] == 0:
    raise InputError(f"{path}: y has no columns {y.shape}: there are no tasks to train")
  y = y.astype(np.float64)
  missing = np.isnan(y) | (y == MISSING)
  bad = np.argwhere(~(missing | (y == 0) | (y == 1)))
  if bad.size:
    row, col = bad[0]
    raise InputError(f"{path}: y[{row}, {col}] is {y[row, col]:g}; labels must be 1, 0, "
                     "or -1 / NaN for missing")
  return np.where(missing, MISSING, y).astype(np.int8)


def _npz_features(path: str, x: np.ndarray) -> np.ndarray:
  if not _is_real_number(x) or x.dtype == bool or x.ndim < 2:
    raise InputError(f"{path}: x must be a numeric [N, ...] array; got {x.dtype} {x.shape}")
  if np.prod(x.shape[1:]) == 0:
    raise InputError(f"{path}: x has no features {x.shape}")
  if x.dtype == np.uint8:  # uint8 stays as images; anything else becomes float features
    return x
  where = lambda index: f"x[{', '.join(map(str, index))}]"
  if np.can_cast(x.dtype, np.float32):  # float32 holds every value exactly
    x = x.astype(np.float32)
    _check_finite(path, x, where)
    return x
  return to_float32(path, x.astype(np.float64), where)


def _npz_task_names(path: str, arrays: dict, num_tasks: int) -> tuple[str, ...]:
  names = arrays.get("task_names")
  if names is None:
    return tuple(f"task_{j + 1}" for j in range(num_tasks))
  if names.ndim != 1 or len(names) != num_tasks:
    count = len(names) if names.ndim == 1 else f"{names.shape} of"
    raise InputError(f"{path}: {count} task_names for the {num_tasks} columns of y")
  names = tuple(_text(n) for n in names)
  _check_unique_tasks(path, names, "its task_names")
  return names


def read_npz(path: str, label_columns: Sequence[str] = (), data: Optional[bytes] = None) -> Table:
  """`data`: the file's bytes, if read already (files.read); else the file is read
  (a pipe that was read already gives the same bytes again)."""
  arrays = _npz_arrays(path, files.read(path, reuse=False).data if data is None else data)
  for name in ("x", "y"):
    if name not in arrays:
      raise InputError(f"{path} has no array {name!r}; it has {', '.join(arrays) or 'none'}")
  x, y = arrays["x"], _npz_labels(path, arrays["y"])
  if x.ndim == 0 or len(x) != len(y):
    raise InputError(f"{path}: x has {len(x) if x.ndim else 'no'} examples but y has {len(y)}")
  if len(y) == 0:
    raise InputError(f"{path} is empty: x and y have no examples")
  x = _npz_features(path, x)
  names = _npz_task_names(path, arrays, y.shape[1])
  split = arrays.get("split")
  if split is not None and (split.ndim != 1 or len(split) != len(y)):
    count = len(split) if split.ndim == 1 else f"a {split.shape} array of"
    raise InputError(f"{path}: split has {count} entries but y has {len(y)}")
  table = Table(x, y, names, None if split is None else
                _split_values(path, split, lambda i: f"split[{i}]"))
  return select_tasks(path, table, label_columns) if label_columns else table


def select_tasks(path: str, table: Table, names: Sequence[str]) -> Table:
  position = columns.position_spec(names)
  if position:
    names = columns.by_position(path, table.task_names, *position)
  _check_unique_tasks(path, names, "the label columns")
  unknown = [n for n in names if n not in table.task_names]
  if unknown:
    raise InputError(f"{path}: no task {unknown[0]!r}; its tasks are {', '.join(table.task_names)}")
  idx = [table.task_names.index(n) for n in names]
  return dataclasses.replace(table, y=table.y[:, idx], task_names=tuple(names))


READERS = {"csv": read_csv, "npz": read_npz}


def read_table(kind: str, path: str, label_columns: Sequence[str] = (), data: Optional[bytes] = None,
               **options) -> Table:
  """`data`: the file's bytes, if read already (files.read): the parse then uses the
  very bytes the run's hash was taken of. `options`: a CSV's ignore_columns and impute."""
  return READERS[kind](files.check_path(kind, path), label_columns, data, **options)
