"""An ARFF file, and its test file, as a Table of features and yes/no labels.

Labels come from label_sources.py. A label attribute is nominal with one yes value
(1, yes, true, y, t) and one no value (0, no, false, n, f), in any case, or numeric
with only 0 and 1; `?` is a missing label.

Every other attribute is a feature, except
- those named in `--ignore_columns`;
- string and date attributes (an id or a timestamp, never a feature);
- a nominal attribute that looks like an identifier: more than MAX_CATEGORIES values,
  or a different value in every train row (genbase's protein accession);
each left out with a line saying so. Numeric features are taken as they are; a
nominal feature with two values is one 0/1 column (1 for its yes value if it has one,
else for its second declared value); one with more values is one 0/1 column per value,
named `attribute=value`. A missing feature (`?`) is an error naming the file, line and
attribute, unless `impute`: it is then NaN, for datasets.py to fill from the train split.

The layout (which attribute is what) is decided on the train file alone, and a test
file must declare exactly the same attributes.
"""
import dataclasses
from typing import Optional

import numpy as np

from mtl_jax.data import arff, columns, label_sources, tables
from mtl_jax.data.missing import MISSING
from mtl_jax.errors import InputError

YES_VALUES = ("1", "yes", "true", "y", "t")
NO_VALUES = ("0", "no", "false", "n", "f")
# A nominal attribute with more values than this is taken for an identifier: one-hot
# columns for each would be mostly values that the train split never shows.
MAX_CATEGORIES = 100
# Fewer train rows than this cannot tell an identifier from a category by repetition.
MIN_ROWS_FOR_ID = 10

File = tuple[str, bytes]  # a path and its bytes (files.read)


@dataclasses.dataclass(frozen=True)
class _Layout:
  tasks: tuple[int, ...]  # attribute index of each task, in order
  features: tuple[int, ...]  # attribute indices that become feature columns, in order
  notes: tuple[str, ...]


def _yes_index(values: tuple[str, ...]) -> Optional[int]:
  """The index of the yes value of a two-valued nominal attribute, if unambiguous."""
  lowered = [v.strip().lower() for v in values]
  yes = [i for i, v in enumerate(lowered) if v in YES_VALUES]
  no = [i for i, v in enumerate(lowered) if v in NO_VALUES]
  return yes[0] if len(values) == 2 and len(yes) == 1 and len(no) == 1 else None


def _identifier_reason(attribute: arff.Attribute, codes_N: np.ndarray) -> Optional[str]:
  if attribute.kind in ("string", "date"):
    return f"a {attribute.kind} attribute, never a feature"
  if attribute.kind != "nominal" or len(attribute.values) <= 2:
    return None
  if len(attribute.values) > MAX_CATEGORIES:
    return f"nominal with {len(attribute.values)} values (more than {MAX_CATEGORIES}): an identifier"
  known = codes_N[~np.isnan(codes_N)]
  if len(codes_N) >= MIN_ROWS_FOR_ID and len(np.unique(known)) == len(codes_N):
    return f"a different value in each of the {len(codes_N)} train rows: an identifier"
  return None


def _layout(train: arff.Arff, flag: tuple[str, ...], ignore_columns: tuple[str, ...],
            label_file: Optional[tuple[str, tuple[str, ...]]]) -> _Layout:
  names = train.names
  ignore = columns.ignored(train.path, names, ignore_columns)
  found = label_sources.sources(train.path, names, flag, ignore, label_file, train.relation)
  choice = label_sources.choose(train.path, found)
  columns.check_not_ignored(train.path, choice.tasks, ignore)
  notes, features = list(choice.notes), []
  for j, attribute in enumerate(train.attributes):
    if attribute.name in choice.labels or attribute.name in ignore:
      continue
    reason = _identifier_reason(attribute, train.codes[:, j])
    if reason:
      notes.append(f"left out {attribute.name!r}: {reason}")
    else:
      features.append(j)
  if not features:
    raise InputError(f"{train.path}: no feature attributes, only labels and left-out ones")
  return _Layout(tuple(names.index(t) for t in choice.tasks), tuple(features), tuple(notes))


def _labels(data: arff.Arff, tasks: tuple[int, ...]) -> np.ndarray:
  y = np.empty((len(data.codes), len(tasks)), dtype=np.int8)
  for k, j in enumerate(tasks):
    attribute, codes = data.attributes[j], data.codes[:, j]
    missing = np.isnan(codes)
    if attribute.kind == "nominal" and _yes_index(attribute.values) is not None:
      yes = codes == _yes_index(attribute.values)
    elif attribute.kind == "numeric" and np.all(np.isin(codes[~missing], (0.0, 1.0))):
      yes = codes == 1.0
    else:
      raise InputError(_not_a_label(data, j))
    y[:, k] = np.where(missing, MISSING, yes)
  return y


