"""ARFF files as the multi-label field writes them: dense and sparse rows, nominal and
string attributes, quoted names, the three label sources and their precedence, missing
values in labels and features, the standard test-file split, and launch.py end to end."""
import json
import re

import numpy as np
import pytest
from entry_points import launch

from mtl_jax.data import arff_table
from mtl_jax.data.datasets import DataConfig, data_identity, load_dataset
from mtl_jax.errors import InputError

HEADER = """% a comment, then keywords in any case
@RELATION 'tiny: -C -2'

@attribute id string
@attribute 'f one' numeric
@Attribute "f \\"two\\"" real
@attribute colour {red,green,blue}
@attribute present {YES,NO}
@attribute a {0,1}
@attribute b {0,1}
@DATA
"""
DENSE = """p1,1.5,0,red,YES,1,0
% a comment between rows
'p 2',0,2,green,NO,0,?
p3,-1,0,blue,NO,?,1
p4,0,3.25,red,YES,1,1
"""
# The same rows, sparse: an omitted value is 0, or a nominal attribute's first value.
SPARSE = """{0 p1,1 1.5,5 1}
{0 'p 2',1 0,2 2,3 green,4 NO,6 ?}
{0 p3,1 -1,3 blue,4 NO,5 ?, 6 1}
{0 p4,2 3.25,5 1,6 1}
"""


def write(path, text):
  path.write_text(text)
  return str(path)


def read(path, **options):
  test = options.pop("test", None)
  label_file = options.pop("label_file", None)
  return arff_table.read_arff((path, open(path, "rb").read()),
                              test and (test, open(test, "rb").read()),
                              label_file and (label_file, open(label_file, "rb").read()), **options)


def config(path, **changes):
  return DataConfig(dataset=f"arff:{path}", num_train=None, num_val=None, num_test=None,
                    missing_frac=0.0, **changes)


def label_xml(*names):
  labels = "".join(f'<label name="{n}"></label>' for n in names)
  return f'<?xml version="1.0" encoding="utf-8"?><labels xmlns="http://mulan.sourceforge.net/labels">{labels}</labels>'


def test_dense_and_sparse_rows_give_the_same_arrays(tmp_path):
  dense = read(write(tmp_path / "dense.arff", HEADER + DENSE))
  sparse = read(write(tmp_path / "sparse.arff", HEADER + SPARSE))
  np.testing.assert_array_equal(dense.x, sparse.x)
  np.testing.assert_array_equal(dense.y, sparse.y)
  # MEKA's -C -2: the last two attributes are labels; ? is a missing label.
  assert dense.task_names == ("a", "b")
  np.testing.assert_array_equal(dense.y, [[1, 0], [0, -1], [-1, 1], [1, 1]])
  # Quoted names kept whole; the 3-valued nominal one-hot; YES/NO as 1/0; the string id left out.
  assert dense.feature_names == ("f one", 'f "two"', "colour=red", "colour=green", "colour=blue", "present")
  np.testing.assert_array_equal(dense.x, [[1.5, 0, 1, 0, 0, 1], [0, 2, 0, 1, 0, 0],
                                          [-1, 0, 0, 0, 1, 0], [0, 3.25, 1, 0, 0, 1]])
  assert any("left out 'id': a string attribute" in note for note in dense.notes)
  assert dense.x.dtype == np.float32 and dense.y.dtype == np.int8


def test_a_nominal_attribute_with_a_different_value_in_every_row_is_an_identifier(tmp_path):
  ids = ",".join(f"P{i}" for i in range(12))
  rows = "".join(f"P{i},{i % 3},{i % 2}\n" for i in range(12))
  table = read(write(tmp_path / "ids.arff", f"@relation r\n@attribute protein {{{ids}}}\n"
                     f"@attribute f numeric\n@attribute t {{0,1}}\n@data\n{rows}"), label_columns=("t",))
  assert table.feature_names == ("f",)
  assert any("'protein': a different value in each of the 12 train rows" in n for n in table.notes)


@pytest.mark.parametrize("stem, xml_name", [("set-train", "set.xml"), ("set", "set.xml"),
                                            ("set_test", "set.xml"), ("set-train", "set-train.xml")])
