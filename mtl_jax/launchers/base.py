"""What every launcher is given and what it is: plain data, no jax (see __init__.py)."""
import dataclasses
from typing import Callable, Optional, Sequence

# JAX's GPU memory settings for every job (and for a launch whose jobs train elsewhere):
# jaxlib reads them when it creates the GPU client (xla_client.py), at the first use of a
# device, not at import; by default it takes 75% of a GPU's memory at once, so a second
# job on the same GPU would fail. The job's own environment
# wins (export one to override): setdefault in job.py, ${VAR-default} in a Slurm job's
# setup lines (submitted.py).
MEMORY_ENVIRONMENT = (("XLA_PYTHON_CLIENT_PREALLOCATE", "false"),)


@dataclasses.dataclass(frozen=True)
class JobSpec:
  """One job's work, as plain data: small, and nothing live from the launching process."""
  results_path: str  # OUT_DIR/results.jsonl: read with every shard, to skip runs on file
  # The group's runs.RunConfigs: frozen dataclasses of plain values. Unpickling them
  # imports jax but starts no backend, so the job still sets the environment in time.
  group: tuple
  hashes: tuple[str, ...]  # theirs, as the launching process computed them
  describe: str  # sweep.describe of the group, for logs and failures
  checkpoint_dir: Optional[str] = None  # OUT_DIR/checkpoints, if the sweep checkpoints
  checkpoint_every: int = 0
  resume: bool = False
  environment: tuple[tuple[str, str], ...] = MEMORY_ENVIRONMENT
  save_params_in: Optional[str] = None  # OUT_DIR, with --save_params


# The in-process launcher: today's behaviour and the default.
LOCAL = "local"


@dataclasses.dataclass(frozen=True)
class LaunchSettings:
  """--launcher and what a submitit job asks of its scheduler (the --slurm_* flags)."""
  name: str = LOCAL
  partition: Optional[str] = None  # Slurm partition; None: the cluster's default
  time_min: int = 60  # each job's time limit (submitit's local executor enforces it too)
  gpus_per_task: int = 0
  # Jobs running at once: Slurm's %N of the array; submitit-local's own bound. 0: no
  # bound of ours (Slurm: submitit's 256; submitit-local: one job per GPU, else 2).
  array_parallelism: int = 0
  log_dir: Optional[str] = None  # submitit's folder: pickles and logs; None: OUT_DIR/submitit
  extra: tuple[tuple[str, str], ...] = ()  # more sbatch options, (name, value)


@dataclasses.dataclass(frozen=True)
class Sweep:
  """The groups of one experiment's grid (lists of configs identical but for their
  seeds), where their results go, and how the in-process launcher loads data."""
  groups: Sequence[Sequence]  # of runs.RunConfig
  results_path: str  # OUT_DIR/results.jsonl; jobs write OUT_DIR/shards/ beside it
  checkpointing: Optional[object]  # checkpoints.CheckpointSettings, or None
  load_data: Callable  # DataConfig -> MultiTaskData, for training in this process
  name: str  # the experiment's: names the jobs in the scheduler's queue
  save_params_in: Optional[str] = None  # OUT_DIR, with --save_params (sweep.run_pending)


@dataclasses.dataclass(frozen=True)
class Launcher:
  summary: str  # one line, for --help
  # Why these settings cannot launch from this machine (one line naming what to
  # install or change), or None; asked before anything is written.
  unmet: Callable[[LaunchSettings], Optional[str]]
  # Trains the runs of the sweep that are not on file; returns every record on file
  # (results.jsonl and every shard) by hash, or raises InputError naming what is missing.
  train: Callable[[Sweep, LaunchSettings], dict[str, dict]]
  in_process: bool  # trains here; otherwise it starts jobs and waits for them
