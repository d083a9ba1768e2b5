"""What the combination step costs: equal weighting against plain training before the
combination step existed, and per-task gradients of the shared parameters, vmapped or
in turn (lax.map) over the task axis.

  python -m benchmarks.combination [--before=PATH] [--rounds=3]

Each case runs in a fresh process (`--case=NAME`), alternated over rounds, best of
rounds reported with the spread, so neither side inherits the other's thread pools or
caches. --before=PATH times the equal-weighting case with the package at PATH too
(a checkout of the commit before the combination step, e.g. made with
`git worktree add /tmp/before dcc69ca`), for the before/after row.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

CASE = flags.DEFINE_string("case", None, "Run one case in this process and print its JSON row.")
BEFORE = flags.DEFINE_string("before", None, "A checkout of the package before the combination step.")
ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds; cases alternate within each round.")
BATCH, NUM_SCENES, EPOCHS = 128, 2048, 4
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _case_spec(name: str) -> dict:
  """ew-T4 | jacobian-map-T4 | jacobian-vmap-T34 ...: the method and number of tasks."""
  kind, _, tasks = name.rpartition("-T")
  return {"kind": kind, "tasks": int(tasks)}


def run_case(name: str) -> dict:
  """Milliseconds per step of the width-32 depth-3 joint CNN at batch 128, 1 seed:
  the median of the epochs after the first."""
  import jax
  import jax.numpy as jnp
  from mtl_jax.data import driving
  from mtl_jax.models import EncoderSpec, make_model
  from mtl_jax.train import TrainConfig, train
  spec = _case_spec(name)
  x, _ = driving.render_scenes(NUM_SCENES, 0)
  y = np.random.default_rng(0).integers(0, 2, (NUM_SCENES, spec["tasks"])).astype(np.int8)
  model = make_model("joint", EncoderSpec("cnn", 32, 3), spec["tasks"], x.shape[1:])
  extra = {}
  if spec["kind"] != "ew":  # combines per-task gradients of the shared parameters
    from mtl_jax.methods import SHARED_GRADS, Method, Update
    from mtl_jax import step
    in_turn = spec["kind"] == "jacobian-map"
    step.tasks_in_turn_default = lambda: in_turn
    extra["method"] = Method(lambda n: (), lambda terms, state, key: (Update(jnp.ones_like(terms.losses_T)), state),
                             frozenset({SHARED_GRADS}))
  times = []
  train(model, x, y, [0], TrainConfig(batch_size=BATCH, epochs=EPOCHS),
        log=lambda epoch, loss: times.append(time.perf_counter()), **extra)
  steps = NUM_SCENES // BATCH
  ms = 1000 * float(np.median(np.diff(times))) / steps
  return {"case": name, "ms_per_step": ms, "backend": jax.default_backend()}


def _in_process(name: str, root: str) -> dict:
  """One case in a fresh process, importing the package at `root`."""
  out = subprocess.run([sys.executable, os.path.abspath(__file__), f"--case={name}"],
                       cwd=root, capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONPATH": root})
  return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv):
  del argv
  if CASE.value:
    print(json.dumps(run_case(CASE.value)))
    return
  # The before case runs this file from ROOT against the package at --before.
  cases = [("ew-T4", ROOT), *([("before-ew-T4", BEFORE.value)] if BEFORE.value else []),
           ("jacobian-map-T4", ROOT), ("jacobian-vmap-T4", ROOT),
           ("ew-T34", ROOT), ("jacobian-map-T34", ROOT), ("jacobian-vmap-T34", ROOT)]
  results: dict[str, list[float]] = {}
  for r in range(ROUNDS.value):
    for label, root in (cases if r % 2 == 0 else cases[::-1]):
      row = _in_process(label.removeprefix("before-"), root)
      results.setdefault(label, []).append(row["ms_per_step"])
      print(f"  round {r + 1} {label}: {row['ms_per_step']:.2f} ms/step", flush=True)
  print(f"\nwidth-32 depth-3 joint CNN, batch {BATCH}, 1 seed, {NUM_SCENES // BATCH} steps per epoch; "
        f"best of {ROUNDS.value} rounds (spread: worst / best)")
  print(f"{'case':<22} {'ms/step':>8} {'spread':>7}")
  for label, values in results.items():
    print(f"{label:<22} {min(values):>8.2f} {max(values) / min(values):>7.2f}")


if __name__ == "__main__":
  app.run(main)
