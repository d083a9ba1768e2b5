"""mtl_jax's entry point: python launch.py --experiment=NAME [that experiment's flags].

With no flags it compares joint and separate networks on the driving-scenes data.
--experiment=all runs every experiment in turn, each into its own folder, and
--preset=quick|full picks settings for all of them (experiments/presets.py).
"""
import os
import time

from absl import flags

from experiments import (cli, data_amount, joint_vs_separate, missing_labels, network_size,
                         presets, relatedness, transfer_vs_mtl)

EXPERIMENTS = {
    joint_vs_separate.NAME: joint_vs_separate.main,
    network_size.NAME: network_size.main,
    data_amount.NAME: data_amount.main,
    relatedness.NAME: relatedness.main,
    missing_labels.NAME: missing_labels.main,
    transfer_vs_mtl.NAME: transfer_vs_mtl.main,
}
ALL = "all"

flags.adopt_module_key_flags(cli)  # --help lists the shared flags, not just --experiment
EXPERIMENT = flags.DEFINE_enum(
    "experiment", joint_vs_separate.NAME, [*EXPERIMENTS, ALL],
    f"Which experiment to run; '{ALL}' runs {', '.join(EXPERIMENTS)} in turn.")
PRESET = flags.DEFINE_enum(
    "preset", None, list(presets.PRESETS),
    "Settings for every experiment: quick runs all six in under 30 minutes on a 2-core CPU, "
    "full is larger, for a GPU or a long run. Flags given on the command line win.")


def run_experiment(name: str, argv) -> None:
  with cli.flag_defaults(presets.PRESETS[PRESET.value][name] if PRESET.value else {}):
    EXPERIMENTS[name](argv)


def main(argv):
  if EXPERIMENT.value != ALL:
    run_experiment(EXPERIMENT.value, argv)
    return
  base_out_dir = cli.OUT_DIR.value
  wall_times = {}
  for name in EXPERIMENTS:
    if base_out_dir:
      flags.FLAGS.out_dir = os.path.join(base_out_dir, name)
    print(f"=== {name} ===", flush=True)
    start = time.perf_counter()
    run_experiment(name, argv)
    wall_times[name] = time.perf_counter() - start
  total = sum(wall_times.values())
  print("\nwall time: " + ", ".join(f"{name} {t:.0f}s" for name, t in wall_times.items())
        + f"; total {total / 60:.1f} min")


if __name__ == "__main__":
  cli.run(main)
