"""One arm of a comparison (joint or separate) trained over several seeds at once and
turned into result records, one per seed, each carrying its full config."""
import dataclasses
import math
from typing import Callable, Optional, Sequence

import numpy as np

from mtl_jax import metrics
from mtl_jax.data.datasets import DataConfig, MultiTaskData
from mtl_jax.models import EncoderSpec, make_model, param_count
from mtl_jax.results import SPLITS, config_hash
from mtl_jax.train import TrainConfig, predict, train

ARMS = ("joint", "separate")
EVAL_SPLITS = SPLITS


@dataclasses.dataclass(frozen=True)
class RunConfig:
  experiment: str
  arm: str
  seed: int
  data: DataConfig
  encoder: EncoderSpec
  train: TrainConfig

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


def run_arm(configs: Sequence[RunConfig], data: MultiTaskData,
            log: Optional[Callable[[int, np.ndarray], None]] = None) -> list[dict]:
  """Trains `configs` (identical but for their seeds) as one vmapped program."""
  first = configs[0]
  assert all(dataclasses.replace(c, seed=first.seed) == first for c in configs)
  seeds = [c.seed for c in configs]
  model = make_model(first.arm, first.encoder, len(data.task_names), data.input_shape)
  result = train(model, data.train.x, data.train.y, seeds, first.train, log)
  logits = {split: predict(model, result.params, getattr(data, split).x) for split in EVAL_SPLITS}
  params_per_seed = param_count(result.params) // len(seeds)
  records = []
  for s, config in enumerate(configs):
    records.append({
        "experiment": config.experiment,
        "hash": config.hash,
        "config": config.to_dict(),
        "task_names": list(data.task_names),
        "param_count": params_per_seed,
        "train_examples": int(len(data.train.y)),
        "train_labels": int(np.sum(data.train.y != -1)),
        "train_steps": result.steps,
        "train_seconds_all_seeds": round(result.seconds, 3),
        "compile_seconds": round(result.compile_seconds, 3),
        "final_train_loss": float(result.loss_ExS[-1, s]),
        "metrics": {split: _split_metrics(logits[split][s], getattr(data, split).y)
                    for split in EVAL_SPLITS},
    })
  return records
