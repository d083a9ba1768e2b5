"""Predictions on new data from runs saved with --save_params (python -m mtl_jax.predict).

Which runs: the saved runs of an output folder whose records match --arm, --seed and
--hash; they must be the seeds of one configuration (the same record config but for
the seed), else one error lists the configurations to choose from. Runs that diverged
or selected no epoch are left out, saying so.

Per example and task: the probability is the mean over the chosen seeds of each seed's
sigmoid(logit), and the decision is 1 where that probability is above the mean of the
seeds' decision thresholds for the task (decision_thresholds: 0.5 unless the record
holds its own, chosen on validation). With one seed both are that run's exactly.
"""
import os
from typing import Optional, Sequence

import jax
import numpy as np
from scipy.special import expit

from mtl_jax import prediction_files, saved_params
from mtl_jax.data.inputs import RunColumns, read_inputs
from mtl_jax.errors import InputError
from mtl_jax.results import RESULTS_FILE, config_hash, read_all_records, shard_paths
from mtl_jax.train import predict

DEFAULT_THRESHOLD = 0.5  # a probability: logit 0
# Where a record keeps its per-task decision thresholds, as probabilities (the first
# found is used): written by --threshold=val.
_THRESHOLD_KEYS = ("decision_thresholds", "thresholds")


def decision_thresholds(record: dict) -> np.ndarray:
  """[T] probability thresholds of a run: its record's own, else DEFAULT_THRESHOLD."""
  num_tasks = len(record["task_names"])
  for key in _THRESHOLD_KEYS:
    if record.get(key) is not None:
      thresholds = np.asarray(record[key], np.float64)
      if thresholds.shape != (num_tasks,) or not np.all((thresholds > 0) & (thresholds < 1)):
        raise InputError(f"run {record['hash']}: its {key} are not {num_tasks} probabilities in (0, 1)")
      return thresholds
  return np.full(num_tasks, DEFAULT_THRESHOLD)


def _configuration(record: dict) -> str:
  """What the seeds of one configuration share: the record's config but for the seed."""
  return config_hash({k: v for k, v in record["config"].items() if k != "seed"})


def _describe(records: list[dict]) -> str:
  c = records[0]["config"]
  arch = f" {c['arch']}" if c.get("arch") not in (None, "hps", c["arm"]) else ""
  e = c["encoder"]
  seeds = ", ".join(f"{r['config']['seed']} (hash {r['hash']})" for r in records)
  return (f"{c['experiment']} {c['arm']}{arch} {e['kind']} w{e['width']} d{e['depth']} on "
          f"{c['data']['dataset']}, seed{'s' * (len(records) > 1)} {seeds}")


def _saved_records(run_dir: str) -> list[dict]:
  path = os.path.join(run_dir, RESULTS_FILE)
  if not os.path.isfile(path) and not shard_paths(path):
    raise InputError(f"--run_dir={run_dir} has no {RESULTS_FILE}: give the --out_dir of a launch "
                     "run with --save_params")
  # With the shards of submitit jobs; a later record of a hash wins (read_all_records).
  by_hash = {r["hash"]: r for r in read_all_records(path)[0]}
  saved = [r for r in by_hash.values() if r.get("params_path")]
  if not saved:
    raise InputError(f"--run_dir={run_dir}: none of its {len(by_hash)} runs saved their parameters; "
                     "run the same launch again with --save_params (finished runs are trained "
                     "again to save them)")
  return saved


