"""Result files: one JSON line per finished run, keyed by a hash of its config, and a
summary CSV of means with 95% confidence intervals over seeds."""
import contextlib
import csv
import errno
import fcntl
import glob
import hashlib
import json
import os
import secrets
import sys
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

from mtl_jax.errors import InputError
from mtl_jax.intervals import covers, interval, mean_ci95, pair_runs  # noqa: F401 (mean_ci95 re-exported)
from mtl_jax.metrics import METRICS
from mtl_jax.multilabel_metrics import MULTILABEL_METRICS

RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.csv"
CHECKPOINTS_DIR = "checkpoints"  # OUT_DIR/checkpoints: one folder per group in training
LOCK_FILE = ".lock"  # OUT_DIR/.lock: held by the one launch writing there, with its pid
# OUT_DIR/shards/*.jsonl: the results of sweeps run as jobs (mtl_jax/launchers), one file
# per job process, read together with results.jsonl (read_all_records).
SHARDS_DIR = "shards"
FIGURE_FORMATS = ("png", "svg")
DIFF_ARM = "joint_minus_separate"
SPLITS = ("val", "test")
# Bumped whenever training semantics change; a record of another version is never
# reused (sweep.run_pending retrains it and says how many it set aside).
# 2: combination step, epoch selection on the selected tasks with budgeted validation
#    labels, no-epoch-selected status, hashes of the relevant data fields only.
# 3: training sized in optimizer steps (TrainConfig.steps) and weight decay: every
#    config, and so every hash, gained the two fields.
RESULTS_VERSION = 3
# The multi-label metrics bumped nothing: they add to a record without changing what
# training does, so a record without them is still read (summary_gaps says so).
# Every metric of summary.csv, in its order: the per-task ones every record has, then
# the multi-label ones (records written before they existed lack them).
SUMMARY_METRICS = METRICS + tuple(MULTILABEL_METRICS)


def config_hash(config: dict) -> str:
  """Stable across runs and machines: sorted-key JSON of the config, sha1, 12 hex."""
  blob = json.dumps(config, sort_keys=True, separators=(",", ":"))
  return hashlib.sha1(blob.encode()).hexdigest()[:12]


def _ends_mid_line(f) -> bool:
  size = f.seek(0, os.SEEK_END)
  if size == 0:
    return False
  f.seek(size - 1)
  return f.read(1) != b"\n"


# A full disk or quota: said as such, with what is already safe on disk.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class WriteError(InputError):
  """Writing an output file failed (a full disk or quota, a folder turned read-only).
  Whoever knows how many runs are already safe on disk adds that (sweep, experiment)."""

  def __init__(self, what: str, error: OSError):
    self.what, self.error = what, error
    full = error.errno in DISK_FULL
    reason = "disk full" if full else f"cannot write ({error.strerror or error})"
    self.remedy = "make room" if full else "fix that"  # before running again
    super().__init__(f"{reason} while writing {what}")


def append_result(path: str, record: dict) -> None:
  """Appends one line and flushes it to disk, so a killed sweep keeps finished runs.
  A write that fails (a full disk) is undone, the file cut back to its old size, and
  raised as a WriteError."""
  try:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    # Unbuffered: a failed write leaves nothing in a buffer that closing would flush
    # after the cut.
    with open(path, "a+b", buffering=0) as f:
      size = f.seek(0, os.SEEK_END)
      try:
        # A line torn by a kill mid-write must not swallow this record: start a fresh line.
        torn = _ends_mid_line(f)
        _write_all(f.fileno(), (("\n" if torn else "") + json.dumps(record, sort_keys=True) + "\n").encode())
        os.fsync(f.fileno())
      except OSError:
        with contextlib.suppress(OSError):  # cutting frees space, so this works on a full disk
          os.ftruncate(f.fileno(), size)
        raise
  except OSError as e:
    raise WriteError(path, e) from e


def _write_all(fd: int, data: bytes) -> None:
  view = memoryview(data)
  while view:
    view = view[os.write(fd, view):]


def _lines(path: str) -> Iterator[tuple[int, bytes]]:
  """(line number from 1, bytes) of every non-blank line; read as bytes, so that a
  file that is not UTF-8 (garbage, a crash's leftovers) costs its lines, not a traceback."""
  try:
    with open(path, "rb") as f:
      for number, line in enumerate(f, 1):
        if line.strip():
          yield number, line
  except IsADirectoryError:
    raise InputError(f"{path} is a folder, not a file of results; move it away or use another --out_dir") from None
  except OSError as e:
    raise InputError(f"cannot read {path} ({e.strerror or e})") from None


