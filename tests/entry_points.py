"""Runs launch.py as a user does, and checks the one-line error contract."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(*args) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "launch.py", *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, expected: str, out_dir) -> None:
  """Exit status 2, one `error:` line naming the problem, no traceback, nothing written."""
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
  assert expected in lines[0]
  assert not os.path.exists(out_dir)
