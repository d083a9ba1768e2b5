"""What an experiment is, and the one pipeline that runs any of them.

An experiment module (joint_vs_separate.py, ...) defines its Settings, how flags
become them, the grid of runs they ask for, how the finished records become summary
rows, its printed table, its figure, its presets and what it requires of the data
(`requires`), and exports them as one `Experiment`; experiments/registry.py lists them. Nothing here reads flags, so an
experiment runs from Python with a Settings object alone:

  from experiments import joint_vs_separate
  rows = joint_vs_separate.EXPERIMENT.run(joint_vs_separate.Settings(data=..., ...))
"""
import contextlib
import dataclasses
import os
import time
from typing import Callable, Hashable, Iterable, Iterator, Optional

import numpy as np

from mtl_jax import thresholds
from mtl_jax.checkpoints import CheckpointSettings
from mtl_jax.data.columns import describe_features
from mtl_jax.devices import writes_files
from mtl_jax.data.datasets import DataConfig, MultiTaskData, load_dataset, read_kind, task_names
from mtl_jax.data.resampling import Resampling, describe_splits
from mtl_jax.errors import InputError
from mtl_jax.launchers.base import LaunchSettings, Sweep
from mtl_jax.launchers.registry import LAUNCHERS
from mtl_jax.models import EncoderSpec
from mtl_jax.results import (CHECKPOINTS_DIR, RESULTS_FILE, SHARDS_DIR, WriteError, check_outputs,
                             hold_out_dir, output_files, summary_gaps, where_results_are,
                             write_summary_and_plots)
from mtl_jax.runs import RunConfig
from mtl_jax.saved_params import PARAMS_DIR
from mtl_jax.sweep import run_pending
from mtl_jax.train import TrainConfig

# Every experiment has exactly these presets (launch.py --preset): quick runs all of
# each in about 30 minutes or less of a 2-core CPU, full is larger, for a GPU or a long run.
PRESET_NAMES = ("quick", "full")
# The driving-scenes sizes that most experiments' presets share.
QUICK_SCENES = dict(num_train=3000, epochs=8)
FULL_SCENES = dict(num_train=20000, num_val=2000, num_test=10000, epochs=20, seeds=5)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
  """What every experiment needs; an experiment with knobs of its own subclasses it."""
  data: DataConfig
  encoder: EncoderSpec
  train: TrainConfig
  seeds: int = 3  # seeds 0..seeds-1 of every group
  # The splits every group runs on (resampling.plan: --folds, --split_seeds): the data's
  # own, or K folds, or N random splits, each with every seed.
  resamplings: tuple[Resampling, ...] = (Resampling(),)
  arch: str = "hps"  # how the joint arms share (RunConfig.arch)
  arch_options: tuple[tuple[str, float], ...] = ()  # its sizes off their defaults (RunConfig)
  out_dir: Optional[str] = None  # None: runs/NAME
  plot_only: bool = False  # train nothing: summarise the runs already in out_dir
  checkpoint_every: int = 0  # epochs between checkpoints (0: never)
  resume: bool = False  # continue groups from their latest checkpoint
  save_params: bool = False  # keep each run's selected parameters in out_dir/params (predict)
  threshold: thresholds.Rule = thresholds.DEFAULT_PROBABILITY  # decisions (RunConfig.threshold)
  launch: LaunchSettings = LaunchSettings()  # where the groups train (mtl_jax/launchers)

  def __post_init__(self):
    if self.save_params and self.plot_only:
      raise InputError("--save_params keeps the parameters that training selects, and --plot_only "
                       "trains nothing; give one of them")

  def seed_configs(self, experiment: str, arm: str, data: DataConfig,
                   encoder: Optional[EncoderSpec] = None, train: Optional[TrainConfig] = None,
                   pretrain: Optional[DataConfig] = None) -> list[RunConfig]:
    """One group: the same run for every split and seed, with these settings' encoder
    and training unless a sweep point gives its own."""
    return [RunConfig(experiment, arm, seed, dataclasses.replace(data, resampling=resampling),
                      encoder or self.encoder, train or self.train, pretrain=pretrain, arch=self.arch,
                      arch_options=self.arch_options, threshold=self.threshold)
            for resampling in self.resamplings for seed in range(self.seeds)]

  @property
  def resampled(self) -> bool:
    return any(not r.is_own for r in self.resamplings)


