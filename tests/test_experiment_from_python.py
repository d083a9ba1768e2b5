"""An experiment called from Python with a Settings object: no flags are parsed."""
import csv
import dataclasses
import json

import numpy as np

from experiments import joint_vs_separate
from experiments.registry import EXPERIMENTS
from mtl_jax.data.datasets import DataConfig
from mtl_jax.data.driving import SceneConfig
from mtl_jax.models import EncoderSpec
from mtl_jax.train import TrainConfig


def test_joint_vs_separate_from_a_settings_object_writes_results_summary_and_plot(tmp_path):
  settings = joint_vs_separate.Settings(
      data=DataConfig(num_train=64, num_val=32, num_test=32, scenes=SceneConfig(image_size=8)),
      encoder=EncoderSpec("mlp", 8, 1), train=TrainConfig(batch_size=32, epochs=1), seeds=2,
      out_dir=str(tmp_path))
  assert EXPERIMENTS["joint_vs_separate"] is joint_vs_separate.EXPERIMENT
  rows = joint_vs_separate.EXPERIMENT.run(settings)

  records = [json.loads(line) for line in open(tmp_path / "results.jsonl")]
  assert sorted((r["config"]["arm"], r["config"]["seed"]) for r in records) == [
      ("joint", 0), ("joint", 1), ("separate", 0), ("separate", 1)]
  assert records[0]["config"]["encoder"]["width"] == 8
  # The returned rows are summary.csv's, with real numbers rather than the CSV's strings.
  written = list(csv.DictReader(open(tmp_path / "summary.csv")))
  assert len(written) == len(rows) and list(written[0]) == list(rows[0])
  assert {r["arm"] for r in rows} == {"joint", "separate", "joint_minus_separate"}
  assert all(isinstance(r["mean"], float) and isinstance(r["n"], int) for r in rows)
  np.testing.assert_allclose([float(w["mean"]) for w in written], [r["mean"] for r in rows], atol=1e-5)
  for ext in ("png", "svg"):
    assert (tmp_path / f"joint_vs_separate.{ext}").stat().st_size > 1000

  # plot_only redraws from results.jsonl alone, to the same rows.
  (tmp_path / "joint_vs_separate.png").unlink()
  again = joint_vs_separate.EXPERIMENT.run(dataclasses.replace(settings, plot_only=True))
  assert len(open(tmp_path / "results.jsonl").readlines()) == 4
  assert (tmp_path / "joint_vs_separate.png").exists()
  assert [(r["arm"], r["task"]) for r in again] == [(r["arm"], r["task"]) for r in rows]
  np.testing.assert_array_equal([r["mean"] for r in again], [r["mean"] for r in rows])
