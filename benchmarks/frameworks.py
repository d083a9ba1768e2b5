"""JAX (this package's `train`) against PyTorch eager and torch.compile, each framework
in its own fresh process, as a user running one of them would see it.

  python -m benchmarks.frameworks [--quick] [--rounds=2] [--json=frameworks.json] [--cases=joint-cnn-8,...]

Cases: one joint network (CNN widths 4-64 depth 3, MLP widths 64-512 depth 2, T = 4) and
T = 4, 16, 40 separate networks (CNN width 16, MLP width 256); for separate networks
JAX runs four ways (vmap, in_turn, one_at_a_time, loop; see framework_case.py). Every (case,
framework) pair is one run of benchmarks/framework_case.py in a fresh process, so that
no framework shares its process, thread pools or caches with another. A case's
frameworks alternate over rounds (forward, then reversed), so a burst of other load
slows one round rather than one framework; each is reported as its best round, with
the spread between rounds (worst / best - 1).

A ratio (a time over a time: > 1 means the denominator is faster) is
printed only from measurements that look sound. It reads "unreliable (reason)" when a
case failed, when its rounds disagree by more than ROUNDS_DISAGREE, or when the timed
repeats of one run spread beyond REPEATS_SPREAD (max / median), or when a run started
on a machine busy with other work (load average above the cores + BUSY_LOAD_ABOVE_CORES):
a bimodal step or other people's work, which a best-of cannot be trusted to have escaped.
--quick (2 joint cases, 2 separate at T = 4, fewer steps, 1 round) is a smoke check only.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Optional

import numpy as np

from benchmarks import own_process, torch_reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "framework_case.py")
TORCH_ADAMS = torch_reference.TORCH_ADAMS  # framework_case.py's --torch_adam choices
ROUNDS_DISAGREE = 0.30  # best and worst round differ by more: unreliable
REPEATS_SPREAD = 2.0  # slowest timed repeat over the median of its run, above: unreliable
# A run that started with the load average above the cores plus one shared the machine
# with other work (one run of ours alone reaches about the number of cores): unreliable.
# PyTorch's OpenMP threads slowed 4x under such load in a smoke run, JAX's hardly.
BUSY_LOAD_ABOVE_CORES = 1.0
JOINT = [("cnn", w) for w in (4, 8, 16, 32, 64)] + [("mlp", w) for w in (64, 128, 256, 512)]
SEPARATE = [(kind, width, tasks) for kind, width in (("cnn", 16), ("mlp", 256)) for tasks in (4, 16, 40)]
QUICK_JOINT, QUICK_SEPARATE = [("cnn", 16), ("mlp", 256)], [("cnn", 16, 4), ("mlp", 256, 4)]
DEPTH = {"cnn": 3, "mlp": 2}
JOINT_TASKS = 4
TORCH = ("torch_eager", "torch_compile")
# How JAX runs T separate networks: three ways inside one program (models.SEPARATE_STRATEGIES)
# and the loop of one `train` call per network that they are measured against.
JAX_STRATEGIES = ("vmap", "in_turn", "one_at_a_time", "loop")


def case_id(case: dict) -> str:
  """'joint-cnn-8' or 'separate-mlp-256-16', as --cases names it."""
  return "-".join([case["case"], case["encoder"], str(case["width"])]
                  + ([str(case["tasks"])] if case["case"] == "separate" else []))


def cases(quick: bool, only: tuple[str, ...] = ()) -> list[dict]:
  joint = [dict(case="joint", encoder=k, width=w, tasks=JOINT_TASKS) for k, w in (QUICK_JOINT if quick else JOINT)]
  separate = [dict(case="separate", encoder=k, width=w, tasks=t) for k, w, t in (QUICK_SEPARATE if quick else SEPARATE)]
  chosen = [c for c in joint + separate if not only or case_id(c) in only]
  unknown = set(only) - {case_id(c) for c in chosen}
  if unknown:
    raise SystemExit(f"--cases: unknown {', '.join(sorted(unknown))}; the cases are "
                     f"{', '.join(case_id(c) for c in joint + separate)}")
  return chosen


def arms(case: dict) -> list[str]:
  """The runs of a case: 'jax' or 'jax:STRATEGY', then the PyTorch ones."""
  jax = ["jax"] if case["case"] == "joint" else [f"jax:{s}" for s in JAX_STRATEGIES]
  return jax + list(TORCH)


def run_arm(case: dict, arm: str, steps: int, repeats: int, data: str, timeout: float,
            torch_adam: str = TORCH_ADAMS[0]) -> dict:
  """One run in a fresh process; a crash or a timeout is a row with an error, so that one
  bad case does not lose the others."""
  framework, _, strategy = arm.partition(":")
  flags = [f"--framework={framework}", f"--case={case['case']}", f"--encoder={case['encoder']}",
           f"--width={case['width']}", f"--depth={DEPTH[case['encoder']]}", f"--tasks={case['tasks']}",
           f"--steps={steps}", f"--repeats={repeats}", f"--data={data}"]
  flags += [f"--strategy={strategy}"] if strategy else []
  flags += [] if framework == "jax" else [f"--torch_adam={torch_adam}"]
  try:
    return own_process.run_case(SCRIPT, flags, ROOT, timeout=timeout)
  except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
    return {**case, "framework": framework, "strategy": strategy or None, "ms_per_step": None,
            "error": f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:300]}"}


def measure(quick: bool = False, rounds: Optional[int] = None, timeout: float = 600,
            only: tuple[str, ...] = (), torch_adam: str = TORCH_ADAMS[0]) -> list[dict]:
  """Every case, its arms alternated over rounds; the rows of every run, each tagged
  with its arm and round."""
  rounds = rounds or (1 if quick else 2)
  steps, repeats = (8, 3) if quick else (16, 5)
  rows = []
  with tempfile.TemporaryDirectory(prefix="frameworks_") as scratch:
    data = os.path.join(scratch, "scenes.npz")  # rendered once, read by every run
    subprocess.run([sys.executable, SCRIPT, f"--write_data={data}", f"--steps={steps}"], check=True, cwd=ROOT)
    for case in cases(quick, only):
      for r in range(rounds):
        for arm in arms(case) if r % 2 == 0 else arms(case)[::-1]:
          row = {**run_arm(case, arm, steps, repeats, data, timeout, torch_adam),
                 "arm": arm, "round": r + 1}
          rows.append(row)
          print(f"  round {r + 1} {case_name(case)} {arm}: "
                f"{row.get('error') or format(row['ms_per_step'], '.2f') + ' ms/step'}", flush=True)
  return rows


def case_name(case: dict) -> str:
  name = f"{case['encoder'].upper()} width {case['width']}, depth {DEPTH[case['encoder']]}"
  return name + (f", T = {case['tasks']}" if case["case"] == "separate" else "")


# --- judging and printing ------------------------------------------------------------

def summarize(runs: list[dict]) -> dict:
  """Best of rounds, spread, and why the measurement is not to be trusted (None if it is)."""
  if not runs:
    return {"best_ms": None, "spread": None, "problem": "not run"}
  failed = [r for r in runs if r.get("ms_per_step") is None]
  if failed:
    unavailable = failed[0].get("unavailable")
    return {"best_ms": None, "spread": None, "unavailable": bool(unavailable),
            "problem": failed[0]["error"] if unavailable else f"failed: {failed[0].get('error')}"}
  times = [r["ms_per_step"] for r in runs]
  best, spread = min(times), max(times) / min(times) - 1
  worst_repeats = max(max(r["repeat_ms"]) / float(np.median(r["repeat_ms"])) for r in runs)
  load = max(r.get("load_average_at_start", 0) for r in runs)
  problem = None
  if load > (os.cpu_count() or 1) + BUSY_LOAD_ABOVE_CORES:
    problem = f"machine busy: load {load:.1f} on {os.cpu_count()} cores"
  elif worst_repeats > REPEATS_SPREAD:
    problem = f"timed repeats spread: max/median {worst_repeats:.1f}"
  elif spread > ROUNDS_DISAGREE:
    problem = f"rounds disagree by {100 * spread:.0f}%"
  return {"best_ms": best, "spread": spread if len(runs) > 1 else None, "problem": problem}


def time_cell(s: dict) -> str:
  if s["best_ms"] is None:
    return s["problem"] if s.get("unavailable") else f"unreliable ({s['problem']})"
  spread = "" if s["spread"] is None else f" ±{100 * s['spread']:.0f}%"
  flag = f" (unreliable: {s['problem']})" if s["problem"] else ""
  return f"{s['best_ms']:.2f}{spread}{flag}"


def ratio_cell(numerator: dict, denominator: dict) -> str:
  """numerator's time over denominator's, or why there is none to print."""
  for s in (numerator, denominator):
    if s.get("unavailable"):
      return s["problem"]
  problems = [s["problem"] for s in (numerator, denominator) if s["problem"]]
  if problems:
    return f"unreliable ({'; '.join(problems)})"
  return f"{numerator['best_ms'] / denominator['best_ms']:.2f}"


def _summaries(rows: list[dict]) -> dict:
  by_case_arm = {}
  for row in rows:
    by_case_arm.setdefault((row["case"], row["encoder"], row["width"], row["tasks"], row["arm"]), []).append(row)
  return by_case_arm


def _package_default(case: dict) -> str:
  """The strategy `train` runs the case's separate networks with on a CPU, where these are measured."""
  from mtl_jax.models import separate_strategy_on_cpu
  return separate_strategy_on_cpu(case["encoder"], case["tasks"])


