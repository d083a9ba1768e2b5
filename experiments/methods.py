"""Methods: every task-weighting and gradient-combination method (mtl_jax/methods) on
the joint network, against separate networks, for the question a researcher asks
first: does any of them beat the course note's plain summed loss J?

Run:  python launch.py --experiment=methods --preset=quick
      python launch.py --experiment=methods --methods=ew,mgda,upgrad --problems=driving4
      python launch.py --experiment=methods --dataset=csv:my.csv   (your data: one problem)
Time: see the README (the quick preset is sized for 30 minutes of a 2-core CPU).
Writes: OUT_DIR/results.jsonl, OUT_DIR/summary.csv, OUT_DIR/methods.{png,svg} (Δm%
      per method with its CI, and its cost) and OUT_DIR/methods_diagnostics.{png,svg}
      (gradient conflict and per-task training loss over epochs).

On the generated data it runs four problems:
  driving4      the driving scenes' 4 presence tasks, --missing_frac of labels missing;
  driving34     the 34 driving tasks (driving_tasks.ALL_TASK_NAMES), same scenes;
  related_rho0  the relatedness data at rho = 0 (unrelated tasks: gradients should conflict);
  related_rho1  and at rho = 1 (every task from the same features: they should agree).
The driving problems take the data, encoder and training flags; the related ones keep
the relatedness experiment's own setting (MLP width 32 depth 2, 8 tasks, batch 32,
--related_num_train=200 training examples, --related_epochs=100), where sharing matters. On read data (--dataset=csv:..,
npz:.., tfds:..) the one problem is that data.

Every method and the separate networks see the same data, splits, seeds, steps and
epoch-selection rule; each method uses its paper's hyper-parameters (--METHOD_KEYWORD
flags change them) and the same optimizer and learning rate: no method is tuned.
Reported per problem: mean ± 95% CI over seeds of the test metric per task, Δm%
against separate networks (mtl_jax/delta_m.py: higher is better), and the wall time
per training step; over problems, the mean rank of each method by Δm%.
"""
import dataclasses
from typing import Callable

import numpy as np
from absl import flags

from experiments import cli, experiment
from experiments.experiment import Experiment, Grid, Groups, Summary, records_of
from mtl_jax import methods, plots
from mtl_jax.data import driving_tasks
from mtl_jax.data.datasets import DataConfig, check_data_config, read_kind
from mtl_jax.data.related import RelatedConfig
from mtl_jax.delta_m import delta_m_per_seed, mean_ranks
from mtl_jax.errors import InputError
from mtl_jax.models import SEPARATE_ARM, EncoderSpec, build_model
from mtl_jax.results import format_cell, mean_ci95, summarize_arms
from mtl_jax.step import method_misfit
from mtl_jax.train import TrainConfig

flags.adopt_module_key_flags(cli)

NAME = "methods"
OWN_DATA = "data"  # the one problem on read data

METHODS = flags.DEFINE_list(
    "methods", list(methods.METHODS), "methods: the combination methods to compare (default: "
    "all), each against separate networks. Their hyper-parameters are the --METHOD_KEYWORD flags.")
PROBLEMS = flags.DEFINE_list(
    "problems", None, "methods: on generated data, which of driving4, driving34, related_rho0, "
    "related_rho1 to run (default: all four).")
RELATED_NUM_TRAIN = flags.DEFINE_integer(
    "related_num_train", 200, "methods: training examples of the related_rho* problems (the "
    "data, encoder and training flags set the driving problems).", lower_bound=1)
RELATED_EPOCHS = flags.DEFINE_integer(
    "related_epochs", 100, "methods: epochs of the related_rho* problems.", lower_bound=1,
    upper_bound=cli.MAX_EPOCHS)


@dataclasses.dataclass(frozen=True)
class Problem:
  """One dataset with the network and training that every method gets on it."""
  name: str
  data: DataConfig
  encoder: EncoderSpec
  train: TrainConfig


def _driving(tasks: tuple[str, ...]) -> Callable[["Settings"], tuple[DataConfig, EncoderSpec, TrainConfig]]:
  return lambda s: (dataclasses.replace(s.data, tasks=tasks), s.encoder, s.train)