def _not_a_label(data: arff.Arff, j: int) -> str:
  attribute = data.attributes[j]
  where = f"{data.path}: label attribute {attribute.name!r} ({attribute.declaration()})"
  if attribute.kind == "numeric":
    codes = data.codes[:, j]
    row = int(np.flatnonzero(~np.isin(codes, (0.0, 1.0)) & ~np.isnan(codes))[0])
    return f"{where} is {codes[row]:g} on line {data.lines[row]}; a label is 1, 0 or ? (missing)"
  return (f"{where} is not a yes/no label: it needs two values, one yes ({', '.join(YES_VALUES)}) and "
          f"one no ({', '.join(NO_VALUES)})")


def _feature_names(attribute: arff.Attribute) -> list[str]:
  if attribute.kind == "nominal" and len(attribute.values) > 2:
    return [f"{attribute.name}={value}" for value in attribute.values]
  return [attribute.name]


def _one_index(attribute: arff.Attribute) -> Optional[int]:
  """For a feature of one column: the code that is 1 (None: numeric, the code itself)."""
  if attribute.kind == "numeric":
    return None
  yes = _yes_index(attribute.values)
  return yes if yes is not None else len(attribute.values) - 1


def _missing_feature(data: arff.Arff, j: int, row: int) -> InputError:
  name = data.attributes[j].name
  return InputError(f"{data.path}: line {data.lines[row]}, feature attribute {name!r} is missing "
                    f"('?'); only labels may be missing: name labels with --label_columns or "
                    f"--label_file, leave it out with --ignore_columns={name}, or fill missing "
                    f"features with --impute=mean|zero")


def _features(data: arff.Arff, features: tuple[int, ...], impute: bool) -> np.ndarray:
  """[N, D] float32 features, written straight into one array (a 10 MB sparse file's
  are 89 MB dense): numeric codes and nominal ones whose 1 is code 1 in one copy, a
  nominal yes at code 0 as 1 - code, the rest one-hot. NaN stays NaN."""
  widths = [len(_feature_names(data.attributes[j])) for j in features]
  starts = np.cumsum([0] + widths[:-1])
  x = np.empty((len(data.codes), sum(widths)), dtype=np.float32)
  as_is = [k for k, j in enumerate(features) if widths[k] == 1 and _one_index(data.attributes[j]) in (None, 1)]
  if len(as_is) == len(features) and features == tuple(range(features[0], features[-1] + 1)):
    x[:] = data.codes[:, features[0]:features[-1] + 1]  # enron, medical: one block copy
  else:
    x[:, starts[as_is]] = data.codes[:, [features[k] for k in as_is]]
  for k in sorted(set(range(len(features))) - set(as_is)):
    codes = data.codes[:, features[k]]
    if widths[k] == 1:  # two values, 1 for the first one
      x[:, starts[k]] = 1 - codes
    else:
      hot = (codes[:, None] == np.arange(widths[k])[None, :]).astype(np.float32)
      x[:, starts[k]:starts[k] + widths[k]] = np.where(np.isnan(codes)[:, None], np.nan, hot)
  missing = np.isnan(x)
  if missing.any() and not impute:
    row, column = np.argwhere(missing)[0]
    raise _missing_feature(data, features[int(np.searchsorted(starts, column, side="right")) - 1], int(row))
  return x


def _check_same_attributes(train: arff.Arff, test: arff.Arff) -> None:
  if train.attributes == test.attributes:
    return
  if len(train.attributes) != len(test.attributes):
    raise InputError(f"{test.path} declares {len(test.attributes)} attributes but {train.path} "
                     f"declares {len(train.attributes)}; a test file must declare the same attributes")
  j = next(j for j, (a, b) in enumerate(zip(train.attributes, test.attributes)) if a != b)
  a, b = train.attributes[j], test.attributes[j]
  raise InputError(f"{test.path}: attribute {j + 1} is {b.name!r} {b.declaration()[:60]}, but in "
                   f"{train.path} it is {a.name!r} {a.declaration()[:60]}; a test file must declare "
                   "the same attributes")


def read_arff(train_file: File, test_file: Optional[File] = None, label_file: Optional[File] = None,
              label_columns: tuple[str, ...] = (), ignore_columns: tuple[str, ...] = (),
              impute: bool = False) -> tables.Table:
  """The train file (and test file: split 'test') as a Table, with notes on what was
  decided: which label source, which attributes were left out."""
  train = arff.parse(*train_file)
  label_names = label_file and (label_file[0], label_sources.read_label_file(*label_file))
  layout = _layout(train, label_columns, ignore_columns, label_names)
  parts = [train]
  if test_file:
    parts.append(arff.parse(*test_file))
    _check_same_attributes(train, parts[1])
  y = np.concatenate([_labels(part, layout.tasks) for part in parts])
  x = np.concatenate([_features(part, layout.features, impute) for part in parts])
  split = np.repeat(["train", "test"][:len(parts)], [len(part.codes) for part in parts]) if test_file else None
  return tables.Table(x=x, y=y, task_names=tuple(train.names[j] for j in layout.tasks), split=split,
                      feature_names=tuple(n for j in layout.features for n in _feature_names(train.attributes[j])),
                      notes=layout.notes)
