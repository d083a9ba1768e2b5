"""Every bad flag value and bad data file named across the issues: each gives one
`error:` line naming the problem, exit status 2, and nothing written. In-process (the
same flag parsing and error path as launch.py, without a new interpreter per case);
test_launch.py runs one case through a real process."""
import numpy as np
import pytest
from entry_points import assert_one_line_error, launch_in_process

FLAG_CASES = [
    # Unknown names, with the close match suggested.
    ("--no_such_flag=1", "Unknown command line flag 'no_such_flag'"),
    ("--epoch=3", "Did you mean: epochs"),
    ("positional", "unexpected arguments"),
    # Wrong types.
    ("--epochs=abc", "--epochs=abc"),
    ("--learning_rate=fast", "--learning_rate=fast"),
    ("--plot_only=maybe", "--plot_only"),
    # Unknown values, with the close match suggested.
    ("--experiment=joint_vs_seperate", "Did you mean: joint_vs_separate?"),
    ("--encoder=rnn", "value should be one of <mlp|cnn>"),
    ("--optimizer=adamw", "--optimizer"),
    ("--select_epoch=best", "Did you mean: best_val?"),
    ("--experiment=all --preset=slow", "--preset"),
    ("--dataset=nope", "unknown dataset 'nope'; available: driving, related, csv:PATH"),
    # Out of range.
    ("--width=0", "--width"),
    ("--width=-3", "--width"),
    ("--epochs=0", "--epochs"),
    ("--seeds=0", "--seeds"),
    ("--num_train=0", "--num_train"),
    ("--image_size=100000", "--image_size"),
    ("--learning_rate=-1", "--learning_rate"),
    ("--checkpoint_every=-1", "--checkpoint_every"),
    ("--missing_frac=1.0", "--missing_frac must be in [0, 1)"),
    ("--missing_frac=-0.1", "--missing_frac must be in [0, 1)"),
    ("--out_dir=", "--out_dir must not be empty"),
    ("--batch_size=500 --num_train=100", "--batch_size=500 exceeds --num_train=100"),
    ("--val_frac=0.9 --dataset=csv:{csv}", "val_frac and test_frac must be in (0, 1)"),
    # Label budgets and task lists.
    ("--task_budget=car", "--task_budget takes TASK:COUNT items"),
    ("--task_budget=car:-5", "--task_budget takes TASK:COUNT items"),
    ("--task_budget=truck:5", "label budget for 'truck', which is not one of the tasks"),
    ("--task_budget=car:7000", "label budget of 7000 for task 'car' exceeds"),
    ("--label_columns=car", "label columns are for csv: and npz: datasets"),
    # The sweep experiments' own flags.
    ("--experiment=network_size --widths=", "--widths must list at least one positive width"),
    ("--experiment=network_size --widths=0,4", "--widths must list at least one positive width"),
    ("--experiment=network_size --widths=four", "comma-separated list of integers"),
    ("--experiment=missing_labels --missing_fracs=", "at least one fraction"),
    ("--experiment=missing_labels --missing_fracs=0.2,1.0", "each in [0, 1)"),
    ("--experiment=missing_labels --missing_fracs=half", "must be numbers"),
    ("--experiment=data_amount --num_aux=0,40", "--num_aux must be in [0, 21]"),
    ("--experiment=data_amount --num_aux=", "--num_aux must list at least one value"),
    ("--experiment=data_amount --target_budget=7000", "a target budget of 7000 labels is outside"),
    ("--experiment=data_amount --target_budgets=10,x", "--target_budgets must be a comma-separated"),
    ("--experiment=data_amount --target_task=bicycle", "unknown driving task 'bicycle'"),
    ("--experiment=data_amount --dataset=csv:{csv} --target_task=car", "is not a task of csv:"),
    ("--experiment=transfer_vs_mtl --b_budgets=0,10", "--b_budgets must list label counts in [1,"),
    ("--experiment=transfer_vs_mtl --task_b=car", "--task_a and --task_b must differ"),
    ("--experiment=relatedness --rhos=0,2", "--rhos must list at least one value, each in [0, 1]"),
    ("--experiment=relatedness --encoder=cnn", "the cnn encoder needs images"),
    ("--experiment=relatedness --dataset=driving", "relatedness"),
    # Bad data files.
    ("--dataset=csv:{tmp}/absent.csv", "absent.csv: no such file"),
    ("--dataset=csv:{tmp}", "is a directory, not a file"),
    ("--dataset=csv:{empty}", "is empty: it needs a header row"),
    ("--dataset=csv:{ragged}", "line 3 has 1 cells but the header has 2"),
    ("--dataset=csv:{words}", "line 3, feature column 'f': 'x7' is not a number"),
    ("--dataset=csv:{label}", "line 3, label column 'label:a': 'maybe' is not 1, 0 or missing"),
    ("--dataset=csv:{nan}", "line 2, feature column 'f' is nan; features must be finite"),
    ("--dataset=csv:{inf}", "line 3, feature column 'f' is inf"),
    ("--dataset=csv:{unlabelled}", "task 'b' has no labels in the train split"),
    ("--dataset=csv:{csv} --label_columns=truck", "no label column 'truck'"),
    ("--dataset=csv:{csv} --tasks_that_do_not_exist=1", "tasks_that_do_not_exist"),
    ("--dataset=npz:{lengths}", "x has 5 examples but y has 4"),
    ("--dataset=npz:{pickled}", "Object arrays cannot be loaded"),
    ("--dataset=npz:{csv}", "not an NPZ file"),
    ("--dataset=tfds:no_such_dataset_xyz", "unknown TFDS dataset 'no_such_dataset_xyz'"),
    ("--dataset=tfds:celeb_a", "tfds build celeb_a"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("files")
  texts = {
      "csv": "f,label:a\n" + "".join(f"{i},{i % 2}\n" for i in range(40)),
      "empty": "",
      "ragged": "f,label:a\n1,0\n2\n",
      "words": "f,label:a\n1,0\nx7,1\n",
      "label": "f,label:a\n1,0\n2,maybe\n",
      "nan": "f,label:a\nnan,1\n1,0\n",
      "inf": "f,label:a\n1,1\ninf,0\n",
      "unlabelled": "f,label:a,label:b\n" + "".join(f"{i},1,?\n" for i in range(20)),
  }
  paths = {"tmp": str(tmp)}
  for name, text in texts.items():
    (tmp / f"{name}.csv").write_text(text)
    paths[name] = str(tmp / f"{name}.csv")
  np.savez(tmp / "lengths.npz", x=np.zeros((5, 2)), y=np.zeros((4, 1)))
  np.savez(tmp / "pickled.npz", x=np.zeros((2, 2)), y=np.array([[1], [0]], dtype=object))
  paths.update(lengths=str(tmp / "lengths.npz"), pickled=str(tmp / "pickled.npz"))
  return paths


@pytest.mark.parametrize("flags,expected", FLAG_CASES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, files, flags, expected):
  out = tmp_path / "never"
  args = [arg.format(**files) for arg in flags.split()]
  if not any(arg.startswith("--out_dir") for arg in args):
    args.append(f"--out_dir={out}")
  # The case's own flags come last, so they win.
  result = launch_in_process(f"--data_dir={tmp_path / 'no_tfds'}", "--encoder=mlp", "--epochs=1", *args)
  assert_one_line_error(result, expected, out)
