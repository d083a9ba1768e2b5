"""A finished run's selected parameters on disk (--save_params), with everything that
predicting on new data needs and could not safely recompute: the model's spec, the task
names, the feature columns by name, the train split's standardisation, and the input's
shape and dtype.

One run is one NPZ file, OUT_DIR/params/HASH.npz (HASH: the run's record hash), not an
orbax folder: a run's parameters are a few small arrays, and one file is written to a
temporary name and renamed, so a kill leaves either the whole file or none (a folder
of several files cannot be renamed into place as one). It is read with numpy alone,
never unpickled (allow_pickle=False), and its sha1 digest of every array (the one
checkpoints.py keeps) is stored in it and in the run's record, so a damaged or
swapped file is refused, not used.

Arrays: `param:PATH` per parameter (PATH: its keys in the tree, joined by '/'),
`feature_mean` and `feature_std` [D] (float64) when the features were standardised,
`feature_fill` [D] (float32) when training filled missing features (--impute), and `spec`, a JSON text (SPEC_FORMAT says which layout).
"""
import dataclasses
import functools
import io
import json
import os
from typing import Optional

import jax
import numpy as np

from mtl_jax.checkpoints import tree_digest
from mtl_jax.data.datasets import MultiTaskData, Standardisation
from mtl_jax.errors import InputError
from mtl_jax.models import EncoderSpec, Model, make_model
from mtl_jax.results import WriteError, write_atomically

PARAMS_DIR = "params"  # OUT_DIR/params/HASH.npz
SPEC_FORMAT = 1  # bumped when the file's layout changes
_PARAM = "param:"


@dataclasses.dataclass(frozen=True)
class SavedRun:
  """One run's model and how its inputs were read, as load() returns them."""
  path: str
  spec: dict  # SPEC_FORMAT's JSON: hash, seed, arm, arch, encoder, task and feature names, ...
  params: dict  # one seed's parameters, shaped as the model's init makes them
  standardisation: Optional[Standardisation]

  @property
  def task_names(self) -> tuple[str, ...]:
    return tuple(self.spec["task_names"])

  @property
  def feature_names(self) -> tuple[str, ...]:
    return tuple(self.spec["feature_names"])

  @property
  def input_shape(self) -> tuple[int, ...]:
    return tuple(self.spec["input_shape"])

  @property
  def fills_missing(self) -> bool:
    """Whether training filled missing features (--impute), so new data may miss some."""
    return self.standardisation is not None and self.standardisation.fill is not None

  def model(self) -> Model:
    s = self.spec
    return _model(s["arm"], EncoderSpec(**s["encoder"]), len(s["task_names"]), self.input_shape,
                  s["arch"], tuple(tuple(option) for option in s["arch_options"]))


@functools.lru_cache(maxsize=8)
def _model(*spec) -> Model:
  """One Model object per spec, so that the seeds and calls of one model share its
  compiled program (train.predict caches it by the Model)."""
  return make_model(*spec)


def relative_path(run_hash: str) -> str:
  return os.path.join(PARAMS_DIR, f"{run_hash}.npz")


def _path_name(path) -> str:
  return "/".join(str(getattr(key, "key", getattr(key, "idx", key))) for key in path)


def _arrays(params: dict, standardisation: Optional[Standardisation]) -> dict:
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  arrays = {_PARAM + _path_name(path): np.asarray(leaf) for path, leaf in leaves}
  if standardisation is not None:
    arrays.update(feature_mean=standardisation.mean, feature_std=standardisation.std)
    if standardisation.fill is not None:
      arrays.update(feature_fill=standardisation.fill)
  return arrays


def _digest(arrays: dict) -> str:
  """sha1 of every array but the spec, in name order (the spec holds it)."""
  return tree_digest({name: arrays[name] for name in sorted(arrays) if name != "spec"})


def _write_npz(path: str, arrays: dict) -> None:
  with open(path, "wb") as f:
    np.savez(f, **arrays)
    f.flush()
    os.fsync(f.fileno())  # on disk before the rename makes it the run's file


