"""Figures of chapter 6: recovered against applied rotation, and the error of each class.

Angles are degrees on the axes (the measures of :mod:`avae_tutorial.lessons.latent_stats` return
degrees). Sizes follow :mod:`avae_tutorial.lessons.plotting` (``FONT``, ``MAX_WIDTH_IN``); each
function returns its Figure.
"""
from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np

from .plotting import FONT, MAX_WIDTH_IN

__all__ = ["plot_recovered_vs_applied", "plot_error_by_class"]


def _panels(n: int, height: float):
    width = min(MAX_WIDTH_IN - 0.4, 2.4 * n)
    fig, axes = plt.subplots(1, n, figsize=(width, height), squeeze=False, sharey=True)
    return fig, axes[0]


def plot_recovered_vs_applied(series: Mapping[str, tuple], ticks=(-180, -90, 0, 90, 180)) -> plt.Figure:
    """One panel per ``name -> (applied_deg, recovered_deg)``: each digit a dot, the diagonal
    (recovered = applied) and the lines half a turn away from it (a digit read upside down) dashed."""
    fig, axes = _panels(len(series), 2.9)
    line = np.array([-180.0, 180.0])
    for ax, (name, (applied, recovered)) in zip(axes, series.items()):
        ax.plot(applied, recovered, ".", ms=2.5, alpha=0.5, color="C0")
        ax.plot(line, line, color="0.3", lw=0.8)
        for off in (-360, 360):  # a half turn off, drawn where it falls inside the square
            ax.plot(line, line + off / 2, color="0.3", lw=0.8, ls="--")
        ax.set(xlim=(-180, 180), ylim=(-180, 180), xticks=ticks, yticks=ticks, aspect="equal")
        ax.set_title(name, fontsize=FONT)
        ax.set_xlabel("applied turn (degrees)", fontsize=FONT)
        ax.tick_params(labelsize=FONT)
    axes[0].set_ylabel("recovered turn (degrees)", fontsize=FONT)
    fig.tight_layout()
    return fig


def plot_error_by_class(series: Mapping[str, np.ndarray], labels, bin_deg: float = 15.0) -> plt.Figure:
    """One panel per ``name -> error_deg (N,)``: for each class (a row) the share of its digits in
    each bin of the error (recovered minus applied turn, degrees in ``[-180, 180)``)."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    edges = np.arange(-180.0, 180.0 + bin_deg, bin_deg)
    fig, axes = _panels(len(series), 3.0)
    image = None
    for ax, (name, err) in zip(axes, series.items()):
        err = (np.asarray(err, dtype=np.float64) + 180.0) % 360.0 - 180.0
        share = np.stack([np.histogram(err[labels == c], edges)[0] / max(1, (labels == c).sum()) for c in classes])
        image = ax.imshow(share, aspect="auto", cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest",
                          extent=(edges[0], edges[-1], len(classes) - 0.5, -0.5))  # fmt: skip
        ax.set_xticks([-180, -90, 0, 90, 180])
        ax.set_yticks(range(len(classes)), [str(c) for c in classes])
        ax.set_title(name, fontsize=FONT)
        ax.set_xlabel("error (degrees)", fontsize=FONT)
        ax.tick_params(labelsize=FONT)
    axes[0].set_ylabel("class", fontsize=FONT)
    fig.tight_layout()
    bar = fig.colorbar(image, ax=list(axes), fraction=0.04, pad=0.02)
    bar.set_label("share of the class", fontsize=FONT)
    bar.ax.tick_params(labelsize=FONT)
    return fig
