"""Architectures: every sharing architecture (docs/architectures.md) against separate
networks at about the same number of parameters, on tasks of known relatedness and on
the driving scenes: does soft sharing beat hard sharing once capacity is equal?

Run:  python launch.py --experiment=architectures --preset=quick
      python launch.py --experiment=architectures --archs=hps,mmoe,cross_stitch --arch_rhos=0,1
      python launch.py --experiment=architectures --arch_problems=related --mmoe_experts=8
Time: the quick preset took 11 min 23 s on the quiet 2-core CPU (3.8 GB peak): the
      related problems about 5 minutes, the driving scenes the rest (MTAN and
      cross-stitch are the slowest arms there).
Writes: OUT_DIR/results.jsonl, OUT_DIR/summary.csv, OUT_DIR/architectures.{png,svg}
      (mean test ROC-AUC and Δm% against rho per architecture, and per problem each
      architecture's Δm% with its parameter count).

The problems (--arch_problems):
  related_rhoR  the relatedness data at each rho of --arch_rhos (default: the relatedness
                experiment's --rhos) in the methods experiment's setting for it: MLP width 32
                depth 2, 8 tasks, --related_num_train=200 training examples,
                --related_epochs=100, batch 32;
  driving4      the driving scenes' 4 presence tasks, with the data, encoder (--encoder,
                --width, --depth) and training flags.

Parameter budgets. The reference is the separate networks' parameter count at the
problem's width: the baseline that Δm% is measured against, so every architecture is
compared with it at equal capacity. Each architecture keeps its structure (the default
number of experts, levels, k, ...; --ARCH_KEYWORD flags change it) and its encoder
width is chosen, by bisection over exact counts (mtl_jax/budgets.py), to bring its
parameter count closest to the reference; hard sharing therefore gets a wider encoder.
The width is the whole network's (each expert's, each column's, MTAN's trunk and
attention), so --ARCH_expert_width and --mtan_attention_width are refused here. Parts
that do not grow with the width, the MMoE, CGC and PLE gates on the raw input, set a
floor: below it an architecture stays at width 1 and over budget (the table shows
every count). With the defaults (T = 8 related vectors of 72 inputs, MLP depth 2; T = 4
driving scenes of 32x32x3, CNN depth 3 at --width=32), the widths and counts are:

  arch          related: width  params       driving4: width  params
  separate                  32  27,400                     32  79,620
  hps                      130  27,568                     64  79,748
  mmoe                      50  27,544                     19  78,660 (gates 49,168)
  cgc                       28  27,104                     24  81,564 (gates 24,584)
  ple                       27  27,040                     17  78,313
  cross_stitch              32  27,528                     32  79,668
  mtan                      24  26,960                     33  78,016
  dselect_k                 53  27,404                     32  79,644

all within 2.5% of the reference. At --width=16 the gates alone exceed the separate
networks' 21,380 parameters on the scenes, which is why the presets keep width 32.

Every arm trains with equal weighting (--method changes it for every architecture;
those an architecture cannot serve are left out, saying why) and the same data,
splits, seeds, steps and epoch-selection rule. Reported per problem and architecture:
mean ± 95% CI over seeds of the test metric per task and over tasks, Δm% against
separate networks paired by seed (mtl_jax/delta_m.py), the parameter count and width,
and the wall time per training step; over problems, the mean rank by Δm%.
"""
import dataclasses
from typing import Optional

import numpy as np
from absl import flags

from experiments import cli, experiment, methods as methods_experiment, relatedness
from experiments.experiment import Experiment, Grid, Groups, Summary, records_of
from experiments.methods import RELATED_EPOCHS, RELATED_NUM_TRAIN, Problem, ms_per_step
from mtl_jax import methods, plots
from mtl_jax.budgets import count_params, width_for_params
from mtl_jax.data.datasets import DataConfig, check_data_config, task_names
from mtl_jax.delta_m import delta_m_summary, mean_ranks
from mtl_jax.errors import InputError
from mtl_jax.models import SEPARATE_ARM, architecture_options, build_model
from mtl_jax.results import format_cell, summarize_arms
from mtl_jax.step import method_misfit

flags.adopt_module_key_flags(cli)

NAME = "architectures"
RELATED, DRIVING = "related", "driving4"
PROBLEM_KINDS = (RELATED, DRIVING)
# Options that set a width apart from the encoder's: the budget matching sets that.
WIDTH_OPTIONS = ("expert_width", "attention_width")