def _json(line: bytes):
  try:
    return json.loads(line.decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError):
    return None  # torn by a kill mid-write, or not JSON at all


def read_results(path: str) -> list[dict]:
  """Every JSON object on file; a line cut short by a killed run (or anything else
  that is not a JSON object) is skipped, so that run is simply trained again."""
  if not os.path.exists(path):
    return []
  return [obj for obj in (_json(line) for _, line in _lines(path)) if isinstance(obj, dict)]


def read_records(path: str) -> tuple[list[dict], list[int]]:
  """(the records on file, the numbers of the lines that are not records). A record
  is a JSON object with a hash; one of this results version must also have what a
  summary reads (is_record). Older versions' records are returned, to be set aside by
  the caller, which can say how many."""
  if not os.path.exists(path):
    return [], []
  records, unusable = [], []
  for number, line in _lines(path):
    obj = _json(line)
    if isinstance(obj, dict) and isinstance(obj.get("hash"), str) and (
        obj.get("results_version") != RESULTS_VERSION or is_record(obj)):
      records.append(obj)
    else:
      unusable.append(number)
  return records, unusable


def has_per_task(metric: str) -> bool:
  """Whether a metric has a value per task (else one value per split, task 'mean')."""
  return metric in METRICS or MULTILABEL_METRICS[metric].per_task


def _is_entry(entry, metric: str, num_tasks: int) -> bool:
  """{"per_task": [T values], "mean": v} for a per-task metric, {"mean": v} otherwise."""
  if not isinstance(entry, dict) or "mean" not in entry:
    return False
  per_task = entry.get("per_task")
  return not has_per_task(metric) or (isinstance(per_task, list) and len(per_task) == num_tasks)


def shard_paths(results_path: str) -> list[str]:
  """The result shards beside results_path (SHARDS_DIR/*.jsonl), in name order."""
  shards = os.path.join(glob.escape(os.path.dirname(results_path)), SHARDS_DIR, "*.jsonl")
  return sorted(path for path in glob.glob(shards) if os.path.isfile(path))


def where_results_are(results_path: str) -> str:
  """results_path, and its shards if it has any: where a sweep's records are on file."""
  shards = shard_paths(results_path)
  if not shards:
    return results_path
  folder = os.path.join(os.path.dirname(results_path), SHARDS_DIR)
  shards_text = f"{len(shards)} shard{'s' * (len(shards) > 1)} in {folder}"
  return f"{results_path} and {shards_text}" if os.path.exists(results_path) else shards_text


def read_all_records(results_path: str) -> tuple[list[dict], dict[str, list[int]]]:
  """read_records of results_path and of every shard beside it, merged: (each hash's
  last record, reading results_path first; {path: numbers of its lines that are not
  records} for the files that have any). Every reader of a sweep's results goes
  through here, so resuming, --plot_only, the summary and predict see the runs that
  jobs wrote. A hash twice is the same config trained twice (a job retried, or
  relaunched while its first try still ran; or trained again by --save_params to keep
  its parameters, which only the later copy records): one copy counts, so no run is
  ever counted twice."""
  records, unusable = {}, {}
  for path in [results_path, *shard_paths(results_path)]:
    found, bad = read_records(path)
    for record in found:
      records[record["hash"]] = record
    if bad:
      unusable[path] = bad
  return list(records.values()), unusable


def _is_metrics(metrics, num_tasks: int) -> bool:
  """Every split has METRICS; a multi-label metric may be absent (an older record),
  but one that is there has its right shape."""
  return isinstance(metrics, dict) and all(
      isinstance(metrics.get(split), dict)
      and all(_is_entry(metrics[split].get(m), m, num_tasks) for m in METRICS)
      and all(_is_entry(metrics[split][m], m, num_tasks) for m in MULTILABEL_METRICS if m in metrics[split])
      for split in SPLITS)


