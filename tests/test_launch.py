"""The real entry point, run as a user runs it, on tiny settings."""
import csv
import json
import os
import subprocess
import sys

import pytest
from entry_points import ROOT, assert_one_line_error, launch, launch_in_process

TINY = ["--num_train=96", "--num_val=32", "--num_test=64", "--epochs=2", "--seeds=2",
        "--width=4", "--batch_size=32"]


def test_default_experiment_writes_results_summary_and_plot(tmp_path):
  out = tmp_path / "run"
  first = launch(*TINY, f"--out_dir={out}")
  assert first.returncode == 0, first.stderr
  assert "pedestrian" in first.stdout and "AUC joint" in first.stdout

  records = [json.loads(line) for line in open(out / "results.jsonl")]
  assert sorted((r["config"]["arm"], r["config"]["seed"]) for r in records) == [
      ("joint", 0), ("joint", 1), ("separate", 0), ("separate", 1)]
  config = records[0]["config"]
  assert config["encoder"] == {"kind": "cnn", "width": 4, "depth": 3, "dtype": "float32", "dropout": 0.0}
  assert config["train"]["epochs"] == 2 and config["data"]["num_train"] == 96
  assert records[0]["task_names"] == ["pedestrian", "car", "stop_sign", "traffic_light"]
  for r in records:
    assert 0.0 <= r["metrics"]["test"]["auc"]["mean"] <= 1.0
  by_arm = {r["config"]["arm"]: r["param_count"] for r in records}
  assert by_arm["separate"] > by_arm["joint"]

  rows = list(csv.DictReader(open(out / "summary.csv")))
  assert {r["arm"] for r in rows} == {"joint", "separate", "joint_minus_separate"}
  # The summary is the records' mean, arm by arm, and the difference is paired by seed.
  auc = {(r["config"]["arm"], r["config"]["seed"]): r["metrics"]["test"]["auc"]["mean"] for r in records}
  cell = {(r["split"], r["metric"], r["task"], r["arm"]): float(r["mean"]) for r in rows}
  for arm in ("joint", "separate"):
    assert cell["test", "auc", "mean", arm] == pytest.approx((auc[arm, 0] + auc[arm, 1]) / 2, abs=1e-5)
  assert cell["test", "auc", "mean", "joint_minus_separate"] == pytest.approx(
      (auc["joint", 0] - auc["separate", 0] + auc["joint", 1] - auc["separate", 1]) / 2, abs=1e-5)
  assert {r["task"] for r in rows} == {"pedestrian", "car", "stop_sign", "traffic_light", "mean"}
  assert all(r["n"] == "2" for r in rows)
  with open(out / "joint_vs_separate.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"

  # A second launch finds every run in results.jsonl and trains nothing.
  second = launch_in_process(*TINY, f"--out_dir={out}")
  assert second.returncode == 0, second.stderr
  assert "epoch" not in second.stdout and "skipped" in second.stdout
  assert len(open(out / "results.jsonl").readlines()) == 4

  # --plot_only redraws from results.jsonl alone.
  os.remove(out / "joint_vs_separate.png")
  redraw = launch_in_process(*TINY, "--plot_only", f"--out_dir={out}")
  assert redraw.returncode == 0, redraw.stderr
  assert "epoch" not in redraw.stdout and (out / "joint_vs_separate.png").exists()
  # ... and refuses to invent runs that were never trained.
  other = launch_in_process(*TINY, "--seeds=3", "--plot_only", f"--out_dir={out}")
  assert other.returncode == 2 and "2 of the 6 runs" in other.stderr


def test_experiment_runs_alone_as_a_module(tmp_path):
  out = tmp_path / "alone"
  result = subprocess.run(
      [sys.executable, "-m", "experiments.joint_vs_separate", *TINY, "--seeds=1", "--encoder=mlp",
       f"--out_dir={out}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert len(open(out / "results.jsonl").readlines()) == 2


def test_bad_input_from_a_real_process_is_one_line(tmp_path):
  """The table of bad input runs in-process (tests/test_bad_input.py); this one goes
  through a new interpreter, as a user's shell does."""
  out = tmp_path / "never"
  assert_one_line_error(launch("--epoch=3", f"--out_dir={out}"), "Did you mean: epochs", out)


def test_out_dir_that_is_a_file_is_refused(tmp_path):
  not_a_dir = tmp_path / "file"
  not_a_dir.write_text("keep me")
  result = launch(f"--out_dir={not_a_dir}")
  assert result.returncode == 2 and "is not a directory" in result.stderr
  assert not_a_dir.read_text() == "keep me"


def test_help_explains_the_flags():
  result = launch("--help")  # absl's --help exits with status 1 after printing
  for flag in ["--experiment", "--dataset", "--encoder", "--width", "--epochs", "--seeds",
               "--missing_frac", "--out_dir"]:
    assert flag in result.stdout
