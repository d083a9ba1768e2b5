"""Resampled splits: K-fold cross-validation and random re-splits of a dataset's examples.

One fixed split measures the spread over initialisations only; on a set with 200 test
rows the choice of those rows moves a metric by more than the seeds do, which is why the
multi-label literature reports cross-validation. A `Resampling` names one resampled
split of the examples the data would otherwise have (its train, validation and test
splits pooled):

  own       the data's own split (the default; nothing is resampled);
  folds     fold `index` of `count` is the test split; the validation split is cut from
            the other folds with the share of the pool it had before;
  random    split seed `index`: new train / validation / test splits of the sizes the
            data's own split had.

Every cut is stratified by iterative stratification (Sechidis, Tsoumakas and Vlahavas,
"On the stratification of multi-label data", ECML PKDD 2011), which spreads each label's
positives over the parts in proportion, rarest label first; a missing label counts as no
positive. The fold assignment depends on the data seed alone, so the K folds of one data
seed partition the examples.
"""
import dataclasses
from typing import Callable, Sequence

import numpy as np

from mtl_jax.errors import InputError

SPLITS = ("train", "val", "test")
KINDS = ("own", "folds", "random")


@dataclasses.dataclass(frozen=True)
class Resampling:
  kind: str = "own"  # one of KINDS
  count: int = 0  # folds: K; otherwise 0
  index: int = 0  # folds: the test fold, 0..K-1; random: the split seed

  def __post_init__(self):
    if self.kind not in KINDS:
      raise InputError(f"unknown resampling {self.kind!r}; choose from {', '.join(KINDS)}")
    if self.kind == "folds" and not (self.count >= 2 and 0 <= self.index < self.count):
      raise InputError(f"cross-validation needs at least 2 folds and a fold in 0..K-1; "
                       f"got fold {self.index} of {self.count}")

  @property
  def is_own(self) -> bool:
    return self.kind == "own"

  def describe(self) -> str:
    return {"own": "own split", "folds": f"fold {self.index + 1} of {self.count}",
            "random": f"split seed {self.index}"}[self.kind]


def describe_splits(resamplings: Sequence[Resampling]) -> str:
  """'5 folds', '3 random splits' or 'one split': what a plan (or the runs of one) is over."""
  first = resamplings[0] if resamplings else Resampling()
  if first.kind == "folds":
    return f"{first.count} folds"
  return f"{len(resamplings)} random splits" if first.kind == "random" else "one split"


def plan(folds: int, split_seeds: int) -> tuple[Resampling, ...]:
  """The splits an experiment runs on (--folds, --split_seeds): its own split, the K
  folds, or N random splits."""
  if folds and split_seeds:
    raise InputError(f"give --folds={folds} or --split_seeds={split_seeds}, not both")
  if folds == 1 or folds < 0 or split_seeds < 0:
    raise InputError(f"--folds takes K >= 2 (or 0: the data's own split) and --split_seeds N >= 1 "
                     f"(or 0); got --folds={folds}, --split_seeds={split_seeds}")
  if folds:
    return tuple(Resampling("folds", folds, k) for k in range(folds))
  if split_seeds:
    return tuple(Resampling("random", 0, i) for i in range(split_seeds))
  return (Resampling(),)


def iterative_stratification(y_NxT: np.ndarray, proportions: Sequence[float],
                             rng: np.random.Generator) -> np.ndarray:
  """The part (0..P-1) of each example, so that part p holds about proportions[p] of the
  examples and of each label's positives (Sechidis et al. 2011, Algorithm 1).

  Labels are taken rarest first: a rare label's few positives are placed while every
  part still wants some. Each positive example goes to the part that most wants that
  label, ties broken by the part that most wants examples, then at random. Examples
  with no positive label fill the parts that most want examples."""
  n = len(y_NxT)
  proportions = np.asarray(proportions, float) / np.sum(proportions)
  positive_NxT = y_NxT == 1
  want_P = proportions * n
  want_PxT = proportions[:, None] * positive_NxT.sum(0)[None, :]
  part_N = np.full(n, -1)
  unplaced_positives_T = positive_NxT.sum(0)
  while np.any(unplaced_positives_T):
    live = np.flatnonzero(unplaced_positives_T)
    label = rng.choice(live[unplaced_positives_T[live] == unplaced_positives_T[live].min()])
    for i in np.flatnonzero((part_N < 0) & positive_NxT[:, label]):
      part = _most_wanting(want_PxT[:, label], want_P, rng)
      part_N[i] = part
      want_P[part] -= 1
      want_PxT[part] -= positive_NxT[i]
      unplaced_positives_T -= positive_NxT[i]
  for i in rng.permutation(np.flatnonzero(part_N < 0)):
    part = _most_wanting(want_P, np.zeros_like(want_P), rng)
    part_N[i] = part
    want_P[part] -= 1
  return part_N


def _most_wanting(first_P: np.ndarray, then_P: np.ndarray, rng: np.random.Generator) -> int:
  """The part with the largest first_P, ties by the largest then_P, then at random."""
  best = np.flatnonzero(first_P == first_P.max())
  best = best[then_P[best] == then_P[best].max()]
  return int(rng.choice(best))


def resample(splits: dict, resampling: Resampling, seed_for: Callable[[str], int]) -> tuple[dict, dict]:
  """(splits, what each holds) of `resampling` applied to `splits` (train / val / test,
  each with x and y): their examples pooled in that order and cut anew. `seed_for(stream)`
  is the data seed's generator seed for a named use."""
  sizes = {name: len(splits[name].y) for name in SPLITS}
  parts = [splits[name] for name in SPLITS]
  pool = type(parts[0])(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]))
  total = len(pool.y)
  if resampling.kind == "folds":
    if total < resampling.count * 2:
      raise InputError(f"{total} examples are too few for {resampling.count} folds")
    fold_N = iterative_stratification(pool.y, [1.0] * resampling.count, np.random.default_rng(seed_for("folds")))
    rest = np.flatnonzero(fold_N != resampling.index)
    val_share = sizes["val"] / len(rest)
    if val_share >= 1:
      raise InputError(f"{total} examples are too few for {resampling.count} folds and a validation "
                       f"split of {sizes['val']}")
    rng = np.random.default_rng(seed_for(f"folds/{resampling.index}/val"))
    part = iterative_stratification(pool.y[rest], [1 - val_share, val_share], rng)
    index = {"train": rest[part == 0], "val": rest[part == 1], "test": np.flatnonzero(fold_N == resampling.index)}
    held = f"fold {resampling.index + 1} of {resampling.count} (stratified, data seed's folds)"
  else:
    rng = np.random.default_rng(seed_for(f"random/{resampling.index}"))
    part_N = iterative_stratification(pool.y, [sizes[name] for name in SPLITS], rng)
    index = {name: np.flatnonzero(part_N == p) for p, name in enumerate(SPLITS)}
    held = f"random split {resampling.index} (stratified, the own split's sizes)"
  for name in SPLITS:
    if not len(index[name]):
      raise InputError(f"{resampling.describe()} leaves the {name} split empty ({total} examples)")
  origins = {name: f"{len(index[name])} of {total} pooled examples, {held}" for name in SPLITS}
  return {name: type(pool)(pool.x[index[name]], pool.y[index[name]]) for name in SPLITS}, origins

