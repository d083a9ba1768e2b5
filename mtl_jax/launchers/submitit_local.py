"""--launcher=submitit-local: the same jobs as --launcher=slurm, through submitit's
LocalExecutor (what AutoExecutor(cluster="local") builds): each group a real subprocess
of this machine, pickled, run and logged as on a cluster. At most
--slurm_array_parallelism jobs run at once (default: one per GPU with
--slurm_gpus_per_task, else 2), each on GPUs of its own: how one multi-GPU machine runs a
sweep a group per GPU."""
import contextlib
import os
import subprocess
import sys
import time
from typing import Iterator, Optional

from mtl_jax.launchers import submitted
from mtl_jax.launchers.base import JobSpec, Launcher, LaunchSettings, Sweep

POLL_S = 0.2  # local processes: cheap to poll, and a test waits on them
CPU_JOBS = 2  # jobs at once without GPUs: each jax process already uses every core
CONTROLLERS_LOG = "controllers.log"  # in the log folder: what submitit's job controllers say


def local_gpus() -> list[int]:
  """The GPU numbers jobs may be given: CUDA_VISIBLE_DEVICES if set, else every GPU
  nvidia-smi lists; [] without any. Not from jax: this process must not start a GPU
  backend, which would hold GPU memory a job needs."""
  visible = os.environ.get("CUDA_VISIBLE_DEVICES")
  if visible is not None:
    return [int(x) for x in visible.split(",") if x.strip().isdigit()]
  try:
    listed = subprocess.run(["nvidia-smi", "--list-gpus"], capture_output=True, text=True, timeout=60)
  except (OSError, subprocess.SubprocessError):
    return []
  return list(range(sum(line.startswith("GPU ") for line in listed.stdout.splitlines())))


def _unmet(settings: LaunchSettings) -> Optional[str]:
  why = submitted.unmet_submitit("submitit-local")
  if why:
    return why
  if settings.gpus_per_task and len(local_gpus()) < settings.gpus_per_task:
    return (f"--slurm_gpus_per_task={settings.gpus_per_task} with --launcher=submitit-local needs "
            f"that many GPUs on this machine; it has {len(local_gpus())} (CUDA_VISIBLE_DEVICES "
            "or nvidia-smi)")
  return None


def _slots(settings: LaunchSettings) -> list[tuple[int, ...]]:
  """The GPUs of each job slot (empty tuples on a CPU): as many slots as jobs may run."""
  per_job = settings.gpus_per_task
  if not per_job:
    return [()] * (settings.array_parallelism or CPU_JOBS)
  gpus = local_gpus()
  slots = [tuple(gpus[i:i + per_job]) for i in range(0, len(gpus) - per_job + 1, per_job)]
  return slots[:settings.array_parallelism] if settings.array_parallelism else slots


def _start(specs: list[JobSpec], sweep: Sweep, settings: LaunchSettings, started, tick) -> None:
  """Starts a job in each free slot until every spec has run, then waits for the last."""
  submitit = submitted.import_submitit()
  from mtl_jax.launchers import job  # imports submitit

  executor = submitit.LocalExecutor(folder=submitted.log_dir(sweep, settings))
  controllers_log = os.path.join(submitted.log_dir(sweep, settings), CONTROLLERS_LOG)
  slots, queue, running = _slots(settings), list(specs), {}
  while queue or running:
    for slot, gpus in enumerate(slots):
      if slot in running and running[slot].done():
        del running[slot]
      if slot not in running and queue:
        executor.update_parameters(timeout_min=settings.time_min, gpus_per_node=len(gpus),
                                   visible_gpus=gpus)
        with submitted.environment(**submitted.job_environment()), _output_to(controllers_log):
          running[slot] = executor.submit(job.SweepJob(), queue[0])
        started.append((running[slot], queue.pop(0)))
    tick()
    time.sleep(POLL_S)


@contextlib.contextmanager
def _output_to(path: str) -> Iterator[None]:
  """Standard output and error of the processes started in the block go to `path`: a
  local job's controller writes there (a traceback when it is cancelled), not among the
  launch's own lines; the job itself writes to its own log files."""
  sys.stdout.flush()
  sys.stderr.flush()
  saved = [os.dup(1), os.dup(2)]
  with open(path, "ab") as log:
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
  try:
    yield
  finally:
    for fd, copy in zip((1, 2), saved):
      os.dup2(copy, fd)
      os.close(copy)


def _on_interrupt(started) -> str:
  """Local jobs are this process's children: cancelled (SIGINT to each controller, which
  stops its task), so that none outlives the launch."""
  running = [job for job, _ in started if not job.done()]
  for job in running:
    job.cancel()
  return f"cancelled the {len(running)} local job{'s' * (len(running) != 1)} still running"


def _train(sweep: Sweep, settings: LaunchSettings) -> dict[str, dict]:
  return submitted.train_as_jobs(sweep, settings, _start, _on_interrupt)


LAUNCHER = Launcher("each group a job of submitit's local executor: subprocesses of this machine",
                    _unmet, _train, in_process=False)
