"""Real multi-label benchmarks: joint and separate networks on each set's standard
train/test split, scored with the multi-label literature's metrics, so that our numbers
sit beside published ones.

Run:  python launch.py --experiment=multilabel_real --datasets=DIR   (a folder of sets)
      python launch.py --experiment=multilabel_real \
          --datasets='arff:enron-train.arff,enron-test.arff;arff:CAL500.arff@last:174'
Sets: --datasets lists them, separated by ';'. Each is a --dataset value (arff:TRAIN,TEST,
      arff:FILE, csv:FILE, ...) optionally followed by @LABELS, that set's own
      --label_columns (e.g. @last:174 for CAL500, which has no label file); or a folder,
      whose NAME-train.arff / NAME-test.arff pairs and lone NAME.arff files are the sets
      (their labels from NAME.xml or the files' own convention); a set named on its own
      replaces the folder's set of that name. Without --datasets, the
      one set is --dataset (read data only). A set without a test file has one cut from
      its examples by --test_frac; validation is always cut from the train file alone.
Both arms use every example of every set; --method and --arch choose how the joint
network trains and shares. The sets are small (hundreds of rows): training is sized in
optimizer steps, as for any read data (see cli.train_config).
Writes: OUT_DIR/results.jsonl, OUT_DIR/summary.csv (every metric, split, task and arm,
      with a `dataset` column), OUT_DIR/multilabel_real.{png,svg}: per set and metric,
      joint and separate with 95% CI over seeds.
"""
import dataclasses
import glob
import os

from absl import flags

from experiments import cli, experiment
from experiments.experiment import Experiment, Grid, Groups, Summary, records_of
from mtl_jax import plots
from mtl_jax.data.datasets import DataConfig, check_data_config, read_kind
from mtl_jax.errors import InputError
from mtl_jax.multilabel_metrics import MULTILABEL_METRICS
from mtl_jax.results import DIFF_ARM, format_cell, summarize_arms
from mtl_jax.runs import ARMS

flags.adopt_module_key_flags(cli)

NAME = "multilabel_real"
# The literature's headline metrics, in the table's order (--metrics chooses others);
# every metric is in summary.csv.
TABLE_METRICS = ("hamming_loss", "micro_f1", "macro_f1", "subset_accuracy", "auc")
LOWER_IS_BETTER = {name for name, m in MULTILABEL_METRICS.items() if not m.higher_is_better}
SET_SEPARATOR, LABELS_MARK = ";", "@"

