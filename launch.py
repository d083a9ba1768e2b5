"""mtl_jax's entry point: python launch.py --experiment=NAME [that experiment's flags].

With no flags it compares joint and separate networks on the driving-scenes data.
--experiment=all runs every experiment in turn, each into its own folder.
"""
import os
import time

from absl import flags

from experiments import (cli, data_amount, joint_vs_separate, missing_labels, network_size,
                         relatedness, transfer_vs_mtl)

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


def main(argv):
  if EXPERIMENT.value != ALL:
    EXPERIMENTS[EXPERIMENT.value](argv)
    return
  base_out_dir = cli.OUT_DIR.value
  wall_times = {}
  for name, run in EXPERIMENTS.items():
    if base_out_dir:
      flags.FLAGS.out_dir = os.path.join(base_out_dir, name)
    print(f"=== {name} ===", flush=True)
    start = time.perf_counter()
    run(argv)
    wall_times[name] = time.perf_counter() - start
  print("\nwall time: " + ", ".join(f"{name} {t:.0f}s" for name, t in wall_times.items()))


if __name__ == "__main__":
  cli.run(main)
