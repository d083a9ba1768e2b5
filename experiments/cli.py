"""Flags every experiment shares, their reading into an experiment's Settings, and the
runner that turns bad input into one line.

Defined once here so that launch.py can import every experiment without two modules
defining the same flag. Only this module and each experiment's settings_from_flags
read flags; everything after them takes a Settings object (experiment.py).
"""
import contextlib
import dataclasses
import difflib
import math
import os
import re
import signal
import sys
import threading
from typing import Callable, Optional, TypeVar

import numpy as np
from absl import app, flags, logging

from mtl_jax import devices, memory_estimate, stopping, thresholds
from mtl_jax.data import driving, impute, resampling
from mtl_jax.data.datasets import DATASETS, DataConfig, read_kind
from mtl_jax.errors import InputError
from mtl_jax.launchers.base import LOCAL, LaunchSettings
from mtl_jax.launchers.registry import LAUNCHERS
from mtl_jax.launchers.registry import prepare as prepare_launch
from mtl_jax.methods import DEFAULT_METHOD, METHODS, build_method, hyper_parameters
from mtl_jax.step import check_method_fits  # what --arch must serve
from mtl_jax.results import SUMMARY_METRICS
from mtl_jax.models import (ARCH_OPTIONS, DTYPES, ENCODERS, MODELS, SEPARATE_ARM, EncoderSpec,
                            architecture_options, architecture_summary, build_model)
from mtl_jax.data.driving import SceneConfig
from mtl_jax.sweep import SweepInterrupted
from mtl_jax.train import EPOCH_SELECTION, OPTIMIZERS, TrainConfig

S = TypeVar("S")

DATASET = flags.DEFINE_string(
    "dataset", "driving", f"Dataset to train on: {', '.join(DATASETS)}. driving: procedural "
    "road scenes (tasks pedestrian, car, stop_sign, traffic_light); related: vectors with "
    "tunable task relatedness; csv:/npz:PATH: your own table (README, 'Your own data'); "
    "arff:PATH (or arff:TRAIN,TEST): a MULAN/MEKA ARFF file, dense or sparse (docs/data.md); "
    "tfds:NAME: a prepared TFDS multi-label image set (celeb_a, voc/2007, coco/2017).")
LABEL_COLUMNS = flags.DEFINE_list(
    "label_columns", [], "csv/npz/arff: the label columns (tasks), in order: names, or last:N / "
    "first:N (the last or first N columns that are not ignored); by default every CSV column "
    "whose header starts with 'label:', every column of an NPZ file's y, or an ARFF file's "
    "label file or MEKA -C. Beats a label file, which beats MEKA's -C; the run says which it used.")
# -- Issue 15: ARFF files and explicit feature columns (one block, for merging) --
IGNORE_COLUMNS = flags.DEFINE_list(
    "ignore_columns", [], "csv/arff: columns that are neither features nor labels (ids, labels "
    "you do not train); every other non-label column is a feature, and the run lists them.")
IMPUTE = flags.DEFINE_enum(
    "impute", "none", impute.IMPUTE, "csv/arff: missing feature cells ('?'): none, an error "
    "naming the row and column; mean, the train split's column mean; zero, 0. The run says "
    "how many cells it filled. Missing labels are always masked, never imputed.")
TEST_FILE = flags.DEFINE_string(
    "test_file", "", "arff: the standard split's test file (or --dataset=arff:TRAIN,TEST); it must "
    "declare the same attributes; validation is then cut from the train file only (--val_frac).")
LABEL_FILE = flags.DEFINE_string(
    "label_file", "", "arff: a MULAN label file (XML); by default PATH.xml or STEM.xml beside "
    "the train file (enron-train.arff -> enron.xml), if there is one.")
# -- end of issue 15's block --
DATA_DIR = flags.DEFINE_string("data_dir", "~/tensorflow_datasets", "tfds: where TFDS datasets are prepared.")
TASK_BUDGET = flags.DEFINE_list(
    "task_budget", [], "Per-task label budgets TASK:COUNT,...: each named task keeps only COUNT "
    "of its train labels, chosen by --data_seed; the rest are masked, every example stays.")
VAL_FRAC = flags.DEFINE_float(
    "val_frac", 0.15, "Read data without its own validation split: the share of train set aside for it.")
TEST_FRAC = flags.DEFINE_float(
    "test_frac", 0.15, "Read data without its own test split: the share of train set aside for it.")