def test_a_mulan_label_file_beside_the_arff_is_found(tmp_path, stem, xml_name):
  path = write(tmp_path / f"{stem}.arff", HEADER.replace("-C -2", "plain") + DENSE * 4)
  write(tmp_path / xml_name, label_xml("b", "a"))
  data = load_dataset(config(path, val_frac=0.25, test_frac=0.25))
  assert data.task_names == ("b", "a")
  assert data.notes[0] == f"labels: 2 from {xml_name}"
  assert "present" in data.feature_names and "a" not in data.feature_names


def test_an_explicit_label_file_and_every_file_in_the_run_hash(tmp_path):
  path = write(tmp_path / "t.arff", HEADER.replace("-C -2", "plain") + DENSE * 4)
  labels = write(tmp_path / "my labels.xml", label_xml("a", "b"))
  chosen = config(path, label_file=labels, val_frac=0.25, test_frac=0.25)
  assert load_dataset(chosen).task_names == ("a", "b")
  before = data_identity(chosen)
  assert {"file_sha1", "label_file_sha1"} <= set(before)
  write(tmp_path / "my labels.xml", label_xml("b", "a", "present"))  # another size: a new read
  assert data_identity(chosen)["label_file_sha1"] != before["label_file_sha1"]


@pytest.mark.parametrize("relation, flag, tasks", [
    ("'t: -C 2'", (), ("id", "f one")),  # MEKA: the first N (here an id: refused below)
    ("'t: -C -2'", ("b",), ("b",)),  # a flag naming some of MEKA's labels agrees: 'a' is no feature
    ("plain", ("last:2",), ("a", "b")),
    ("plain", ("b", "a"), ("b", "a")),
])
def test_meka_and_the_flag_as_label_sources(tmp_path, relation, flag, tasks):
  path = write(tmp_path / "t.arff", HEADER.replace("'tiny: -C -2'", relation) + DENSE)
  if tasks[0] == "id":
    with pytest.raises(InputError, match="label attribute 'id' \\(string\\) is not a yes/no label"):
      read(path, label_columns=flag)
    return
  assert read(path, label_columns=flag).task_names == tasks


def test_first_n_counts_columns_that_are_not_ignored(tmp_path):
  text = "@relation r\n@attribute id string\n@attribute l1 {0,1}\n@attribute f numeric\n@data\nx,1,2\ny,0,3\n"
  table = read(write(tmp_path / "t.arff", text), label_columns=("first:1",), ignore_columns=("id",))
  assert table.task_names == ("l1",) and table.feature_names == ("f",)


def test_label_file_beats_meka_as_in_the_medical_set(tmp_path):
  # Like medical: the relation's -C 2 names the first two attributes (features); the
  # label file names the last two. The label file wins, and the run says so.
  text = ("@relation 'MEDC: -C 2 -I 0-weka.filters.unsupervised.attribute.Remove-R1-2'\n"
          "@attribute w1 {0,1}\n@attribute w2 {0,1}\n@attribute w3 {0,1}\n"
          "@attribute c1 {0,1}\n@attribute c2 {0,1}\n@data\n{0 1,3 1}\n{1 1,4 1}\n{2 1}\n")
  path = write(tmp_path / "med-train.arff", text)
  xml = write(tmp_path / "med.xml", label_xml("c1", "c2"))
  table = read(path, label_file=xml)
  assert table.task_names == ("c1", "c2") and table.feature_names == ("w1", "w2", "w3")
  assert table.notes[0] == "labels: 2 from med.xml"
  assert table.notes[1].startswith("ignored MEKA's -C 2 in @relation (the first 2 attributes), which disagrees")
  # The flag beats both; a flag naming some of the label file's labels agrees with it,
  # and the file's other labels stay out of the features.
  subset = read(path, label_file=xml, label_columns=("c2",))
  assert subset.task_names == ("c2",) and subset.feature_names == ("w1", "w2", "w3")
  assert "med.xml agrees and holds 1 more labels, left out (not features): 'c1'" in subset.notes[1]
  other = read(path, label_file=xml, label_columns=("w1",))
  assert other.task_names == ("w1",) and "c1" in other.feature_names
  assert any(n.startswith("ignored med.xml, which disagrees") for n in other.notes)


