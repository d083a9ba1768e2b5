"""Result files: one JSON line per finished run, keyed by a hash of its config, and a
summary CSV of means with 95% confidence intervals over seeds."""
import csv
import hashlib
import json
import math
import os
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
from scipy import stats

from mtl_jax.errors import InputError
from mtl_jax.metrics import METRICS

RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.csv"
DIFF_ARM = "joint_minus_separate"
SPLITS = ("val", "test")
# Bumped whenever training semantics change; a record of another version is never
# reused (sweep.run_pending retrains it and says how many it set aside).
# 2: combination step, epoch selection on the selected tasks with budgeted validation
#    labels, no-epoch-selected status, hashes of the relevant data fields only.
RESULTS_VERSION = 2


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


def append_result(path: str, record: dict) -> None:
  """Appends one line and flushes it to disk, so a killed sweep keeps finished runs."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "a+b") as f:
    # A line torn by a kill mid-write must not swallow this record: start a fresh line.
    torn = _ends_mid_line(f)
    f.write((("\n" if torn else "") + json.dumps(record, sort_keys=True) + "\n").encode())
    f.flush()
    os.fsync(f.fileno())


def read_results(path: str) -> list[dict]:
  """Every complete record; a line cut short by a killed run is skipped, so that run
  is simply trained again."""
  if not os.path.exists(path):
    return []
  records = []
  with open(path) as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return records


def mean_ci95(values: Sequence[float]) -> tuple[float, float, int]:
  """Mean, half-width of the two-sided 95% Student-t interval, and n (NaNs dropped)."""
  values = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
  n = values.size
  if n == 0:
    return float("nan"), float("nan"), 0
  if n == 1:
    return float(values[0]), float("nan"), 1
  sem = values.std(ddof=1) / math.sqrt(n)
  return float(values.mean()), float(stats.t.ppf(0.975, n - 1) * sem), n


def write_csv(path: str, rows: Iterable[dict]) -> None:
  rows = list(rows)
  with open(path, "w", newline="") as f:
    # Every key of any row, in order of first appearance; rows without one leave it empty.
    writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
    writer.writeheader()
    writer.writerows(rows)


def write_atomically(path: str, write: Callable[[str], None]) -> None:
  """write(tmp) then rename: a reader never sees a half-written file."""
  # The temporary name keeps the extension, which matplotlib reads to pick the format.
  tmp = os.path.join(os.path.dirname(path), ".partial-" + os.path.basename(path))
  write(tmp)
  os.replace(tmp, path)


def diverged(record: dict) -> bool:
  """Whether a run is left out of means: it diverged, or no epoch improved on its
  initial parameters (status 'no_epoch_selected'), so it holds no trained model."""
  return record.get("status", "ok") != "ok"


def seed_of(record: dict) -> int:
  return record["config"]["seed"]


def pair_by_seed(a: list[dict], b: list[dict]) -> np.ndarray:
  """Indices into `b` of the runs with the seeds of `a`, in `a`'s order: the same
  seed means the same data order and initialisation stream, so runs pair by seed,
  never by position. Arms whose seeds differ cannot be paired (InputError)."""
  seeds_a, seeds_b = [seed_of(r) for r in a], [seed_of(r) for r in b]
  if sorted(seeds_a) != sorted(seeds_b) or len(set(seeds_a)) != len(seeds_a):
    raise InputError(f"cannot pair arms by seed: seeds {sorted(seeds_a)} against {sorted(seeds_b)}")
  position_b = {seed: i for i, seed in enumerate(seeds_b)}
  return np.array([position_b[seed] for seed in seeds_a], int)


def format_cell(row: dict) -> str:
  """'mean ± ci' of a summary row, saying how many seeds diverged and were left out."""
  text = f"{row['mean']:.3f} ± {row['ci95']:.3f}" if row["n"] > 1 else f"{row['mean']:.3f}"
  return text + (f" ({row['diverged']} div.)" if row.get("diverged") else "")


def _metric(record: dict, split: str, metric: str, task_index: Optional[int]) -> float:
  if diverged(record):
    return np.nan
  m = record["metrics"][split][metric]
  value = m["mean"] if task_index is None else m["per_task"][task_index]
  return np.nan if value is None else value


def summarize_arms(records_by_arm: dict[str, list[dict]], task_names: Sequence[str],
                   keys: Optional[dict] = None) -> list[dict]:
  """Rows of mean and 95% CI over seeds per split, metric, task ('mean' = the mean over
  tasks) and arm. With both a joint and a separate arm, also the difference joint -
  separate paired by seed (pair_by_seed). `keys` (e.g. the width of a sweep point)
  lead every row. Diverged runs (and runs with no selected epoch) are left out;
  `diverged` counts them (for the difference, the seeds where either arm failed)."""
  rows = []
  tasks = list(enumerate(task_names)) + [(None, "mean")]
  for split in SPLITS:
    for metric in METRICS:
      for index, task in tasks:
        values = {arm: np.array([_metric(r, split, metric, index) for r in records])
                  for arm, records in records_by_arm.items()}
        failed = {arm: np.array([diverged(r) for r in records]) for arm, records in records_by_arm.items()}
        if {"joint", "separate"} <= values.keys():
          b = pair_by_seed(records_by_arm["joint"], records_by_arm["separate"])
          values[DIFF_ARM] = values["joint"] - values["separate"][b]
          failed[DIFF_ARM] = failed["joint"] | failed["separate"][b]
        for arm, v in values.items():
          mean, ci, n = mean_ci95(v)
          rows.append(dict(**(keys or {}), split=split, metric=metric, task=task, arm=arm,
                           mean=round(mean, 5), ci95=round(ci, 5), n=n,
                           diverged=int(failed[arm].sum())))
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
                            formats: Sequence[str] = ("png", "svg"),
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