ENCODER = flags.DEFINE_enum("encoder", "cnn", ENCODERS, "Shared encoder architecture "
                            "(mlp unless set for --dataset=csv:..., whose rows are vectors).")
WIDTH = flags.DEFINE_integer(
    "width", 32, "Encoder width: hidden units per layer (mlp) or channels (cnn).", lower_bound=1)
DTYPE = flags.DEFINE_enum(
    "dtype", "float32", DTYPES, "Compute dtype: bfloat16 computes in bfloat16 and keeps "
    "parameters, optimizer state and loss in float32 (for GPUs; slower on most CPUs).")
# Upper bounds where a bound means something; sizes are bounded by memory instead
# (check_memory). The encoder is unrolled layer by layer into the compiled program, so
# a depth in the thousands is minutes of tracing before the first line of output.
MAX_DEPTH = 100
DEPTH = flags.DEFINE_integer(
    "depth", 3, "Encoder depth: hidden layers (mlp) or stride-2 conv blocks (cnn).",
    lower_bound=1, upper_bound=MAX_DEPTH)
# A million passes over the data is no experiment; and epochs are numbered in int32
# on the device, so 3,000,000,000 would not even count right.
MAX_EPOCHS = 1_000_000
EPOCHS = flags.DEFINE_integer("epochs", 12, "Training epochs over the train split.",
                              lower_bound=1, upper_bound=MAX_EPOCHS)
BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Examples per optimizer step.", lower_bound=1)
LEARNING_RATE = flags.DEFINE_float("learning_rate", 3e-3, "Adam learning rate.", lower_bound=0.0)
# All seeds train in one compiled program that prints nothing until every seed has
# finished an epoch: --seeds=1000000 (meant 10?) would look like a hang. 1,000 is 200
# times the largest preset's 5.
MAX_SEEDS = 1000
SEEDS = flags.DEFINE_integer(
    "seeds", 3, "Number of seeds (0..N-1), trained together in one compiled program; "
    "tables and plots show mean and 95% CI over them.", lower_bound=1, upper_bound=MAX_SEEDS)
FOLDS = flags.DEFINE_integer(
    "folds", 0, "joint_vs_separate, multilabel_real: K-fold cross-validation over all the data's "
    "examples (stratified; validation cut from the other folds), every seed on every fold; the 95% "
    "CI is then over folds (corrected resampled t). 0: the data's own split.", lower_bound=0)
SPLIT_SEEDS = flags.DEFINE_integer(
    "split_seeds", 0, "joint_vs_separate, multilabel_real: N random stratified train/val/test "
    "re-splits of all the data's examples (the own split's sizes), every seed on every split; the "
    "95% CI is then over splits (corrected resampled t). 0: the data's own split.", lower_bound=0)
MISSING_FRAC = flags.DEFINE_float(
    "missing_frac", 0.2, "Fraction of train/validation label cells hidden as missing "
    "('?', stored as -1); the masked loss ignores them. Must be in [0, 1). 0 unless set "
    "for csv/npz/tfds data, whose own missing labels are always masked.")
_READ_NOTE = " For csv/npz/tfds data: at most this many, and all unless set."
NUM_TRAIN = flags.DEFINE_integer("num_train", 6000, "Training examples." + _READ_NOTE, lower_bound=1)
NUM_VAL = flags.DEFINE_integer("num_val", 1000, "Validation examples." + _READ_NOTE, lower_bound=1)
NUM_TEST = flags.DEFINE_integer(
    "num_test", 3000, "Test examples (all labels kept)." + _READ_NOTE, lower_bound=1)
IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", 32, "Side of the square images: driving scenes are rendered, TFDS images "
    "resized to it.", lower_bound=8, upper_bound=256)
OPTIMIZER = flags.DEFINE_enum("optimizer", "adam", list(OPTIMIZERS), "optax optimizer.")
SELECT_EPOCH = flags.DEFINE_enum(
    "select_epoch", "best_val", EPOCH_SELECTION, "Which epoch's parameters each seed keeps: "
    "best_val, the lowest validation loss (the test split never chooses), or last.")
METHOD = flags.DEFINE_enum(
    "method", DEFAULT_METHOD, list(METHODS), "MTL method: how the joint network's per-task "
    "losses become one update (ew: their sum, the course note's J). Separate networks "
    "always train with ew: each has one task.")
# --NAME_KEYWORD for every hyper-parameter of every method, with the paper's default.
METHOD_FLAGS = {name: {key: flags.DEFINE_float(f"{name}_{key}", default, f"--method={name}: {key}.")
                       for key, default in hyper_parameters(name).items()}
                for name in METHODS}
