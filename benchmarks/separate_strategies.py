"""How to run T separate networks in one program: vmapped, in turn within each step, or
one network's epoch at a time, against a loop of single-network programs. (PyTorch's
time for the same networks: benchmarks/frameworks.py.)

  python -m benchmarks.separate_strategies [--quick] [--rounds=2] [--encoders=cnn,mlp] [--tasks=4,16,40]

Strategies, each through `mtl_jax.train.train` (1 seed, Adam, batch 128, 2,048 driving
scenes: 16 steps per epoch), CNN width 16 depth 3 and MLP width 256 depth 2:
  vmap           separate_models(..., strategy="vmap"): the T networks vmapped;
  in_turn        strategy="in_turn": lax.map over the T networks inside each step;
  one_at_a_time  strategy="one_at_a_time": each network's whole epoch before the next's
                 (a lax.map over the networks of a scan over the steps);
  loop           each network trained alone in its own compiled program. Its networks
                 all have the same shapes, so the loop's step is T times one network's:
                 the case trains 3 single-task networks one after another and takes
                 T x their median step, instead of compiling T programs.
Each case runs in its own fresh process (benchmarks/own_process.py), cases alternate
over rounds (reversed every other round), and the table gives the best of rounds with
the spread (worst / best). Step time is the median epoch after the first, per step.
"""
import json
import os
import sys
import time

import numpy as np
from absl import app, flags, logging

from benchmarks import own_process

CASE = flags.DEFINE_string("case", None, "Run one case (STRATEGY-ENCODER-T) here and print its JSON row.")
QUICK = flags.DEFINE_bool("quick", False, "T = 4 only, 1 round, 3 epochs: a check in a few minutes.")
ROUNDS = flags.DEFINE_integer("rounds", 2, "Rounds; cases alternate within each round.", lower_bound=1)
ENCODERS = flags.DEFINE_list("encoders", ["cnn", "mlp"], "Encoders to time.")
TASKS = flags.DEFINE_list("tasks", ["4", "16", "40"], "Numbers of separate networks T.")
STRATEGIES = ("vmap", "in_turn", "one_at_a_time")
BATCH, NUM_SCENES, LOOP_NETS = 128, 2048, 3
WIDTH, DEPTH = {"cnn": 16, "mlp": 256}, {"cnn": 3, "mlp": 2}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _data(num_tasks: int):
  from mtl_jax.data import driving
  x, _ = driving.render_scenes(NUM_SCENES, 0)
  return x, np.random.default_rng(0).integers(0, 2, (NUM_SCENES, num_tasks)).astype(np.int8)


def _ms_per_step(model, x, y, epochs: int) -> float:
  from mtl_jax.train import TrainConfig, train
  times = []
  train(model, x, y, [0], TrainConfig(batch_size=BATCH, epochs=epochs),
        log=lambda epoch, loss: times.append(time.perf_counter()))
  return 1000 * float(np.median(np.diff(times))) / (NUM_SCENES // BATCH)


def run_case(name: str, epochs: int) -> dict:
  """ms per step of T networks for one strategy: vmap-cnn-16, loop-mlp-4, ..."""
  import jax
  from mtl_jax.models import EncoderSpec, joint_model, separate_models
  strategy, kind, tasks = name.split("-")
  tasks = int(tasks)
  spec = EncoderSpec(kind, WIDTH[kind], DEPTH[kind])
  x, y = _data(tasks if strategy in STRATEGIES else LOOP_NETS)
  if strategy in STRATEGIES:
    ms = _ms_per_step(separate_models(spec, tasks, x.shape[1:], strategy=strategy), x, y, epochs)
  else:  # the loop
    single = joint_model(spec, 1, x.shape[1:])
    ms = tasks * float(np.median([_ms_per_step(single, x, y[:, j:j + 1], epochs) for j in range(LOOP_NETS)]))
  return {"case": name, "ms_per_step": ms, "backend": jax.default_backend()}


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  epochs = 3 if QUICK.value else 4
  if CASE.value:
    print(json.dumps(run_case(CASE.value, epochs)))
    return
  tasks_list = [4] if QUICK.value else [int(t) for t in TASKS.value]
  rounds = 1 if QUICK.value else ROUNDS.value
  if any(k not in WIDTH for k in ENCODERS.value):
    sys.exit(f"error: --encoders takes {', '.join(WIDTH)}")
  # The loop times one network, whatever T: it is run once per encoder (as T = 1) and
  # scaled by T in the table.
  cases = [f"{s}-{k}-{t}" for k in ENCODERS.value for t in tasks_list for s in STRATEGIES]
  cases += [f"loop-{k}-1" for k in ENCODERS.value]
  results: dict[str, list[float]] = {}
  for r in range(rounds):
    for case in (cases if r % 2 == 0 else cases[::-1]):
      row = own_process.run_case(__file__, [f"--case={case}", f"--quick={QUICK.value}"], ROOT)
      results.setdefault(case, []).append(row["ms_per_step"])
      print(f"  round {r + 1} {case}: {row['ms_per_step']:.2f} ms/step ({row['backend']})", flush=True)
  best = {case: min(v) for case, v in results.items()}
  spread = {case: max(v) / min(v) for case, v in results.items()}
  print(f"\nseparate networks, batch {BATCH}, 1 seed, Adam; ms per step of all T networks, best of "
        f"{rounds} round(s), each case in its own process; (spread: worst / best); ratio columns: "
        "the loop's time over the strategy's, higher is faster")
  head = "| encoder | T | " + " | ".join(f"{s} ms (spread)" for s in STRATEGIES) + " | loop ms | " + \
         " | ".join(f"{s} / loop" for s in STRATEGIES) + " |"
  print(head)
  print("|" + "---|" * (head.count("|") - 1))
  for k in ENCODERS.value:
    for t in tasks_list:
      ms = {s: best[f"{s}-{k}-{t}"] for s in STRATEGIES}
      cells = [f"{k} w{WIDTH[k]} d{DEPTH[k]}", str(t)]
      cells += [f"{ms[s]:.2f} ({spread[f'{s}-{k}-{t}']:.2f})" for s in STRATEGIES]
      loop = t * best[f"loop-{k}-1"]
      cells += [f"{loop:.2f} ({spread[f'loop-{k}-1']:.2f})"] + [f"{loop / ms[s]:.2f}" for s in STRATEGIES]
      print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
  app.run(main)
