"""Decision thresholds: where a task's score becomes a yes/no answer, for the metrics
that read decisions (accuracy, hamming_loss, subset and jaccard accuracy, F1).

A rule is a probability p in (0, 1), the same for every task (0.5 by default: logit 0),
or VALIDATION: each task's threshold maximises that task's F1 over its valid labels of
the validation split, and is then applied to validation and test alike. The test split
never chooses. A task with no valid positive label in validation (F1 undefined) keeps
0.5; among thresholds of equal F1, the one closest to 0.5 (in logits) wins, so 0.5
itself stays whenever it is among the best.

Thresholds live in logit space (decide: positive iff logit > threshold) and are
recorded as probabilities.
"""
from typing import Union

import numpy as np
from scipy.special import expit, logit

from mtl_jax.losses import MISSING

DEFAULT_PROBABILITY = 0.5
VALIDATION = "val"
Rule = Union[float, str]  # a probability, or VALIDATION


def parse_rule(text: str) -> Rule:
  """'val' or a probability strictly between 0 and 1; ValueError saying so otherwise."""
  if text.strip() == VALIDATION:
    return VALIDATION
  try:
    p = float(text)
  except ValueError:
    p = float("nan")
  if not 0.0 < p < 1.0:
    raise ValueError(f"--threshold takes '{VALIDATION}' (each task's F1-best threshold on the "
                     f"validation split) or a probability in (0, 1); got {text!r}")
  return p


def best_f1_logit(scores: np.ndarray, labels: np.ndarray) -> float:
  """The logit threshold that maximises F1 of (scores > threshold) against labels (one
  task, valid labels only); 0 (p = 0.5) when F1 is undefined or the scores unusable.
  Candidates: 0, the midpoints between successive distinct scores, and below the lowest."""
  scores, labels = np.asarray(scores, np.float64), np.asarray(labels)
  num_pos = int(np.sum(labels == 1))
  if num_pos == 0 or not np.all(np.isfinite(scores)):
    return 0.0
  distinct = np.unique(scores)
  cuts = np.r_[0.0, distinct[0] - 1.0, (distinct[:-1] + distinct[1:]) / 2]
  pos, neg = np.sort(scores[labels == 1]), np.sort(scores[labels == 0])
  true_pos = pos.size - np.searchsorted(pos, cuts, side="right")  # positives above each cut
  false_pos = neg.size - np.searchsorted(neg, cuts, side="right")
  f1 = 2 * true_pos / (true_pos + false_pos + num_pos)  # 2TP / (2TP + FP + FN)
  best = np.flatnonzero(f1 == f1.max())
  return float(cuts[best[np.argmin(np.abs(cuts[best]))]])


def choose(rule: Rule, val_scores_NxT: np.ndarray, val_labels_NxT: np.ndarray) -> np.ndarray:
  """Logit thresholds [T] under `rule`, from the validation split's scores and labels
  (read only when the rule is VALIDATION)."""
  num_tasks = val_labels_NxT.shape[1]
  if rule != VALIDATION:
    return np.full(num_tasks, float(logit(rule)))
  thresholds = np.zeros(num_tasks)
  for j in range(num_tasks):
    valid = val_labels_NxT[:, j] != MISSING
    thresholds[j] = best_f1_logit(val_scores_NxT[valid, j], val_labels_NxT[valid, j])
  return thresholds


def decide(scores_NxT: np.ndarray, thresholds_T: np.ndarray) -> np.ndarray:
  """Boolean decisions [N, T]: positive where the score is above its task's threshold."""
  return np.asarray(scores_NxT) > np.asarray(thresholds_T)[None, :]


def as_probabilities(thresholds_T: np.ndarray) -> list[float]:
  return [float(p) for p in expit(np.asarray(thresholds_T, np.float64))]
