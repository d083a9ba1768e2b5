"""Two tiny multi-label sets as the field keeps them, for the tests: a sparse ARFF
train/test pair with a MULAN label file (like enron), and one dense ARFF file whose
labels are its last attributes, named by MEKA's -C in its @relation (like CAL500)."""
import numpy as np

NUM_FEATURES, NUM_LABELS = 6, 3


def _rows(rng, count: int, sparse: bool) -> list[str]:
  x = rng.normal(size=(count, NUM_FEATURES)).round(3)
  # Each label from one feature, so that there is something to learn.
  y = (x[:, :NUM_LABELS] + 0.5 * rng.normal(size=(count, NUM_LABELS)) > 0).astype(int)
  rows = []
  for features, labels in zip(x, y):
    values = [*map(str, features), *map(str, labels)]
    rows.append("{" + ", ".join(f"{i} {v}" for i, v in enumerate(values) if float(v) != 0) + "}"
                if sparse else ",".join(values))
  return rows


def _arff(relation: str, rows: list[str]) -> str:
  attributes = [f"@attribute f{i} numeric" for i in range(NUM_FEATURES)]
  attributes += [f"@attribute l{j} {{0,1}}" for j in range(NUM_LABELS)]
  return "\n".join([f"@relation {relation}", *attributes, "@data", *rows]) + "\n"


def write_sets(folder, seed: int = 0) -> None:
  """folder/alpha-train.arff, alpha-test.arff, alpha.xml and folder/beta.arff."""
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "alpha-train.arff").write_text(_arff("alpha", _rows(rng, 120, sparse=True)))
  (folder / "alpha-test.arff").write_text(_arff("alpha", _rows(rng, 60, sparse=True)))
  (folder / "alpha.xml").write_text(
      '<?xml version="1.0" encoding="utf-8"?>\n<labels xmlns="http://mulan.sourceforge.net/labels">\n'
      + "".join(f'<label name="l{j}"></label>\n' for j in range(NUM_LABELS)) + "</labels>\n")
  (folder / "beta.arff").write_text(_arff(f"'beta: -C -{NUM_LABELS}'", _rows(rng, 200, sparse=False)))
