"""Every registered experiment end to end through `launch.py --experiment=all` on tiny
settings, then redrawn with --plot_only; and every one has quick and full presets."""
import csv
import json

from conftest import ALL_TINY
from entry_points import launch_in_process

from experiments.experiment import PRESET_NAMES
from experiments.registry import EXPERIMENTS


def records(path):
  return [json.loads(line) for line in open(path / "results.jsonl")]


def test_all_experiments_write_results_summary_and_plots_then_redraw(all_experiments):
  result, tmp_path = all_experiments
  assert "wall time: joint_vs_separate" in result.stdout and " min" in result.stdout
  for name in EXPERIMENTS:
    out = tmp_path / name
    # multilabel_real uses every example of its sets.
    assert all(r["config"]["data"]["num_train"] == (None if name == "multilabel_real" else 64)
               for r in records(out)), name
    assert list(csv.DictReader(open(out / "summary.csv"))), name
    for ext in ("png", "svg"):
      assert (out / f"{name}.{ext}").stat().st_size > 1000, (name, ext)

  # data_amount: the quick preset's k values, the target first with exactly its budget.
  amount = records(tmp_path / "data_amount")
  assert sorted({len(r["task_names"]) - 1 for r in amount}) == [0, 2, 8, 21]
  for r in amount:
    assert r["task_names"][0] == "car" and r["config"]["data"]["label_budget"] == [["car", 10]]
    # The epoch is chosen for the target, not for the auxiliary tasks beside it.
    assert r["config"]["train"]["select_tasks"] == ["car"]

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
  assert all(r["config"]["train"]["select_tasks"] == ["stop_sign"] for r in transfer)

  # methods: separate and each method per problem, Δm% and mean rank in the summary,
  # per-task training losses and (for methods with per-task gradients) conflict recorded.
  compared = records(tmp_path / "methods")
  assert sorted({(len(r["task_names"]), r["config"]["arm"], r["config"]["train"]["method"]) for r in compared}) == [
      (8, "joint", "ew"), (8, "joint", "mgda_ub"), (8, "joint", "upgrad"), (8, "separate", "ew"),
      (34, "joint", "ew"), (34, "joint", "mgda_ub"), (34, "joint", "upgrad"), (34, "separate", "ew")]
  for r in compared:
    assert len(r["train_loss_per_task_per_epoch"]) == r["epochs_trained"] == 1
    assert len(r["train_loss_per_task_per_epoch"][0]) == len(r["task_names"])
    combines_gradients = r["config"]["arm"] == "joint" and r["config"]["train"]["method"] != "ew"
    assert (r["gradient_cosine_per_epoch"] is not None) == combines_gradients
  rows = list(csv.DictReader(open(tmp_path / "methods" / "summary.csv")))
  assert {r["arm"] for r in rows if r["metric"] == "delta_m_pct"} == {"ew", "mgda_ub", "upgrad"}
  assert {r["arm"] for r in rows if r["metric"] == "mean_rank"} == {"separate", "ew", "mgda_ub", "upgrad"}
  assert (tmp_path / "methods" / "methods_diagnostics.png").stat().st_size > 1000

  # architectures: separate networks and the chosen architecture at rho 1 and on the scenes,
  # with ew; MMoE's width is chosen so that its parameter count is about the separate
  # networks', except on the tiny scenes, where its gates on the 192 pixels alone exceed it.
  compared = records(tmp_path / "architectures")
  dataset = lambda r: r["config"]["data"]["dataset"]
  assert sorted({(dataset(r), len(r["task_names"]), r["config"]["arm"], r["config"]["arch"]) for r in compared}) == [
      ("driving", 4, "joint", "mmoe"), ("driving", 4, "separate", "separate"),
      ("related", 8, "joint", "mmoe"), ("related", 8, "separate", "separate")]
  assert all(r["config"]["train"]["method"] == "ew" for r in compared)
  assert {r["config"]["data"]["relatedness"]["rho"] for r in compared if dataset(r) == "related"} == {1.0}
  runs = {(dataset(r), r["config"]["arch"]): r for r in compared}
  width = {key: r["config"]["encoder"]["width"] for key, r in runs.items()}
  assert width["related", "separate"] == 32 and width["related", "mmoe"] > 32
  assert abs(runs["related", "mmoe"]["param_count"] / runs["related", "separate"]["param_count"] - 1) < 0.03
  assert width["driving", "mmoe"] == 1
  assert runs["driving", "mmoe"]["param_count"] > runs["driving", "separate"]["param_count"]
  rows = list(csv.DictReader(open(tmp_path / "architectures" / "summary.csv")))
  problems = {"related_rho1", "driving4"}
  assert {(r["problem"], r["arm"]) for r in rows if r["metric"] == "delta_m_pct"} == {(p, "mmoe") for p in problems}
  for metric in ("param_count", "width", "ms_per_step"):
    assert {(r["problem"], r["arm"]) for r in rows if r["metric"] == metric} == {
        (p, a) for p in problems for a in ("separate", "mmoe")}, metric
  assert {r["arm"] for r in rows if r["metric"] == "mean_rank"} == {"separate", "mmoe"}

  before = {name: len(records(tmp_path / name)) for name in EXPERIMENTS}
  # multilabel_real: both arms on each of the two sets in the folder given.
  real = records(tmp_path / "multilabel_real")
  assert sorted({(r["task_names"][0], r["config"]["arm"]) for r in real}) == [
      ("l0", "joint"), ("l0", "separate")] and len(real) == 2 * 2 * 2

  sets = f"--datasets={tmp_path.parent / 'multilabel_sets'}"
  redraw = launch_in_process(*ALL_TINY, sets, "--plot_only", f"--out_dir={tmp_path}")
  assert redraw.returncode == 0, redraw.stderr
  assert " epoch " not in redraw.stdout
  assert before == {name: len(records(tmp_path / name)) for name in EXPERIMENTS}


def test_every_experiment_has_quick_and_full_presets_of_real_flags():
  from absl import flags

  import launch  # noqa: F401  (defines --experiment and --preset, which a preset may not set)
  for name, experiment in EXPERIMENTS.items():
    assert experiment.name == name
    assert set(experiment.presets) == set(PRESET_NAMES) == {"quick", "full"}, name
    for preset, values in experiment.presets.items():
      for flag in values:
        assert flag in flags.FLAGS and flag not in ("experiment", "preset"), (name, preset, flag)
