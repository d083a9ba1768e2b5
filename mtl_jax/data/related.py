"""Synthetic yes/no tasks whose relatedness is a knob, rho in [0, 1].

The input is one shared block and one private block per task, all standard normal:
x = [x_shared, x_1, ..., x_T]. A random ReLU feature map of the shared block, the
same for every task, gives the shared low-level features; each task also has its own
feature map of its own private block. Task j's logit is

    z_j = sqrt(rho) * f_j(shared features) + sqrt(1 - rho) * g_j(private features of j)

with f_j and g_j random linear read-outs, each standardised to zero mean and unit
variance. The two parts are independent, so rho is exactly the fraction of each
logit's variance that the shared features explain: at rho = 1 every task is a
function of the same features, at rho = 0 of features no other task uses. The label
is 1 where z_j > 0 (so about half the labels are yes).
"""
import dataclasses

import numpy as np

from mtl_jax.errors import InputError

# Large enough that the standardising moments are exact to about 1%.
_MOMENT_SAMPLES = 20_000


@dataclasses.dataclass(frozen=True)
class RelatedConfig:
  rho: float = 1.0  # share of each task's logit variance that comes from shared features
  num_tasks: int = 4
  block_dim: int = 8  # inputs per block
  features: int = 16  # random ReLU features per block

  def __post_init__(self):
    if not 0.0 <= self.rho <= 1.0:
      raise InputError(f"relatedness rho must be in [0, 1]; got {self.rho}")
    if min(self.num_tasks, self.block_dim, self.features) < 1:
      raise InputError("num_tasks, block_dim and features must be positive")

  @property
  def input_dim(self) -> int:
    return self.block_dim * (1 + self.num_tasks)


@dataclasses.dataclass(frozen=True)
class Teacher:
  """The random functions that define the tasks (drawn once per data seed)."""
  shared_map_DxF: np.ndarray
  private_maps_TxDxF: np.ndarray
  shared_readout_FxT: np.ndarray
  private_readout_TxF: np.ndarray
  shared_moments_2xT: np.ndarray  # mean and std of each task's shared part
  private_moments_2xT: np.ndarray


def _blocks(x_NxD: np.ndarray, config: RelatedConfig) -> tuple[np.ndarray, np.ndarray]:
  """The shared block [N, d] and the private blocks [T, N, d]."""
  n, d = len(x_NxD), config.block_dim
  blocks = x_NxD.reshape(n, 1 + config.num_tasks, d)
  return blocks[:, 0], blocks[:, 1:].transpose(1, 0, 2)


def shared_features(x_NxD: np.ndarray, teacher: Teacher, config: RelatedConfig) -> np.ndarray:
  shared, _ = _blocks(x_NxD, config)
  return np.maximum(shared @ teacher.shared_map_DxF, 0.0)


def _raw_parts(x_NxD: np.ndarray, teacher: Teacher, config: RelatedConfig):
  _, private_TxNxd = _blocks(x_NxD, config)
  shared_NxT = shared_features(x_NxD, teacher, config) @ teacher.shared_readout_FxT
  private_features_TxNxF = np.maximum(
      np.einsum("tnd,tdf->tnf", private_TxNxd, teacher.private_maps_TxDxF), 0.0)
  private_NxT = np.einsum("tnf,tf->nt", private_features_TxNxF, teacher.private_readout_TxF)
  return shared_NxT, private_NxT


def make_teacher(seed: int, config: RelatedConfig) -> Teacher:
  rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x4E1A7]))
  d, f, t = config.block_dim, config.features, config.num_tasks
  scale = 1.0 / np.sqrt(d)
  unstandardised = Teacher(
      shared_map_DxF=rng.normal(0, scale, (d, f)),
      private_maps_TxDxF=rng.normal(0, scale, (t, d, f)),
      shared_readout_FxT=rng.normal(0, 1, (f, t)),
      private_readout_TxF=rng.normal(0, 1, (t, f)),
      shared_moments_2xT=np.array([np.zeros(t), np.ones(t)]),
      private_moments_2xT=np.array([np.zeros(t), np.ones(t)]))
  shared, private = _raw_parts(rng.normal(size=(_MOMENT_SAMPLES, config.input_dim)),
                               unstandardised, config)
  return dataclasses.replace(
      unstandardised,
      shared_moments_2xT=np.array([shared.mean(0), shared.std(0)]),
      private_moments_2xT=np.array([private.mean(0), private.std(0)]))


def task_logits(x_NxD: np.ndarray, teacher: Teacher, config: RelatedConfig) -> np.ndarray:
  shared, private = _raw_parts(x_NxD, teacher, config)
  shared = (shared - teacher.shared_moments_2xT[0]) / teacher.shared_moments_2xT[1]
  private = (private - teacher.private_moments_2xT[0]) / teacher.private_moments_2xT[1]
  return np.sqrt(config.rho) * shared + np.sqrt(1.0 - config.rho) * private


def sample(num: int, seed: int, teacher: Teacher, config: RelatedConfig) -> tuple[np.ndarray, np.ndarray]:
  """Inputs [N, D] float32 and labels [N, T] int8 of `num` fresh examples."""
  rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x5A3B1E]))
  x = rng.normal(size=(num, config.input_dim))
  labels = (task_logits(x, teacher, config) > 0).astype(np.int8)
  return x.astype(np.float32), labels
