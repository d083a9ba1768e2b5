import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl_jax import masked_logistic_loss
from mtl_jax.losses import per_task_logistic_loss


def numpy_loss(logits, labels):
  """The seed's J written out by hand in float64: y log s(z) + (1-y) log(1-s(z))."""
  logits = np.asarray(logits, np.float64)
  per_task = np.zeros(logits.shape[1])
  for i in range(logits.shape[0]):
    for j in range(logits.shape[1]):
      y = labels[i, j]
      if y == -1:
        continue
      z = logits[i, j]
      # log s(z) = -log(1 + e^-z), computed without overflow on either side.
      log_s = -np.logaddexp(0.0, -z)
      log_1ms = -np.logaddexp(0.0, z)
      per_task[j] -= y * log_s + (1 - y) * log_1ms
  per_task /= logits.shape[0]
  return per_task.sum(), per_task


CASES = {
    "random": (np.random.default_rng(0).normal(size=(7, 4)) * 3,
               np.random.default_rng(1).integers(-1, 2, size=(7, 4))),
    "extreme": (np.array([[100.0, -100.0, 100.0, -100.0], [100.0, -100.0, 30.0, -30.0]]),
                np.array([[1, 0, 0, 1], [-1, -1, 1, 0]])),
    "all_missing_task": (np.array([[0.5, 2.0], [-1.0, 3.0], [4.0, -2.0]]),
                         np.array([[1, -1], [0, -1], [1, -1]])),
    "no_missing": (np.array([[0.0, 1.0, -1.0]]), np.array([[1, 0, 1]])),
}


@pytest.mark.parametrize("name", CASES)
def test_matches_numpy(name):
  logits, labels = CASES[name]
  expected_j, expected_per_task = numpy_loss(logits, labels)
  lg, lb = jnp.asarray(logits, jnp.float32), jnp.asarray(labels, jnp.int8)
  np.testing.assert_allclose(masked_logistic_loss(lg, lb), expected_j, rtol=1e-5)
  np.testing.assert_allclose(per_task_logistic_loss(lg, lb), expected_per_task, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(jax.jit(masked_logistic_loss)(lg, lb), expected_j, rtol=1e-5)


def test_extreme_logits_are_finite_with_finite_gradients():
  logits, labels = CASES["extreme"]
  value, grad = jax.value_and_grad(masked_logistic_loss)(jnp.asarray(logits), jnp.asarray(labels))
  assert np.isfinite(value) and np.all(np.isfinite(grad))
  # A confidently wrong logit of 100 costs ~100 / m: the loss is linear, not saturated.
  np.testing.assert_allclose(value, numpy_loss(logits, labels)[0], rtol=1e-5)


def test_masked_label_has_exactly_zero_gradient():
  logits = jnp.array([[3.0, -2.0, 100.0], [-100.0, 0.5, 1.0]])
  labels = jnp.array([[1, -1, -1], [-1, 0, 1]], jnp.int8)
  grad = jax.grad(masked_logistic_loss)(logits, labels)
  assert np.all(np.asarray(grad)[np.asarray(labels) == -1] == 0.0)
  assert np.all(np.asarray(grad)[np.asarray(labels) != -1] != 0.0)


def test_masked_label_value_does_not_matter():
  logits = jnp.array([[3.0, -2.0], [0.1, 0.5]])
  a = jnp.array([[1, -1], [-1, 0]], jnp.int8)
  # Changing what sits under the mask (the logit there) must change nothing.
  shifted = logits.at[0, 1].set(1e4).at[1, 0].set(-1e4)
  assert masked_logistic_loss(logits, a) == masked_logistic_loss(shifted, a)


def test_task_without_labels_gives_finite_loss_and_gradient():
  logits = jnp.array([[1.0, 2.0], [3.0, -4.0]])
  labels = jnp.array([[1, -1], [0, -1]], jnp.int8)
  value, grad = jax.value_and_grad(masked_logistic_loss)(logits, labels)
  assert np.isfinite(value)
  np.testing.assert_array_equal(np.asarray(grad)[:, 1], 0.0)
  assert per_task_logistic_loss(logits, labels)[1] == 0.0


def test_divides_by_batch_size_not_by_label_count():
  # J = (1/m) sum over valid labels: hiding labels lowers J, it does not renormalise.
  logits = jnp.zeros((4, 1))
  full = masked_logistic_loss(logits, jnp.array([[1], [0], [1], [0]], jnp.int8))
  half = masked_logistic_loss(logits, jnp.array([[1], [-1], [1], [-1]], jnp.int8))
  np.testing.assert_allclose(full, np.log(2.0), rtol=1e-6)
  np.testing.assert_allclose(half, np.log(2.0) / 2, rtol=1e-6)


def test_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match=r"\[B, T\]"):
    masked_logistic_loss(jnp.zeros((3, 2)), jnp.zeros((3, 3), jnp.int8))
