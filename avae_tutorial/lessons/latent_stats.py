"""What the latent buys, measured (chapter 6): clustering accuracy of codes, and circular statistics
of recovered rotations, with the protocol of the amortized papers (spatial-VAE, TARGET-VAE).

* :func:`clustering_accuracy`: clusters matched one-to-one to classes so that the most images agree
  (the Hungarian method on the contingency table), the share of images that then agree.
* :func:`cluster_codes`: k-means (one run per seed: the spread over seeds is the spread over
  initializations) or Ward's agglomerative clustering (no seed: one run), scored by it, with the
  bootstrap standard error over the digits (:func:`accuracy_se`).
* :func:`bootstrap_se`: the standard error over the digits (the independent unit) of any statistic
  of per-digit arrays, by resampling the digits; :func:`accuracy_se`: the same for clustering
  accuracy, each digit's cluster kept and the one-to-one matching redone on every resample.
* :func:`circular_correlation`: Jammalamadaka and SenGupta's correlation of two angles.
* :func:`recovered_rotation`: the peers' protocol. "Upright" is a convention each model picks for
  itself, so the rotation it recovers for a turned digit is the pose it found for the digit as it
  was drawn minus the pose it found for the turned one; that is compared with the turn applied.
* :func:`rotation_stats`: the circular correlation, median error and the shares within a tolerance
  and about a half turn off, of recovered against applied turns.
* :func:`error_by_class`: per class, how far the recovered rotation is off, and how often by about
  a half turn (the digits that look alike upside down).

The codes themselves come from :mod:`avae_tutorial.training.codes` (the pose each model reads a
digit in, and its code there).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

__all__ = ["clustering_accuracy", "cluster_codes", "circular_correlation", "wrap_degrees", "recovered_rotation",
           "error_by_class", "rotation_stats", "bootstrap_indices", "bootstrap_se", "accuracy_se",
           "METHODS", "N_BOOT"]  # fmt: skip

METHODS = ("kmeans", "ward")
N_BOOT = 200  # resamples of the digits per bootstrap standard error


def _numpy(values) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)


def _array(values, name: str, ndim: int) -> np.ndarray:
    a = _numpy(values)
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


def cluster_codes(codes, labels, method: str = "kmeans", k: int | None = None, seeds=range(10),
                  n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Cluster ``codes (N, L)`` into ``k`` groups (default: the number of classes in ``labels``) and
    score each clustering by :func:`clustering_accuracy`:
    ``{"method", "k", "runs", "mean", "std", "se", "clusters"}``.

    ``"kmeans"``: one k-means per seed (k-means++ starts, one initialization each), so ``std`` is the
    spread over seeds; ``"ward"``: agglomerative clustering with Ward's linkage, which has no seed
    (one run, ``std`` 0). ``clusters (N, runs)``: each run's cluster of each digit (a column per
    run). ``se``: the bootstrap standard error over the digits of ``mean``
    (:func:`accuracy_se` with ``n_boot`` resamples drawn from ``seed``): the clusterings are kept,
    the digits resampled."""
    from sklearn.cluster import AgglomerativeClustering, KMeans

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of: {', '.join(map(repr, METHODS))}")
    codes, labels = _array(codes, "codes", 2).astype(np.float64), _array(labels, "labels", 1)
    if len(codes) != len(labels):
        raise ValueError(f"labels: expected one per code ({len(codes)}), got {len(labels)}")
    k = k or len(np.unique(labels))
    if method == "ward":
        found = [AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(codes)]
    else:
        found = [KMeans(k, n_init=1, random_state=int(s)).fit_predict(codes) for s in seeds]
    if not found:
        raise ValueError("seeds: expected at least one k-means seed, got none")
    clusters = np.stack(found, axis=1)
    runs = [clustering_accuracy(labels, c) for c in found]
    return {"method": method, "k": k, "runs": runs, "mean": float(np.mean(runs)), "std": float(np.std(runs)),
            "se": accuracy_se(labels, clusters, n_boot=n_boot, seed=seed), "clusters": clusters}  # fmt: skip


def _check_boot(n_boot, seed) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise ValueError(f"n_boot: expected an integer of at least 2 resamples, got {n_boot!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an integer, got {seed!r}")


