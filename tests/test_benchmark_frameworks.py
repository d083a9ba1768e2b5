"""benchmarks/framework_case.py's row, and how benchmarks/frameworks.py judges rows:
a tiny JAX case (and a tiny PyTorch eager one where torch is installed) in a fresh
process each, and the "unreliable" rule and the ratio cells on hand-made rows."""
import importlib.util
import os
import subprocess
import sys

import pytest

from benchmarks import frameworks, own_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--case=joint", "--encoder=mlp", "--width=8", "--tasks=2", "--steps=2", "--repeats=2"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
  """The scenes, rendered once for both cases."""
  path = str(tmp_path_factory.mktemp("scenes") / "scenes.npz")
  subprocess.run([sys.executable, frameworks.SCRIPT, f"--write_data={path}", "--steps=2"], check=True, cwd=ROOT)
  return path


def _check_row(row: dict, framework: str) -> None:
  assert "error" not in row, row.get("error")
  assert [row[k] for k in ("framework", "case", "encoder", "width", "tasks")] == [framework, "joint", "mlp", 8, 2]
  assert len(row["repeat_ms"]) == 2 and all(t > 0 for t in row["repeat_ms"])
  assert min(row["repeat_ms"]) <= row["ms_per_step"] <= max(row["repeat_ms"])
  assert row["warmup_s"] >= row["compile_s"] >= 0
  assert row["threads"]["os_cpu_count"] == os.cpu_count()


def test_jax_case_prints_its_row(scenes):
  row = own_process.run_case(frameworks.SCRIPT, ["--framework=jax", f"--data={scenes}", *TINY], ROOT)
  _check_row(row, "jax")
  assert row["versions"]["backend"] and row["strategy"] == "vmap"


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
def test_torch_eager_case_prints_its_row(scenes):
  row = own_process.run_case(frameworks.SCRIPT, ["--framework=torch_eager", f"--data={scenes}", *TINY], ROOT)
  _check_row(row, "torch_eager")
  assert row["threads"]["torch_threads"] == os.cpu_count() and row["threads"]["flush_denormal"]
  assert row["threads"]["adam"] == "fused"  # PyTorch at its best unless --torch_adam says
  assert row["versions"]["torch"]


def _run(ms: float, repeats=None) -> dict:
  return {"ms_per_step": ms, "repeat_ms": repeats or [ms, ms * 1.1, ms * 0.95]}


def test_sound_runs_give_best_of_rounds_and_spread():
  s = frameworks.summarize([_run(10.0), _run(12.0)])
  assert s["best_ms"] == 10.0 and s["spread"] == pytest.approx(0.2) and s["problem"] is None
  assert frameworks.time_cell(s) == "10.00 ±20%"
  assert frameworks.ratio_cell(frameworks.summarize([_run(25.0)]), s) == "2.50"


def test_rounds_that_disagree_are_unreliable():
  s = frameworks.summarize([_run(10.0), _run(14.0)])
  assert s["problem"] == "rounds disagree by 40%"
  assert frameworks.ratio_cell(s, frameworks.summarize([_run(5.0)])) == "unreliable (rounds disagree by 40%)"


def test_spread_repeats_are_unreliable_even_in_one_round():
  bimodal = frameworks.summarize([_run(10.0, [10.0, 10.5, 9.8, 23.0, 10.1])])
  assert bimodal["problem"].startswith("timed repeats spread")
  assert frameworks.ratio_cell(frameworks.summarize([_run(5.0)]), bimodal).startswith("unreliable (timed repeats")


def test_runs_on_a_busy_machine_are_unreliable():
  busy = frameworks.summarize([{**_run(10.0), "load_average_at_start": os.cpu_count() + 3.5}])
  assert busy["problem"] == f"machine busy: load {os.cpu_count() + 3.5:.1f} on {os.cpu_count()} cores"
  assert frameworks.summarize([{**_run(10.0), "load_average_at_start": 0.5}])["problem"] is None


def test_failed_and_unavailable_cases():
  failed = frameworks.summarize([{"ms_per_step": None, "error": "TorchRuntimeError: no compiler"}])
  assert frameworks.time_cell(failed) == "unreliable (failed: TorchRuntimeError: no compiler)"
  assert frameworks.ratio_cell(failed, frameworks.summarize([_run(5.0)])).startswith("unreliable (failed")
  missing = frameworks.summarize([{"ms_per_step": None, "error": "torch not installed", "unavailable": True}])
  assert frameworks.time_cell(missing) == "torch not installed"
  assert frameworks.ratio_cell(missing, frameworks.summarize([_run(5.0)])) == "torch not installed"


def test_tables_from_hand_made_rows(monkeypatch):
  """Separate networks: every JAX strategy's time, and the ratios against the one that
  `train` runs by default on a CPU (models.separate_strategy_on_cpu: here MLPs one at a
  time, CNNs vmapped)."""
  import mtl_jax.models
  monkeypatch.setattr(mtl_jax.models, "VMAPPED_ON_CPU_UP_TO", {"mlp": 0, "cnn": 4})
  jax_ms = {"jax": 10.0, "jax:vmap": 10.0, "jax:in_turn": 12.0, "jax:one_at_a_time": 8.0, "jax:loop": 9.6}
  rows = []
  for case in frameworks.cases(quick=True):
    for arm in frameworks.arms(case):
      rows.append({**case, "arm": arm, "round": 1, "compile_s": 1.0, **_run(jax_ms.get(arm, 20.0))})
  table = frameworks.tables(rows, quick=True)
  assert "| CNN width 16, depth 3 | 10.00 | 20.00 | 20.00 | 2.00 | 2.00 | 1.0, 1.0 |" in table
  assert ("| MLP width 256, depth 2, T = 4 | 10.00 | 12.00 | 8.00 | 9.60 | 1.20 (one_at_a_time) | 20.00 | 20.00 "
          "| 2.50 (one_at_a_time) | 2.50 (one_at_a_time) |") in table
  assert "| CNN width 16, depth 3, T = 4 | 10.00 | 12.00 | 8.00 | 9.60 | 0.96 (vmap) |" in table
