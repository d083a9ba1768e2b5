"""Resampled splits (--folds, --split_seeds): stratified folds that partition the data,
random splits of the own split's sizes, intervals over splits with the Nadeau-Bengio
correction, pairing by split and seed, and the experiments end to end."""
import csv
import dataclasses
import json
import math

import numpy as np
import pytest
from entry_points import assert_one_line_error, launch_in_process
from multilabel_sets import write_sets
from scipy import stats

from mtl_jax.data.datasets import DataConfig, data_identity, load_dataset
from mtl_jax.data.resampling import Resampling, iterative_stratification, plan
from mtl_jax.errors import InputError
from mtl_jax.intervals import corrected_ci95, covers, interval, pair_runs


def test_a_label_with_one_positive_per_part_gets_exactly_that():
  # Five positives of a rare label over five folds: one each, which a random 5-fold split
  # achieves with probability 5!/5^5 = 4%. The common label is spread 6/6/6/6/6 too.
  y = np.zeros((30, 2), np.int8)
  y[[0, 7, 11, 19, 23], 0] = 1
  y[:, 1] = 1
  for seed in range(5):
    part = iterative_stratification(y, [1] * 5, np.random.default_rng(seed))
    assert sorted(part[y[:, 0] == 1]) == [0, 1, 2, 3, 4]
    assert np.bincount(part, minlength=5).tolist() == [6] * 5


def test_unequal_proportions_and_missing_labels():
  y = np.full((20, 1), -1, np.int8)  # a missing label counts as no positive
  y[:10, 0] = 1
  part = iterative_stratification(y, [0.6, 0.2, 0.2], np.random.default_rng(0))
  assert np.bincount(part[:10], minlength=3).tolist() == [6, 2, 2]
  assert np.bincount(part, minlength=3).tolist() == [12, 4, 4]


def test_stratification_beats_a_random_split_on_every_seed():
  for seed in range(5):
    rng = np.random.default_rng(seed)
    y = (rng.random((600, 12)) < np.linspace(0.01, 0.4, 12)).astype(np.int8)
    deviation = lambda part: np.abs(np.stack([y[part == k].sum(0) for k in range(4)]) - y.sum(0) / 4).sum()
    stratified = iterative_stratification(y, [1] * 4, rng)
    assert deviation(stratified) < deviation(rng.permutation(600) % 4)


def _indexed_npz(path, n=90):
  """A table whose only feature is the row's index, so splits can be traced to rows."""
  rng = np.random.default_rng(0)
  y = (rng.random((n, 3)) < [0.1, 0.3, 0.5]).astype(np.int8)
  y[:, 0][:6] = 1
  np.savez(path, x=np.arange(n, dtype=np.float32)[:, None], y=y)
  return f"npz:{path}"


def _rows(data) -> dict:
  # Standardised by the train split's mean and std: undone to recover the row indices.
  s = data.standardisation
  return {split: set(np.rint(getattr(data, split).x[:, 0] * s.std[0] + s.mean[0]).astype(int))
          for split in ("train", "val", "test")}


def test_folds_partition_the_examples_and_random_splits_keep_the_sizes(tmp_path):
  base = DataConfig(dataset=_indexed_npz(tmp_path / "t.npz"), num_train=None, num_val=None, num_test=None)
  own = load_dataset(base)
  sizes = {split: len(getattr(own, split).y) for split in ("train", "val", "test")}
  tests = []
  for fold in range(3):
    rows = _rows(load_dataset(dataclasses.replace(base, resampling=Resampling("folds", 3, fold))))
    assert not (rows["train"] & rows["val"]) and not (rows["train"] | rows["val"]) & rows["test"]
    assert rows["train"] | rows["val"] | rows["test"] == set(range(90))
    assert len(rows["val"]) == sizes["val"]  # validation keeps its share of the pool
    tests.append(rows["test"])
  assert set().union(*tests) == set(range(90)) and sum(map(len, tests)) == 90
  random = [_rows(load_dataset(dataclasses.replace(base, resampling=Resampling("random", 0, i))))
            for i in (0, 1, 0)]
  assert {split: len(random[0][split]) for split in sizes} == sizes
  assert random[0] == random[2] and random[0]["test"] != random[1]["test"]