DATASETS = flags.DEFINE_string(
    "datasets", None, "multilabel_real: the sets, separated by ';': each a --dataset value "
    "(arff:TRAIN.arff,TEST.arff, arff:FILE.arff, csv:FILE.csv) with an optional @LABELS (its own "
    "--label_columns, e.g. @last:174), or a folder of NAME-train.arff/NAME-test.arff pairs and "
    "NAME.arff files. Default: --dataset alone.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(experiment.Settings):
  sets: tuple[tuple[str, DataConfig], ...] = ()  # (name, data) per benchmark set
  table_metrics: tuple[str, ...] = TABLE_METRICS  # the printed table's (--metrics)


def _stem(path: str) -> str:
  name = os.path.splitext(os.path.basename(path))[0]
  for suffix in ("-train", "-test", "_train", "_test"):
    if name.endswith(suffix):
      return name[:-len(suffix)]
  return name


def sets_in_folder(folder: str) -> list[tuple[str, str]]:
  """(name, dataset) for every set in `folder`: NAME-train.arff with its NAME-test.arff,
  and lone NAME.arff files."""
  paths = sorted(glob.glob(os.path.join(folder, "*.arff")))
  by_name: dict[str, dict[str, str]] = {}
  for path in paths:
    base = os.path.splitext(os.path.basename(path))[0]
    role = "test" if base.endswith(("-test", "_test")) else "train"
    by_name.setdefault(_stem(path), {})[role] = path
  found = []
  for name, files in by_name.items():
    if "train" not in files:
      raise InputError(f"--datasets={folder}: {files['test']} has no train file beside it")
    found.append((name, "arff:" + ",".join(files[r] for r in ("train", "test") if r in files)))
  if not found:
    raise InputError(f"--datasets={folder}: no .arff files in this folder")
  return found


def parse_sets(spec: str) -> list[tuple[str, str, tuple[str, ...]]]:
  """(name, dataset, label_columns) per set of a --datasets value. A set named on its
  own replaces the set of that name found in a folder (e.g. a folder, and its CAL500
  again with @last:174, which its file cannot say)."""
  found, named = {}, {}
  for item in filter(None, (part.strip() for part in spec.split(SET_SEPARATOR))):
    dataset, _, labels = item.partition(LABELS_MARK)
    label_columns = tuple(filter(None, labels.split(","))) if labels else ()
    if os.path.isdir(os.path.expanduser(dataset)):
      for name, in_folder in sets_in_folder(os.path.expanduser(dataset)):
        _add(found, name, (in_folder, label_columns))
    elif read_kind(dataset):
      _add(named, _stem(dataset.partition(":")[2].split(",")[0]), (dataset, label_columns))
    else:
      raise InputError(f"--datasets: {dataset!r} is neither a folder nor read data "
                       "(arff:TRAIN.arff,TEST.arff, arff:FILE.arff, csv:FILE.csv, ...)")
  sets = {**found, **named}
  if not sets:
    raise InputError("--datasets lists no set")
  return [(name, dataset, labels) for name, (dataset, labels) in sets.items()]


def _add(sets: dict, name: str, set_: tuple[str, tuple[str, ...]]) -> None:
  if name in sets:
    raise InputError(f"--datasets: two sets are both called {name!r}; rename one file")
  sets[name] = set_


def _set_config(base: DataConfig, dataset: str, label_columns: tuple[str, ...]) -> DataConfig:
  """Every example of the set with only its own missing labels, whatever the size flags
  say for generated data."""
  return dataclasses.replace(base, dataset=dataset, label_columns=label_columns or base.label_columns,
                             num_train=None, num_val=None, num_test=None, missing_frac=0.0,
                             label_budget=(), tasks=())


def settings_from_flags() -> Settings:
  # Tables of features, not images: the MLP unless --encoder says otherwise.
  with cli.flag_defaults({"encoder": "mlp", "metrics": list(TABLE_METRICS)}):
    settings = cli.settings(Settings, table_metrics=cli.table_metrics())
  base = settings.data
  if DATASETS.value:
    items = parse_sets(DATASETS.value)
  elif read_kind(base.dataset):
    items = [(_stem(base.dataset.partition(":")[2].split(",")[0]), base.dataset, base.label_columns)]
  else:
    items = []  # refused by `requires`, with the reason
  return dataclasses.replace(settings, sets=tuple((name, _set_config(base, dataset, labels))
                                                  for name, dataset, labels in items),
                             train=dataclasses.replace(settings.train, steps=cli.train_steps(read_data=True)))


def needs_sets(s: Settings) -> str | None:
  return None if s.sets else ("needs real multi-label data: --datasets=FOLDER or "
                              "--datasets='arff:A-train.arff,A-test.arff;...' (or a read --dataset)")


def images_for_cnn(s: Settings) -> str | None:
  """needs_images_for_cnn, of every set rather than of --dataset."""
  return next((why for _, data in s.sets
               if (why := experiment.needs_images_for_cnn()(dataclasses.replace(s, data=data)))), None)


def grid(settings: Settings) -> Grid:
  groups = {}
  for name, data in settings.sets:
    check_data_config(data)
    for arm in ARMS:
      groups[name, arm] = settings.seed_configs(NAME, arm, data)
  return Grid(groups, f"{NAME}: joint vs separate {settings.encoder.kind} networks on "
                      f"{len(settings.sets)} sets ({', '.join(n for n, _ in settings.sets)}), "
                      f"{experiment.runs_per_arm(settings)}")


def summarize(settings: Settings, groups: Groups, done: dict[str, dict]) -> Summary:
  rows = []
  for name, _ in settings.sets:
    records_by_arm = {arm: records_of(groups[name, arm], done) for arm in ARMS}
    rows += summarize_arms(records_by_arm, records_by_arm["joint"][0]["task_names"], keys={"dataset": name})
  encoder = settings.encoder
  splits = "resampled splits" if settings.resampled else "standard splits"
  sets = f"{len(settings.sets)} multi-label set{'s' * (len(settings.sets) != 1)}"
  return Summary(rows, f"{sets}, {splits}: {encoder.kind} width "
                       f"{encoder.width} depth {encoder.depth}, 95% CI over {rows[0]['interval']}")


def _cells(rows: list[dict], split: str) -> dict:
  return {(r["dataset"], r["metric"], r["arm"]): r for r in rows
          if r["split"] == split and r["task"] == "mean"}


def format_table(settings: Settings, rows: list[dict], split: str = "test") -> str:
  cell = _cells(rows, split)
  metrics = [m for m in settings.table_metrics if any(k[1] == m for k in cell)]
  header = f"{'set':<12} {'arm':<14}" + "".join(
      f" {m + (' (lower better)' if m in LOWER_IS_BETTER else ''):>22}" for m in metrics)
  lines = [header, "-" * len(header)]
  for name, _ in settings.sets:
    for arm in (*ARMS, DIFF_ARM):
      values = [cell.get((name, m, arm)) for m in metrics]
      lines.append(f"{name:<12} {arm:<14}" + "".join(
          f" {format_cell(v) if v else '-':>22}" for v in values))
  return "\n".join(lines)


def table(settings: Settings, rows: list[dict]) -> str:
  paired = "split and seed" if settings.resampled else "seed"
  return (f"\nTest metrics (example- and label-based, over each set's labelled cells), mean ± 95% CI "
          f"over {rows[0]['interval']}; {DIFF_ARM} is paired by {paired}:\n" + format_table(settings, rows))


def draw(rows: list[dict], out_path: str, title: str, split: str = "test") -> None:
  """Per headline metric: above, joint and separate per set (95% CI over seeds);
  below, their difference paired by seed, green where joint is better."""
  cell = _cells(rows, split)
  sets = list(dict.fromkeys(r["dataset"] for r in rows))
  metrics = [m for m in TABLE_METRICS if any(k[1] == m for k in cell)]
  fig, axes = plots.subplots(2, len(metrics), figsize=(3.6 * len(metrics), 6.4), squeeze=False)
  for column, metric in enumerate(metrics):
    lower_better = metric in LOWER_IS_BETTER
    values, differences = axes[0][column], axes[1][column]
    bars = {arm: ([cell[s, metric, arm]["mean"] for s in sets], [cell[s, metric, arm]["ci95"] for s in sets])
            for arm in ARMS}
    plots.bars_with_ci(values, sets, bars, plots.ARM_COLORS)
    if lower_better:  # a loss near 0 would be a flat line on the [0, 1] axis of the others
      values.set_ylim(0, 1.15 * max(m + c for means, cis in bars.values() for m, c in zip(means, cis)))
    values.set_ylabel(f"{split} {plots.metric_label(metric)}" + (" (lower better)" if lower_better else ""))
    diff = [cell[s, metric, DIFF_ARM] for s in sets]
    means = [d["mean"] for d in diff]
    better = [(m < 0) if lower_better else (m > 0) for m in means]
    differences.bar(range(len(sets)), means, yerr=[d["ci95"] for d in diff], capsize=3,
                    color=["#2ca02c" if b else "#d62728" for b in better])
    differences.axhline(0, color="black", linewidth=0.8)
    differences.set_xticks(range(len(sets)), sets, rotation=30, ha="right")
    differences.set_ylabel("joint − separate, paired")
    for ax in (values, differences):
      ax.grid(axis="y", alpha=0.3)
  handles, labels = axes[0][0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="upper right", ncols=len(labels), frameon=False)
  plots.finish(fig, title, out_path)


EXPERIMENT = Experiment(
    name=NAME, summary="joint against separate networks on real multi-label benchmark sets",
    settings_from_flags=settings_from_flags, grid=grid, summarize=summarize, table=table, draw=draw,
    presets={"quick": dict(seeds=5), "full": dict(seeds=10)},
    requires=(needs_sets, images_for_cnn), resamples=True)

if __name__ == "__main__":
  cli.run(EXPERIMENT.main)
