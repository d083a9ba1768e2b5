"""Figures drawn from result files only; nothing here trains or holds live models."""
import csv
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ARM_COLORS = {"joint": "#1f77b4", "separate": "#ff7f0e"}
METRIC_LABELS = {"accuracy": "accuracy", "auc": "ROC-AUC", "ap": "average precision"}


def _finish(fig, title: str, out_path: str, top: float = 0.97) -> None:
  # About 13 characters of the 10-point title per inch of figure.
  fig.suptitle(textwrap.fill(title, int(13 * fig.get_figwidth())), fontsize=10, x=0.02, ha="left")
  fig.tight_layout(rect=(0, 0, 1, top))
  fig.savefig(out_path, dpi=120)
  plt.close(fig)


def _line_with_band(ax, x, means, cis, **style):
  """A mean line with its 95% CI as a shaded band; returns the line."""
  line, = ax.plot(x, means, "o-", **style)
  cis = np.nan_to_num(cis)
  ax.fill_between(x, means - cis, means + cis, color=line.get_color(), alpha=0.2, linewidth=0)
  return line


def _log_x_at_points(ax, x) -> None:
  """A log x axis labelled with the plotted values as plain numbers."""
  ax.set_xscale("log")
  ax.set_xticks(x, [f"{v:g}" for v in x])
  ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def read_summary(path: str) -> list[dict]:
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def _value(row: dict, key: str) -> float:
  return float(row[key]) if row[key] not in ("", "nan") else np.nan


def plot_joint_vs_separate(summary_path: str, out_path: str, title: str, split: str = "test") -> None:
  """Per-task bars for joint vs separate networks, one panel per metric, with the 95%
  CI over seeds as error bars."""
  rows = [r for r in read_summary(summary_path) if r["split"] == split]
  metric_names = list(dict.fromkeys(r["metric"] for r in rows))
  tasks = list(dict.fromkeys(r["task"] for r in rows))
  fig, axes = plt.subplots(1, len(metric_names), figsize=(4.2 * len(metric_names), 3.8),
                           squeeze=False)
  for ax, metric in zip(axes[0], metric_names):
    lows = []
    for k, arm in enumerate(ARM_COLORS):
      cells = {r["task"]: r for r in rows if r["metric"] == metric and r["arm"] == arm}
      means = np.array([_value(cells[t], "mean") for t in tasks])
      cis = np.nan_to_num(np.array([_value(cells[t], "ci95") for t in tasks]))
      positions = np.arange(len(tasks)) + (k - 0.5) * 0.38
      ax.bar(positions, means, 0.38, yerr=cis, capsize=3, color=ARM_COLORS[arm], label=arm)
      lows.extend((means - cis)[np.isfinite(means)])
    # Bars start near the data, not at 0: the differences of interest are small.
    ax.set_ylim(max(0.0, min(lows, default=0.05) - 0.05), 1.0)
    ax.set_xticks(np.arange(len(tasks)), [t.replace("_", " ") for t in tasks], rotation=30, ha="right")
    ax.set_ylabel(f"{split} {METRIC_LABELS.get(metric, metric)}")
    ax.grid(axis="y", alpha=0.3)
  handles, labels = axes[0][0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="upper right", ncols=len(labels), frameon=False)
  _finish(fig, title, out_path)


