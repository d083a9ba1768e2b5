"""Launches a careless or hostile user makes (issue 17): negative seeds, absurd sizes,
nan rates, output piped into `head`, a scheduler's SIGTERM. Each either runs as it
should or stops with one line; none ends in a traceback or a silent hang."""
import dataclasses
import io
import os
import re
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from entry_points import ROOT, assert_one_line_error, launch_in_process

from experiments import cli
from mtl_jax import memory_estimate, stopping, sweep
from mtl_jax.data.datasets import DataConfig, load_dataset
from mtl_jax.data.driving import SceneConfig
from mtl_jax.data.related import RelatedConfig
from mtl_jax.errors import InputError
from mtl_jax.models import EncoderSpec, build_model, param_count
from mtl_jax.results import read_results
from mtl_jax.train import TrainConfig, _initial_state, predict

TINY = ["--encoder=mlp", "--width=2", "--depth=1", "--epochs=1", "--seeds=1", "--num_train=64",
        "--num_val=200", "--num_test=48", "--batch_size=16", "--image_size=8"]
GIB = 2**30

BOUND_CASES = [
    # Seed-like and count-like integers: each in its range, one line naming the flag.
    (["--data_seed=-1"], "--data_seed=-1: -1 is not an integer in the range [0, 4294967295]"),
    (["--data_seed=4294967296"], "--data_seed"),
    (["--seeds=-2"], "--seeds"),
    (["--seeds=1000000"], "--seeds=1000000: 1000000 is not an integer in the range [1, 1000]"),
    (["--epochs=3000000000"], "--epochs=3000000000"),
    (["--depth=100000"], "--depth"),
    (["--experiment=relatedness", "--related_tasks=0"], "--related_tasks"),
    (["--experiment=data_amount", "--target_budget=-5"], "--target_budget"),
    (["--patience=-1"], "--patience"),
    # Floats that absl reads as nan or inf: every float flag must be finite.
    (["--learning_rate=nan"], "--learning_rate"),
    (["--learning_rate=inf"], "--learning_rate"),
    (["--val_frac=nan"], "--val_frac must be a finite number"),
    (["--test_frac=inf"], "--test_frac must be a finite number"),
    (["--missing_frac=nan"], "--missing_frac"),
    (["--cagrad_c=nan"], "--cagrad_c must be a finite number"),
    (["--dselect_k_gamma=inf"], "--dselect_k_gamma"),
    (["--cross_stitch_alpha_self=nan"], "--cross_stitch_alpha_self"),
    # Floats of the sweeps' own lists.
    (["--experiment=relatedness", "--rhos=nan"], "rho"),
    (["--experiment=missing_labels", "--missing_fracs=nan"], "missing_frac must be in [0, 1); got nan"),
    # An output folder of blanks.
    (["--out_dir=   "], "--out_dir must not be empty"),
    # Sizes no machine holds: refused by the memory estimate, with its numbers.
    (["--width=100000"], "this run needs about"),
    (["--num_train=1000000000"], "this run needs about"),
    (["--experiment=network_size", "--widths=2,100000"], "this run needs about"),
    # So large that one example would not fit: refused on the data, before a model is built.
    (["--experiment=relatedness", "--related_tasks=1000000000"], "this run needs about"),
    (["--num_train=100000000000000000000", "--batch_size=10000000000000000000"], "this run needs about"),
]


@pytest.mark.parametrize("flags,expected", BOUND_CASES)
def test_absurd_values_are_one_line_exit_2_and_write_nothing(tmp_path, flags, expected):
  out = tmp_path / "never"
  args = flags if any(arg.startswith("--out_dir") for arg in flags) else [*flags, f"--out_dir={out}"]
  result = launch_in_process("--encoder=mlp", "--epochs=1", *args)
  assert_one_line_error(result, expected, out)
  if "needs about" in expected:  # the estimate and the machine's memory, in numbers
    assert "available" in result.stderr and re.search(r"about [\d.]+ [TP]iB", result.stderr), result.stderr


