"""What the combination step costs: equal weighting against plain training before the
combination step existed, and per-task gradients of the shared parameters, vmapped or
in turn (lax.map) over the task axis; with --methods, every registered method's step
time relative to equal weighting at T = 4 and T = 34.

  python -m benchmarks.combination [--before=PATH] [--rounds=3]
  python -m benchmarks.combination --methods [--rounds=2] [--only=uw,gls]
  python -m benchmarks.combination --flops

Each case runs in a fresh process (`--case=NAME`), alternated over rounds, best of
rounds reported with the spread, so neither side inherits the other's thread pools or
caches. --before=PATH times the equal-weighting case with the package at PATH too
(a checkout of the commit before the combination step, e.g. made with
`git worktree add /tmp/before dcc69ca`), for the before/after row.
"""
import json
import os
import time

import numpy as np
from absl import app, flags
from benchmarks import own_process

CASE = flags.DEFINE_string("case", None, "Run one case in this process and print its JSON row.")
BEFORE = flags.DEFINE_string("before", None, "A checkout of the package before the combination step.")
ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds; cases alternate within each round.")
METHODS = flags.DEFINE_bool("methods", False, "Time every registered method (case method:NAME-T4/T34) "
                            "instead of the combination-step cases.")
FLOPS = flags.DEFINE_bool("flops", False, "Print XLA's FLOP count of one step's gradient for "
                          "equal weighting and the Jacobian methods at T = 4 and T = 34 (no timing).")
ONLY = flags.DEFINE_list("only", None, "With --methods: time only these methods (ew is always timed).")
BATCH, NUM_SCENES, EPOCHS = 128, 2048, 4
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _case_spec(name: str) -> dict:
  """ew-T4 | jacobian-map-T4 | jacobian-vmap-T34 | method:upgrad-T34 ...: the kind and
  number of tasks."""
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
  extra, config = {}, TrainConfig(batch_size=BATCH, epochs=EPOCHS)
  if spec["kind"].startswith("method:"):  # a registered method, as training runs it
    config = TrainConfig(batch_size=BATCH, epochs=EPOCHS, method=spec["kind"].removeprefix("method:"))
  elif spec["kind"] != "ew":  # combines per-task gradients of the shared parameters
    from mtl_jax.methods import SHARED_GRADS, Method, Update
    from mtl_jax import step
    in_turn = spec["kind"] == "jacobian-map"
    step.tasks_in_turn_default = lambda: in_turn
    extra["method"] = Method(lambda n: (), lambda terms, state, key: (Update(jnp.ones_like(terms.losses_T)), state),
                             frozenset({SHARED_GRADS}))
  times = []
  train(model, x, y, [0], config, log=lambda epoch, loss: times.append(time.perf_counter()), **extra)
  steps = NUM_SCENES // BATCH
  ms = 1000 * float(np.median(np.diff(times))) / steps
  return {"case": name, "ms_per_step": ms, "backend": jax.default_backend()}


def _in_process(name: str, root: str) -> dict:
  """One case in a fresh process, importing the package at `root`."""
  return own_process.run_case(__file__, [f"--case={name}"], root)


def main(argv):
  del argv
  if CASE.value:
    print(json.dumps(run_case(CASE.value)))
    return
  if METHODS.value:
    return time_methods()
  if FLOPS.value:
    return count_flops()
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


def time_methods() -> None:
  """Every method at T = 4 and T = 34, each in its own process, rounds alternating the
  order; ratios to ew's step at the same T, from the best of rounds."""
  from mtl_jax import methods
  names = [n for n in methods.METHODS if not ONLY.value or n == "ew" or n in ONLY.value]
  cases = [f"method:{name}-T{tasks}" for tasks in (4, 34) for name in names]
  results: dict[str, list[float]] = {}
  for r in range(ROUNDS.value):
    for case in (cases if r % 2 == 0 else cases[::-1]):
      row = _in_process(case, ROOT)
      results.setdefault(case, []).append(row["ms_per_step"])
      print(f"  round {r + 1} {case}: {row['ms_per_step']:.2f} ms/step", flush=True)
  print(f"\nwidth-32 depth-3 joint CNN, batch {BATCH}, 1 seed; best of {ROUNDS.value} rounds, "
        "each case in its own process; ×ew: ratio to equal weighting at the same T")
  print(f"{'method':<12} {'needs':<13} {'T=4 ms':>8} {'×ew':>6} {'T=34 ms':>8} {'×ew':>6}")
  best = {case: min(v) for case, v in results.items()}
  for name in names:
    needs = ",".join(sorted(methods.build_method(name).needs)) or "-"
    cells = []
    for tasks in (4, 34):
      ms = best[f"method:{name}-T{tasks}"]
      cells.append(f"{ms:>8.2f} {ms / best[f'method:ew-T{tasks}']:>6.2f}")
    print(f"{name:<12} {needs:<13} " + " ".join(cells))


def count_flops(methods_counted=("ew", "upgrad", "mgda", "pcgrad")) -> None:
  """XLA's FLOP count of one step's gradient (forward, backward and the combination; not
  Adam) on the width-32 CNN at batch 128: what the exact per-task Jacobian costs against
  the summed loss, whatever the framework. XLA counts a loop's body once, so the count
  is taken of the loop-free program: the whole batch in one micro-batch, the task axis
  vmapped (the same FLOPs as in turn)."""
  import jax
  import jax.numpy as jnp
  from mtl_jax import methods, step
  from mtl_jax.models import EncoderSpec, make_model
  print(f"width-32 depth-3 joint CNN, batch {BATCH}: GFLOP per step's gradient (x ew)")
  for tasks in (4, 34):
    model = make_model("joint", EncoderSpec("cnn", 32, 3), tasks, (32, 32, 3))
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    shared = sum(leaf.size for k in model.shared for leaf in jax.tree.leaves(params[k]))
    data = (jax.ShapeDtypeStruct((BATCH, 32, 32, 3), jnp.uint8), jax.ShapeDtypeStruct((BATCH, tasks), jnp.int8),
            jax.ShapeDtypeStruct((BATCH,), jnp.int32))
    flops = {}
    for name in methods_counted:
      method = methods.build_method(name)
      state = jax.eval_shape(lambda: methods.init_state(method, tasks, shared))
      gradient = step.make_batch_gradient(model, method, BATCH, BATCH, tasks_in_turn=False)
      compiled = jax.jit(gradient).lower(params, state, jax.random.PRNGKey(0), jnp.bool_(False), *data).compile()
      flops[name] = compiled.cost_analysis()["flops"]
    print(f"T = {tasks:>2}: " + ", ".join(f"{name} {f / 1e9:.2f} ({f / flops['ew']:.2f}x)" for name, f in flops.items()))


if __name__ == "__main__":
  app.run(main)
