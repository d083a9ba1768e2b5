"""A stop that a signal asked for, kept until the run acts on it.

A Python signal handler runs between two bytecodes of the main thread, wherever they
are. When they are inside a callback whose exceptions Python ignores (a garbage
collector callback such as the one JAX registers, a `__del__`), the KeyboardInterrupt
the handler raises is reported as "Exception ignored" and lost: the run would go on to
the end as if no signal had come, and a scheduler that asked it to stop would see it
exit 0. So the request is kept here as well, and the sweep asks for it at each safe
point (each epoch shown, each group), raising there what was lost.
"""
import contextlib
import signal
import sys
from typing import Iterable, Iterator

_requested_by: list[int] = []  # the signal numbers that asked for a stop, in order


def request(signum: int, frame=None) -> None:
  """A signal handler: keep the request, then stop the main thread as Ctrl-C does."""
  del frame
  _requested_by.append(signum)
  raise KeyboardInterrupt


def raise_if_requested() -> None:
  """Raise the KeyboardInterrupt of a request that a callback swallowed. A request
  acted on ends the run, so one still here when the run asks was lost on its way."""
  if _requested_by:
    raise KeyboardInterrupt


def requested_by() -> int:
  """The signal of the last request; SIGINT when none came (a KeyboardInterrupt raised
  some other way: by Python's own handler outside `handling`, or by code)."""
  return _requested_by[-1] if _requested_by else signal.SIGINT


def _quiet_when_requested(unraisable) -> None:
  """Drops the "Exception ignored" report of an interrupt that raise_if_requested
  raises again at the next safe point; every other report is printed as before."""
  if _requested_by and issubclass(unraisable.exc_type, KeyboardInterrupt):
    return
  sys.__unraisablehook__(unraisable)


@contextlib.contextmanager
def handling(signals: Iterable[int]) -> Iterator[None]:
  """While the block runs, each of `signals` whose handler is the default one (SIGINT's
  being Python's default_int_handler) requests a stop. A signal already ignored stays
  ignored: `nohup launch.py` must outlive its terminal. Must run in the main thread."""
  defaults = (signal.SIG_DFL, signal.default_int_handler)
  _requested_by.clear()
  saved = {s: signal.signal(s, request) for s in signals if signal.getsignal(s) in defaults}
  saved_hook, sys.unraisablehook = sys.unraisablehook, _quiet_when_requested
  try:
    yield
  finally:
    sys.unraisablehook = saved_hook
    for signum, handler in saved.items():
      signal.signal(signum, handler)
