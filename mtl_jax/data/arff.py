"""ARFF files as Weka, MULAN and MEKA write them, parsed into attributes and a matrix.

What is read: `@relation`, `@attribute` and `@data` (keywords in any case); `%`
comments; names and values quoted with ' or " (with backslash escapes), so they may
hold spaces and commas; numeric (numeric, real, integer), nominal (`{a,b,...}`),
string and date attributes; dense rows and sparse rows (`{index value, ...}`, indices
from 0), mixed freely; `?` for a missing value. As in Weka, a value a sparse row
leaves out is 0: the number 0, or a nominal attribute's first declared value.

Every cell becomes a float32 code (`Arff.codes`; a number beyond float32 is refused): a numeric value, the index of a
nominal value among the declared ones, NaN where missing; string and date cells are
not kept (they are never features, arff_table.py). Rows are tokenized a chunk at a
time and each chunk's tokens converted a group of like columns at once, which keeps
both time and memory down (benchmarks/arff_read.py). Relational attributes and instance weights are
refused with one clear error rather than read wrongly.
"""
import dataclasses
import re

import numpy as np

from mtl_jax.data.tables import FLOAT32_MAX, decode
from mtl_jax.errors import InputError

NUMERIC_TYPES = ("numeric", "real", "integer")
MISSING = "?"


@dataclasses.dataclass(frozen=True)
class Attribute:
  name: str
  kind: str  # "numeric", "nominal", "string" or "date"
  values: tuple[str, ...] = ()  # nominal: its declared values, in order

  def declaration(self) -> str:
    """How the file declares it, for messages."""
    return "{" + ",".join(self.values) + "}" if self.kind == "nominal" else self.kind


@dataclasses.dataclass(frozen=True)
class Arff:
  path: str
  relation: str
  attributes: tuple[Attribute, ...]
  codes: np.ndarray  # [N, A] float32: numeric value or nominal index; NaN where missing
  lines: np.ndarray  # [N] the file line of each row, for messages

  @property
  def names(self) -> tuple[str, ...]:
    return tuple(a.name for a in self.attributes)


# One value of a comma-separated list: quoted (with escapes) or plain, then a comma or the end.
_VALUE = re.compile(r"""\s*('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^,'"]*?)\s*(?P<sep>,|$)""")
# One entry of a sparse row: an index, spaces, a quoted or plain value, then a comma or the end.
_SPARSE_ENTRY = re.compile(r"""\s*(\d+)\s+('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^,'"]*?)\s*(?P<sep>,|$)""")
_ESCAPE = re.compile(r"\\(.)")
_ESCAPED = {"n": "\n", "t": "\t", "r": "\r"}
# A name after @relation / @attribute: quoted, or up to the first white space.
_NAME = re.compile(r"""\s*('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S+)\s*(.*)$""", re.DOTALL)


def unquote(token: str) -> str:
  if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
    return _ESCAPE.sub(lambda m: _ESCAPED.get(m.group(1), m.group(1)), token[1:-1])
  return token


def _where(path: str, line: int) -> str:
  return f"{path}: line {line}"


def _scan(pattern: re.Pattern, text: str, path: str, line: int, what: str) -> list[re.Match]:
  """The successive matches of `pattern` (whose group 'sep' is a comma or the end) over
  the whole of `text`; one clear error where it stops matching."""
  matches, pos = [], 0
  while True:
    match = pattern.match(text, pos)
    if match is None:
      raise InputError(f"{_where(path, line)}: {text[pos:pos + 40].strip()!r} is not {what}")
    matches.append(match)
    if not match.group("sep"):
      return matches
    pos = match.end()


def split_values(text: str, path: str, line: int) -> list[str]:
  """A comma-separated list of values, unquoted; one clear error for an open quote."""
  if "'" not in text and '"' not in text:
    return [token.strip() for token in text.split(",")]
  return [unquote(m.group(1)) for m in _scan(_VALUE, text, path, line, "a value (a quote that is "
                                             "not closed, or a quote inside an unquoted value?)")]


def _sparse_entries(body: str, path: str, line: int) -> list[tuple[str, str]]:
  """(index, value) pairs of a sparse row's body, the text between its braces."""
  if not body.strip():
    return []
  return [(m.group(1), unquote(m.group(2)))
          for m in _scan(_SPARSE_ENTRY, body, path, line, "a sparse entry 'index value'")]


def _attribute(text: str, path: str, line: int) -> Attribute:
  match = _NAME.match(text)
  if not match or not match.group(2).strip():
    raise InputError(f"{_where(path, line)}: @attribute needs a name and a type; got {text.strip()!r}")
  name, kind = unquote(match.group(1)), match.group(2).strip()
  if kind.startswith("{"):
    if not kind.endswith("}"):
      raise InputError(f"{_where(path, line)}: the values of attribute {name!r} have no closing '}}'")
    values = tuple(split_values(kind[1:-1], path, line))
    if len(set(values)) < len(values) or "" in values:
      raise InputError(f"{_where(path, line)}: attribute {name!r} declares an empty or repeated value")
    return Attribute(name, "nominal", values)
  word = kind.split()[0].lower()
  if word in NUMERIC_TYPES:
    return Attribute(name, "numeric")
  if word in ("string", "date"):
    return Attribute(name, word)
  raise InputError(f"{_where(path, line)}: attribute {name!r} has type {kind!r}; this reader "
                   f"takes {', '.join(NUMERIC_TYPES)}, {{nominal values}}, string and date")


