"""Probabilities and decisions for new data from runs saved with --save_params.

  python launch.py --dataset=csv:train.csv --save_params --out_dir=runs/mine
  python -m mtl_jax.predict --run_dir=runs/mine --arm=joint --dataset=csv:new.csv --out=probabilities.csv

The new file needs the run's feature columns, by name and in any order; label columns
may be there or not and are left out. It is standardised with the training split's
statistics, saved with the run. The output has one row per example of the new file, in
its order: `example` (its index from 0), then per task `probability:TASK` (the mean over
the chosen seeds) and `decision:TASK` (1 where the probability is above the task's
threshold: 0.5, or the run's own from --threshold=val, averaged over the seeds).
Bad input is one `error:` line, exit status 2, and nothing written.
"""
import os
import sys

from absl import app, flags, logging

from mtl_jax import inference
from mtl_jax.errors import InputError

RUN_DIR = flags.DEFINE_string("run_dir", None, "The --out_dir of a launch run with --save_params.")
DATASET = flags.DEFINE_string(
    "dataset", None, "The new data: csv:PATH or arff:PATH (the run's feature columns by name; label columns "
    "optional and left out) or npz:PATH (an array x, for runs trained on unnamed inputs).")
OUT = flags.DEFINE_string("out", None, "Where to write the predictions, atomically: a .csv or "
                          ".arff file.")
ARM = flags.DEFINE_string("arm", None, "Use the saved runs of this arm (joint, separate, ...); "
                          "needed when the folder holds more than one configuration.")
SEEDS = flags.DEFINE_list("seed", [], "Use these seeds only (default: every saved seed of the "
                          "configuration; probabilities are their mean).")
HASH = flags.DEFINE_string("hash", None, "Use the one saved run with this record hash.")
for _name in ("run_dir", "dataset", "out"):
  flags.mark_flag_as_required(_name)


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _parse(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(str(e))


def _seeds() -> list[int]:
  try:
    return [int(seed) for seed in SEEDS.value]
  except ValueError:
    raise InputError(f"--seed takes whole numbers; got {','.join(SEEDS.value)}") from None


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {' '.join(argv[1:])!r}; flags look like --name=value")
  try:
    # `~` expanded, as launch.py's --out_dir: the shell leaves `--out=~/p.csv` alone.
    print(inference.predict_file(os.path.expanduser(RUN_DIR.value), DATASET.value,
                                 os.path.expanduser(OUT.value), ARM.value, _seeds(), HASH.value))
  except InputError as e:
    _fail(str(e))
  except KeyboardInterrupt:
    _fail("interrupted; nothing was written")


if __name__ == "__main__":
  logging.set_verbosity(logging.WARNING)  # JAX's start-up lines about absent accelerators
  app.run(main, flags_parser=_parse)