ARCH_NAMES = flags.DEFINE_list(
    "archs", list(cli.ARCHS), "architectures: the architectures to compare with separate networks "
    f"(default: all: {', '.join(cli.ARCHS)}), each at about the separate networks' parameter count.")
ARCH_RHOS = flags.DEFINE_list(
    "arch_rhos", None, "architectures: values of rho for the related problems, each in [0, 1] "
    "(default: those of the relatedness experiment's --rhos).")
ARCH_PROBLEMS = flags.DEFINE_list(
    "arch_problems", list(PROBLEM_KINDS), "architectures: related (the relatedness data at each "
    "--arch_rhos), driving4 (the driving scenes' 4 tasks), or both (default).")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(experiment.Settings):
  archs: tuple[str, ...] = tuple(cli.ARCHS)
  problems: tuple[str, ...] = PROBLEM_KINDS
  rhos: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
  related_num_train: int = 200  # read by methods' related setting
  related_epochs: int = 100
  # Per architecture, its structure options off their defaults (never a width).
  structure: dict[str, tuple[tuple[str, float], ...]] = dataclasses.field(default_factory=dict)


def _structure(arch: str) -> tuple[tuple[str, float], ...]:
  """--ARCH_KEYWORD values off their defaults, as cli.arch_options reads --arch's."""
  defaults = architecture_options(arch)
  options = tuple((key, flag.value) for key, flag in cli.ARCH_FLAGS[arch].items() if flag.value != defaults[key])
  widths = [key for key, _ in options if key in WIDTH_OPTIONS]
  if widths:
    raise InputError(f"--{arch}_{widths[0]}: the architectures experiment chooses every width to "
                     "match the separate networks' parameter count; leave it unset")
  return options


def settings_from_flags() -> Settings:
  unknown = [a for a in ARCH_NAMES.value if a not in cli.ARCHS and a != SEPARATE_ARM]
  if unknown or not ARCH_NAMES.value:
    raise InputError(f"--archs: unknown architecture {unknown[0]!r}; choose from {', '.join(cli.ARCHS)}"
                     if unknown else "--archs must list at least one architecture")
  archs = tuple(a for a in dict.fromkeys(ARCH_NAMES.value) if a != SEPARATE_ARM)  # separate: always
  wrong = [p for p in ARCH_PROBLEMS.value if p not in PROBLEM_KINDS]
  if wrong or not ARCH_PROBLEMS.value:
    raise InputError(f"--arch_problems: unknown problem {wrong[0]!r}; choose from {', '.join(PROBLEM_KINDS)}"
                     if wrong else "--arch_problems must list at least one problem")
  flag, values = ("arch_rhos", ARCH_RHOS.value) if ARCH_RHOS.value is not None else ("rhos", relatedness.RHOS.value)
  try:
    rhos = tuple(float(r) for r in values)
  except ValueError:
    raise InputError(f"--{flag} must be numbers; got {','.join(values)}")
  return cli.settings(Settings, archs=archs, problems=tuple(dict.fromkeys(ARCH_PROBLEMS.value)), rhos=rhos,
                      related_num_train=RELATED_NUM_TRAIN.value, related_epochs=RELATED_EPOCHS.value,
                      structure={a: _structure(a) for a in archs})


def problems_of(settings: Settings) -> list[tuple[Problem, Optional[float]]]:
  """(problem, its rho or None), the related ones first, by rho."""
  if DRIVING in settings.problems and settings.data.dataset != "driving":
    raise InputError(f"architectures runs on the relatedness data and the driving scenes; "
                     f"--dataset={settings.data.dataset} is not supported (leave --dataset unset)")
  rhos = sorted(set(settings.rhos))
  problems = []
  if RELATED in settings.problems:
    if not rhos or rhos[0] < 0 or rhos[-1] > 1:
      raise InputError("--arch_rhos (or --rhos) must list at least one value, each in [0, 1]")
    problems += [(Problem(f"related_rho{rho:g}", *methods_experiment.related_setting(rho)(settings)), rho)
                 for rho in rhos]
  if DRIVING in settings.problems:
    problems.append((Problem(DRIVING, *methods_experiment.GENERATED_PROBLEMS[DRIVING](settings)), None))
  return problems


