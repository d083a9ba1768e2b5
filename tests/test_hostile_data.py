"""Hostile data files (issue 17): what float32 cannot hold, a byte-order mark, a task
named twice, a split without a task's labels, NPZ files that are not what they claim,
an empty path, a pipe, and the siblings of each. Every refusal is one `error:` line
from launch.py (exit status 2, nothing written), and every accepted oddity gives
exactly the data the plain file gives."""
import dataclasses
import io
import os
import threading
import time
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from entry_points import assert_one_line_error, launch_in_process

from mtl_jax import metrics
from mtl_jax.data import tables
from mtl_jax.data.datasets import DataConfig, data_identity, load_dataset
from mtl_jax.errors import InputError
from mtl_jax.models import EncoderSpec, build_model
from mtl_jax.train import NO_EPOCH, TrainConfig, initial_params, train

ROWS = 60


def _cells(rows=ROWS, feature=lambda i: f"{(i * 7) % 11 - 5}.5"):
  """Data lines `f1,f2,t0,t1` with every label present."""
  return [f"{feature(i)},{i % 5},{i % 2},{(i // 2) % 2}" for i in range(rows)]


def _csv(tmp_path, name, header="f1,f2,label:t0,label:t1", lines=None, prefix=b""):
  path = tmp_path / name
  path.write_bytes(prefix + ("\n".join([header, *(lines or _cells())]) + "\n").encode())
  return str(path)


def _refused(tmp_path, expected, *flags):
  """Runs launch.py in-process with tiny settings and checks the one-line error."""
  out = tmp_path / "never"
  result = launch_in_process("--encoder=mlp", "--epochs=1", "--width=2", "--depth=1", "--seeds=1",
                             f"--data_dir={tmp_path / 'no_tfds'}", f"--out_dir={out}", *flags)
  assert_one_line_error(result, expected, out)


def _config(path, kind="csv", **changes):
  return DataConfig(dataset=f"{kind}:{path}", num_train=None, num_val=None, num_test=None, **changes)


def _same_table(a: tables.Table, b: tables.Table):
  np.testing.assert_array_equal(a.x, b.x)
  np.testing.assert_array_equal(a.y, b.y)
  assert a.x.dtype == b.x.dtype and a.task_names == b.task_names


# -- 1. What float32 cannot hold -------------------------------------------------------

@pytest.mark.parametrize("cell, expected", [
    ("1e39", "line 5, feature column 'f1' is 1e+39, beyond float32's range"),
    ("-4e38", "line 5, feature column 'f1' is -4e+38, beyond float32's range"),
    ("1e400", "line 5, feature column 'f1' is inf; features must be finite"),  # inf in float64 too
    ("-Infinity", "line 5, feature column 'f1' is -inf; features must be finite"),
    ("NAN", "line 5, feature column 'f1' is nan; features must be finite"),
])
def test_a_feature_float32_cannot_hold_is_one_line_naming_column_and_line(tmp_path, cell, expected):
  lines = _cells()
  lines[3] = cell + lines[3][lines[3].index(","):]
  _refused(tmp_path, expected, f"--dataset=csv:{_csv(tmp_path, 'big.csv', lines=lines)}")


def test_npz_features_float32_cannot_hold_are_refused(tmp_path):
  path = str(tmp_path / "big.npz")
  x = np.ones((ROWS, 2))
  x[7, 1] = 1e39
  np.savez(path, x=x, y=np.ones((ROWS, 1)))
  _refused(tmp_path, "x[7, 1] is 1e+39, beyond float32's range", f"--dataset=npz:{path}")


def test_a_column_around_1e20_is_standardised_like_the_same_column_at_1(tmp_path):
  """In float32 the variance of values near 1e20 overflows and the standardised column
  became all zeros; computed in float64 it is the column's z-scores."""
  rng = np.random.default_rng(0)
  v = rng.normal(size=ROWS)
  lines = [f"{1e20 * (3 + a):.9e},{3 + a:.9e},{i % 2},{(i // 2) % 2}" for i, a in enumerate(v)]
  data = load_dataset(_config(_csv(tmp_path, "huge.csv", lines=lines)))
  for split in (data.train, data.val, data.test):
    assert np.all(np.isfinite(split.x))
    np.testing.assert_allclose(split.x[:, 0], split.x[:, 1], atol=1e-5)
  np.testing.assert_allclose(data.train.x.std(0), [1, 1], rtol=1e-4)


