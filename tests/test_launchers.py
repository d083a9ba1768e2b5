"""Sweeps fanned out as submitit jobs (mtl_jax/launchers): through submitit's local
executor (real subprocesses) the same metrics as in this process, also after a job is
killed mid-run and the sweep relaunched; result shards merged with results.jsonl; the
Slurm job script checked without a cluster; and one-line errors for what cannot launch."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from unittest import mock

import pytest
from entry_points import ROOT, assert_one_line_error, launch_in_process

from mtl_jax.launchers import slurm, submitted
from mtl_jax.launchers.base import LaunchSettings, Sweep
from mtl_jax.results import SHARDS_DIR, append_result, read_all_records, where_results_are
from mtl_jax.sweep import records_on_file

# joint_vs_separate: two groups (joint, separate) of two seeds, so two jobs.
TINY = ["--encoder=mlp", "--width=4", "--depth=1", "--epochs=1", "--seeds=2", "--num_train=64",
        "--num_val=32", "--num_test=32", "--batch_size=16", "--image_size=8"]
LOCAL_JOBS = [*TINY, "--launcher=submitit-local", "--slurm_array_parallelism=2", "--slurm_time=5"]


def metrics_by_hash(out) -> dict:
  return {r["hash"]: r["metrics"] for r in read_all_records(str(out / "results.jsonl"))[0]}


def lines_on_file(out) -> list[str]:
  """The hash of every line of results.jsonl and every shard: a run twice shows twice."""
  paths = [out / "results.jsonl", *sorted((out / SHARDS_DIR).glob("*.jsonl"))]
  return [json.loads(line)["hash"] for p in paths if p.exists() for line in p.read_text().splitlines()]


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
  """The same sweep in this process (--launcher=local): the reference."""
  out = tmp_path_factory.mktemp("in_process")
  result = launch_in_process(*TINY, f"--out_dir={out}")
  assert result.returncode == 0, result.stderr
  return out


def test_submitit_local_gives_the_in_process_metrics_and_summary(tmp_path, in_process):
  result = launch_in_process(*LOCAL_JOBS, f"--out_dir={tmp_path}")
  assert result.returncode == 0, result.stderr
  assert "2 jobs, one per group" in result.stdout and "4 of the 4 runs are saved" in result.stdout
  assert metrics_by_hash(tmp_path) == metrics_by_hash(in_process) and len(metrics_by_hash(tmp_path)) == 4
  assert (tmp_path / "summary.csv").read_text() == (in_process / "summary.csv").read_text()
  # Each job wrote its own shard, nothing else wrote results, and nothing is on file twice.
  assert not (tmp_path / "results.jsonl").exists()
  assert len(list((tmp_path / SHARDS_DIR).glob("*.jsonl"))) == 2 and len(lines_on_file(tmp_path)) == 4
  # --plot_only reads the shards the jobs wrote; with the launch's flags it starts no
  # job, so it redraws on a machine without Slurm too.
  replot = launch_in_process(*TINY, "--plot_only", "--launcher=slurm", f"--out_dir={tmp_path}")
  assert replot.returncode == 0, replot.stderr
  assert (tmp_path / "summary.csv").read_text() == (in_process / "summary.csv").read_text()
  # A real job's pickle, loaded in a fresh process as the job loads it, starts no jax
  # backend: the job's memory environment still comes first.
  pickle = next((tmp_path / "submitit").glob("*_submitted.pkl"))
  probe = ("import sys; from submitit.core.utils import DelayedSubmission; "
           f"DelayedSubmission.load({str(pickle)!r}); "
           "from jax._src import xla_bridge; print('jax' in sys.modules, xla_bridge.backends_are_initialized())")
  loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert loaded.stdout.split() == ["True", "False"], loaded.stderr


def _job_processes(folder) -> list[int]:
  """Pids of the job processes (not their controllers) that run from `folder`."""
  pids = []
  for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
      with open(f"/proc/{pid}/cmdline", "rb") as f:
        command = f.read().split(b"\0")
    except OSError:
      continue
    if b"submitit.core._submit" in command and str(folder).encode() in command:
      pids.append(int(pid))
  return pids


def _kill_a_job_once_it_trains(folder, killed: list) -> None:
  """SIGKILLs the first job to say it is training (its log's line of ours), while it
  trains: its records are appended only once its group has finished."""
  deadline = time.time() + 120
  while time.time() < deadline:
    for pid in _job_processes(folder):
      with open(f"/proc/{pid}/stat") as f:
        controller = f.read().rpartition(")")[2].split()[1]  # a local job's id is its parent's pid
      log = folder / f"{controller}_0_log.out"
      if log.exists() and "trained into" in log.read_text():
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        return
    time.sleep(0.02)


def test_a_job_killed_mid_run_then_relaunched_leaves_every_run_once(tmp_path, in_process):
  killed = []
  killer = threading.Thread(target=_kill_a_job_once_it_trains, args=(tmp_path / "submitit", killed))
  killer.start()
  first = launch_in_process(*LOCAL_JOBS, f"--out_dir={tmp_path}")
  killer.join()
  assert killed, "no job was killed"
  # One line: how many runs are missing, which job failed and where its log is.
  assert first.returncode == 2
  lines = first.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: 2 of the 4 runs are missing"), first.stderr
  assert "ended without a result" in lines[0] and "run the same command again" in lines[0]
  assert len(lines_on_file(tmp_path)) == 2 and not (tmp_path / "summary.csv").exists()
  again = launch_in_process(*LOCAL_JOBS, f"--out_dir={tmp_path}")
  assert again.returncode == 0, again.stderr
  assert "1 job, one per group" in again.stdout  # only the killed job's group trains again
  assert sorted(lines_on_file(tmp_path)) == sorted(metrics_by_hash(in_process))  # each run once
  assert metrics_by_hash(tmp_path) == metrics_by_hash(in_process)


def test_sigterm_to_the_launch_cancels_its_local_jobs_with_one_line(tmp_path):
  launch = subprocess.Popen([sys.executable, "launch.py", *LOCAL_JOBS, f"--out_dir={tmp_path}"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 120
  while time.time() < deadline and len(_job_processes(tmp_path / "submitit")) < 2:
    time.sleep(0.05)
  launch.send_signal(signal.SIGTERM)  # what a scheduler sends the launch before killing it
  _, stderr = launch.communicate(timeout=60)
  assert launch.returncode == 143
  lines = stderr.strip().splitlines()
  assert len(lines) == 1 and "cancelled the 2 local jobs still running" in lines[0], stderr
  deadline = time.time() + 10  # a controller gives its job 1 s after SIGINT, then SIGKILL
  while time.time() < deadline and _job_processes(tmp_path / "submitit"):
    time.sleep(0.1)
  assert not _job_processes(tmp_path / "submitit")


# ---- Shards, merged (no jobs needed).

def _record(hash_: str, value: float) -> dict:
  return {"hash": hash_, "value": value}  # another results version: read, not summarized


def test_a_hash_in_results_and_in_shards_counts_once_the_last_read_wins(tmp_path):
  """results.jsonl is read first, then the shards in name order; a hash's last record
  counts (the copies of a retried job are alike; a --save_params retrain records its
  parameters only in the later copy)."""
  results = str(tmp_path / "results.jsonl")
  append_result(results, _record("a", 1))
  append_result(str(tmp_path / SHARDS_DIR / "results-2-h-1.jsonl"), _record("a", 2))
  append_result(str(tmp_path / SHARDS_DIR / "results-2-h-1.jsonl"), _record("b", 3))
  append_result(str(tmp_path / SHARDS_DIR / "results-1-h-9.jsonl"), _record("b", 4))
  records, unusable = read_all_records(results)
  assert [(r["hash"], r["value"]) for r in records] == [("a", 2), ("b", 3)] and unusable == {}
  assert where_results_are(results) == f"{results} and 2 shards in {tmp_path / SHARDS_DIR}"


def test_a_torn_last_line_of_a_shard_is_set_aside_and_the_next_append_starts_afresh(tmp_path, capsys):
  shard = tmp_path / SHARDS_DIR / "results-7-h-1.jsonl"
  append_result(str(shard), _record("a", 1))
  with open(shard, "a") as f:
    f.write('{"hash": "b", "val')  # a job killed mid-write
  records, unusable = read_all_records(str(tmp_path / "results.jsonl"))
  assert [r["hash"] for r in records] == ["a"] and unusable == {str(shard): [2]}
  assert records_on_file(str(tmp_path / "results.jsonl")) == ({}, 1)  # "a" is of another version
  assert f"warning: {shard}: line 2 is not a result record" in capsys.readouterr().err
  append_result(str(shard), _record("b", 2))
  assert [r["hash"] for r in read_all_records(str(tmp_path / "results.jsonl"))[0]] == ["a", "b"]


def test_only_jsonl_files_in_shards_are_read(tmp_path):
  (tmp_path / SHARDS_DIR / "sub.jsonl").mkdir(parents=True)
  (tmp_path / SHARDS_DIR / "notes.txt").write_text('{"hash": "x"}\n')
  assert read_all_records(str(tmp_path / "results.jsonl")) == ([], {})


# ---- Slurm, without a cluster: the script sbatch would get, and the errors.

def test_the_slurm_array_script_asks_for_what_the_flags_say(tmp_path, monkeypatch):
  bin_dir = tmp_path / "bin"  # SlurmExecutor will not start without srun on PATH; never run
  bin_dir.mkdir()
  (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
  (bin_dir / "srun").chmod(0o755)
  monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
  settings = LaunchSettings("slurm", partition="gpu", time_min=90, gpus_per_task=1,
                            array_parallelism=3, log_dir=str(tmp_path / "logs"),
                            extra=(("account", "lab"),))
  sweep = Sweep([], str(tmp_path / "out" / "results.jsonl"), None, None, "joint_vs_separate")
  script = slurm.sbatch_script(slurm.executor(sweep, settings), count=5)
  lines = script.splitlines()
  for expected in ("#SBATCH --partition=gpu", "#SBATCH --time=90", "#SBATCH --gpus-per-task=1",
                   "#SBATCH --ntasks=1", "#SBATCH --array=0-4%3", "#SBATCH --account=lab",
                   "#SBATCH --job-name=mtl_jax-joint_vs_separate",
                   f"#SBATCH --output={tmp_path / 'logs'}/%A_%a_0_log.out"):
    assert expected in lines, script
  # The jobs' environment is set in the script, before Python starts, the node's own wins.
  setup = lines.index("export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE-false}")
  assert lines[setup - 1] == f"export PYTHONPATH={ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"
  assert setup < next(i for i, line in enumerate(lines) if line.startswith("srun "))
  assert submitted.setup_lines() == lines[setup - 1:setup + 1]


def test_slurm_without_sbatch_is_one_line_before_anything_is_written(tmp_path, monkeypatch):
  monkeypatch.setenv("PATH", str(tmp_path))  # nothing of Slurm's on it
  result = launch_in_process(*TINY, "--launcher=slurm", f"--out_dir={tmp_path / 'out'}")
  assert_one_line_error(result, "--launcher=slurm needs Slurm's sbatch, srun, sacct on PATH",
                        tmp_path / "out")


@pytest.mark.parametrize("launcher", ["slurm", "submitit-local"])
def test_a_launcher_without_submitit_installed_is_one_line(tmp_path, launcher):
  with mock.patch.dict(sys.modules, {"submitit": None}):  # import submitit raises ImportError
    result = launch_in_process(*TINY, f"--launcher={launcher}", f"--out_dir={tmp_path / 'out'}")
  assert_one_line_error(result, f"--launcher={launcher} needs submitit: pip install submitit==1.5.4",
                        tmp_path / "out")


@pytest.mark.parametrize("flags, expected", [
    (["--slurm_partition=gpu"], "--slurm_partition applies to jobs; add --launcher=slurm"),
    (["--launcher=slurm", "--slurm_extra=account"], "--slurm_extra takes NAME=VALUE items"),
    (["--launcher=submitit-local", "--slurm_gpus_per_task=64"], "needs that many GPUs on this machine"),
    (["--launcher=slrum"], "Did you mean: slurm?"),
])
def test_bad_launcher_flags_are_one_line(tmp_path, flags, expected):
  result = launch_in_process(*TINY, *flags, f"--out_dir={tmp_path / 'out'}")
  assert_one_line_error(result, expected, tmp_path / "out")
