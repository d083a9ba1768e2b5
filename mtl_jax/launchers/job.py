"""What runs inside a submitit job: one group of a sweep, its records appended to the
job's own shard, OUT_DIR/shards/results-JOB-HOST-PID.jsonl.

The job's first act is to set JAX's memory environment (base.MEMORY_ENVIRONMENT), which
jaxlib reads when a backend starts. Unpickling the job (SweepJob, its JobSpec and the
group's RunConfigs) imports jax through mtl_jax but starts no backend; a test loads a
real job's pickle in a fresh process and checks that. The launch also puts the same
variables in the job's environment before Python starts (submitted.py), so the
setdefault here is the fallback for an executor that does not.
"""
import dataclasses
import os
import socket
import sys

import submitit

from mtl_jax.checkpoints import CheckpointSettings
from mtl_jax.data.datasets import load_dataset
from mtl_jax.launchers.base import JobSpec
from mtl_jax.results import SHARDS_DIR
from mtl_jax.sweep import run_pending


def shard_path(results_path: str) -> str:
  """This process's own shard: the job id (array task included) and, because a
  requeued or lost-and-restarted task keeps its id, the host and pid. No two processes
  ever append to the same file, so jobs need no lock (docs/cluster.md)."""
  try:
    job = submitit.JobEnvironment().job_id
  except Exception:  # not inside a submitit job (a test calling the job directly)
    job = "nojob"
  name = f"results-{job}-{socket.gethostname()}-{os.getpid()}.jsonl"
  return os.path.join(os.path.dirname(results_path), SHARDS_DIR, name)


def backend_started() -> bool:
  """Whether this process has started a jax backend (without importing jax to ask)."""
  bridge = sys.modules.get("jax._src.xla_bridge")
  return bool(bridge and bridge.backends_are_initialized())


class SweepJob(submitit.helpers.Checkpointable):
  """The function every job runs. Checkpointable: when a job is preempted or reaches its
  time limit, submitit requeues it; the new try skips the runs on file and, with
  --checkpoint_every, resumes its group from the latest checkpoint."""

  def __call__(self, spec: JobSpec) -> list[str]:
    if backend_started():  # the environment below would come too late
      print("warning: a jax backend started before the job set its memory environment",
            file=sys.stderr, flush=True)
    for name, value in spec.environment:
      os.environ.setdefault(name, value)
    return _train(spec)

  def checkpoint(self, spec: JobSpec) -> submitit.helpers.DelayedSubmission:
    resume = spec.resume or spec.checkpoint_every > 0
    return submitit.helpers.DelayedSubmission(self, dataclasses.replace(spec, resume=resume))


def _train(spec: JobSpec) -> list[str]:
  """Trains the group's runs that are on file nowhere yet (a retried job finds some);
  returns the group's hashes now on file."""
  group = list(spec.group)
  if tuple(c.hash for c in group) != spec.hashes:
    raise RuntimeError(f"{spec.describe}: the configs hash differently in this job than where they "
                       "were launched; the job runs other code (or library versions) than the launch")
  checkpointing = (CheckpointSettings(spec.checkpoint_dir, spec.checkpoint_every, spec.resume)
                   if spec.checkpoint_dir else None)
  shard = shard_path(spec.results_path)
  print(f"  {spec.describe}: {len(group)} runs, trained into {shard} unless on file", flush=True)
  done = run_pending([group], load_dataset, spec.results_path, checkpointing=checkpointing,
                     append_to=shard, save_params_in=spec.save_params_in)
  return [h for h in spec.hashes if h in done]
