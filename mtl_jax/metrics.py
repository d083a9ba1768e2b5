"""Per-task classification metrics that ignore missing (-1) labels.

Computed once per run on the host in float64, so they are exact rather than fast.
A task whose valid labels are all one class has no ROC-AUC or AP, and a task with a
non-finite score has no metric at all: they get NaN, and the mean over tasks skips them.
"""
from typing import Optional

import numpy as np
from scipy.stats import rankdata

from mtl_jax.losses import MISSING

METRICS = ("accuracy", "auc", "ap")


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
  """P(score of a random positive > score of a random negative), ties counted 1/2
  (the Mann-Whitney statistic, via average ranks)."""
  num_pos = int(labels.sum())
  num_neg = labels.size - num_pos
  if num_pos == 0 or num_neg == 0:
    return float("nan")
  ranks = rankdata(scores)
  return float((ranks[labels == 1].sum() - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
  """Sum over distinct thresholds of (recall gain) x (precision at that threshold)."""
  num_pos = int(labels.sum())
  if num_pos == 0 or num_pos == labels.size:
    return float("nan")
  order = np.argsort(-scores, kind="stable")
  scores, labels = scores[order], labels[order]
  # The last index of each run of tied scores is one threshold.
  last_of_tie = np.r_[np.diff(scores) != 0, True]
  true_pos = np.cumsum(labels)[last_of_tie]
  predicted_pos = (np.arange(labels.size) + 1)[last_of_tie]
  recall_gain = np.diff(np.r_[0, true_pos]) / num_pos
  return float(np.sum(recall_gain * true_pos / predicted_pos))


def task_metrics(logits_NxT: np.ndarray, labels_NxT: np.ndarray,
                 thresholds_T: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
  """{'accuracy' | 'auc' | 'ap': [T]} over each task's valid labels; accuracy decides
  positive where the logit is above its task's threshold (default 0: p = 0.5)."""
  logits_NxT = np.asarray(logits_NxT, np.float64)
  labels_NxT = np.asarray(labels_NxT)
  thresholds_T = np.zeros(labels_NxT.shape[1]) if thresholds_T is None else thresholds_T
  out = {name: np.full(labels_NxT.shape[1], np.nan) for name in METRICS}
  for j in range(labels_NxT.shape[1]):
    valid = labels_NxT[:, j] != MISSING
    scores, labels = logits_NxT[valid, j], labels_NxT[valid, j].astype(np.int64)
    if labels.size == 0 or not np.all(np.isfinite(scores)):
      continue  # no labels to score, or scores that no ranking can be read from
    out["accuracy"][j] = np.mean((scores > thresholds_T[j]) == (labels == 1))
    out["auc"][j] = roc_auc(scores, labels)
    out["ap"][j] = average_precision(scores, labels)
  return out


def mean_over_tasks(per_task: np.ndarray) -> float:
  finite = per_task[np.isfinite(per_task)]
  return float(finite.mean()) if finite.size else float("nan")
