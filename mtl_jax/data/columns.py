"""Which columns of a table are labels, which are left out, and which are features.

Shared by the CSV and ARFF readers, so that `--label_columns` and `--ignore_columns`
mean the same for both. A label spec is a list of names, or one `last:N` / `first:N`
(the last or first N of the columns that are neither ignored nor the CSV's split
column). Whatever is not a label and not left out is a feature, and the run prints
how many and which (`describe_features`): a label left out of `--label_columns`
would otherwise train as an input and make results look excellent.
"""
import re
from typing import Optional, Sequence

from mtl_jax.errors import InputError

_POSITION = re.compile(r"^\s*(first|last)\s*:\s*(\S*)\s*$", re.IGNORECASE)
# How many names the feature line shows at each end.
SHOWN_AT_EACH_END = 3


def position_spec(spec: Sequence[str]) -> Optional[tuple[str, int]]:
  """('first' | 'last', N) for a spec of one `first:N` / `last:N` item, else None (names).
  A positive whole N only: `last:0` would train nothing, and `last:x` is a typo."""
  if len(spec) != 1:
    if any(_POSITION.match(item) for item in spec):
      raise InputError(f"--label_columns={','.join(spec)}: first:N or last:N stands alone, "
                       "not beside names")
    return None
  match = _POSITION.match(spec[0])
  if not match:
    return None
  end, count = match.group(1).lower(), match.group(2)
  if not count.isdigit() or int(count) < 1:
    raise InputError(f"--label_columns={spec[0]}: {end}:N takes a whole number N >= 1")
  return end, int(count)


def by_position(path: str, candidates: Sequence[str], end: str, count: int) -> list[str]:
  """The first or last `count` of `candidates` (the columns that can be labels)."""
  if count > len(candidates):
    raise InputError(f"{path}: --label_columns={end}:{count} asks for {count} label columns, "
                     f"but it has only {len(candidates)} columns that are not ignored")
  return list(candidates[:count] if end == "first" else candidates[-count:])


def ignored(path: str, columns: Sequence[str], ignore: Sequence[str]) -> set[str]:
  """The names of --ignore_columns, each of which must be a column of the file."""
  unknown = [name for name in ignore if name not in columns]
  if unknown:
    raise InputError(f"{path}: --ignore_columns names {unknown[0]!r}, which is not one of its "
                     f"{len(columns)} columns ({describe_names(columns)})")
  return set(ignore)


def check_not_ignored(path: str, labels: Sequence[str], ignore: set[str]) -> None:
  both = [name for name in labels if name in ignore]
  if both:
    raise InputError(f"{path}: {both[0]!r} is a label column and in --ignore_columns; "
                     "it can be one or the other")


def describe_names(names: Sequence[str]) -> str:
  """'a', 'b', 'c', ..., 'x', 'y', 'z': the first and last few of a list of names."""
  quoted = [repr(name) for name in names]
  if len(quoted) <= 2 * SHOWN_AT_EACH_END + 1:
    return ", ".join(quoted)
  return ", ".join(quoted[:SHOWN_AT_EACH_END] + ["..."] + quoted[-SHOWN_AT_EACH_END:])


def describe_features(names: Sequence[str]) -> str:
  """The line every read dataset prints at the start: how many feature columns the
  model sees, and the first and last few of them."""
  return f"features: {len(names)} column{'s' if len(names) != 1 else ''}, {describe_names(names)}"
