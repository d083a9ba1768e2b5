"""Generic drawing helpers for experiment figures: bars and lines with 95% CIs, log
axes, reference bands and the title. They take numbers (summary rows, as dicts of
real values), never files, and know no experiment: each experiment module draws its
own figure with them."""
import textwrap
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ARM_COLORS = {"joint": "#1f77b4", "separate": "#ff7f0e"}
METRIC_LABELS = {"accuracy": "accuracy", "auc": "ROC-AUC", "ap": "average precision"}


def metric_label(metric: str) -> str:
  return METRIC_LABELS.get(metric, metric)


def subplots(*args, **kwargs):
  """plt.subplots on the file-only backend chosen above."""
  return plt.subplots(*args, **kwargs)


def select(rows: Sequence[dict], **where) -> list[dict]:
  """The rows whose keys have the given values."""
  return [r for r in rows if all(r[k] == v for k, v in where.items())]


def series(rows: Sequence[dict], x_key: str, **where) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(x, mean, ci95) arrays of the rows matching `where`, sorted by x."""
  points = sorted((r[x_key], r["mean"], r["ci95"]) for r in select(rows, **where))
  return tuple(np.array(c, float) for c in zip(*points)) if points else (np.array([]),) * 3


def finish(fig, title: str, out_path: str, top: float = 0.97) -> None:
  """Wraps the title to the figure's width, lays out below it, saves and closes."""
  # About 13 characters of the 10-point title per inch of figure.
  fig.suptitle(textwrap.fill(title, int(13 * fig.get_figwidth())), fontsize=10, x=0.02, ha="left")
  fig.tight_layout(rect=(0, 0, 1, top))
  fig.savefig(out_path, dpi=120)
  plt.close(fig)


def bars_with_ci(ax, categories: Sequence[str], bars: dict[str, tuple[np.ndarray, np.ndarray]],
                 colors: dict[str, str], top: float = 1.0) -> None:
  """A group of bars per category, one bar per entry of `bars` (label -> means, 95% CI
  half-widths, one per category) with its CI as error bars."""
  width = 0.76 / len(bars)
  lows = []
  for k, (label, (means, cis)) in enumerate(bars.items()):
    means, cis = np.asarray(means, float), np.nan_to_num(np.asarray(cis, float))
    positions = np.arange(len(categories)) + (k - (len(bars) - 1) / 2) * width
    ax.bar(positions, means, width, yerr=cis, capsize=3, color=colors.get(label), label=label)
    lows.extend((means - cis)[np.isfinite(means)])
  # Bars start near the data, not at 0: the differences of interest are small.
  ax.set_ylim(max(0.0, min(lows, default=0.05) - 0.05), top)
  ax.set_xticks(np.arange(len(categories)), [c.replace("_", " ") for c in categories],
                rotation=30, ha="right")


def task_colors(count: int) -> list:
  """`count` distinguishable colours, one per task (or method)."""
  cmap = matplotlib.colormaps["tab10" if count <= 10 else "turbo"]
  return [cmap(i if count <= 10 else i / max(count - 1, 1)) for i in range(count)]


def line_with_band(ax, x, means, cis, **style):
  """A mean line with its 95% CI as a shaded band; returns the line."""
  line, = ax.plot(x, means, "o-", **style)
  cis = np.nan_to_num(cis)
  ax.fill_between(x, means - cis, means + cis, color=line.get_color(), alpha=0.2, linewidth=0)
  return line


def log_x_at_points(ax, x) -> None:
  """A log x axis labelled with the plotted values as plain numbers."""
  ax.set_xscale("log")
  ax.set_xticks(x, [f"{v:g}" for v in x])
  ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def reference_band(ax, mean: float, ci: float, label: str, color: str = "#7f7f7f") -> None:
  """A horizontal line at a baseline's mean with its 95% CI as a band."""
  ax.axhline(mean, color=color, linestyle="--", label=label)
  ax.axhspan(mean - np.nan_to_num(ci), mean + np.nan_to_num(ci), color=color, alpha=0.15, linewidth=0)
