"""Orbax checkpoints of a training run between epochs, so that a long run survives
preemption: the run's whole state (parameters, optimizer state, best-epoch tracking,
losses so far) is saved every N epochs and restored by the next run of the same group.

Because each epoch's shuffle is derived from the seed and the epoch number, a run
resumed from epoch e makes exactly the updates the uninterrupted run would have made.
"""
import contextlib
import dataclasses
import hashlib
import os
import shutil
import sys
from typing import Any, Optional

import jax
import numpy as np

from mtl_jax.results import DISK_FULL, WriteError, write_atomically

# Beside each group's folder, FOLDER.sha1 holds "EPOCH SHA1" of the state saved last.
DIGEST = ".sha1"


@dataclasses.dataclass(frozen=True)
class CheckpointSettings:
  directory: str  # this run's own folder
  every: int  # save after every this many epochs (0: never; only resume)
  resume: bool  # start from the latest checkpoint in `directory`, if there is one


class EpochCheckpoints:
  """Saves synchronously: the training step donates (reuses) the buffers of the state
  it is given, so a background save could read memory that is being overwritten.

  A checkpoint that cannot be restored (truncated or garbage files, another layout of
  the state from other code), or whose restored state differs from the digest saved
  beside it (DIGEST), is deleted, saying so loudly, and the group trains from scratch.
  That never gives a wrong result: training from scratch is exactly the run the
  checkpoint was a part of (each epoch's batches come from the seed and the epoch
  number), so the only cost is time; stopping instead would make the user delete the
  same folder by hand to get the same computation. The digest is what makes damage that
  still decodes (garbage in an array's bytes) count as damage."""

  def __init__(self, settings: CheckpointSettings):
    import orbax.checkpoint as ocp  # imported here: slow, and only needed when checkpointing

    self._ocp = ocp
    self.settings = settings
    if not settings.resume:
      _remove(settings.directory)
      _remove(self._digest_path)
    try:
      self._manager = self._open()
    except Exception as e:  # damage that orbax trips on already when listing the saves
      if not settings.resume:
        raise
      self._discard(e)

  def _open(self):
    ocp = self._ocp
    try:
      return ocp.CheckpointManager(
          os.path.abspath(self.settings.directory),
          options=ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False,
                                               create=True))
    except Exception as e:
      error = _os_error(e)
      if error is None:
        raise
      raise WriteError(f"the checkpoint folder {self.settings.directory}", error) from e

  def _discard(self, error: Exception) -> None:
    """Deletes a damaged checkpoint, saying why, and starts an empty one."""
    print(f"warning: the checkpoint in {self.settings.directory} cannot be restored "
          f"({type(error).__name__}: {_first_line(error)}); deleted, and this group trains from "
          "scratch (the same result, only slower)", file=sys.stderr, flush=True)
    manager = getattr(self, "_manager", None)
    if manager is not None:
      with contextlib.suppress(Exception):
        manager.close()
    _remove(self.settings.directory)
    _remove(self._digest_path)
    self._manager = self._open()

  def restore(self, like: Any) -> Optional[tuple[int, Any]]:
    """(epochs done, state shaped like `like`) of the latest checkpoint, or None (also
    when it was damaged: then it is deleted, see the class)."""
    try:
      epoch = self._manager.latest_step()
      if epoch is None:
        return None
      abstract = jax.tree.map(self._ocp.utils.to_shape_dtype_struct, like)
      restored = self._manager.restore(epoch, args=self._ocp.args.StandardRestore(abstract))
      _check_like(restored, like)
      self._check_digest(epoch, restored)
      return epoch, restored
    except Exception as e:  # anything at all: the fallback costs time, never correctness
      self._discard(e)
      return None

  def save(self, epochs_done: int, state: Any) -> None:
    if self.settings.every and epochs_done % self.settings.every == 0:
      try:
        self._manager.save(epochs_done, args=self._ocp.args.StandardSave(state))
      except Exception as e:
        error = _os_error(e)
        if error is None:
          raise
        raise WriteError(f"a checkpoint in {self.settings.directory}", error) from e
      line = f"{epochs_done} {tree_digest(state)}\n"
      write_atomically(self._digest_path, lambda path: _write_text(path, line))

  @property
  def _digest_path(self) -> str:
    return os.path.abspath(self.settings.directory) + DIGEST

  def _check_digest(self, epoch: int, restored: Any) -> None:
    """The restored state is, to the bit, the one saved at `epoch` (ValueError if not)."""
    try:
      with open(self._digest_path) as f:
        saved_epoch, digest = f.read().split()
    except (OSError, ValueError):
      raise ValueError(f"no readable digest in {self._digest_path} to check it against") from None
    if saved_epoch != str(epoch) or digest != tree_digest(restored):
      raise ValueError(f"its arrays differ from the digest saved with epoch {saved_epoch}")

  def close(self, finished: bool) -> None:
    """A finished run's checkpoints are no longer needed: its result is on file."""
    self._manager.close()
    if finished:
      _remove(self.settings.directory)
      _remove(self._digest_path)
      with contextlib.suppress(OSError):  # the folder of all runs' checkpoints, once empty
        os.rmdir(os.path.dirname(os.path.abspath(self.settings.directory)))


def _write_text(path: str, text: str) -> None:
  with open(path, "w") as f:
    f.write(text)


def tree_digest(state: Any) -> str:
  """sha1 of every array of a state, with its shape and dtype, in tree order."""
  digest = hashlib.sha1()
  for leaf in jax.tree.leaves(state):
    array = np.asarray(leaf)
    digest.update(f"{array.shape}{array.dtype}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
  return digest.hexdigest()


def _remove(path: str) -> None:
  """A group's checkpoint folder, or a file where it should be."""
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path, ignore_errors=True)
  else:
    with contextlib.suppress(OSError):
      os.remove(path)


def _first_line(error: Exception) -> str:
  text = str(error).strip()
  return (text.splitlines()[0][:200] if text else "no message")


def _check_like(restored: Any, like: Any) -> None:
  """A restored state has the structure, shapes and dtypes of the one asked for."""
  if jax.tree.structure(restored) != jax.tree.structure(like):
    raise ValueError("the saved state has another structure")
  kind = lambda x: (np.shape(x), np.dtype(getattr(x, "dtype", None) or np.asarray(x).dtype))
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(like)):
    if kind(a) != kind(b):
      raise ValueError(f"a saved array is {kind(a)}, expected {kind(b)}")


# How a full disk or quota reads when a library reports it in words (tensorstore).
_DISK_FULL_WORDS = tuple(os.strerror(code) for code in DISK_FULL)


def _os_error(error: BaseException) -> Optional[OSError]:
  """The OSError behind a failed save (orbax may wrap it), or one standing for a full
  disk that a library reported in words; None for anything else."""
  seen = error
  while seen is not None:
    if isinstance(seen, OSError):
      return seen
    seen = seen.__cause__  # not __context__: an OSError handled on the way is no cause
  for code, words in zip(DISK_FULL, _DISK_FULL_WORDS):
    if words in str(error):
      return OSError(code, words)
  return None
