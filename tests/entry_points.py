"""Runs launch.py as a user does, and checks the one-line error contract."""
import contextlib
import io
import os
import subprocess
import sys
from unittest import mock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(*args, timeout: int = 300) -> subprocess.CompletedProcess:
  """timeout: seconds before the launch counts as hung (generous: a loaded CI machine is slow)."""
  return subprocess.run([sys.executable, "launch.py", *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=timeout)


def launch_in_process(*args) -> subprocess.CompletedProcess:
  """launch.py's main in this process: the same flag parsing, one-line errors and exit
  status as `launch`, without two seconds of imports per case."""
  import launch as launch_py
  from absl import flags
  from experiments import cli

  flags.FLAGS.unparse_flags()  # flags given to an earlier case must not carry over
  stdout, stderr, code = io.StringIO(), io.StringIO(), 0
  with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
       mock.patch.object(sys, "argv", ["launch.py", *args]):
    try:
      cli.run(launch_py.main)
    except SystemExit as e:
      code = e.code or 0
  return subprocess.CompletedProcess(args, code, stdout.getvalue(), stderr.getvalue())


def assert_one_line_error(result: subprocess.CompletedProcess, expected: str, out_dir) -> None:
  """Exit status 2, one `error:` line naming the problem, no traceback, nothing written."""
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
  assert expected in lines[0]
  assert not os.path.exists(out_dir)
