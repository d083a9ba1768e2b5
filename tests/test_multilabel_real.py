"""The multilabel_real experiment end to end on two tiny sets: a folder of ARFF files
found as the field lays them out, each set's standard split, both arms, one table."""
import csv
import json

import pytest
from entry_points import assert_one_line_error, launch, launch_in_process
from multilabel_sets import NUM_FEATURES, NUM_LABELS, write_sets

from experiments.multilabel_real import parse_sets

TINY = ["--experiment=multilabel_real", "--width=4", "--depth=1", "--train_steps=20",
        "--seeds=2", "--batch_size=16"]


def test_a_folder_and_explicit_sets_are_found_with_their_splits(tmp_path):
  write_sets(tmp_path)
  found = parse_sets(str(tmp_path))
  assert found == [("alpha", f"arff:{tmp_path}/alpha-train.arff,{tmp_path}/alpha-test.arff", ()),
                   ("beta", f"arff:{tmp_path}/beta.arff", ())]
  # Named on its own, a set replaces the folder's set of that name, in the folder's place.
  assert parse_sets(f"{tmp_path};arff:{tmp_path}/beta.arff@last:3")[1] == (
      "beta", f"arff:{tmp_path}/beta.arff", ("last:3",))
  assert parse_sets(f"arff:{tmp_path}/beta.arff@last:3; csv:x/gamma.csv") == [
      ("beta", f"arff:{tmp_path}/beta.arff", ("last:3",)), ("gamma", "csv:x/gamma.csv", ())]


def test_runs_joint_and_separate_on_every_set(tmp_path):
  write_sets(tmp_path / "sets")
  out = tmp_path / "out"
  result = launch_in_process(*TINY, f"--datasets={tmp_path / 'sets'}", "--metrics=micro_f1,hamming_loss",
                             f"--out_dir={out}")
  assert result.returncode == 0, result.stderr
  records = [json.loads(line) for line in open(out / "results.jsonl")]
  by_set = {}
  for r in records:
    by_set.setdefault(r["config"]["data"]["dataset"].rpartition("/")[2], set()).add(r["config"]["arm"])
    assert r["task_names"] == [f"l{j}" for j in range(NUM_LABELS)]
    assert r["config"]["encoder"]["kind"] == "mlp" and r["config"]["train"]["steps"] == 20
  assert by_set == {"alpha-test.arff": {"joint", "separate"}, "beta.arff": {"joint", "separate"}}
  alpha = next(r for r in records if "alpha" in r["config"]["data"]["dataset"])
  assert alpha["train_examples"] < 120 and "alpha-test.arff" in alpha["splits"]["test"]
  rows = list(csv.DictReader(open(out / "summary.csv")))
  assert {r["dataset"] for r in rows} == {"alpha", "beta"}
  assert f"features: {NUM_FEATURES} columns" in result.stdout
  table = result.stdout.split("Test metrics")[1]
  assert "alpha" in table and "hamming_loss (lower better)" in table and "micro_f1" in table
  assert "subset_accuracy" not in table  # --metrics chose the columns
  assert {"hamming_loss", "subset_accuracy", "macro_f1", "auc"} <= {r["metric"] for r in rows}
  assert (out / "multilabel_real.png").stat().st_size > 1000


def test_without_real_data_it_says_what_it_needs(tmp_path):
  result = launch_in_process("--experiment=multilabel_real", f"--out_dir={tmp_path / 'out'}")
  assert_one_line_error(result, "needs real multi-label data: --datasets=FOLDER", tmp_path / "out")


@pytest.mark.parametrize("datasets, expected", [
    ("nowhere/", "'nowhere/' is neither a folder nor read data"),
    ("arff:a.arff;arff:b/a.arff", "two sets are both called 'a'"),
])
def test_bad_sets_are_one_line(tmp_path, datasets, expected):
  result = launch_in_process("--experiment=multilabel_real", f"--datasets={datasets}",
                             f"--out_dir={tmp_path / 'out'}")
  assert_one_line_error(result, expected, tmp_path / "out")
