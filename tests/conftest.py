"""One tiny run of every experiment, shared by the tests that check their outputs."""
import pytest
from entry_points import launch

# --preset=quick is given, so every flag it sets but these leave alone comes from it.
ALL_TINY = ["--experiment=all", "--preset=quick", "--num_train=64", "--num_val=16",
            "--num_test=48", "--epochs=1", "--seeds=2", "--batch_size=16", "--image_size=8",
            "--encoder=mlp", "--width=2", "--depth=1", "--widths=2,6", "--target_budget=10",
            "--target_budgets=10", "--rhos=0,1", "--missing_fracs=0,0.5,0.99", "--b_budgets=10"]


@pytest.fixture(scope="session")
def all_experiments(tmp_path_factory):
  """(launch result, output folder with one subfolder per experiment)."""
  out = tmp_path_factory.mktemp("all_experiments")
  result = launch(*ALL_TINY, f"--out_dir={out}")
  assert result.returncode == 0, result.stderr
  return result, out