def _spec(config, data: MultiTaskData, digest: str) -> dict:
  """What predicting needs besides the arrays: how to build the model, and the inputs
  it reads (task and feature names, shape, dtype)."""
  return {"format": SPEC_FORMAT, "hash": config.hash, "seed": config.seed, "arm": config.arm,
          "arch": config.arch, "arch_options": [list(o) for o in config.arch_options],
          "encoder": dataclasses.asdict(config.encoder), "dataset": config.data.dataset,
          "task_names": list(data.task_names), "feature_names": list(data.feature_names),
          "input_shape": list(data.input_shape), "input_dtype": str(data.train.x.dtype),
          "digest": digest}


def save(out_dir: str, config, data: MultiTaskData, params_one_seed: dict) -> dict:
  """Writes OUT_DIR/params/HASH.npz for `config` (a runs.RunConfig) and returns what
  its record gains: params_path (relative to OUT_DIR) and params_digest."""
  arrays = _arrays(params_one_seed, data.standardisation)
  digest = _digest(arrays)
  arrays["spec"] = np.array(json.dumps(_spec(config, data, digest), sort_keys=True))
  path = os.path.join(out_dir, relative_path(config.hash))
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
  except OSError as e:  # a full disk: said as such by the sweep, with the runs already safe
    raise WriteError(os.path.dirname(path), e) from e
  write_atomically(path, lambda tmp: _write_npz(tmp, arrays))
  return {"params_path": relative_path(config.hash), "params_digest": digest}


def has_saved_params(record: dict, out_dir: str) -> bool:
  """Whether a record's parameters were saved and their file is still there."""
  path = record.get("params_path")
  return bool(path) and os.path.isfile(os.path.join(out_dir, path))


def _damaged(path: str, why: str) -> InputError:
  return InputError(f"{path}: the saved parameters cannot be used ({why}); train the run again "
                    "with --save_params")


def _read_arrays(path: str) -> dict:
  try:
    with open(path, "rb") as f:
      data = f.read()
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
      return {name: npz[name] for name in npz.files}
  except FileNotFoundError:
    raise InputError(f"{path}: no such file; its run's parameters were not saved, or were "
                     "moved; train the run again with --save_params") from None
  except Exception as e:  # a truncated or foreign file: whatever numpy or zipfile raise
    raise _damaged(path, f"{type(e).__name__}: {e}") from None


def _params_like(model: Model, arrays: dict, path: str) -> dict:
  """The arrays as the model's parameter tree, each of the shape and dtype init gives."""
  abstract = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  leaves, tree = jax.tree_util.tree_flatten_with_path(abstract)
  expected = {_PARAM + _path_name(p) for p, _ in leaves}
  stored = {name for name in arrays if name.startswith(_PARAM)}
  if stored != expected:
    raise _damaged(path, "its parameters are not those of the model its spec describes")
  values = []
  for p, like in leaves:
    value = arrays[_PARAM + _path_name(p)]
    if value.shape != like.shape or value.dtype != like.dtype:
      raise _damaged(path, f"{_path_name(p)} is {value.dtype}{list(value.shape)}, the model "
                           f"has {like.dtype}{list(like.shape)}")
    values.append(value)
  return jax.tree_util.tree_unflatten(tree, values)


def load(path: str, expected_digest: Optional[str] = None) -> SavedRun:
  """The run saved at `path`, checked against its own digest (and the record's, if
  given); any damage is one InputError naming the file."""
  arrays = _read_arrays(path)
  try:
    spec = json.loads(str(arrays.pop("spec")))
  except (KeyError, ValueError):
    raise _damaged(path, "it has no readable spec") from None
  if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
    raise _damaged(path, f"its layout is not format {SPEC_FORMAT}")
  digest = _digest(arrays)
  if digest != spec.get("digest") or (expected_digest and digest != expected_digest):
    raise _damaged(path, "its arrays differ from the digest saved with them")
  scaling = (Standardisation(arrays["feature_mean"], arrays["feature_std"], arrays.get("feature_fill"))
             if "feature_mean" in arrays else None)
  run = SavedRun(path, spec, {}, scaling)
  return dataclasses.replace(run, params=_params_like(run.model(), arrays, path))
