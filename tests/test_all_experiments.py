"""Every experiment end to end through `launch.py --experiment=all` on tiny settings,
then redrawn with --plot_only; and the new experiments' bad input."""
import csv
import json

import pytest
from entry_points import assert_one_line_error, launch

EXPERIMENTS = ("joint_vs_separate", "network_size", "data_amount", "relatedness",
               "missing_labels", "transfer_vs_mtl")
# --preset=quick is given, so every flag it sets but these leave alone comes from it.
TINY = ["--experiment=all", "--preset=quick", "--num_train=64", "--num_val=16", "--num_test=48",
        "--epochs=1", "--seeds=2", "--batch_size=16", "--image_size=8", "--encoder=mlp",
        "--width=2", "--depth=1", "--widths=2", "--target_budget=10", "--target_budgets=10",
        "--rhos=0,1", "--missing_fracs=0.5", "--b_budgets=10"]


def records(path):
  return [json.loads(line) for line in open(path / "results.jsonl")]


def test_all_experiments_write_results_summary_and_plots_then_redraw(tmp_path):
  result = launch(*TINY, f"--out_dir={tmp_path}")
  assert result.returncode == 0, result.stderr
  assert "wall time: joint_vs_separate" in result.stdout and " min" in result.stdout
  for name in EXPERIMENTS:
    out = tmp_path / name
    assert all(r["config"]["data"]["num_train"] == 64 for r in records(out)), name
    assert list(csv.DictReader(open(out / "summary.csv"))), name
    for ext in ("png", "svg"):
      assert (out / f"{name}.{ext}").stat().st_size > 1000, (name, ext)

  # data_amount: the quick preset's k values, the target first with exactly its budget.
  amount = records(tmp_path / "data_amount")
  assert sorted({len(r["task_names"]) - 1 for r in amount}) == [0, 2, 8, 21]
  for r in amount:
    assert r["task_names"][0] == "car" and r["config"]["data"]["label_budget"] == [["car", 10]]

  # relatedness: vector data, both arms at each rho, with the experiment's own defaults.
  rel = records(tmp_path / "relatedness")
  assert sorted({(r["config"]["data"]["relatedness"]["rho"], r["config"]["arm"]) for r in rel}) == [
      (0.0, "joint"), (0.0, "separate"), (1.0, "joint"), (1.0, "separate")]
  assert all(r["config"]["data"]["dataset"] == "related" and len(r["task_names"]) == 8 for r in rel)

  # transfer_vs_mtl: four approaches to B; only the transfer arms pretrain, on A.
  transfer = records(tmp_path / "transfer_vs_mtl")
  rows = list(csv.DictReader(open(tmp_path / "transfer_vs_mtl" / "summary.csv")))
  assert {r["arm"] for r in rows} == {"b_only", "transfer_frozen", "transfer_finetune", "joint"}
  assert {r["task"] for r in rows} == {"stop_sign"}
  pretrained = [r for r in transfer if r["config"]["pretrain"]]
  assert {r["config"]["arm"] for r in pretrained} == {"transfer_frozen", "transfer_finetune"}
  assert all(r["config"]["pretrain"]["tasks"] == ["car"] for r in pretrained)

  before = {name: len(records(tmp_path / name)) for name in EXPERIMENTS}
  redraw = launch(*TINY, "--plot_only", f"--out_dir={tmp_path}")
  assert redraw.returncode == 0, redraw.stderr
  assert " epoch " not in redraw.stdout
  assert before == {name: len(records(tmp_path / name)) for name in EXPERIMENTS}


@pytest.mark.parametrize("flags,expected", [
    ("--experiment=data_amount --num_aux=0,40", "--num_aux must be in [0, 21]"),
    ("--experiment=data_amount --num_aux=", "--num_aux must list at least one value"),
    ("--experiment=data_amount --target_budget=7000", "a target budget of 7000 labels is outside"),
    ("--experiment=data_amount --target_budgets=10,x", "--target_budgets must be a comma-separated"),
    ("--experiment=transfer_vs_mtl --b_budgets=0,10", "--b_budgets must list label counts in [1,"),
    ("--experiment=transfer_vs_mtl --task_b=car", "--task_a and --task_b must differ"),
    ("--experiment=relatedness --rhos=0,2", "--rhos must list at least one value, each in [0, 1]"),
    ("--experiment=relatedness --encoder=cnn", "the cnn encoder needs images"),
    ("--experiment=all --preset=slow", "--preset"),
])
def test_bad_input_is_one_line(tmp_path, flags, expected):
  out = tmp_path / "never"
  assert_one_line_error(launch(*flags.split(), f"--out_dir={out}"), expected, out)


def test_presets_cover_every_experiment_with_real_flags():
  from absl import flags

  import launch
  from experiments import presets
  for preset, by_experiment in presets.PRESETS.items():
    assert set(by_experiment) == set(launch.EXPERIMENTS), preset
    for values in by_experiment.values():
      for name in values:
        assert name in flags.FLAGS, (preset, name)
