"""The four real MULAN sets (enron, medical, genbase, CAL500) load with their label
files and standard splits, with the field's feature and label counts. Optional: the
sets live outside the repository (../shared/data/mulan beside it), so this skips where
they are absent, as in CI; nothing else depends on them."""
import os

import pytest
from entry_points import ROOT

from mtl_jax.data.datasets import DataConfig, load_dataset

MULAN = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "mulan"))

# name: (dataset, extra DataConfig fields, train rows, test rows, features, labels)
SETS = {
    "enron": ("enron-train.arff,enron-test.arff", {}, 1123, 579, 1001, 53),
    "medical": ("medical-train.arff,medical-test.arff", {}, 333, 645, 1449, 45),
    # 1186 attributes besides the labels: 1185 YES/NO features and the protein id, left out.
    "genbase": ("genbase-train.arff,genbase-test.arff", {}, 463, 199, 1185, 27),
    # No label file and no split: the last 174 attributes, and a test split set aside.
    "CAL500": ("CAL500.arff", {"label_columns": ("last:174",)}, 502, None, 68, 174),
}


@pytest.mark.skipif(not os.path.isdir(MULAN), reason=f"the shared MULAN sets are not at {MULAN}")
@pytest.mark.parametrize("name", list(SETS))
def test_a_shared_mulan_set_loads_with_its_counts(name):
  files, extra, train_rows, test_rows, features, labels = SETS[name]
  paths = ",".join(os.path.join(MULAN, f) for f in files.split(","))
  data = load_dataset(DataConfig(dataset=f"arff:{paths}", num_train=None, num_val=None, num_test=None,
                                 missing_frac=0.0, **extra))
  assert data.input_shape == (features,) and len(data.task_names) == labels
  assert len(data.train.y) + len(data.val.y) + (0 if test_rows else len(data.test.y)) == train_rows
  if test_rows:
    assert len(data.test.y) == test_rows and data.origins["test"].endswith(" test")
  if name == "medical":  # the label file wins over the relation's contradicting -C 45
    assert data.notes[0] == "labels: 45 from medical.xml" and data.notes[1].startswith("ignored MEKA's -C 45")
  if name == "genbase":
    assert any(note.startswith("left out 'protein'") for note in data.notes)
