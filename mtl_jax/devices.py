"""Which devices a run trains on and how its arrays are laid out over them.

Training stacks independent models on leading axes: seeds (every model) and, for
separate networks, one network per task. A run on D > 1 devices places them on a
`jax.sharding.Mesh` of three named axes, batch varying fastest:

  seeds  gcd(S, D) devices, each holding S / seeds of the seeds;
  nets   gcd(T, D / seeds) devices, each holding T / nets of the separate networks
         (1 for a joint model, or a method with state: its state is per task too);
  batch  the rest: data parallelism, each device takes an equal share of every batch
         and the per-task losses and gradients are summed over this axis (psum).

Models on different seeds or nets coordinates never communicate: the step is a
shard_map whose only collective is the psum over `batch` (tests/test_sharding.py reads
the compiled program to check it). On one device nothing here is used, and training
runs exactly the program it always did.

Several processes (hosts) join through `jax.distributed`; the mesh then spans every
process's devices, process-major, so that the batch axis (the one that talks) stays
within a host where it can. Only process 0 writes files (`writes_files`).
"""
import dataclasses
import hashlib
import json
import math
import os
from typing import Any, Optional

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mtl_jax.errors import InputError

SEEDS_AXIS, NETS_AXIS, BATCH_AXIS = "seeds", "nets", "batch"
MODEL_AXES = (SEEDS_AXIS, NETS_AXIS)

# The number of local devices a run uses: 0 (the default) for all of them. A property
# of the process, as JAX's own device configuration is: set once by the launcher
# (experiments/cli.py, --devices) before anything trains.
_device_count = [0]


def use_devices(count: int) -> None:
  """Trains every later run on `count` local devices of each process (0: all)."""
  available = len(jax.local_devices())
  if count > available:
    raise InputError(f"--devices={count} but this process sees {available} "
                     f"{jax.default_backend().upper()} device{'s' * (available > 1)}; "
                     f"use --devices={available} or fewer (0: all)")
  if count < 0:
    raise InputError(f"--devices must be 0 (all) or positive; got {count}")
  _device_count[0] = count


def chosen_devices() -> list:
  """The first --devices local devices of every process, process by process."""
  per_process = _device_count[0] or len(jax.local_devices())
  by_process = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  return [d for p in range(jax.process_count())
          for d in [d for d in by_process if d.process_index == p][:per_process]]


@dataclasses.dataclass(frozen=True)
class Layout:
  """Devices along each mesh axis; their product is the number of devices."""
  seeds: int
  nets: int
  batch: int

  @property
  def shape(self) -> tuple[int, int, int]:
    return (self.seeds, self.nets, self.batch)