def generated_only(settings: Settings) -> Optional[str]:
  """Its problems are generated data: the driving scenes need --dataset's default."""
  if DRIVING in settings.problems and settings.data.dataset != "driving":
    return (f"runs on the relatedness data and the driving scenes; --dataset={settings.data.dataset} "
            "is not supported (leave --dataset unset, or give --arch_problems=related)")
  return None


def _input_shape(data: DataConfig) -> tuple[int, ...]:
  if data.dataset == "related":
    return (data.relatedness.input_dim,)
  return (data.scenes.image_size, data.scenes.image_size, 3)


def budgets(settings: Settings, problem: Problem) -> tuple[dict[str, int], list[str]]:
  """Each architecture's encoder width at about the separate networks' parameter count
  (separate keeps the problem's width), and why any architecture is left out: one
  that cannot be built on this problem (PLE levels above the depth) or cannot serve
  --method."""
  shape, num_tasks = _input_shape(problem.data), len(task_names(problem.data))
  reference = count_params(SEPARATE_ARM, problem.encoder, num_tasks, shape)
  needs = methods.build_method(problem.train.method, problem.train.method_options).needs
  widths, notes = {SEPARATE_ARM: problem.encoder.width}, []
  for arch in settings.archs:
    options = settings.structure.get(arch, ())
    try:
      width = width_for_params(arch, problem.encoder, num_tasks, shape, reference, options)
    except InputError as e:
      notes.append(f"  left out on {problem.name}: {e}")
      continue
    model = build_model(arch, dataclasses.replace(problem.encoder, width=width), num_tasks, shape, options)
    misfit = method_misfit(model, needs, problem.train.method, arch)
    if misfit:
      notes.append(f"  left out on {problem.name}: {misfit}")
      continue
    widths[arch] = width
  return widths, notes


def grid(settings: Settings) -> Grid:
  """(problem, arm) -> seed configs; an arm is "separate" or an architecture."""
  groups, notes = {}, []
  for problem, _ in problems_of(settings):
    check_data_config(problem.data)
    widths, left_out = budgets(settings, problem)
    notes += left_out
    for arm, width in widths.items():
      encoder = dataclasses.replace(problem.encoder, width=width)
      configs = settings.seed_configs(NAME, SEPARATE_ARM if arm == SEPARATE_ARM else "joint", problem.data,
                                      encoder, problem.train)
      groups[problem.name, arm] = (configs if arm == SEPARATE_ARM else [
          dataclasses.replace(c, arch=arm, arch_options=settings.structure.get(arm, ())) for c in configs])
  method = settings.train.method
  return Grid(groups, f"{NAME}: {len(groups)} groups (problem x arm: separate and {len(settings.archs)} "
                      f"architectures, each with {method} at about the separate networks' parameter count) "
                      f"of {settings.seeds} seeds" + "".join("\n" + n for n in notes))


def summarize(settings: Settings, groups: Groups, done: dict[str, dict]) -> Summary:
  rows, delta_by_problem = [], {}
  for problem, rho in problems_of(settings):
    arms = [a for a in (SEPARATE_ARM, *settings.archs) if (problem.name, a) in groups]
    by_arm = {arm: records_of(groups[problem.name, arm], done) for arm in arms}
    keys = dict(problem=problem.name, rho=rho)
    rows += summarize_arms(by_arm, by_arm[SEPARATE_ARM][0]["task_names"], keys)
    delta_by_problem[problem.name] = {SEPARATE_ARM: 0.0}
    for arm, records in by_arm.items():
      row = lambda split, metric, value: methods_experiment.summary_row(problem.name, split, metric, "mean", arm,
                                                                 value, rho=rho)
      rows.append(row("train", "param_count", records[0]["param_count"]))
      rows.append(row("train", "width", records[0]["config"]["encoder"]["width"]))
      rows.append(row("train", "ms_per_step", ms_per_step(records)))
      if arm != SEPARATE_ARM:
        mean, ci, n = delta_m_summary(records, by_arm[SEPARATE_ARM])
        rows.append(dict(problem=problem.name, rho=rho, split="test", metric="delta_m_pct", task="mean",
                         arm=arm, mean=round(mean, 5), ci95=round(ci, 5), n=n))
        delta_by_problem[problem.name][arm] = mean
  for arm, rank in mean_ranks(delta_by_problem).items():
    rows.append(methods_experiment.summary_row("all", "test", "mean_rank", "mean", arm, rank, rho=None))
  method = settings.train.method
  encoder = settings.encoder
  title = (f"{len(settings.archs)} architectures with {method} vs separate networks, each at about the "
           f"separate networks' parameter count (width matched), {settings.seeds} seeds (95% CI); "
           + "; ".join(p for p in (
               RELATED in settings.problems and f"related: 8 tasks, MLP depth 2, {settings.related_num_train} "
               f"train, {settings.related_epochs} epochs",
               DRIVING in settings.problems and f"driving4: {encoder.kind} width {encoder.width} depth "
               f"{encoder.depth}, {settings.data.num_train} train, {settings.train.epochs} epochs") if p)
           + f"; {settings.data.missing_frac:.0%} labels missing")
  return Summary(rows, title)


