"""Why the MLP stays near 0.6 test AUC on the driving scenes, and what fixes it.

  python -m benchmarks.mlp_on_images --quick   # 1.5-3 minutes on a 2-core CPU (8 epochs, fewer rows)
  python -m benchmarks.mlp_on_images           # about 6 minutes: adds 48k scenes, the experiment's defaults
  python -m benchmarks.mlp_on_images --json=mlp_on_images.json

Trains the joint network (depth 3, Adam, batch 128, best-validation epoch, 20% of
train/validation labels missing) with the package's own load_dataset, make_model,
train, predict and metrics, varying one thing at a time:

  inputs   the package's make_model as checked out ("package"); /255 (the package's
           _as_float before issue 12: pixels in [0, 1], mean 0.51), /127.5 - 1
           (pixels in [-1, 1], centred), per-channel standardised (train mean / std),
           and the package's init (lecun normal) vs He normal;
  lr       3e-4, 1e-3, 3e-3;  width  64, 256, 512;  train scenes  N, 4N (, 16N);
  a CNN (width 32) for reference, with either input scaling.

Each row: the selected epochs (per seed); the training J of a constant predictor
("chance"), the mean training J of the last epoch and the best validation J; the
share of first-layer ReLUs off for every one of 1000 training images ("dead"); train
and test ROC-AUC at the selected epoch (mean over tasks and seeds) and test AUC per task.

Finds (2 seeds, N = 3000, 10 epochs): with /255 inputs 88-99% of the MLP's first-layer
units are dead after training at lr 3e-3 (92% at 1e-3, 72% at 3e-4, 94% with He
init), so the MLP cannot fit even its training set (train J 2.05 against chance 2.12,
train AUC 0.64, test 0.58) at any width, and 16x more scenes barely help (test AUC
0.63 at 48000). Inputs >= 0 give all weights of a unit gradients of one sign, so one
Adam step moves the unit's pre-activation by about lr * sum(x) ~ 3e-3 * 1570 ~ 5 on
every image at once; a unit pushed below zero on all images never recovers. Centred
inputs (/127.5 - 1, or standardised) leave no unit dead: the MLP memorises (train J
0.2-0.5) and is then limited by data, as an MLP on pixels is: it overfits after 2
epochs, and test AUC is 0.60 at 3000 scenes, 0.66 at 12000, 0.75 at 48000 (/255: 0.58,
0.63, 0.63), at any width (0.60-0.61 at 64-512); the CNN gets 0.76 from 3000 scenes
and also gains from centring (0.77).
"""
import dataclasses
import json
import time
from typing import Callable, Optional

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from mtl_jax import metrics, models
from mtl_jax.data.datasets import DataConfig, MultiTaskData, load_dataset
from mtl_jax.losses import MISSING
from mtl_jax.models import EncoderSpec, Model, MultiTaskNet, make_model
from mtl_jax.train import TrainConfig, predict, train

QUICK = flags.DEFINE_bool("quick", False, "Fewer rows, 8 epochs (1.5-3 minutes on 2 cores).")
SEEDS = flags.DEFINE_integer("seeds", 2, "Seeds per row.", lower_bound=1)
NUM_TRAIN = flags.DEFINE_integer("num_train", 3000, "Training scenes N (the data rows add 4N, 16N).",
                                 lower_bound=128)
EPOCHS = flags.DEFINE_integer("epochs", None, "Epochs per row (default 10, 8 with --quick).", lower_bound=1)
JSON = flags.DEFINE_string("json", None, "Also write the rows to this JSON file.")

DEPTH = 3
LR = 3e-3  # the experiments' default
DEAD_PROBE = 1000  # training images on which a "dead" unit is off
# Input preprocessing of uint8 images, applied inside the model like the package's
# _as_float. "package" is make_model as the checkout has it; the others are the package's
# own network (MultiTaskNet, same init) with the scaling fixed here, so that the rows
# keep measuring the same thing whatever the package's scaling becomes.
INPUTS = {
    "package": None,
    "/255": lambda x, stats: x.astype(jnp.float32) / 255.0,  # the package's scaling before issue 12
    "/127.5-1": lambda x, stats: x.astype(jnp.float32) / 127.5 - 1.0,
    "standardised": lambda x, stats: (x.astype(jnp.float32) / 255.0 - stats[0]) / stats[1],
}


