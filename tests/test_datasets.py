import numpy as np
import pytest

from mtl_jax.data.datasets import DataConfig, load_dataset
from mtl_jax.errors import InputError
from mtl_jax.runs import RunConfig
from mtl_jax.models import EncoderSpec
from mtl_jax.train import TrainConfig

SMALL = DataConfig(num_train=200, num_val=50, num_test=100, missing_frac=0.3, data_seed=4)


def test_missing_labels_only_in_train_and_val():
  data = load_dataset(SMALL)
  for split in (data.train, data.val):
    assert np.mean(split.y == -1) == pytest.approx(0.3, abs=0.01)
  assert not np.any(data.test.y == -1)
  assert data.task_names == ("pedestrian", "car", "stop_sign", "traffic_light")
  assert data.train.x.dtype == np.uint8 and data.train.y.dtype == np.int8


def test_splits_are_deterministic_and_test_set_does_not_depend_on_train_size():
  a, b = load_dataset(SMALL), load_dataset(SMALL)
  np.testing.assert_array_equal(a.train.x, b.train.x)
  np.testing.assert_array_equal(a.train.y, b.train.y)
  bigger = load_dataset(DataConfig(**{**SMALL.__dict__, "num_train": 300}))
  np.testing.assert_array_equal(a.test.x, bigger.test.x)
  assert not np.array_equal(a.train.x[:50], a.test.x[:50])


def test_scene_settings_are_part_of_the_config_hash():
  def run(data):
    return RunConfig("x", "joint", 0, data, EncoderSpec(), TrainConfig())
  harder = DataConfig(**{**SMALL.__dict__, "scenes": SMALL.scenes.__class__(noise_std=0.2)})
  assert run(SMALL).hash != run(harder).hash
  assert run(SMALL).hash == run(DataConfig(**SMALL.__dict__)).hash


@pytest.mark.parametrize("change", [{"dataset": "mnist"}, {"missing_frac": 1.0}, {"num_test": 0}])
def test_bad_data_configs(change):
  with pytest.raises(InputError):
    load_dataset(DataConfig(**{**SMALL.__dict__, **change}))


def test_label_handling_of_the_train_split():
  from mtl_jax.data.datasets import Split, handle_missing
  x = np.arange(4)[:, None]
  y = np.array([[1, -1], [0, 0], [-1, -1], [1, 1]], np.int8)
  assert handle_missing(Split(x, y), "mask").y is y
  negative = handle_missing(Split(x, y), "as_negative")
  np.testing.assert_array_equal(negative.y, [[1, 0], [0, 0], [0, 0], [1, 1]])
  assert negative.y.dtype == np.int8 and negative.x is x
  dropped = handle_missing(Split(x, y), "drop_incomplete")
  np.testing.assert_array_equal(dropped.x[:, 0], [1, 3])
  np.testing.assert_array_equal(dropped.y, [[0, 0], [1, 1]])


def test_label_handling_leaves_validation_and_test_alone():
  a = load_dataset(DataConfig(**{**SMALL.__dict__, "label_handling": "drop_incomplete"}))
  b = load_dataset(SMALL)
  assert len(a.train.y) == np.sum(np.all(b.train.y != -1, axis=1)) < len(b.train.y)
  np.testing.assert_array_equal(a.val.y, b.val.y)
  np.testing.assert_array_equal(a.test.x, b.test.x)


def test_label_budget_keeps_every_image_and_exactly_the_requested_labels():
  tasks = ("car", "pedestrian_left", "scene_dark")
  full = load_dataset(DataConfig(**{**SMALL.__dict__, "tasks": tasks}))
  budgeted = load_dataset(DataConfig(**{**SMALL.__dict__, "tasks": tasks,
                                        "label_budget": (("car", 17), ("scene_dark", 0))}))
  assert budgeted.task_names == tasks
  np.testing.assert_array_equal(budgeted.train.x, full.train.x)
  kept = budgeted.train.y != -1
  assert kept[:, 0].sum() == 17 and kept[:, 2].sum() == 0
  # Kept labels are unchanged, hidden ones were labelled before; other tasks untouched.
  np.testing.assert_array_equal(budgeted.train.y[kept[:, 0], 0], full.train.y[kept[:, 0], 0])
  np.testing.assert_array_equal(budgeted.train.y[:, 1], full.train.y[:, 1])
  # Validation labels follow the budget in proportion (none for a budget of 0); the
  # unbudgeted task and the test split keep all of theirs.
  val_kept = budgeted.val.y != -1
  expected_car = max(1, round(17 * np.sum(full.val.y[:, 0] != -1) / np.sum(full.train.y[:, 0] != -1)))
  assert val_kept[:, 0].sum() == expected_car and val_kept[:, 2].sum() == 0
  np.testing.assert_array_equal(budgeted.val.y[:, 1], full.val.y[:, 1])
  np.testing.assert_array_equal(budgeted.test.y, full.test.y)


@pytest.mark.parametrize("change,message", [
    ({"label_budget": (("car", 10_000),)}, "exceeds the 1"),
    ({"label_budget": (("stop_sign_left", 5),)}, "not one of the tasks"),
    ({"tasks": ("car", "bicycle")}, "unknown driving task"),
    ({"dataset": "related", "tasks": ("car",)}, "cannot be chosen by name"),
])
def test_bad_budgets_and_task_lists(change, message):
  with pytest.raises(InputError, match=message):
    load_dataset(DataConfig(**{**SMALL.__dict__, "tasks": ("car",), **change}))


def test_related_dataset_has_vector_inputs_and_named_tasks():
  from mtl_jax.data.related import RelatedConfig
  data = load_dataset(DataConfig(dataset="related", num_train=50, num_val=10, num_test=20,
                                 relatedness=RelatedConfig(rho=0.3, num_tasks=5)))
  assert data.input_shape == (8 * 6,) and data.task_names == tuple(f"task_{j}" for j in range(1, 6))
  assert not np.any(data.test.y == -1)
