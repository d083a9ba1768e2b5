"""One tiny run of every registered experiment, shared by the tests that check their
outputs. A new experiment whose own sweep flags would make it slow gives them tiny
values in ALL_TINY."""
import pytest
from entry_points import launch

# --preset=quick is given, so every flag it sets but these leave alone comes from it.
# The validation split is large enough that at 99% of labels missing (missing_labels)
# every task keeps some validation labels to select its epoch on.
ALL_TINY = ["--experiment=all", "--preset=quick", "--num_train=64", "--num_val=1000",
            "--num_test=48", "--epochs=1", "--seeds=2", "--batch_size=16", "--image_size=8",
            "--encoder=mlp", "--width=2", "--depth=1", "--widths=2,6", "--target_budget=10",
            "--target_budgets=10", "--rhos=0,1", "--missing_fracs=0,0.5,0.99", "--b_budgets=10",
            "--methods=ew,mgda_ub,upgrad", "--problems=driving34,related_rho1",
            "--related_num_train=64", "--related_epochs=1", "--archs=mmoe", "--arch_rhos=1"]


@pytest.fixture(scope="session")
def all_experiments(tmp_path_factory):
  """(launch result, output folder with one subfolder per experiment)."""
  out = tmp_path_factory.mktemp("all_experiments")
  result = launch(*ALL_TINY, f"--out_dir={out}", timeout=900)
  assert result.returncode == 0, result.stderr
  return result, out