def test_runs_off_the_shared_flags_are_checked_by_the_experiment_that_makes_them():
  """cli.check_runs_fit, for the methods experiment's related problems
  (--related_num_train): a trillion examples refused, two hundred not."""
  related = DataConfig("related", num_train=10**12, num_val=200, num_test=4000)
  train = TrainConfig(batch_size=32, epochs=100)
  with pytest.raises(InputError, match=r"needs about [\d.]+ [TP]iB \(data"):
    cli.check_runs_fit(related, [EncoderSpec("mlp", 32, 2)], train, seeds=3)
  cli.check_runs_fit(dataclasses.replace(related, num_train=200), [EncoderSpec("mlp", 32, 2)], train, seeds=3)


def _needed(stderr: str) -> float:
  """The bytes in 'needs about 1.2 GiB (...'."""
  number, unit = stderr.split("needs about ")[1].split()[:2]
  return float(number) * 1024 ** ["B", "KiB", "MiB", "GiB", "TiB", "PiB"].index(unit)


def test_the_memory_refusal_compares_with_the_machine(tmp_path, monkeypatch):
  """Tiny settings refused on a machine with 4 KiB left, with both numbers in the line;
  a thousand seeds refused with 16 MiB; --plot_only, which trains nothing, not refused."""
  args = [*TINY, "--experiment=network_size", "--widths=2,3"]
  monkeypatch.setattr(memory_estimate, "available_device_bytes", lambda: None)
  monkeypatch.setattr(memory_estimate, "available_host_bytes", lambda: 4096)
  result = launch_in_process(*args, f"--out_dir={tmp_path / 'small'}")
  assert_one_line_error(result, "available", tmp_path / "small")
  assert "but this machine has 4.0 KiB available" in result.stderr
  needed = _needed(result.stderr)
  monkeypatch.setattr(memory_estimate, "available_host_bytes", lambda: 16 * 2**20)
  more_seeds = launch_in_process(*args, "--seeds=1000", f"--out_dir={tmp_path / 'seeds'}")
  assert_one_line_error(more_seeds, "needs about", tmp_path / "seeds")
  assert "16.0 MiB available" in more_seeds.stderr
  assert _needed(more_seeds.stderr) > 10 * needed  # a thousand seeds' state and activations
  # --plot_only trains nothing, so it needs no memory for training.
  plot = launch_in_process(*args, "--plot_only", f"--out_dir={tmp_path / 'plot'}")
  assert "needs about" not in plot.stderr and "run without --plot_only first" in plot.stderr


def _adam_bytes(params) -> int:
  return memory_estimate.tree_bytes(optax.adam(1e-3).init(params))


@pytest.mark.parametrize("arch", ["hps", "separate", "mmoe"])
def test_parameters_and_optimizer_state_are_counted_exactly(arch):
  model = build_model(arch, EncoderSpec("mlp", 5, 2), 3, (7,))
  params = model.init(jax.random.PRNGKey(0))
  training = memory_estimate.Training(seeds=4, epochs=2, batch_size=8)
  _, device = memory_estimate.model_bytes(model, (7,), np.float32, 3, (20, 10, 6), training,
                                          seeds_vmapped=arch == "separate")
  # Per seed: the parameters, the best epoch's copy, and Adam's two moments and count.
  assert _adam_bytes(params) == 2 * 4 * param_count(params) + 4
  assert device["parameters and optimizer state"] == 4 * (2 * 4 * param_count(params) + _adam_bytes(params))
  # One gradient per seed at once: every seed's when vmapped, else one seed's.
  assert device["gradients"] == (4 if arch == "separate" else 1) * 4 * param_count(params)


