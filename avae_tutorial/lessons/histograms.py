"""Circular statistics of encoded orientations (chapter 5).

Convention
----------
Angles are radians (any range; they are read modulo ``2 pi``). A sample of angles
``theta_1..theta_n`` is summarized through its trigonometric moments

``m_k = (1/n) sum_j exp(i k theta_j)``,  ``R_k = |m_k|``,  ``mean_k = arg(m_k) / k``.

* ``k = 1``: ``R_1`` in [0, 1] is the mean resultant length (1: all angles equal, near 0:
  spread evenly or balanced), ``mean_1`` the circular mean.
* ``k = 2``: the same for doubled angles; ``R_2`` is high when the sample sits on *one axis*,
  e.g. two peaks 180 degrees apart (a "1" drawn up or down), where ``R_1`` can be near 0.
  ``mean_2`` is then the axis, defined modulo ``pi``.

Modes are the peaks of a von Mises kernel density estimate on a regular grid
(Mardia & Jupp, *Directional Statistics*, 2000, ch. 3 and 12).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .._checks import check_positive_int
from ..transforms import wrap_angle

__all__ = [
    "as_angles",
    "resultant",
    "resultant_length",
    "circular_mean",
    "circular_std",
    "rayleigh_pvalue",
    "angular_difference",
    "circular_density",
    "find_modes",
    "mode_difference",
    "class_statistics",
    "perturbation_angles",
    "statistics_by_epoch",
]

Angles = torch.Tensor | Sequence[float]


def as_angles(angle: Angles, name: str = "angle") -> torch.Tensor:
    """A flat float64 tensor of radians from a tensor, array or list; rejects empty and non-finite input."""
    if isinstance(angle, torch.Tensor):
        a = angle.detach().cpu().to(torch.float64).flatten()  # (n,)
    else:  # lists and arrays straight to float64, never through float32
        a = torch.as_tensor(angle, dtype=torch.float64).flatten()
    if a.numel() == 0:
        raise ValueError(f"{name}: expected at least one angle, got an empty sample")
    if not torch.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or inf values")
    return a


def _check_harmonic(harmonic: int) -> int:
    return check_positive_int(harmonic, "harmonic")  # 1: angles, 2: doubled angles


def resultant(angle: Angles, harmonic: int = 1) -> tuple[float, float]:
    """``(R_k, mean_k)``: mean resultant length in [0, 1] and mean direction (radians, in (-pi/k, pi/k]).

    ``harmonic=k`` multiplies the angles by ``k`` first; the direction is divided by ``k`` back,
    so for ``k = 2`` it is an axis (defined modulo ``pi``).
    """
    k = _check_harmonic(harmonic)
    a = as_angles(angle) * k
    c, s = torch.cos(a).mean(), torch.sin(a).mean()
    return float(torch.hypot(c, s)), float(torch.atan2(s, c)) / k


def resultant_length(angle: Angles, harmonic: int = 1) -> float:
    """Mean resultant length ``R_k = |mean(exp(i k theta))|``: 1 if concentrated, about 0 if uniform."""
    return resultant(angle, harmonic)[0]


def circular_mean(angle: Angles, harmonic: int = 1) -> float:
    """Circular mean direction ``arg(mean(exp(i k theta))) / k`` in radians (an axis for ``k = 2``)."""
    return resultant(angle, harmonic)[1]


def circular_std(angle: Angles, harmonic: int = 1) -> float:
    """Circular standard deviation ``sqrt(-2 ln R_k) / k`` in radians (about the usual one for a narrow peak).

    0 for identical angles, infinite for a balanced sample (``R_k`` below 1e-12).
    """
    k = _check_harmonic(harmonic)
    R = resultant_length(angle, k)
    return math.inf if R < 1e-12 else math.sqrt(max(0.0, -2 * math.log(R))) / k


def rayleigh_pvalue(angle: Angles, harmonic: int = 1) -> float:
    """Rayleigh test of uniformity on the ``k``-th harmonic: ``p ~ exp(-n R_k^2)`` (large-n approximation).

    A small p-value says the sample is not uniform. Under uniformity ``E[R_k] ~ sqrt(pi / (4 n))``.
    """
    a = as_angles(angle)
    R = resultant_length(a, harmonic)
    return math.exp(-a.numel() * R * R)


def angular_difference(a: Angles, b: Angles) -> torch.Tensor:
    """Unsigned angular distance ``|wrap(a - b)|`` in [0, pi], elementwise (broadcasts)."""
    d = as_angles(a, "a") - as_angles(b, "b")
    return wrap_angle(d).abs()


def circular_density(angle: Angles, bins: int = 360, bandwidth_deg: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Smoothed circular histogram: a von Mises kernel density on a grid.

    Returns ``(grid, density)``, both ``(bins,)``: grid angles in [-pi, pi) and the density
    (per radian, integrates to 1). The kernel's concentration is ``1 / bandwidth^2``, so its
    spread is about ``bandwidth_deg`` degrees (one standard deviation).
    """
    a = as_angles(angle)  # (n,)
    check_positive_int(bins, "bins", minimum=3)
    if not bandwidth_deg > 0:
        raise ValueError(f"bandwidth_deg: expected a positive number of degrees, got {bandwidth_deg!r}")
    kappa = 1.0 / math.radians(bandwidth_deg) ** 2
    grid = torch.arange(bins, dtype=torch.float64) * (2 * math.pi / bins) - math.pi  # (bins,)
    # exp(kappa cos d) / (2 pi I0(kappa)) written with i0e = exp(-kappa) I0(kappa), stable for large kappa
    k = torch.exp(kappa * (torch.cos(grid[:, None] - a[None, :]) - 1))  # (bins, n)
    norm = 2 * math.pi * float(torch.special.i0e(torch.tensor(kappa, dtype=torch.float64)))
    return grid, k.mean(1) / norm