# An experiment's grid: groups of configs identical but for their seeds, by the
# experiment's own key (e.g. (width, arm)). A group may be empty: a point with
# nothing to train (missing_labels when dropping leaves no example).
Groups = dict[Hashable, list[RunConfig]]


@dataclasses.dataclass(frozen=True)
class Grid:
  groups: Groups
  headline: str  # printed before training: what the grid holds


@dataclasses.dataclass(frozen=True)
class Summary:
  rows: list[dict]  # summary.csv's rows, with real numbers; also what draw receives
  title: str  # the figure's title


# What an experiment needs of its settings: settings -> why they cannot run it (one
# line, naming the flag to change), or None. Experiment.run refuses settings that fail
# one before anything is written, and launch.py --experiment=all skips the experiment,
# saying why, before anything trains. Built by the functions below.
Requirement = Callable[[Settings], Optional[str]]


def needs_dataset(name: str, why: str) -> Requirement:
  """Only --dataset=NAME will do (why: what that data has that no other has)."""
  return lambda s: None if s.data.dataset == name else f"{why}; got --dataset={s.data.dataset}"


def needs_named_tasks(*fields: str) -> Requirement:
  """The Settings fields `fields` name tasks of the data (checked here for read data,
  whose tasks are its columns; the grid checks the driving tasks' names)."""
  def unmet(s: Settings) -> Optional[str]:
    if s.data.dataset == "related":
      return "needs named tasks; --dataset=related has none to choose from"
    if not read_kind(s.data.dataset):
      return None
    tasks = task_names(s.data)
    wrong = [f for f in fields if getattr(s, f) not in tasks]
    if not wrong:
      return None
    return (f"--{wrong[0]}={getattr(s, wrong[0])} is not a task of {s.data.dataset}; "
            f"its tasks are {', '.join(tasks)}")
  return unmet


def own_encoder(s: Settings) -> tuple[str, ...]:
  return (s.encoder.kind,)


def needs_images_for_cnn(encoders: Callable[[Settings], Iterable[str]] = own_encoder) -> Requirement:
  """The cnn encoder, if any of `encoders(settings)` is one, gets images to look at."""
  def unmet(s: Settings) -> Optional[str]:
    if "cnn" in encoders(s) and not _images(s.data):
      return (f"the cnn encoder needs images; --dataset={s.data.dataset} holds feature vectors "
              "(use --encoder=mlp)")
    return None
  return unmet


# Whether a dataset's inputs are images, by dataset or reader; npz files may be either.
_IMAGES = {"driving": True, "related": False, "csv": False, "arff": False, "tfds": True}


def _images(data: DataConfig) -> bool:
  images = _IMAGES.get(read_kind(data.dataset) or data.dataset)
  return images if images is not None else len(load_dataset(data).input_shape) == 3


