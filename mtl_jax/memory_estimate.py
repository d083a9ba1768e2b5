"""What a training run will hold in memory, worked out from shapes before anything is
allocated, and the check that refuses a run the machine cannot hold.

Without it an absurd size (--width=100000, --num_train=1000000000, --seeds=1000000)
ends minutes later in an out-of-memory traceback, or in swap that looks like a hang.
Every term is a real size: parameters and optimizer state from `jax.eval_shape` of
the model's and the optimizer's own init (exact for every architecture and optimizer),
activations from the jaxpr of a gradient step (traced on shapes, nothing run), data and
histories from the arrays that train.py and the datasets allocate. What is left out
(XLA's workspace, the compiled program, Python objects) is small beside what is counted
once a run is big enough to matter.
"""
import dataclasses
import math
import os
from typing import Optional, Sequence

import jax
import numpy as np

from mtl_jax import methods
from mtl_jax.errors import InputError
from mtl_jax.losses import masked_logistic_loss
from mtl_jax.micro_batch import intermediates
from mtl_jax.models import Model
from mtl_jax.train import OPTIMIZERS

FLOAT32 = 4
KEY_BYTES = 8  # a PRNG key: two uint32 words
# train._val_loss_fn scores the validation split, and train.predict the test split, this
# many examples at a time, every seed at once.
EVAL_CHUNK = 512


@dataclasses.dataclass(frozen=True)
class Estimate:
  """Bytes by what holds them; `device` is host memory too on a CPU."""
  host: dict[str, int]
  device: dict[str, int]

  @property
  def total(self) -> int:
    return sum(self.host.values()) + sum(self.device.values())

  def describe(self) -> str:
    parts = {}
    for name, size in [*self.host.items(), *self.device.items()]:
      parts[name] = parts.get(name, 0) + size
    largest = sorted(parts.items(), key=lambda item: -item[1])
    return f"{readable(self.total)} ({', '.join(f'{name} {readable(size)}' for name, size in largest if size)})"


def readable(size: float) -> str:
  for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
    if size < 1024 or unit == "PiB":
      return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
    size /= 1024
  raise AssertionError("unreachable")


def tree_bytes(tree) -> int:
  """Bytes of a pytree of arrays or ShapeDtypeStructs."""
  return sum(math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(tree))


