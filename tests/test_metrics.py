import itertools

import numpy as np
import pytest

from mtl_jax.metrics import average_precision, mean_over_tasks, roc_auc, task_metrics


def pairwise_auc(scores, labels):
  """Definition of ROC-AUC: over all (positive, negative) pairs, 1 if the positive
  scores higher, 1/2 on a tie."""
  pos, neg = scores[labels == 1], scores[labels == 0]
  wins = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)]
  return np.mean(wins)


def ranked_ap(scores, labels):
  """AP without ties: mean over positives of the precision at that positive's rank."""
  order = np.argsort(-scores)
  hits = labels[order]
  ranks = np.flatnonzero(hits) + 1
  return np.mean(np.arange(1, len(ranks) + 1) / ranks)


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_pairwise_definition_with_ties(seed):
  rng = np.random.default_rng(seed)
  scores = rng.integers(0, 6, size=40).astype(float)  # many ties
  labels = rng.integers(0, 2, size=40)
  assert roc_auc(scores, labels) == pytest.approx(pairwise_auc(scores, labels))


@pytest.mark.parametrize("seed", range(5))
def test_ap_matches_rank_definition_without_ties(seed):
  rng = np.random.default_rng(seed)
  scores = rng.permutation(50).astype(float)
  labels = rng.integers(0, 2, size=50)
  assert average_precision(scores, labels) == pytest.approx(ranked_ap(scores, labels))


def test_ap_with_a_tie_by_hand():
  # Thresholds: score 3 -> 1 of 1 positive, score 2 (two tied, one positive) -> 2 of 3.
  scores = np.array([3.0, 2.0, 2.0, 1.0])
  labels = np.array([1, 1, 0, 0])
  assert average_precision(scores, labels) == pytest.approx(0.5 * 1.0 + 0.5 * (2 / 3))


def test_task_metrics_ignore_missing_labels():
  logits = np.array([[2.0, -1.0], [-1.0, 3.0], [0.5, 0.2], [9.0, -9.0]])
  labels = np.array([[1, 0], [0, -1], [1, 1], [-1, -1]])
  m = task_metrics(logits, labels)
  # Task 0 sees rows 0-2 only: all correct, perfectly ranked; the -1 row with a wild
  # logit would otherwise count.
  assert m["accuracy"][0] == 1.0 and m["auc"][0] == 1.0 and m["ap"][0] == 1.0
  # Task 1 sees rows 0 and 2: one of each class, ranked correctly.
  assert m["accuracy"][1] == 1.0 and m["auc"][1] == 1.0


def test_single_class_task_has_no_auc_and_is_skipped_in_the_mean():
  m = task_metrics(np.array([[1.0, 1.0], [-1.0, 2.0]]), np.array([[1, 1], [0, 1]]))
  assert m["auc"][0] == 1.0 and np.isnan(m["auc"][1])
  assert mean_over_tasks(m["auc"]) == 1.0


def test_non_finite_scores_give_no_metric_instead_of_a_plausible_one():
  m = task_metrics(np.array([[np.nan], [np.nan], [np.nan]]), np.array([[1], [0], [0]]))
  assert all(np.isnan(m[name][0]) for name in ("accuracy", "auc", "ap"))
