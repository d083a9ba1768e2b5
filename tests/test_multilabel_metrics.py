"""The multi-label metrics against hand computations, missing labels and degenerate
cases, and against scikit-learn (test-only, skipped when absent); thresholds chosen on
the validation split alone; the entry point's summary.csv and --metrics table."""
import csv
import dataclasses
import math
import os

import numpy as np
import pytest

from mtl_jax import thresholds
from mtl_jax.data.datasets import DataConfig, data_identity, load_dataset
from mtl_jax.data.related import RelatedConfig
from mtl_jax.models import EncoderSpec
from mtl_jax.multilabel_metrics import MULTILABEL_METRICS, metric_values
from mtl_jax.results import (RESULTS_VERSION, SUMMARY_METRICS, config_hash, is_record, summarize_arms,
                             summary_gaps, read_results)
from mtl_jax.runs import RunConfig, score_seed
from mtl_jax.train import TrainConfig
from tests.entry_points import assert_one_line_error, launch_in_process

# Four examples, three tasks; -1 is a missing label. Example 2 has no valid label at
# all, and example 0's missing cell has the highest score of its row (5.0): a metric
# that looked at it would change.
LABELS = np.array([[1, 0, -1],
                   [0, 0, 1],
                   [-1, -1, -1],
                   [1, 1, 0]])
SCORES = np.array([[2.0, 1.0, 5.0],
                   [-1.0, -0.5, 0.3],
                   [3.0, 3.0, 3.0],
                   [0.2, -0.4, 0.2]])
# Decisions at logit 0:  [[1, 1, 1], [0, 0, 1], [1, 1, 1], [1, 0, 1]].
DECISIONS = SCORES > 0


def _by_hand() -> dict:
  return {
      # Valid cells: 2 + 3 + 0 + 3 = 8. Wrong among them: example 0 task 1 (said yes to a
      # no); example 3 task 1 (no to a yes) and task 2 (yes to a no): 3 of 8.
      "hamming_loss": 3 / 8,
      # Examples 0, 1 and 3 have valid labels (2 is skipped); only example 1 is all right.
      "subset_accuracy": 1 / 3,
      # Example 0: true {0}, decided {0, 1} -> 1/2; example 1: {2} vs {2} -> 1;
      # example 3: true {0, 1}, decided {0, 2} -> |{0}| / |{0, 1, 2}| = 1/3.
      "jaccard_accuracy": (1 / 2 + 1 + 1 / 3) / 3,
      # TP 3 (0:0, 1:2, 3:0), FP 2 (0:1, 3:2), FN 1 (3:1): 2*3 / (2*3 + 2 + 1) = 6/9.
      "micro_f1": 6 / 9,
      # Task 0: TP 2, FP 0, FN 0 -> 1; task 1: TP 0, FP 1, FN 1 -> 0; task 2 (examples 1
      # and 3 only): TP 1, FP 1, FN 0 -> 2/3.
      "macro_f1": [1.0, 0.0, 2 / 3],
      # Example 0: pair (2.0 pos, 1.0 neg) right -> 0; example 1: 0.3 above -1.0 and -0.5
      # -> 0; example 3: (0.2 pos, 0.2 neg) is a tie, (-0.4 pos, 0.2 neg) wrong -> 2/2.
      # Example 2 has no pair: skipped. (0 + 0 + 1) / 3.
      "ranking_loss": 1 / 3,
      # Top valid label: example 0 -> task 0 (2.0, not the missing 5.0), positive;
      # example 1 -> task 2 (0.3), positive; example 3 -> tasks 0 and 2 tied at 0.2, one
      # of them negative: wrong. 1 of 3.
      "one_error": 1 / 3,
      # Steps from the top to the last positive: example 0 -> 0 (the missing 5.0 is not
      # above it); example 1 -> 0; example 3 -> the positive at -0.4 is below both
      # others -> 2. (0 + 0 + 2) / 3.
      "coverage": 2 / 3,
  }


@pytest.mark.parametrize("name", list(MULTILABEL_METRICS))
def test_every_metric_matches_its_hand_computation_with_missing_labels(name):
  values = metric_values(SCORES, DECISIONS, LABELS)
  np.testing.assert_allclose(values[name], _by_hand()[name], rtol=1e-12)