def is_record(obj) -> bool:
  """Whether a JSON value has the fields a summary reads from a result record (its
  config's arm and seed, task names, parameter count, status and metrics), so that a
  hand-edited or foreign line is set aside rather than failing a summary later."""
  config = obj.get("config") if isinstance(obj, dict) else None
  tasks = obj.get("task_names") if isinstance(obj, dict) else None
  return (isinstance(config, dict) and isinstance(config.get("seed"), int)
          and isinstance(config.get("arm"), str) and isinstance(tasks, list)
          and isinstance(obj.get("param_count"), int) and isinstance(obj.get("status", "ok"), str)
          and _is_metrics(obj.get("metrics"), len(tasks)))


def line_numbers(numbers: Sequence[int], shown: int = 10) -> str:
  """'3, 7 and 9' or '3, 7, ... (12 lines)': short enough for one line."""
  if len(numbers) > shown:
    return ", ".join(map(str, numbers[:shown])) + f", ... ({len(numbers)} lines)"
  return ", ".join(map(str, numbers[:-1])) + (" and " if len(numbers) > 1 else "") + str(numbers[-1])


def write_csv(path: str, rows: Iterable[dict]) -> None:
  rows = list(rows)
  with open(path, "w", newline="") as f:
    # Every key of any row, in order of first appearance; rows without one leave it empty.
    writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
    writer.writeheader()
    writer.writerows(rows)


def write_atomically(path: str, write: Callable[[str], None]) -> None:
  """write(tmp) then rename: a reader never sees a half-written file. The temporary
  name is this process's own, so that two writers never share one; a failed write
  leaves no temporary file behind, and a failure to write is a WriteError."""
  # The temporary name keeps the extension, which matplotlib reads to pick the format.
  tmp = os.path.join(os.path.dirname(path),
                     f".partial-{os.getpid()}-{secrets.token_hex(4)}-{os.path.basename(path)}")
  try:
    write(tmp)
    os.replace(tmp, path)
  except OSError as e:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise WriteError(path, e) from e
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise


def diverged(record: dict) -> bool:
  """Whether a run is left out of means: it diverged, or no epoch improved on its
  initial parameters (status 'no_epoch_selected'), so it holds no trained model."""
  return record.get("status", "ok") != "ok"


def format_cell(row: dict) -> str:
  """'mean ± ci' of a summary row, saying how many seeds diverged and were left out."""
  text = f"{row['mean']:.3f} ± {row['ci95']:.3f}" if row["n"] > 1 else f"{row['mean']:.3f}"
  return text + (f" ({row['diverged']} div.)" if row.get("diverged") else "")


def _metric(record: dict, split: str, metric: str, task_index: Optional[int]) -> float:
  """NaN for a failed run, an undefined value, or a metric the record predates."""
  m = record["metrics"][split].get(metric)
  if diverged(record) or m is None:
    return np.nan
  value = m["mean"] if task_index is None else m["per_task"][task_index]
  return np.nan if value is None else value


def summary_gaps(records: Iterable[dict]) -> str:
  """'' when every record has every metric of the summary; else one line saying how
  many runs predate the multi-label metrics (their rows count n without them)."""
  old = sum(1 for r in records if any(m not in r["metrics"][split] for split in SPLITS for m in SUMMARY_METRICS))
  if not old:
    return ""
  return (f"  {old} run{'s' * (old > 1)} on file predate the multi-label metrics "
          f"({', '.join(MULTILABEL_METRICS)}): summary.csv's n for those leaves them out; "
          "train them anew into another --out_dir to have them")


def summarize_arms(records_by_arm: dict[str, list[dict]], task_names: Sequence[str],
                   keys: Optional[dict] = None) -> list[dict]:
  """Rows of mean and 95% CI per split, metric (SUMMARY_METRICS), task ('mean' = the
  mean over tasks; the only task of an example-based metric) and arm, over seeds or, on
  resampled splits, over splits (intervals.interval; the row's `interval` says which).
  With both a joint and a separate arm, also the difference joint - separate paired by
  split and seed (intervals.pair_runs). `keys` (e.g. the width of a sweep point) lead every row. Diverged runs (and runs with no selected epoch) are left out;
  `diverged` counts them (for the difference, the seeds where either arm failed)."""
  rows = []
  tasks = list(enumerate(task_names)) + [(None, "mean")]
  # What does not depend on the split, metric or task: the pairing, the runs behind each
  # arm (the difference's are the joint runs, paired), which failed, what the interval covers.
  runs = dict(records_by_arm)
  failed = {arm: np.array([diverged(r) for r in records]) for arm, records in records_by_arm.items()}
  paired = {"joint", "separate"} <= records_by_arm.keys()
  if paired:
    b = pair_runs(records_by_arm["joint"], records_by_arm["separate"])
    failed[DIFF_ARM] = failed["joint"] | failed["separate"][b]
    runs[DIFF_ARM] = records_by_arm["joint"]
  coverage = {arm: covers(records) for arm, records in runs.items()}
  for split in SPLITS:
    for metric in SUMMARY_METRICS:
      for index, task in (tasks if has_per_task(metric) else tasks[-1:]):
        values = {arm: np.array([_metric(r, split, metric, index) for r in records])
                  for arm, records in records_by_arm.items()}
        if paired:
          values[DIFF_ARM] = values["joint"] - values["separate"][b]
        for arm, v in values.items():
          mean, ci, n = interval(v, runs[arm])
          rows.append(dict(**(keys or {}), split=split, metric=metric, task=task, arm=arm,
                           mean=round(mean, 5), ci95=round(ci, 5), n=n,
                           diverged=int(failed[arm].sum()), interval=coverage[arm]))
  return rows


