"""missing_labels end to end on tiny settings (conftest's run of every experiment)."""
import csv
import json

def test_three_ways_of_handling_missing_labels(all_experiments):
  out = all_experiments[1] / "missing_labels"
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