def plot_network_size(summary_path: str, out_path: str, title: str, metric: str = "auc",
                      split: str = "test") -> None:
  """Mean-over-tasks metric against encoder width and against parameter count, one row
  per encoder, joint vs separate, with 95% CI bands over seeds."""
  rows = [r for r in read_summary(summary_path)
          if r["split"] == split and r["metric"] == metric and r["task"] == "mean"]
  encoders = list(dict.fromkeys(r["encoder"] for r in rows))
  fig, axes = plt.subplots(len(encoders), 2, figsize=(10, 3.6 * len(encoders)), squeeze=False)
  for row_axes, encoder in zip(axes, encoders):
    for arm, color in ARM_COLORS.items():
      points = sorted((int(r["width"]), int(r[f"params_{arm}"]), _value(r, "mean"), _value(r, "ci95"))
                      for r in rows if r["encoder"] == encoder and r["arm"] == arm)
      widths, params, means, cis = (np.array(c, float) for c in zip(*points))
      for ax, x in zip(row_axes, (widths, params)):
        _line_with_band(ax, x, means, cis, color=color, label=arm)
    for ax, xlabel in zip(row_axes, ("encoder width (units or channels)", "parameters (all tasks)")):
      ax.set_xscale("log", base=2 if xlabel.startswith("encoder") else 10)
      ax.set_xlabel(f"{encoder}: {xlabel}")
      ax.set_ylabel(f"{split} {METRIC_LABELS.get(metric, metric)}, mean over tasks")
      ax.grid(alpha=0.3)
  axes[0][0].legend(loc="lower right")
  _finish(fig, title, out_path)


def plot_missing_labels(summary_path: str, out_path: str, title: str, metric: str = "auc",
                        split: str = "test") -> None:
  """Mean-over-tasks metric against the fraction of missing labels, one line per way of
  handling them (95% CI bands), beside the training labels each way keeps."""
  rows = [r for r in read_summary(summary_path)
          if r["split"] == split and r["metric"] == metric and r["task"] == "mean"]
  fig, (ax_metric, ax_labels) = plt.subplots(1, 2, figsize=(10, 3.8))
  for handling in dict.fromkeys(r["label_handling"] for r in rows):
    points = sorted((float(r["missing_frac"]), _value(r, "mean"), _value(r, "ci95"),
                     float(r["train_labels"]))
                    for r in rows if r["label_handling"] == handling)
    fracs, means, cis, labels = (np.array(c, float) for c in zip(*points))
    line = _line_with_band(ax_metric, fracs, means, cis, label=handling.replace("_", " "))
    ax_labels.plot(fracs, np.maximum(labels, 1), "o-", color=line.get_color())
  ax_metric.set_ylabel(f"{split} {METRIC_LABELS.get(metric, metric)}, mean over tasks")
  ax_labels.set_ylabel("training labels used (0 plotted at 1)")
  ax_labels.set_yscale("log")
  for ax in (ax_metric, ax_labels):
    ax.set_xlabel("fraction of training labels missing")
    ax.grid(alpha=0.3)
  ax_metric.legend(loc="lower left")
  _finish(fig, title, out_path, top=0.95)


def _points(rows: list[dict], x_key: str, **where) -> tuple[np.ndarray, ...]:
  """Sorted (x, mean, ci95) arrays of the rows matching `where`."""
  points = sorted((float(r[x_key]), _value(r, "mean"), _value(r, "ci95")) for r in rows
                  if all(r[k] == str(v) for k, v in where.items()))
  return tuple(np.array(c, float) for c in zip(*points)) if points else (np.array([]),) * 3


def _reference_band(ax, mean: float, ci: float, label: str, color: str = "#7f7f7f") -> None:
  ax.axhline(mean, color=color, linestyle="--", label=label)
  ax.axhspan(mean - np.nan_to_num(ci), mean + np.nan_to_num(ci), color=color, alpha=0.15, linewidth=0)


