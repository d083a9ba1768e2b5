"""mtl_jax's entry point: python launch.py --experiment=NAME [that experiment's flags].

With no flags it compares joint and separate networks on the driving-scenes data.
"""
from absl import flags

from experiments import cli, joint_vs_separate

EXPERIMENTS = {
    joint_vs_separate.NAME: joint_vs_separate.main,
}

flags.adopt_module_key_flags(cli)  # --help lists the shared flags, not just --experiment
EXPERIMENT = flags.DEFINE_enum(
    "experiment", joint_vs_separate.NAME, list(EXPERIMENTS), "Which experiment to run.")


def main(argv):
  EXPERIMENTS[EXPERIMENT.value](argv)


if __name__ == "__main__":
  cli.run(main)
