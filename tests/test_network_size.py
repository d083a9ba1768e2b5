"""network_size end to end on tiny settings (conftest's run of every experiment)."""
import csv
import json

def test_sweep_writes_a_point_per_encoder_width_and_arm(all_experiments):
  out = all_experiments[1] / "network_size"
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
