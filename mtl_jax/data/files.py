"""A data file's bytes, read once per process: a run's hash and its parse come from
the same read (`read` gives both).

Reading a file twice (once to hash it, once to parse it) fails on a pipe, as bash's
`<(zcat data.csv.gz)`: the second read finds it empty. It can also hash one version
of a file and parse another, if the file is edited in between.
"""
import functools
import hashlib
import os
import stat
from typing import NamedTuple

from mtl_jax.errors import InputError

# A pipe can be read only once, so its bytes are kept for the life of the process.
_unrepeatable: dict[tuple, "Contents"] = {}


def open_error(path: str, e: Exception) -> InputError:
  if isinstance(e, FileNotFoundError):
    ends = " (the path has spaces at its ends)" if path != path.strip() else ""
    return InputError(f"{path}: no such file{ends}")
  if isinstance(e, IsADirectoryError):
    return InputError(f"{path} is a directory, not a file")
  return InputError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}")


def check_path(kind: str, path: str) -> str:
  """The path, or a clear error for `csv:` with nothing after the colon (which
  would otherwise be reported as a file named '' that does not exist)."""
  if not path.strip():
    raise InputError(f"--dataset={kind}:{path} names no file: the path after '{kind}:' is empty")
  return os.path.expanduser(path)


def _identity(path: str) -> tuple:
  """What makes two reads of `path` the same file: a regular file's size and
  modification time, so that an edited file is read again; a pipe's inode alone (its
  modification time moves while it is being written)."""
  try:
    info = os.stat(path)
  except OSError as e:
    raise open_error(path, e) from None
  if stat.S_ISDIR(info.st_mode):
    raise open_error(path, IsADirectoryError())
  if stat.S_ISREG(info.st_mode):
    return (path, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
  return (path, info.st_dev, info.st_ino)


class Contents(NamedTuple):
  """One read of a file: its bytes and their sha1 (12 hex), which a run's hash holds."""
  sha1: str
  data: bytes


def read(path: str, reuse: bool = True) -> Contents:
  """The whole file, read once (again only once a regular file's size or modification
  time has changed). reuse=False reads a regular file afresh: file systems stamp
  times to a few milliseconds, so a rewrite of the same size can look unchanged."""
  identity = _identity(path)
  if len(identity) == 5:
    return _read_regular(identity) if reuse else _contents(path)
  if identity not in _unrepeatable:
    _unrepeatable[identity] = _contents(path)
  return _unrepeatable[identity]


@functools.lru_cache(maxsize=2)
def _read_regular(identity: tuple) -> Contents:
  return _contents(identity[0])


def _contents(path: str) -> Contents:
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise open_error(path, e) from None
  return Contents(hashlib.sha1(data).hexdigest()[:12], data)
