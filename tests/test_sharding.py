"""One run over several devices and several processes (mtl_jax/devices.py): the same
flags give the same results on 1 device, on 4 simulated CPU devices and in 2 processes
joined by jax.distributed; the compiled step never communicates across models; only
process 0 writes. The device count is fixed when jax starts, so every run here is a
process of its own: devices_worker.py (1 and 4 devices, the compiled programs) and two
launch.py processes over loopback, all started at once."""
import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
from entry_points import ROOT, assert_one_line_error, launch_in_process

from mtl_jax.devices import Layout, choose_layout, join_processes, slurm_job_without_srun
from mtl_jax.errors import InputError
from mtl_jax.results import read_results

# A sweep of two groups (joint, separate) of 3 seeds. On 4 devices the joint network's
# seeds fill the batch axis (gcd(3, 4) = 1), the 4 separate networks the nets axis; in
# 2 processes of 1 device each, the joint step sums its gradient across the processes.
SWEEP = ["--experiment=joint_vs_separate", "--dataset=related", "--encoder=mlp", "--width=4",
         "--depth=1", "--num_train=64", "--num_val=32", "--num_test=32", "--epochs=1", "--seeds=3",
         "--batch_size=16"]
TIMEOUT = 300  # seconds; a loaded machine is slow, and a hung process is killed after it


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _xla_flags(*flags: str) -> str:
  """This process's XLA_FLAGS (the suite's compile level) but a device count, and `flags`."""
  kept = [f for f in os.environ.get("XLA_FLAGS", "").split()
          if not f.startswith("--xla_force_host_platform_device_count")]
  return " ".join([*kept, *flags])


def _start(args: list[str], **env) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT, **env})


