"""missing_labels end to end on tiny settings (conftest's run of every experiment)."""
import csv
import json

def test_three_ways_of_handling_missing_labels(all_experiments):
  out = all_experiments[1] / "missing_labels"
  records = [json.loads(line) for line in open(out / "results.jsonl")]
  # At 0% missing the three ways are the same run, trained once: 2 seeds + 3 x 2 seeds,
  # and at 99% no example keeps all four labels, so dropping them leaves nothing to train.
  assert len(records) == 2 + 3 * 2 + 2 * 2
  at_half = {r["config"]["data"]["label_handling"]: r for r in records
             if r["config"]["data"]["missing_frac"] == 0.5 and r["config"]["seed"] == 0}
  assert at_half["mask"]["train_labels"] == 64 * 4 // 2
  assert at_half["as_negative"]["train_labels"] == 64 * 4
  assert at_half["drop_incomplete"]["train_examples"] < 64
  assert at_half["drop_incomplete"]["train_labels"] == 4 * at_half["drop_incomplete"]["train_examples"]
  rows = [r for r in csv.DictReader(open(out / "summary.csv"))
          if r["split"] == "test" and r["metric"] == "auc" and r["task"] == "mean"]
  assert {(r["missing_frac"], r["label_handling"]) for r in rows} == {
      (f, h) for f in ("0.0", "0.5", "0.99") for h in ("mask", "as_negative", "drop_incomplete")}
  nothing_left = [r for r in rows if (r["missing_frac"], r["label_handling"]) == ("0.99", "drop_incomplete")]
  assert nothing_left[0]["n"] == "0" and nothing_left[0]["mean"] == "nan"
  for ext in ("png", "svg"):
    assert (out / f"missing_labels.{ext}").stat().st_size > 1000