def bootstrap_indices(n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` indices: ``n_boot`` resamples, with replacement, of ``n`` digits, drawn from
    ``numpy.random.default_rng(seed)``. The same ``(n, n_boot, seed)`` give the same resamples."""
    _check_boot(n_boot, seed)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: expected a positive number of digits, got {n!r}")
    return np.random.default_rng(int(seed)).integers(0, int(n), size=(int(n_boot), int(n)))


def _per_digit(arrays, names: str = "arrays") -> list[np.ndarray]:
    out = [_numpy(a) for a in arrays]
    if not out:
        raise ValueError(f"{names}: expected at least one array of per-digit values, got none")
    for i, a in enumerate(out):
        if a.ndim == 0 or len(a) == 0:
            raise ValueError(f"{names}[{i}]: expected a non-empty array, one row per digit, got shape {a.shape}")
    if len({len(a) for a in out}) > 1:
        raise ValueError(f"{names}: expected one row per digit in each, got lengths {[len(a) for a in out]}")
    return out


def bootstrap_se(statistic, *arrays, n_boot: int = N_BOOT, seed: int = 0):
    """The bootstrap standard error over the digits of ``statistic(*arrays)``: each array has one
    row per digit (axis 0), the same resampled rows (:func:`bootstrap_indices`) are taken from every
    array, and the result is the standard deviation (``ddof=1``) of the statistic over the
    ``n_boot`` resamples. A paired difference is the statistic of a difference:
    ``bootstrap_se(lambda a, b: f(a) - f(b), a, b)``.

    ``statistic`` returns a number (the SE is a float), an array (an array of SEs) or a mapping
    of numbers (a dict of SEs, key by key)."""
    if not callable(statistic):
        raise ValueError(f"statistic: expected a function of the arrays, got {type(statistic).__name__}")
    arrays = _per_digit(arrays)
    idx = bootstrap_indices(len(arrays[0]), n_boot, seed)
    values = [statistic(*(a[i] for a in arrays)) for i in idx]
    if isinstance(values[0], Mapping):
        return {key: float(np.std([float(v[key]) for v in values], ddof=1)) for key in values[0]}
    stacked = np.asarray(values, dtype=np.float64)
    se = stacked.std(axis=0, ddof=1)
    return float(se) if se.ndim == 0 else se


def _codes(values) -> tuple[np.ndarray, int]:
    """``values`` as integers ``0..K-1`` (per column where 2-d) and ``K``."""
    _, inverse = np.unique(values, return_inverse=True)
    inverse = inverse.reshape(values.shape)
    return inverse, int(inverse.max()) + 1


def _resampled_accuracy(labels: np.ndarray, clusters: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``(B,)``: for each resample (a row of ``idx``), the matched accuracy of every column of
    ``clusters (N, R)``, averaged over the columns. One contingency table per resample and column
    (``np.bincount``), one Hungarian matching each. Clusters or classes absent from a resample are
    empty rows or columns of its table, which change no maximum matching."""
    from scipy.optimize import linear_sum_assignment

    y, n_y = _codes(labels)
    c, n_c = _codes(clusters)
    (n_b, n), n_r = idx.shape, c.shape[1]
    cell = c[idx] * n_y + y[idx][:, :, None]  # (B, N, R): the table cell of each resampled digit
    offset = (np.arange(n_b)[:, None, None] * n_r + np.arange(n_r)[None, None, :]) * (n_c * n_y)
    tables = np.bincount((cell + offset).ravel(), minlength=n_b * n_r * n_c * n_y).reshape(n_b, n_r, n_c, n_y)
    matched = np.empty((n_b, n_r))
    for b in range(n_b):
        for r in range(n_r):
            rows, cols = linear_sum_assignment(tables[b, r], maximize=True)
            matched[b, r] = tables[b, r][rows, cols].sum()
    return matched.mean(axis=1) / n


def accuracy_se(labels, clusters, baseline=None, n_boot: int = N_BOOT, seed: int = 0) -> float:
    """The bootstrap standard error over the digits of the clustering accuracy of ``clusters``
    (``(N,)``, or ``(N, R)``: one column per run, e.g. per k-means seed, the accuracy averaged over
    the runs). Each digit keeps its cluster; on each resample of the digits the contingency table
    is recounted and the one-to-one matching redone (:func:`clustering_accuracy`). With
    ``baseline`` (another clustering of the same digits, ``(N,)`` or ``(N, R')``): the standard
    error of the difference ``clusters - baseline``, both on the same resamples (paired). The same
    as :func:`bootstrap_se` of that statistic, computed faster."""
    labels = _array(labels, "labels", 1)
    sets = []
    for name, value in (("clusters", clusters), ("baseline", baseline)):
        if value is None:
            continue
        a = _numpy(value)
        a = a[:, None] if a.ndim == 1 else a
        if a.ndim != 2 or a.shape[0] != len(labels) or a.shape[1] == 0:
            raise ValueError(f"{name}: expected ({len(labels)},) or ({len(labels)}, runs), one row per label, "
                             f"got shape {np.shape(value)}")
        sets.append(a)
    idx = bootstrap_indices(len(labels), n_boot, seed)
    boot = _resampled_accuracy(labels, sets[0], idx)
    if len(sets) == 2:
        boot = boot - _resampled_accuracy(labels, sets[1], idx)
    return float(np.std(boot, ddof=1))


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
        median, within, half = _error_shares(e, near)
        rows.append({"class": int(c), "n": int(len(e)), "median_abs_deg": median, "within": within, "half_turn": half})
    return rows


def _error_shares(abs_err: np.ndarray, near: float) -> tuple[float, float, float]:
    """The median of ``|error|`` (degrees) and the shares within ``near`` degrees of 0 and of a half turn."""
    return float(np.median(abs_err)), float(np.mean(abs_err <= near)), float(np.mean(abs_err >= 180.0 - near))


def rotation_stats(recovered_deg, applied_deg, near: float = 20.0) -> dict:
    """Recovered against applied turns (degrees, ``(N,)``): ``r`` (:func:`circular_correlation`),
    ``median`` (the median of ``|error|``, degrees, with the error wrapped to ``[-180, 180)``),
    ``within`` (the share within ``near`` degrees) and ``half`` (the share within ``near`` degrees
    of a half turn). A statistic for :func:`bootstrap_se`."""
    rec, applied = _array(recovered_deg, "recovered_deg", 1), _array(applied_deg, "applied_deg", 1)
    if len(rec) != len(applied):
        raise ValueError(f"applied_deg: expected one per recovered turn ({len(rec)}), got {len(applied)}")
    err = np.abs(wrap_degrees(rec.astype(np.float64) - applied.astype(np.float64)))
    median, within, half = _error_shares(err, near)
    r = circular_correlation(np.radians(rec.astype(np.float64)), np.radians(applied.astype(np.float64)))
    return {"r": r, "median": median, "within": within, "half": half}