ARCHS = [name for name in MODELS if name != SEPARATE_ARM]
ARCH = flags.DEFINE_enum(
    "arch", "hps", ARCHS, "How the joint network shares (docs/architectures.md): " +
    "; ".join(f"{name}, {architecture_summary(name).rstrip('.')}" for name in ARCHS) + ".")


def _arch_flag(arch: str, key: str, default: float):
  """--ARCH_KEYWORD, an integer or float flag as the builder's default is, checked
  when parsed (models.ARCH_OPTIONS says what each keyword means and takes)."""
  option = ARCH_OPTIONS[key]
  define = flags.DEFINE_integer if isinstance(default, int) else flags.DEFINE_float
  flag = define(f"{arch}_{key}", default, f"--arch={arch}: {option.meaning}.")
  flags.register_validator(flag.name, option.valid, message=f"--{flag.name} must be {option.rule}")
  return flag


# --ARCH_KEYWORD for every option of every architecture, with the builder's default.
ARCH_FLAGS = {name: {key: _arch_flag(name, key, default) for key, default in architecture_options(name).items()}
              for name in ARCHS}
PATIENCE = flags.DEFINE_integer(
    "patience", 0, "Stop a group of seeds once none has improved its validation loss for this "
    "many epochs (0: train every epoch).", lower_bound=0)
# Read data of a few hundred rows gives a handful of batches per epoch: 12 epochs at
# batch 128 of 300 rows is 24 steps, and every seed selects its last epoch. So read
# data trains for a number of optimizer steps unless --epochs says otherwise: about
# what the default run on the driving scenes takes (6,000 / 128 x 12 = 552), rounded
# up, with the best validation epoch kept.
READ_DATA_STEPS = 1000
TRAIN_STEPS = flags.DEFINE_integer(
    "train_steps", None, "Optimizer steps per run, rounded up to whole epochs; instead of "
    f"--epochs. Default: {READ_DATA_STEPS} for read data (csv/npz/arff/tfds) unless --epochs is "
    "given, else --epochs.", lower_bound=1, upper_bound=100_000_000)
DROPOUT = flags.DEFINE_float(
    "dropout", 0.0, "Dropout rate after every hidden layer (mlp) or conv block (cnn) while "
    "training, for the hps and separate networks; never when selecting epochs or predicting. "
    "0: none.", lower_bound=0.0, upper_bound=0.99)
WEIGHT_DECAY = flags.DEFINE_float(
    "weight_decay", 0.0, "Decoupled weight decay on every parameter (--optimizer=adam becomes "
    "AdamW); 0: none.", lower_bound=0.0)
# numpy's seeds are non-negative; one 32-bit word gives 4 billion datasets and stays an
# exact integer for every reader of results.jsonl.
DATA_SEED = flags.DEFINE_integer("data_seed", 0, "Seed of the generated dataset and its missing-label mask.",
                                 lower_bound=0, upper_bound=2**32 - 1)


class _PathParser(flags.ArgumentParser):
  """A path with a leading ~ expanded: the shell leaves `--out_dir=~/runs` alone, and a
  folder literally named ~ is one `rm -rf ~` away from losing a home directory."""
  flag_type = "string"

  def parse(self, argument):
    return os.path.expanduser(argument) if isinstance(argument, str) else argument


OUT_DIR = flags.DEFINE(
    _PathParser(), "out_dir", None,
    "Where results.jsonl, summary.csv and the plot go (default: runs/EXPERIMENT).",
    serializer=flags.ArgumentSerializer())
CHECKPOINT_EVERY = flags.DEFINE_integer(
    "checkpoint_every", 0, "Save each group's training with orbax every this many epochs, in "
    "OUT_DIR/checkpoints (0: never), so that --resume can continue a preempted long run.",
    lower_bound=0)
RESUME = flags.DEFINE_bool(
    "resume", False, "Continue a group's training from its latest checkpoint in OUT_DIR/"
    "checkpoints (finished runs are always reused from results.jsonl).")
SAVE_PARAMS = flags.DEFINE_bool(
    "save_params", False, "Keep each finished run's selected parameters, with its feature "
    "columns and their standardisation, in OUT_DIR/params/HASH.npz, for `python -m "
    "mtl_jax.predict --run_dir=OUT_DIR` on new data. Finished runs on file without them are "
    "trained again to save them (the same result).")