def tables(rows: list[dict], quick: bool) -> str:
  """The markdown tables: ms per step (best of rounds ± spread) and the ratios."""
  runs = _summaries(rows)
  out = ["| joint network, T = 4 | JAX ms/step | PyTorch eager | torch.compile | eager / JAX | compile / JAX "
         "| compile s: JAX, torch.compile |", "|---|---|---|---|---|---|---|"]
  for case in (c for c in cases(quick) if c["case"] == "joint" and _measured(runs, c)):
    key = tuple(case.values())
    s = {arm: summarize(runs.get((*key, arm), [])) for arm in arms(case)}
    out.append(f"| {case_name(case)} | {time_cell(s['jax'])} | {time_cell(s['torch_eager'])} "
               f"| {time_cell(s['torch_compile'])} | {ratio_cell(s['torch_eager'], s['jax'])} "
               f"| {ratio_cell(s['torch_compile'], s['jax'])} | {_compile_seconds(runs, key)} |")
  out += ["", "| T separate networks | JAX vmap | JAX in_turn | JAX one_at_a_time | JAX loop | loop / default "
          "| PyTorch eager | torch.compile | eager / default | compile / default |", "|---" * 10 + "|"]
  for case in (c for c in cases(quick) if c["case"] == "separate" and _measured(runs, c)):
    key = tuple(case.values())
    s = {arm: summarize(runs.get((*key, arm), [])) for arm in arms(case)}
    default = _package_default(case)
    ours = s[f"jax:{default}"]
    out.append(f"| {case_name(case)} | " + " | ".join(time_cell(s[f"jax:{a}"]) for a in JAX_STRATEGIES)
               + f" | {_named(ratio_cell(s['jax:loop'], ours), default)} | {time_cell(s['torch_eager'])} "
               f"| {time_cell(s['torch_compile'])} | {_named(ratio_cell(s['torch_eager'], ours), default)} "
               f"| {_named(ratio_cell(s['torch_compile'], ours), default)} |")
  return "\n".join(out)