def test_predictions_are_every_seeds_logits_of_every_split():
  model = build_model("hps", EncoderSpec("mlp", 5, 1), 3, (7,))
  host, _ = memory_estimate.model_bytes(model, (7,), np.float32, 3, (20, 10, 6),
                                        memory_estimate.Training(seeds=4, epochs=1, batch_size=8), False)
  params_S = jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(0), 4))
  assert host["predictions"] == predict(model, params_S, np.zeros((36, 7), np.float32)).nbytes


def test_the_readme_networks_have_their_known_parameter_counts():
  """The default CNN (width 32, depth 3, 4 tasks on 32x32 scenes): 21,444 parameters
  joint and 79,620 separate (README); SGD keeps no state, and MGDA's per-task
  gradients of the shared encoder add T copies of it."""
  shape, dtype, tasks = cli.example_shape(DataConfig())
  joint, separate = (build_model(arm, EncoderSpec("cnn", 32, 3), tasks, shape) for arm in ("hps", "separate"))
  shapes = [jax.eval_shape(m.init, jax.random.PRNGKey(0)) for m in (joint, separate)]
  assert [memory_estimate.tree_bytes(p) // 4 for p in shapes] == [21444, 79620]
  training = memory_estimate.Training(seeds=3, epochs=12, batch_size=128, optimizer="sgd", method="mgda")
  _, device = memory_estimate.model_bytes(joint, shape, dtype, tasks, (6000, 1000, 3000), training, False)
  assert device["parameters and optimizer state"] == 3 * 2 * 4 * 21444  # SGD keeps no state
  encoder = memory_estimate.tree_bytes(shapes[0]["encoder"]) // 4
  assert device["gradients"] == 4 * 21444 + 4 * tasks * encoder  # MGDA's T gradients of the encoder


@pytest.mark.parametrize("config", [
    DataConfig(num_train=64, num_val=200, num_test=48, scenes=SceneConfig(image_size=8)),
    DataConfig("related", num_train=30, num_val=20, num_test=10, relatedness=RelatedConfig(num_tasks=3)),
])
def test_data_and_its_shape_are_what_load_dataset_makes(config):
  data = load_dataset(config)
  shape, dtype, tasks = cli.example_shape(config)
  assert (shape, np.dtype(dtype), tasks) == (data.input_shape, data.train.x.dtype, len(data.task_names))
  host, device = memory_estimate.data_bytes((config.num_train, config.num_val, config.num_test),
                                            shape, dtype, tasks)
  splits = sum(s.x.nbytes + s.y.nbytes for s in (data.train, data.val, data.test))
  val = data.val.x.nbytes + data.val.y.nbytes  # fewer than one 512-example chunk: no padding
  assert (host, device) == (splits + val, data.train.x.nbytes + data.train.y.nbytes + val)


def test_histories_grow_as_train_allocates_them():
  """Per epoch: train.History's rows on the host, the two streams' keys on the device."""
  model = build_model("separate", EncoderSpec("mlp", 2, 1), 3, (4,))
  bytes_at = lambda epochs: memory_estimate.model_bytes(
      model, (4,), np.float32, 3, (20, 10, 6), memory_estimate.Training(5, epochs, 4), False)
  (host1, device1), (host9, device9) = bytes_at(1), bytes_at(9)
  _, history = _initial_state({"w": jnp.zeros(2)}, (), (), (5, 3), 8, 3)
  allocated = sum(v.nbytes for v in vars(history).values() if v.shape[0] == 8)
  assert host9["per-epoch history"] - host1["per-epoch history"] == allocated
  assert device9["per-epoch history"] - device1["per-epoch history"] == 8 * (2 * 5 * 8 + 4)


def test_the_largest_activation_is_that_of_the_traced_function():
  outer = lambda a: jnp.outer(a, a).sum()
  assert memory_estimate.largest_activation(outer, jax.ShapeDtypeStruct((1000,), jnp.float32)) == 4 * 10**6
  model = build_model("hps", EncoderSpec("mlp", 300, 1), 2, (5,))
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  # The hidden layer [B, 300] is the forward pass's largest array.
  assert memory_estimate.largest_activation(
      model.apply, params, jax.ShapeDtypeStruct((64, 5), jnp.float32)) == 64 * 300 * 4


def test_check_refuses_with_the_estimate_and_the_memory_available():
  needed = memory_estimate.Estimate({"data": 3 * GIB}, {"parameters and optimizer state": 2 * GIB})
  memory_estimate.check(needed, host=6 * GIB, device=None)  # fits
  with pytest.raises(InputError, match=r"needs about 5\.0 GiB \(data 3\.0 GiB, parameters and optimizer "
                                       r"state 2\.0 GiB\) of memory, but this machine has 4\.0 GiB available"):
    memory_estimate.check(needed, host=4 * GIB, device=None)
  # On an accelerator each memory is compared with its own.
  memory_estimate.check(needed, host=4 * GIB, device=3 * GIB)
  with pytest.raises(InputError, match=r"accelerator memory, but the accelerator has 1\.0 GiB free"):
    memory_estimate.check(needed, host=4 * GIB, device=GIB)
  assert 0 < memory_estimate.available_host_bytes() <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def test_sigterm_and_sighup_stop_like_ctrl_c_but_an_ignored_one_stays_ignored():
  previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
  try:
    with cli._signals_as_ctrl_c():
      assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
      with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler runs at the next bytecode; never reached
      assert cli._interrupted_status() == 143
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # given back
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    with cli._signals_as_ctrl_c():
      with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(5)
      assert cli._interrupted_status() == 129
  finally:
    signal.signal(signal.SIGHUP, previous)


class _SignalsWhenCollected:
  """Sends a signal from inside __del__, where Python swallows what its handler raises,
  as it does inside the garbage collector's callbacks (JAX registers one)."""
  def __init__(self, signum):
    self.signum = signum

  def __del__(self):
    os.kill(os.getpid(), self.signum)
    time.sleep(5)  # the handler's KeyboardInterrupt ends __del__ here, and is dropped


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_a_callback_swallows_is_raised_again_at_the_next_safe_point(signum, capfd):
  with cli._signals_as_ctrl_c():
    _SignalsWhenCollected(signum)  # collected at once: nothing refers to it
    with pytest.raises(KeyboardInterrupt):
      stopping.raise_if_requested()
    assert cli._interrupted_status() == 128 + signum
  assert "Exception ignored" not in capfd.readouterr().err  # said once, by the sweep's line
  with cli._signals_as_ctrl_c():  # a new run starts with no request
    stopping.raise_if_requested()


def test_a_swallowed_sigterm_stops_the_sweep_before_its_next_group(tmp_path, monkeypatch):
  real_run_arm, trained = sweep.run_arm, []

  def run_arm_then_lose_a_sigterm(*args, **kwargs):
    trained.append(real_run_arm(*args, **kwargs))
    _SignalsWhenCollected(signal.SIGTERM)
    return trained[-1]
  monkeypatch.setattr(sweep, "run_arm", run_arm_then_lose_a_sigterm)
  result = launch_in_process(*TINY, "--experiment=network_size", "--widths=2,3",
                             f"--out_dir={tmp_path}")
  assert result.returncode == 143, result.stderr
  assert len(trained) == 1
  assert result.stderr.strip() == (f"interrupted: 1 of the 4 runs are saved in {tmp_path}/results.jsonl; "
                                   "run the same command again to resume")


def test_an_interrupt_outside_training_says_so_without_claiming_nothing_was_saved(tmp_path, monkeypatch):
  def interrupted(settings):
    raise KeyboardInterrupt
  monkeypatch.setattr(cli, "check_memory", interrupted)
  result = launch_in_process(*TINY, f"--out_dir={tmp_path}")
  assert result.returncode == 130
  assert result.stderr.strip() == ("interrupted while no run was training; every run that finished "
                                   "is in its results.jsonl; run the same command again to resume")


def test_output_whose_reader_went_away_goes_to_devnull():
  read_end, write_end = os.pipe()
  stream = io.TextIOWrapper(io.FileIO(write_end, "w"), line_buffering=True)
  out = cli._OutlivesItsReader(stream)
  out.write("seen\n")
  assert os.read(read_end, 100) == b"seen\n"
  os.close(read_end)
  for _ in range(3):  # the first write finds the pipe broken; none raises
    assert out.write("lost\n") == 5
    out.flush()
  assert os.path.samefile(f"/proc/self/fd/{stream.fileno()}", os.devnull)
  stream.close()


def test_output_that_cannot_be_written_goes_to_devnull():
  with open("/dev/full", "w") as full:  # every write fails: no space left on device
    out = cli._OutlivesItsReader(full)
    assert out.write("progress\n") == 9
    out.flush()
    assert os.path.samefile(f"/proc/self/fd/{full.fileno()}", os.devnull)


def test_a_home_relative_out_dir_is_expanded(tmp_path, monkeypatch):
  """The shell leaves `--out_dir=~/runs` alone; a folder named ~ must not appear."""
  monkeypatch.setenv("HOME", str(tmp_path))
  result = launch_in_process(*TINY, "--out_dir=~/runs", "--plot_only")
  assert result.returncode == 2 and str(tmp_path / "runs" / "results.jsonl") in result.stderr, result.stderr
  assert not os.path.exists("~") and not os.path.exists(os.path.join(ROOT, "~"))


def _popen(args, out, **kwargs) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, "launch.py", *args, f"--out_dir={out}"], cwd=ROOT,
                          stderr=subprocess.PIPE, text=True, **kwargs)


