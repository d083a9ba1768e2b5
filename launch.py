"""mtl_jax's entry point: python launch.py --experiment=NAME [that experiment's flags].

With no flags it compares joint and separate networks on the driving-scenes data.
--experiment=all runs every experiment in turn, each into its own folder, and
--preset=quick|full picks settings for all of them (each experiment's `presets`).
The experiments are those of experiments/registry.py; this file only dispatches.
"""
import dataclasses
import os
import time

from absl import flags

from experiments import cli
from experiments.experiment import PRESET_NAMES, Experiment
from experiments.registry import DEFAULT, EXPERIMENTS

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


def run_experiment(experiment: Experiment, out_dir: str | None = None) -> None:
  """Reads the experiment's settings from the flags, under the preset's values for the
  flags the command line left alone, then runs it (into out_dir if given)."""
  with cli.flag_defaults(experiment.presets[PRESET.value] if PRESET.value else {}):
    settings = experiment.settings_from_flags()
  if out_dir:
    settings = dataclasses.replace(settings, out_dir=out_dir)
  experiment.run(settings)


def main(argv):
  del argv
  if EXPERIMENT.value != ALL:
    run_experiment(EXPERIMENTS[EXPERIMENT.value])
    return
  base_out_dir = cli.OUT_DIR.value
  wall_times = {}
  for name, experiment in EXPERIMENTS.items():
    print(f"=== {name} ===", flush=True)
    start = time.perf_counter()
    run_experiment(experiment, base_out_dir and os.path.join(base_out_dir, name))
    wall_times[name] = time.perf_counter() - start
  total = sum(wall_times.values())
  print("\nwall time: " + ", ".join(f"{name} {t:.0f}s" for name, t in wall_times.items())
        + f"; total {total / 60:.1f} min")


if __name__ == "__main__":
  cli.run(main)
