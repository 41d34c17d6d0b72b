"""What the latent buys, measured (chapter 6): clustering accuracy of codes, and circular statistics
of recovered rotations, with the protocol of the amortized papers (spatial-VAE, TARGET-VAE).

* :func:`clustering_accuracy`: clusters matched one-to-one to classes so that the most images agree
  (the Hungarian method on the contingency table), the share of images that then agree.
* :func:`cluster_codes`: k-means (one run per seed: the spread over seeds is the spread over
  initializations) or Ward's agglomerative clustering (no seed: one run), scored by it.
* :func:`circular_correlation`: Jammalamadaka and SenGupta's correlation of two angles.
* :func:`recovered_rotation`: the peers' protocol. "Upright" is a convention each model picks for
  itself, so the rotation it recovers for a turned digit is the pose it found for the digit as it
  was drawn minus the pose it found for the turned one; that is compared with the turn applied.
* :func:`error_by_class`: per class, how far the recovered rotation is off, and how often by about
  a half turn (the digits that look alike upside down).

The codes themselves come from :mod:`avae_tutorial.training.codes` (the pose each model reads a
digit in, and its code there).
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["clustering_accuracy", "cluster_codes", "circular_correlation", "wrap_degrees", "recovered_rotation",
           "error_by_class", "METHODS"]  # fmt: skip

METHODS = ("kmeans", "ward")


def _array(values, name: str, ndim: int) -> np.ndarray:
    a = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if a.ndim != ndim or len(a) == 0:
        raise ValueError(f"{name}: expected a non-empty {ndim}-d array, got shape {a.shape}")
    return a


def clustering_accuracy(labels, clusters) -> float:
    """The share of images whose cluster, matched one-to-one to a class, is their class; the
    matching is the one that maximizes that share (``scipy.optimize.linear_sum_assignment`` on the
    contingency table). A clustering that only renames the classes scores 1."""
    from scipy.optimize import linear_sum_assignment

    labels, clusters = _array(labels, "labels", 1), _array(clusters, "clusters", 1)
    if len(labels) != len(clusters):
        raise ValueError(f"clusters: expected one per label ({len(labels)}), got {len(clusters)}")
    classes, y = np.unique(labels, return_inverse=True)
    found, c = np.unique(clusters, return_inverse=True)
    table = np.zeros((len(found), len(classes)), dtype=np.int64)  # (clusters, classes)
    np.add.at(table, (c, y), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / len(labels))


def cluster_codes(codes, labels, method: str = "kmeans", k: int | None = None, seeds=range(10)) -> dict:
    """Cluster ``codes (N, L)`` into ``k`` groups (default: the number of classes in ``labels``) and
    score each clustering by :func:`clustering_accuracy`: ``{"method", "k", "runs", "mean", "std"}``.

    ``"kmeans"``: one k-means per seed (k-means++ starts, one initialization each), so ``std`` is the
    spread over seeds; ``"ward"``: agglomerative clustering with Ward's linkage, which has no seed
    (one run, ``std`` 0)."""
    from sklearn.cluster import AgglomerativeClustering, KMeans

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of: {', '.join(map(repr, METHODS))}")
    codes, labels = _array(codes, "codes", 2).astype(np.float64), _array(labels, "labels", 1)
    if len(codes) != len(labels):
        raise ValueError(f"labels: expected one per code ({len(codes)}), got {len(labels)}")
    k = k or len(np.unique(labels))
    if method == "ward":
        runs = [clustering_accuracy(labels, AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(codes))]
    else:
        runs = [clustering_accuracy(labels, KMeans(k, n_init=1, random_state=int(s)).fit_predict(codes)) for s in seeds]
    return {"method": method, "k": k, "runs": runs, "mean": float(np.mean(runs)), "std": float(np.std(runs))}


def circular_correlation(a, b) -> float:
    """Jammalamadaka and SenGupta's circular correlation of angles ``a`` and ``b`` (radians, ``(N,)``):
    ``sum sin(a - a0) sin(b - b0) / sqrt(sum sin^2(a - a0) sum sin^2(b - b0))`` with ``a0``, ``b0``
    the circular means. 1 when ``b`` is ``a`` turned by a constant, -1 when it is ``-a`` so turned."""
    a, b = _array(a, "a", 1).astype(np.float64), _array(b, "b", 1).astype(np.float64)
    if len(a) != len(b):
        raise ValueError(f"b: expected as many angles as a ({len(a)}), got {len(b)}")
    sa = np.sin(a - np.arctan2(np.sin(a).sum(), np.cos(a).sum()))
    sb = np.sin(b - np.arctan2(np.sin(b).sum(), np.cos(b).sum()))
    return float((sa * sb).sum() / math.sqrt((sa**2).sum() * (sb**2).sum()))


def wrap_degrees(angle_deg):
    """Degrees wrapped to ``[-180, 180)``."""
    return (np.asarray(angle_deg, dtype=np.float64) + 180.0) % 360.0 - 180.0


def recovered_rotation(found_upright, found_turned) -> np.ndarray:
    """Degrees in ``[-180, 180)``: the turn a model recovers for a digit from the poses it found for
    the digit as drawn (``found_upright``) and turned (``found_turned``), both in radians in
    :func:`~avae_tutorial.align`'s convention (the image warped by ``rotation(found)`` is what the
    model encodes). A digit turned counter-clockwise by ``t`` needs ``t`` less: the recovered turn is
    ``found_upright - found_turned``, to be compared with ``t``."""
    up, turned = _array(found_upright, "found_upright", 1), _array(found_turned, "found_turned", 1)
    return wrap_degrees(np.degrees(up.astype(np.float64) - turned.astype(np.float64)))


def error_by_class(error_deg, labels, near: float = 20.0) -> list[dict]:
    """Per class in ``labels``: ``n``, ``median_abs_deg`` (the median of ``|error|``), ``within``
    (the share within ``near`` degrees) and ``half_turn`` (the share within ``near`` degrees of a
    half turn: the digit read upside down)."""
    err, labels = np.abs(wrap_degrees(_array(error_deg, "error_deg", 1))), _array(labels, "labels", 1)
    if len(err) != len(labels):
        raise ValueError(f"labels: expected one per error ({len(err)}), got {len(labels)}")
    rows = []
    for c in np.unique(labels):
        e = err[labels == c]
        rows.append({"class": int(c), "n": int(len(e)), "median_abs_deg": float(np.median(e)),
                     "within": float(np.mean(e <= near)), "half_turn": float(np.mean(e >= 180.0 - near))})  # fmt: skip
    return rows
