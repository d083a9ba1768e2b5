"""--save_params and python -m mtl_jax.predict on a tiny real run: predictions read
back from a file reproduce the record's own test metrics, a new file's columns are
matched by name, and bad input is one line with nothing written."""
import csv
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from entry_points import ROOT, assert_one_line_error, launch_in_process

from mtl_jax import inference, metrics, saved_params
from mtl_jax.data.datasets import DataConfig, load_dataset
from mtl_jax.errors import InputError
from mtl_jax.results import RESULTS_FILE
from mtl_jax.train import predict

FEATURES = ("f1", "f2", "f3", "f4", "f5")
TASKS = ("a", "b")
SPLIT_SIZES = {"train": 100, "val": 30, "test": 30}
TINY = ["--encoder=mlp", "--width=4", "--depth=1", "--epochs=1", "--seeds=2", "--batch_size=16"]


def _write_csv(path, header, rows):
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)


def _read_csv(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def table(tmp_path_factory):
  """A CSV with its own split column, features far from standardised (so that a wrong
  standardisation shows), and labels that depend on them, some missing."""
  rng = np.random.default_rng(0)
  n = sum(SPLIT_SIZES.values())
  x = rng.normal(size=(n, len(FEATURES))) * [1, 10, 100, 0.1, 5] + [0, 50, -300, 2, 7]
  z = (x - x.mean(0)) / x.std(0)
  y = np.stack([z[:, 0] + z[:, 1] > 0, z[:, 2] - z[:, 3] > 0], axis=1).astype(int)
  y = np.where(rng.random(y.shape) < 0.2, -1, y)
  split = np.repeat(list(SPLIT_SIZES), list(SPLIT_SIZES.values()))
  path = tmp_path_factory.mktemp("data") / "train.csv"
  _write_csv(path, [*FEATURES, *(f"label:{t}" for t in TASKS), "split"],
             [[f"{v:.6g}" for v in xi] + ["?" if v == -1 else str(v) for v in yi] + [s]
              for xi, yi, s in zip(x, y, split)])
  return path, x, y, split


@pytest.fixture(scope="module")
def launches(table, tmp_path_factory):
  """The same tiny launch twice into one folder: without --save_params, then with it
  (which trains the finished runs again to save their parameters). Returns the folder,
  a copy of it as the first launch left it, and the second launch's output."""
  out = tmp_path_factory.mktemp("runs") / "out"
  flags = [f"--dataset=csv:{table[0]}", *TINY, f"--out_dir={out}"]
  first = launch_in_process(*flags)
  assert first.returncode == 0, first.stderr
  unsaved = tmp_path_factory.mktemp("runs") / "unsaved"
  shutil.copytree(out, unsaved)
  second = launch_in_process(*flags, "--save_params")
  assert second.returncode == 0, second.stderr
  return out, unsaved, second


@pytest.fixture(scope="module")
def run_dir(launches):
  return launches[0]


def _records(out):
  return [json.loads(line) for line in open(out / RESULTS_FILE)]


def _saved(out):
  return [r for r in _records(out) if "params_path" in r]


def _predicted(out_csv, kind):
  rows = _read_csv(out_csv)
  return np.array([[float(r[f"{kind}:{t}"]) for t in TASKS] for r in rows])


def test_save_params_trains_finished_runs_again_to_the_same_result(launches):
  out, unsaved, second = launches
  assert "4 finished runs on file have no saved parameters; trained again" in second.stdout
  assert not (unsaved / "params").exists()
  before = {r["hash"]: r for r in _records(unsaved)}
  after = _records(out)[len(before):]  # appended; a later line of a hash wins
  assert sorted(r["hash"] for r in after) == sorted(before)
  for record in after:
    assert record["metrics"] == before[record["hash"]]["metrics"]


def test_each_run_saves_its_parameters_with_what_predicting_needs(run_dir):
  records = _saved(run_dir)
  assert len(records) == 4  # joint and separate, 2 seeds each
  for record in records:
    assert record["params_path"] == f"params/{record['hash']}.npz"
    run = saved_params.load(str(run_dir / record["params_path"]), record["params_digest"])
    assert run.task_names == TASKS and run.feature_names == FEATURES
    assert (run.spec["arm"], run.spec["seed"]) == (record["config"]["arm"], record["config"]["seed"])
    assert run.standardisation.mean.shape == (len(FEATURES),)
  assert not [name for name in os.listdir(run_dir / "params") if not name.endswith(".npz")]


@pytest.mark.parametrize("arm", ["joint", "separate"])
def test_predictions_reproduce_the_records_test_metrics(table, run_dir, tmp_path, arm):
  """The independent check: the CSV read afresh, its rows reordered by name,
  standardised with the saved statistics and scored by the saved parameters give, on
  the test rows, each seed's in-process sigmoid(logits) and the record's test AUC and
  accuracy, which training computed from its own arrays."""
  path, _, y, split = table
  data = load_dataset(DataConfig(dataset=f"csv:{path}", num_train=None, num_val=None, num_test=None))
  test = split == "test"
  for record in [r for r in _saved(run_dir) if r["config"]["arm"] == arm]:
    seed = record["config"]["seed"]
    out = tmp_path / f"{arm}{seed}.csv"
    inference.predict_file(str(run_dir), f"csv:{path}", str(out), arm=arm, seeds=[seed])
    prob = _predicted(out, "probability")[test]
    run = saved_params.load(str(run_dir / record["params_path"]))
    logits = predict(run.model(), jax.tree.map(lambda p: p[None], run.params), data.test.x)[0]
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-logits.astype(np.float64))), rtol=0, atol=1e-7)
    for j in range(len(TASKS)):
      valid = y[test, j] != -1
      auc = metrics.roc_auc(prob[valid, j], y[test, j][valid])
      assert abs(auc - record["metrics"]["test"]["auc"]["per_task"][j]) < 1e-6
    accuracy = np.mean((_predicted(out, "decision")[test] == y[test])[y[test] != -1])
    task_accuracy = record["metrics"]["test"]["accuracy"]["per_task"]
    counts = np.sum(y[test] != -1, axis=0)
    assert abs(accuracy - np.dot(task_accuracy, counts) / counts.sum()) < 1e-9


