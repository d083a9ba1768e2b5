"""The extra driving tasks agree with the scene attributes they are read from, and the
auxiliary tasks of a target carry no information about its labels."""
import numpy as np
import pytest

from mtl_jax.data import driving, driving_tasks
from mtl_jax.errors import InputError

CONFIG = driving.SceneConfig()
PARAMS = driving.sample_scene_params(6000, seed=3, config=CONFIG)


def labels(*names):
  return driving_tasks.task_labels(PARAMS, CONFIG, names)


def test_presence_tasks_are_the_default_labels():
  np.testing.assert_array_equal(labels(*driving.TASK_NAMES), PARAMS["present"].astype(np.int8))


@pytest.mark.parametrize("name", driving.TASK_NAMES)
def test_left_and_right_split_presence_and_attributes_imply_presence(name):
  present, left, right, large, unoccluded = labels(
      name, f"{name}_left", f"{name}_right", f"{name}_large", f"{name}_unoccluded").T
  np.testing.assert_array_equal(left + right, present)
  assert np.all(large <= present) and np.all(unoccluded <= present)
  # About half of the present objects are large; about 1 - occlusion are unoccluded.
  assert large.sum() / present.sum() == pytest.approx(0.5, abs=0.05)
  assert unoccluded.sum() / present.sum() == pytest.approx(1 - CONFIG.occlusion, abs=0.05)


def test_colours_and_lamps_partition_their_object():
  colours = labels(*[f"car_{c}" for c in driving.CAR_COLOUR_NAMES])
  np.testing.assert_array_equal(colours.sum(1), labels("car")[:, 0])
  lamps = labels(*[f"traffic_light_{lamp}" for lamp in driving.LAMP_NAMES])
  np.testing.assert_array_equal(lamps.sum(1), labels("traffic_light")[:, 0])


def test_there_are_tens_of_tasks_and_every_one_has_both_answers():
  assert len(driving_tasks.ALL_TASK_NAMES) >= 30
  rates = labels(*driving_tasks.ALL_TASK_NAMES).mean(0)
  assert np.all((rates > 0.02) & (rates < 0.98))


@pytest.mark.parametrize("target", ["car", "pedestrian", "traffic_light_red", "scene_hazy"])
def test_auxiliary_tasks_are_uncorrelated_with_the_target(target):
  aux = driving_tasks.auxiliary_tasks(target)
  assert target not in aux and len(aux) >= 20
  y = labels(target, *aux).astype(float)
  correlation = np.corrcoef(y.T)[0, 1:]
  # Independent draws: |r| stays within about 3 standard errors of 0 (1/sqrt(6000) = 0.013).
  assert np.max(np.abs(correlation)) < 0.045


def test_unknown_and_repeated_task_names():
  with pytest.raises(InputError, match="unknown driving task 'bicycle'"):
    labels("car", "bicycle")
  with pytest.raises(InputError, match="listed twice"):
    labels("car", "car")
