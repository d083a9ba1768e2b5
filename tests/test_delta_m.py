"""Δm% and mean ranks against numbers worked by hand."""
import math

import numpy as np
import pytest

from mtl_jax.delta_m import delta_m_pct, delta_m_per_seed, delta_m_summary, mean_ranks
from mtl_jax.errors import InputError


def _record(seed, auc, ap, status="ok"):
  return {"config": {"seed": seed}, "status": status,
          "metrics": {"test": {"auc": {"per_task": auc}, "ap": {"per_task": ap}}}}


def test_delta_m_is_the_mean_relative_change_over_tasks_and_metrics_in_percent():
  ours = _record(0, [0.9, 0.6], [0.5, 0.3])
  base = _record(0, [0.8, 0.6], [0.4, 0.4])
  # (0.1/0.8 + 0 + 0.1/0.4 - 0.1/0.4) / 4 = 0.03125
  assert delta_m_pct(ours, base) == pytest.approx(3.125)


def test_an_undefined_task_metric_takes_no_part_and_a_failed_run_gives_nan():
  ours = _record(0, [0.9, None], [0.5, 0.3])
  base = _record(0, [0.8, 0.6], [0.4, None])
  assert delta_m_pct(ours, base) == pytest.approx(100 * (0.1 / 0.8 + 0.1 / 0.4) / 2)
  assert math.isnan(delta_m_pct(_record(0, [0.9], [0.5], status="diverged"), _record(0, [0.8], [0.4])))


def test_runs_pair_by_seed_not_by_position():
  ours = [_record(1, [0.9], [0.9]), _record(0, [0.5], [0.5])]
  base = [_record(0, [0.5], [0.5]), _record(1, [0.6], [0.6])]
  np.testing.assert_allclose(delta_m_per_seed(ours, base), [50.0, 0.0])
  mean, ci, n = delta_m_summary(ours, base)
  # Two seeds: mean 25, CI t(0.975, 1) * std / sqrt(2) = 12.706 * 35.355 / 1.414.
  assert mean == pytest.approx(25.0) and n == 2 and ci == pytest.approx(12.7062 * 25.0, rel=1e-4)
  with pytest.raises(InputError):
    delta_m_per_seed(ours, [_record(0, [0.5], [0.5]), _record(2, [0.6], [0.6])])


def test_mean_ranks_average_within_problem_ranks_with_ties_shared_and_nan_last():
  ranks = mean_ranks({"a": {"x": 2.0, "y": 1.0, "z": 1.0},
                      "b": {"x": float("nan"), "y": 3.0, "z": 0.0}})
  # a: x 1, y and z tie for 2-3 (2.5 each); b: y 1, z 2, x (NaN) 3.
  assert ranks == {"x": 2.0, "y": 1.75, "z": 2.25}