def test_columns_in_another_order_without_labels_give_the_same_predictions(table, run_dir, tmp_path):
  path, x, _, _ = table
  order = [4, 2, 0, 3, 1]
  shuffled = tmp_path / "new.csv"
  _write_csv(shuffled, [FEATURES[i] for i in order], [[f"{v:.6g}" for v in xi[order]] for xi in x])
  both, one = tmp_path / "both.csv", tmp_path / "one.csv"
  inference.predict_file(str(run_dir), f"csv:{shuffled}", str(both), arm="joint")
  inference.predict_file(str(run_dir), f"csv:{path}", str(one), arm="joint", seeds=[0])
  inference.predict_file(str(run_dir), f"csv:{path}", str(tmp_path / "one1.csv"), arm="joint", seeds=[1])
  mean = (_predicted(one, "probability") + _predicted(tmp_path / "one1.csv", "probability")) / 2
  np.testing.assert_allclose(_predicted(both, "probability"), mean, rtol=0, atol=1e-15)
  np.testing.assert_array_equal(_predicted(both, "decision"), mean > 0.5)
  assert [r["example"] for r in _read_csv(both)] == [str(i) for i in range(len(x))]


def test_decisions_use_the_thresholds_a_record_holds(table, run_dir, tmp_path):
  """--threshold=val records each seed's per-task thresholds (as probabilities); the
  decision compares the mean probability with their mean over seeds."""
  copy = tmp_path / "copy"
  shutil.copytree(run_dir, copy)
  thresholds = {0: [0.3, 0.6], 1: [0.5, 0.8]}
  with open(copy / RESULTS_FILE, "w") as f:
    for record in _records(run_dir):
      f.write(json.dumps({**record, "decision_thresholds": thresholds[record["config"]["seed"]]}) + "\n")
  out = tmp_path / "p.csv"
  inference.predict_file(str(copy), f"csv:{table[0]}", str(out), arm="joint")
  decisions, prob = _predicted(out, "decision"), _predicted(out, "probability")
  np.testing.assert_array_equal(decisions, prob > np.array([0.4, 0.7]))
  assert (decisions != (prob > 0.5)).any()  # the thresholds mattered