@dataclasses.dataclass(frozen=True)
class Row:
  section: str
  encoder: str = "mlp"
  width: int = 256
  inputs: str = "/255"  # a key of INPUTS
  init: str = "lecun"  # lecun (flax's default, the package's) or he
  lr: float = LR
  scale: int = 1  # training scenes as a multiple of --num_train
  epochs: Optional[int] = None  # default --epochs


class _HeMLP(nn.Module):
  """The package's MLPEncoder with He-normal kernels (same parameter names)."""
  width: int
  depth: int

  @nn.compact
  def __call__(self, x):
    h = x.reshape(x.shape[0], -1)
    for _ in range(self.depth):
      h = nn.relu(nn.Dense(self.width, kernel_init=nn.initializers.he_normal())(h))
    return h


class _HeNet(nn.Module):
  width: int
  depth: int
  num_tasks: int

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.num_tasks, name="heads")(_HeMLP(self.width, self.depth, name="encoder")(x))


def _prep(row: "Row", stats) -> Callable:
  fn = INPUTS[row.inputs]
  if fn is None:  # the package's own scaling (for counting dead units only)
    scale = getattr(models, "PIXEL_SCALE", {}).get(row.encoder, lambda x: x / 255.0)
    return lambda x: scale(x.astype(jnp.float32))
  return lambda x: fn(x, stats)


def build(row: Row, num_tasks: int, input_shape, stats) -> Model:
  """The package's joint model, or the same network with other inputs or init."""
  spec = EncoderSpec(row.encoder, row.width, DEPTH)
  if row.inputs == "package":
    if row.init != "lecun":
      raise ValueError("the package's model has the package's init")
    return make_model("joint", spec, num_tasks, input_shape)
  net = _HeNet(row.width, DEPTH, num_tasks) if row.init == "he" else MultiTaskNet(spec, num_tasks)
  dummy = jnp.zeros((1, *input_shape), jnp.float32)
  prep = _prep(row, stats)
  return Model(init=lambda key: net.init(key, dummy)["params"],
               apply=lambda params, x: net.apply({"params": params}, prep(x)), shared=("encoder",))


def chance_loss(y_NxT: np.ndarray) -> float:
  """J of the best constant predictor: per task, the labelled share times the label entropy."""
  total = 0.0
  for y in y_NxT.T:
    valid = y[y != MISSING]
    p = valid.mean()
    total += len(valid) / len(y) * -(p * np.log(p) + (1 - p) * np.log(1 - p))
  return total


def dead_share(row: Row, params, x, stats) -> float:
  """Share of first-layer ReLUs off for every image in x, mean over seeds (MLP only)."""
  if row.encoder != "mlp":
    return float("nan")
  layer = params["encoder"]["Dense_0"]
  h = np.asarray(_prep(row, stats)(jnp.asarray(x))).reshape(len(x), -1)
  kernel, bias = np.asarray(layer["kernel"]), np.asarray(layer["bias"])
  return float(np.mean([np.all(h @ kernel[s] + bias[s] <= 0, axis=0).mean() for s in range(len(kernel))]))


def test_auc_SxT(model: Model, params, x, y) -> np.ndarray:
  return np.array([metrics.task_metrics(logits, y)["auc"] for logits in predict(model, params, x)])


def measure(row: Row, data: MultiTaskData, seeds: list[int], epochs: int) -> dict:
  start = time.perf_counter()
  x = data.train.x[:10_000].astype(np.float32) / 255.0
  stats = (x.mean((0, 1, 2)), x.std((0, 1, 2)))  # per channel, train split only
  model = build(row, len(data.task_names), data.input_shape, stats)
  config = TrainConfig(learning_rate=row.lr, batch_size=128, epochs=epochs, select_epoch="best_val")
  result = train(model, data.train.x, data.train.y, seeds, config, validation=(data.val.x, data.val.y),
                 task_names=data.task_names)
  train_auc = test_auc_SxT(model, result.params, data.train.x, data.train.y)
  test_auc = test_auc_SxT(model, result.params, data.test.x, data.test.y)
  val_J = result.val_loss_ExS.mean(1)
  return dict(
      **dataclasses.asdict(row), epochs_run=epochs, num_train=len(data.train.y), seeds=len(seeds),
      selected_epochs=[int(e) for e in result.selected_epoch_S],
      train_J_chance=chance_loss(data.train.y), train_J_last=float(result.loss_ExS[-1].mean()),
      val_J_best=float(val_J.min()), val_J_last=float(val_J[-1]),
      dead=dead_share(row, result.params, data.train.x[:DEAD_PROBE], stats),
      train_auc=metrics.mean_over_tasks(train_auc.mean(0)),
      test_auc=metrics.mean_over_tasks(test_auc.mean(0)),
      test_auc_task=dict(zip(data.task_names, test_auc.mean(0).round(4).tolist())),
      seconds=round(time.perf_counter() - start, 1))


