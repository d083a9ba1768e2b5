"""Hiding labels to simulate the course note's missing ("?") entries."""

from __future__ import annotations

import numpy as np

MISSING = -1


def hide_labels(labels_NxT: np.ndarray, missing_frac: float, seed: int) -> np.ndarray:
  """Returns a copy of ``labels_NxT`` with a fraction of cells set to -1.

  Exactly ``round(missing_frac * N * T)`` cells, chosen uniformly at random
  without replacement over all N*T cells (so a row may lose several labels, or
  all of them), are set to -1; every other cell is unchanged (cells that were
  already -1 may be chosen again, so the final count of -1 is at least that).
  Deterministic given ``seed``.  Works for any T; the dtype is preserved
  (int8 in -> int8 out).
  """
  labels = np.asarray(labels_NxT)
  if labels.ndim != 2:
    raise ValueError(f"labels must be [N, T], got shape {labels.shape}")
  if not 0.0 <= missing_frac <= 1.0:
    raise ValueError("missing_frac must be in [0, 1]")
  out = labels.copy()
  k = int(round(missing_frac * labels.size))
  if k:
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x3155]))
    cells = rng.choice(labels.size, size=k, replace=False)
    out.reshape(-1)[cells] = MISSING
  return out
