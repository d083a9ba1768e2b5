"""The package's training step with UPGrad, MGDA and PCGrad against TorchJD's, on the
same network: ms per step, and each framework's cost over its own summed-loss step.

  python -m benchmarks.torchjd_compare --rounds=3

Optional: needs torch (CPU) and torchjd 0.18.0, which the package does not require:
  pip install torch==2.13.0   # the CPU build, as for benchmarks/torch_reference.py
  pip install "torchjd[quadprog-projector]==0.18.0"   # UPGrad's QP solver (quadprog)
Without them only the jax cases run (--frameworks=jax).

Cases, --case=FRAMEWORK-AGGREGATOR-T (e.g. torch-upgrad-T34), each in a fresh process,
alternated over --rounds (reversed every other round), best of rounds reported with the
spread (worst / best):
  jax    mtl_jax.train.train on the joint width-32 depth-3 CNN (make_model("joint", ...))
         at batch 128, 1 seed, TrainConfig(method=AGGREGATOR), Adam 3e-3, as
         benchmarks/combination.py's run_case times it: the median epoch after the first,
         16 steps per epoch, the epoch loop compiled (lax.scan);
  torch  the same CNN in PyTorch eager (benchmarks/torch_reference.py's encoder), one
         nn.Linear(F, 1) head per task, each task's masked logistic loss (the package's
         per-task term of J, valid labels summed, divided by the batch size) from its own
         head, Adam 3e-3. Aggregators: TorchJD 0.18.0's
         torchjd.autojac.mtl_backward(losses, features=features) (per-task gradients of
         the heads into .grad, the Jacobian of the shared encoder into .jac) then
         torchjd.autojac.jac_to_grad(encoder parameters, UPGrad() | MGDA() | PCGrad()),
         at their defaults; ew: torch.stack(losses).sum().backward(). Timed like jax: 4
         epochs of the same 16 resident batches, the median epoch after the first.
Both frameworks use the same number of threads: XLA's CPU client sizes its pool to the
cores it may run on, and torch.set_num_threads is set to that count
(len(os.sched_getaffinity(0)): 2 on the 2-core benchmark machine); torch's count is
printed with each row.
The labels are random bits, as in benchmarks/combination.py (no missing label), so every
task is present in every batch; the per-step cost does not depend on what they say.
"""
import json
import os
import shutil
import tempfile
import time

import numpy as np
from absl import app, flags
from benchmarks import own_process

CASE = flags.DEFINE_string("case", None, "Run one case in this process and print its JSON row.")
ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds; cases alternate within each round.")
TASKS = flags.DEFINE_list("tasks", ["4", "34"], "Numbers of tasks.")
AGGREGATORS = flags.DEFINE_list("aggregators", ["ew", "upgrad", "mgda", "pcgrad"],
                                "ew (summed loss) and any of upgrad, mgda, pcgrad.")
FRAMEWORKS = flags.DEFINE_list("frameworks", ["jax", "torch"], "jax, torch or both.")
DATA = flags.DEFINE_string("data", None, "An .npz of the scenes (x, y), written by the parent process, so that "
                           "a torch case does not start JAX to render them; rendered here if absent.")
BATCH, NUM_SCENES, EPOCHS, WIDTH, DEPTH = 128, 2048, 4, 32, 3
STEPS_PER_EPOCH = NUM_SCENES // BATCH
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _case_spec(name: str) -> dict:
  framework, aggregator, tasks = name.split("-")
  assert framework in ("jax", "torch") and aggregator in ("ew", "upgrad", "mgda", "pcgrad"), name
  return {"framework": framework, "aggregator": aggregator, "tasks": int(tasks.removeprefix("T"))}


def _scenes() -> np.ndarray:
  from mtl_jax.data import driving
  return driving.render_scenes(NUM_SCENES, 0)[0]


def _labels(num_tasks: int) -> np.ndarray:
  """Random bits, as benchmarks/combination.py draws them."""
  return np.random.default_rng(0).integers(0, 2, (NUM_SCENES, num_tasks)).astype(np.int8)


def _data(num_tasks: int):
  if DATA.value:
    with np.load(DATA.value) as saved:
      return saved["x"], saved[f"y{num_tasks}"]
  return _scenes(), _labels(num_tasks)


def run_jax(aggregator: str, num_tasks: int) -> dict:
  import jax
  from mtl_jax.models import EncoderSpec, make_model
  from mtl_jax.train import TrainConfig, train
  x, y = _data(num_tasks)
  model = make_model("joint", EncoderSpec("cnn", WIDTH, DEPTH), num_tasks, x.shape[1:])
  times = []
  train(model, x, y, [0], TrainConfig(batch_size=BATCH, epochs=EPOCHS, method=aggregator),
        log=lambda epoch, loss: times.append(time.perf_counter()))
  ms = 1000 * float(np.median(np.diff(times))) / STEPS_PER_EPOCH
  return {"ms_per_step": ms, "backend": jax.default_backend(), "jax": jax.__version__}


