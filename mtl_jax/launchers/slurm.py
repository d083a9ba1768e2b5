"""--launcher=slurm: the sweep's groups as one Slurm job array, through submitit's
SlurmExecutor (executor.map_array: one array task per group, one sbatch call). The log
folder must be on a filesystem the compute nodes share: jobs read their pickled work
from it and write their results beside OUT_DIR's results.jsonl, which must be shared too."""
import shutil
from typing import Optional

from mtl_jax.launchers import submitted
from mtl_jax.launchers.base import JobSpec, Launcher, LaunchSettings, Sweep

# Slurm's commands the launch needs: sbatch submits; submitit's SlurmExecutor refuses to
# start without srun, which the job script runs the job with; sacct reports job states.
COMMANDS = ("sbatch", "srun", "sacct")
POLL_S = 10.0  # submitit asks sacct at most about once a minute anyway


def _unmet(settings: LaunchSettings) -> Optional[str]:
  why = submitted.unmet_submitit("slurm")
  if why:
    return why
  absent = [c for c in COMMANDS if shutil.which(c) is None]
  if absent:
    return (f"--launcher=slurm needs Slurm's {', '.join(absent)} on PATH, and this machine has "
            f"{'none of them' if len(absent) == len(COMMANDS) else 'not all'}: launch from a "
            "cluster's login node, or try the same path here with --launcher=submitit-local")
  return None


def executor(sweep: Sweep, settings: LaunchSettings):
  """The SlurmExecutor a launch submits through, all its parameters set."""
  submitit = submitted.import_submitit()
  ex = submitit.SlurmExecutor(folder=submitted.log_dir(sweep, settings))
  ex.update_parameters(
      job_name=f"mtl_jax-{sweep.name}", partition=settings.partition, time=settings.time_min,
      gpus_per_task=settings.gpus_per_task or None,
      array_parallelism=settings.array_parallelism or 256, setup=submitted.setup_lines(),
      # One task per job, said as --ntasks: Slurm 23.11 refuses --gpus-per-task without it
      # (torchx hit the same, meta-pytorch/torchx#1100).
      additional_parameters={"ntasks": 1, **dict(settings.extra)})
  return ex


def sbatch_script(ex, count: int) -> str:
  """The script `sbatch` would get for an array of `count` tasks from this executor: what
  the tests read, since no cluster is at hand to submit to."""
  ex.parameters["map_count"] = count
  try:
    return ex._make_submission_file_text(ex._submitit_command_str, "preview")
  finally:
    del ex.parameters["map_count"]


def _start(specs: list[JobSpec], sweep: Sweep, settings: LaunchSettings, started, tick) -> None:
  ex = executor(sweep, settings)
  from mtl_jax.launchers import job  # imports submitit: after import_submitit

  jobs = ex.map_array(job.SweepJob(), specs)
  started.extend(zip(jobs, specs))
  print(f"  submitted Slurm array {jobs[0].job_id.split('_')[0]} of {len(jobs)} tasks "
        f"(partition {settings.partition or 'default'}, {settings.time_min} min each); waiting "
        "(Ctrl-C stops waiting, not the jobs)", flush=True)
  submitted.wait_all(jobs, tick, POLL_S)


def _on_interrupt(started) -> str:
  arrays = sorted({job.job_id.split("_")[0] for job, _ in started})
  return (f"the submitted jobs keep running (scancel {' '.join(arrays)} stops them)" if arrays
          else "no job was submitted")


def _train(sweep: Sweep, settings: LaunchSettings) -> dict[str, dict]:
  return submitted.train_as_jobs(sweep, settings, _start, _on_interrupt)


LAUNCHER = Launcher("each group one task of a Slurm job array (submitit)", _unmet, _train,
                    in_process=False)
