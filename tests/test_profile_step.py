"""benchmarks/profile_step.py on a tiny CNN, in its own process (the profiler is one
per process): XLA's per-op events come back, matmuls among them, with times that add up."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_profile_lists_the_steps_ops():
  out = subprocess.run([sys.executable, "-m", "benchmarks.profile_step", "--width=4", "--epochs=2", "--top=40"],
                       cwd=ROOT, capture_output=True, text=True, check=True).stdout
  total = float(re.search(r"op time ([0-9.]+) ms", out).group(1))
  rows = {m.group(1): float(m.group(2)) for m in re.finditer(r"^\| (\w+) \| ([0-9.]+) \|", out, re.M)}
  assert "dot" in rows and rows["dot"] > 0 and total > 0
  assert not any(kind.startswith(("ThunkExecutor", "SlinkyThreadPool", "end")) for kind in rows)
  assert sum(rows.values()) <= total * 1.01  # the listed kinds are part of the op time
  assert sum(rows.values()) >= 0.9 * total  # and, with 40 listed, nearly all of it
