"""The multi-label literature's metrics (Zhang & Zhou 2014, "A Review on Multi-Label
Learning Algorithms"; Tsoumakas et al. 2010), with missing (-1) labels left out.

Pure numpy, on the host, in float64. Every metric reads one `Scored` split: the
scores (logits; only their order per example matters to the ranking metrics), the 0/1
decisions made from them (thresholds.decide) and the labels. A cell whose label is
missing takes no part in any metric, as if that label did not exist for that example.
How a partly labelled example is scored, per metric (docs/metrics.md has the formulas):

  hamming_loss      wrong decisions / valid cells, pooled over all valid cells.
  subset_accuracy   1 if every valid label of the example is decided right; examples
                    with no valid label are skipped.
  jaccard_accuracy  |decided ∩ true| / |decided ∪ true| over the example's valid labels;
                    1 when both are empty (nothing to find, nothing claimed); examples
                    with no valid label are skipped.
  micro_f1          2 TP / (2 TP + FP + FN), counts pooled over all valid cells.
  macro_f1          each task's F1 over its valid labels, averaged over tasks; a task with
                    no valid positive and no positive decision has no F1 (NaN, skipped).
  ranking_loss      share of the example's valid (positive, negative) pairs ordered wrong
                    (positive scored <= negative: a tie counts as wrong); examples without
                    both a valid positive and a valid negative are skipped.
  one_error         1 if the top-scored of the example's valid labels is not positive (a
                    tie at the top counts as wrong if any tied label is negative);
                    examples with no valid positive are skipped.
  coverage          how many steps down the example's ranking of its valid labels one must
                    go, from the top label (0), to reach every valid positive (a tie ranks
                    pessimistically); examples with no valid positive are skipped.
                    scikit-learn's coverage_error counts from 1: ours is theirs minus 1.

A metric with nothing to score (no valid cell, no example that qualifies) is NaN, as is
every metric of a split whose valid scores are not all finite: a diverged model's NaN
logits must not read as confident negatives.
"""
import dataclasses
from typing import Callable, Union

import numpy as np

from mtl_jax.losses import MISSING


@dataclasses.dataclass(frozen=True)
class Scored:
  """One split: scores_NxT (logits), decisions_NxT (bool) and labels_NxT (1/0/-1)."""
  scores_NxT: np.ndarray
  decisions_NxT: np.ndarray
  labels_NxT: np.ndarray

  @property
  def valid_NxT(self) -> np.ndarray:
    return self.labels_NxT != MISSING

  @property
  def positive_NxT(self) -> np.ndarray:
    return self.labels_NxT == 1


def _mean_or_nan(values: np.ndarray) -> float:
  return float(values.mean()) if values.size else float("nan")


