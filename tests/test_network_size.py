"""network_size end to end on tiny settings, and its bad input."""
import csv
import json

import pytest
from entry_points import assert_one_line_error, launch

TINY = ["--experiment=network_size", "--num_train=64", "--num_val=32", "--num_test=64",
        "--epochs=1", "--seeds=2", "--batch_size=32"]


def test_sweep_writes_a_point_per_encoder_width_and_arm(tmp_path):
  out = tmp_path / "ns"
  result = launch(*TINY, "--encoder=mlp", "--widths=2,6", f"--out_dir={out}")
  assert result.returncode == 0, result.stderr
  records = [json.loads(line) for line in open(out / "results.jsonl")]
  assert sorted({(r["config"]["encoder"]["kind"], r["config"]["encoder"]["width"], r["config"]["arm"])
                 for r in records}) == [("mlp", 2, "joint"), ("mlp", 2, "separate"),
                                        ("mlp", 6, "joint"), ("mlp", 6, "separate")]
  assert len(records) == 8
  rows = [r for r in csv.DictReader(open(out / "summary.csv"))
          if r["split"] == "test" and r["metric"] == "auc" and r["task"] == "mean"]
  # Separate networks have T times the parameters of one single-task network, and the
  # summary carries the counts the plot's second panel uses.
  widths = {int(r["width"]): r for r in rows if r["arm"] == "joint"}
  assert int(widths[6]["params_separate"]) > int(widths[6]["params_joint"])
  assert int(widths[6]["params_joint"]) > int(widths[2]["params_joint"])
  for ext in ("png", "svg"):
    assert (out / f"network_size.{ext}").stat().st_size > 1000


@pytest.mark.parametrize("widths,expected", [
    ("--widths=", "--widths must list at least one positive width"),
    ("--widths=0,4", "--widths must list at least one positive width"),
    ("--widths=four", "comma-separated list of integers"),
])
def test_bad_widths_are_one_line(tmp_path, widths, expected):
  out = tmp_path / "never"
  assert_one_line_error(launch("--experiment=network_size", widths, f"--out_dir={out}"), expected, out)
