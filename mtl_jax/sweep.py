"""A grid of runs against results.jsonl: runs already recorded there (matched by the
hash of their config) are reused; the rest are trained, seeds of a group together, and
appended as soon as their group finishes, so a killed sweep resumes where it stopped."""
import dataclasses
import functools
import os
import sys
import time
from typing import Callable, Optional, Sequence

import numpy as np

from mtl_jax.data.datasets import GENERATED, DataConfig, MultiTaskData
from mtl_jax.errors import InputError
from mtl_jax import saved_params, stopping
from mtl_jax.methods import DEFAULT_METHOD
from mtl_jax.checkpoints import CheckpointSettings, EpochCheckpoints
from mtl_jax.devices import same_in_every_process, writes_files
from mtl_jax.results import (RESULTS_VERSION, WriteError, append_result, config_hash, line_numbers,
                             read_all_records)
from mtl_jax.runs import RunConfig, run_arm
from mtl_jax.train import planned_epochs


class SweepInterrupted(Exception):
  """Ctrl-C during a sweep; the message says how many runs are saved and how to resume."""


def describe(config: RunConfig) -> str:
  """One line saying what sets this group apart, for progress output."""
  e, d = config.encoder, config.data
  arm = config.arm + (f" {config.arch}" if config.arch not in ("hps", config.arm) else "")
  arm += f" {config.train.method}" if config.train.method != DEFAULT_METHOD else ""
  parts = [f"{arm} {e.kind} w{e.width} d{e.depth}" + (f" {e.dtype}" if e.dtype != "float32" else "")
           + (f" dropout {e.dropout:g}" if e.dropout else ""),
           f"{d.missing_frac:.0%} missing" if d.missing_frac or d.dataset in GENERATED else "own missing labels"]
  if d.label_handling != "mask":
    parts[-1] += f" ({d.label_handling.replace('_', ' ')})"
  if d.dataset == "related":
    parts.append(f"rho {d.relatedness.rho:g}")
  if not d.resampling.is_own:
    parts.append(d.resampling.describe())
  if d.tasks:
    parts.append(f"{len(d.tasks)} task{'s' * (len(d.tasks) > 1)}")
  parts += [f"{task} {count} labels" for task, count in d.label_budget]
  if config.pretrain:
    parts.append(f"pretrained on {','.join(config.pretrain.tasks) or config.pretrain.dataset}")
  return ", ".join(parts)


def run_pending(groups: Sequence[Sequence[RunConfig]],
                load_data: Callable[[DataConfig], MultiTaskData],
                results_path: str, train_missing: bool = True,
                checkpointing: Optional[CheckpointSettings] = None,
                append_to: Optional[str] = None, save_params_in: Optional[str] = None) -> dict[str, dict]:
  """`groups`: lists of configs identical but for their seeds. Returns every record of
  results_path and its shards (old and new) by hash. Data is loaded only for groups that
  train, and once for consecutive groups on the same data; with train_missing=False a
  missing run is an error instead. `checkpointing` (its directory the root for all
  groups) saves each group's training every few epochs, in a folder named by the runs it
  trains. New records go to `append_to` (a job's own shard), else to results_path.
  `save_params_in` (the output folder, --save_params) saves each run's parameters there;
  a finished run on file without them is trained again to save them."""
  done, stale = records_on_file(results_path)
  if save_params_in:
    done = _keeping_saved_params(done, save_params_in, {c.hash for group in groups for c in group})
  missing = sum(c.hash not in done for group in groups for c in group)
  if missing and not train_missing:
    total = sum(len(group) for group in groups)
    raise InputError(f"{missing} of the {total} runs these flags ask for are not in {results_path}"
                     f"{' (at this results version)' if stale else ''}; run without --plot_only first")
  # Every process of a multi-process run trains the same groups, or they would wait on
  # each other forever: they must read the same results file.
  same_in_every_process([c.hash for group in groups for c in group if c.hash not in done],
                        f"the processes of this run see different runs finished in {results_path}: "
                        "--out_dir must be on a filesystem that every process shares")
  load_data = functools.lru_cache(maxsize=1)(load_data)

  def saved() -> str:
    # Counted from the file, not only from `done`: a signal can land between a line's
    # fsync and its entry in `done`.
    on_file = {r.get("hash") for r in read_all_records(results_path)[0]
               if r.get("results_version") == RESULTS_VERSION} | set(done)
    return (f"{sum(c.hash in on_file for group in groups for c in group)} of the "
            f"{sum(len(group) for group in groups)} runs are saved in {results_path}")
  try:
    _train_groups(groups, load_data, results_path, done, train_missing, checkpointing,
                  append_to or results_path, save_params_in)
  except KeyboardInterrupt:
    raise SweepInterrupted(f"interrupted: {saved()}; run the same command again to resume") from None
  except WriteError as e:  # a full disk: what is safe, and that the same command resumes
    raise InputError(f"{e}; {saved()}; {e.remedy} and run the same command again to resume") from None
  return done


def records_on_file(results_path: str) -> tuple[dict[str, dict], int]:
  """(every record of this results version in results_path and its shards, by hash;
  how many of older versions are set aside, never reused, which it says on stdout)."""
  records = _read_records_saying_what_is_set_aside(results_path)
  current = [r for r in records if r.get("results_version") == RESULTS_VERSION]
  if len(records) > len(current):
    print(f"  {results_path}: {len(records) - len(current)} runs from an older version of the "
          f"training code are set aside, not reused (results version {RESULTS_VERSION} changed "
          "what a run computes); runs these flags need are trained again", flush=True)
  return {r["hash"]: r for r in current}, len(records) - len(current)


