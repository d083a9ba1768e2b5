import numpy as np
import pytest

from mtl_jax.data.missing import hide_labels


def _labels(n=1000, t=4, seed=0):
  return np.random.default_rng(seed).integers(0, 2, (n, t)).astype(np.int8)


@pytest.mark.parametrize("frac", [0.1, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("t", [1, 4, 7])
def test_fraction_and_observed_unchanged(frac, t):
  y = _labels(999, t)
  out = hide_labels(y, frac, seed=3)
  assert out.dtype == np.int8 and out.shape == y.shape
  assert (out == -1).sum() == round(frac * y.size)
  obs = out != -1
  np.testing.assert_array_equal(out[obs], y[obs])
  assert set(np.unique(out)) <= {-1, 0, 1}


def test_input_not_modified_and_deterministic():
  y = _labels()
  y0 = y.copy()
  a = hide_labels(y, 0.3, seed=1)
  np.testing.assert_array_equal(y, y0)
  np.testing.assert_array_equal(a, hide_labels(y, 0.3, seed=1))
  assert not np.array_equal(a, hide_labels(y, 0.3, seed=2))


def test_zero_fraction_is_identity():
  y = _labels()
  out = hide_labels(y, 0.0, seed=0)
  np.testing.assert_array_equal(out, y)
  assert out is not y


def test_missing_spread_over_tasks():
  out = hide_labels(_labels(20000), 0.2, seed=0)
  np.testing.assert_allclose((out == -1).mean(0), 0.2, atol=0.015)


def test_bad_args():
  with pytest.raises(ValueError):
    hide_labels(_labels(), 1.5, 0)
  with pytest.raises(ValueError):
    hide_labels(np.zeros(5, np.int8), 0.1, 0)