def _measured(runs: dict, case: dict) -> bool:
  """Whether any run of the case is in `runs` (--cases may have left it out)."""
  key = tuple(case.values())
  return any(k[:len(key)] == key for k in runs)


def _named(ratio: str, strategy: str) -> str:
  return f"{ratio} ({strategy})" if ratio[:1].isdigit() else ratio


def _compile_seconds(runs: dict, key: tuple) -> str:
  """The smallest compile time over rounds, JAX's and torch.compile's."""
  def best(arm):
    seconds = [r["compile_s"] for r in runs.get((*key, arm), []) if r.get("compile_s") is not None]
    return f"{min(seconds):.1f}" if seconds else "-"
  return f"{best('jax')}, {best('torch_compile')}"


def header(rows: list[dict], rounds: int) -> str:
  """What was measured with what, from the rows themselves."""
  versions = {k: v for r in rows for k, v in r.get("versions", {}).items()}
  torch_threads = next((r["threads"] for r in rows if "torch_threads" in r.get("threads", {})), {})
  load = [r["load_average_at_start"] for r in rows if "load_average_at_start" in r]
  return (f"{', '.join(f'{k} {v}' for k, v in versions.items())}; batch 128, Adam, 1 seed; each framework in "
          f"its own process; best of {rounds} round(s), ± the spread between rounds; ms per step. PyTorch: "
          f"{torch_threads.get('torch_threads', '?')} threads, flush denormal, CNN channels_last "
          f"{torch_threads.get('channels_last', '?')}, Adam {torch_threads.get('adam', 'default')}. "
          "Load average at the runs' starts: "
          f"{min(load, default=0):.1f}-{max(load, default=0):.1f} on {os.cpu_count()} cores.")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="A smoke check of a few minutes.")
  parser.add_argument("--rounds", type=int, default=None, help="Rounds (default 2; 1 with --quick).")
  parser.add_argument("--json", default=None, help="Also write every run's row to this file.")
  parser.add_argument("--timeout", type=float, default=600, help="Seconds one run may take.")
  parser.add_argument("--cases", default="", help="Only these cases, comma-separated "
                      "(joint-cnn-8, separate-mlp-256-16, ...; default: all).")
  parser.add_argument("--torch_adam", default=TORCH_ADAMS[0], choices=TORCH_ADAMS,
                      help="PyTorch's Adam: fused (the fastest here), its CPU default (a loop over "
                      "tensors) or foreach.")
  args = parser.parse_args(argv)
  rounds = args.rounds or (1 if args.quick else 2)
  rows = measure(args.quick, rounds, args.timeout, tuple(filter(None, args.cases.split(","))),
                 args.torch_adam)
  print("\n" + header(rows, rounds) + "\n\n" + tables(rows, args.quick))
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"rows": rows}, f, indent=1)


if __name__ == "__main__":
  main()
