"""The loss landscape of one digit over candidate rotations, and its local minima (chapter 2).

:func:`local_minima` finds the valleys of a sampled curve (on a circle, by default);
:func:`plot_landscape` draws one curve with its minima, the exact undo and the search's answer;
:func:`landscape_figure` puts several digits over their landscapes. Angles are radians in
code and degrees on the axes.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .plotting import FONT, imshow, to_images

__all__ = ["local_minima", "plot_landscape", "landscape_figure"]


def local_minima(losses, circular: bool = True, prominence: float = 0.0) -> np.ndarray:
    """Indices of the local minima of a sampled curve ``losses (K,)``, lowest first.

    ``circular``: the curve wraps around (angles over a full turn). A minimum is kept when the
    curve rises by more than ``prominence`` on both sides before it reaches a lower value (a
    plateau counts once, at its first sample).
    """
    v = np.asarray(losses.detach().cpu() if isinstance(losses, torch.Tensor) else losses, dtype=float).ravel()
    k = len(v)
    if k < 3:
        raise ValueError(f"losses: expected at least 3 samples, got {k}")
    found = []
    for i in range(k):
        if not circular and i in (0, k - 1):
            continue
        if v[i - 1] <= v[i] or v[i] > v[(i + 1) % k]:
            continue
        if all(_rise(v, i, step, circular) > prominence for step in (-1, 1)):
            found.append(i)
    return np.array(sorted(found, key=lambda i: v[i]), dtype=int)


def _rise(v: np.ndarray, i: int, step: int, circular: bool) -> float:
    """How far the curve climbs from ``v[i]`` walking by ``step`` before it drops below ``v[i]``."""
    k, top, j = len(v), v[i], i
    for _ in range(k - 1):
        j += step
        if not circular and not 0 <= j < k:
            break
        if v[j % k] < v[i]:
            break
        top = max(top, v[j % k])
    return top - v[i]


def plot_landscape(
    angles,
    losses,
    minima=None,
    ax: plt.Axes | None = None,
    exact=None,
    found=None,
    label: str | None = None,
) -> plt.Axes:
    """The loss as a function of the candidate rotation (``angles`` radians, shown in degrees on [0, 360)).

    ``minima``: indices into ``angles`` to mark (e.g. from :func:`local_minima`; the lowest is
    drawn as a star); ``exact``: the rotation (radians) that exactly undoes a known
    perturbation, drawn as a dashed line; ``found``: the rotation a search returned, a dotted
    line. Returns the Axes.
    """
    a = np.asarray(angles.detach().cpu() if isinstance(angles, torch.Tensor) else angles, dtype=float).ravel()
    v = np.asarray(losses.detach().cpu() if isinstance(losses, torch.Tensor) else losses, dtype=float).ravel()
    if a.shape != v.shape:
        raise ValueError(f"angles and losses: expected the same length, got {a.shape} and {v.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.0, 2.8))
    deg = np.degrees(a) % 360.0
    order = np.argsort(deg)
    ax.plot(deg[order], v[order], color="0.2", linewidth=1.2, label=label)
    if exact is not None:
        ax.axvline(math.degrees(float(exact)) % 360.0, color="tab:green", linestyle="--", linewidth=1, label="exact undo")
    if found is not None:
        ax.axvline(math.degrees(float(found)) % 360.0, color="tab:blue", linestyle=":", linewidth=1.5, label="search")
    if minima is not None and len(minima):
        idx = np.asarray(minima, dtype=int)
        best = idx[np.argmin(v[idx])]
        ax.scatter(deg[idx], v[idx], color="tab:red", s=18, zorder=3, label="local minima")
        ax.scatter([deg[best]], [v[best]], color="tab:red", marker="*", s=110, zorder=4)
    ax.set_xlim(0, 360)
    ax.set_xticks(np.arange(0, 361, 90))
    ax.set_xlabel("candidate rotation (degrees)")
    ax.set_ylabel("loss (nats)")
    ax.grid(alpha=0.3)
    return ax


def landscape_figure(
    images,
    angles,
    losses,
    titles: Sequence[str] | None = None,
    exact=None,
    found=None,
    prominence: float = 1.0,
    size: float = 2.4,
    ncols: int = 3,
) -> plt.Figure:
    """Several digits over their loss landscapes: images ``(K, H, W)`` above ``losses (K, A)``.

    ``ncols`` digits per row (each a small image over its landscape), as many rows as needed.
    ``angles (A,)`` radians are the candidate rotations; ``exact`` and ``found`` ``(K,)``
    radians are drawn as in :func:`plot_landscape`; local minima deeper than ``prominence``
    nats are marked. Returns the Figure.
    """
    imgs = to_images(images)
    v = np.asarray(losses.detach().cpu() if isinstance(losses, torch.Tensor) else losses, dtype=float)
    if v.ndim != 2 or len(v) != len(imgs):
        raise ValueError(f"losses: expected shape ({len(imgs)}, A), one row per image, got {v.shape}")
    k = len(imgs)
    cols = min(ncols, k)
    nrows = math.ceil(k / cols)
    fig, axes = plt.subplots(2 * nrows, cols, figsize=(size * cols + 0.4, size * 1.6 * nrows), squeeze=False,
                             gridspec_kw={"height_ratios": [0.75, 1.25] * nrows})  # fmt: skip
    for i in range(k):
        top, bottom = axes[2 * (i // cols), i % cols], axes[2 * (i // cols) + 1, i % cols]
        imshow(top, imgs[i], None if titles is None else titles[i])
        plot_landscape(angles, v[i], local_minima(v[i], prominence=prominence), ax=bottom,
                       exact=None if exact is None else exact[i], found=None if found is None else found[i])  # fmt: skip
        if i % cols:
            bottom.set_ylabel("")
        if i // cols < nrows - 1 and i + cols < k:
            bottom.set_xlabel("")
    for j in range(k, nrows * cols):
        axes[2 * (j // cols), j % cols].axis("off")
        axes[2 * (j // cols) + 1, j % cols].axis("off")
    if k < nrows * cols:  # the legend in the first free cell, else in the first panel
        handles, labels = axes[1, 0].get_legend_handles_labels()
        axes[-1, -1].legend(handles, labels, fontsize=FONT, loc="center")
    else:
        axes[1, 0].legend(fontsize=FONT)
    fig.tight_layout()
    return fig
