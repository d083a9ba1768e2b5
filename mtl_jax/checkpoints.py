"""Orbax checkpoints of a training run between epochs, so that a long run survives
preemption: the run's whole state (parameters, optimizer state, best-epoch tracking,
losses so far) is saved every N epochs and restored by the next run of the same group.

Because each epoch's shuffle is derived from the seed and the epoch number, a run
resumed from epoch e makes exactly the updates the uninterrupted run would have made.
"""
import contextlib
import dataclasses
import os
import shutil
from typing import Any, Optional

import jax


@dataclasses.dataclass(frozen=True)
class CheckpointSettings:
  directory: str  # this run's own folder
  every: int  # save after every this many epochs (0: never; only resume)
  resume: bool  # start from the latest checkpoint in `directory`, if there is one


class EpochCheckpoints:
  """Saves synchronously: the training step donates (reuses) the buffers of the state
  it is given, so a background save could read memory that is being overwritten."""

  def __init__(self, settings: CheckpointSettings):
    import orbax.checkpoint as ocp  # imported here: slow, and only needed when checkpointing

    self._ocp = ocp
    self.settings = settings
    if not settings.resume:
      shutil.rmtree(settings.directory, ignore_errors=True)
    self._manager = ocp.CheckpointManager(
        os.path.abspath(settings.directory),
        options=ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False,
                                             create=True))

  def restore(self, like: Any) -> Optional[tuple[int, Any]]:
    """(epochs done, state shaped like `like`) of the latest checkpoint, or None."""
    epoch = self._manager.latest_step()
    if epoch is None:
      return None
    abstract = jax.tree.map(self._ocp.utils.to_shape_dtype_struct, like)
    return epoch, self._manager.restore(epoch, args=self._ocp.args.StandardRestore(abstract))

  def save(self, epochs_done: int, state: Any) -> None:
    if self.settings.every and epochs_done % self.settings.every == 0:
      self._manager.save(epochs_done, args=self._ocp.args.StandardSave(state))

  def close(self, finished: bool) -> None:
    """A finished run's checkpoints are no longer needed: its result is on file."""
    self._manager.close()
    if finished:
      shutil.rmtree(self.settings.directory, ignore_errors=True)
      with contextlib.suppress(OSError):  # the folder of all runs' checkpoints, once empty
        os.rmdir(os.path.dirname(os.path.abspath(self.settings.directory)))