def data_bytes(sizes: Sequence[int], example_shape: Sequence[int], x_dtype, num_tasks: int
               ) -> tuple[int, int]:
  """(host, device) bytes of the splits (train, val, test): every split on the host as
  the dataset returns it (x, and int8 labels [N, T]); the train split on the device, and
  the validation split padded to whole chunks twice (the padded host copy, then on the
  device), as train.py scores it."""
  per_example = math.prod(example_shape) * np.dtype(x_dtype).itemsize + num_tasks
  num_train, num_val, _ = sizes
  chunk = min(EVAL_CHUNK, num_val)
  padded_val = -(-num_val // chunk) * chunk
  return sum(sizes) * per_example + padded_val * per_example, (num_train + padded_val) * per_example


def largest_activation(fn, *args) -> int:
  """Bytes of the largest intermediate array of fn(*args), traced on shapes alone."""
  jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
  return max((v.aval.size * v.aval.dtype.itemsize for v in intermediates(jaxpr)), default=0)


@dataclasses.dataclass(frozen=True)
class Training:
  """What the estimate needs of a run's training settings."""
  seeds: int
  epochs: int
  batch_size: int
  optimizer: str = "adam"  # a key of train.OPTIMIZERS
  method: str = methods.DEFAULT_METHOD
  method_options: tuple[tuple[str, float], ...] = ()


def model_bytes(model: Model, example_shape: Sequence[int], x_dtype, num_tasks: int,
                sizes: Sequence[int], training: Training, seeds_vmapped: bool
                ) -> tuple[dict[str, int], dict[str, int]]:
  """(host, device) bytes of training one model on every seed (train.train) on splits of
  `sizes` (train, val, test), then scoring it: per seed its parameters, the best
  epoch's copy, the optimizer state and the method's state; the per-epoch histories;
  for the seeds that run at once (all when vmapped, else one), the gradient, the
  per-task gradients a gradient-combination method takes, and the largest activation
  of a training batch or of a validation chunk (scored for every seed at once); and
  every seed's logits of every split (runs.py's predict). Separate networks are traced
  as `model.apply` runs them, vmapped or in turn (models.separate_strategy_default):
  either way the gradient holds every network's activations at once (a scan stacks what
  its backward pass needs), so the estimate counts them all; trained one at a time, they
  need one network's, so the estimate is an upper bound there."""
  seeds, epochs, num_val = training.seeds, training.epochs, sizes[1]
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  param_size = tree_bytes(params)
  optimizer_state = tree_bytes(jax.eval_shape(OPTIMIZERS[training.optimizer](1e-3).init, params))
  shared_count = sum(math.prod(leaf.shape) for key in model.shared for leaf in jax.tree.leaves(params[key]))
  method = methods.build_method(training.method, training.method_options)
  method_state = tree_bytes(jax.eval_shape(lambda: methods.init_state(method, num_tasks, shared_count)))
  per_task_grads = num_tasks * shared_count * FLOAT32 if methods.SHARED_GRADS in method.needs else 0
  at_once = seeds if seeds_vmapped else 1

  x = lambda batch: jax.ShapeDtypeStruct((batch, *example_shape), x_dtype)
  y = jax.ShapeDtypeStruct((training.batch_size, num_tasks), np.int8)
  step = largest_activation(jax.grad(lambda p, x, y: masked_logistic_loss(model.apply(p, x), y)),
                            params, x(training.batch_size), y)
  scoring = largest_activation(model.apply, params, x(min(EVAL_CHUNK, num_val)))

  # Per epoch: train.History's rows on the host, each epoch's shuffle and method keys on the device.
  selection = num_tasks if model.per_task_params else 1
  history = epochs * seeds * FLOAT32 * (2 + num_tasks + selection)
  epoch_keys = epochs * (2 * seeds * KEY_BYTES + FLOAT32)
  device = {
      "parameters and optimizer state": seeds * (2 * param_size + optimizer_state + method_state),
      "gradients": at_once * (param_size + per_task_grads),
      "activations": max(at_once * step, seeds * scoring),
      "per-epoch history": epoch_keys,
  }
  logits = seeds * sum(sizes) * num_tasks * FLOAT32
  return {"per-epoch history": history, "predictions": logits}, device


def estimate(models: Sequence[Model], sizes: Sequence[int], example_shape: Sequence[int], x_dtype,
             num_tasks: int, training: Training, seeds_vmapped: Optional[bool] = None) -> Estimate:
  """The memory of a sweep over `models` on one dataset of split sizes `sizes` (train,
  val, test): the data once (consecutive groups share it), and the largest model's
  training (groups train one after another). `seeds_vmapped` defaults to what
  train.train does: vmapped on an accelerator, in turn on a CPU."""
  if seeds_vmapped is None:
    seeds_vmapped = jax.default_backend() != "cpu"
  data_host, data_device = data_bytes(sizes, example_shape, x_dtype, num_tasks)
  each = [model_bytes(m, example_shape, x_dtype, num_tasks, sizes, training, seeds_vmapped)
          for m in models]
  host, device = max(each, key=lambda parts: sum(parts[0].values()) + sum(parts[1].values()))
  return Estimate({"data": data_host, **host}, {"data": data_device, **device})


def for_data(models: Sequence[Model], data, training: Training) -> Estimate:
  """The estimate for data already read (a MultiTaskData): how a caller that loads
  csv/npz/tfds data checks it, since its shape is known only once read."""
  sizes = (len(data.train.y), len(data.val.y), len(data.test.y))
  return estimate(models, sizes, data.input_shape, data.train.x.dtype, len(data.task_names), training)


def available_host_bytes() -> int:
  """Memory the machine can give now: MemAvailable (free plus reclaimable) where the
  kernel reports it, else all physical memory; less if a cgroup (a container, a batch
  job) caps this process lower."""
  available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  try:
    with open("/proc/meminfo") as f:
      fields = dict(line.split(":", 1) for line in f)
    available = int(fields["MemAvailable"].split()[0]) * 1024
  except (OSError, KeyError, ValueError):
    pass
  return min(available, _cgroup_room() or available)


def _cgroup_room() -> Optional[int]:
  """Bytes left under the cgroup's memory limit (v2, else v1), or None if unlimited."""
  for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                       ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                        "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
    try:
      with open(limit) as f, open(usage) as g:
        cap, used = f.read().strip(), int(g.read())
    except (OSError, ValueError):
      continue
    if cap.isdigit() and int(cap) < 2**60:  # v1 writes "unlimited" as a huge number
      return max(int(cap) - used, 0)
  return None


def available_device_bytes() -> Optional[int]:
  """Free memory of the first accelerator, or None on a CPU (whose memory is the host's)."""
  if jax.default_backend() == "cpu":
    return None
  stats = jax.devices()[0].memory_stats() or {}
  if "bytes_limit" not in stats:
    return None
  return stats["bytes_limit"] - stats.get("bytes_in_use", 0)


def check(needed: Estimate, host: Optional[int] = None, device: Optional[int] = None) -> None:
  """Raises InputError (one line: the estimate and what is available) when the run
  cannot fit. On a CPU host and device memory are one; on an accelerator each is
  compared with its own. `host` and `device` default to what the machine has now."""
  host = available_host_bytes() if host is None else host
  device = available_device_bytes() if device is None else device
  advice = "; lower --width, --depth, --seeds, --epochs, --batch_size or the split sizes"
  if device is None:
    if needed.total > host:
      raise InputError(f"this run needs about {needed.describe()} of memory, but this machine has "
                       f"{readable(host)} available{advice}")
    return
  on_device = Estimate({}, needed.device)
  if on_device.total > device:
    raise InputError(f"this run needs about {on_device.describe()} of accelerator memory, but "
                     f"the accelerator has {readable(device)} free{advice}")
  on_host = Estimate(needed.host, {})
  if on_host.total > host:
    raise InputError(f"this run needs about {on_host.describe()} of host memory, but this machine "
                     f"has {readable(host)} available{advice}")
