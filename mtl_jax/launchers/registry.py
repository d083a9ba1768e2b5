"""LAUNCHERS: --launcher's name -> where the groups of a sweep run. Adding one is a file
in this package and a line here. Imported by the launching process only (jobs import
job.py alone), so launchers may import jax."""
import os
from typing import Optional

from mtl_jax.errors import InputError
from mtl_jax.launchers import in_process, slurm, submitit_local
from mtl_jax.launchers.base import LOCAL, MEMORY_ENVIRONMENT, Launcher, LaunchSettings

LAUNCHERS: dict[str, Launcher] = {
    LOCAL: in_process.LAUNCHER,
    "slurm": slurm.LAUNCHER,
    "submitit-local": submitit_local.LAUNCHER,
}


def prepare(settings: LaunchSettings) -> None:
  """Before anything is written or any jax backend starts: refuses (one line) settings
  this machine cannot launch; a launch whose jobs train elsewhere gives itself the jobs'
  memory environment, since it only plans and summarises, and on one multi-GPU machine
  must not take the memory of the GPU a job is given."""
  launcher = LAUNCHERS[settings.name]
  why: Optional[str] = launcher.unmet(settings)
  if why:
    raise InputError(why)
  if not launcher.in_process:
    for name, value in MEMORY_ENVIRONMENT:
      os.environ.setdefault(name, value)