def _cells(rows: list[dict], metric: str, split: str = "test") -> dict[tuple[str, str], dict]:
  return {(r["problem"], r["arm"]): r for r in plots.select(rows, metric=metric, split=split, task="mean")}


def _arms(rows: list[dict]) -> list[str]:
  """Separate first, then the architectures by mean rank over problems, best first."""
  ranks = {r["arm"]: r["mean"] for r in plots.select(rows, metric="mean_rank")}
  return [SEPARATE_ARM, *sorted((a for a in ranks if a != SEPARATE_ARM), key=ranks.get)]


def _thousands(count: float) -> str:
  return f"{count / 1000:.1f}k" if count >= 1000 else f"{count:.0f}"


def _cell(cells: dict, ms: dict, problem: str, arm: str) -> str:
  """One cell of a table by problem: '-' where the arm did not run (every arm that ran
  has a step time), '0 (baseline)' for separate networks' Δm%."""
  if (problem, arm) not in ms:
    return "-"
  if cells is ms:
    return f"{ms[problem, arm]['mean']:.2f}"
  return format_cell(cells[problem, arm]) if (problem, arm) in cells else "0 (baseline)"


def table(settings: Settings, rows: list[dict]) -> str:
  params, width = _cells(rows, "param_count", "train"), _cells(rows, "width", "train")
  delta, auc, ms = _cells(rows, "delta_m_pct"), _cells(rows, "auc"), _cells(rows, "ms_per_step", "train")
  rank = {r["arm"]: r["mean"] for r in plots.select(rows, metric="mean_rank")}
  problems = list(dict.fromkeys(p for p, _ in params))
  arms = _arms(rows)
  # The budgets are the same at every rho: one column for the related problems.
  budget_columns = list(dict.fromkeys("related" if p.startswith("related_") else p for p in problems))
  first = {column: next(p for p in problems if p == column or p.startswith(column + "_"))
           for column in budget_columns}
  lines = ["\nParameter budgets: each architecture's encoder width chosen so that its parameter count is "
           "closest to the separate networks' (×sep: the ratio):",
           f"{'arch':<13} " + " ".join(f"{c + ' width':>16} {'params':>8} {'×sep':>5}" for c in budget_columns)]
  for arm in arms:
    cells = []
    for column in budget_columns:
      p = first[column]
      if (p, arm) not in params:
        cells.append(f"{'-':>16} {'-':>8} {'-':>5}")
        continue
      count = params[p, arm]["mean"]
      cells.append(f"{width[p, arm]['mean']:>16.0f} {count:>8,.0f} {count / params[p, SEPARATE_ARM]['mean']:>5.2f}")
    lines.append(f"{arm:<13} " + " ".join(cells))
  ci = f", mean ± 95% CI over {settings.seeds} seeds"
  sections = [(f"Δm% against separate networks (test ROC-AUC and AP; higher is better){ci}; mean rank "
               "by Δm% over problems:", delta, 17), (f"Test ROC-AUC, mean over tasks{ci}:", auc, 15),
              ("Milliseconds per training step of one seed (the seeds train together):", ms, 8)]
  for heading, cells, size in sections:
    sizes = {p: max(size, len(p)) for p in problems}
    lines.append("\n" + heading)
    lines.append(f"{'arch':<13} " + ("rank  " if cells is delta else "") + " ".join(f"{p:>{sizes[p]}}" for p in problems))
    for arm in arms:
      lines.append(f"{arm:<13} " + (f"{rank.get(arm, np.nan):>4.1f}  " if cells is delta else "")
                   + " ".join(f"{_cell(cells, ms, p, arm):>{sizes[p]}}" for p in problems))
  return "\n".join(lines)