def plot_data_amount(summary_path: str, out_path: str, title: str, metric: str = "auc",
                     split: str = "test") -> None:
  """The target task's metric against the number k of auxiliary tasks trained beside it
  (the target-only network, k = 0, as a reference band), and against the target's own
  label count, alone and with the most auxiliary tasks."""
  rows = [r for r in read_summary(summary_path) if r["split"] == split and r["metric"] == metric]
  target = rows[0]["target_task"]
  fig, (ax_k, ax_n) = plt.subplots(1, 2, figsize=(10, 3.8))
  k_rows = [r for r in rows if r["sweep"] == "num_aux"]
  budget = k_rows[0]["target_budget"]
  ks, means, cis = _points(k_rows, "num_aux", arm="joint")
  if ks.size:
    _line_with_band(ax_k, ks, means, cis, color=ARM_COLORS["joint"], label="joint: target + k tasks")
  alone = [r for r in k_rows if r["arm"] == "target_only"]
  if alone:
    _reference_band(ax_k, _value(alone[0], "mean"), _value(alone[0], "ci95"), "target only (k = 0)")
  ax_k.set_xscale("symlog", linthresh=1)
  ax_k.set_xticks(ks, [f"{k:g}" for k in ks])
  ax_k.set_xlabel(f"auxiliary tasks k (target keeps {budget} labels)")
  n_rows = [r for r in rows if r["sweep"] == "target_budget"]
  k_max = max(int(r["num_aux"]) for r in n_rows)
  for arm, k, label in (("target_only", 0, "target only"), ("joint", k_max, f"joint, k = {k_max}")):
    x, means, cis = _points(n_rows, "target_budget", arm=arm, num_aux=k)
    if x.size:
      _line_with_band(ax_n, x, means, cis, color=ARM_COLORS["separate" if k == 0 else "joint"],
                      label=label)
  _log_x_at_points(ax_n, sorted({float(r["target_budget"]) for r in n_rows}))
  ax_n.set_xlabel(f"training labels of {target}")
  for ax in (ax_k, ax_n):
    ax.set_ylabel(f"{target}: {split} {METRIC_LABELS.get(metric, metric)}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
  _finish(fig, title, out_path, top=0.95)


def plot_relatedness(summary_path: str, out_path: str, title: str, metric: str = "auc",
                     split: str = "test") -> None:
  """Joint and separate networks against the relatedness rho, and their paired
  difference, with 95% CI bands; below zero is negative transfer."""
  rows = [r for r in read_summary(summary_path)
          if r["split"] == split and r["metric"] == metric and r["task"] == "mean"]
  fig, (ax_arms, ax_diff) = plt.subplots(1, 2, figsize=(10, 3.8))
  for arm, color in ARM_COLORS.items():
    _line_with_band(ax_arms, *_points(rows, "rho", arm=arm), color=color, label=arm)
  _line_with_band(ax_diff, *_points(rows, "rho", arm="joint_minus_separate"), color="#2ca02c",
                  label="joint − separate")
  ax_diff.axhline(0.0, color="black", linewidth=0.8)
  ax_arms.set_ylabel(f"{split} {METRIC_LABELS.get(metric, metric)}, mean over tasks")
  ax_diff.set_ylabel(f"joint − separate {METRIC_LABELS.get(metric, metric)} (paired by seed)")
  for ax in (ax_arms, ax_diff):
    ax.set_xlabel("relatedness rho (share of logit variance from shared features)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
  _finish(fig, title, out_path, top=0.95)


APPROACH_STYLES = {"b_only": dict(color="#ff7f0e", label="B only"),
                   "transfer_frozen": dict(color="#9467bd", label="transfer, frozen encoder"),
                   "transfer_finetune": dict(color="#2ca02c", label="transfer, fine-tuned"),
                   "joint": dict(color="#1f77b4", label="joint MTL on A + B")}


def plot_transfer_vs_mtl(summary_path: str, out_path: str, title: str, metric: str = "auc",
                         split: str = "test") -> None:
  """Task B's metric against its label count, one line per way of learning it."""
  rows = [r for r in read_summary(summary_path) if r["split"] == split and r["metric"] == metric]
  a, b = rows[0]["task_a"], rows[0]["task_b"]
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  for approach in dict.fromkeys(r["arm"] for r in rows):
    _line_with_band(ax, *_points(rows, "b_budget", arm=approach),
                    **APPROACH_STYLES.get(approach, dict(label=approach)))
  _log_x_at_points(ax, sorted({float(r["b_budget"]) for r in rows}))
  ax.set_xlabel(f"training labels of B = {b} (A = {a} has all of its labels)")
  ax.set_ylabel(f"{b}: {split} {METRIC_LABELS.get(metric, metric)}")
  ax.grid(alpha=0.3)
  ax.legend(loc="lower right")
  _finish(fig, title, out_path, top=0.9)