def test_the_registry_says_which_way_is_better():
  lower = {n for n, m in MULTILABEL_METRICS.items() if not m.higher_is_better}
  assert lower == {"hamming_loss", "ranking_loss", "one_error", "coverage"}
  assert [n for n, m in MULTILABEL_METRICS.items() if m.per_task] == ["macro_f1"]


def test_all_labels_missing_leaves_nothing_to_score():
  values = metric_values(SCORES, DECISIONS, np.full((4, 3), -1))
  assert all(np.all(np.isnan(v)) for v in values.values())


def test_no_positive_anywhere():
  # All valid labels negative, nothing decided positive: no error (Hamming 0, every
  # example exactly right); F1 and the ranking metrics are undefined (no positive).
  labels = np.array([[0, 0], [0, -1]])
  values = metric_values(np.array([[-1.0, -2.0], [-3.0, 4.0]]), np.zeros((2, 2), bool), labels)
  assert values["hamming_loss"] == 0 and values["subset_accuracy"] == 1
  assert values["jaccard_accuracy"] == 1  # nothing true, nothing claimed: perfect
  for name in ("micro_f1", "ranking_loss", "one_error", "coverage"):
    assert math.isnan(values[name]), name
  assert np.all(np.isnan(values["macro_f1"]))


def test_a_task_without_positives_that_is_claimed_scores_f1_zero():
  labels = np.array([[0, 1], [0, 0]])
  decisions = np.array([[True, True], [False, False]])  # task 0: one false positive
  values = metric_values(np.zeros((2, 2)), decisions, labels)
  np.testing.assert_allclose(values["macro_f1"], [0.0, 1.0])  # task 1: TP 1 -> 2/2


def test_non_finite_scores_give_no_metric_rather_than_confident_negatives():
  scores = SCORES.copy()
  scores[0, 0] = np.nan
  values = metric_values(scores, scores > 0, LABELS)
  assert all(np.all(np.isnan(v)) for v in values.values())
  scores = SCORES.copy()
  scores[0, 2] = np.nan  # a missing cell's score is never read
  assert metric_values(scores, DECISIONS, LABELS)["coverage"] == pytest.approx(2 / 3)


def test_ranking_loss_is_chunked_the_same(monkeypatch):
  from mtl_jax import multilabel_metrics
  expected = metric_values(SCORES, DECISIONS, LABELS)["ranking_loss"]
  monkeypatch.setattr(multilabel_metrics, "PAIR_CELLS_AT_ONCE", 1)  # one example at a time
  assert metric_values(SCORES, DECISIONS, LABELS)["ranking_loss"] == expected


def _random_labelled(seed: int, num_examples: int = 60, num_tasks: int = 6):
  """Fully labelled: every example has a positive and a negative, every task a
  positive; scores rounded to 0.5 so that ties occur."""
  rng = np.random.default_rng(seed)
  labels = (rng.random((num_examples, num_tasks)) < 0.4).astype(int)
  labels[:, 0], labels[:, 1] = 1, 0  # a positive and a negative per example
  labels[0, :] = 1  # and a positive per task
  labels[0, 1] = 0
  labels[1, 1] = 1
  scores = np.round(rng.normal(size=labels.shape) * 2) / 2
  return scores, scores > 0, labels


@pytest.mark.parametrize("seed", range(3))
def test_against_scikit_learn_on_fully_labelled_data(seed):
  skm = pytest.importorskip("sklearn.metrics", reason="scikit-learn (test-only) not installed")
  scores, decisions, labels = _random_labelled(seed)
  values = metric_values(scores, decisions, labels)
  theirs = {
      "hamming_loss": skm.hamming_loss(labels, decisions),
      "subset_accuracy": skm.accuracy_score(labels, decisions),
      # zero_division=1: an example with nothing true and nothing claimed is right.
      "jaccard_accuracy": skm.jaccard_score(labels, decisions, average="samples", zero_division=1.0),
      "micro_f1": skm.f1_score(labels, decisions, average="micro"),
      "macro_f1": skm.f1_score(labels, decisions, average=None),
      "ranking_loss": skm.label_ranking_loss(labels, scores),
      # scikit-learn counts the top label as 1; we count steps from it, as Zhang & Zhou.
      "coverage": skm.coverage_error(labels, scores) - 1,
  }
  for name, value in theirs.items():
    np.testing.assert_allclose(values[name], value, rtol=1e-12, err_msg=name)
  assert np.mean(values["macro_f1"]) == pytest.approx(skm.f1_score(labels, decisions, average="macro"))