def test_a_run_piped_into_head_finishes_and_saves_its_results(tmp_path):
  run = _popen(TINY, tmp_path, stdout=subprocess.PIPE)
  assert run.stdout.readline()  # the headline; then, as `head -1` does, stop reading
  run.stdout.close()
  stderr = run.stderr.read()
  assert run.wait(timeout=120) == 0, stderr
  assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "Exception ignored" not in stderr
  assert len(read_results(tmp_path / "results.jsonl")) == 2  # joint and separate, one seed each


def test_sigterm_after_the_first_group_says_what_is_saved_and_a_rerun_resumes(tmp_path):
  args = [*TINY, "--experiment=network_size", "--widths=2,3"]  # 4 groups of one seed
  path = tmp_path / "results.jsonl"
  run = _popen(args, tmp_path, stdout=subprocess.DEVNULL)
  deadline = time.time() + 120
  while not (path.exists() and path.read_text().count("\n") >= 1):
    assert run.poll() is None and time.time() < deadline, "ended or stalled before its first group"
    time.sleep(0.02)
  # Not at once: a signal landing between the line's fsync and the sweep's count of what
  # is saved says one run fewer than the file holds (sweep.py counts after the write).
  time.sleep(0.3)
  run.send_signal(signal.SIGTERM)
  _, stderr = run.communicate(timeout=60)
  assert run.returncode == 143, stderr  # 128 + SIGTERM: preempted, not Ctrl-C's 130
  lines = stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("interrupted: "), stderr
  saved = int(lines[0].split()[1])
  assert 1 <= saved < 4 and f"{saved} of the 4 runs are saved in" in lines[0]
  assert "run the same command again to resume" in lines[0]
  before = [r["hash"] for r in read_results(path)]
  assert len(before) == saved

  rerun = launch_in_process(*args, f"--out_dir={tmp_path}")
  assert rerun.returncode == 0, rerun.stderr
  assert rerun.stdout.count("already in") == saved  # the saved groups are skipped, not retrained
  after = [r["hash"] for r in read_results(path)]
  assert after[:saved] == before and len(after) == len(set(after)) == 4