def _read_records_saying_what_is_set_aside(results_path: str) -> list[dict]:
  """The records on file (results_path and its shards). Lines that are not records
  (torn by a kill, not UTF-8, hand edited, another program's) are set aside, not fatal:
  the file is the only copy of every finished run, and refusing it would stop every
  later launch until someone edits it by hand, while a set-aside line costs at most its
  run, trained again. Said on stderr with the line numbers, which stay on file untouched."""
  records, unusable = read_all_records(results_path)
  for path, lines in unusable.items():
    print(f"warning: {path}: line{'s' * (len(lines) > 1)} {line_numbers(lines)} "
          f"{'are' if len(lines) > 1 else 'is'} not a result record (torn by a kill, or edited); "
          "set aside, and any run these flags need from them is trained again", file=sys.stderr,
          flush=True)
  return records


def _keeping_saved_params(done: dict[str, dict], out_dir: str, wanted: set[str]) -> dict[str, dict]:
  """`done` without the runs these flags want whose parameters were not saved: they
  are trained again (the same result: seeds fix every random choice) to save them."""
  unsaved = {h for h in wanted & set(done) if not saved_params.has_saved_params(done[h], out_dir)}
  if unsaved:
    print(f"  {len(unsaved)} finished run{'s' * (len(unsaved) > 1)} on file have no saved "
          "parameters; trained again to save them (--save_params)", flush=True)
  return {h: r for h, r in done.items() if h not in unsaved}


def _group_checkpoints(todo: Sequence[RunConfig], checkpointing: Optional[CheckpointSettings]
                       ) -> Optional[EpochCheckpoints]:
  if checkpointing is None:
    return None
  key = config_hash([c.hash for c in todo])
  return EpochCheckpoints(dataclasses.replace(
      checkpointing, directory=os.path.join(checkpointing.directory, key)))


def _train_groups(groups, load_data, results_path: str, done: dict, train_missing: bool,
                  checkpointing: Optional[CheckpointSettings], append_to: str,
                  save_params_in: Optional[str] = None) -> None:
  for i, group in enumerate(groups, 1):
    stopping.raise_if_requested()
    name = f"[{i}/{len(groups)}] {describe(group[0])}"
    todo = [c for c in group if c.hash not in done]
    if not todo:
      if train_missing:
        print(f"  {name}: all {len(group)} seeds already in {results_path}; skipped", flush=True)
      continue
    start = time.perf_counter()
    data = load_data(group[0].data)
    epochs = planned_epochs(group[0].train, len(data.train.y))
    if group[0].train.steps:
      print(f"  {name}: {group[0].train.steps} optimizer steps, {epochs} epochs of "
            f"{len(data.train.y) // group[0].train.batch_size} batches of {group[0].train.batch_size}", flush=True)

    def log(epoch: int, loss_S: np.ndarray, phase: str = "epoch"):
      stopping.raise_if_requested()  # called after every chunk of epochs, shown or not
      if not _shown(epoch, epochs):
        return
      finite = loss_S[np.isfinite(loss_S)]
      loss = f"train J {finite.mean():.4f} (mean of {finite.size} seeds)" if finite.size else "train J -"
      failed = f", {loss_S.size - finite.size} diverged" if finite.size < loss_S.size else ""
      print(f"  {name}: {phase} {epoch:>3}/{epochs}  {loss}{failed}  "
            f"{time.perf_counter() - start:6.1f}s", flush=True)

    checkpoints = _group_checkpoints(todo, checkpointing)
    records = run_arm(todo, data, log, checkpoints, save_params_in)
    for record in records:
      if writes_files():  # one copy of each record, however many processes trained it
        append_result(append_to, record)
      done[record["hash"]] = record
    if checkpoints:
      checkpoints.close(finished=True)
    for record in records:
      if record["status"] == "diverged":
        print(f"  {name}: seed {record['config']['seed']} diverged at step "
              f"{record['diverged_at_step']} (loss NaN, inf or exploded); recorded, left out of the means",
              flush=True)
      elif record["status"] == "no_epoch_selected":
        print(f"  {name}: seed {record['config']['seed']}: no epoch improved the validation loss of "
              "the initial parameters (NaN or flat); recorded, left out of the means", flush=True)
    _say_if_still_improving(name, records)
    r = records[0]
    print(f"  {name}: {r['param_count']:,} parameters per seed, "
          f"{r['train_steps'] / r['train_seconds_all_seeds']:.1f} steps/s for all seeds together",
          flush=True)


# Progress lines per group at most: read data trained in steps can run hundreds of
# short epochs, and a line for each would bury the rest of the output.
MAX_PROGRESS_LINES = 20


def _shown(epoch: int, epochs: int) -> bool:
  """Every epoch of a short run; of a long one, every k-th and the last (about
  MAX_PROGRESS_LINES lines)."""
  every = -(-epochs // MAX_PROGRESS_LINES)
  return epoch % every == 0 or epoch == epochs or epoch == 1


def _say_if_still_improving(name: str, records: list[dict]) -> None:
  """One line when most seeds (and tasks) selected their last epoch: the validation
  loss was still falling, so the comparison is of models that had not finished."""
  if records[0]["config"]["train"]["select_epoch"] != "best_val":
    return
  selected = np.concatenate([np.ravel(r["selected_epoch"]) for r in records])
  last = np.concatenate([np.full(np.size(r["selected_epoch"]), r["epochs_trained"]) for r in records])
  if np.mean(selected == last) > 0.5:
    print(f"  {name}: {np.sum(selected == last)} of {selected.size} models selected their last "
          "epoch: still improving, more --epochs may help", flush=True)
