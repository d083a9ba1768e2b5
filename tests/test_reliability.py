"""Faults injected on purpose: a sweep killed with SIGKILL or stopped with Ctrl-C, a
torn result line, a learning rate that diverges, a run preempted mid-training; and two
runs of the same flags, which must agree to the bit."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
from entry_points import ROOT, launch_in_process

from mtl_jax.checkpoints import CheckpointSettings, EpochCheckpoints
from mtl_jax.models import EncoderSpec, joint_model, separate_models
from mtl_jax.results import read_results, summarize_arms
from mtl_jax.train import TrainConfig, train

TINY = ["--encoder=mlp", "--width=4", "--depth=1", "--num_train=128", "--num_val=32",
        "--num_test=32", "--epochs=2", "--seeds=2", "--batch_size=32", "--image_size=8"]
# Two groups (joint, separate) of three seeds: a kill after the first lands mid-sweep.
SWEEP = [*TINY, "--seeds=3"]


def start_sweep(out) -> subprocess.Popen:
  # As from a terminal: a child inherits an ignored SIGINT (as in a shell's background
  # job) but not a handler, which exec resets to the default.
  ignored = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    return subprocess.Popen([sys.executable, "launch.py", *SWEEP, f"--out_dir={out}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  finally:
    signal.signal(signal.SIGINT, ignored)


def wait_for_results(path, count: int, process: subprocess.Popen) -> None:
  deadline = time.time() + 120
  while time.time() < deadline and process.poll() is None:
    if os.path.exists(path) and len(open(path).read().splitlines()) >= count:
      return
    time.sleep(0.02)
  raise AssertionError(f"the sweep ended or stalled before writing {count} results")


def test_a_sweep_killed_with_sigkill_completes_every_run_exactly_once(tmp_path):
  path = tmp_path / "results.jsonl"
  sweep = start_sweep(tmp_path)
  wait_for_results(path, 3, sweep)
  sweep.kill()  # SIGKILL: no cleanup of any kind
  sweep.wait()
  before = read_results(path)
  assert 3 <= len(before) < 6
  with open(path, "a") as f:  # as if the kill had landed mid-write
    f.write('{"hash": "torn-by-a-kill", "metr')
  resumed = launch_in_process(*SWEEP, f"--out_dir={tmp_path}")
  assert resumed.returncode == 0, resumed.stderr
  hashes = [r["hash"] for r in read_results(path)]
  assert len(hashes) == len(set(hashes)) == 6  # 2 arms x 3 seeds, each once
  assert [r["hash"] for r in read_results(path)[:len(before)]] == [r["hash"] for r in before]


def test_ctrl_c_stops_with_one_line_saying_what_is_saved(tmp_path):
  sweep = start_sweep(tmp_path)
  wait_for_results(tmp_path / "results.jsonl", 3, sweep)
  sweep.send_signal(signal.SIGINT)
  _, stderr = sweep.communicate(timeout=60)
  assert sweep.returncode == 130
  lines = stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("interrupted: "), stderr
  saved = int(lines[0].split()[1])
  assert 3 <= saved < 6 and f"{saved} of the 6 runs are saved" in lines[0] and "run the same command again" in lines[0]
  assert len(read_results(tmp_path / "results.jsonl")) == saved


def _records(out):
  return [json.loads(line) for line in open(out / "results.jsonl")]


def test_the_same_flags_and_seed_give_bit_identical_metrics_and_say_what_made_them(tmp_path):
  for name in ("a", "b"):
    assert launch_in_process(*TINY, "--seeds=1", f"--out_dir={tmp_path / name}").returncode == 0
  a, b = _records(tmp_path / "a"), _records(tmp_path / "b")
  assert [r["hash"] for r in a] == [r["hash"] for r in b]
  for x, y in zip(a, b):
    assert x["metrics"] == y["metrics"] and x["val_loss_per_epoch"] == y["val_loss_per_epoch"]
    assert x["final_train_loss"] == y["final_train_loss"]
    p = x["provenance"]
    assert p["jax"] == jax.__version__ and p["flax"] and p["optax"] and p["device"].startswith("cpu")
    assert p["git_commit"] is None or len(p["git_commit"]) == 40
    assert x["wall_seconds_all_seeds"] > 0 and x["config"]["train"]["learning_rate"] == 3e-3


def test_a_diverging_run_is_recorded_with_its_step_and_left_out(tmp_path):
  result = launch_in_process(*TINY, "--learning_rate=1e6", f"--out_dir={tmp_path}")
  assert result.returncode == 0, result.stderr
  records = _records(tmp_path)
  assert len(records) == 4
  for r in records:
    assert r["status"] == "diverged" and r["diverged_at_step"] >= 1
    assert r["train_steps"] == 4  # stopped after the first epoch (4 steps), not 2 epochs
  assert "diverged at step" in result.stdout and "(2 div.)" in result.stdout
  summary = list(csv.DictReader(open(tmp_path / "summary.csv")))
  assert summary and all((row["n"], row["diverged"]) == ("0", "2") for row in summary)


def _record(arm, seed, auc, status="ok"):
  metrics = {split: {m: {"per_task": [auc], "mean": auc} for m in ("accuracy", "auc", "ap")}
             for split in ("val", "test")}
  return {"config": {"arm": arm, "seed": seed}, "metrics": metrics, "status": status}


def test_means_leave_diverged_seeds_out_and_count_them():
  rows = summarize_arms({
      "joint": [_record("joint", 0, 0.8), _record("joint", 1, 0.7), _record("joint", 2, 0.5, "diverged")],
      "separate": [_record("separate", 0, 0.6), _record("separate", 1, 0.6), _record("separate", 2, 0.6)],
  }, ["task"])
  cell = {r["arm"]: r for r in rows if r["split"] == "test" and r["metric"] == "auc" and r["task"] == "task"}
  assert (cell["joint"]["mean"], cell["joint"]["n"], cell["joint"]["diverged"]) == (0.75, 2, 1)
  assert (cell["separate"]["n"], cell["separate"]["diverged"]) == (3, 0)
  assert (cell["joint_minus_separate"]["mean"], cell["joint_minus_separate"]["n"]) == (0.15, 2)


def test_checkpointed_run_preempted_and_resumed_equals_an_uninterrupted_one(tmp_path):
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(64, 6)).astype(np.float32), rng.integers(0, 2, (64, 3)).astype(np.int8)
  validation = (rng.normal(size=(16, 6)).astype(np.float32), rng.integers(0, 2, (16, 3)).astype(np.int8))
  config = TrainConfig(1e-2, 16, 4, select_epoch="best_val")
  model = separate_models(EncoderSpec("mlp", 4, 1), 3, (6,))
  uninterrupted = train(model, x, y, [0, 1], config, validation=validation)

  class Preempted(Exception):
    pass

  def preempt_after_epoch_3(epoch, loss):
    if epoch == 3:
      raise Preempted
  settings = CheckpointSettings(str(tmp_path / "run"), every=2, resume=False)
  try:
    train(model, x, y, [0, 1], config, preempt_after_epoch_3, validation=validation,
          checkpoints=EpochCheckpoints(settings))
  except Preempted:
    pass
  assert os.listdir(tmp_path / "run") == ["2"]  # saved after epoch 2; epoch 3 is lost
  checkpoints = EpochCheckpoints(CheckpointSettings(settings.directory, every=2, resume=True))
  epochs_seen = []
  resumed = train(model, x, y, [0, 1], config, lambda epoch, loss: epochs_seen.append(epoch),
                  validation=validation, checkpoints=checkpoints)
  checkpoints.close(finished=True)
  assert epochs_seen == [3, 4]
  for a, b in zip(jax.tree.leaves(uninterrupted.params), jax.tree.leaves(resumed.params)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(uninterrupted.loss_ExS, resumed.loss_ExS)
  np.testing.assert_array_equal(uninterrupted.selected_epoch_S, resumed.selected_epoch_S)
  assert not os.path.exists(settings.directory)


def test_resume_flag_continues_a_killed_run_to_the_uninterrupted_result(tmp_path):
  long_run = [*TINY[:-4], "--epochs=6", "--seeds=1", "--batch_size=8", "--image_size=8"]
  killed_out, clean_out = tmp_path / "killed", tmp_path / "clean"
  run = subprocess.Popen([sys.executable, "launch.py", *long_run, "--checkpoint_every=1",
                          f"--out_dir={killed_out}"], cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
  deadline = time.time() + 120
  while not list((killed_out / "checkpoints").glob("*/2")) and time.time() < deadline:
    time.sleep(0.02)
  run.kill()
  run.wait()
  assert not (killed_out / "results.jsonl").exists()
  resumed = launch_in_process(*long_run, "--checkpoint_every=1", "--resume", f"--out_dir={killed_out}")
  assert resumed.returncode == 0, resumed.stderr
  assert launch_in_process(*long_run, f"--out_dir={clean_out}").returncode == 0
  for a, b in zip(_records(killed_out), _records(clean_out)):
    assert a["hash"] == b["hash"] and a["metrics"] == b["metrics"]
  assert not (killed_out / "checkpoints").exists()


def test_batches_without_labels_before_the_first_labelled_one_are_no_divergence():
  # One labelled example among 64: a batch of 8 mostly holds no label and has J = 0, so
  # the step whose batch holds it must not count as a 1000x jump from the first step.
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 5)).astype(np.float32)
  y = np.full((64, 1), -1, np.int8)
  y[0] = 1
  result = train(joint_model(EncoderSpec("mlp", 4, 1), 1, (5,)), x, y, list(range(8)),
                 TrainConfig(batch_size=8, epochs=2))
  assert (result.loss_ExS > 0).all() and (result.diverged_step_S == 0).all()
