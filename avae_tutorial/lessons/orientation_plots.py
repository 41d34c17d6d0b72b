"""Figures of encoded orientations on the circle (chapter 5): histograms per epoch and per class,
and the resultant lengths by epoch.

Angles are radians in code and degrees on the axes. A histogram on a line must cut the circle
somewhere: :func:`circular_cut` cuts it where the angles are sparsest, so that no peak is drawn
at both edges; tick labels are angles in [-180, 180). The statistics come from
:mod:`avae_tutorial.lessons.histograms`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .plotting import FONT

__all__ = ["circular_cut", "plot_orientation_histograms", "plot_class_orientations", "plot_resultant_by_epoch",
           "CLASS_COLORS", "CLASS_MARKERS"]  # fmt: skip


def _degrees(angle) -> np.ndarray:
    a = angle.detach().float().cpu().numpy() if isinstance(angle, torch.Tensor) else np.asarray(angle, dtype=float)
    return (np.degrees(a) + 180.0) % 360.0 - 180.0  # [-180, 180)


def circular_cut(deg) -> float:
    """Where to cut the circle to draw angles ``deg`` (degrees) on a line: the multiple of 5 degrees
    where their smoothed density (:func:`~avae_tutorial.lessons.histograms.circular_density`) is lowest,
    so that no peak is split between the two edges of a histogram."""
    from .histograms import circular_density

    d = np.asarray(deg, dtype=float).ravel()
    if d.size == 0:
        return -180.0
    grid, density = circular_density(torch.from_numpy(np.radians(d)), bins=72)
    return math.degrees(float(grid[int(density.argmin())]))


def _on_window(deg: np.ndarray, cut: float) -> np.ndarray:
    """Angles (degrees) moved into the window ``[cut, cut + 360)``."""
    return (deg - cut) % 360.0 + cut


def _circle_ticks(ax, cut: float) -> None:
    """Ticks every 90 degrees across ``[cut, cut + 360]``, labelled as angles in [-180, 180)."""
    ticks = np.arange(90 * math.ceil(cut / 90), cut + 360.01, 90)
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{(t + 180) % 360 - 180:.0f}" for t in ticks])
    ax.set_xlim(cut, cut + 360)


def plot_orientation_histograms(
    orientation,
    labels,
    digits: Sequence[int],
    epochs: Sequence[int],
    bins: int = 36,
    size: tuple[float, float] = (3.5, 2.4),
    first_epoch: int = 1,
    ncols: int = 2,
) -> plt.Figure:
    """Histograms of the encoded orientation (degrees) of the chosen ``digits``, one panel per epoch.

    ``orientation (E, N)`` radians as in an aligned training history, ``labels (N,)``; row ``e``
    of ``orientation`` is epoch ``first_epoch + e`` (1 for a history; 0 when the epoch-0 angles
    are prepended), and ``epochs`` are named that way. Several digits are overlaid in one panel
    (e.g. ``[6, 9]``), ``ncols`` panels per row. The circle is cut where the shown digits' angles
    at the last shown epoch are sparsest (:func:`circular_cut`), the same for every panel, so
    that no peak is drawn at both edges; tick labels are angles in [-180, 180). Returns the Figure.
    """
    o, y = _degrees(orientation), np.asarray(labels)
    if o.ndim != 2 or o.shape[1] != len(y):
        raise ValueError(f"orientation: expected shape (epochs, {len(y)}), got {o.shape}")
    last = first_epoch + o.shape[0] - 1
    bad = [e for e in epochs if not first_epoch <= e <= last]
    if bad:
        raise ValueError(f"epochs {bad} outside {first_epoch}..{last}")
    shown = np.isin(y, list(digits))
    cut = circular_cut(o[max(epochs) - first_epoch][shown])
    edges = np.linspace(cut, cut + 360, bins + 1)
    cols = min(ncols, len(epochs))
    nrows = math.ceil(len(epochs) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(size[0] * cols, size[1] * nrows), sharey=True, squeeze=False)
    for ax, e in zip(axes.flat, epochs):
        for d in digits:
            ax.hist(_on_window(o[e - first_epoch][y == d], cut), bins=edges, density=True, histtype="stepfilled",
                    alpha=0.45, edgecolor=f"C{d}", color=f"C{d}", label=f'"{d}"')  # fmt: skip
        ax.set_title(f"epoch {e}", fontsize=FONT + 1)
        _circle_ticks(ax, cut)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(epochs) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("encoded orientation (degrees)", fontsize=FONT)
    for ax in axes[:, 0]:
        ax.set_ylabel("density (per degree)", fontsize=FONT)
    axes[0, 0].legend(fontsize=FONT)
    fig.tight_layout()
    return fig


def plot_class_orientations(
    orientation,
    labels,
    modes_deg: Mapping[int, Sequence[float]] | None = None,
    bins: int = 36,
    ncols: int = 4,
) -> plt.Figure:
    """A grid of orientation histograms (degrees), one panel per class, for one epoch ``orientation (N,)``.

    Each panel cuts the circle where its class is sparsest (:func:`circular_cut`), so a peak is
    drawn whole, and says so under the panels; tick labels are angles in [-180, 180); the panels
    share one density scale. ``modes_deg`` (class -> angles in
    degrees, e.g. from :func:`avae_tutorial.lessons.histograms.find_modes`) are drawn as dashed lines.
    Returns the Figure.
    """
    o, y = _degrees(orientation).ravel(), np.asarray(labels).ravel()
    if o.shape != y.shape:
        raise ValueError(f"orientation and labels: expected the same length, got {o.shape} and {y.shape}")
    classes = sorted(int(c) for c in np.unique(y))
    nrows = math.ceil(len(classes) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.8 * ncols, 1.75 * nrows + 0.5), sharey=True, squeeze=False)
    for ax, c in zip(axes.flat, classes):
        cut = circular_cut(o[y == c])
        ax.hist(_on_window(o[y == c], cut), bins=np.linspace(cut, cut + 360, bins + 1), density=True,
                color=f"C{c % 10}", alpha=0.8)  # fmt: skip
        for m in (modes_deg or {}).get(c, []):
            ax.axvline(_on_window(np.asarray(m, dtype=float), cut), color="k", linestyle="--", linewidth=0.8)
        ax.set_title(f'"{c}"', fontsize=FONT + 1)
        _circle_ticks(ax, cut)
        ax.tick_params(labelsize=FONT)
    for ax in axes.flat[len(classes) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("density (per degree)", fontsize=FONT)
    fig.supxlabel("encoded orientation (degrees); each panel cuts the circle where its class is sparsest",
                  fontsize=FONT)
    fig.tight_layout()
    return fig


#: Ten colours and markers that stay apart in print and for common colour-vision deficiencies
#: (Okabe-Ito's, its pale yellow swapped for a wine red, plus a grey and a purple), one per class.
CLASS_COLORS = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#882255",
                "#0072B2", "#D55E00", "#CC79A7", "#999999", "#6A3D9A")  # fmt: skip
CLASS_MARKERS = "osD^v<>ph*"


def plot_resultant_by_epoch(
    rows: Sequence[dict], keys: Sequence[str] = ("R1", "R2"), noise: float | None = None
) -> plt.Figure:
    """One panel per statistic (``keys``), one line per class, against the epoch.

    ``rows`` as :func:`avae_tutorial.lessons.histograms.statistics_by_epoch` returns them; ``noise``
    (optional) draws the level that uniformly spread angles reach as a dotted line. Each class has
    its own colour and marker (:data:`CLASS_COLORS`, :data:`CLASS_MARKERS`), and the legend below
    the panels names them (labels at the lines' ends would overlap where the classes agree).
    """
    if not rows:
        raise ValueError("rows: expected rows with epoch, class and the statistics, got none")
    classes = sorted({r["class"] for r in rows})
    epochs = sorted({r["epoch"] for r in rows})
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.6), sharey=True, squeeze=False)
    for ax, key in zip(axes[0], keys):
        for c in classes:
            sel = sorted((r for r in rows if r["class"] == c), key=lambda r: r["epoch"])
            color, marker = CLASS_COLORS[c % 10], CLASS_MARKERS[c % 10]
            ax.plot([r["epoch"] for r in sel], [r[key] for r in sel], "-", marker=marker, ms=4,
                    color=color, label=f'"{c}"')  # fmt: skip
        if noise is not None:
            ax.axhline(noise, color="k", linestyle=":", linewidth=1, label="uniform")
        ax.set_title(key, fontsize=FONT + 1)
        ax.set_xlabel("epoch")
        ax.set_xticks(epochs)
        ax.set_xlim(epochs[0] - 0.3, epochs[-1] + 0.3)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("resultant length")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=FONT, loc="lower center", ncol=min(len(labels), 6), frameon=False)
    fig.tight_layout(rect=(0, 0.06 * math.ceil(len(labels) / 6) + 0.02, 1, 1))
    return fig