def _colors(arms: list[str]) -> dict[str, str]:
  """Separate networks black, hard sharing red, the rest from a palette; by registry
  order, so an architecture keeps its colour whichever others are drawn."""
  palette = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
  others = [a for a in cli.ARCHS if a != "hps"]
  return {a: "black" if a == SEPARATE_ARM else "#d62728" if a == "hps" else
          palette[(others.index(a) if a in others else len(others)) % len(palette)] for a in arms}


def draw(rows: list[dict], out_path: str, title: str) -> None:
  """On the related data, mean test ROC-AUC and Δm% against rho per architecture with
  95% CI bands; then per problem, each architecture's Δm% with its CI, labelled with
  its parameter count (0 is separate networks)."""
  params, delta = _cells(rows, "param_count", "train"), _cells(rows, "delta_m_pct")
  problems = list(dict.fromkeys(p for p, _ in params))
  related = [r for r in rows if r["rho"] is not None]
  arms, colors = _arms(rows), _colors(_arms(rows))
  curves = 2 if related else 0
  panels = curves + len(problems)
  columns = min(panels, 4)
  lines = -(-panels // columns)
  fig, axes = plots.subplots(lines, columns, figsize=(4.4 * columns, 3.6 * lines), squeeze=False)
  axes = axes.ravel()
  if related:
    for arm in arms:
      counts = [params[p, a]["mean"] for p, a in params if a == arm and p.startswith("related_")]
      label = f"{arm} ({_thousands(counts[0])})" if counts else arm
      auc = plots.select(related, split="test", metric="auc", task="mean", arm=arm)
      plots.line_with_band(axes[0], *plots.series(auc, "rho"), color=colors[arm], label=label, markersize=3)
      if arm != SEPARATE_ARM:
        gain = plots.select(related, metric="delta_m_pct", arm=arm)
        plots.line_with_band(axes[1], *plots.series(gain, "rho"), color=colors[arm], label=label, markersize=3)
    axes[0].set_ylabel("test ROC-AUC, mean over tasks")
    axes[1].set_ylabel("Δm% vs separate networks")
    axes[1].axhline(0.0, color="black", linewidth=0.8)
    axes[0].legend(fontsize=6, title="arch (parameters)", title_fontsize=6)
    for ax in axes[:2]:
      ax.set_xlabel("relatedness rho")
      ax.set_title("related data", fontsize=9)
      ax.grid(alpha=0.3)
  for ax, problem in zip(axes[curves:], problems):
    shown = [a for a in arms if a != SEPARATE_ARM and (problem, a) in delta]
    y = np.arange(len(shown))[::-1]
    for arm, at in zip(shown, y):
      ax.errorbar(delta[problem, arm]["mean"], at, xerr=np.nan_to_num(delta[problem, arm]["ci95"]), fmt="o",
                  markersize=3.5, capsize=2, color=colors[arm])
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(y, [f"{a} ({_thousands(params[problem, a]['mean'])})" for a in shown], fontsize=7)
    ax.set_xlabel("Δm% vs separate networks (higher is better)")
    ax.set_title(f"{problem}: separate {_thousands(params[problem, SEPARATE_ARM]['mean'])} parameters", fontsize=9)
    ax.grid(alpha=0.3, axis="x")
  for extra in axes[panels:]:
    extra.set_visible(False)
  plots.finish(fig, title, out_path, top=0.9 if lines == 1 else 0.94)


EXPERIMENT = Experiment(
    name=NAME, summary="every sharing architecture against separate networks at equal parameter counts (Δm%)",
    settings_from_flags=settings_from_flags, grid=grid, summarize=summarize, table=table, draw=draw, presets={
        "quick": dict(num_train=2000, num_val=500, num_test=2000, epochs=6, width=32, depth=3, seeds=5),
        "full": dict(num_train=12000, num_val=2000, num_test=6000, epochs=20, width=32, depth=3, seeds=10,
                     arch_rhos=[str(r / 10) for r in range(11)]),
    },
    requires=(generated_only,))

if __name__ == "__main__":
  cli.run(EXPERIMENT.main)
