"""launch.py on a user's own data, as a user runs it: a CSV table with missing labels,
a prepared TFDS dataset, and bad files that must give one line and write nothing."""
import csv
import json
import subprocess
import sys

import pytest
from entry_points import ROOT, launch

TINY = ["--encoder=mlp", "--width=4", "--depth=1", "--epochs=2", "--seeds=2", "--batch_size=16"]


def records(out):
  return [json.loads(line) for line in open(out / "results.jsonl")]


@pytest.fixture(scope="module")
def example_csv(tmp_path_factory):
  path = tmp_path_factory.mktemp("data") / "example.csv"
  subprocess.run([sys.executable, "-m", "mtl_jax.data.example_table", f"--out={path}", "--rows=300"],
                 cwd=ROOT, check=True, capture_output=True)
  return path


def test_joint_vs_separate_on_a_csv_with_named_label_columns(example_csv, tmp_path):
  result = launch(f"--dataset=csv:{example_csv}", "--label_columns=task_c,label:task_a",
                  "--task_budget=task_a:20", *TINY, f"--out_dir={tmp_path}")
  assert result.returncode == 0, result.stderr
  runs = records(tmp_path)
  assert {r["config"]["arm"] for r in runs} == {"joint", "separate"}
  for r in runs:
    assert r["task_names"] == ["task_c", "task_a"]
    # 300 rows: 45 set aside for test and 45 for val by data_seed, all of them used.
    assert (r["train_examples"], r["config"]["data"]["num_train"]) == (210, None)
    assert "set aside by data_seed 0" in r["splits"]["test"]
    assert r["config"]["train"]["select_epoch"] == "best_val"
    assert len(r["val_loss_per_epoch"]) == 2
  # The budget masked all but 20 of task_a's labels; task_c kept its own (about 70%).
  assert all(r["train_labels"] < 20 + 210 for r in runs)
  separate = [r for r in runs if r["config"]["arm"] == "separate"]
  assert all(len(r["selected_epoch"]) == 2 for r in separate)  # one per task's network
  rows = list(csv.DictReader(open(tmp_path / "summary.csv")))
  assert {r["task"] for r in rows} >= {"task_c", "task_a"}
  assert "task_c" in result.stdout and "own missing labels" in result.stdout


def test_data_amount_on_a_csv_uses_its_columns_as_tasks(example_csv, tmp_path):
  result = launch("--experiment=data_amount", f"--dataset=csv:{example_csv}",
                  "--target_task=task_b", "--num_aux=0,all", "--target_budget=10",
                  "--target_budgets=10", *TINY, f"--out_dir={tmp_path}")
  assert result.returncode == 0, result.stderr
  tasks = {tuple(r["task_names"]) for r in records(tmp_path)}
  assert tasks == {("task_b",), ("task_b", "task_a", "task_c", "task_d")}


def test_a_prepared_tfds_dataset(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  from test_tfds_multilabel import CLASSES, SPLIT_SIZES, _prepare_tiny
  _prepare_tiny(tmp_path / "tfds")
  out = tmp_path / "out"
  result = launch("--dataset=tfds:tiny_multi_label", f"--data_dir={tmp_path / 'tfds'}",
                  "--encoder=mlp", "--image_size=8", "--width=2", "--depth=1", "--epochs=1",
                  "--seeds=2", "--batch_size=4", f"--out_dir={out}")
  assert result.returncode == 0, result.stderr
  for r in records(out):
    assert r["task_names"] == CLASSES
    # Its own train and validation splits; test comes from its validation split, and
    # validation is then cut from train.
    assert r["splits"]["test"] == "tfds:tiny_multi_label val"
    assert "set aside by data_seed" in r["splits"]["val"]
    assert r["train_examples"] == SPLIT_SIZES["train"] - round(0.15 * SPLIT_SIZES["train"])