def _header(lines: list[str], path: str) -> tuple[str, list[Attribute], int]:
  """(relation, attributes, index of the first line after @data)."""
  relation, attributes = "", []
  for i, raw in enumerate(lines):
    text = raw.strip()
    if not text or text.startswith("%"):
      continue
    keyword, rest = (text.split(None, 1) + [""])[:2]
    keyword = keyword.lower()
    if keyword == "@relation":
      match = _NAME.match(rest)
      relation = unquote(match.group(1)) if match else ""
    elif keyword == "@attribute":
      attributes.append(_attribute(rest, path, i + 1))
    elif keyword == "@data":
      if not attributes:
        raise InputError(f"{path}: no @attribute lines before @data")
      return relation, attributes, i + 1
    else:
      raise InputError(f"{_where(path, i + 1)}: expected @relation, @attribute or @data; got "
                       f"{text[:40]!r} (is this an ARFF file?)")
  raise InputError(f"{path}: no @data line; an ARFF file declares its @attribute lines, then @data")


# Rows are tokenized and converted a chunk of about this many cells (a dense row has
# one per attribute) at a time, so that the Python strings of a large file's tokens
# never exist all at once (a 10 MB sparse file has 1.5 million entries).
CELLS_PER_CHUNK = 250_000


@dataclasses.dataclass
class _Chunk:
  """The tokens of a run of data rows (numbered in file order): dense rows as one
  token list per row, sparse entries as parallel (row, index, value) lists."""
  dense_rows: list = dataclasses.field(default_factory=list)
  dense_tokens: list = dataclasses.field(default_factory=list)
  sparse_rows: list = dataclasses.field(default_factory=list)
  sparse_indices: list = dataclasses.field(default_factory=list)
  sparse_tokens: list = dataclasses.field(default_factory=list)


def _weights_error(path: str, line: int) -> InputError:
  return InputError(f"{_where(path, line)}: instance weights ({{w}} after a row) are not supported; "
                    "remove them")