def test_a_split_that_standardising_sends_beyond_float32_names_column_and_split(tmp_path):
  lines = [f"{1 + (i % 2) * 1.2e-7},{i},{i % 2},{(i // 2) % 2},train" for i in range(20)]
  lines += [f"1,{i},{i % 2},{(i // 2) % 2},val" for i in range(4)]
  lines += [f"{3e38 if i == 0 else 1},{i},{i % 2},{(i // 2) % 2},test" for i in range(4)]
  path = _csv(tmp_path, "spread.csv", header="f1,f2,label:t0,label:t1,split", lines=lines)
  _refused(tmp_path, "feature column 'f1' of the test split leaves float32's range once standardised",
           f"--dataset=csv:{path}", "--batch_size=4")


def _vectors(num, seed, tasks=2):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(num, 3)).astype(np.float32), rng.integers(0, 2, (num, tasks)).astype(np.int8)


def test_all_nan_validation_keeps_the_initial_parameters_and_never_claims_an_epoch():
  model = build_model("hps", EncoderSpec("mlp", 4, 1), 2, (3,))
  x_val, y_val = _vectors(24, 1)
  x_val[:] = np.nan
  config = TrainConfig(1e-2, 16, 2, select_epoch="best_val")
  # micro_batch given: choosing one compiles more than the run itself.
  result = train(model, *_vectors(64, 0), [0, 1], config, validation=(x_val, y_val), micro_batch=16)
  np.testing.assert_array_equal(result.selected_epoch_S, [NO_EPOCH, NO_EPOCH])
  assert not np.any(np.isfinite(result.val_loss_ExS))
  initial = initial_params(model, [0, 1])
  # What the result holds is exactly the untrained initialisation, as selected_epoch 0 says.
  jax.tree.map(np.testing.assert_array_equal, result.params, initial)
  with pytest.raises(InputError, match="no epoch was selected for seed 3: the validation loss was "
                                       "NaN or inf in every epoch"):
    train(model, *_vectors(64, 0), [3], dataclasses.replace(config, epochs=1), validation=(x_val, y_val),
          micro_batch=16, require_selection=True)


def test_a_nan_in_a_task_that_does_not_select_cannot_block_selection():
  """The joint selection loss summed the tasks times a 0/1 mask, and NaN * 0 is NaN."""
  base = build_model("hps", EncoderSpec("mlp", 4, 1), 2, (3,))

  def apply(params, x):  # task b's logit is NaN on the validation inputs alone
    logits = base.apply(params, x)
    return logits.at[:, 1].set(jnp.where(x[:, 0] > 100, jnp.nan, logits[:, 1]))

  model = base._replace(apply=apply)
  x_val, y_val = _vectors(24, 1)
  x_val[:, 0] = 1000.0
  config = TrainConfig(1e-2, 16, 1, select_epoch="best_val", select_tasks=("a",))
  result = train(model, *_vectors(64, 0), [0], config, validation=(x_val, y_val), task_names=("a", "b"),
                 micro_batch=16, require_selection=True)
  assert np.all(np.isfinite(result.val_loss_ExS)) and result.selected_epoch_S[0] >= 1


def test_patience_without_validation_labels_and_an_empty_validation_split_are_refused():
  """Patience stops on the validation loss: a task without validation labels has a loss
  of 0 every epoch and would stop training after `patience` epochs for no reason."""
  model = build_model("hps", EncoderSpec("mlp", 4, 1), 2, (3,))
  x_val, y_val = _vectors(24, 1)
  y_val[:, 1] = -1
  config = TrainConfig(1e-2, 16, 3, select_epoch="last", patience=2)
  with pytest.raises(InputError, match=r"task 'b' has no validation labels to stop early on \(--patience=2\)"):
    train(model, *_vectors(64, 0), [0], config, validation=(x_val, y_val), task_names=("a", "b"))
  with pytest.raises(InputError, match="the validation split is empty"):
    train(model, *_vectors(64, 0), [0], config, validation=(x_val[:0], y_val[:0]))