def run_torch(aggregator: str, num_tasks: int) -> dict:
  import torch
  from torch import nn
  from benchmarks import torch_reference
  threads = len(os.sched_getaffinity(0))  # what XLA's CPU client uses
  torch.set_num_threads(threads)
  torch.manual_seed(0)
  x, y = _data(num_tasks)
  encoder, features = torch_reference._encoder("cnn", WIDTH, DEPTH, x.shape[1:])
  heads = nn.ModuleList([nn.Linear(features, 1) for _ in range(num_tasks)])
  shared = list(encoder.parameters())
  optimizer = torch.optim.Adam([*shared, *heads.parameters()], lr=3e-3)
  batches = torch_reference._batches(x, y, BATCH, STEPS_PER_EPOCH)
  if aggregator != "ew":
    import torchjd
    from torchjd import aggregation
    from torchjd.autojac import jac_to_grad, mtl_backward
    combine = {"upgrad": aggregation.UPGrad, "mgda": aggregation.MGDA, "pcgrad": aggregation.PCGrad}[aggregator]()

  def task_losses(xb, yb):
    features_BxF = encoder(xb)
    return features_BxF, [torch_reference.masked_logistic_loss(head(features_BxF), yb[:, t:t + 1])
                          for t, head in enumerate(heads)]

  def step(xb, yb):
    optimizer.zero_grad(set_to_none=True)
    features_BxF, losses = task_losses(xb, yb)
    if aggregator == "ew":
      torch.stack(losses).sum().backward()
    else:
      mtl_backward(losses, features=features_BxF)
      jac_to_grad(shared, combine)
    optimizer.step()

  epoch_ends = []
  for _ in range(EPOCHS):
    for xb, yb in batches:
      step(xb, yb)
    epoch_ends.append(time.perf_counter())
  assert all(p.grad is not None and not hasattr(p, "jac") for p in shared)
  ms = 1000 * float(np.median(np.diff(epoch_ends))) / STEPS_PER_EPOCH
  row = {"ms_per_step": ms, "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
  if aggregator != "ew":
    row["torchjd"] = getattr(torchjd, "__version__", None) or _version("torchjd")
  return row


def _version(package: str) -> str:
  from importlib import metadata
  return metadata.version(package)


def run_case(name: str) -> dict:
  spec = _case_spec(name)
  runner = run_jax if spec["framework"] == "jax" else run_torch
  return {"case": name, **runner(spec["aggregator"], spec["tasks"])}


def _in_process(name: str, data: str) -> dict:
  return own_process.run_case(__file__, [f"--case={name}", f"--data={data}"], ROOT)


def main(argv):
  del argv
  if CASE.value:
    print(json.dumps(run_case(CASE.value)))
    return
  cases = [f"{framework}-{aggregator}-T{tasks}" for tasks in TASKS.value for aggregator in AGGREGATORS.value
           for framework in FRAMEWORKS.value]
  results: dict[str, list[float]] = {}
  info = {}
  folder = tempfile.mkdtemp(prefix="torchjd_compare_")
  data = os.path.join(folder, "scenes.npz")
  np.savez(data, x=_scenes(), **{f"y{tasks}": _labels(int(tasks)) for tasks in TASKS.value})
  try:
    for r in range(ROUNDS.value):
      for name in (cases if r % 2 == 0 else cases[::-1]):
        row = _in_process(name, data)
        results.setdefault(name, []).append(row["ms_per_step"])
        info.update({k: v for k, v in row.items() if k not in ("case", "ms_per_step")})
        print(f"  round {r + 1} {name}: {row['ms_per_step']:.2f} ms/step", flush=True)
  finally:
    shutil.rmtree(folder)
  print(f"\nwidth-{WIDTH} depth-{DEPTH} joint CNN, batch {BATCH}, 1 seed, {STEPS_PER_EPOCH} steps per epoch; "
        f"best of {ROUNDS.value} rounds (spread: worst / best); "
        + ", ".join(f"{k} {v}" for k, v in sorted(info.items())))
  best = {name: min(values) for name, values in results.items()}
  spread = {name: max(values) / min(values) for name, values in results.items()}

  def ms(name):
    return f"{best[name]:.2f}" if name in best else "-"

  def spread_of(name):
    return f"{spread[name]:.2f}" if name in spread else "-"

  def ratio(a, b):
    return f"{best[a] / best[b]:.2f}" if a in best and b in best else "-"

  print(f"{'T':>3} {'aggregator':<10} {'jax ms':>8} {'spread':>6} {'torch ms':>9} {'spread':>6} "
        f"{'torch/jax':>9} {'jax/own ew':>10} {'torch/own ew':>12}")
  for tasks in TASKS.value:
    for aggregator in AGGREGATORS.value:
      j, t = f"jax-{aggregator}-T{tasks}", f"torch-{aggregator}-T{tasks}"
      print(f"{tasks:>3} {aggregator:<10} {ms(j):>8} {spread_of(j):>6} {ms(t):>9} {spread_of(t):>6} "
            f"{ratio(t, j):>9} {ratio(j, f'jax-ew-T{tasks}'):>10} {ratio(t, f'torch-ew-T{tasks}'):>12}")

if __name__ == "__main__":
  app.run(main)
