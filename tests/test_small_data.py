"""Small read data that just works: training sized in optimizer steps rather than
epochs, and decoupled weight decay, checked against the formulas by hand."""
import json
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from entry_points import ROOT, assert_one_line_error, launch, launch_in_process

from experiments.cli import READ_DATA_STEPS
from mtl_jax.train import TrainConfig, make_optimizer, planned_epochs


@pytest.mark.parametrize("rows, batch, steps, epochs", [
    (333, 128, 1000, 500),  # 2 batches an epoch: 500 epochs hold exactly 1000 steps
    (1123, 128, 1000, 125),  # 8 batches: 125 epochs
    (1000, 128, 1000, 143),  # 7 batches: 142 epochs hold 994 steps, so 143
    (100, 128, 5, 5),  # fewer rows than a batch: train() refuses the batch size itself
])
def test_steps_become_the_fewest_whole_epochs_that_hold_them(rows, batch, steps, epochs):
  assert planned_epochs(TrainConfig(batch_size=batch, steps=steps), rows) == epochs
  assert planned_epochs(TrainConfig(batch_size=batch, epochs=7), rows) == 7  # steps=0: epochs


def test_sgd_weight_decay_is_p_minus_lr_times_gradient_plus_decay():
  lr, decay = 0.1, 0.5
  p, g = jnp.array([1.0, -2.0, 3.0]), jnp.array([0.2, 0.0, -1.0])
  optimizer = make_optimizer("sgd", lr, decay)
  update, _ = optimizer.update(g, optimizer.init(p), p)
  np.testing.assert_allclose(update, -lr * (np.array(g) + decay * np.array(p)), rtol=1e-6)


def test_adamw_first_step_is_the_sign_of_the_gradient_plus_decoupled_decay():
  # Adam's first step: m = (1-b1) g, v = (1-b2) g^2, bias-corrected to g and g^2, so the
  # direction is g / (|g| + eps) = sign(g); AdamW adds decay * p before the rate scales it.
  lr, decay = 0.01, 0.1
  p, g = jnp.array([1.0, -2.0, 3.0]), jnp.array([0.5, -4.0, 1e-3])
  optimizer = make_optimizer("adam", lr, decay)
  update, _ = optimizer.update(g, optimizer.init(p), p)
  np.testing.assert_allclose(update, -lr * (np.sign(g) + decay * np.array(p)), rtol=1e-4)
  plain, _ = make_optimizer("adam", lr).update(g, make_optimizer("adam", lr).init(p), p)
  np.testing.assert_allclose(plain, -lr * np.sign(g), rtol=1e-4)


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
  path = tmp_path_factory.mktemp("data") / "small.csv"
  subprocess.run([sys.executable, "-m", "mtl_jax.data.example_table", f"--out={path}", "--rows=300"],
                 cwd=ROOT, check=True, capture_output=True)
  return path


def test_read_data_trains_for_steps_and_says_so(small_csv, tmp_path):
  """300 rows: 210 train, 6 batches of 32 an epoch, so 1000 steps are 167 epochs."""
  result = launch(f"--dataset=csv:{small_csv}", "--encoder=mlp", "--width=4", "--depth=1",
                  "--seeds=1", "--batch_size=32", "--weight_decay=0.01", f"--out_dir={tmp_path}")
  assert result.returncode == 0, result.stderr
  assert f"{READ_DATA_STEPS} optimizer steps, 167 epochs of 6 batches of 32" in result.stdout
  # Progress every 9th epoch (167 / 20, rounded up), the first and the last; not 167 lines.
  shown = [line.split(" epoch ")[1].split()[0] for line in result.stdout.splitlines() if " epoch " in line]
  assert shown[:3] == ["1/167", "9/167", "18/167"] and shown[-1] == "167/167" and len(shown) <= 2 * 21
  for line in open(tmp_path / "results.jsonl"):
    record = json.loads(line)
    assert record["config"]["train"]["steps"] == READ_DATA_STEPS
    assert record["config"]["train"]["weight_decay"] == 0.01
    assert record["epochs_trained"] == 167 and record["train_steps"] == 167 * 6


def test_epochs_and_train_steps_together_are_one_line(tmp_path):
  result = launch_in_process("--epochs=3", "--train_steps=10", f"--out_dir={tmp_path / 'out'}")
  assert_one_line_error(result, "give --epochs=3 or --train_steps=10, not both", tmp_path / "out")
