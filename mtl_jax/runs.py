"""One arm of a comparison (joint or separate) trained over several seeds at once and
turned into result records, one per seed, each carrying its full config."""
import dataclasses
import math
import time
from typing import Callable, Optional, Sequence

import numpy as np

from mtl_jax import metrics
from mtl_jax.checkpoints import EpochCheckpoints
from mtl_jax.data.datasets import DataConfig, MultiTaskData, load_dataset
from mtl_jax.models import EncoderSpec, make_model, param_count
from mtl_jax.provenance import provenance
from mtl_jax.results import SPLITS, config_hash
from mtl_jax.train import TrainConfig, predict, train

ARMS = ("joint", "separate")
# Fine-tuning a joint network whose encoder was pretrained on RunConfig.pretrain's data.
TRANSFER_ARMS = ("transfer_frozen", "transfer_finetune")
EVAL_SPLITS = SPLITS


@dataclasses.dataclass(frozen=True)
class RunConfig:
  experiment: str
  arm: str
  seed: int
  data: DataConfig
  encoder: EncoderSpec
  train: TrainConfig
  # Transfer arms only: the data the encoder is pretrained on first (same encoder,
  # seed and training settings).
  pretrain: Optional[DataConfig] = None

  def __post_init__(self):
    if (self.arm in TRANSFER_ARMS) != (self.pretrain is not None):
      raise ValueError(f"arm {self.arm!r}: pretrain data is needed by, and only by, {TRANSFER_ARMS}")

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @property
  def hash(self) -> str:
    return config_hash(self.to_dict())


def _json_number(value: float) -> Optional[float]:
  return float(value) if math.isfinite(value) else None


def _split_metrics(logits_NxT: np.ndarray, labels_NxT: np.ndarray) -> dict:
  per_task = metrics.task_metrics(logits_NxT, labels_NxT)
  return {name: {"per_task": [_json_number(v) for v in values],
                 "mean": _json_number(metrics.mean_over_tasks(values))}
          for name, values in per_task.items()}


# The last pretraining, by (data, encoder, training, seeds): both transfer arms and
# every label count of a sweep start from the same pretrained encoder.
_last_pretrained: dict[tuple, tuple[dict, float]] = {}


def _pretrained_encoder(config: RunConfig, seeds: list[int], log) -> tuple[dict, float]:
  key = (config.pretrain, config.encoder, config.train, tuple(seeds))
  if key not in _last_pretrained:
    data = load_dataset(config.pretrain)
    model = make_model("joint", config.encoder, len(data.task_names), data.input_shape)
    result = train(model, data.train.x, data.train.y, seeds, config.train,
                   log and (lambda epoch, loss: log(epoch, loss, "pretrain")),
                   validation=(data.val.x, data.val.y))
    _last_pretrained.clear()
    _last_pretrained[key] = result.params["encoder"], result.seconds
  return _last_pretrained[key]


def run_arm(configs: Sequence[RunConfig], data: MultiTaskData,
            log: Optional[Callable[..., None]] = None,
            checkpoints: Optional[EpochCheckpoints] = None) -> list[dict]:
  """Trains `configs` (identical but for their seeds) as one compiled program; a
  transfer arm first pretrains its encoder, all seeds together too.
  log(epoch, loss_S[, phase]) reports each epoch."""
  start = time.perf_counter()
  first = configs[0]
  assert all(dataclasses.replace(c, seed=first.seed) == first for c in configs)
  seeds = [c.seed for c in configs]
  model = make_model(first.arm, first.encoder, len(data.task_names), data.input_shape)
  encoder, pretrain_seconds = _pretrained_encoder(first, seeds, log) if first.pretrain else (None, 0.0)
  result = train(model, data.train.x, data.train.y, seeds, first.train, log,
                 pretrained_encoder=encoder, freeze_encoder=first.arm == "transfer_frozen",
                 validation=(data.val.x, data.val.y), checkpoints=checkpoints)
  logits = {split: predict(model, result.params, getattr(data, split).x) for split in EVAL_SPLITS}
  params_per_seed = param_count(result.params) // len(seeds)
  wall_seconds = time.perf_counter() - start
  records = []
  for s, config in enumerate(configs):
    records.append({
        "experiment": config.experiment,
        "hash": config.hash,
        "config": config.to_dict(),
        "task_names": list(data.task_names),
        # Which examples each split holds; the selected epoch was chosen on "val" alone.
        "splits": data.origins,
        # An int, or one per task for separate networks (each keeps its own best epoch).
        "selected_epoch": result.selected_epoch_S[s].tolist(),
        "val_loss_per_epoch": np.vectorize(_json_number, otypes=[object])(
            result.val_loss_ExS[:, s]).tolist(),
        "param_count": params_per_seed,
        "train_examples": int(len(data.train.y)),
        "train_labels": int(np.sum(data.train.y != -1)),
        "train_steps": result.steps,
        "train_seconds_all_seeds": round(result.seconds, 3),
        "pretrain_seconds_all_seeds": round(pretrain_seconds, 3),
        "compile_seconds": round(result.compile_seconds, 3),
        # The whole group (pretraining, compiling, training, scoring), all seeds together.
        "wall_seconds_all_seeds": round(wall_seconds, 3),
        "provenance": provenance(),
        "final_train_loss": _json_number(result.loss_ExS[-1, s]),
        # A diverged run (training loss NaN, inf or exploded) is kept on file but left out of means.
        "status": "diverged" if result.diverged_step_S[s] else "ok",
        "diverged_at_step": int(result.diverged_step_S[s]) or None,
        "metrics": {split: _split_metrics(logits[split][s], getattr(data, split).y)
                    for split in EVAL_SPLITS},
    })
  return records
