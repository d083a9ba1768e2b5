"""Which attributes of an ARFF file are labels, from the three places the field keeps it.

- `--label_columns`: names, or `last:N` / `first:N` (columns.py);
- a MULAN label file (`<label name="..."/>` elements), given by `--label_file` or found
  beside the ARFF: `PATH.xml` for `PATH.arff`, else `STEM.xml` with a `-train` /
  `-test` suffix (or `_train` / `_test`) stripped, so `enron-train.arff` finds `enron.xml`;
- MEKA's `-C N` in the `@relation` line: the first N attributes, or the last N if negative.

The most explicit source present wins: flag, then label file, then MEKA. A source that
holds every label of the winner agrees, and its other labels are labels too (never
features): `--label_columns=A.A1` on enron trains one task and keeps enron.xml's other
52 labels out of the inputs. A source that does not is ignored, and the run says so and
which of its labels are features now (medical's `-C 45` names its first 45 attributes,
which are words; medical.xml names the last 45).
"""
import dataclasses
import os
import re
import xml.etree.ElementTree as ElementTree
from typing import Optional, Sequence

from mtl_jax.data import columns
from mtl_jax.errors import InputError

_MEKA_C = re.compile(r"(?:^|[\s:'\"])-C\s+(-?\d+)")
_SPLIT_SUFFIX = re.compile(r"[-_](train|test)$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Source:
  what: str  # for messages: "--label_columns=last:3", "enron.xml", "MEKA's -C 45 in @relation"
  labels: tuple[str, ...]  # attribute names, in the source's order


@dataclasses.dataclass(frozen=True)
class Choice:
  tasks: tuple[str, ...]  # the labels to train, in order
  labels: frozenset  # every label attribute (tasks and the agreeing sources' others): no feature
  notes: tuple[str, ...]  # which source was used and which ignored, for the run to print


def meka_count(relation: str) -> Optional[int]:
  """N of MEKA's `-C N` in a relation name, or None."""
  match = _MEKA_C.search(relation)
  return int(match.group(1)) if match and int(match.group(1)) != 0 else None


def find_label_file(arff_path: str) -> Optional[str]:
  """The MULAN label file beside an ARFF file, if there is one."""
  stem = os.path.splitext(arff_path)[0]
  for candidate in (stem + ".xml", _SPLIT_SUFFIX.sub("", stem) + ".xml"):
    if os.path.isfile(candidate):
      return candidate
  return None


def read_label_file(path: str, data: bytes) -> tuple[str, ...]:
  """The label names of a MULAN label file (a hierarchy's nested labels included)."""
  try:
    root = ElementTree.fromstring(data)
  except ElementTree.ParseError as e:
    raise InputError(f"{path} is not a readable MULAN label file ({e})") from None
  names = [element.get("name") for element in root.iter()
           if element.tag.rpartition("}")[2] == "label"]
  if not names or None in names:
    raise InputError(f"{path}: a MULAN label file lists <label name=\"...\"/> elements; "
                     f"{'one has no name' if names else 'it has none'}")
  return tuple(names)


def _flag_source(path: str, spec: Sequence[str], candidates: Sequence[str]) -> Source:
  position = columns.position_spec(spec)
  labels = columns.by_position(path, candidates, *position) if position else list(spec)
  return Source(f"--label_columns={','.join(spec)}", tuple(labels))


def _meka_source(path: str, count: int, names: Sequence[str]) -> Source:
  if abs(count) > len(names):
    raise InputError(f"{path}: MEKA's -C {count} in @relation asks for {abs(count)} labels, but "
                     f"the file has {len(names)} attributes")
  labels = names[:count] if count > 0 else names[count:]
  return Source(f"MEKA's -C {count} in @relation (the {'first' if count > 0 else 'last'} "
                f"{abs(count)} attributes)", tuple(labels))


def sources(path: str, names: Sequence[str], flag: Sequence[str], ignore: set[str],
            label_file: Optional[tuple[str, tuple[str, ...]]], relation: str) -> list[Source]:
  """The label sources present, most explicit first."""
  found = []
  if flag:
    found.append(_flag_source(path, flag, [n for n in names if n not in ignore]))
  if label_file:
    found.append(Source(os.path.basename(label_file[0]), label_file[1]))
  count = meka_count(relation)
  if count is not None:
    found.append(_meka_source(path, count, names))
  for source in found:
    unknown = [label for label in source.labels if label not in names]
    if unknown:
      raise InputError(f"{path}: {source.what} names label {unknown[0]!r}, which is not one of its "
                       f"{len(names)} attributes ({columns.describe_names(names)})")
  return found


def choose(path: str, found: list[Source]) -> Choice:
  """The winner's labels as tasks; the others agree (their labels stay labels) or are
  ignored, with a note saying which and what that makes features."""
  if not found:
    raise InputError(f"{path}: no labels: give a MULAN label file (--label_file=X.xml, or X.xml "
                     "beside the file), a MEKA '-C N' in @relation, or --label_columns (names, or "
                     "last:N / first:N)")
  winner, others = found[0], found[1:]
  tasks, labels = winner.labels, set(winner.labels)
  notes = [f"labels: {len(tasks)} from {winner.what}"]
  for other in others:
    if set(tasks) <= set(other.labels):
      extra = [label for label in other.labels if label not in labels]
      labels.update(other.labels)
      notes.append(f"{other.what} agrees" + (f" and holds {len(extra)} more labels, left out "
                                              f"(not features): {columns.describe_names(extra)}"
                                              if extra else ""))
    else:
      now_features = [label for label in other.labels if label not in labels]
      notes.append(f"ignored {other.what}, which disagrees; the {len(now_features)} of its labels "
                   f"that are not labels here stay features (unless --ignore_columns): "
                   f"{columns.describe_names(now_features)}")
  return Choice(tuple(tasks), frozenset(labels), tuple(notes))