PLOT_ONLY = flags.DEFINE_bool(
    "plot_only", False, "Train nothing: redraw the summary and plot from the runs of these "
    "flags already in --out_dir/results.jsonl.")
flags.register_validator("out_dir", lambda v: v is None or v.strip() != "",
                         message="--out_dir must not be empty")

# --- Devices and processes (docs/devices.md): read in `run` before anything touches a
# device, because jax.distributed must join the processes before JAX starts its backend.
DEVICES = flags.DEFINE_integer(
    "devices", 0, "Local devices (GPUs, TPUs; CPU devices if simulated) each process trains "
    "on: a mesh with the seeds and separate networks on model axes and the batch split over "
    "the rest (0: all). Results match one device to float rounding.", lower_bound=0)
DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "off", ["off", "auto"], "auto: this is one process of a multi-process run "
    "and jax.distributed finds the others from the cluster's environment (one `srun` task per "
    "process under Slurm). Only process 0 writes results.")
COORDINATOR_ADDRESS = flags.DEFINE_string(
    "coordinator_address", None, "A multi-process run started by hand: HOST:PORT where process 0 "
    "listens (with --num_processes and --process_id, the same command in every process).")
NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "With --coordinator_address: how many "
                                     "processes the run has.", lower_bound=1)
PROCESS_ID = flags.DEFINE_integer("process_id", None, "With --coordinator_address: this process's "
                                  "number, 0 to --num_processes - 1; 0 writes the results.", lower_bound=0)


def start_devices() -> None:
  """Joins the other processes of a multi-process run, if any, then picks --devices."""
  devices.join_processes(COORDINATOR_ADDRESS.value, NUM_PROCESSES.value, PROCESS_ID.value,
                         DISTRIBUTED.value == "auto")
  devices.use_devices(DEVICES.value)
  if devices.several_processes() and (CHECKPOINT_EVERY.value or RESUME.value):
    raise InputError(devices.NO_MULTI_PROCESS_CHECKPOINTS)

flags.register_validator(
    "missing_frac", lambda v: 0.0 <= v < 1.0, message="--missing_frac must be in [0, 1)")
flags.register_validator(
    "learning_rate", lambda v: 0.0 < v < math.inf, message="--learning_rate must be positive and finite")

# ---- Decisions and the printed table's metrics (docs/metrics.md).
THRESHOLD = flags.DEFINE_string(
    "threshold", str(thresholds.DEFAULT_PROBABILITY), "Where a task's probability becomes a "
    "yes/no decision for accuracy, hamming_loss, subset/jaccard accuracy and F1: a probability "
    "in (0, 1) for every task, or 'val': each task's threshold maximises its F1 on the "
    "validation split (never the test split) and is recorded in results.jsonl.")
# The printed per-task table's metrics when --metrics is not given: today's AUC and AP.
DEFAULT_TABLE_METRICS = ("auc", "ap")
METRICS = flags.DEFINE_list(
    "metrics", list(DEFAULT_TABLE_METRICS), "joint_vs_separate, multilabel_real: the metrics of the printed "
    f"table, any of {', '.join(SUMMARY_METRICS)}; summary.csv always has all of them.")


def _known_metrics(names: list[str]) -> bool:
  unknown = [n for n in names if n not in SUMMARY_METRICS]
  if unknown or not names:
    raise flags.ValidationError(f"--metrics: unknown {', '.join(unknown) or 'empty list'}; "
                                f"valid: {', '.join(SUMMARY_METRICS)}")
  return True


def _threshold_rule_valid(text: str) -> bool:
  try:
    return bool(thresholds.parse_rule(text))
  except ValueError as e:
    raise flags.ValidationError(str(e)) from None


flags.register_validator("metrics", _known_metrics)
flags.register_validator("threshold", _threshold_rule_valid)


def threshold_rule() -> thresholds.Rule:
  return thresholds.parse_rule(THRESHOLD.value)


# The Settings field of an experiment whose printed table --metrics chooses.
TABLE_METRICS_FIELD = "table_metrics"


def table_metrics() -> tuple[str, ...]:
  return tuple(dict.fromkeys(METRICS.value))


def _refuse_unused_metrics(cls: type) -> None:
  """A --metrics that this experiment's table would not show is refused, not ignored."""
  if _chosen(METRICS) and TABLE_METRICS_FIELD not in {f.name for f in dataclasses.fields(cls)}:
    raise InputError("--metrics chooses the columns of joint_vs_separate's and multilabel_real's "
                     "tables; the other experiments print test ROC-AUC, and every summary.csv has "
                     "every metric")


