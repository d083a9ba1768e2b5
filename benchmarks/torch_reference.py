"""The same networks and loss in plain PyTorch, for benchmarks/framework_case.py's
PyTorch rows and benchmarks/torchjd_compare.py.

Optional: needs `pip install torch==2.13.0` (CPU). The CNN mirrors models.CNNEncoder:
3x3 stride-2 convolutions whose 'SAME' padding adds one row and column at the bottom
and right of an even-sized input, then ReLU; the MLP mirrors MLPEncoder; one linear
head per task. The loss is the masked logistic J, divided by the batch size.
"""
import numpy as np

# PyTorch's Adam implementations (framework_case.py's --torch_adam), the default first:
# PyTorch at its best, fused (one kernel per optimizer) made 16 separate CNNs 17-28%
# faster than its CPU default and the joint CNN no slower (docs/speed.md).
TORCH_ADAMS = ("fused", "default", "foreach")


def available() -> bool:
  try:
    import torch  # noqa: F401
  except ImportError:
    return False
  return True


def _encoder(kind: str, width: int, depth: int, input_shape: tuple[int, ...]):
  from torch import nn
  if kind == "mlp":
    layers, size = [nn.Flatten()], int(np.prod(input_shape))
    for _ in range(depth):
      layers += [nn.Linear(size, width), nn.ReLU()]
      size = width
    return nn.Sequential(*layers), size
  height, _, channels = input_shape
  layers = []
  for _ in range(depth):
    layers += [nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(channels, width, 3, stride=2), nn.ReLU()]
    channels, height = width, (height + 1) // 2
  return nn.Sequential(*layers, nn.Flatten()), channels * height * height


def network(kind: str, width: int, depth: int, num_tasks: int, input_shape: tuple[int, ...]):
  from torch import nn
  encoder, features = _encoder(kind, width, depth, input_shape)
  return nn.Sequential(encoder, nn.Linear(features, num_tasks))


def masked_logistic_loss(logits, labels):
  import torch
  valid = labels != -1
  safe = torch.where(valid, labels, torch.zeros_like(labels)).to(logits.dtype)
  losses = torch.nn.functional.softplus(logits) - safe * logits
  return torch.where(valid, losses, torch.zeros_like(losses)).sum() / logits.shape[0]


def _batches(x: np.ndarray, y: np.ndarray, batch_size: int, steps: int, seed: int = 0):
  """Torch tensors of `steps` batches, made before timing: the data is resident, as
  it is for the JAX loop (images as float32 NCHW in [0, 1])."""
  import torch
  rng = np.random.default_rng(seed)
  x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
  if x.ndim == 4:
    x = x.transpose(0, 3, 1, 2)
  picks = [rng.choice(len(x), batch_size, replace=False) for _ in range(steps)]
  return [(torch.from_numpy(np.ascontiguousarray(x[p])), torch.from_numpy(y[p].astype(np.float32)))
          for p in picks]
