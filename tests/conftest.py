"""One tiny run of every registered experiment, shared by the tests that check their
outputs, and what makes the suite fit its time on two cores: the tests run in two
pytest-xdist workers (pytest.ini), and every process they start, theirs and the
launches', shares one persistent compilation cache, so that a program the tiny runs
compile again and again (the same model on the same shapes) is compiled once, at XLA's
quickest optimisation level.

A new experiment whose own sweep flags would make it slow gives them tiny values in
ALL_TINY."""
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile

import pytest
from entry_points import launch
from multilabel_sets import write_sets

# --preset=quick is given, so every flag it sets but these leave alone comes from it.
# The validation split is large enough that at 99% of labels missing (missing_labels)
# every task keeps some validation labels to select its epoch on.
ALL_TINY = ["--experiment=all", "--preset=quick", "--num_train=64", "--num_val=1000",
            "--num_test=48", "--epochs=1", "--seeds=2", "--batch_size=16", "--image_size=8",
            "--encoder=mlp", "--width=2", "--depth=1", "--widths=2,6", "--target_budget=10",
            "--target_budgets=10", "--rhos=0,1", "--missing_fracs=0,0.5,0.99", "--b_budgets=10",
            "--methods=ew,mgda_ub,upgrad", "--problems=driving34,related_rho1",
            "--related_num_train=64", "--related_epochs=1", "--archs=mmoe", "--arch_rhos=1"]

_CACHE_VARIABLES = {"JAX_COMPILATION_CACHE_DIR": None,  # set to a fresh folder per session
                    # Tiny programs compile in well under the default 1 s threshold.
                    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}

# The suite's programs are tiny and mostly run a few steps, so compiling dominates: at
# XLA's optimisation level 0 the CPU compiles them in about half the time. The driving
# renderer, which runs long, keeps its own level (driving.RENDER_XLA_OPTIONS).
QUICK_COMPILE_FLAG = "--xla_backend_optimization_level=0"


def _is_controller(config) -> bool:
  return not hasattr(config, "workerinput")


def pytest_configure(config):
  """Before jax is imported anywhere and before xdist starts its workers, which
  inherit this environment (as do the launches the tests start)."""
  if _is_controller(config) and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    config._mtl_jax_cache = tempfile.mkdtemp(prefix="mtl_jax_tests_jit_cache_")
    os.environ.update({**_CACHE_VARIABLES, "JAX_COMPILATION_CACHE_DIR": config._mtl_jax_cache})
  if _is_controller(config):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {QUICK_COMPILE_FLAG}".strip()


# The files whose tests read the one all-experiments run: on one worker, so that the
# other never sits waiting for that run behind the lock (it took 69 s of one worker).
_ALL_EXPERIMENTS_FILES = ("test_all_experiments.py", "test_methods_experiment.py",
                          "test_missing_labels.py", "test_network_size.py")


# The groups that took longest (seconds of one worker, quiet 2-core CPU), started first,
# longest first, so that neither worker is left running one of them alone at the end
# (pytest.ini turns off xdist's own order, by number of tests). The rest follow in
# collection order.
_LONGEST_FIRST = ("all_experiments",  # 150 s
                  "test_models.py", "test_sharding.py", "test_launchers.py",  # 100, 57, 54
                  "test_architectures.py", "test_reliability.py", "test_methods_gradient_b.py",
                  "test_launch.py", "test_own_data_launch.py", "test_combination.py")  # 45-35


def _group(item) -> str:
  name = item.path.name
  return "all_experiments" if name in _ALL_EXPERIMENTS_FILES else name


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks
def pytest_collection_modifyitems(config, items):
  """--dist=loadgroup with a group per file (what --dist=loadfile does), except that the
  files of _ALL_EXPERIMENTS_FILES form one group; the longest groups first."""
  rank = {group: i for i, group in enumerate(_LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(_group(item), len(rank)))  # stable: files keep their order
  for item in items:
    item.add_marker(pytest.mark.xdist_group(_group(item)))


def pytest_unconfigure(config):
  cache = getattr(config, "_mtl_jax_cache", None)
  if cache:
    shutil.rmtree(cache, ignore_errors=True)


@contextlib.contextmanager
def _exclusive(path: str):
  with open(path, "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def all_experiments(tmp_path_factory, worker_id):
  """(launch result, output folder with one subfolder per experiment), made once per
  test session: the first xdist worker to ask runs it, the other waits and reads it."""
  shared = tmp_path_factory.getbasetemp() if worker_id == "master" else \
      tmp_path_factory.getbasetemp().parent
  out, saved = shared / "all_experiments", shared / "all_experiments.json"
  with _exclusive(str(shared / "all_experiments.lock")):
    if not saved.exists():
      write_sets(shared / "multilabel_sets")  # multilabel_real's real-format data
      result = launch(*ALL_TINY, f"--datasets={shared / 'multilabel_sets'}", f"--out_dir={out}",
                      timeout=900)
      saved.write_text(json.dumps([result.returncode, result.stdout, result.stderr]))
  code, stdout, stderr = json.loads(saved.read_text())
  assert code == 0, stderr
  return subprocess.CompletedProcess(ALL_TINY, code, stdout, stderr), out
