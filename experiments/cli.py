"""Flags every experiment shares, and the runner that turns bad input into one line.

Defined once here so that launch.py can import every experiment without two modules
defining the same flag.
"""
import contextlib
import os
import sys
import time
from typing import Callable

from absl import app, flags, logging

from mtl_jax.data.datasets import DATASETS, DataConfig, MultiTaskData, load_dataset
from mtl_jax.errors import InputError
from mtl_jax.models import ENCODERS, EncoderSpec
from mtl_jax.data.driving import SceneConfig
from mtl_jax.train import OPTIMIZERS, TrainConfig

DATASET = flags.DEFINE_string(
    "dataset", "driving", f"Dataset to train on. Available: {', '.join(DATASETS)} "
    "(procedural road scenes with tasks pedestrian, car, stop_sign, traffic_light).")
ENCODER = flags.DEFINE_enum("encoder", "cnn", ENCODERS, "Shared encoder architecture.")
WIDTH = flags.DEFINE_integer(
    "width", 32, "Encoder width: hidden units per layer (mlp) or channels (cnn).", lower_bound=1)
DEPTH = flags.DEFINE_integer(
    "depth", 3, "Encoder depth: hidden layers (mlp) or stride-2 conv blocks (cnn).", lower_bound=1)
EPOCHS = flags.DEFINE_integer("epochs", 12, "Training epochs over the train split.", lower_bound=1)
BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Examples per optimizer step.", lower_bound=1)
LEARNING_RATE = flags.DEFINE_float("learning_rate", 3e-3, "Adam learning rate.", lower_bound=0.0)
SEEDS = flags.DEFINE_integer(
    "seeds", 3, "Number of seeds (0..N-1), trained together in one vmapped program; "
    "tables and plots show mean and 95% CI over them.", lower_bound=1)
MISSING_FRAC = flags.DEFINE_float(
    "missing_frac", 0.2, "Fraction of train/validation label cells hidden as missing "
    "('?', stored as -1); the masked loss ignores them. Must be in [0, 1).")
NUM_TRAIN = flags.DEFINE_integer("num_train", 6000, "Training examples.", lower_bound=1)
NUM_VAL = flags.DEFINE_integer("num_val", 1000, "Validation examples.", lower_bound=1)
NUM_TEST = flags.DEFINE_integer("num_test", 3000, "Test examples (all labels kept).", lower_bound=1)
IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", 32, "Side of the square scene images.", lower_bound=8, upper_bound=256)
OPTIMIZER = flags.DEFINE_enum("optimizer", "adam", list(OPTIMIZERS), "optax optimizer.")
DATA_SEED = flags.DEFINE_integer("data_seed", 0, "Seed of the generated dataset and its missing-label mask.")
OUT_DIR = flags.DEFINE_string(
    "out_dir", None, "Where results.jsonl, summary.csv and the plot go (default: runs/EXPERIMENT).")
PLOT_ONLY = flags.DEFINE_bool(
    "plot_only", False, "Train nothing: redraw the summary and plot from the runs of these "
    "flags already in --out_dir/results.jsonl.")
flags.register_validator("out_dir", lambda v: v is None or v.strip() != "",
                         message="--out_dir must not be empty")

flags.register_validator(
    "missing_frac", lambda v: 0.0 <= v < 1.0, message="--missing_frac must be in [0, 1)")
flags.register_validator(
    "learning_rate", lambda v: v > 0.0, message="--learning_rate must be positive")


def data_config() -> DataConfig:
  return DataConfig(dataset=DATASET.value, num_train=NUM_TRAIN.value, num_val=NUM_VAL.value,
                    num_test=NUM_TEST.value, missing_frac=MISSING_FRAC.value,
                    data_seed=DATA_SEED.value, scenes=SceneConfig(image_size=IMAGE_SIZE.value))


def encoder_spec() -> EncoderSpec:
  return EncoderSpec(ENCODER.value, WIDTH.value, DEPTH.value)


def train_config() -> TrainConfig:
  if BATCH_SIZE.value > NUM_TRAIN.value:
    raise InputError(f"--batch_size={BATCH_SIZE.value} exceeds --num_train={NUM_TRAIN.value}")
  return TrainConfig(LEARNING_RATE.value, BATCH_SIZE.value, EPOCHS.value, OPTIMIZER.value)


def out_dir(experiment: str) -> str:
  """The output folder; checked now, created only when the first result is written."""
  path = OUT_DIR.value or f"runs/{experiment}"
  if os.path.exists(path) and not os.path.isdir(path):
    raise InputError(f"--out_dir {path} exists and is not a directory")
  return path


def load_data_logged(config: DataConfig) -> MultiTaskData:
  """load_dataset, saying what it generated and how long it took."""
  start = time.perf_counter()
  data = load_dataset(config)
  tasks = ", ".join(data.task_names[:6]) + (f" and {len(data.task_names) - 6} more"
                                            if len(data.task_names) > 6 else "")
  print(f"  dataset {data.name} {data.input_shape}: train/val/test {len(data.train.y)}/"
        f"{len(data.val.y)}/{len(data.test.y)}, tasks {tasks}, {config.missing_frac:.0%} of "
        f"train/val labels missing ({time.perf_counter() - start:.1f}s)", flush=True)
  return data


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


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e))


def run(main: Callable[[list[str]], None]) -> None:
  """app.run, but a flag or input error is one line on stderr and exit status 2."""
  def guarded(argv):
    if len(argv) > 1:
      fail(f"unexpected arguments {' '.join(argv[1:])!r}; flags look like --name=value")
    try:
      main(argv)
    except InputError as e:
      fail(str(e))
  # Keeps JAX's start-up chatter about absent accelerator plugins off the console.
  logging.set_verbosity(logging.WARNING)
  app.run(guarded, flags_parser=_parse_flags)