def test_arff_output_holds_the_same_predictions(table, run_dir, tmp_path):
  from scipy.io import arff
  as_csv, as_arff = tmp_path / "p.csv", tmp_path / "p.arff"
  for out in (as_csv, as_arff):
    inference.predict_file(str(run_dir), f"csv:{table[0]}", str(out), arm="separate")
  rows = arff.loadarff(str(as_arff))[0]
  for kind in ("probability", "decision"):
    read = np.array([[float(value) for value in rows[f"{kind}:{t}"]] for t in TASKS]).T
    np.testing.assert_array_equal(read, _predicted(as_csv, kind))


def test_other_columns_are_one_line_naming_them_and_nothing_is_written(table, run_dir, tmp_path):
  path, x, _, _ = table
  new = tmp_path / "new.csv"
  _write_csv(new, ["f1", "g2", "f3", "f4", "f5", "id"], [[*map(str, xi), "7"] for xi in x])
  out = tmp_path / "probabilities.csv"
  result = subprocess.run([sys.executable, "-m", "mtl_jax.predict", f"--run_dir={run_dir}", "--arm=joint",
                           f"--dataset=csv:{new}", f"--out={out}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
  assert "missing 'f2'" in lines[0] and "'g2', 'id'" in lines[0]
  assert sorted(os.listdir(tmp_path)) == ["new.csv"]  # no output, not even a partial one


def test_a_run_without_save_params_and_other_bad_requests(table, launches, tmp_path):
  path, (run_dir, unsaved, _) = f"csv:{table[0]}", launches
  out = str(tmp_path / "p.csv")
  cases = [(str(unsaved), {}, "none of its 4 runs saved their parameters; run the same launch again with --save_params"),
           (str(tmp_path), {}, "has no results.jsonl"),
           (str(run_dir), {}, "2 configurations that match; choose one with --arm"),
           (str(run_dir), {"arm": "mmoe"}, "no saved run that matches"),
           (str(run_dir), {"arm": "joint", "seeds": [7]}, "no saved run that matches")]
  for folder, filters, message in cases:
    with pytest.raises(InputError, match=message):
      inference.predict_file(folder, path, out, **filters)
  with pytest.raises(InputError, match="written as .csv or .arff"):
    inference.predict_file(str(run_dir), path, str(tmp_path / "p.txt"), arm="joint")
  assert not os.path.exists(out)
  plot_only = tmp_path / "plot_only"
  assert_one_line_error(launch_in_process(f"--dataset={path}", "--save_params", "--plot_only",
                                          f"--out_dir={plot_only}"), "give one of them", plot_only)


def test_a_damaged_parameter_file_is_refused(table, run_dir, tmp_path):
  copy = tmp_path / "copy"
  shutil.copytree(run_dir, copy)
  record = next(r for r in _saved(copy) if r["config"]["arm"] == "joint" and r["config"]["seed"] == 0)
  params = copy / record["params_path"]
  data = bytearray(params.read_bytes())
  data[len(data) // 2] ^= 0xFF
  params.write_bytes(bytes(data))
  with pytest.raises(InputError, match="saved parameters cannot be used"):
    inference.predict_file(str(copy), f"csv:{table[0]}", str(tmp_path / "p.csv"), arm="joint")


ARFF_HEADER = """@relation new
@attribute colour {red,green,blue}
@attribute id string
@attribute size numeric
@attribute 'lab a' {0,1}
@attribute flag {NO,YES}
@data
"""


def test_new_arff_inputs_are_matched_by_name_and_value_as_training_reads_them(tmp_path):
  """The run trained on size, flag and colour one-hot (ATTRIBUTE=VALUE) in that order;
  the new file declares them in another order, with an id and a label beside them."""
  from mtl_jax.data.inputs import RunColumns, read_inputs
  path = tmp_path / "new.arff"
  path.write_text(ARFF_HEADER + "green,x1,2.5,1,YES\n{0 blue, 1 x2, 2 -1, 4 NO}\n")
  run = RunColumns(("size", "flag", "colour=red", "colour=green", "colour=blue"), not_features=("lab a",))
  # Row 2 is sparse: 'lab a' left out is 0, and so is nothing else it leaves out.
  np.testing.assert_array_equal(read_inputs(f"arff:{path}", run),
                                [[2.5, 1, 0, 1, 0], [-1, 0, 0, 0, 1]])
  with pytest.raises(InputError, match="missing 'colour=red'.*not a feature of the run: 'colour=crimson'"):
    other = tmp_path / "other.arff"
    other.write_text(ARFF_HEADER.replace("red,", "crimson,") + "green,x1,2.5,1,YES\n")
    read_inputs(f"arff:{other}", run)


def test_new_data_with_missing_features_is_filled_as_training_filled_its_own(table, run_dir, tmp_path):
  """A run trained with --impute=mean keeps its fill values: a new file's `?` cell gives
  the prediction of that cell holding the train split's mean. A run trained without
  --impute refuses `?` in new data, as training would have."""
  path, x, _, _ = table
  rows = [[f"{v:.6g}" for v in xi] for xi in x]
  with_gap = [list(r) for r in rows]
  with_gap[3][2] = "?"  # a training row: its mean is the train split's without this cell
  train_csv = tmp_path / "gap.csv"
  original = _read_csv(path)
  _write_csv(train_csv, list(original[0]), [[*g, *[o[k] for k in list(o)[len(FEATURES):]]]
                                              for g, o in zip(with_gap, original)])
  out = tmp_path / "imputed"
  result = launch_in_process(f"--dataset=csv:{train_csv}", *TINY, "--seeds=1", "--impute=mean",
                             "--save_params", f"--out_dir={out}")
  assert result.returncode == 0, result.stderr
  run = saved_params.load(str(out / _saved(out)[0]["params_path"]))
  train_rows = [i for i, o in enumerate(original) if o["split"] == "train" and i != 3]
  assert run.standardisation.fill[2] == pytest.approx(np.float32(x[train_rows, 2].astype(np.float32).mean()), rel=1e-6)
  new_gap, new_filled = tmp_path / "new_gap.csv", tmp_path / "new_filled.csv"
  _write_csv(new_gap, FEATURES, [with_gap[3], rows[4]])
  _write_csv(new_filled, FEATURES, [[*with_gap[3][:2], repr(float(run.standardisation.fill[2])), *with_gap[3][3:]], rows[4]])
  gap_out, filled_out = tmp_path / "p_gap.csv", tmp_path / "p_filled.csv"
  inference.predict_file(str(out), f"csv:{new_gap}", str(gap_out), arm="joint")
  inference.predict_file(str(out), f"csv:{new_filled}", str(filled_out), arm="joint")
  np.testing.assert_allclose(_predicted(gap_out, "probability"), _predicted(filled_out, "probability"),
                             rtol=0, atol=1e-7)
  with pytest.raises(InputError, match="line 2, feature column .f3. is missing; the run was trained without --impute"):
    inference.predict_file(str(run_dir), f"csv:{new_gap}", str(tmp_path / "refused.csv"), arm="joint")
  assert not (tmp_path / "refused.csv").exists()