# -- 2. A byte-order mark --------------------------------------------------------------

def test_a_byte_order_mark_gives_exactly_the_data_of_the_plain_file(tmp_path):
  header = "label:t0,f1,f2,label:t1"  # the mark sits on the first header, a label column
  lines = [f"{i % 2},{i * 0.5},{i % 3},{(i // 2) % 2}" for i in range(ROWS)]
  plain = _csv(tmp_path, "plain.csv", header, lines)
  marked = _csv(tmp_path, "marked.csv", header, lines, prefix=b"\xef\xbb\xbf")
  _same_table(tables.read_csv(marked), tables.read_csv(plain))
  assert tables.read_csv(marked).task_names == ("t0", "t1")
  assert tables.read_csv(marked, ["t0"]).task_names == ("t0",)  # found by name too
  a, b = load_dataset(_config(marked)), load_dataset(_config(plain))
  for split in ("train", "val", "test"):
    np.testing.assert_array_equal(getattr(a, split).x, getattr(b, split).x)
    np.testing.assert_array_equal(getattr(a, split).y, getattr(b, split).y)


def test_windows_line_ends_with_a_mark_and_a_trailing_empty_column_change_nothing(tmp_path):
  plain = tables.read_csv(_csv(tmp_path, "plain.csv"))
  text = "f1,f2,label:t0,label:t1,\r\n" + "".join(line + ",\r\n" for line in _cells())
  path = tmp_path / "excel.csv"
  path.write_bytes(b"\xef\xbb\xbf" + text.encode())
  _same_table(tables.read_csv(str(path)), plain)


@pytest.mark.parametrize("data, expected", [
    ("f1,label:t0\n1,0\n".encode("utf-16"), "is UTF-16 text; save it as CSV UTF-8"),
    (b"f1,label:t0\n1,0\n\xe9,1\n", "line 3 is not UTF-8 text (byte 0xe9)"),
])
def test_text_that_is_not_utf8_is_one_line(tmp_path, data, expected):
  path = tmp_path / "encoded.csv"
  path.write_bytes(data)
  _refused(tmp_path, expected, f"--dataset=csv:{path}")


# -- 3. The same task twice ------------------------------------------------------------

@pytest.mark.parametrize("header, columns, expected", [
    ("f1,f2,label:t0,label:t1", "t0,t0", "the label columns name task 't0' twice"),
    ("f1,f2,label:t0,label:t1", "t0,label:t0", "the label columns name task 't0' twice"),
    ("f1,f2,label:t0,label:t0", "", "the header repeats the column 'label:t0'"),
    ("f1,f2,label:t0,label: t0", "", "the label columns name task 't0' twice"),
    ("f1,f2,t0,label:t0", "t0,label:t0", "the label columns name task 't0' twice"),
])
def test_a_task_named_twice_in_a_csv_is_one_line_naming_it(tmp_path, header, columns, expected):
  flags = [f"--label_columns={columns}"] if columns else []
  _refused(tmp_path, expected, f"--dataset=csv:{_csv(tmp_path, 'twice.csv', header)}", *flags)


def test_a_task_named_twice_in_an_npz_is_one_line_naming_it(tmp_path):
  path = str(tmp_path / "twice.npz")
  np.savez(path, x=np.ones((ROWS, 2)), y=np.ones((ROWS, 2)), task_names=np.array(["cat", "cat"]))
  _refused(tmp_path, "its task_names name task 'cat' twice", f"--dataset=npz:{path}")
  path = str(tmp_path / "once.npz")
  np.savez(path, x=np.ones((ROWS, 2)), y=np.ones((ROWS, 2)), task_names=np.array(["cat", "dog"]))
  _refused(tmp_path, "the label columns name task 'dog' twice", f"--dataset=npz:{path}",
           "--label_columns=dog,dog")


# -- 4. A split without a task's labels ------------------------------------------------