# ---- Where the groups of a sweep run (mtl_jax/launchers, docs/cluster.md): --launcher and
# what each submitit job asks of its scheduler.
LAUNCHER = flags.DEFINE_enum(
    "launcher", LOCAL, list(LAUNCHERS), "Where the groups of the sweep (a config with its seeds) "
    "train: " + "; ".join(f"{name}, {launcher.summary}" for name, launcher in LAUNCHERS.items())
    + ". The launching process writes the summary and plot once every job has ended.")
SLURM_PARTITION = flags.DEFINE_string(
    "slurm_partition", None, "--launcher=slurm: the partition (default: the cluster's).")
SLURM_TIME = flags.DEFINE_integer(
    "slurm_time", 60, "--launcher=slurm or submitit-local: minutes each job may run; a job "
    "reaching it is requeued and skips the runs it saved.", lower_bound=1)
SLURM_GPUS_PER_TASK = flags.DEFINE_integer(
    "slurm_gpus_per_task", 0, "--launcher=slurm or submitit-local: GPUs per job (0: none; "
    "submitit-local then hides this machine's GPUs from its jobs).", lower_bound=0)
SLURM_ARRAY_PARALLELISM = flags.DEFINE_integer(
    "slurm_array_parallelism", 0, "--launcher=slurm or submitit-local: at most this many jobs "
    "at once (0: Slurm 256; submitit-local one per GPU, else 2).", lower_bound=0)
SLURM_LOG_DIR = flags.DEFINE(
    _PathParser(), "slurm_log_dir", None, "--launcher=slurm or submitit-local: submitit's folder "
    "of pickled jobs and their logs (default OUT_DIR/submitit); on a cluster it and --out_dir "
    "must be on a filesystem the nodes share.", serializer=flags.ArgumentSerializer())
SLURM_EXTRA = flags.DEFINE_list(
    "slurm_extra", [], "--launcher=slurm: more sbatch options NAME=VALUE,... (account=lab, "
    "qos=high, cpus-per-task=8, mem=32G).")
SLURM_FLAGS = (SLURM_PARTITION, SLURM_TIME, SLURM_GPUS_PER_TASK, SLURM_ARRAY_PARALLELISM,
               SLURM_LOG_DIR, SLURM_EXTRA)


def launch_settings() -> LaunchSettings:
  """The launcher flags, checked: --slurm_* without a submitit launcher would be ignored
  while the sweep trains here, so it is refused."""
  given = [f"--{flag.name}" for flag in SLURM_FLAGS if flags.FLAGS[flag.name].present]
  if given and LAUNCHER.value == LOCAL:
    raise InputError(f"{given[0]} applies to jobs; add --launcher=slurm (or submitit-local to try "
                     "it on this machine)")
  extra = []
  for item in SLURM_EXTRA.value:
    name, _, value = item.partition("=")
    if not name.strip() or not value.strip():
      raise InputError(f"--slurm_extra takes NAME=VALUE items (sbatch options); got {item!r}")
    extra.append((name.strip(), value.strip()))
  settings = LaunchSettings(LAUNCHER.value, SLURM_PARTITION.value, SLURM_TIME.value,
                            SLURM_GPUS_PER_TASK.value, SLURM_ARRAY_PARALLELISM.value,
                            SLURM_LOG_DIR.value, tuple(extra))
  if not PLOT_ONLY.value:  # --plot_only starts no job: the same command redraws anywhere
    prepare_launch(settings)
  return settings


def _chosen(flag) -> bool:
  """Whether the command line, a preset or an experiment set this flag."""
  return flags.FLAGS[flag.name].present or flag.name in _overridden


def task_budget() -> tuple[tuple[str, int], ...]:
  budget = []
  for item in TASK_BUDGET.value:
    task, _, count = item.rpartition(":")
    if not task or not count.strip().isdigit():
      raise InputError(f"--task_budget takes TASK:COUNT items with a count >= 0; got {item!r}")
    budget.append((task, int(count)))
  return tuple(budget)