@dataclasses.dataclass(frozen=True)
class Experiment:
  """One experiment's parts; `run` chains them: settings -> grid -> training of what
  results.jsonl lacks -> summary rows -> summary.csv, figure and printed table."""
  name: str  # --experiment's value, the default output folder and the figure's file name
  summary: str  # one line: the claim it tests
  settings_from_flags: Callable[[], Settings]  # the parsed flags as this experiment's Settings
  # Settings -> the runs they ask for. Bad settings raise InputError here, before
  # anything is written.
  grid: Callable[[Settings], Grid]
  # (settings, grid groups, every record by hash) -> summary rows and the figure's title.
  summarize: Callable[[Settings, Groups, dict[str, dict]], Summary]
  table: Callable[[Settings, list[dict]], str]  # (settings, rows) -> the printed table
  draw: Callable[[list[dict], str, str], None]  # (rows, out_path, title) -> the figure
  presets: dict[str, dict]  # preset name -> flag overrides (flag name -> value)
  # What it needs of the data and settings (Requirement): which data it applies to.
  requires: tuple[Requirement, ...]
  # More figures from the same rows: suffix -> draw, written as NAME_SUFFIX.png (.svg).
  more_figures: dict[str, Callable[[list[dict], str, str], None]] = dataclasses.field(default_factory=dict)
  # Whether its summary pairs and averages runs by split as well as by seed, so that it
  # takes --folds and --split_seeds (results.summarize_arms does).
  resamples: bool = False

  def __post_init__(self):
    if set(self.presets) != set(PRESET_NAMES):
      raise ValueError(f"{self.name}: presets must be exactly {PRESET_NAMES}; got {list(self.presets)}")

  def unmet(self, settings: Settings) -> Optional[str]:
    """Why these settings cannot run this experiment (its first unmet requirement), or
    None. Reading the data to decide may raise InputError (an unreadable file)."""
    if settings.resampled and not self.resamples:
      return ("--folds and --split_seeds apply to joint_vs_separate and multilabel_real; this "
              "experiment's intervals are over seeds on the data's own split")
    return next((why for why in (need(settings) for need in self.requires) if why), None)

  def check(self, settings: Settings) -> Grid:
    """The grid of these settings, once they are known to meet the requirements."""
    why = self.unmet(settings)
    if why:
      raise InputError(f"{self.name}: {why}")
    return self.grid(settings)

  def run(self, settings: Settings, grid: Optional[Grid] = None) -> list[dict]:
    """Trains the grid's runs that out_dir/results.jsonl lacks (none with plot_only),
    writes summary.csv and the figure from every run of the grid, prints the table, and
    returns the summary rows. `grid`: this settings' grid (self.check), if made already."""
    grid = grid or self.check(settings)
    with self.claim(settings) as out:
      start = time.perf_counter()
      print(grid.headline, flush=True)
      results_path, done = train_pending(settings, grid.groups, out, self.name)
      gaps = summary_gaps(done[h] for h in records_in(grid.groups, done))
      if gaps:
        print(gaps, flush=True)
      summary = self.summarize(settings, grid.groups, done)
      try:
        written = write_summary_and_plots(out, self.name, summary.rows, summary.title, self.draw,
                                          more_figures=self.more_figures) if writes_files() else []
      except WriteError as e:  # every run is on file; only the summary and figures are missing
        raise InputError(f"{e}; all {len(records_in(grid.groups, done))} runs are saved in "
                         f"{results_path}; {e.remedy} and run with --plot_only to write the rest") from None
    print(self.table(settings, summary.rows))
    wrote = f"wrote {results_path}, {', '.join(written)}" if written else "process 0 writes the results"
    print(f"\n{wrote} ({time.perf_counter() - start:.0f}s)")
    return summary.rows

  @contextlib.contextmanager
  def claim(self, settings: Settings) -> Iterator[str]:
    """The output folder, created, locked against other launches and checked (nothing
    of the wrong kind where this run writes) before anything trains; removed again if
    the block ends before anything was written in it. Only the process that writes
    (devices.writes_files: process 0 of a multi-process run) claims it."""
    out = output_dir(settings, self.name)
    if not writes_files():
      yield out
      return
    with hold_out_dir(out):
      check_outputs(out, output_files(self.name, self.more_figures), output_folders(settings))
      yield out

  def main(self, argv: list[str]) -> None:
    """The command line's entry (for cli.run): the parsed flags' settings, then run."""
    del argv
    self.run(self.settings_from_flags())


def output_dir(settings: Settings, name: str) -> str:
  """The output folder: runs/NAME unless the settings give one."""
  return settings.out_dir or f"runs/{name}"


