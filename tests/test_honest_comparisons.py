"""Comparisons that cannot be tilted: runs pair by seed, hashes cover what changes a
run and its results version, validation labels follow the training label budget,
target-task experiments select on the target, and a run whose validation loss never
improved says so."""
import dataclasses
import json

import jax
import numpy as np
import pytest
from scipy import stats

from mtl_jax.data.datasets import DataConfig, load_dataset
from mtl_jax.data.driving import SceneConfig
from mtl_jax.data.related import RelatedConfig
from mtl_jax.errors import InputError
from mtl_jax.losses import per_task_logistic_loss
from mtl_jax.models import EncoderSpec, build_model
from mtl_jax.results import RESULTS_VERSION, append_result, summarize_arms
from mtl_jax.runs import RunConfig, run_arm
from mtl_jax.sweep import run_pending
from mtl_jax.train import NO_EPOCH, TrainConfig, train


def _record(seed, auc):
  metrics = {split: {m: {"per_task": [auc], "mean": auc} for m in ("accuracy", "auc", "ap")}
             for split in ("val", "test")}
  return {"config": {"seed": seed}, "metrics": metrics, "status": "ok"}


def test_the_joint_minus_separate_difference_pairs_runs_by_seed():
  joint = [_record(0, 0.9), _record(1, 0.7), _record(2, 0.5)]
  separate = [_record(2, 0.4), _record(0, 0.6), _record(1, 0.7)]  # another order
  rows = summarize_arms({"joint": joint, "separate": separate}, ["t"])
  diff = next(r for r in rows if r["arm"] == "joint_minus_separate" and r["split"] == "test"
              and r["metric"] == "auc" and r["task"] == "t")
  # By seed the differences are 0.3, 0.0, 0.1; by list position they would be 0.5,
  # 0.1, -0.2: the same mean, but another spread, so the interval tells them apart.
  by_seed = np.array([0.3, 0.0, 0.1])
  assert diff["mean"] == pytest.approx(by_seed.mean(), abs=1e-5)
  assert diff["ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * by_seed.std(ddof=1) / np.sqrt(3), abs=1e-5)
  with pytest.raises(InputError, match="cannot pair arms by seed"):
    summarize_arms({"joint": joint, "separate": [_record(0, 0.6), _record(1, 0.7), _record(3, 0.4)]}, ["t"])


def _run(data, **changes):
  return dataclasses.replace(RunConfig("e", "joint", 0, data, EncoderSpec("mlp", 4, 1), TrainConfig()),
                             **changes)


def test_the_hash_covers_exactly_the_fields_that_change_a_run(tmp_path):
  path = tmp_path / "t.csv"
  path.write_text("f,label:a\n1,1\n2,0\n3,1\n")
  table = DataConfig(dataset=f"csv:{path}")
  # A CSV run does not depend on the scene renderer or the related generator ...
  assert _run(table).hash == _run(dataclasses.replace(
      table, scenes=SceneConfig(image_size=64), relatedness=RelatedConfig(rho=0.1))).hash
  # ... nor generated scenes on how read data would be split.
  scenes = DataConfig(num_train=64)
  assert _run(scenes).hash == _run(dataclasses.replace(scenes, val_frac=0.3, label_columns=("x",))).hash
  # What does change a run changes the hash: the file's bytes, a relevant field, the method.
  before = _run(table).hash
  path.write_text("f,label:a\n1,1\n2,0\n3,0\n\n")
  assert _run(table).hash != before
  assert _run(dataclasses.replace(scenes, scenes=SceneConfig(image_size=16))).hash != _run(scenes).hash
  assert _run(table, train=TrainConfig(select_tasks=("a",))).hash != _run(table).hash


def _tiny_group(seeds=(0, 1), arm="joint"):
  data = DataConfig(dataset="related", num_train=64, num_val=32, num_test=32, relatedness=RelatedConfig(num_tasks=2))
  train_config = TrainConfig(batch_size=32, epochs=1, select_epoch="best_val")
  return [RunConfig("e", arm, s, data, EncoderSpec("mlp", 4, 1), train_config) for s in seeds]


def test_a_run_of_an_older_results_version_is_retrained_not_reused(tmp_path, capsys):
  group = _tiny_group()
  path = str(tmp_path / "results.jsonl")
  old = {"hash": group[0].hash, "results_version": RESULTS_VERSION - 1, "metrics": {}, "status": "ok"}
  append_result(path, old)
  done = run_pending([group], load_dataset, path)
  assert "1 runs from an older version of the training code are set aside" in capsys.readouterr().out
  assert done[group[0].hash]["results_version"] == RESULTS_VERSION
  assert len([json.loads(line) for line in open(path)]) == 3  # the old line stays on file


def test_a_label_budget_cuts_the_validation_labels_in_proportion():
  base = DataConfig(num_train=600, num_val=300, num_test=50, missing_frac=0.2)
  full, budgeted = load_dataset(base), load_dataset(dataclasses.replace(base, label_budget=(("car", 25),)))
  car = full.task_names.index("car")
  train_labels, val_labels = (np.sum(s.y[:, car] != -1) for s in (full.train, full.val))
  assert np.sum(budgeted.train.y[:, car] != -1) == 25
  assert np.sum(budgeted.val.y[:, car] != -1) == max(1, round(25 * val_labels / train_labels))
  # Kept validation labels are real labels, and other tasks keep all of theirs.
  kept = budgeted.val.y[:, car] != -1
  np.testing.assert_array_equal(budgeted.val.y[kept, car], full.val.y[kept, car])
  np.testing.assert_array_equal(np.delete(budgeted.val.y, car, 1), np.delete(full.val.y, car, 1))


def _vectors(num, seed):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(num, 5)).astype(np.float32), rng.integers(0, 2, (num, 3)).astype(np.int8)