def related_setting(rho: float) -> Callable[["Settings"], tuple[DataConfig, EncoderSpec, TrainConfig]]:
  """The relatedness experiment's setting (experiments/relatedness.py DEFAULTS)."""
  def setting(s):
    data = DataConfig(dataset="related", num_train=s.related_num_train, num_val=200, num_test=4000,
                      missing_frac=s.data.missing_frac, data_seed=s.data.data_seed,
                      relatedness=RelatedConfig(rho=rho, num_tasks=8))
    train = dataclasses.replace(s.train, epochs=s.related_epochs, batch_size=min(32, s.related_num_train))
    return data, EncoderSpec("mlp", 32, 2), train
  return setting


# The problems on generated data, by name: settings -> (data, encoder, training).
GENERATED_PROBLEMS = {
    "driving4": _driving(()),
    "driving34": _driving(driving_tasks.ALL_TASK_NAMES),
    "related_rho0": related_setting(0.0),
    "related_rho1": related_setting(1.0),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(experiment.Settings):
  methods: tuple[str, ...] = tuple(methods.METHODS)
  problems: tuple[str, ...] = tuple(GENERATED_PROBLEMS)  # generated data only
  related_num_train: int = 200
  related_epochs: int = 100
  # Per method, its hyper-parameters that differ from the defaults.
  method_options: dict[str, tuple[tuple[str, float], ...]] = dataclasses.field(default_factory=dict)


def settings_from_flags() -> Settings:
  unknown = [m for m in METHODS.value if m not in methods.METHODS]
  if unknown or not METHODS.value:
    raise InputError(f"--methods: unknown method {unknown[0]!r}; choose from {', '.join(methods.METHODS)}"
                     if unknown else "--methods must list at least one method")
  chosen = tuple(dict.fromkeys(METHODS.value))
  settings = cli.settings(Settings, methods=chosen, problems=tuple(PROBLEMS.value or GENERATED_PROBLEMS),
                          related_num_train=RELATED_NUM_TRAIN.value, related_epochs=RELATED_EPOCHS.value,
                          method_options={m: cli.method_options(m) for m in chosen})
  if not settings.plot_only and not read_kind(settings.data.dataset):
    # The related problems do not follow the shared flags that cli.settings checked.
    for problem in problems_of(settings):
      if problem.name.startswith("related"):
        cli.check_runs_fit(problem.data, [problem.encoder], problem.train, settings.seeds)
  return settings


def problems_of(settings: Settings) -> list[Problem]:
  if read_kind(settings.data.dataset):
    return [Problem(OWN_DATA, settings.data, settings.encoder, settings.train)]
  unknown = [p for p in settings.problems if p not in GENERATED_PROBLEMS]
  if unknown or not settings.problems:
    raise InputError(f"--problems: unknown problem {unknown[0]!r}; choose from {', '.join(GENERATED_PROBLEMS)}"
                     if unknown else "--problems must list at least one problem")
  return [Problem(name, *GENERATED_PROBLEMS[name](settings)) for name in dict.fromkeys(settings.problems)]


def arms_of(settings: Settings) -> list[str]:
  """The separate networks, then every method's joint network."""
  return [SEPARATE_ARM, *settings.methods]


def servable(settings: Settings, encoder: EncoderSpec) -> tuple[list[str], list[str]]:
  """The methods --arch can train, and why each other one cannot (MGDA-UB needs the one
  shared representation that hard sharing has), from a model built on a stand-in input."""
  model = build_model(settings.arch, encoder, 2, (8, 8, 3) if encoder.kind == "cnn" else (8,),
                      settings.arch_options)
  misfits = {m: method_misfit(model, methods.build_method(m).needs, m, settings.arch) for m in settings.methods}
  return [m for m, why in misfits.items() if not why], [why for why in misfits.values() if why]


def grid(settings: Settings) -> Grid:
  """(problem, arm) -> seed configs; an arm is "separate" or a method's name. Methods
  that --arch cannot serve are left out, saying why."""
  groups, notes = {}, []
  for problem in problems_of(settings):
    check_data_config(problem.data)
    served, misfits = servable(settings, problem.encoder)
    notes += [f"  left out on {problem.name}: {why}" for why in misfits]
    for arm in [SEPARATE_ARM, *served]:
      train = dataclasses.replace(problem.train, method=arm, method_options=settings.method_options.get(arm, ())) \
          if arm != SEPARATE_ARM else problem.train
      groups[problem.name, arm] = [
          dataclasses.replace(c, train=train) for c in settings.seed_configs(
              NAME, "separate" if arm == SEPARATE_ARM else "joint", problem.data, problem.encoder)]
  return Grid(groups, f"{NAME}: {len(groups)} groups (problem x arm: separate and "
                      f"{len(settings.methods)} methods) of {settings.seeds} seeds" + "".join("\n" + n for n in notes))


def ms_per_step(records: list[dict]) -> float:
  """Training wall time per optimizer step of one seed (the seeds of a group train
  in one program; on a CPU one after another)."""
  first = records[0]
  return 1000.0 * first["train_seconds_all_seeds"] / max(first["train_steps"] * len(records), 1)


def _epoch_rows(problem: str, arm: str, records: list[dict], task_names) -> list[dict]:
  """Diagnostics over epochs, mean and CI over seeds: each task's training loss and
  the gradient cosine (where the method took per-task gradients)."""
  rows = []
  done = [r for r in records if r["status"] == "ok"]
  losses_SxExT = np.array([r["train_loss_per_task_per_epoch"] for r in done], float)
  for t, task in enumerate(task_names):
    for e in range(losses_SxExT.shape[1] if done else 0):
      rows.append(summary_row(problem, "train", "train_loss", task, arm, losses_SxExT[:, e, t], epoch=e + 1))
  cosines = [r["gradient_cosine_per_epoch"] for r in done if r["gradient_cosine_per_epoch"] is not None]
  cosine_SxE = np.array(cosines, float)
  for e in range(cosine_SxE.shape[1] if cosines else 0):
    rows.append(summary_row(problem, "train", "gradient_cosine", "mean", arm, cosine_SxE[:, e], epoch=e + 1))
  return rows


def summary_row(problem, split, metric, task, arm, values, **keys) -> dict:
  """A summary row of mean, 95% CI and n over the seeds' `values` (one value: n = 1)."""
  mean, ci, n = mean_ci95([float(v) for v in np.atleast_1d(values)])
  return dict(problem=problem, split=split, metric=metric, task=task, arm=arm,
              mean=round(mean, 5), ci95=round(ci, 5), n=n, **keys)


def summarize(settings: Settings, groups: Groups, done: dict[str, dict]) -> Summary:
  rows, delta_by_problem = [], {}
  arms = arms_of(settings)
  for problem in dict.fromkeys(p for p, _ in groups):
    by_arm = {arm: records_of(groups[problem, arm], done) for arm in arms if (problem, arm) in groups}
    task_names = by_arm[SEPARATE_ARM][0]["task_names"]
    rows += summarize_arms(by_arm, task_names, dict(problem=problem))
    baseline = by_arm[SEPARATE_ARM]
    ew_ms = ms_per_step(by_arm[methods.DEFAULT_METHOD]) if methods.DEFAULT_METHOD in by_arm else np.nan
    delta_by_problem[problem] = {SEPARATE_ARM: 0.0}
    for arm, records in by_arm.items():
      ms = ms_per_step(records)
      rows.append(summary_row(problem, "train", "ms_per_step", "mean", arm, ms))
      rows.append(summary_row(problem, "train", "step_time_vs_ew", "mean", arm, ms / ew_ms))
      rows += _epoch_rows(problem, arm, records, task_names)
      if arm != SEPARATE_ARM:
        rows.append(summary_row(problem, "test", "delta_m_pct", "mean", arm, delta_m_per_seed(records, baseline)))
        delta_by_problem[problem][arm] = rows[-1]["mean"]
  for arm, rank in mean_ranks(delta_by_problem).items():
    rows.append(summary_row("all", "test", "mean_rank", "mean", arm, rank))
  title = (f"{len(settings.methods)} methods on the joint network vs separate networks, "
           f"{settings.seeds} seeds (95% CI); problems: {', '.join(delta_by_problem)}; "
           f"driving: {settings.encoder.kind} width {settings.encoder.width} depth {settings.encoder.depth}, "
           f"{settings.data.num_train or 'all'} train, {settings.train.epochs} epochs, "
           f"{settings.data.missing_frac:.0%} labels missing")
  return Summary(rows, title)


def _cells(rows: list[dict], metric: str, split: str = "test") -> dict[tuple[str, str], dict]:
  return {(r["problem"], r["arm"]): r for r in plots.select(rows, metric=metric, split=split, task="mean")}


def ranked_arms(rows: list[dict]) -> list[str]:
  """Arms by mean rank over problems, best first."""
  ranks = {r["arm"]: r["mean"] for r in plots.select(rows, metric="mean_rank")}
  return sorted(ranks, key=ranks.get)


def table(settings: Settings, rows: list[dict]) -> str:
  delta, auc = _cells(rows, "delta_m_pct"), _cells(rows, "auc")
  cost = _cells(rows, "step_time_vs_ew", split="train")
  rank = {r["arm"]: r["mean"] for r in plots.select(rows, metric="mean_rank")}
  problems = list(dict.fromkeys(p for p, _ in delta))
  lines = [f"\nΔm% against separate networks (test ROC-AUC and AP; higher is better), mean ± 95% CI "
           f"over {settings.seeds} seeds; step time relative to ew; mean rank by Δm% over problems:",
           f"{'method':<12} {'rank':>5} " + " ".join(f"{p + ' Δm%':>22} {'×ew':>5}" for p in problems)]
  for arm in ranked_arms(rows):
    cells = []
    for p in problems:
      if (p, arm) not in cost:  # not run on this problem (--arch cannot serve it)
        cells.append(f"{'-':>22} {'-':>5}")
        continue
      d = format_cell(delta[p, arm]) if (p, arm) in delta else "0 (baseline)"
      cells.append(f"{d:>22} {cost[p, arm]['mean']:>5.2f}")
    lines.append(f"{arm:<12} {rank[arm]:>5.1f} " + " ".join(cells))
  lines.append("\nTest ROC-AUC, mean over tasks:")
  lines.append(f"{'method':<12} " + " ".join(f"{p:>18}" for p in problems))
  for arm in ranked_arms(rows):
    lines.append(f"{arm:<12} " + " ".join(f"{format_cell(auc[p, arm]) if (p, arm) in auc else '-':>18}"
                                          for p in problems))
  return "\n".join(lines)


def _color(arm: str) -> str:
  """ew, the course note's J, in red; every other method in blue."""
  return "#d62728" if arm == methods.DEFAULT_METHOD else "#1f77b4"


def draw(rows: list[dict], out_path: str, title: str) -> None:
  """Per problem, Δm% of every method with its 95% CI (0 is separate networks); last,
  each method's mean Δm% over problems against its step time relative to ew."""
  delta, cost = _cells(rows, "delta_m_pct"), _cells(rows, "step_time_vs_ew", split="train")
  problems = list(dict.fromkeys(p for p, _ in delta))
  arms = [a for a in ranked_arms(rows) if a != SEPARATE_ARM]
  columns = min(len(problems) + 1, 3)
  lines = -(-(len(problems) + 1) // columns)
  fig, axes = plots.subplots(lines, columns, figsize=(4.6 * columns, 0.24 * len(arms) * lines + 1.6 * lines),
                             squeeze=False)
  axes = axes.ravel()
  y = np.arange(len(arms))[::-1]
  for ax, problem in zip(axes, problems):
    missing = {"mean": np.nan, "ci95": np.nan}  # a method --arch could not serve
    means = np.array([delta.get((problem, a), missing)["mean"] for a in arms])
    cis = np.nan_to_num(np.array([delta.get((problem, a), missing)["ci95"] for a in arms]))
    for arm, mean, ci, at in zip(arms, means, cis, y):
      ax.errorbar(mean, at, xerr=ci, fmt="o", markersize=3.5, capsize=2, color=_color(arm))
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(y, arms, fontsize=7)
    ax.set_xlabel("Δm% vs separate networks (higher is better)")
    ax.set_title(problem, fontsize=9)
    ax.grid(alpha=0.3, axis="x")
  ax = axes[len(problems)]
  for a in arms:
    mean_delta = np.nanmean([delta[p, a]["mean"] for p in problems if (p, a) in delta])
    slowest = np.nanmax([cost[p, a]["mean"] for p in problems if (p, a) in cost])
    ax.scatter(slowest, mean_delta, s=14, color=_color(a))
    ax.annotate(a, (slowest, mean_delta), fontsize=6, xytext=(2, 2), textcoords="offset points")
  ax.set_xscale("log")
  ax.axhline(0.0, color="black", linewidth=0.8)
  ax.set_xlabel("step time ÷ ew's, on the costliest problem (log)")
  ax.set_ylabel("Δm%, mean over problems")
  ax.set_title("benefit against cost", fontsize=9)
  ax.grid(alpha=0.3)
  for extra in axes[len(problems) + 1:]:
    extra.set_visible(False)
  plots.finish(fig, title, out_path, top=0.93)


def draw_diagnostics(rows: list[dict], out_path: str, title: str) -> None:
  """Per problem: the mean pairwise cosine of the task gradients over epochs for every
  method that takes per-task gradients (below 0: conflicting), and each task's
  training loss over epochs for ew (solid) and the other method with the best Δm%
  (dashed)."""
  delta = _cells(rows, "delta_m_pct")
  problems = list(dict.fromkeys(p for p, _ in delta))
  fig, axes = plots.subplots(len(problems), 2, figsize=(11, 3.3 * len(problems)), squeeze=False)
  for (ax_cos, ax_loss), problem in zip(axes, problems):
    cosine = plots.select(rows, problem=problem, metric="gradient_cosine")
    arms = list(dict.fromkeys(r["arm"] for r in cosine))
    for arm, color in zip(arms, plots.task_colors(len(arms))):  # means only: bands would hide the lines
      epochs, means, _ = plots.series(cosine, "epoch", arm=arm)
      ax_cos.plot(epochs, means, "o-", markersize=2.5, linewidth=1, label=arm, color=color)
    ax_cos.axhline(0.0, color="black", linewidth=0.8)
    ax_cos.set_ylabel("mean pairwise cosine of task gradients")
    ax_cos.set_title(f"{problem}: gradient conflict", fontsize=9)
    if cosine:
      ax_cos.legend(fontsize=6, ncol=2)
    others = [a for (p, a) in delta if p == problem and a != methods.DEFAULT_METHOD] or [methods.DEFAULT_METHOD]
    best = max(others, key=lambda a: np.nan_to_num(delta[problem, a]["mean"], nan=-np.inf))
    losses = plots.select(rows, problem=problem, metric="train_loss")
    tasks = list(dict.fromkeys(r["task"] for r in losses))
    colors = plots.task_colors(len(tasks))
    for arm, style in ((methods.DEFAULT_METHOD, "-"), (best, "--")):
      for task, color in zip(tasks, colors):
        epochs, means, _ = plots.series(losses, "epoch", arm=arm, task=task)
        ax_loss.plot(epochs, means, style, color=color, linewidth=0.9,
                     label=task if arm == methods.DEFAULT_METHOD and len(tasks) <= 8 else None)
    ax_loss.set_ylabel("training loss of each task")
    ax_loss.set_title(f"{problem}: per-task training loss, ew (solid) and {best} (dashed)", fontsize=9)
    if len(tasks) <= 8:
      ax_loss.legend(fontsize=6)
    for ax in (ax_cos, ax_loss):
      ax.set_xlabel("epoch")
      ax.grid(alpha=0.3)
  plots.finish(fig, title, out_path, top=0.95)


EXPERIMENT = Experiment(
    name=NAME, summary="every MTL method on the joint network against separate networks (Δm%)",
    settings_from_flags=settings_from_flags, grid=grid, summarize=summarize, table=table,
    draw=draw, more_figures={"diagnostics": draw_diagnostics}, presets={
        "quick": dict(num_train=1000, num_val=500, num_test=2000, epochs=8, width=16, seeds=5),
        "full": dict(num_train=12000, num_val=2000, num_test=6000, epochs=20, width=32, seeds=10),
    },
    # Any data; the encoder flags reach only read data and the driving scenes (problems_of).
    requires=(experiment.needs_images_for_cnn(
        lambda s: (s.encoder.kind,) if read_kind(s.data.dataset) else ()),))

if __name__ == "__main__":
  cli.run(EXPERIMENT.main)