def _split_csv(tmp_path, unlabelled_split):
  """t1 has labels in every split but `unlabelled_split`."""
  lines = []
  for i in range(30):
    split = ("train", "train", "train", "val", "test")[i % 5]
    t1 = "?" if split == unlabelled_split else str(i % 2)
    lines.append(f"{i},{i % 4},{(i // 5) % 2},{t1},{split}")
  return _csv(tmp_path, f"no_{unlabelled_split}.csv", "f1,f2,label:t0,label:t1,split", lines)


@pytest.mark.parametrize("split, examples, why", [
    ("train", 18, "so nothing to learn from"),
    ("val", 6, "so nothing to select an epoch on and score"),
    ("test", 6, "so nothing to score"),
])
def test_a_task_without_labels_in_any_split_is_one_line_naming_task_and_split(tmp_path, split, examples, why):
  _refused(tmp_path, f"task 't1' has no labels in the {split} split ({examples} examples), {why}",
           f"--dataset=csv:{_split_csv(tmp_path, split)}", "--batch_size=4")


def test_a_label_column_of_all_missing_cells_is_refused(tmp_path):
  lines = [line.rsplit(",", 1)[0] + "," + ("?", "", "NaN", " nan ")[i % 4] for i, line in enumerate(_cells())]
  _refused(tmp_path, "task 't1' has no labels in the train split",
           f"--dataset=csv:{_csv(tmp_path, 'unlabelled.csv', lines=lines)}")


def test_a_seeded_val_split_without_a_rare_tasks_labels_is_refused(tmp_path):
  # t1 is labelled in 3 rows only: the seeded validation split of 9 rows holds none.
  rows = _cells()
  lines = [line if i in (0, 1, 2) else line.rsplit(",", 1)[0] + ",?" for i, line in enumerate(rows)]
  with pytest.raises(InputError, match=r"task 't1' has no labels in the (val|test) split \(9 examples\)"):
    load_dataset(_config(_csv(tmp_path, "rare.csv", lines=lines)))


# -- 5. NPZ files that are not what they claim ----------------------------------------

def _npz_bytes(**arrays) -> bytes:
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  return buffer.getvalue()


def _zip(path, members: dict):
  with zipfile.ZipFile(path, "w") as z:
    for name, content in members.items():
      z.writestr(name, content)


GOOD_NPZ = dict(x=np.ones((ROWS, 2)), y=np.ones((ROWS, 1)))


@pytest.mark.parametrize("make, expected", [
    (lambda p: np.savez(p, x=np.ones((ROWS, 2)), y=np.ones((ROWS, 0))), "y has no columns (60, 0): there are no tasks"),
    (lambda p: np.savez(p, x=np.ones((ROWS, 0)), y=np.ones((ROWS, 1))), "x has no features (60, 0)"),
    (lambda p: np.savez(p, x=np.ones((ROWS, 0, 3)), y=np.ones((ROWS, 1))), "x has no features (60, 0, 3)"),
    (lambda p: np.savez(p, x=np.ones((5, 2)), y=np.ones((4, 1))), "x has 5 examples but y has 4"),
    (lambda p: np.savez(p, x=np.ones((ROWS, 2), complex), y=np.ones((ROWS, 1))), "x must be a numeric"),
    (lambda p: np.savez(p, x=np.ones((ROWS, 2)), y=np.full((ROWS, 1), 0.5)), "y[0, 0] is 0.5; labels must be 1, 0"),
    (lambda p: _zip(p, {"x": "a text", "y": "another"}), "member 'x' is not a .npy array"),
    (lambda p: _zip(p, {"x.npy": b"\x93NUMPY\x01\x00", "y.npy": b"\x93NUMPY"}), "member 'x' is not a readable .npy array"),
    (lambda p: _zip(p, {"x.txt": "1,2", "y.txt": "0"}), "member 'x.txt' is not a .npy array"),
    (lambda p: open(p, "wb").write(_npz_bytes(**GOOD_NPZ)[:300]), "not an NPZ file (it starts like one, but its end is missing"),
    (lambda p: open(p, "wb").write(_npz_bytes(**GOOD_NPZ)[:-30]), "not an NPZ file (it starts like one, but its end is missing"),
    (lambda p: open(p, "wb").write(b"x,y\n1,0\n"), "not an NPZ file (write one with numpy.savez)"),
    (lambda p: open(p, "wb").write(b""), "not an NPZ file"),
    (lambda p: open(p, "wb").write(bytes(b ^ 0xFF if i == 80 else b for i, b in enumerate(_npz_bytes(**GOOD_NPZ)))),
     "Bad CRC-32 for file 'x.npy' (a damaged NPZ; write it again)"),
])
def test_a_broken_npz_is_one_line(tmp_path, make, expected):
  path = str(tmp_path / "broken.npz")
  make(path)
  _refused(tmp_path, expected, f"--dataset=npz:{path}")