def rows(quick: bool) -> list[Row]:
  out = [Row("inputs", inputs=i) for i in ("package", "/255")] + [Row("inputs", inputs="/255", init="he")]
  out += [Row("inputs", inputs=i) for i in ("/127.5-1", "standardised")]
  lrs = (3e-4,) if quick else (3e-4, 1e-3)
  out += [Row("lr", inputs=i, lr=lr) for i in ("/255", "/127.5-1") for lr in lrs]
  out += [Row("width", inputs=i, width=w) for i in (("/127.5-1",) if quick else ("/255", "/127.5-1"))
          for w in (64, 512)]
  out += [Row("data", inputs=i, scale=s) for s in ((4,) if quick else (4, 16)) for i in ("/255", "/127.5-1")]
  out += [Row("cnn", encoder="cnn", width=32, inputs=i) for i in ("/255", "/127.5-1")]
  if not quick:  # what the network_size panel shows: 6000 scenes, 12 epochs
    out += [Row("exp.defaults", inputs=i, width=w, scale=2, epochs=12)
            for w in (64, 512) for i in ("/255", "/127.5-1")]
  return out


HEADER = (f"{'section':<12} {'enc':<3} {'width':>5} {'inputs':<12} {'init':<5} {'lr':>6} {'N':>6} "
          f"{'ep':>3} {'sel.ep':>7} {'J chance':>8} {'J tr.last':>9} {'J val.best':>10} {'dead':>5} "
          f"{'AUC tr':>6} {'AUC test':>8} {'ped':>5} {'car':>5} {'stop':>5} {'light':>5} {'s':>5}")


def line(r: dict) -> str:
  tasks = " ".join(f"{v:>5.3f}" for v in r["test_auc_task"].values())
  dead = "-" if np.isnan(r["dead"]) else f"{r['dead']:.0%}"
  selected = ",".join(map(str, r["selected_epochs"]))
  return (f"{r['section']:<12} {r['encoder']:<3} {r['width']:>5} {r['inputs']:<12} {r['init']:<5} "
          f"{r['lr']:>6.0e} {r['num_train']:>6} {r['epochs_run']:>3} {selected:>7} "
          f"{r['train_J_chance']:>8.3f} {r['train_J_last']:>9.3f} {r['val_J_best']:>10.3f} {dead:>5} "
          f"{r['train_auc']:>6.3f} {r['test_auc']:>8.3f} {tasks} {r['seconds']:>5.0f}")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  quick = QUICK.value
  epochs = EPOCHS.value or (8 if quick else 10)
  seeds = list(range(SEEDS.value))
  datasets: dict[int, MultiTaskData] = {}
  results = []
  print(f"driving scenes, joint MLP depth {DEPTH} (CNN for reference), Adam, batch 128, best-validation "
        f"epoch, 20% labels missing, {len(seeds)} seeds; val 1000, test 3000 scenes (the same for every N)\n"
        f"J chance: the training J of the best constant predictor\n{HEADER}", flush=True)
  for row in rows(quick):
    n = NUM_TRAIN.value * row.scale
    if n not in datasets:
      datasets[n] = load_dataset(DataConfig(num_train=n, num_val=1000, num_test=3000, missing_frac=0.2))
    results.append(measure(row, datasets[n], seeds, row.epochs or epochs))
    print(line(results[-1]), flush=True)
  if JSON.value:
    with open(JSON.value, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  app.run(main)
