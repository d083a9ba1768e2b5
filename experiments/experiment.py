"""What an experiment is, and the one pipeline that runs any of them.

An experiment module (joint_vs_separate.py, ...) defines its Settings, how flags
become them, the grid of runs they ask for, how the finished records become summary
rows, its printed table, its figure and its presets, and exports them as one
`Experiment`; experiments/registry.py lists them. Nothing here reads flags, so an
experiment runs from Python with a Settings object alone:

  from experiments import joint_vs_separate
  rows = joint_vs_separate.EXPERIMENT.run(joint_vs_separate.Settings(data=..., ...))
"""
import dataclasses
import os
import time
from typing import Callable, Hashable, Optional

import numpy as np

from mtl_jax.checkpoints import CheckpointSettings
from mtl_jax.data.datasets import DataConfig, MultiTaskData, load_dataset, read_kind
from mtl_jax.errors import InputError
from mtl_jax.models import EncoderSpec
from mtl_jax.results import RESULTS_FILE, write_summary_and_plots
from mtl_jax.runs import RunConfig
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
  arch: str = "hps"  # how the joint arms share (RunConfig.arch)
  arch_options: tuple[tuple[str, float], ...] = ()  # its sizes off their defaults (RunConfig)
  out_dir: Optional[str] = None  # None: runs/NAME
  plot_only: bool = False  # train nothing: summarise the runs already in out_dir
  checkpoint_every: int = 0  # epochs between checkpoints (0: never)
  resume: bool = False  # continue groups from their latest checkpoint

  def seed_configs(self, experiment: str, arm: str, data: DataConfig,
                   encoder: Optional[EncoderSpec] = None, train: Optional[TrainConfig] = None,
                   pretrain: Optional[DataConfig] = None) -> list[RunConfig]:
    """One group: the same run for every seed, with these settings' encoder and
    training unless a sweep point gives its own."""
    return [RunConfig(experiment, arm, seed, data, encoder or self.encoder, train or self.train,
                      pretrain=pretrain, arch=self.arch,
                      arch_options=self.arch_options) for seed in range(self.seeds)]


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
  # More figures from the same rows: suffix -> draw, written as NAME_SUFFIX.png (.svg).
  more_figures: dict[str, Callable[[list[dict], str, str], None]] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if set(self.presets) != set(PRESET_NAMES):
      raise ValueError(f"{self.name}: presets must be exactly {PRESET_NAMES}; got {list(self.presets)}")

  def run(self, settings: Settings) -> list[dict]:
    """Trains the grid's runs that out_dir/results.jsonl lacks (none with plot_only),
    writes summary.csv and the figure from every run of the grid, prints the table, and
    returns the summary rows."""
    grid = self.grid(settings)
    out = output_dir(settings, self.name)  # checked before the slow part; created by the first record
    start = time.perf_counter()
    print(grid.headline, flush=True)
    results_path, done = train_pending(settings, grid.groups, out)
    summary = self.summarize(settings, grid.groups, done)
    written = write_summary_and_plots(out, self.name, summary.rows, summary.title, self.draw,
                                      more_figures=self.more_figures)
    print(self.table(settings, summary.rows))
    print(f"\nwrote {results_path}, {', '.join(written)} ({time.perf_counter() - start:.0f}s)")
    return summary.rows

  def main(self, argv: list[str]) -> None:
    """The command line's entry (for cli.run): the parsed flags' settings, then run."""
    del argv
    self.run(self.settings_from_flags())


def output_dir(settings: Settings, name: str) -> str:
  """The output folder; checked now, created only when the first result is written."""
  path = settings.out_dir or f"runs/{name}"
  if os.path.exists(path) and not os.path.isdir(path):
    raise InputError(f"--out_dir {path} exists and is not a directory")
  return path


def generated_train_size(data: DataConfig) -> Optional[int]:
  """num_train for generated data; None for read data, whose size is known once read."""
  return None if read_kind(data.dataset) else data.num_train


def train_pending(settings: Settings, groups: Groups, out: str) -> tuple[str, dict[str, dict]]:
  """sweep.run_pending on OUT_DIR/results.jsonl with the settings' plotting and
  checkpoint choices; returns the results path and every record by hash."""
  results_path = os.path.join(out, RESULTS_FILE)
  checkpointing = (CheckpointSettings(os.path.join(out, "checkpoints"), settings.checkpoint_every,
                                      settings.resume)
                   if settings.checkpoint_every or settings.resume else None)
  trained = [group for group in groups.values() if group]
  done = run_pending(trained, load_data_logged, results_path, train_missing=not settings.plot_only,
                     checkpointing=checkpointing)
  others = len(done) - len({c.hash for group in trained for c in group})
  if others:
    print(f"  {results_path} also holds {others} runs of other settings; they are not in "
          "this summary (use another --out_dir to keep studies apart)", flush=True)
  return results_path, done


def load_data_logged(config: DataConfig) -> MultiTaskData:
  """load_dataset, saying what it generated and how long it took."""
  start = time.perf_counter()
  data = load_dataset(config)
  tasks = ", ".join(data.task_names[:6]) + (f" and {len(data.task_names) - 6} more"
                                            if len(data.task_names) > 6 else "")
  print(f"  dataset {data.name} {data.input_shape}: train/val/test {len(data.train.y)}/"
        f"{len(data.val.y)}/{len(data.test.y)}, tasks {tasks}, {np.mean(data.train.y == -1):.0%} "
        f"of train labels missing ({time.perf_counter() - start:.1f}s)", flush=True)
  return data


def records_of(group: list[RunConfig], done: dict[str, dict]) -> list[dict]:
  """The finished records of one group, in seed order."""
  return [done[c.hash] for c in group]
