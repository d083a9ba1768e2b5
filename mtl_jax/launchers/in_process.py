"""--launcher=local: every group in this process, one after another (sweep.run_pending)."""
from typing import Optional

from mtl_jax.launchers.base import Launcher, LaunchSettings, Sweep
from mtl_jax.sweep import run_pending


def _unmet(settings: LaunchSettings) -> Optional[str]:
  del settings
  return None


def _train(sweep: Sweep, settings: LaunchSettings) -> dict[str, dict]:
  del settings
  return run_pending(sweep.groups, sweep.load_data, sweep.results_path,
                     checkpointing=sweep.checkpointing, save_params_in=sweep.save_params_in)


LAUNCHER = Launcher("every group in this process, one after another (the default)", _unmet, _train,
                    in_process=True)