def data_config() -> DataConfig:
  """The data flags as a DataConfig. Read data uses all its examples and only its own
  missing labels unless the sizes or --missing_frac were set."""
  read = read_kind(DATASET.value) is not None
  size = lambda flag: None if read and not _chosen(flag) else flag.value
  return DataConfig(
      dataset=DATASET.value, num_train=size(NUM_TRAIN), num_val=size(NUM_VAL),
      num_test=size(NUM_TEST), val_frac=VAL_FRAC.value, test_frac=TEST_FRAC.value,
      label_columns=tuple(LABEL_COLUMNS.value), ignore_columns=tuple(IGNORE_COLUMNS.value),
      impute=IMPUTE.value, test_file=TEST_FILE.value, label_file=LABEL_FILE.value,
      data_dir=DATA_DIR.value,
      missing_frac=0.0 if read and not _chosen(MISSING_FRAC) else MISSING_FRAC.value,
      label_budget=task_budget(), data_seed=DATA_SEED.value,
      scenes=SceneConfig(image_size=IMAGE_SIZE.value))


def generated_train_size() -> int | None:
  """--num_train for generated data; None for read data, whose size is known once read."""
  return None if read_kind(DATASET.value) else NUM_TRAIN.value


def encoder_spec() -> EncoderSpec:
  """A CSV or ARFF file holds feature vectors, not images: its encoder is the MLP unless chosen."""
  csv_default = read_kind(DATASET.value) in ("csv", "arff") and not _chosen(ENCODER)
  return EncoderSpec("mlp" if csv_default else ENCODER.value, WIDTH.value, DEPTH.value, DTYPE.value,
                     DROPOUT.value)


def train_config() -> TrainConfig:
  if generated_train_size() and BATCH_SIZE.value > NUM_TRAIN.value:
    raise InputError(f"--batch_size={BATCH_SIZE.value} exceeds --num_train={NUM_TRAIN.value}")
  return TrainConfig(LEARNING_RATE.value, BATCH_SIZE.value, EPOCHS.value, OPTIMIZER.value,
                     SELECT_EPOCH.value, patience=PATIENCE.value, method=METHOD.value,
                     method_options=method_options(), steps=train_steps(),
                     weight_decay=WEIGHT_DECAY.value)


def train_steps(read_data: Optional[bool] = None) -> int:
  """--train_steps; for read data (default: is --dataset read?) without --epochs,
  READ_DATA_STEPS; else 0 (train --epochs)."""
  if _chosen(TRAIN_STEPS) and _chosen(EPOCHS):
    raise InputError(f"give --epochs={EPOCHS.value} or --train_steps={TRAIN_STEPS.value}, not both")
  if _chosen(TRAIN_STEPS):
    return TRAIN_STEPS.value
  read_data = bool(read_kind(DATASET.value)) if read_data is None else read_data
  return READ_DATA_STEPS if read_data and not _chosen(EPOCHS) else 0


def method_options(method: Optional[str] = None) -> tuple[tuple[str, float], ...]:
  """The hyper-parameters of `method` (default: --method's) that differ from their
  defaults: only these enter the config (and its hash), so a default run keeps its hash."""
  method = method or METHOD.value
  defaults = hyper_parameters(method)
  return tuple((key, flag.value) for key, flag in METHOD_FLAGS[method].items()
               if flag.value != defaults[key])


def arch_options() -> tuple[tuple[str, float], ...]:
  """The chosen architecture's options that differ from their defaults: only these
  enter the config (and its hash), so a default run keeps its hash."""
  defaults = architecture_options(ARCH.value)
  options = tuple((key, flag.value) for key, flag in ARCH_FLAGS[ARCH.value].items()
                  if flag.value != defaults[key])
  # Built once now on a stand-in input, so that options that do not fit together (more
  # PLE levels than --depth), or a method the architecture cannot serve, stop the launch
  # before any run starts; building initialises nothing, and no check depends on the data.
  model = build_model(ARCH.value, encoder_spec(), 2, (8, 8, 3), options)
  check_method_fits(model, build_method(METHOD.value, method_options()).needs, METHOD.value, ARCH.value)
  return options


def settings(cls: type[S], **own) -> S:
  """The shared flags as an experiment's Settings (experiment.Settings or its
  subclass), with the experiment's own fields `own`, already read from its flags;
  refused here if its runs cannot fit in memory."""
  _refuse_unused_metrics(cls)
  launch = launch_settings()  # first: it sets the jobs' memory environment before jax starts
  chosen = cls(data=data_config(), encoder=encoder_spec(), train=train_config(), seeds=SEEDS.value,
               resamplings=resampling.plan(FOLDS.value, SPLIT_SEEDS.value),
               arch=ARCH.value, arch_options=arch_options(), out_dir=OUT_DIR.value,
               plot_only=PLOT_ONLY.value, checkpoint_every=CHECKPOINT_EVERY.value, resume=RESUME.value,
               save_params=SAVE_PARAMS.value, threshold=threshold_rule(), launch=launch, **own)
  if not chosen.plot_only:
    check_memory(chosen)
  return chosen