def choose_layout(num_devices: int, num_seeds: int, num_nets: int) -> Layout:
  """Models first, since they need no communication at all: as many devices on the
  seeds axis as divide both, then on the nets axis, and the rest on the batch."""
  seeds = math.gcd(num_seeds, num_devices)
  nets = math.gcd(num_nets, num_devices // seeds)
  return Layout(seeds, nets, num_devices // (seeds * nets))


@dataclasses.dataclass(frozen=True)
class Placement:
  """A mesh and how training's arrays sit on it."""
  mesh: Mesh
  layout: Layout

  def sharding(self, spec: P) -> NamedSharding:
    return NamedSharding(self.mesh, spec)

  def put(self, tree, spec: P):
    """Every leaf of `tree` (the same values in every process) on the mesh as `spec`
    says: a leaf on the mesh already is moved there (on the devices, no host copy);
    any other through host memory, which works when the mesh spans several processes."""
    mesh_devices = set(self.mesh.devices.flat)

    def put_leaf(leaf):
      if isinstance(leaf, jax.Array) and leaf.sharding.device_set == mesh_devices:
        return jax.device_put(leaf, self.sharding(spec))
      host = np.asarray(jax.device_get(leaf))
      return jax.make_array_from_callback(host.shape, self.sharding(spec), lambda index: host[index])
    return jax.tree.map(put_leaf, tree)


def placement(num_seeds: int, num_nets: int) -> Optional[Placement]:
  """The mesh for S seeds and (separate networks) T nets over the chosen devices, or
  None on one device: then training runs unsharded, as it always has."""
  devices = chosen_devices()
  if len(devices) == 1:
    return None
  layout = choose_layout(len(devices), num_seeds, num_nets)
  mesh = Mesh(np.array(devices).reshape(layout.shape), (SEEDS_AXIS, NETS_AXIS, BATCH_AXIS))
  return Placement(mesh, layout)


def fetch(tree) -> Any:
  """The arrays of `tree` as numpy on the host, whole, in every process (one process:
  jax.device_get; several: each process gathers the shards the others hold)."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  with jax.transfer_guard("allow"):  # an explicit, wanted transfer
    return multihost_utils.process_allgather(tree, tiled=True)


# Orbax's multi-process save of the sharded training state is not wired in yet.
NO_MULTI_PROCESS_CHECKPOINTS = ("checkpoints of a run over several processes are not supported yet: "
                                "use --checkpoint_every=0 without --resume, or one process")


def several_processes() -> bool:
  return jax.process_count() > 1


def writes_files() -> bool:
  """Whether this process writes results, summaries, plots and locks: process 0 only,
  so that N processes of one run leave one copy of each record."""
  return jax.process_index() == 0


def same_in_every_process(value, why_not: str) -> None:
  """InputError(why_not) unless every process holds the same `value` (anything JSON
  can write), compared by digest; nothing with one process."""
  if jax.process_count() == 1:
    return
  digest = np.frombuffer(hashlib.sha256(json.dumps(value, sort_keys=True).encode()).digest(), np.uint8)
  with jax.transfer_guard("allow"):
    digests = multihost_utils.process_allgather(digest)  # [processes, 32]
  if not (digests == digest).all():
    raise InputError(why_not)


# --- joining several processes --------------------------------------------------

# What jax.distributed's Slurm detection reads (jax/_src/clusters/slurm_cluster.py),
# plus SLURM_STEP_ID, which only a step that srun started has: a shell from salloc, or
# the batch script itself, holds the job's SLURM_JOB_ID and SLURM_NTASKS (and some of
# the rest, depending on the Slurm version) without being one task of a launch.
_SLURM_TASK = ("SLURM_STEP_ID", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS", "SLURM_STEP_NODELIST")


def slurm_job_without_srun() -> bool:
  """Inside a Slurm allocation (salloc, or the batch script itself) but not in a task
  started by srun: jax.distributed's auto-detection would take the allocation's
  variables for a multi-process launch and wait for tasks that never start."""
  return "SLURM_JOB_ID" in os.environ and not all(v in os.environ for v in _SLURM_TASK)


def join_processes(coordinator: str, num_processes: int, process_id: int, auto: bool) -> None:
  """jax.distributed.initialize, before any computation: with the explicit
  coordinator, process count and id, or (auto) from the cluster's environment (Slurm's
  srun tasks). Nothing for a single process."""
  explicit = (coordinator, num_processes, process_id)
  if any(v not in (None, "") for v in explicit):
    if coordinator in (None, "") or num_processes is None or process_id is None:
      raise InputError("--coordinator_address, --num_processes and --process_id go together; "
                       "give all three (or none, and --distributed=auto under srun)")
    if not 0 <= process_id < num_processes:
      raise InputError(f"--process_id={process_id} must be in [0, {num_processes}) (--num_processes)")
    if num_processes > 1:
      jax.distributed.initialize(coordinator, num_processes, process_id)
    return
  if not auto:
    return
  if slurm_job_without_srun():
    raise InputError("--distributed=auto inside a Slurm allocation but outside srun: this shell "
                     "is not one task of a multi-process launch; start it with `srun python "
                     "launch.py ...`, or drop --distributed=auto to train in this process alone")
  try:
    jax.distributed.initialize()
  except ValueError as e:  # no cluster environment JAX recognises
    raise InputError(f"--distributed=auto found no multi-process launch to join ({e}); under Slurm "
                     "start one task per process with srun, elsewhere give --coordinator_address, "
                     "--num_processes and --process_id") from None
