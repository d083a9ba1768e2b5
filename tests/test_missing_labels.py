"""missing_labels end to end on tiny settings, and its bad input."""
import csv
import json

import pytest
from entry_points import assert_one_line_error, launch

TINY = ["--experiment=missing_labels", "--num_train=64", "--num_val=32", "--num_test=64",
        "--epochs=1", "--seeds=2", "--batch_size=16", "--width=4"]


def test_three_ways_of_handling_missing_labels(tmp_path):
  out = tmp_path / "ml"
  result = launch(*TINY, "--missing_fracs=0,0.5", f"--out_dir={out}")
  assert result.returncode == 0, result.stderr
  records = [json.loads(line) for line in open(out / "results.jsonl")]
  # At 0% missing the three ways are the same run, trained once: 2 seeds + 3 x 2 seeds.
  assert len(records) == 8
  at_half = {r["config"]["data"]["label_handling"]: r for r in records
             if r["config"]["data"]["missing_frac"] == 0.5 and r["config"]["seed"] == 0}
  assert at_half["mask"]["train_labels"] == 64 * 4 // 2
  assert at_half["as_negative"]["train_labels"] == 64 * 4
  assert at_half["drop_incomplete"]["train_examples"] < 64
  assert at_half["drop_incomplete"]["train_labels"] == 4 * at_half["drop_incomplete"]["train_examples"]
  rows = [r for r in csv.DictReader(open(out / "summary.csv"))
          if r["split"] == "test" and r["metric"] == "auc" and r["task"] == "mean"]
  assert {(r["missing_frac"], r["label_handling"]) for r in rows} == {
      (f, h) for f in ("0.0", "0.5") for h in ("mask", "as_negative", "drop_incomplete")}
  for ext in ("png", "svg"):
    assert (out / f"missing_labels.{ext}").stat().st_size > 1000


@pytest.mark.parametrize("fracs,expected", [
    ("--missing_fracs=", "at least one fraction"),
    ("--missing_fracs=0.2,1.0", "each in [0, 1)"),
    ("--missing_fracs=half", "must be numbers"),
])
def test_bad_fractions_are_one_line(tmp_path, fracs, expected):
  out = tmp_path / "never"
  assert_one_line_error(launch("--experiment=missing_labels", fracs, f"--out_dir={out}"), expected, out)