def example_shape(data: DataConfig, num_tasks: Optional[int] = None
                  ) -> Optional[tuple[tuple[int, ...], type, int]]:
  """(shape of one input, its dtype, number of tasks) of generated data, as
  load_dataset makes it; None for read data, whose shape is known once read.
  `num_tasks` overrides the related dataset's (the relatedness experiment sets it per rho)."""
  if data.dataset == "driving":
    size = data.scenes.image_size
    return (size, size, 3), np.uint8, len(data.tasks or driving.TASK_NAMES)
  if data.dataset == "related":
    related = dataclasses.replace(data.relatedness, num_tasks=num_tasks or data.relatedness.num_tasks)
    return (related.input_dim,), np.float32, related.num_tasks
  return None


def _encoders(chosen) -> list[EncoderSpec]:
  """The encoders the runs train: the shared one, or each width a sweep asks for (the
  largest per kind is enough; invalid ones are the experiment's to refuse)."""
  widths = getattr(chosen, "widths", None) or {}
  encoders = [dataclasses.replace(chosen.encoder, kind=kind, width=max(ws))
              for kind, ws in widths.items() if ws and max(ws) >= 1]
  return encoders or [chosen.encoder]


def check_memory(chosen) -> None:
  """Refuses, with one line, settings whose largest group of runs needs more memory
  than the machine has (memory_estimate), before anything is generated or allocated."""
  check_runs_fit(chosen.data, _encoders(chosen), chosen.train, chosen.seeds, chosen.arch,
                 chosen.arch_options, getattr(chosen, "related_tasks", None))


def check_runs_fit(data: DataConfig, encoders: list[EncoderSpec], train: TrainConfig, seeds: int,
                   arch: str = "hps", options: tuple[tuple[str, float], ...] = (),
                   num_tasks: Optional[int] = None) -> None:
  """Refuses (InputError) runs of `arch` and separate networks with each of `encoders`
  on `data` that this machine cannot hold. For an experiment whose runs do not follow
  the shared flags (the methods experiment's related problems), to call on its own.
  Read data is not checked: its shape is known only once read (memory_estimate.for_data)."""
  probe = example_shape(data, num_tasks)
  if probe is None:
    return
  shape, x_dtype, num_tasks = probe
  sizes = (data.num_train, data.num_val, data.num_test)
  # The data alone first: building a model allocates one stand-in example, which must
  # fit too (--related_tasks=1000000000 makes an example of 8 billion floats).
  host, device = memory_estimate.data_bytes(sizes, shape, x_dtype, num_tasks)
  memory_estimate.check(memory_estimate.Estimate({"data": host}, {"data": device}))
  models = [build_model(arm, encoder, num_tasks, shape, arm_options)
            for encoder in encoders if encoder.kind == "mlp" or len(shape) == 3
            for arm, arm_options in ((arch, options), (SEPARATE_ARM, ()))]
  if not models:
    return  # a cnn on vectors: the experiment refuses it with its own line
  training = memory_estimate.Training(seeds, train.epochs, train.batch_size, train.optimizer,
                                      train.method, train.method_options)
  memory_estimate.check(memory_estimate.estimate(models, sizes, shape, x_dtype, num_tasks, training))


_overridden: set[str] = set()


@contextlib.contextmanager
def flag_defaults(values: dict):
  """Gives flags that the command line left alone these values while the block runs.

  How an experiment (and, outside it, a preset) picks its own defaults for the shared
  flags. The outermost block wins, so a preset overrides an experiment's defaults, and
  the command line overrides both."""
  saved = {}
  for name, value in values.items():
    flag = flags.FLAGS[name]
    if not flag.present and name not in _overridden:
      saved[name] = flag.value
      flag.value = value
  _overridden.update(saved)
  try:
    yield
  finally:
    for name, value in saved.items():
      flags.FLAGS[name].value = value
    _overridden.difference_update(saved)


def fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _close_value(error: flags.Error) -> str:
  """' Did you mean: X?' for a misspelt value of an enum flag (absl already suggests
  close flag names, but not close values)."""
  match = re.match(r"flag --(\w+)=(.*): value should be one of", str(error))
  flag = match and flags.FLAGS[match.group(1)]
  choices = getattr(getattr(flag, "parser", None), "enum_values", None)
  close = choices and difflib.get_close_matches(match.group(2), choices, n=1)
  return f" Did you mean: {close[0]}?" if close else ""