def _add_sparse(chunk: _Chunk, row: int, text: str, path: str, line: int) -> None:
  body, close, rest = text[1:].partition("}")
  if not close:
    raise InputError(f"{_where(path, line)}: a sparse row opens with '{{' but has no closing '}}'")
  if rest.strip():
    raise _weights_error(path, line) if rest.strip().startswith(",") else InputError(
        f"{_where(path, line)}: {rest.strip()[:40]!r} after a sparse row's closing '}}'")
  flat = body.replace(",", " ").split()
  if "'" in body or '"' in body or len(flat) % 2:
    pairs = _sparse_entries(body, path, line)
    flat = [item for pair in pairs for item in pair]
  chunk.sparse_rows.extend([row] * (len(flat) // 2))
  chunk.sparse_indices.extend(flat[0::2])
  chunk.sparse_tokens.extend(flat[1::2])


def _chunk(texts: list[str], first_row: int, lines: np.ndarray, path: str, num_attributes: int) -> _Chunk:
  chunk = _Chunk()
  for row, text in enumerate(texts, first_row):
    if text.startswith("{"):
      _add_sparse(chunk, row, text, path, lines[row])
      continue
    tokens = split_values(text, path, lines[row])
    if len(tokens) == num_attributes + 1 and tokens[-1].startswith("{"):
      raise _weights_error(path, lines[row])
    if len(tokens) != num_attributes:
      raise InputError(f"{_where(path, lines[row])} has {len(tokens)} values but the file declares "
                       f"{num_attributes} attributes")
    chunk.dense_rows.append(row)
    chunk.dense_tokens.append(tokens)
  return chunk


def _sparse_columns(chunk: _Chunk, lines: np.ndarray, path: str, num_attributes: int) -> np.ndarray:
  indices = chunk.sparse_indices
  try:  # int() on each is several times faster than numpy's string-to-int cast
    columns = np.fromiter(map(int, indices), dtype=np.int64, count=len(indices))
    bad = np.flatnonzero((columns < 0) | (columns >= num_attributes))
  except ValueError:
    bad = [i for i, index in enumerate(indices) if not index.isdigit()]
  if len(bad):
    raise InputError(f"{_where(path, lines[chunk.sparse_rows[bad[0]]])}: sparse index "
                     f"{indices[bad[0]]!r} is not one of the {num_attributes} attributes "
                     f"(0 to {num_attributes - 1})")
  return columns


def _convert(attribute: Attribute, tokens: np.ndarray, locate) -> np.ndarray:
  """Codes of one attribute's (or several like attributes') tokens, any shape.
  locate(flat index) -> 'line L, attribute NAME' for an error."""
  missing = tokens == MISSING
  if attribute.kind == "nominal":
    index = {value: float(i) for i, value in enumerate(attribute.values)}
    index[MISSING] = np.nan
    unique, inverse = np.unique(tokens, return_inverse=True)
    unknown = [str(u) for u in unique if u not in index]
    if unknown:
      at = int(np.flatnonzero(tokens.ravel() == unknown[0])[0])
      raise InputError(f"{locate(at)}: {unknown[0]!r} is not one of its values "
                       f"{attribute.declaration()}")
    return np.array([index[u] for u in unique], dtype=np.float64)[inverse].reshape(tokens.shape)
  try:
    codes = np.where(missing, "nan", tokens).astype(np.float64)
  except ValueError:
    for at, token in enumerate(tokens.ravel()):
      try:
        float(token)
      except ValueError:
        raise InputError(f"{locate(at)}: {str(token)!r} is not a number") from None
    raise
  bad = np.flatnonzero(~(np.isfinite(codes) | missing).ravel())
  if bad.size:
    raise InputError(f"{locate(int(bad[0]))} is {str(tokens.ravel()[bad[0]])!r}; write a number, or ? "
                     "for a missing value")
  beyond = np.flatnonzero((np.abs(np.nan_to_num(codes)) > FLOAT32_MAX).ravel())
  if beyond.size:
    raise InputError(f"{locate(int(beyond[0]))} is {str(tokens.ravel()[beyond[0]])}, beyond float32's "
                     "range, in which the model computes; rescale that attribute")
  return codes


def _groups(attributes: list[Attribute]) -> dict:
  """Columns that convert alike (every numeric one; nominal ones with the same values),
  so that 1,185 YES/NO attributes convert as one array. String and date: not kept."""
  groups: dict = {}
  for j, attribute in enumerate(attributes):
    if attribute.kind in ("numeric", "nominal"):
      key = ("numeric",) if attribute.kind == "numeric" else attribute.values
      groups.setdefault(key, (attribute, []))[1].append(j)
  return groups


def _fill(codes: np.ndarray, chunk: _Chunk, attributes: list[Attribute], groups: dict,
          lines: np.ndarray, path: str) -> None:
  """Writes a chunk's cells into codes, converting each group of like columns at once."""
  names = [a.name for a in attributes]
  dense_rows = np.asarray(chunk.dense_rows, dtype=np.int64)
  dense = np.asarray(chunk.dense_tokens, dtype=str).reshape(len(dense_rows), len(attributes))
  rows = np.asarray(chunk.sparse_rows, dtype=np.int64)
  cols = _sparse_columns(chunk, lines, path, len(attributes))
  tokens = np.asarray(chunk.sparse_tokens, dtype=str)
  for attribute, columns in groups.values():
    if len(dense_rows):
      block = dense[:, columns]
      where = lambda at, b=block, c=columns: (f"{_where(path, lines[dense_rows[at // b.shape[1]]])}, "
                                              f"attribute {names[c[at % b.shape[1]]]!r}")
      codes[dense_rows[:, None], np.asarray(columns)[None, :]] = _convert(attribute, block, where)
    chosen = np.flatnonzero(np.isin(cols, columns))
    if chosen.size:
      where = lambda at, ch=chosen: (f"{_where(path, lines[rows[ch[at]]])}, "
                                     f"attribute {names[cols[ch[at]]]!r}")
      codes[rows[chosen], cols[chosen]] = _convert(attribute, tokens[chosen], where)


def _data(lines: list[str], start: int, attributes: list[Attribute], path: str
          ) -> tuple[np.ndarray, np.ndarray]:
  """(codes [N, A] float32, the file line of each row) of the data section."""
  numbered = [(i + 1, text.strip()) for i, text in enumerate(lines[start:], start)]
  rows = [(line, text) for line, text in numbered if text and not text.startswith("%")]
  if not rows:
    raise InputError(f"{path} has no data rows after @data")
  row_lines = np.asarray([line for line, _ in rows])
  codes = np.zeros((len(rows), len(attributes)), dtype=np.float32)
  groups = _groups(attributes)
  per_chunk = min(4096, max(64, CELLS_PER_CHUNK // len(attributes)))
  for first in range(0, len(rows), per_chunk):
    texts = [text for _, text in rows[first:first + per_chunk]]
    _fill(codes, _chunk(texts, first, row_lines, path, len(attributes)), attributes, groups,
          row_lines, path)
  return codes, row_lines


def parse(path: str, data: bytes) -> Arff:
  """An ARFF file's bytes (files.read) as attributes and codes; every problem is one
  InputError naming the file and line."""
  lines = decode(path, data, save_as="UTF-8 text").splitlines()
  relation, attributes, start = _header(lines, path)
  names = [a.name for a in attributes]
  twice = [name for i, name in enumerate(names) if name in names[:i]]
  if twice:
    raise InputError(f"{path}: two attributes are named {twice[0]!r}")
  codes, row_lines = _data(lines, start, attributes, path)
  return Arff(path, relation, tuple(attributes), codes, row_lines)
