"""One arm of a comparison (joint or separate) trained over several seeds at once and
turned into result records, one per seed, each carrying its full config."""
import dataclasses
import functools
import math
import time
from typing import Callable, Optional, Sequence

import jax
import numpy as np

from mtl_jax import metrics, saved_params, thresholds
from mtl_jax.checkpoints import EpochCheckpoints
from mtl_jax import methods
from mtl_jax.data.datasets import DataConfig, MultiTaskData, data_identity, load_dataset
from mtl_jax.multilabel_metrics import MULTILABEL_METRICS, metric_values
from mtl_jax.models import SEPARATE_ARM, EncoderSpec, make_model, param_count, shared_params
from mtl_jax.provenance import provenance
from mtl_jax.results import RESULTS_VERSION, SPLITS, config_hash
from mtl_jax.train import NO_EPOCH, TrainConfig, predict, train

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
  arch: str = "hps"  # a key of models.MODELS: how the joint arms share (--arch)
  # The architecture's size options that differ from its defaults, (name, value) pairs
  # (models.build_model); empty for hard sharing.
  arch_options: tuple[tuple[str, float], ...] = ()
  # Where scores become decisions (thresholds.Rule): a probability, or "val" (each task's
  # F1-best threshold on the validation split). It changes the decision metrics only.
  threshold: thresholds.Rule = thresholds.DEFAULT_PROBABILITY

  def __post_init__(self):
    if (self.arm in TRANSFER_ARMS) != (self.pretrain is not None):
      raise ValueError(f"arm {self.arm!r}: pretrain data is needed by, and only by, {TRANSFER_ARMS}")
    if self.arm == SEPARATE_ARM:
      # One network per task shares nothing: there is no architecture to choose and
      # nothing to combine. Normalised, so that a sweep over methods or architectures
      # trains its separate baseline once.
      object.__setattr__(self, "arch", SEPARATE_ARM)
      object.__setattr__(self, "arch_options", ())
      object.__setattr__(self, "train", dataclasses.replace(
          self.train, method=methods.DEFAULT_METHOD, method_options=()))

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @property
  def hash(self) -> str:
    """Covers exactly what changes a run: the data's identity (data_identity), not
    every field of DataConfig, and the results version (training semantics)."""
    identity = {**self.to_dict(), "data": data_identity(self.data),
                "pretrain": self.pretrain and data_identity(self.pretrain),
                "results_version": RESULTS_VERSION}
    for (*parents, name), default in _HASHED_WHEN_SET:
      node = functools.reduce(lambda d, key: d[key], parents, identity)
      if node[name] == default:
        del node[name]  # at its default a run keeps the hash it had before the field existed
    return config_hash(identity)


# Fields added since RESULTS_VERSION 3, as paths in the config: hashed only when set,
# so that runs at their defaults keep the hashes they had (and are reused). Data fields
# have the same rule in datasets.data_identity.
_HASHED_WHEN_SET = ((("threshold",), thresholds.DEFAULT_PROBABILITY), (("encoder", "dropout"), EncoderSpec.dropout))


def _json_number(value: float) -> Optional[float]:
  return float(value) if math.isfinite(value) else None


def _json_numbers(values: np.ndarray) -> list:
  """Nested lists of floats, None where not finite (JSON has no NaN)."""
  return np.vectorize(_json_number, otypes=[object])(values).tolist()


def _per_task_entry(values: np.ndarray) -> dict:
  return {"per_task": [_json_number(v) for v in values],
          "mean": _json_number(metrics.mean_over_tasks(values))}


def _split_metrics(logits_NxT: np.ndarray, labels_NxT: np.ndarray, thresholds_T: np.ndarray) -> dict:
  """Every metric of one split, as the record keeps it: {name: {"per_task": [T], "mean"}}
  for the per-task ones, {name: {"mean"}} for the example-based multi-label ones."""
  entries = {name: _per_task_entry(values)
             for name, values in metrics.task_metrics(logits_NxT, labels_NxT, thresholds_T).items()}
  decisions_NxT = thresholds.decide(logits_NxT, thresholds_T)
  for name, value in metric_values(logits_NxT, decisions_NxT, labels_NxT).items():
    entries[name] = (_per_task_entry(value) if MULTILABEL_METRICS[name].per_task
                     else {"mean": _json_number(value)})
  return entries


def score_seed(rule: thresholds.Rule, logits_by_split: dict[str, np.ndarray],
               data: MultiTaskData) -> tuple[list[float], dict]:
  """(decision thresholds as probabilities, every split's metrics) of one seed's logits
  [N, T] per split. The thresholds come from the validation split alone."""
  thresholds_T = thresholds.choose(rule, logits_by_split["val"], data.val.y)
  split_metrics = {split: _split_metrics(logits_by_split[split], getattr(data, split).y, thresholds_T)
                   for split in EVAL_SPLITS}
  return thresholds.as_probabilities(thresholds_T), split_metrics


# The last pretraining, by (data, encoder, training, seeds): both transfer arms and
# every label count of a sweep start from the same pretrained encoder.
_last_pretrained: dict[tuple, tuple[dict, float]] = {}


