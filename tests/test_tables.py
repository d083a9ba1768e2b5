"""A user's CSV / NPZ through the loaders: every missing-label spelling, own and seeded
splits, train-only standardisation, and one clear error for each kind of bad file."""
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mtl_jax.data import tables
from mtl_jax.data.datasets import DataConfig, data_identity, load_dataset
from mtl_jax.errors import InputError


def write(path, text):
  path.write_text(text)
  return str(path)


def test_csv_round_trip_with_every_missing_spelling(tmp_path):
  path = write(tmp_path / "t.csv",
               "f1,f2,car,label:ped,split\n"
               "1.5,2,1,?,train\n"
               "-3,4e-1,0,,val\n"
               "0,7,NaN,1,test\n"
               "2,2, nan ,0.0,validation\n"
               "1,1,1.0, ? ,TRAIN\n")
  table = tables.read_csv(path, ["car", "label:ped"])
  np.testing.assert_array_equal(table.y, [[1, -1], [0, -1], [-1, 1], [-1, 0], [1, -1]])
  np.testing.assert_allclose(table.x, [[1.5, 2], [-3, 0.4], [0, 7], [2, 2], [1, 1]])
  assert table.x.dtype == np.float32 and table.y.dtype == np.int8
  assert table.task_names == ("car", "ped")
  assert list(table.split) == ["train", "val", "test", "val", "train"]
  # The header convention: every 'label:' column, and the rest are features.
  by_prefix = tables.read_csv(write(tmp_path / "p.csv", "f1,car,label:ped\n1,0,?\n2,1,1\n"))
  assert by_prefix.task_names == ("ped",) and by_prefix.x.tolist() == [[1, 0], [2, 1]]


def test_npz_round_trip_with_minus_one_and_nan(tmp_path):
  images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
  y = np.array([[1, -1], [0, np.nan], [np.nan, 1], [0, 0]])
  path = str(tmp_path / "d.npz")
  np.savez(path, x=images, y=y, task_names=np.array(["cat", "dog"]),
           split=np.array(["train", "train", "val", "test"]))
  table = tables.read_npz(path)
  np.testing.assert_array_equal(table.x, images)
  assert table.x.dtype == np.uint8  # images stay images
  np.testing.assert_array_equal(table.y, [[1, -1], [0, -1], [-1, 1], [0, 0]])
  assert table.task_names == ("cat", "dog") and list(table.split) == ["train", "train", "val", "test"]
  assert tables.read_npz(path, ["dog"]).task_names == ("dog",)


def test_npz_is_never_unpickled(tmp_path):
  path = str(tmp_path / "p.npz")
  np.savez(path, x=np.zeros((2, 3)), y=np.array([[1], [0]], dtype=object))
  with pytest.raises(InputError, match="Object arrays cannot be loaded"):
    tables.read_npz(path)


CSV_FAULTS = [
    ("", "is empty"),
    ("f,label:a\n", "is empty"),
    ("f,label:a\n1,0\n2\n", "line 3 has 1 cells but the header has 2"),
    ("f,label:a\n1,0\nx7,1\n", "line 3, feature column 'f': 'x7' is not a number"),
    ("f,label:a\n1,0\n2,yes\n", "line 3, label column 'label:a': 'yes' is not 1, 0 or missing"),
    ("f,label:a\n1,2\n", "line 2, label column 'label:a': '2' is not 1, 0 or missing"),
    ("f,label:a\nnan,1\n", "line 2, feature column 'f' is nan; features must be finite"),
    ("f,label:a\n1,1\ninf,0\n", "line 3, feature column 'f' is inf"),
    ("f,g\n1,1\n", "no label columns"),
    ("label:a\n1\n", "no feature columns"),
    ("f,label:a,split\n1,1,dev\n", "line 2 has split 'dev'"),
]


@pytest.mark.parametrize("text, message", CSV_FAULTS)
def test_bad_csv_is_one_clear_error(tmp_path, text, message):
  with pytest.raises(InputError, match=message.replace("(", r"\(").replace("?", r"\?")):
    tables.read_csv(write(tmp_path / "bad.csv", text))