_STATISTICS = ("split", "metric", "task", "mean", "ci95", "n", "diverged")


def _diverged_note(rows: list[dict]) -> str:
  """'N diverged runs left out (arm: n, ...)', or '' when none diverged. Every row of
  one group of seeds (its sweep keys and arm) carries the same count."""
  per_group = {}
  for row in rows:
    if row["arm"] != DIFF_ARM and "diverged" in row:  # rows of other statistics have none
      group = tuple((k, v) for k, v in row.items() if k not in _STATISTICS)
      per_group[group] = row["diverged"]
  per_arm = {}
  for group, count in per_group.items():
    arm = dict(group)["arm"]
    per_arm[arm] = per_arm.get(arm, 0) + count
  total = sum(per_arm.values())
  return (f"{total} diverged run{'s' * (total > 1)} left out ("
          + ", ".join(f"{arm} {n}" for arm, n in per_arm.items() if n) + ")") if total else ""


def write_summary_and_plots(out_dir: str, name: str, rows: list[dict], title: str,
                            draw: Callable[[list[dict], str, str], None],
                            formats: Sequence[str] = FIGURE_FORMATS,
                            more_figures: Optional[dict[str, Callable]] = None) -> list[str]:
  """summary.csv from `rows`, then draw(rows, plot_path, title) once per format, every
  file written atomically. The figure gets the rows themselves, with real numbers, not
  the CSV's strings. `more_figures` (suffix -> draw) adds figures NAME_SUFFIX.EXT.
  Returns the paths written."""
  summary_path = os.path.join(out_dir, SUMMARY_FILE)
  write_atomically(summary_path, lambda p: write_csv(p, rows))
  note = _diverged_note(rows)
  title += f" | {note}" if note else ""
  figures = {name: draw, **{f"{name}_{suffix}": d for suffix, d in (more_figures or {}).items()}}
  plot_paths = []
  for figure, draw_figure in figures.items():
    for ext in formats:
      plot_paths.append(os.path.join(out_dir, f"{figure}.{ext}"))
      write_atomically(plot_paths[-1], lambda p: draw_figure(rows, p, title))
  return [summary_path, *plot_paths]


# ---- The output folder: created and checked before anything trains, and held by one
# launch at a time.

# Real paths of the out_dirs this process holds -> how many holds: an --experiment=all
# launch holds every folder up front, and each experiment's run holds its own again.
_held: dict[str, int] = {}


def _create(out_dir: str) -> list[str]:
  """Creates out_dir and its missing parents; returns those it created, deepest first.
  A folder that cannot be made is an InputError naming why, before anything trains."""
  created, path = [], os.path.abspath(out_dir)
  while not os.path.lexists(path):
    created.append(path)
    path = os.path.dirname(path)
  if not os.path.isdir(path):
    if not created:
      raise InputError(f"--out_dir {out_dir} exists and is not a directory")
    raise InputError(f"--out_dir {out_dir} cannot be created: {path} is a file, not a folder")
  try:
    os.makedirs(out_dir, exist_ok=True)
  except OSError as e:
    _remove_empty(created)
    raise InputError(f"--out_dir {out_dir} cannot be created ({e.strerror or e})") from None
  return created


def _remove_empty(folders: Sequence[str]) -> None:
  """Removes the folders a launch created, deepest first, where nothing was written."""
  for folder in folders:
    with contextlib.suppress(OSError):
      os.rmdir(folder)


