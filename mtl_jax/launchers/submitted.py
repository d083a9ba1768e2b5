"""The path --launcher=slurm and --launcher=submitit-local share: one submitit job per
group of the sweep that has runs missing, each appending to its own shard; the
launching process holds OUT_DIR's lock, says how many runs are on file as jobs finish,
and, once every job has ended, either returns every record or says in one line which
jobs failed and where their logs are. How the jobs start (a Slurm array, or local
processes as slots free) is each launcher's own `start`."""
import contextlib
import os
import shlex
import sys
import time
from typing import Callable, Iterator, Optional

from mtl_jax.errors import InputError
from mtl_jax.launchers.base import MEMORY_ENVIRONMENT, JobSpec, LaunchSettings, Sweep
from mtl_jax.results import RESULTS_VERSION, read_all_records
from mtl_jax.sweep import SweepInterrupted, describe, records_on_file

# The folder that holds mtl_jax: a job must import it from wherever the launch started.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOG_DIR = "submitit"  # OUT_DIR/submitit unless --slurm_log_dir
SETTLE_S = 60.0  # NFS's default acdirmax: how stale a folder's listing may be

# (job, its spec) for every job started so far: an interrupt cancels or names them.
Started = list[tuple[object, JobSpec]]
# Starts a job per spec and returns once all have ended, calling tick() about every
# second and adding each job to `started` as it starts.
Start = Callable[[list[JobSpec], Sweep, LaunchSettings, Started, Callable[[], None]], None]


def import_submitit():
  """submitit, imported without its logging configuration (SUBMITIT_LOG_LEVEL=NOCONFIG,
  for the import only: jobs keep theirs). Otherwise its import runs logging's
  dictConfig, which shuts down every handler already made, and absl's closes its
  stream when that is not the current sys.stderr: a launch with redirected output (a
  test's capture) loses it. Its log lines here go to the root logger, at --verbosity.
  An absent submitit raises ImportError."""
  if "submitit" not in sys.modules:
    with environment(SUBMITIT_LOG_LEVEL=os.environ.get("SUBMITIT_LOG_LEVEL", "NOCONFIG")):
      import submitit  # noqa: F401
  import submitit
  return submitit


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
  saved = {name: os.environ.get(name) for name in values}
  os.environ.update(values)
  try:
    yield
  finally:
    for name, value in saved.items():
      if value is None:
        del os.environ[name]
      else:
        os.environ[name] = value


def unmet_submitit(launcher: str) -> Optional[str]:
  try:
    import_submitit()
  except ImportError:
    return f"--launcher={launcher} needs submitit: pip install submitit==1.5.4"
  return None


def log_dir(sweep: Sweep, settings: LaunchSettings) -> str:
  return settings.log_dir or os.path.join(os.path.dirname(sweep.results_path), LOG_DIR)


def job_environment() -> dict[str, str]:
  """The environment a local job starts with, on top of this process's: mtl_jax
  importable, and JAX's memory settings unless this process has its own."""
  path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
  return {"PYTHONPATH": path, **{name: os.environ.get(name, value) for name, value in MEMORY_ENVIRONMENT}}


def setup_lines() -> list[str]:
  """The same as shell lines of a job script, evaluated on the node: its values win."""
  return [f"export PYTHONPATH={shlex.quote(ROOT)}${{PYTHONPATH:+:$PYTHONPATH}}",
          *(f"export {name}=${{{name}-{shlex.quote(value)}}}" for name, value in MEMORY_ENVIRONMENT)]


def job_specs(sweep: Sweep, done: dict) -> list[JobSpec]:
  """One spec per group with a run not on file: its configs, nothing live. Paths are
  absolute: a job's working directory is up to its scheduler."""
  c = sweep.checkpointing
  return [JobSpec(os.path.abspath(sweep.results_path), tuple(group), tuple(r.hash for r in group),
                  describe(group[0]), c and os.path.abspath(c.directory), c.every if c else 0,
                  bool(c and c.resume),
                  save_params_in=sweep.save_params_in and os.path.abspath(sweep.save_params_in))
          for group in sweep.groups if any(r.hash not in done for r in group)]