def choose_runs(run_dir: str, arm: Optional[str] = None, seeds: Sequence[int] = (),
                run_hash: Optional[str] = None) -> list[dict]:
  """The saved, finished records of one configuration that match the filters, in seed order."""
  saved = _saved_records(run_dir)
  chosen = [r for r in saved if (arm is None or r["config"]["arm"] == arm)
            and (not seeds or r["config"]["seed"] in seeds) and (run_hash is None or r["hash"] == run_hash)]
  groups: dict[str, list[dict]] = {}
  for record in sorted(saved, key=lambda r: r["config"]["seed"]):
    groups.setdefault(_configuration(record), []).append(record)
  available = "; ".join(_describe(g) for g in groups.values())
  if not chosen:
    raise InputError(f"--run_dir={run_dir} has no saved run that matches the filters; it has {available}")
  keys = {_configuration(r) for r in chosen}
  if len(keys) > 1:
    raise InputError(f"--run_dir={run_dir} holds saved runs of {len(keys)} configurations that "
                     f"match; choose one with --arm or --hash: {available}")
  finished = [r for r in chosen if r.get("status", "ok") == "ok"]
  if not finished:
    raise InputError(f"every matching run diverged or selected no epoch: {_describe(chosen)}")
  if len(finished) < len(chosen):
    left_out = ", ".join(str(r["config"]["seed"]) for r in chosen if r not in finished)
    print(f"note: seed {left_out} left out: it diverged or selected no epoch", flush=True)
  return sorted(finished, key=lambda r: r["config"]["seed"])


def load_runs(run_dir: str, records: list[dict]) -> list[saved_params.SavedRun]:
  return [saved_params.load(os.path.join(run_dir, r["params_path"]), r.get("params_digest"))
          for r in records]


def _run_columns(run: saved_params.SavedRun, record: dict) -> RunColumns:
  label_columns = tuple(record["config"]["data"].get("label_columns", ()))
  ignored = tuple(record["config"]["data"].get("ignore_columns", ()))
  return RunColumns(run.feature_names, run.task_names + label_columns + ignored, run.fills_missing)


def model_inputs(run: saved_params.SavedRun, x: np.ndarray, dataset: str) -> np.ndarray:
  """New inputs as the run's model saw its own: the same shape and dtype, standardised
  with the train split's statistics (none for images)."""
  if tuple(x.shape[1:]) != run.input_shape or str(x.dtype) != run.spec["input_dtype"]:
    raise InputError(f"--dataset={dataset}: its examples are {x.dtype} {list(x.shape[1:])}, the run's "
                     f"were {run.spec['input_dtype']} {list(run.input_shape)}")
  if run.standardisation is None:
    return x
  return run.standardisation.apply(x, "new", dataset, run.feature_names)


def probabilities(runs: list[saved_params.SavedRun], x: np.ndarray) -> np.ndarray:
  """[S, N, T] sigmoid of each run's logits (float64), all seeds in one program."""
  params_S = jax.tree.map(lambda *p: np.stack(p), *[run.params for run in runs])
  return expit(predict(runs[0].model(), params_S, x).astype(np.float64))


def predict_file(run_dir: str, dataset: str, out: str, arm: Optional[str] = None,
                 seeds: Sequence[int] = (), run_hash: Optional[str] = None) -> str:
  """Writes `out` (see the module) and returns the line that says what it holds."""
  if not out.endswith(tuple(prediction_files.WRITERS)):
    raise InputError(f"--out={out}: predictions are written as {' or '.join(prediction_files.WRITERS)}")
  records = choose_runs(run_dir, arm, seeds, run_hash)
  runs = load_runs(run_dir, records)
  x = model_inputs(runs[0], read_inputs(dataset, _run_columns(runs[0], records[0])), dataset)
  prob_NxT = probabilities(runs, x).mean(axis=0)
  thresholds_T = np.mean([decision_thresholds(r) for r in records], axis=0)
  os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
  prediction_files.write(out, runs[0].task_names, prob_NxT, prob_NxT > thresholds_T)
  shown = ", ".join(f"{t} {p:g}" for t, p in zip(runs[0].task_names, thresholds_T))
  source = "the mean over" if len(records) > 1 else "from"
  return (f"wrote {out}: {len(x)} examples x {len(thresholds_T)} tasks; probability: {source} "
          f"{_describe(records)}; decision: probability > threshold ({shown})")
