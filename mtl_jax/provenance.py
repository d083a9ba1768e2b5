"""What produced a result, recorded beside its config so a figure can be traced back
(and rerun) months later: the code's git commit, the library versions, the device."""
import functools
import os
import subprocess

import flax
import jax
import optax

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _git(*args: str) -> str:
  try:
    return subprocess.run(["git", *args], cwd=_REPO, capture_output=True, text=True,
                          timeout=10, check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return ""


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
  except OSError:
    return ""


@functools.lru_cache(maxsize=1)
def provenance() -> dict:
  """Computed once per process. `git_dirty` is True when tracked files differ from
  the commit, so the commit alone does not pin the code."""
  commit = _git("rev-parse", "HEAD")
  device = jax.devices()[0]
  return {
      "git_commit": commit or None,
      "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")) if commit else None,
      "jax": jax.__version__,
      "flax": flax.__version__,
      "optax": optax.__version__,
      # jax calls every CPU "cpu"; the model says which one timed the run.
      "device": f"{device.platform}: {_cpu_model() if device.platform == 'cpu' else device.device_kind}",
      "device_count": jax.device_count(),
  }