def _finish(process: subprocess.Popen) -> str:
  try:
    _, stderr = process.communicate(timeout=TIMEOUT)
  finally:
    if process.poll() is None:
      process.kill()  # never outlives the test
      process.communicate()
  assert process.returncode == 0, stderr
  return stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Folder with: 1/ and 4/ (the sweep on 1 and 4 devices), the compiled programs
  (devices_worker.py), and two/ (the sweep in two processes)."""
  out = tmp_path_factory.mktemp("sharding")
  port = _free_port()
  pair = [_start(["launch.py", *SWEEP, f"--out_dir={out / 'two'}", f"--coordinator_address=localhost:{port}",
                  "--num_processes=2", f"--process_id={i}"], XLA_FLAGS=_xla_flags()) for i in range(2)]
  worker = _start(["tests/devices_worker.py", str(out), *SWEEP],
                  XLA_FLAGS=_xla_flags("--xla_force_host_platform_device_count=4"))
  try:
    _finish(worker)
  finally:
    for process in pair:
      _finish(process)
  return out


def _by_hash(folder) -> dict[str, dict]:
  return {r["hash"]: r for r in read_results(os.path.join(folder, "results.jsonl"))}


def _numbers(record: dict) -> np.ndarray:
  """Every metric of every split and task (and each metric's mean: the example-based
  multi-label ones have only that), and the losses, of one run."""
  metrics = [v for split in record["metrics"].values() for metric in split.values()
             for v in [*metric.get("per_task", []), metric["mean"]]]
  return np.array([*metrics, record["final_train_loss"], *np.ravel(record["val_loss_per_epoch"])], float)


def _assert_same_results(folder, reference) -> None:
  got, expected = _by_hash(folder), _by_hash(reference)
  assert sorted(got) == sorted(expected) and len(expected) == 6
  for key, record in expected.items():
    assert got[key]["selected_epoch"] == record["selected_epoch"]
    np.testing.assert_allclose(_numbers(got[key]), _numbers(record), rtol=1e-4, atol=1e-5)


def test_four_devices_give_the_results_of_one_for_joint_and_separate_networks(runs):
  _assert_same_results(runs / "4", runs / "1")
  arms = {r["config"]["arm"] for r in _by_hash(runs / "4").values()}
  assert arms == {"joint", "separate"}


def test_gradient_combination_over_a_split_batch_equals_one_device(runs):
  results = json.loads((runs / "methods.json").read_text())
  for method in ("mgda", "mgda_ub"):
    np.testing.assert_allclose(results[f"{method} 4"], results[f"{method} 1"], rtol=1e-5, atol=1e-6)


# ---- the compiled step: which devices talk to which


def _replica_groups(line: str, num_devices: int) -> list[list[int]]:
  """The groups of devices one collective of an HLO line runs among."""
  listed = re.search(r"(?:replica_groups|source_target_pairs)=\{((?:\{[\d,]*\},?)*)\}", line)
  if listed:
    groups = [[int(i) for i in g.split(",") if i] for g in re.findall(r"\{([\d,]*)\}", listed.group(1))]
    return [g for g in groups if g] or [list(range(num_devices))]
  iota = re.search(r"replica_groups=\[([\d,]+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?", line)
  if iota:  # iota(N) reshaped to the second dims, transposed, reshaped to the first
    dims, shape = [[int(i) for i in s.split(",")] for s in iota.groups()[:2]]
    ids = np.arange(np.prod(shape)).reshape(shape)
    if iota.group(3):
      ids = ids.transpose([int(i) for i in iota.group(3).split(",")])
    return ids.reshape(dims[0], -1).tolist()
  return [list(range(num_devices))]  # no groups: every device


COLLECTIVE = re.compile(r"=\s.*?\b(all-reduce|all-gather|collective-permute|all-to-all|reduce-scatter|"
                        r"collective-broadcast|ragged-all-to-all)(?:-start)?\(")


def collectives(hlo: str, num_devices: int) -> list[tuple[str, list[list[int]]]]:
  """(kind, device groups) of every collective in a compiled HLO module."""
  return [(m.group(1), _replica_groups(line, num_devices))
          for line in hlo.splitlines() if (m := COLLECTIVE.search(line))]


def _programs(runs):
  layouts = json.loads((runs / "layouts.json").read_text())
  for name, layout in layouts.items():
    shape, ids = layout["shape"], layout["device_ids"]
    # The mesh is [seeds, nets, batch], batch fastest: a device's model is its position // batch.
    model_of = {device: position // shape[2] for position, device in enumerate(ids)}
    yield name, shape, model_of, collectives((runs / f"{name}.hlo").read_text(), len(ids))


def test_the_compiled_step_never_communicates_across_models(runs):
  for name, shape, model_of, found in _programs(runs):
    for kind, groups in found:
      for group in groups:
        assert len({model_of[d] for d in group}) == 1, f"{name}: {kind} across models {group}"


def test_the_batch_axis_sums_the_gradient_and_lone_models_say_nothing(runs):
  kinds = {name: (shape, {kind for kind, _ in found}) for name, shape, _, found in _programs(runs)}
  assert kinds["joint_seeds_and_batch"] == ([2, 1, 2], {"all-reduce"})
  # MGDA-UB weighs the whole batch's representation gradients: gathered over the batch.
  assert kinds["joint_representation_gradients"][1] >= {"all-reduce", "all-gather"}
  assert kinds["separate_seeds_and_nets"] == ([2, 2, 1], set())


def test_a_batch_all_reduce_spans_exactly_the_batch_axis(runs):
  for name, shape, model_of, found in _programs(runs):
    for kind, groups in found:
      assert all(len(group) == shape[2] for group in groups), (name, kind, groups)


@pytest.mark.parametrize("devices,seeds,nets,expected", [
    (1, 3, 4, Layout(1, 1, 1)),
    (4, 3, 1, Layout(1, 1, 4)),  # joint, 3 seeds: all data parallel
    (4, 2, 1, Layout(2, 1, 2)),
    (4, 3, 4, Layout(1, 4, 1)),  # separate networks: one per device, no communication
    (8, 2, 4, Layout(2, 4, 1)),
    (8, 6, 4, Layout(2, 4, 1)),
    (6, 5, 1, Layout(1, 1, 6)),
])
def test_models_take_the_devices_first_and_the_batch_the_rest(devices, seeds, nets, expected):
  assert choose_layout(devices, seeds, nets) == expected


# ---- two processes


def test_two_processes_give_the_results_of_one_and_only_process_0_writes(runs):
  _assert_same_results(runs / "two", runs / "1")
  lines = (runs / "two" / "results.jsonl").read_text().splitlines()
  assert len(lines) == 6  # each run once, though two processes trained it
  assert sorted(os.listdir(runs / "two")) == sorted(os.listdir(runs / "1"))


# ---- flags that cannot work: one line, before anything trains


def test_more_devices_than_the_process_has_is_one_line(tmp_path):
  result = launch_in_process(*SWEEP, "--devices=64", f"--out_dir={tmp_path / 'out'}")
  assert_one_line_error(result, "--devices=64 but this process sees", tmp_path / "out")


def test_a_partial_multi_process_flag_set_is_one_line(tmp_path):
  result = launch_in_process(*SWEEP, "--num_processes=2", f"--out_dir={tmp_path / 'out'}")
  assert_one_line_error(result, "go together", tmp_path / "out")


def test_auto_inside_an_allocation_but_outside_srun_refuses_instead_of_waiting(monkeypatch):
  # What an `salloc` shell holds: the job's variables, none of an srun task's.
  for name in list(os.environ):
    if name.startswith("SLURM_"):
      monkeypatch.delenv(name)
  monkeypatch.setenv("SLURM_JOB_ID", "123")
  monkeypatch.setenv("SLURM_NTASKS", "2")
  with pytest.raises(InputError, match="outside srun"):
    join_processes(None, None, None, auto=True)
  monkeypatch.setenv("SLURM_STEP_ID", "0")
  monkeypatch.setenv("SLURM_PROCID", "1")
  monkeypatch.setenv("SLURM_STEP_NODELIST", "node1")
  monkeypatch.setenv("SLURM_LOCALID", "1")
  assert not slurm_job_without_srun()
