"""No silent label leakage in a CSV: a label column left out of --label_columns must not
train as a feature. last:N / first:N and --ignore_columns make the feature set explicit,
the run lists it, and a column that looks like a label is refused with a line naming the
flags that fix it."""
import numpy as np
import pytest
from entry_points import assert_one_line_error, launch_in_process

from experiments.experiment import load_data_logged
from mtl_jax.data import tables
from mtl_jax.data.datasets import DataConfig, load_dataset
from mtl_jax.errors import InputError

# A scene-like table: an id, three features, three labels (the last one with a missing cell).
HEADER = "id,f1,f2,f3,beach,sunset,urban\n"
ROWS = "".join(f"r{i},{i},{i % 3},{-i},{i % 2},{(i // 2) % 2},{'?' if i == 4 else (i // 3) % 2}\n"
               for i in range(20))


# A feature column with two missing cells, for --impute.
ROWS_NUMERIC = "".join(f"{i},{'?' if i in (3, 11) else i * 2},{i % 2}\n" for i in range(20))


def write(path, text):
  path.write_text(text)
  return str(path)


@pytest.fixture
def scene(tmp_path):
  return write(tmp_path / "scene.csv", HEADER + ROWS)


@pytest.mark.parametrize("labels, ignore, tasks", [
    (["last:3"], ["id"], ("beach", "sunset", "urban")),
    (["last:2"], ["id", "beach"], ("sunset", "urban")),
    (["urban", "beach"], ["id"], ("urban", "beach")),
])
def test_label_columns_by_position_or_name(scene, labels, ignore, tasks):
  table = tables.read_csv(scene, labels, ignore_columns=ignore)
  assert table.task_names == tasks
  assert not set(table.feature_names) & {"id", *tasks, *ignore}


def test_first_n_does_not_count_ignored_columns(tmp_path):
  table = tables.read_csv(write(tmp_path / "t.csv", "id,y1,f1\nr0,1,0.5\nr1,0,2\n"), ["first:1"],
                          ignore_columns=["id"])
  assert table.task_names == ("y1",) and table.feature_names == ("f1",)


def test_a_left_out_label_column_with_missing_cells_is_refused(scene, tmp_path):
  # --label_columns=beach,sunset forgets 'urban', which holds 0, 1 and ?.
  out = tmp_path / "out"
  result = launch_in_process(f"--dataset=csv:{scene}", "--label_columns=beach,sunset",
                             "--ignore_columns=id", f"--out_dir={out}")
  assert_one_line_error(result, "column 'urban' holds only 0, 1 and missing cells (line 6: '?'), as a "
                        "label does, but is not a label column, so it would train as a feature", out)
  assert "--label_columns" in result.stderr and "--ignore_columns=urban" in result.stderr


def test_a_feature_column_with_missing_cells_names_every_way_out(tmp_path):
  path = write(tmp_path / "t.csv", "f1,f2,label:a\n1,7,1\n2,?,0\n3,9,1\n")
  with pytest.raises(InputError, match=r"line 3, feature column 'f2' is missing \('\?'\); only labels may "
                                       r"be missing: name a label in --label_columns .*--ignore_columns=f2"
                                       r".*--impute=mean\|zero"):
    tables.read_csv(path)
  # Imputed when asked, with the train split's mean; the run says what it filled.
  imputable = write(tmp_path / "u.csv", "f1,f2,label:a\n" + ROWS_NUMERIC)
  data = load_dataset(DataConfig(dataset=f"csv:{imputable}", num_train=None, num_val=None,
                                 num_test=None, missing_frac=0.0, impute="mean"))
  assert all(np.all(np.isfinite(s.x)) for s in (data.train, data.val, data.test))
  assert any(n.startswith("imputed 2 missing feature cells in 1 columns") for n in data.notes)


def test_the_dataset_line_lists_the_feature_columns(scene, capsys):
  data = load_data_logged(DataConfig(dataset=f"csv:{scene}", num_train=None, num_val=None, num_test=None,
                                     missing_frac=0.0, label_columns=("last:3",), ignore_columns=("id",)))
  assert data.feature_names == ("f1", "f2", "f3")
  assert "    features: 3 columns, 'f1', 'f2', 'f3'" in capsys.readouterr().out


@pytest.mark.parametrize("args, expected", [
    (["--label_columns=last:9"], "asks for 9 label columns, but it has only 7"),
    (["--label_columns=last:0"], "last:N takes a whole number N >= 1"),
    (["--label_columns=last:2,beach"], "first:N or last:N stands alone"),
    (["--ignore_columns=nope"], "--ignore_columns names 'nope', which is not one of its 7 columns"),
    (["--label_columns=beach", "--ignore_columns=beach"], "'beach' is a label column and in --ignore_columns"),
    (["--test_file=x.arff"], "--test_file is for arff: datasets"),
])
def test_bad_column_flags_are_one_line(scene, tmp_path, args, expected):
  out = tmp_path / "out"
  assert_one_line_error(launch_in_process(f"--dataset=csv:{scene}", *args, f"--out_dir={out}"), expected, out)