def _holder(lock_path: str) -> str:
  """' (pid N)' of the launch holding the lock, when its file says."""
  with contextlib.suppress(OSError, ValueError):
    with open(lock_path) as f:
      return f" (pid {int(f.read().strip())})"
  return ""


def _lock(out_dir: str) -> int:
  """An open file descriptor of OUT_DIR/.lock, locked exclusively with this pid in it.
  Another holder is an InputError at once; so is a folder that cannot be written."""
  path = os.path.join(out_dir, LOCK_FILE)
  while True:
    try:
      fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise InputError(f"--out_dir {out_dir} cannot be written ({e.strerror or e})") from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      os.close(fd)
      raise InputError(f"another run{_holder(path)} is writing to --out_dir {out_dir}; wait for it "
                       "to finish, or give another --out_dir") from None
    except OSError as e:  # a file system without locks (ENOLCK): go on unguarded, saying so
      print(f"warning: --out_dir {out_dir} cannot be locked ({e.strerror or e}); a second launch "
            "into it at the same time would not be stopped", file=sys.stderr, flush=True)
      return fd
    # The holder before us may have removed the file after we opened it: then we hold
    # a lock on a file nobody else will open. Start again on the file now at the path.
    with contextlib.suppress(OSError):
      now, ours = os.stat(path), os.fstat(fd)
      if (now.st_dev, now.st_ino) == (ours.st_dev, ours.st_ino):
        break
    os.close(fd)
  try:
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
  except OSError as e:
    _unlock(fd, path)
    raise InputError(f"--out_dir {out_dir} cannot be written ({e.strerror or e})") from None
  return fd


def _unlock(fd: int, path: str) -> None:
  with contextlib.suppress(OSError):
    os.remove(path)  # removed while still locked; a waiting launch checks the inode (_lock)
  os.close(fd)


@contextlib.contextmanager
def hold_out_dir(out_dir: str) -> Iterator[None]:
  """Creates out_dir if needed and holds OUT_DIR/.lock (fcntl.flock) while the block
  runs, so that a second launch into the same folder stops at once, saying which pid
  holds it, instead of training the same runs and racing on the same files. The
  kernel drops the lock of a killed launch, so a stale lock file never blocks. Folders
  created here are removed again on the way out if nothing was written in them."""
  created = _create(out_dir)
  key = os.path.realpath(out_dir)
  if key in _held:
    _held[key] += 1
    try:
      yield
    finally:
      _held[key] -= 1
    return
  try:
    fd = _lock(out_dir)
  except InputError:
    _remove_empty(created)
    raise
  _held[key] = 1
  try:
    yield
  finally:
    del _held[key]
    _unlock(fd, os.path.join(out_dir, LOCK_FILE))
    _remove_empty(created)


def check_outputs(out_dir: str, files: Sequence[str], folders: Sequence[str] = ()) -> None:
  """Before anything trains: each output that exists already is of the right kind
  (results.jsonl, summary.csv and the figures files, the checkpoints a folder), and
  results.jsonl can be appended to. Otherwise one InputError saying what to move."""
  for name in files:
    path = os.path.join(out_dir, name)
    if os.path.isdir(path):
      raise InputError(f"{path} is a folder, where this run writes a file; move it away or give "
                       "another --out_dir")
    if os.path.lexists(path) and not os.path.isfile(path):  # a broken link, a pipe (reads would hang)
      raise InputError(f"{path} is not a regular file; move it away or give another --out_dir")
  for name in folders:
    path = os.path.join(out_dir, name)
    if os.path.lexists(path) and not os.path.isdir(path):
      raise InputError(f"{path} is a file, where this run keeps a folder; move it away or give "
                       "another --out_dir")
  results = os.path.join(out_dir, RESULTS_FILE)
  if RESULTS_FILE in files and os.path.lexists(results):
    try:
      open(results, "ab").close()
    except OSError as e:
      raise InputError(f"cannot append to {results} ({e.strerror or e})") from None


def output_files(name: str, more_figures: Iterable[str] = (),
                 formats: Sequence[str] = FIGURE_FORMATS) -> list[str]:
  """The files write_summary_and_plots and the sweep write in an out_dir."""
  figures = [name, *(f"{name}_{suffix}" for suffix in more_figures)]
  return [RESULTS_FILE, SUMMARY_FILE, *(f"{figure}.{ext}" for figure in figures for ext in formats)]
