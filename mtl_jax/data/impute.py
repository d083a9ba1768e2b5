"""Missing feature cells (`?`) filled, when the user asks for it (`--impute`).

By default a missing feature is an error naming its row and column (tables.py,
arff_table.py): a column with missing cells is more often a label that was not
declared one. With `mean` each cell is filled with its column's mean over the train
split only, after validation and test are cut (so their values never reach the
model through the fill); with `zero`, with 0. The run prints what was filled.
"""
from typing import Optional, Sequence

import numpy as np

from mtl_jax.data import columns
from mtl_jax.errors import InputError

IMPUTE = ("none", "mean", "zero")


def fill(xs: dict, how: str, feature_names: Sequence[str], dataset: str
         ) -> tuple[dict, Optional[str], Optional[np.ndarray]]:
  """(each split's features with NaN cells filled, a line saying what was filled or None,
  the fill value of each column [D] or None without --impute). xs: split name -> [N, D]
  float32, with NaN where a cell was missing. The values are returned even when nothing
  here was missing: new data read for predictions may have missing cells."""
  if how == "none":
    return xs, None, None
  missing = {name: np.isnan(x) for name, x in xs.items()}
  count = sum(int(m.sum()) for m in missing.values())
  train = xs["train"]
  if how == "mean":
    empty = np.flatnonzero(np.all(missing["train"], axis=0))
    if empty.size:
      raise InputError(f"{dataset}: feature column {_name(feature_names, empty[0])} has no value in "
                       "the train split, so it has no mean; leave it out with --ignore_columns or "
                       "use --impute=zero")
    values = np.nanmean(train, axis=0).astype(train.dtype)
  else:
    values = np.zeros(train.shape[1], dtype=train.dtype)
  if count == 0:
    return xs, None, values
  filled = {name: np.where(missing[name], values, x) for name, x in xs.items()}
  touched = np.flatnonzero(np.any(np.stack([m.any(axis=0) for m in missing.values()]), axis=0))
  names = [_name(feature_names, j) for j in touched]
  what = "the train split's mean" if how == "mean" else "0"
  return filled, (f"imputed {count} missing feature cells in {len(names)} columns with {what} "
                  f"(--impute={how}): {columns.describe_names(names)}"), values


def _name(feature_names: Sequence[str], j: int) -> str:
  return feature_names[j] if feature_names else f"x[..., {j}]"
