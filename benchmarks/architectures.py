"""What each sharing architecture costs per training step, against hard sharing with as
many parameters: the joint CNN of width 32 and depth 3 (the command line's default) on
32x32 driving scenes, batch 128, 1 seed, equal weighting, every architecture with its
default options, at T = 4 and T = 34 tasks.

  python -m benchmarks.architectures [--rounds=3]
  python -m benchmarks.architectures --rounds=1 --archs=mmoe,cross_stitch --tasks=4   (a quick check)

×hps: the architecture's step time divided by that of a hard-sharing network with the
same number of parameters. Parameter counts are exact (mtl_jax/budgets.py: the shapes
init would give); the hps width is the one whose count is closest to the
architecture's, found by bisection over widths (budgets.width_for_params; hps's count
grows as about 18 width² on these images, so the match is within 1.5%). That hps is
timed as its own case, so the ratio compares networks of equal capacity, not hps at
width 32, which has 21,444 parameters at T = 4 against MMoE's 128,788. The plain hps
at width 32 is a row of its own. The counts and matched hps widths:

  arch           T = 4: params  hps width     T = 34: params  hps width
  hps                   21,444         32             36,834         32
  separate              79,620         64            676,770        179
  mmoe                 128,788         82            512,938        154
  cgc                  123,596         80            905,126        209
  ple                  155,353         90          1,152,013        238
  cross_stitch          79,668         64            680,238        179
  mtan                  73,476         61            340,386        122
  dselect_k             79,644         64             95,214         58

Each case runs in a fresh process (`--case=NAME`, as benchmarks/combination.py),
alternated over rounds, best of rounds reported with the spread (worst / best), so no
case inherits another's thread pools or caches. Step time is the median epoch after
the first (which compiles) over its steps. Run it on a quiet machine: a CPU shared with
other work inflates the slow cases most.
"""
import json
import os
import sys
import time

import numpy as np
from absl import app, flags, logging
from benchmarks import own_process

from mtl_jax.models import MODELS

CASE = flags.DEFINE_string("case", None, "Run one case in this process and print its JSON row.")
ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds; cases alternate within each round.", lower_bound=1)
ARCHS = flags.DEFINE_list("archs", list(MODELS), "Architectures to time (default: all of models.MODELS).")
TASKS = flags.DEFINE_list("tasks", ["4", "34"], "Numbers of tasks T (driving_tasks has 34).")
BATCH, NUM_SCENES, EPOCHS, WIDTH, DEPTH = 128, 2048, 4, 32, 3
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INPUT_SHAPE = (32, 32, 3)


def _case_spec(name: str) -> dict:
  """mmoe-T4 | separate-T34 | hps-w64-T4 (hard sharing at width 64): the architecture,
  its width and the number of tasks."""
  kind, _, tasks = name.rpartition("-T")
  arch, _, width = kind.partition("-w")
  return {"arch": arch, "width": int(width or WIDTH), "tasks": int(tasks)}


def _encoder(width: int):
  from mtl_jax.models import EncoderSpec
  return EncoderSpec("cnn", width, DEPTH)


def run_case(name: str) -> dict:
  """Milliseconds per step of one case, 1 seed: the median of the epochs after the first."""
  import jax
  from mtl_jax.budgets import count_params
  from mtl_jax.data import driving
  from mtl_jax.models import SEPARATE_ARM, make_model
  from mtl_jax.train import TrainConfig, train
  spec = _case_spec(name)
  x, _ = driving.render_scenes(NUM_SCENES, 0)
  y = np.random.default_rng(0).integers(0, 2, (NUM_SCENES, spec["tasks"])).astype(np.int8)
  arm = SEPARATE_ARM if spec["arch"] == SEPARATE_ARM else "joint"
  model = make_model(arm, _encoder(spec["width"]), spec["tasks"], x.shape[1:], spec["arch"])
  times = []
  train(model, x, y, [0], TrainConfig(batch_size=BATCH, epochs=EPOCHS),
        log=lambda epoch, loss: times.append(time.perf_counter()))
  ms = 1000 * float(np.median(np.diff(times))) / (NUM_SCENES // BATCH)
  return {"case": name, "ms_per_step": ms, "backend": jax.default_backend(),
          "params": count_params(spec["arch"], _encoder(spec["width"]), spec["tasks"], x.shape[1:])}


def _in_process(name: str) -> dict:
  """One case in a fresh process."""
  return own_process.run_case(__file__, [f"--case={name}"], ROOT)


def matched_hps(arch: str, tasks: int) -> tuple[int, int, int]:
  """(the architecture's parameter count, the hps width with the closest count, that count)."""
  from mtl_jax.budgets import count_params, width_for_params
  params = count_params(arch, _encoder(WIDTH), tasks, INPUT_SHAPE)
  width = width_for_params("hps", _encoder(WIDTH), tasks, INPUT_SHAPE, params)
  return params, width, count_params("hps", _encoder(width), tasks, INPUT_SHAPE)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # no start-up chatter about absent TPU plugins
  if CASE.value:
    print(json.dumps(run_case(CASE.value)))
    return
  if any(a not in MODELS for a in ARCHS.value) or not all(t.isdigit() and int(t) >= 1 for t in TASKS.value):
    sys.exit(f"error: --archs takes {', '.join(MODELS)}; --tasks positive integers")
  tasks_list = [int(t) for t in TASKS.value]
  matches = {(arch, tasks): matched_hps(arch, tasks) for tasks in tasks_list for arch in ARCHS.value}
  cases = list(dict.fromkeys(
      case for (arch, tasks), (_, width, _) in matches.items()
      for case in (f"{arch}-T{tasks}", f"hps-T{tasks}" if width == WIDTH else f"hps-w{width}-T{tasks}")))
  results: dict[str, list[float]] = {}
  for r in range(ROUNDS.value):
    for case in (cases if r % 2 == 0 else cases[::-1]):
      row = _in_process(case)
      results.setdefault(case, []).append(row["ms_per_step"])
      print(f"  round {r + 1} {case}: {row['ms_per_step']:.2f} ms/step ({row['backend']})", flush=True)
  best = {case: min(v) for case, v in results.items()}
  spread = {case: max(v) / min(v) for case, v in results.items()}
  print(f"\njoint CNN width {WIDTH} depth {DEPTH} on {INPUT_SHAPE[0]}x{INPUT_SHAPE[1]} scenes, batch {BATCH}, "
        f"1 seed, ew, default options; best of {ROUNDS.value} rounds, each case in its own process "
        "(spread: worst / best); ×hps: ratio to hard sharing at the width (hps w) whose parameter "
        "count (hps params) is closest to the architecture's")
  header = f"{'arch':<13} {'T':>3} {'params':>9} {'ms/step':>8} {'spread':>6} {'hps w':>6} {'hps params':>10} " \
           f"{'hps ms':>7} {'×hps':>6}"
  print(header)
  for tasks in tasks_list:
    for arch in ARCHS.value:
      params, width, hps_params = matches[arch, tasks]
      case, hps_case = f"{arch}-T{tasks}", f"hps-T{tasks}" if width == WIDTH else f"hps-w{width}-T{tasks}"
      print(f"{arch:<13} {tasks:>3} {params:>9,} {best[case]:>8.2f} {spread[case]:>6.2f} {width:>6} "
            f"{hps_params:>10,} {best[hps_case]:>7.2f} {best[case] / best[hps_case]:>6.2f}")


if __name__ == "__main__":
  app.run(main)
