"""Every experiment launch.py can run, in the order --experiment=all runs them.

Adding one: write experiments/NAME.py exporting EXPERIMENT (an experiment.Experiment
with its settings, grid, summary, table, figure, quick/full presets and `requires`, what
it needs of the data: --experiment=all skips it, saying why, where the data fails that),
then add it to the tuple below. tests/test_all_experiments.py runs every entry on tiny
settings.
"""
from experiments import (architectures, data_amount, joint_vs_separate, methods, missing_labels,
                         multilabel_real, network_size, relatedness, transfer_vs_mtl)
from experiments.experiment import Experiment

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    joint_vs_separate.EXPERIMENT,
    network_size.EXPERIMENT,
    data_amount.EXPERIMENT,
    relatedness.EXPERIMENT,
    missing_labels.EXPERIMENT,
    transfer_vs_mtl.EXPERIMENT,
    methods.EXPERIMENT,
    architectures.EXPERIMENT,
    multilabel_real.EXPERIMENT,
)}
DEFAULT = joint_vs_separate.NAME  # what launch.py runs without --experiment
