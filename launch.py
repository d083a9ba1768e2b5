"""mtl_jax's entry point: python launch.py --experiment=NAME [that experiment's flags].

With no flags it compares joint and separate networks on the driving-scenes data.
--experiment=all runs every experiment in turn, each into its own folder, after making
every one's settings and grid and claiming every folder, so that nothing trains before
a bad flag or folder is found; an experiment whose declared requirements the data fails
(Experiment.requires: relatedness on a CSV file) is skipped with one line saying why.
--preset=quick|full picks settings for all of them (each experiment's `presets`).
The experiments are those of experiments/registry.py; this file only dispatches.
"""
import contextlib
import dataclasses
import os
import time

from absl import flags

from experiments import cli
from experiments.experiment import PRESET_NAMES, Experiment, Grid, Settings
from experiments.registry import DEFAULT, EXPERIMENTS
from mtl_jax.errors import InputError

ALL = "all"

flags.adopt_module_key_flags(cli)  # --help lists the shared flags, not just --experiment
EXPERIMENT = flags.DEFINE_enum(
    "experiment", DEFAULT, [*EXPERIMENTS, ALL],
    f"Which experiment to run; '{ALL}' runs {', '.join(EXPERIMENTS)} in turn.")
PRESET = flags.DEFINE_enum(
    "preset", None, list(PRESET_NAMES),
    "Settings for every experiment: quick is sized for about 30 minutes per experiment or less "
    "on a 2-core CPU (the six claim experiments together take about 13), full is larger, for a GPU "
    "or a long run. Flags given on the command line win.")


def settings_of(experiment: Experiment, out_dir: str | None = None) -> Settings:
  """The experiment's settings from the flags, under the preset's values for the flags
  the command line left alone (into out_dir if given)."""
  with cli.flag_defaults(experiment.presets[PRESET.value] if PRESET.value else {}):
    settings = experiment.settings_from_flags()
  return dataclasses.replace(settings, out_dir=out_dir) if out_dir else settings


def run_experiment(experiment: Experiment, out_dir: str | None = None) -> None:
  """Reads the experiment's settings from the flags, then runs it (into out_dir if given)."""
  experiment.run(settings_of(experiment, out_dir))


@dataclasses.dataclass(frozen=True)
class Plan:
  experiment: Experiment
  settings: Settings
  grid: Grid


def plan_all(base_out_dir: str | None) -> list[Plan]:
  """Every experiment that applies to these flags, with its settings and grid, all made
  before anything trains: one that does not apply (its `requires`, e.g. relatedness on
  a CSV file) is skipped with one line saying why; a bad flag stops the launch. None
  applying is an InputError too."""
  plans, skipped = [], []
  for name, experiment in EXPERIMENTS.items():
    try:
      settings = settings_of(experiment, base_out_dir and os.path.join(base_out_dir, name))
      why = experiment.unmet(settings)
      if why:
        print(f"=== {name}: skipped: {why} ===", flush=True)
        skipped.append(f"{name}: {why}")
        continue
      plans.append(Plan(experiment, settings, experiment.grid(settings)))
    except InputError as e:
      raise InputError(f"{name}: {e}") from None
  if not plans:
    raise InputError("no experiment can run on these flags: " + "; ".join(skipped))
  return plans


def main(argv):
  del argv
  if EXPERIMENT.value != ALL:
    run_experiment(EXPERIMENTS[EXPERIMENT.value])
    return
  plans = plan_all(cli.OUT_DIR.value)
  wall_times = {}
  with contextlib.ExitStack() as held:
    # Every folder is created, checked and locked now: a folder that cannot be written,
    # or that another launch holds, stops this one before the first experiment trains.
    for plan in plans:
      held.enter_context(plan.experiment.claim(plan.settings))
    for plan in plans:
      name = plan.experiment.name
      print(f"=== {name} ===", flush=True)
      start = time.perf_counter()
      plan.experiment.run(plan.settings, plan.grid)
      wall_times[name] = time.perf_counter() - start
  total = sum(wall_times.values())
  print("\nwall time: " + ", ".join(f"{name} {t:.0f}s" for name, t in wall_times.items())
        + f"; total {total / 60:.1f} min")


if __name__ == "__main__":
  cli.run(main)