def test_a_target_task_experiment_selects_on_the_target_alone():
  model = build_model("hps", EncoderSpec("mlp", 4, 1), 3, (5,))
  x_val, y_val = _vectors(40, 1)
  config = TrainConfig(1e-2, 16, 1, select_epoch="best_val", select_tasks=("b",))
  result = train(model, *_vectors(64, 0), [0, 1], config, validation=(x_val, y_val), task_names=("a", "b", "c"))
  for s in (0, 1):
    params = jax.tree.map(lambda p: p[s], result.params)
    expected = per_task_logistic_loss(model.apply(params, x_val), y_val)[1]
    np.testing.assert_allclose(result.val_loss_ExS[0, s], expected, rtol=1e-5)
  with pytest.raises(InputError, match="not one of the tasks"):
    train(model, *_vectors(64, 0), [0], dataclasses.replace(config, select_tasks=("z",)),
          validation=(x_val, y_val), task_names=("a", "b", "c"))


def test_a_task_without_validation_labels_cannot_select_an_epoch():
  model = build_model("hps", EncoderSpec("mlp", 4, 1), 3, (5,))
  x_val, y_val = _vectors(40, 1)
  y_val[:, 2] = -1
  with pytest.raises(InputError, match="task 'c' has no validation labels"):
    train(model, *_vectors(64, 0), [0], TrainConfig(batch_size=16, select_epoch="best_val"), validation=(x_val, y_val),
          task_names=("a", "b", "c"))


def test_no_epoch_improving_is_recorded_as_such_and_patience_stops_early():
  model = build_model("hps", EncoderSpec("mlp", 4, 1), 3, (5,))
  x_val, y_val = _vectors(40, 1)
  x_val[:] = np.nan  # the validation loss is NaN every epoch: nothing can be selected
  config = TrainConfig(1e-2, 16, 5, select_epoch="best_val", patience=2)
  result = train(model, *_vectors(64, 0), [0, 1], config, validation=(x_val, y_val))
  np.testing.assert_array_equal(result.selected_epoch_S, [NO_EPOCH, NO_EPOCH])
  assert result.stopped_early and len(result.loss_ExS) == 2 and result.steps == 2 * 4


def test_the_record_of_a_run_with_no_selected_epoch_says_so_and_is_left_out():
  group = _tiny_group(seeds=(0,))
  data = load_dataset(group[0].data)
  nan_val = dataclasses.replace(data, val=dataclasses.replace(data.val, x=np.full_like(data.val.x, np.nan)))
  record, = run_arm(group, nan_val)
  assert record["status"] == "no_epoch_selected" and record["selected_epoch"] == NO_EPOCH
  rows = summarize_arms({"joint": [record]}, record["task_names"])
  assert all(r["n"] == 0 and r["diverged"] == 1 for r in rows)