def test_a_missing_feature_is_an_error_or_imputed_from_train_only(tmp_path):
  text = HEADER.replace("-C -2", "-C -1") + "p1,1,?,red,YES,1,0\np2,2,4,red,NO,0,1\np3,3,8,red,NO,1,1\n" * 4
  path = write(tmp_path / "t.arff", text)
  with pytest.raises(InputError, match=r"line 12, feature attribute 'f \"two\"' is missing \('\?'\); "
                                       r"only labels may be missing.*--impute=mean\|zero"):
    read(path)
  data = load_dataset(config(path, impute="mean", val_frac=0.25, test_frac=0.25))
  assert np.all(np.isfinite(data.train.x)) and np.all(np.isfinite(data.test.x))
  assert any(n.startswith("imputed") and "the train split's mean" in n for n in data.notes)


def test_the_standard_split_uses_the_test_file_and_cuts_validation_from_train(tmp_path):
  train = write(tmp_path / "s-train.arff", HEADER + DENSE * 5)
  test = write(tmp_path / "s-test.arff", HEADER + SPARSE)
  for data in (load_dataset(config(train, test_file=test, val_frac=0.2)),
               load_dataset(config(f"{train},{test}", val_frac=0.2))):
    assert (len(data.train.y), len(data.val.y), len(data.test.y)) == (16, 4, 4)
    assert data.origins["test"].endswith("test")
    assert "set aside" in data.origins["val"] and "set aside" not in data.origins["test"]
  other = write(tmp_path / "o-test.arff", HEADER.replace("present {YES,NO}", "present {YES,NO,MAYBE}") + DENSE)
  with pytest.raises(InputError, match="attribute 5 is 'present' {YES,NO,MAYBE}, but in .* it is 'present' "
                                       "{YES,NO}; a test file must declare the same attributes"):
    load_dataset(config(train, test_file=other))


@pytest.mark.parametrize("rows, expected", [
    ("p1,1,0,pink,YES,1,0\n", "line 12, attribute 'colour': 'pink' is not one of its values {red,green,blue}"),
    ("p1,x,0,red,YES,1,0\n", "line 12, attribute 'f one': 'x' is not a number"),
    ("p1,1,0,red,YES,1\n", "line 12 has 6 values but the file declares 7 attributes"),
    ("{9 1}\n", "sparse index '9' is not one of the 7 attributes"),
    ("{1 1}, {3}\n", "instance weights"),
    ("p1,1,0,red,YES,1,0,{2}\n", "instance weights"),
    ("p1,'open,0,red,YES,1,0\n", "a quote that is not closed"),
    ("p1,1,0,red,YES,2,0\n", "line 12, attribute 'a': '2' is not one of its values {0,1}"),
    ("p1,1e39,0,red,YES,1,0\n", "line 12, attribute 'f one' is 1e39, beyond float32's range"),
])
def test_bad_rows_are_one_clear_error(tmp_path, rows, expected):
  with pytest.raises(InputError, match=re.escape(expected)):
    read(write(tmp_path / "bad.arff", HEADER + rows))


def test_a_file_with_no_label_source_names_all_three(tmp_path):
  with pytest.raises(InputError, match="no labels: give a MULAN label file .* MEKA .* --label_columns"):
    read(write(tmp_path / "t.arff", HEADER.replace("-C -2", "none") + DENSE))


def test_launch_trains_on_an_arff_standard_split(tmp_path):
  train = write(tmp_path / "toy-train.arff", HEADER.replace("-C -2", "none") + DENSE * 10)
  write(tmp_path / "toy-test.arff", HEADER.replace("-C -2", "none") + SPARSE * 3)
  write(tmp_path / "toy.xml", label_xml("a", "b"))
  out = tmp_path / "out"
  result = launch(f"--dataset=arff:{train}", f"--test_file={tmp_path / 'toy-test.arff'}", "--width=4",
                  "--depth=1", "--epochs=1", "--seeds=1", "--batch_size=8", f"--out_dir={out}")
  assert result.returncode == 0, result.stderr
  assert "labels: 2 from toy.xml" in result.stdout
  assert ("features: 6 columns, 'f one', 'f \"two\"', 'colour=red', 'colour=green', 'colour=blue', "
          "'present'") in result.stdout
  records = [json.loads(line) for line in open(out / "results.jsonl")]
  assert {r["config"]["arm"] for r in records} == {"joint", "separate"}
  assert all(r["task_names"] == ["a", "b"] and r["splits"]["test"].endswith("test") for r in records)