def test_ranking_loss_skips_what_scikit_learn_counts_as_zero():
  # scikit-learn scores an example without both a positive and a negative as 0 and
  # averages it in; we skip it (nothing to order): ours is theirs over the others.
  skm = pytest.importorskip("sklearn.metrics", reason="scikit-learn (test-only) not installed")
  scores, decisions, labels = _random_labelled(0)
  labels[5:10] = 1  # five examples with no negative
  qualifying = np.r_[0:5, 10:len(labels)]
  ours = metric_values(scores, decisions, labels)["ranking_loss"]
  assert ours == pytest.approx(skm.label_ranking_loss(labels[qualifying], scores[qualifying]))


def test_one_error_against_its_definition():
  # No scikit-learn counterpart: [top-scored label is negative], ties pessimistic.
  scores, _, labels = _random_labelled(1)
  top = scores == scores.max(axis=1, keepdims=True)
  expected = np.mean((top & (labels == 0)).any(axis=1))
  assert metric_values(scores, scores > 0, labels)["one_error"] == pytest.approx(expected)


# ---- Thresholds.

def test_best_f1_threshold_by_hand():
  # Scores 3, 2, 1, -1 with labels 1, 0, 1, 0. Cutting below 1 (at 0, or at the
  # midpoint 0.0 of 1 and -1): TP 2, FP 1 -> F1 4/5; below 3 only: TP 1 -> 2/3; all
  # positive: TP 2, FP 2 -> 4/6. Best 4/5, at logit 0 (which is also the midpoint).
  scores, labels = np.array([3.0, 2.0, 1.0, -1.0]), np.array([1, 0, 1, 0])
  assert thresholds.best_f1_logit(scores, labels) == 0.0
  # Shifted by +10: the best cut is the midpoint of 11 and 9, i.e. 10.
  assert thresholds.best_f1_logit(scores + 10, labels) == 10.0
  # No positive: F1 undefined, 0.5 stays.
  assert thresholds.best_f1_logit(scores, np.zeros(4, int)) == 0.0


def test_val_thresholds_skip_missing_labels_and_fixed_rules_ignore_validation():
  val_scores = np.array([[5.0, 1.0], [4.0, 2.0], [-3.0, 0.0]])
  val_labels = np.array([[1, -1], [0, -1], [0, -1]])
  # Task 0: best cut between 5 and 4 (F1 1); task 1 has no valid label: 0.5.
  np.testing.assert_array_equal(thresholds.choose("val", val_scores, val_labels), [4.5, 0.0])
  assert thresholds.as_probabilities(thresholds.choose(0.5, val_scores, val_labels)) == [0.5, 0.5]
  np.testing.assert_allclose(thresholds.as_probabilities(thresholds.choose(0.3, val_scores, val_labels)), 0.3)


@pytest.mark.parametrize("text", ["0", "1", "1.5", "nan", "test", ""])
def test_bad_threshold_rules_are_refused(text):
  with pytest.raises(ValueError, match="--threshold takes 'val'"):
    thresholds.parse_rule(text)


def test_val_thresholds_never_see_the_test_labels():
  # runs.score_seed is what run_arm scores each seed's logits with. Flipping every test
  # label (and making its scores noise) must leave the thresholds and validation alone.
  data = load_dataset(DataConfig(dataset="related", num_train=16, num_val=200, num_test=100,
                                 missing_frac=0.2, relatedness=RelatedConfig(num_tasks=3)))
  rng = np.random.default_rng(0)
  # Scores that track the validation labels, so that F1's best cut moves off 0.5.
  logits = {"val": 2.0 * data.val.y + rng.normal(size=data.val.y.shape) - 1.5,
            "test": rng.normal(size=data.test.y.shape)}
  flipped = np.where(data.test.y == -1, -1, 1 - data.test.y).astype(data.test.y.dtype)
  poisoned = dataclasses.replace(data, test=dataclasses.replace(data.test, y=flipped))
  (clean_thresholds, clean), (dirty_thresholds, dirty) = (score_seed("val", logits, d) for d in (data, poisoned))
  assert clean_thresholds == dirty_thresholds and clean["val"] == dirty["val"]
  assert clean["test"]["hamming_loss"] != dirty["test"]["hamming_loss"]
  assert all(p != 0.5 for p in clean_thresholds)  # chosen, not defaulted
  expected = thresholds.as_probabilities(thresholds.choose("val", logits["val"], data.val.y))
  assert clean_thresholds == expected
  # The threshold rule changes a run's hash, except at the default: there the hash is
  # that of the config without the field, as before thresholds existed, so records
  # already on file are reused.
  config = RunConfig("e", "joint", 0, DataConfig(), EncoderSpec("mlp", 4, 1), TrainConfig())
  without = {k: v for k, v in config.to_dict().items() if k != "threshold"}
  without["encoder"] = {k: v for k, v in without["encoder"].items() if k != "dropout"}  # likewise
  assert config.hash == config_hash({**without, "data": data_identity(config.data), "pretrain": None,
                                     "results_version": RESULTS_VERSION})
  assert dataclasses.replace(config, threshold="val").hash != config.hash