def test_bad_files_and_columns(tmp_path):
  with pytest.raises(InputError, match="no such file"):
    tables.read_table("csv", str(tmp_path / "absent.csv"))
  with pytest.raises(InputError, match="is a directory"):
    tables.read_table("npz", str(tmp_path))
  with pytest.raises(InputError, match="cannot read"):
    tables.read_npz(write(tmp_path / "text.npz", "not a zip"))
  with pytest.raises(InputError, match="no label column 'truck'; the columns are f, car"):
    tables.read_csv(write(tmp_path / "c.csv", "f,car\n1,0\n"), ["truck"])
  path = str(tmp_path / "n.npz")
  np.savez(path, x=np.zeros((3, 2)), y=np.zeros((2, 1)))
  with pytest.raises(InputError, match="x has 3 examples but y has 2"):
    tables.read_npz(path)
  np.savez(path, x=np.zeros((2, 2)), y=np.array([[1], [3]]))
  with pytest.raises(InputError, match=r"y\[1, 0\] is 3"):
    tables.read_npz(path)
  np.savez(path, x=np.array([[1.0, np.inf]]), y=np.array([[1]]))
  with pytest.raises(InputError, match=r"x\[0, 1\] is inf"):
    tables.read_npz(path)
  np.savez(path, x=np.zeros((2, 2)))
  with pytest.raises(InputError, match="has no array 'y'"):
    tables.read_npz(path)


def _csv_config(path, **changes):
  return DataConfig(dataset=f"csv:{path}", num_train=None, num_val=None, num_test=None,
                    missing_frac=0.0, **changes)


def _table_csv(tmp_path, rows=200, seed=0, split=False):
  rng = np.random.default_rng(seed)
  x = rng.normal(5.0, 3.0, (rows, 3))
  y = rng.integers(0, 2, (rows, 2))
  lines = ["a,b,c,label:t1,label:t2" + (",split" if split else "")]
  for i in range(rows):
    cells = [f"{v:.6f}" for v in x[i]] + [str(v) for v in y[i]]
    lines.append(",".join(cells + ([("train", "val", "test")[i % 3]] if split else [])))
  return write(tmp_path / f"t{seed}.csv", "\n".join(lines) + "\n"), x, y


def test_seeded_splits_standardised_by_train_statistics_only(tmp_path):
  path, x, y = _table_csv(tmp_path)
  data = load_dataset(_csv_config(path))
  assert (len(data.train.y), len(data.val.y), len(data.test.y)) == (140, 30, 30)
  assert data.task_names == ("t1", "t2")
  np.testing.assert_allclose(data.train.x.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(data.train.x.std(0), 1, atol=1e-4)
  # The other splits use the train split's statistics, not their own.
  assert np.abs(data.test.x.mean(0)).max() > 1e-3
  # Every row lands in exactly one split, labels intact.
  together = np.concatenate([data.train.y, data.val.y, data.test.y])
  assert sorted(map(tuple, together)) == sorted(map(tuple, y.astype(np.int8)))
  assert "set aside by data_seed 0" in data.origins["val"]
  other_seed = load_dataset(_csv_config(path, data_seed=1))
  assert not np.array_equal(other_seed.test.y, data.test.y)


def test_own_split_column_and_caps(tmp_path):
  path, _, y = _table_csv(tmp_path, rows=90, split=True)
  data = load_dataset(_csv_config(path))
  np.testing.assert_array_equal(data.test.y, y[2::3])
  assert data.origins == {name: f"csv:{path} {name}" for name in ("train", "val", "test")}
  capped = load_dataset(dataclasses_replace(_csv_config(path), num_train=7))
  assert len(capped.train.y) == 7 and "7 of them kept" in capped.origins["train"]


def dataclasses_replace(config, **changes):
  import dataclasses
  return dataclasses.replace(config, **changes)


def test_a_task_without_train_labels_and_an_edited_file(tmp_path):
  path = write(tmp_path / "u.csv", "f,label:a,label:b,split\n1,1,?,train\n2,0,,train\n3,1,1,val\n"
               "4,0,0,test\n")
  with pytest.raises(InputError, match="task 'b' has no labels in the train split"):
    load_dataset(_csv_config(path))
  before = data_identity(_csv_config(path))["file_sha1"]
  # The digest is cached by the file's size and modification time; an edit within the
  # file system's timestamp granularity (milliseconds) that keeps the size is not seen.
  write(tmp_path / "u.csv", "f,label:a,label:b,split\n1,1,0,train\n2,0,,train\n3,1,1,val\n4,0,0,test\n\n")
  assert data_identity(_csv_config(path))["file_sha1"] != before
  assert load_dataset(_csv_config(path)).train.y.tolist() == [[1, 0], [0, -1]]


# Property: any table of finite numbers and 1 / 0 / missing cells loads to exactly
# what was written; the same table with one cell corrupted gives the clear error.
LABEL_CELLS = {"1": 1, "0": 0, "?": -1, "": -1, "NaN": -1, "nan": -1, " ? ": -1}
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def tables_of(draw):
  rows = draw(st.integers(1, 8))
  features = draw(st.integers(1, 4))
  tasks = draw(st.integers(1, 3))
  x = draw(st.lists(st.lists(finite, min_size=features, max_size=features), min_size=rows, max_size=rows))
  cells = draw(st.lists(st.lists(st.sampled_from(sorted(LABEL_CELLS)), min_size=tasks, max_size=tasks),
                        min_size=rows, max_size=rows))
  return np.array(x, np.float64), cells


def _render(x, cells):
  header = [f"f{i}" for i in range(x.shape[1])] + [f"label:t{j}" for j in range(len(cells[0]))]
  rows = [[repr(float(v)) for v in xs] + list(cs) for xs, cs in zip(x, cells)]
  return "\n".join(",".join(r) for r in [header] + rows) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=tables_of())
