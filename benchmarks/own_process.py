"""Each benchmark case in a fresh Python process, so that no case inherits another's
thread pools, caches or compiled programs (and frameworks never share a process)."""
import json
import os
import subprocess
import sys
from typing import Optional


def run_case(script: str, flags: list[str], root: str, timeout: Optional[float] = None) -> dict:
  """Runs `script` with `flags` in a fresh process, importing the package at `root`,
  and returns the JSON row its last line of output prints; a failing case raises with
  the end of its stderr, one running past `timeout` seconds with TimeoutExpired."""
  out = subprocess.run([sys.executable, os.path.abspath(script), *flags], cwd=root, timeout=timeout,
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": root})
  if out.returncode:
    raise RuntimeError(f"case {' '.join(flags)} failed:\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])
