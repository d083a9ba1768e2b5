"""What a summary's 95% interval covers, and how runs pair across arms.

On the data's own split the interval is over initialisation seeds: a Student-t interval
of the per-seed values. With resampled splits (--folds, --split_seeds; see
data/resampling.py) the unit is the split: each split's value is its mean over seeds,
and the interval is the corrected resampled t-interval of Nadeau and Bengio ("Inference
for the generalization error", Machine Learning 2003), as Bouckaert and Frank (PAKDD
2004) use it for repeated cross-validation. Resampled training sets overlap, so their
values are correlated and the plain t-interval is too narrow; the correction widens the
variance from s²/n to s²(1/n + n_test/n_train).

Runs of two arms pair by (split, seed): the same split and seed mean the same examples,
data order and initialisation stream.
"""
import math
from typing import Sequence

import numpy as np
from scipy import stats

from mtl_jax.data.resampling import Resampling, describe_splits
from mtl_jax.errors import InputError

OWN_SPLIT = ("own", 0, 0)


def mean_ci95(values: Sequence[float]) -> tuple[float, float, int]:
  """Mean, half-width of the two-sided 95% Student-t interval, and n (NaNs dropped)."""
  values = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
  n = values.size
  if n == 0:
    return float("nan"), float("nan"), 0
  if n == 1:
    return float(values[0]), float("nan"), 1
  sem = values.std(ddof=1) / math.sqrt(n)
  return float(values.mean()), float(stats.t.ppf(0.975, n - 1) * sem), n


def corrected_ci95(values: Sequence[float], test_to_train: float) -> tuple[float, float, int]:
  """mean_ci95 with the variance of the mean taken as s²(1/n + test_to_train) (Nadeau
  and Bengio 2003): for values measured on resampled splits whose training sets
  overlap. test_to_train = 0 is mean_ci95."""
  mean, half, n = mean_ci95(values)
  if n < 2:
    return mean, half, n
  return mean, half * math.sqrt(1 + n * test_to_train), n


def split_of(record: dict) -> tuple:
  """(kind, count, index) of the split a run trained on (Resampling); OWN_SPLIT for
  runs on the data's own split, including records written before resampling existed."""
  resampling = record["config"].get("data", {}).get("resampling") or {}
  return (resampling.get("kind", "own"), resampling.get("count", 0), resampling.get("index", 0))


def pair_key(record: dict) -> tuple:
  return split_of(record), record["config"]["seed"]


def pair_runs(a: list[dict], b: list[dict]) -> np.ndarray:
  """Indices into `b` of the runs with the (split, seed) of `a`, in `a`'s order: runs
  pair by what they trained on, never by position. Arms whose runs differ cannot be
  paired (InputError)."""
  keys_a, keys_b = [pair_key(r) for r in a], [pair_key(r) for r in b]
  if sorted(keys_a) != sorted(keys_b) or len(set(keys_a)) != len(keys_a):
    seeds = lambda keys: sorted(seed for _, seed in keys)
    raise InputError(f"cannot pair arms by seed: seeds {seeds(keys_a)} against {seeds(keys_b)}"
                     + ("" if all(s == OWN_SPLIT for s, _ in keys_a + keys_b) else " (and split)"))
  position_b = {key: i for i, key in enumerate(keys_b)}
  return np.array([position_b[key] for key in keys_a], int)


def _test_to_train(records: list[dict]) -> float:
  """n_test / n_train of the resampled splits (train includes validation: both are
  what a model is fitted and selected on), averaged over the runs."""
  ratios = [r["split_sizes"]["test"] / (r["split_sizes"]["train"] + r["split_sizes"]["val"])
            for r in records]
  return float(np.mean(ratios))


def interval(values: Sequence[float], records: list[dict]) -> tuple[float, float, int]:
  """(mean, 95% half-width, n) of one value per record (NaN: left out). On one split, n
  counts seeds; on resampled splits, n counts splits, each the mean of its seeds."""
  splits = [split_of(r) for r in records]
  if len(set(splits)) <= 1 and (not splits or splits[0] == OWN_SPLIT):
    return mean_ci95(values)
  values = np.asarray(values, float)
  per_split = []
  for split in dict.fromkeys(splits):
    mine = values[[s == split for s in splits]]
    if np.isfinite(mine).any():
      per_split.append(float(np.nanmean(mine)))
  return corrected_ci95(per_split, _test_to_train(records))


def covers(records: list[dict]) -> str:
  """What interval() is over, for the summary's `interval` column and the table."""
  splits = [Resampling(*s) for s in dict.fromkeys(split_of(r) for r in records)]
  seeds = len({r["config"]["seed"] for r in records})
  seed_text = f"{seeds} seed{'s' * (seeds != 1)}"
  if all(s.is_own for s in splits):
    return f"{seed_text} on one split"
  return f"{describe_splits(splits)} (each the mean of {seed_text}; corrected resampled t)"