def test_random_valid_tables_load_exactly(tmp_path, table):
  x, cells = table
  loaded = tables.read_csv(write(tmp_path / "p.csv", _render(x, cells)))
  np.testing.assert_allclose(loaded.x, x.astype(np.float32))
  np.testing.assert_array_equal(loaded.y, [[LABEL_CELLS[c] for c in row] for row in cells])


BAD_LABELS = st.text(alphabet=string.ascii_letters + "23456789-.", min_size=1, max_size=4).filter(
    lambda s: s.strip().lower() not in ("nan", "1", "0", "1.0", "0.0"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=tables_of(), kind=st.sampled_from(["label", "feature", "ragged"]), where=st.data(),
       bad=BAD_LABELS)
def test_random_corrupted_tables_give_the_clear_error(tmp_path, table, kind, where, bad):
  x, cells = table
  row = where.draw(st.integers(0, len(cells) - 1))
  lines = _render(x, cells).splitlines()
  parts = lines[row + 1].split(",")
  if kind == "label":
    parts[x.shape[1] + where.draw(st.integers(0, len(cells[0]) - 1))] = bad
    expected = f"line {row + 2}, label column 'label:t"
  elif kind == "feature":
    parts[where.draw(st.integers(0, x.shape[1] - 1))] = where.draw(st.sampled_from(["abc", "inf", "-inf", "nan", "1,2"]))
    expected = f"line {row + 2}"
  else:
    parts = parts[:-1]
    expected = f"line {row + 2} has {len(parts)} cells"
  lines[row + 1] = ",".join(parts)
  with pytest.raises(InputError, match=expected):
    tables.read_csv(write(tmp_path / "c.csv", "\n".join(lines) + "\n"))


def test_budget_masking_keeps_every_row_and_exactly_the_requested_labels(tmp_path):
  path, _, _ = _table_csv(tmp_path)
  full = load_dataset(_csv_config(path))
  budgeted = load_dataset(_csv_config(path, label_budget=(("t2", 9),)))
  np.testing.assert_array_equal(budgeted.train.x, full.train.x)
  assert np.sum(budgeted.train.y[:, 1] != -1) == 9
  kept = budgeted.train.y[:, 1] != -1
  np.testing.assert_array_equal(budgeted.train.y[kept, 1], full.train.y[kept, 1])
  np.testing.assert_array_equal(budgeted.train.y[:, 0], full.train.y[:, 0])
  np.testing.assert_array_equal(budgeted.test.y, full.test.y)