_finite_checked: set[str] = set()


def _require_finite_floats() -> None:
  """Every float flag, whichever module defines it (rates, fractions, each method's and
  architecture's options), must be a finite number: absl reads "nan" and "inf" as
  floats, and a bound such as lower_bound=0 lets both through."""
  for name in list(flags.FLAGS):
    flag = flags.FLAGS[name]
    if isinstance(flag.parser, flags.FloatParser) and flag.name not in _finite_checked:
      _finite_checked.add(flag.name)
      flags.register_validator(flag.name, lambda v: v is None or math.isfinite(v),
                               message=f"--{flag.name} must be a finite number")


def _parse_flags(argv: list[str]) -> list[str]:
  _require_finite_floats()  # here, not at import: experiments define flags after this module
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e) + _close_value(e))


class _OutlivesItsReader:
  """sys.stdout or sys.stderr, but once its reader has gone away (`launch.py | head -3`)
  or it cannot be written, further output goes to os.devnull and the run goes on: its
  results still reach disk, and its exit status is the run's, not the pipe's."""

  def __init__(self, stream):
    self._stream = stream

  # OSError, not only BrokenPipeError: progress on a full disk (`> /dev/full`) must not
  # stop a run whose results are written elsewhere either.
  def write(self, text: str) -> int:
    try:
      return self._stream.write(text)
    except OSError:
      self._to_devnull()
      return len(text)

  def flush(self) -> None:
    try:
      self._stream.flush()
    except OSError:
      self._to_devnull()

  def _to_devnull(self) -> None:
    # Onto the file descriptor itself (as the Python docs advise for SIGPIPE), so that
    # what the stream still buffers, and the interpreter's last flush at exit, land
    # there too instead of raising again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
      os.dup2(devnull, self._stream.fileno())
    except (OSError, ValueError):  # a stream without a descriptor of its own
      self._stream = open(os.devnull, "w")
    finally:
      os.close(devnull)

  def __getattr__(self, name):
    return getattr(self._stream, name)


@contextlib.contextmanager
def _pipe_safe_output():
  saved = sys.stdout, sys.stderr
  sys.stdout, sys.stderr = _OutlivesItsReader(sys.stdout), _OutlivesItsReader(sys.stderr)
  try:
    yield
  finally:
    sys.stdout.flush()  # what is still buffered, while a broken pipe is still caught
    sys.stderr.flush()
    sys.stdout, sys.stderr = saved


# Ctrl-C, and what a scheduler or a closing terminal sends before it kills a job: each
# stops the run with the line saying what is saved and how to resume (stopping.py).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _signals_as_ctrl_c():
  """SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread while the block runs,
  as Ctrl-C does, and none of the three is lost in a callback that swallows it."""
  if threading.current_thread() is not threading.main_thread():
    return contextlib.nullcontext()
  return stopping.handling(STOP_SIGNALS)


def _interrupted_status() -> int:
  """128 + the signal's number, as the shell reports a process it ended: 130 for Ctrl-C,
  143 for SIGTERM, 129 for SIGHUP, so that a job script or scheduler can tell a user's
  Ctrl-C from a preemption (Slurm and `timeout` use 143 for the latter)."""
  return 128 + stopping.requested_by()


def run(main: Callable[[list[str]], None]) -> None:
  """app.run, but a flag or input error is one line on stderr and exit status 2; Ctrl-C,
  SIGTERM and SIGHUP stop with one line saying what is saved; output whose reader has
  gone away is dropped while the run goes on."""
  def guarded(argv):
    if len(argv) > 1:
      fail(f"unexpected arguments {' '.join(argv[1:])!r}; flags look like --name=value")
    try:
      start_devices()
      main(argv)
    except InputError as e:
      fail(str(e))
    except SweepInterrupted as e:
      print(e, file=sys.stderr)
      sys.exit(_interrupted_status())
    except KeyboardInterrupt:
      # Outside a sweep's training: before it, or while writing the summary and plot
      # after it (or between the experiments of --experiment=all).
      print("interrupted while no run was training; every run that finished is in its "
            "results.jsonl; run the same command again to resume", file=sys.stderr)
      sys.exit(_interrupted_status())
  # Keeps JAX's start-up chatter about absent accelerator plugins off the console.
  logging.set_verbosity(logging.WARNING)
  with _pipe_safe_output(), _signals_as_ctrl_c():
    app.run(guarded, flags_parser=_parse_flags)