def test_byte_string_task_names_and_splits_read_as_text(tmp_path):
  """numpy writes an array of byte strings (dtype S) as such; b'cat' is the task cat."""
  path = str(tmp_path / "bytes.npz")
  np.savez(path, x=np.ones((4, 2)), y=np.ones((4, 2)), task_names=np.array([b"cat", b"dog"]),
           split=np.array([b"train", b"train", b"val", b"test"]))
  table = tables.read_npz(path)
  assert table.task_names == ("cat", "dog") and list(table.split) == ["train", "train", "val", "test"]


# -- 14. Misleading messages: an empty path, a pipe, blank lines ---------------------

@pytest.mark.parametrize("kind", ["csv", "npz"])
def test_an_empty_path_says_so(tmp_path, kind):
  _refused(tmp_path, f"--dataset={kind}: names no file: the path after '{kind}:' is empty",
           f"--dataset={kind}:")


def test_a_path_with_spaces_at_its_ends_says_so(tmp_path):
  _refused(tmp_path, "no such file (the path has spaces at its ends)",
           f"--dataset=csv: {_csv(tmp_path, 'ok.csv')}")


def _serve_through_a_pipe(fifo: str, data: bytes, stop: threading.Event):
  """Writes `data` to the first reader. A second reader (the old code hashed the file,
  then opened it again to parse it) gets an empty file, as from `<(zcat ...)`."""
  with open(fifo, "wb") as f:
    f.write(data)
  while not stop.is_set():
    try:
      os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # no reader waiting
      time.sleep(0.005)


def test_a_csv_from_a_pipe_is_read_once_hashed_and_parsed_from_the_same_bytes(tmp_path):
  plain = _csv(tmp_path, "plain.csv")
  fifo = str(tmp_path / "pipe.csv")
  os.mkfifo(fifo)
  stop = threading.Event()
  threading.Thread(target=_serve_through_a_pipe, args=(fifo, open(plain, "rb").read(), stop),
                   daemon=True).start()
  try:
    piped_hash = data_identity(_config(fifo))["file_sha1"]  # the hash reads the pipe first
    piped = load_dataset(_config(fifo))
  finally:
    stop.set()
  assert piped_hash == data_identity(_config(plain))["file_sha1"]
  expected = load_dataset(_config(plain))
  for split in ("train", "val", "test"):
    np.testing.assert_array_equal(getattr(piped, split).x, getattr(expected, split).x)
    np.testing.assert_array_equal(getattr(piped, split).y, getattr(expected, split).y)


def test_an_npz_from_a_pipe_is_read_once(tmp_path):
  fifo = str(tmp_path / "pipe.npz")
  os.mkfifo(fifo)
  stop = threading.Event()
  threading.Thread(target=_serve_through_a_pipe, args=(fifo, _npz_bytes(**GOOD_NPZ), stop),
                   daemon=True).start()
  try:
    data_identity(_config(fifo, "npz"))
    table = tables.read_table("npz", fifo)
  finally:
    stop.set()
  np.testing.assert_array_equal(table.x, GOOD_NPZ["x"].astype(np.float32))