def _on_file(results_path: str) -> dict[str, dict]:
  """Records of this results version on file, quietly (progress and the last count)."""
  return {r["hash"]: r for r in read_all_records(results_path)[0]
          if r.get("results_version") == RESULTS_VERSION}


class _Progress:
  """Says how many of the sweep's runs are on file whenever that changes."""

  def __init__(self, sweep: Sweep):
    self.sweep, self.start, self.last = sweep, time.perf_counter(), None
    self.hashes = [c.hash for group in sweep.groups for c in group]

  def saved(self) -> str:
    on_file = _on_file(self.sweep.results_path)
    return (f"{sum(h in on_file for h in self.hashes)} of the {len(self.hashes)} runs are saved "
            f"in {os.path.dirname(self.sweep.results_path)}")

  def tick(self) -> None:
    now = self.saved()
    if now != self.last:
      print(f"  {now} ({time.perf_counter() - self.start:.0f}s)", flush=True)
      self.last = now


def wait_all(jobs: list, tick: Callable[[], None], poll_s: float) -> None:
  while not all(job.done() for job in jobs):
    tick()
    time.sleep(poll_s)
  tick()


def _succeeded(job) -> bool:
  return job.paths.result_pickle.exists() and job.exception() is None


def _settled(results_path: str, started: Started) -> dict[str, dict]:
  """The records on file once every run a successful job says is on file can be read
  here too: a shared filesystem may list a new shard late (NFS caches a folder's
  listing for up to a minute), and a run read as missing would fail the launch."""
  claimed = {h for job, _ in started if _succeeded(job) for h in job.result()}
  deadline = time.monotonic() + SETTLE_S
  while True:
    done = _on_file(results_path)
    if claimed <= done.keys() or time.monotonic() > deadline:
      return done
    time.sleep(1.0)


def failure(job, spec: JobSpec) -> Optional[str]:
  """One line on a job that ended without training its group, naming its log; None if
  it succeeded. A job without a result file was killed (by a signal, the time limit or
  memory): said at once, not after submitit's 15 s wait for a slow shared filesystem."""
  where = f"{spec.describe}: job {job.job_id}"
  if not job.paths.result_pickle.exists():
    return f"{where} ended without a result (killed, or out of time or memory; log {job.paths.stderr})"
  error = job.exception()
  if error is None:
    return None
  trace = str(error).split("-" * 22)
  lines = [line for line in (trace[1] if len(trace) > 2 else str(error)).splitlines() if line.strip()]
  return f"{where} failed: {lines[-1].strip() if lines else 'no message'} (log {job.paths.stderr})"


def train_as_jobs(sweep: Sweep, settings: LaunchSettings, start: Start,
                  on_interrupt: Callable[[Started], str]) -> dict[str, dict]:
  """Launcher.train for submitit launchers. on_interrupt(started): what becomes of the
  started jobs when the launching process is interrupted, said in the one last line."""
  done, _ = records_on_file(sweep.results_path)
  specs = job_specs(sweep, done)
  started: Started = []
  if specs:
    progress = _Progress(sweep)
    print(f"  {len(specs)} job{'s' * (len(specs) > 1)}, one per group with runs not on file; "
          f"logs in {log_dir(sweep, settings)}", flush=True)
    try:
      start(specs, sweep, settings, started, progress.tick)
    except KeyboardInterrupt:
      raise SweepInterrupted(f"interrupted: {progress.saved()}; {on_interrupt(started)}; run the "
                             "same command again to resume") from None
  done = _settled(sweep.results_path, started)
  hashes = [c.hash for group in sweep.groups for c in group]
  missing = sum(h not in done for h in hashes)
  if missing:
    failed = [line for line in (failure(job, spec) for job, spec in started) if line]
    raise InputError(f"{missing} of the {len(hashes)} runs are missing after the jobs ended: "
                     + ("; ".join(failed) or "no job reported a failure")
                     + "; run the same command again to train them")
  return done
