"""Δm%: the field's one-number summary of a multi-task model against a baseline
(Maninis et al. 2019, "Attentive Single-Tasking of Multiple Tasks"; Vandenhende et
al. 2021): the relative change of every task's metric, averaged over tasks and
metrics,

  Δm% = 100 / (T K) * sum_t sum_k s_k (M_t,k - B_t,k) / B_t,k,

with s_k = +1 for a metric where higher is better and -1 where lower is. Every metric
here (ROC-AUC, average precision) is higher-is-better, so a positive Δm% means better
than the baseline, the sign we report. Runs pair by seed (same data order and
initialisation stream), so the CI is over per-seed differences.
"""
import math
from typing import Sequence

import numpy as np

from mtl_jax.intervals import mean_ci95, pair_runs
from mtl_jax.results import diverged

# Metric -> +1 if higher is better, -1 if lower is better.
METRIC_SIGNS = {"auc": 1.0, "ap": 1.0}


def delta_m_pct(record: dict, baseline: dict, split: str = "test",
                metrics: Sequence[str] = tuple(METRIC_SIGNS)) -> float:
  """Δm% of one run against the baseline run of the same seed; NaN if either failed.
  A task whose metric is undefined in either run (a test split without positives)
  takes no part."""
  if diverged(record) or diverged(baseline):
    return math.nan
  changes = []
  for metric in metrics:
    ours = record["metrics"][split][metric]["per_task"]
    theirs = baseline["metrics"][split][metric]["per_task"]
    changes += [METRIC_SIGNS[metric] * (m - b) / b for m, b in zip(ours, theirs)
                if m is not None and b is not None and b != 0]
  return 100.0 * float(np.mean(changes)) if changes else math.nan


def delta_m_per_seed(records: list[dict], baseline: list[dict], split: str = "test") -> np.ndarray:
  """Δm% per seed, in `records`' order, each against the baseline run of its seed."""
  order = pair_runs(records, baseline)
  return np.array([delta_m_pct(r, baseline[i], split) for r, i in zip(records, order)])


def delta_m_summary(records: list[dict], baseline: list[dict], split: str = "test") -> tuple[float, float, int]:
  """Mean, 95% CI half-width and number of seeds of Δm% (failed seeds left out)."""
  return mean_ci95(delta_m_per_seed(records, baseline, split))


def mean_ranks(scores_by_problem: dict[str, dict[str, float]]) -> dict[str, float]:
  """Each entry's rank (1 = highest score) within each problem, averaged over the
  problems: scores_by_problem[problem][entry]. Ties share their mean rank; an entry
  with a NaN score ranks last in that problem."""
  ranks: dict[str, list[float]] = {}
  for scores in scores_by_problem.values():
    entries = list(scores)
    values = np.array([scores[e] if math.isfinite(scores[e]) else -np.inf for e in entries])
    for entry, value in zip(entries, values):
      better, equal = np.sum(values > value), np.sum(values == value)
      ranks.setdefault(entry, []).append(better + (equal + 1) / 2)
  return {entry: float(np.mean(r)) for entry, r in ranks.items()}
