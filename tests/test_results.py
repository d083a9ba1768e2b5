import numpy as np
import pytest

from mtl_jax.results import append_result, config_hash, mean_ci95, read_results


def test_ci_matches_student_t_by_hand():
  mean, ci, n = mean_ci95([1.0, 2.0, 3.0])
  # sd = 1, n = 3, t_{0.975, 2} = 4.302653
  assert (mean, n) == (2.0, 3)
  assert ci == pytest.approx(4.302653 / np.sqrt(3), rel=1e-6)


def test_ci_drops_missing_values_and_needs_two():
  assert mean_ci95([0.5, float("nan"), None])[::2] == (0.5, 1)
  assert np.isnan(mean_ci95([0.5])[1])


def test_config_hash_ignores_key_order_and_sees_values():
  a = {"arm": "joint", "seed": 0, "data": {"n": 5, "frac": 0.2}}
  b = {"data": {"frac": 0.2, "n": 5}, "seed": 0, "arm": "joint"}
  assert config_hash(a) == config_hash(b)
  assert config_hash(a) != config_hash({**a, "seed": 1})


def test_append_and_read_round_trip(tmp_path):
  path = str(tmp_path / "results.jsonl")
  assert read_results(path) == []
  append_result(path, {"hash": "a", "x": 1})
  append_result(path, {"hash": "b", "x": None})
  assert read_results(path) == [{"hash": "a", "x": 1}, {"hash": "b", "x": None}]


def test_a_line_cut_short_by_a_killed_run_is_skipped(tmp_path):
  path = tmp_path / "results.jsonl"
  path.write_text('{"hash": "a"}\n{"hash": "b", "metr')
  assert read_results(str(path)) == [{"hash": "a"}]
