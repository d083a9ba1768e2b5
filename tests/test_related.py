"""The relatedness generator has the property its knob claims: rho is the share of each
task's logit variance that the features shared by all tasks explain."""
import numpy as np
import pytest

from mtl_jax.data import related
from mtl_jax.errors import InputError

N = 20_000


def r_squared(features_NxF, target_N):
  """Share of target's variance explained by least squares on the features."""
  design = np.column_stack([features_NxF, np.ones(len(target_N))])
  fitted = design @ np.linalg.lstsq(design, target_N, rcond=None)[0]
  return 1 - np.var(target_N - fitted) / np.var(target_N)


@pytest.mark.parametrize("rho", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_shared_features_explain_a_share_rho_of_each_logit(rho):
  config = related.RelatedConfig(rho=rho, num_tasks=3)
  teacher = related.make_teacher(seed=7, config=config)
  x = np.random.default_rng(0).normal(size=(N, config.input_dim))
  logits_NxT = related.task_logits(x, teacher, config)
  shared = related.shared_features(x, teacher, config)
  for j in range(config.num_tasks):
    assert r_squared(shared, logits_NxT[:, j]) == pytest.approx(rho, abs=0.03)
  np.testing.assert_allclose(logits_NxT.var(0), 1.0, atol=0.05)


def test_unrelated_tasks_have_uncorrelated_logits_and_related_ones_share_inputs():
  for rho, expect_correlated in ((0.0, False), (1.0, True)):
    config = related.RelatedConfig(rho=rho, num_tasks=4)
    teacher = related.make_teacher(seed=1, config=config)
    x = np.random.default_rng(1).normal(size=(N, config.input_dim))
    correlations = np.corrcoef(related.task_logits(x, teacher, config).T)[np.triu_indices(4, 1)]
    if expect_correlated:
      # Read-outs of the same ReLU features: the tasks move together.
      assert np.max(np.abs(correlations)) > 0.1
    else:
      assert np.max(np.abs(correlations)) < 0.04


def test_samples_are_deterministic_balanced_and_the_teacher_does_not_depend_on_rho():
  config = related.RelatedConfig(rho=0.5, num_tasks=4)
  teacher = related.make_teacher(3, config)
  x, y = related.sample(5000, 11, teacher, config)
  x2, y2 = related.sample(5000, 11, teacher, config)
  np.testing.assert_array_equal(x, x2)
  np.testing.assert_array_equal(y, y2)
  assert x.shape == (5000, config.input_dim) and x.dtype == np.float32 and y.dtype == np.int8
  assert np.all(np.abs(y.mean(0) - 0.5) < 0.05)
  other = related.make_teacher(3, related.RelatedConfig(rho=0.9, num_tasks=4))
  np.testing.assert_array_equal(teacher.shared_map_DxF, other.shared_map_DxF)


@pytest.mark.parametrize("kwargs", [dict(rho=1.5), dict(rho=-0.1), dict(num_tasks=0)])
def test_bad_configs(kwargs):
  with pytest.raises(InputError):
    related.RelatedConfig(**kwargs)