def find_modes(
    angle: Angles, bins: int = 360, bandwidth_deg: float = 10.0, min_height: float = 0.3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Peaks of :func:`circular_density`: ``(modes, heights)``, highest first.

    A peak is a grid point higher than its left neighbour and at least as high as its right one
    (the grid wraps around). Peaks lower than ``min_height`` times the highest are dropped, so
    sampling ripples do not count as modes.
    """
    if not 0 <= min_height <= 1:
        raise ValueError(f"min_height: expected a fraction of the highest peak in [0, 1], got {min_height!r}")
    grid, d = circular_density(angle, bins, bandwidth_deg)
    peak = (d > torch.roll(d, 1)) & (d >= torch.roll(d, -1))  # (bins,)
    keep = peak & (d >= min_height * d.max())
    order = d[keep].argsort(descending=True)
    return grid[keep][order], d[keep][order]


def mode_difference(a: Angles, b: Angles, **kw) -> float:
    """Unsigned angle (radians, in [0, pi]) between the highest modes of two samples (``kw``: :func:`find_modes`)."""
    ma, mb = find_modes(a, **kw)[0][0], find_modes(b, **kw)[0][0]
    return float(angular_difference(ma.reshape(1), mb.reshape(1))[0])


def class_statistics(angle: Angles, labels: Angles, **kw) -> list[dict]:
    """One row per class: ``n``, ``R1``, ``R2``, circular ``mean_deg``, ``axis_deg`` (mod 180) and ``modes_deg``.

    ``angle (N,)`` radians and integer ``labels (N,)``; ``kw`` goes to :func:`find_modes`.
    """
    a = as_angles(angle)
    y = torch.as_tensor(labels).detach().cpu().flatten()
    if y.shape != a.shape:
        raise ValueError(f"labels: expected one label per angle ({a.numel()}), got shape {tuple(y.shape)}")
    rows = []
    for c in torch.unique(y).tolist():
        ac = a[y == c]
        (r1, m1), (r2, m2) = resultant(ac, 1), resultant(ac, 2)
        modes, _ = find_modes(ac, **kw)
        rows.append({"class": int(c), "n": int(ac.numel()), "R1": r1, "R2": r2,
                     "mean_deg": math.degrees(m1), "axis_deg": math.degrees(m2) % 180,
                     "modes_deg": [round(math.degrees(float(m)), 1) for m in modes]})  # fmt: skip
    return rows


def perturbation_angles(n: int, seed: int = 0, epoch: int = 0) -> torch.Tensor:
    """``(n,)`` radians in [-pi, pi): the random turn of each of the first ``n`` training digits in
    epoch ``epoch`` (0-based) of an aligned or rotated :func:`~avae_tutorial.training.train.fit` run with
    ``seed``. For ``epoch=0`` this is the encoded orientation *before any learning*: the angle at
    which each digit arrives, before the first search corrects it (chapter 5's "epoch 0")."""
    from ..training.train import epoch_angles  # the training loop's own draw, not a copy of it

    return wrap_angle(epoch_angles(n, seed, epoch))


def statistics_by_epoch(orientation: torch.Tensor, labels: Angles, first_epoch: int = 1) -> list[dict]:
    """``R1`` and ``R2`` per class and epoch: one row ``{"epoch", "class", "n", "R1", "R2"}`` each.

    ``orientation (E, N)`` radians as in an aligned training history, ``labels (N,)``; row ``e``
    of ``orientation`` is epoch ``first_epoch + e`` (pass 0 when row 0 is the epoch-0 angles).
    """
    o = torch.as_tensor(orientation).detach().cpu().double()
    y = torch.as_tensor(labels).detach().cpu().flatten()
    if o.dim() != 2 or o.shape[1] != y.numel():
        raise ValueError(f"orientation: expected shape (epochs, {y.numel()}), got {tuple(o.shape)}")
    rows = []
    for e in range(o.shape[0]):
        for c in torch.unique(y).tolist():
            a = o[e][y == c]
            rows.append({"epoch": first_epoch + e, "class": int(c), "n": int(a.numel()),
                         "R1": resultant_length(a, 1), "R2": resultant_length(a, 2)})  # fmt: skip
    return rows