def checkpoint_folders(settings: Settings) -> tuple[str, ...]:
  """The folders of OUT_DIR these settings write in: checkpoints, if they checkpoint."""
  return (CHECKPOINTS_DIR,) if settings.checkpoint_every or settings.resume else ()


def output_folders(settings: Settings) -> tuple[str, ...]:
  """Every folder of OUT_DIR a launch reads or writes: checkpoints, the result shards of
  jobs (read by every launch, so checked by every launch), and --save_params' folder."""
  return (*checkpoint_folders(settings), SHARDS_DIR, *((PARAMS_DIR,) if settings.save_params else ()))


def records_in(groups: Groups, done: dict[str, dict]) -> set[str]:
  """The hashes of the grid's runs that are on file."""
  return {c.hash for group in groups.values() for c in group if c.hash in done}


def generated_train_size(data: DataConfig) -> Optional[int]:
  """num_train for generated data; None for read data, whose size is known once read."""
  return None if read_kind(data.dataset) else data.num_train


def train_pending(settings: Settings, groups: Groups, out: str, name: str
                  ) -> tuple[str, dict[str, dict]]:
  """Trains what OUT_DIR lacks with the settings' launcher (nothing with plot_only), with
  their checkpoint choices; returns where the records are (results.jsonl, shards) and
  every record by hash."""
  results_path = os.path.join(out, RESULTS_FILE)
  checkpointing = (CheckpointSettings(os.path.join(out, CHECKPOINTS_DIR), settings.checkpoint_every,
                                      settings.resume)
                   if checkpoint_folders(settings) else None)
  trained = [runs for group in groups.values() for runs in by_data(group)]
  save_params_in = out if settings.save_params else None
  if settings.plot_only:
    done = run_pending(trained, load_data_logged, results_path, train_missing=False)
  else:
    sweep = Sweep(trained, results_path, checkpointing, load_data_logged, name, save_params_in)
    done = LAUNCHERS[settings.launch.name].train(sweep, settings.launch)
  others = len(done) - len({c.hash for group in trained for c in group})
  if others:
    print(f"  {results_path} also holds {others} runs of other settings; they are not in "
          "this summary (use another --out_dir to keep studies apart)", flush=True)
  return where_results_are(results_path), done


def runs_per_arm(settings: Settings) -> str:
  """'3 seeds', or '5 folds x 3 seeds': what every arm of the grid trains."""
  seeds = f"{settings.seeds} seed{'s' * (settings.seeds != 1)}"
  return f"{describe_splits(settings.resamplings)} x {seeds}" if settings.resampled else seeds


def by_data(group: list[RunConfig]) -> list[list[RunConfig]]:
  """A group's runs as groups that train together: those on the same data (one per
  split when the settings resample), each identical but for its seeds."""
  on = {}
  for config in group:
    on.setdefault(config.data, []).append(config)
  return list(on.values())


def load_data_logged(config: DataConfig) -> MultiTaskData:
  """load_dataset, saying what it generated and how long it took."""
  start = time.perf_counter()
  data = load_dataset(config)
  tasks = ", ".join(data.task_names[:6]) + (f" and {len(data.task_names) - 6} more"
                                            if len(data.task_names) > 6 else "")
  print(f"  dataset {data.name} {data.input_shape}: train/val/test {len(data.train.y)}/"
        f"{len(data.val.y)}/{len(data.test.y)}, tasks {tasks}, {np.mean(data.train.y == -1):.0%} "
        f"of train labels missing ({time.perf_counter() - start:.1f}s)", flush=True)
  for line in (*data.notes, *([describe_features(data.feature_names)] if data.feature_names else ())):
    print(f"    {line}", flush=True)
  return data


def records_of(group: list[RunConfig], done: dict[str, dict]) -> list[dict]:
  """The finished records of one group, in seed order."""
  return [done[c.hash] for c in group]