@pytest.mark.parametrize("text, expected", [
    # Blank lines and a row of empty cells are skipped but still counted.
    ("f1,label:t0\n1,0\n\n\n2,maybe\n", "line 5, label column 'label:t0': 'maybe' is not 1, 0 or missing"),
    ("f1,label:t0\r\n1,0\r\n,\r\n\r\nx7,1\r\n", "line 5, feature column 'f1': 'x7' is not a number"),
    ("f1,label:t0\n1,0\n\n2\n", "line 4 has 1 cells but the header has 2"),
    ("f1,label:t0,split\n1,0,train\n\n2,1,dev\n", "line 4 has split 'dev'"),
    ('f1,label:t0\n"1\n",0\n2,2\n', "line 4, label column 'label:t0': '2' is not 1, 0 or missing"),
    ("f1,label:t0\n1,0\n\n1e39,1\n", "line 4, feature column 'f1' is 1e+39"),
])
def test_a_bad_cell_is_reported_on_its_true_file_line(tmp_path, text, expected):
  path = tmp_path / "lines.csv"
  path.write_text(text)
  _refused(tmp_path, expected, f"--dataset=csv:{path}")


# -- Siblings in the same readers -----------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("f1,label:t0\n", "is empty: it needs a header row and at least one data row"),
    ("f1,label:t0\n,\n , \n", "is empty: it needs a header row and at least one data row"),
    ("f1,label:t0\n1,0,1\n", "line 2 has 3 cells but the header has 2"),
    ("f1,label:t0\n1,2\n", "line 2, label column 'label:t0': '2' is not 1, 0 or missing (?, empty, "
     "NaN); a task is a yes/no question: turn a class number or a probability into 1 or 0"),
    ("f1,label:t0\n1,0.5\n", "'0.5' is not 1, 0 or missing (?, empty, NaN); a task is a yes/no"),
    ("f1,label:t0\n1,-1\n", "'-1' is not 1, 0 or missing (?, empty, NaN); -1 means missing in an NPZ"),
    ("f1,label:t0\n1,1.00\n", "'1.00' is not 1, 0 or missing (?, empty, NaN); write it as 1"),
    ("f1,label:t0\n1,True\n", "'True' is not 1, 0 or missing (?, empty, NaN); write 1 for yes and 0"),
    ("f1,label:t0\n1,NA\n", "'NA' is not 1, 0 or missing (?, empty, NaN); write ? for a missing label"),
    ("f1,label:t0\n1,inf\n", "'inf' is not 1, 0 or missing"),
    ("f1,label:t0\n?,1\n", "line 2, feature column 'f1' is missing ('?'); only labels may be missing"),
    ("f1,label:t0\n ,1\n", "line 2, feature column 'f1' is missing (' '); only labels may be missing"),
    ("f1;label:t0\n1;0\n", "the file seems separated by ';'"),
    ("f1\tlabel:t0\n1\t0\n", "the file seems separated by '\\t'"),
    ("f1,,label:t0\n1,3,0\n", "column 2 of the header has no name"),
    ("f1,label:\n1,0\n", "column 2, 'label:', names no task after 'label:'"),
])
def test_sibling_csv_faults_are_one_line(tmp_path, text, expected):
  path = tmp_path / "sibling.csv"
  path.write_text(text)
  _refused(tmp_path, expected, f"--dataset=csv:{path}")


def test_a_task_without_test_labels_gets_no_metric_rather_than_a_made_up_one():
  logits = np.array([[1.0, 2.0], [-1.0, 0.5], [0.5, -2.0]])
  scored = metrics.task_metrics(logits, np.array([[1, -1], [0, -1], [1, -1]]))
  for name in metrics.METRICS:
    assert np.isfinite(scored[name][0]) and np.isnan(scored[name][1])
  assert metrics.mean_over_tasks(scored["auc"]) == scored["auc"][0]


def test_a_refused_file_then_fixed_is_read_again(tmp_path):
  """The bytes are cached by size and modification time: the fixed file is new data."""
  path = tmp_path / "fixed.csv"
  path.write_text("f1,label:t0\n1,maybe\n")
  with pytest.raises(InputError, match="'maybe'"):
    tables.read_csv(str(path))
  path.write_text("f1,label:t0\n1,0\n2,1\n")
  assert tables.read_csv(str(path)).y.tolist() == [[0], [1]]