def _pretrained_shared(config: RunConfig, seeds: list[int], log) -> tuple[dict, float]:
  """The shared parameters of the joint model pretrained on config.pretrain (selected
  on all of its tasks), per seed."""
  train_config = dataclasses.replace(config.train, select_tasks=())
  key = (config.pretrain, config.encoder, config.arch, train_config, tuple(seeds))
  if key not in _last_pretrained:
    data = load_dataset(config.pretrain)
    model = make_model("joint", config.encoder, len(data.task_names), data.input_shape, config.arch,
                       config.arch_options)
    # require_selection: the transfer arms start from these weights, so a pretraining
    # that never selected an epoch must stop the run, not hand on untrained weights.
    result = train(model, data.train.x, data.train.y, seeds, train_config,
                   log and (lambda epoch, loss: log(epoch, loss, "pretrain")),
                   validation=(data.val.x, data.val.y), task_names=data.task_names,
                   require_selection=True)
    _last_pretrained.clear()
    _last_pretrained[key] = shared_params(model, result.params), result.seconds
  return _last_pretrained[key]


def _status(diverged_step: int, selected_epoch: np.ndarray) -> str:
  if diverged_step:
    return "diverged"
  return "no_epoch_selected" if np.any(selected_epoch == NO_EPOCH) else "ok"


def run_arm(configs: Sequence[RunConfig], data: MultiTaskData,
            log: Optional[Callable[..., None]] = None,
            checkpoints: Optional[EpochCheckpoints] = None,
            save_params_in: Optional[str] = None) -> list[dict]:
  """Trains `configs` (identical but for their seeds) as one compiled program; a
  transfer arm first pretrains its encoder, all seeds together too.
  log(epoch, loss_S[, phase]) reports each epoch. `save_params_in` (an output folder):
  each seed's selected parameters are saved there (saved_params), before its record
  names them, so that a record never points at a file that is not yet written."""
  start = time.perf_counter()
  first = configs[0]
  assert all(dataclasses.replace(c, seed=first.seed) == first for c in configs)
  seeds = [c.seed for c in configs]
  model = make_model(first.arm, first.encoder, len(data.task_names), data.input_shape, first.arch,
                     first.arch_options)
  shared, pretrain_seconds = _pretrained_shared(first, seeds, log) if first.pretrain else (None, 0.0)
  result = train(model, data.train.x, data.train.y, seeds, first.train, log,
                 pretrained_shared=shared, freeze_shared=first.arm == "transfer_frozen",
                 validation=(data.val.x, data.val.y), checkpoints=checkpoints,
                 task_names=data.task_names)
  logits = {split: predict(model, result.params, getattr(data, split).x) for split in EVAL_SPLITS}
  scored = [score_seed(first.threshold, {split: logits[split][s] for split in EVAL_SPLITS}, data)
            for s in range(len(seeds))]
  params_per_seed = param_count(result.params) // len(seeds)
  wall_seconds = time.perf_counter() - start
  records = []
  for s, config in enumerate(configs):
    records.append({
        "experiment": config.experiment,
        "hash": config.hash,
        "results_version": RESULTS_VERSION,
        "config": config.to_dict(),
        "task_names": list(data.task_names),
        # Which examples each split holds; the selected epoch was chosen on "val" alone.
        "splits": data.origins,
        # An int, or one per task for separate networks (each keeps its own best epoch);
        # 0 where no epoch improved the validation loss of the initial parameters.
        "selected_epoch": result.selected_epoch_S[s].tolist(),
        "epochs_trained": len(result.loss_ExS),
        "stopped_early": result.stopped_early,
        "val_loss_per_epoch": _json_numbers(result.val_loss_ExS[:, s]),
        "param_count": params_per_seed,
        "train_examples": int(len(data.train.y)),
        "split_sizes": {split: int(len(getattr(data, split).y)) for split in ("train", "val", "test")},
        "train_labels": int(np.sum(data.train.y != -1)),
        "train_steps": result.steps,
        "train_seconds_all_seeds": round(result.seconds, 3),
        "pretrain_seconds_all_seeds": round(pretrain_seconds, 3),
        "compile_seconds": round(result.compile_seconds, 3),
        # The whole group (pretraining, compiling, training, scoring), all seeds together.
        "wall_seconds_all_seeds": round(wall_seconds, 3),
        "provenance": provenance(),
        "final_train_loss": _json_number(result.loss_ExS[-1, s]),
        # Diagnostics: each task's training loss (its term of J) per epoch, [E][T], and
        # the mean pairwise cosine of the task gradients the method combined per epoch
        # (gradient conflict; null for methods that take no per-task gradients).
        "train_loss_per_task_per_epoch": _json_numbers(result.task_loss_ExSxT[:, s]),
        "gradient_cosine_per_epoch": (_json_numbers(result.cosine_ExS[:, s])
                                      if np.isfinite(result.cosine_ExS[:, s]).any() else None),
        # A diverged run (training loss NaN, inf or exploded), or one where no epoch
        # improved on the initial parameters, is kept on file but left out of means.
        "status": _status(result.diverged_step_S[s], result.selected_epoch_S[s]),
        "diverged_at_step": int(result.diverged_step_S[s]) or None,
        # Per task, as probabilities: where scores became decisions (config.threshold).
        "decision_thresholds": scored[s][0],
        "metrics": scored[s][1],
    })
  if save_params_in:
    for s, (config, record) in enumerate(zip(configs, records)):
      seed_params = jax.tree.map(lambda p: p[s], result.params)
      record.update(saved_params.save(save_params_in, config, data, seed_params))
  return records