def test_only_resampled_data_changes_its_identity():
  assert "resampling" not in data_identity(DataConfig())
  folds = data_identity(DataConfig(resampling=Resampling("folds", 5, 2)))
  assert folds["resampling"] == {"kind": "folds", "count": 5, "index": 2}


def test_plan_and_its_refusals():
  assert plan(0, 0) == (Resampling(),)
  assert [r.index for r in plan(4, 0)] == [0, 1, 2, 3] and plan(0, 2)[1] == Resampling("random", 0, 1)
  for folds, split_seeds in ((3, 2), (1, 0)):
    with pytest.raises(InputError):
      plan(folds, split_seeds)


def test_corrected_interval_by_hand():
  values, ratio = [0.70, 0.74, 0.69, 0.77], 0.25
  mean, half, n = corrected_ci95(values, ratio)
  s = np.std(values, ddof=1)
  assert n == 4 and mean == pytest.approx(0.725)
  assert half == pytest.approx(stats.t.ppf(0.975, 3) * math.sqrt((1 / 4 + ratio) * s**2))


def _record(kind, count, index, seed, value, test=30, train=50, val=20):
  return {"config": {"seed": seed, "data": {"resampling": {"kind": kind, "count": count, "index": index}}},
          "split_sizes": {"train": train, "val": val, "test": test}, "value": value}


def test_the_interval_is_over_splits_each_the_mean_of_its_seeds():
  records = [_record("folds", 3, fold, seed, 0.1 * fold + 0.01 * seed) for fold in range(3) for seed in range(2)]
  mean, half, n = interval([r["value"] for r in records], records)
  per_fold = [0.005, 0.105, 0.205]
  assert n == 3 and mean == pytest.approx(0.105)
  assert (mean, half) == pytest.approx(corrected_ci95(per_fold, 30 / 70)[:2])
  assert covers(records) == "3 folds (each the mean of 2 seeds; corrected resampled t)"
  own = [{"config": {"seed": s, "data": {}}} for s in range(3)]  # records from before resampling
  assert interval([1.0, 2.0, 3.0], own)[2] == 3 and covers(own) == "3 seeds on one split"


def test_runs_pair_by_split_and_seed_not_position():
  a = [_record("random", 0, i, s, 0) for i in range(2) for s in range(2)]
  b = list(reversed(a))
  assert pair_runs(a, b).tolist() == [3, 2, 1, 0]
  with pytest.raises(InputError, match="and split"):
    pair_runs(a, a[:3] + [_record("random", 0, 5, 1, 0)])


TINY = ["--experiment=multilabel_real", "--width=4", "--depth=1", "--train_steps=10", "--seeds=2",
        "--batch_size=16"]


def test_multilabel_real_with_folds_end_to_end(tmp_path):
  write_sets(tmp_path / "sets")
  out = tmp_path / "out"
  result = launch_in_process(*TINY, f"--datasets={tmp_path / 'sets'}", "--folds=3", f"--out_dir={out}")
  assert result.returncode == 0, result.stderr
  records = [json.loads(line) for line in open(out / "results.jsonl")]
  assert len(records) == 2 * 2 * 3 * 2  # sets x arms x folds x seeds
  alpha = [r for r in records if "alpha" in r["config"]["data"]["dataset"] and r["config"]["arm"] == "joint"]
  assert sorted((r["config"]["data"]["resampling"]["index"], r["config"]["seed"]) for r in alpha) == [
      (f, s) for f in range(3) for s in range(2)]
  assert "fold 2 of 3" in alpha[2]["splits"]["test"]
  rows = list(csv.DictReader(open(out / "summary.csv")))
  assert {r["interval"] for r in rows} == {"3 folds (each the mean of 2 seeds; corrected resampled t)"}
  assert {r["n"] for r in rows if r["split"] == "test" and r["metric"] == "hamming_loss"} == {"3"}
  assert "95% CI over 3 folds" in result.stdout and "paired by split and seed" in result.stdout


def test_experiments_that_do_not_resample_refuse_the_flags(tmp_path):
  out = tmp_path / "out"
  assert_one_line_error(launch_in_process("--experiment=network_size", "--folds=3", f"--out_dir={out}"),
                        "--folds and --split_seeds apply to joint_vs_separate and multilabel_real", out)
  assert_one_line_error(launch_in_process("--folds=3", "--split_seeds=2", f"--out_dir={out}"),
                        "not both", out)