def _ratio_or_nan(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
  """numerator / denominator elementwise, NaN where the denominator is 0."""
  numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
  out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
  np.divide(numerator, denominator, out=out, where=denominator > 0)
  return out


def _confusion(s: Scored, axis=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(true positives, false positives, false negatives) over valid cells, summed along
  `axis` (None: all cells; 0: per task; 1: per example)."""
  decided, positive, valid = s.decisions_NxT, s.positive_NxT, s.valid_NxT
  tp = np.sum(decided & positive & valid, axis=axis)
  fp = np.sum(decided & ~positive & valid, axis=axis)
  fn = np.sum(~decided & positive & valid, axis=axis)
  return tp, fp, fn


def hamming_loss(s: Scored) -> float:
  wrong = (s.decisions_NxT != s.positive_NxT) & s.valid_NxT
  return float(_ratio_or_nan(wrong.sum(), s.valid_NxT.sum()))


def subset_accuracy(s: Scored) -> float:
  labelled_N = s.valid_NxT.any(axis=1)
  wrong_N = ((s.decisions_NxT != s.positive_NxT) & s.valid_NxT).any(axis=1)
  return _mean_or_nan(~wrong_N[labelled_N])


def jaccard_accuracy(s: Scored) -> float:
  tp, fp, fn = _confusion(s, axis=1)
  union_N = tp + fp + fn
  # Nothing true and nothing claimed among the valid labels: a perfect answer (1), as
  # scikit-learn's jaccard_score(zero_division=1) scores it.
  per_example = np.where(union_N > 0, tp / np.maximum(union_N, 1), 1.0)
  return _mean_or_nan(per_example[s.valid_NxT.any(axis=1)])


def _f1(tp, fp, fn) -> np.ndarray:
  """2 TP / (2 TP + FP + FN); NaN where nothing is positive and nothing is claimed."""
  return _ratio_or_nan(2 * tp, 2 * tp + fp + fn)


def micro_f1(s: Scored) -> float:
  return float(_f1(*_confusion(s)))


def task_f1(s: Scored) -> np.ndarray:
  """Each task's F1 over its valid labels, [T] (macro_f1's per-task values)."""
  return _f1(*_confusion(s, axis=0))


# Cells of the [rows, T, T] pair comparisons made at once: 16 M booleans bound memory
# for any number of labels (a few rows at a time for a thousand labels).
PAIR_CELLS_AT_ONCE = 2**24


def _ranked_pairs(s: Scored) -> tuple[np.ndarray, np.ndarray]:
  """(wrong_N, pairs_N): per example, its valid (positive, negative) pairs whose
  positive does not score above the negative, and all its valid pairs."""
  pos_NxT = s.positive_NxT & s.valid_NxT
  neg_NxT = ~s.positive_NxT & s.valid_NxT
  num_examples, num_tasks = pos_NxT.shape
  wrong_N, pairs_N = np.zeros(num_examples, np.int64), np.zeros(num_examples, np.int64)
  rows = max(1, PAIR_CELLS_AT_ONCE // max(1, num_tasks * num_tasks))
  for start in range(0, num_examples, rows):
    part = slice(start, start + rows)
    pair_RxTxT = pos_NxT[part, :, None] & neg_NxT[part, None, :]
    not_above_RxTxT = s.scores_NxT[part, :, None] <= s.scores_NxT[part, None, :]
    wrong_N[part] = (pair_RxTxT & not_above_RxTxT).sum(axis=(1, 2))
    pairs_N[part] = pair_RxTxT.sum(axis=(1, 2))
  return wrong_N, pairs_N


def ranking_loss(s: Scored) -> float:
  wrong_N, pairs_N = _ranked_pairs(s)
  return _mean_or_nan(wrong_N[pairs_N > 0] / pairs_N[pairs_N > 0])


def _valid_scores(s: Scored) -> np.ndarray:
  """Scores with missing cells at -inf: below every valid label, so never on top and
  never counted above a positive (a valid score is finite, see metric_values)."""
  return np.where(s.valid_NxT, s.scores_NxT, -np.inf)


def one_error(s: Scored) -> float:
  scores_NxT = _valid_scores(s)
  top_NxT = (scores_NxT == scores_NxT.max(axis=1, keepdims=True)) & s.valid_NxT
  wrong_N = (top_NxT & ~s.positive_NxT).any(axis=1)
  return _mean_or_nan(wrong_N[(s.positive_NxT & s.valid_NxT).any(axis=1)])


def coverage(s: Scored) -> float:
  scores_NxT = _valid_scores(s)
  pos_NxT = s.positive_NxT & s.valid_NxT
  lowest_positive_N = np.where(pos_NxT, scores_NxT, np.inf).min(axis=1, keepdims=True)
  # Labels at or above the lowest-scored positive, minus one: the top label is step 0.
  steps_N = (scores_NxT >= lowest_positive_N).sum(axis=1) - 1
  return _mean_or_nan(steps_N[pos_NxT.any(axis=1)].astype(float))


@dataclasses.dataclass(frozen=True)
class MultilabelMetric:
  compute: Callable[[Scored], Union[float, np.ndarray]]
  higher_is_better: bool
  # True: label-based, compute gives one value per task ([T]) and the record keeps them
  # with their mean over tasks; False: example-based, one value (the record's "mean").
  per_task: bool


# name -> metric, in summary.csv's order.
MULTILABEL_METRICS: dict[str, MultilabelMetric] = {
    "hamming_loss": MultilabelMetric(hamming_loss, higher_is_better=False, per_task=False),
    "subset_accuracy": MultilabelMetric(subset_accuracy, higher_is_better=True, per_task=False),
    "jaccard_accuracy": MultilabelMetric(jaccard_accuracy, higher_is_better=True, per_task=False),
    "micro_f1": MultilabelMetric(micro_f1, higher_is_better=True, per_task=False),
    "macro_f1": MultilabelMetric(task_f1, higher_is_better=True, per_task=True),
    "ranking_loss": MultilabelMetric(ranking_loss, higher_is_better=False, per_task=False),
    "one_error": MultilabelMetric(one_error, higher_is_better=False, per_task=False),
    "coverage": MultilabelMetric(coverage, higher_is_better=False, per_task=False),
}


def metric_values(scores_NxT: np.ndarray, decisions_NxT: np.ndarray,
                  labels_NxT: np.ndarray) -> dict[str, Union[float, np.ndarray]]:
  """{name: value} for every metric of MULTILABEL_METRICS: a float, or [T] for the
  per-task ones. All NaN when a valid cell's score is not finite."""
  s = Scored(np.asarray(scores_NxT, np.float64), np.asarray(decisions_NxT, bool),
             np.asarray(labels_NxT))
  if s.scores_NxT.shape != s.labels_NxT.shape or s.decisions_NxT.shape != s.labels_NxT.shape:
    raise ValueError(f"scores {s.scores_NxT.shape}, decisions {s.decisions_NxT.shape} and labels "
                     f"{s.labels_NxT.shape} must have one shape [N, T]")
  finite = bool(np.all(np.isfinite(s.scores_NxT[s.valid_NxT])))
  num_tasks = s.labels_NxT.shape[1]
  values = {}
  for name, metric in MULTILABEL_METRICS.items():
    nan = np.full(num_tasks, np.nan) if metric.per_task else float("nan")
    values[name] = metric.compute(s) if finite else nan
  return values