# ---- Records and summaries.

def _record(seed: int, multilabel: bool = True) -> dict:
  split = {m: {"per_task": [0.5, 0.7], "mean": 0.6} for m in ("accuracy", "auc", "ap")}
  if multilabel:
    split.update({m: ({"per_task": [0.5, 0.7], "mean": 0.6} if MULTILABEL_METRICS[m].per_task
                      else {"mean": 0.1 * seed}) for m in MULTILABEL_METRICS})
  return {"config": {"seed": seed, "arm": "joint"}, "task_names": ["a", "b"], "param_count": 1,
          "status": "ok", "metrics": {"val": split, "test": split}}


def test_records_with_and_without_the_multilabel_metrics_are_read():
  new, old = _record(0), _record(1, multilabel=False)
  assert is_record(new) and is_record(old)
  broken = _record(0)
  broken["metrics"]["test"]["macro_f1"] = {"per_task": [0.5], "mean": 0.5}  # one task of two
  assert not is_record(broken)
  rows = summarize_arms({"joint": [_record(0), _record(1), old]}, ["a", "b"])
  example = [r for r in rows if r["metric"] == "hamming_loss" and r["split"] == "test"]
  # Example-based: the mean row only, over the two seeds that have it.
  assert [(r["task"], r["n"]) for r in example] == [("mean", 2)]
  assert example[0]["mean"] == pytest.approx(0.05)
  assert {r["metric"] for r in rows} == set(SUMMARY_METRICS)
  assert "1 run on file predate" in summary_gaps([new, old]) and summary_gaps([new]) == ""


# ---- The entry point.

def test_launch_writes_every_metric_and_prints_the_chosen_ones(tmp_path):
  out = str(tmp_path / "run")
  result = launch_in_process(
      "--dataset=related", "--encoder=mlp", "--width=4", "--depth=1", "--epochs=1", "--seeds=2",
      "--num_train=48", "--num_val=32", "--num_test=32", "--batch_size=16", "--threshold=val",
      "--metrics=hamming_loss,micro_f1,auc", f"--out_dir={out}")
  assert result.returncode == 0, result.stderr
  with open(os.path.join(out, "summary.csv")) as f:
    rows = list(csv.DictReader(f))
  assert {r["metric"] for r in rows} == set(SUMMARY_METRICS)
  assert {r["task"] for r in rows if r["metric"] == "subset_accuracy"} == {"mean"}
  records = read_results(os.path.join(out, "results.jsonl"))
  assert {r["config"]["threshold"] for r in records} == {"val"}
  assert all(len(r["decision_thresholds"]) == len(r["task_names"]) for r in records)
  header = next(line for line in result.stdout.splitlines() if line.startswith("task "))
  assert header.split() == ["task", "hamming_loss", "joint", "hamming_loss", "separate", "hamming_loss",
                            "joint-sep", "micro_f1", "joint", "micro_f1", "separate", "micro_f1",
                            "joint-sep", "AUC", "joint", "AUC", "separate", "AUC", "joint-sep"]


@pytest.mark.parametrize("args, expected", [
    (["--metrics=hamming_loss,f2"], "--metrics: unknown f2; valid: accuracy, auc, ap, hamming_loss"),
    (["--threshold=1.5"], "--threshold takes 'val'"),
    (["--experiment=relatedness", "--metrics=auc"], "--metrics chooses the columns of joint_vs_separate"),
])
def test_bad_metric_and_threshold_flags_are_one_line_errors(tmp_path, args, expected):
  out = str(tmp_path / "run")
  result = launch_in_process(*args, "--encoder=mlp", f"--out_dir={out}")
  assert_one_line_error(result, expected, out)
