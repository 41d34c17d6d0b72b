"""Clustering accuracy and circular statistics (lessons/latent_stats.py) against hand-computed cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avae_tutorial.lessons.latent_stats import (accuracy_se, bootstrap_indices, bootstrap_se, circular_correlation,
                                                cluster_codes, clustering_accuracy, error_by_class,
                                                recovered_rotation, rotation_stats, wrap_degrees)


def test_renamed_classes_score_one():
    labels = np.array([0, 0, 1, 1, 2, 2, 2])
    assert clustering_accuracy(labels, (labels + 1) % 3) == 1.0
    assert clustering_accuracy(torch.tensor(labels), torch.tensor([7, 7, 4, 4, 9, 9, 9])) == 1.0


def test_the_best_one_to_one_matching_by_hand():
    """Clusters a: {0,0,1}, b: {1,1,0}, c: {2}; the best matching is a->0, b->1, c->2: 5 of 7 agree.
    Two clusters cannot both take class 0 (the greedy answer would give a and b to the majority)."""
    labels = [0, 0, 1, 1, 1, 0, 2]
    clusters = ["a", "a", "a", "b", "b", "b", "c"]
    assert clustering_accuracy(labels, clusters) == pytest.approx(5 / 7)
    assert clustering_accuracy([0, 0, 0, 0], [0, 1, 0, 1]) == 0.5  # one class, two clusters: one is unmatched


def test_kmeans_and_ward_find_separated_blobs():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    labels = np.repeat([0, 1, 2], 30)
    codes = centres[labels] + rng.normal(0, 0.5, (90, 2))
    for method in ("kmeans", "ward"):
        out = cluster_codes(codes, labels, method, seeds=range(3))
        assert out["mean"] == 1.0 and out["k"] == 3
    assert len(cluster_codes(codes, labels, "kmeans", seeds=range(4))["runs"]) == 4
    assert cluster_codes(codes, labels, "ward")["std"] == 0.0
    with pytest.raises(ValueError, match="unknown method"):
        cluster_codes(codes, labels, "dbscan")


def test_circular_correlation_by_hand():
    """a = (0, 90, 180, 270) degrees: its sines and cosines sum to zero, a0 = atan2(0, 0) = 0;
    b = (0, 45, 0, 45) degrees has mean 22.5 degrees. sin(a) = (0, 1, 0, -1) and
    sin(b - 22.5) = (-s, s, -s, s) with s = sin(22.5): the sum of products is 0, so r = 0. A second
    case: a = (10, 20, 30) degrees, b = a + 50: r = 1; b = -a: r = -1."""
    a = np.radians([0.0, 90.0, 180.0, 270.0])
    b = np.radians([0.0, 45.0, 0.0, 45.0])
    assert circular_correlation(a, b) == pytest.approx(0.0, abs=1e-12)
    a = np.radians([10.0, 20.0, 30.0])
    assert circular_correlation(a, a + math.radians(50)) == pytest.approx(1.0)
    assert circular_correlation(a, -a) == pytest.approx(-1.0)
    # by hand: a = (0, 60, 120) deg, mean 60; b = (0, 30, 90) deg, mean atan2(0.5 + 1, 1 + 0.866) = 38.79 deg
    a, b = np.radians([0.0, 60.0, 120.0]), np.radians([0.0, 30.0, 90.0])
    b0 = math.atan2(0.5 + 1.0, 1.0 + math.cos(math.radians(30)))
    sa = [math.sin(math.radians(-60)), 0.0, math.sin(math.radians(60))]
    sb = [math.sin(v - b0) for v in b]
    expected = sum(p * q for p, q in zip(sa, sb)) / math.sqrt(sum(p * p for p in sa) * sum(q * q for q in sb))
    assert circular_correlation(a, b) == pytest.approx(expected)
    assert 0.9 < expected < 1.0


def test_recovered_rotation_follows_the_convention():
    """A digit turned by t: the pose found for it is the upright one's minus t (align's convention),
    so the recovered turn is t, wrapped to [-180, 180)."""
    up = np.radians([10.0, -30.0, 170.0])
    t = np.radians([40.0, 200.0, 20.0])
    assert np.allclose(recovered_rotation(up, up - t), [40.0, -160.0, 20.0])
    assert np.allclose(wrap_degrees([180.0, -180.0, 540.0, 359.0]), [-180.0, -180.0, -180.0, -1.0])


def test_error_by_class_counts_half_turns():
    rows = error_by_class([0.0, 5.0, 178.0, -179.0, 90.0, 10.0], [1, 1, 1, 1, 7, 7], near=20.0)
    one, seven = rows
    assert one == {"class": 1, "n": 4, "median_abs_deg": pytest.approx(91.5), "within": 0.5, "half_turn": 0.5}
    assert seven["within"] == 0.5 and seven["half_turn"] == 0.0 and seven["median_abs_deg"] == 50.0


# ---------------------------------------------------------------------------------------------
# Standard errors over the digits (the bootstrap)
# ---------------------------------------------------------------------------------------------
def test_bootstrap_indices_are_seeded_resamples():
    a, b = bootstrap_indices(50, n_boot=30, seed=3), bootstrap_indices(50, n_boot=30, seed=3)
    assert a.shape == (30, 50) and np.array_equal(a, b)
    assert a.min() >= 0 and a.max() < 50
    assert not np.array_equal(a, bootstrap_indices(50, n_boot=30, seed=4))
    assert len(np.unique(a[0])) < 50  # with replacement: some digit repeats


def test_bootstrap_se_is_zero_for_a_constant_statistic_or_identical_digits():
    rng = np.random.default_rng(0)
    v = rng.normal(size=40)
    assert bootstrap_se(lambda a: 1.5, v) == 0.0
    assert bootstrap_se(np.mean, np.full(40, 2.0)) == 0.0
    assert bootstrap_se(lambda a, b: np.mean(a) - np.mean(b), v, v.copy()) == 0.0  # paired, identical
    assert bootstrap_se(np.mean, v) > 0.0


def test_bootstrap_se_of_a_mean_shrinks_like_one_over_root_n():
    """The mean of n iid N(0, 1) values has standard error 1 / sqrt(n): the bootstrap gets it
    within 20% (200 resamples: about 5% noise on the SE, plus the sample's own spread), and
    quadrupling n halves it."""
    rng = np.random.default_rng(1)
    small, large = rng.normal(size=100), rng.normal(size=400)
    se_small = bootstrap_se(np.mean, small, n_boot=400)
    se_large = bootstrap_se(np.mean, large, n_boot=400)
    assert se_small == pytest.approx(np.std(small, ddof=1) / 10, rel=0.2)
    assert se_large == pytest.approx(np.std(large, ddof=1) / 20, rel=0.2)
    assert se_small / se_large == pytest.approx(2.0, rel=0.25)


def test_bootstrap_se_pairs_the_digits():
    """b = a + small noise: unpaired, the difference of means varies as much as each mean; paired
    (the same digits resampled in both), only the noise is left."""
    rng = np.random.default_rng(2)
    a = rng.normal(0, 1, 300)
    b = a + rng.normal(0, 0.05, 300)
    paired = bootstrap_se(lambda p, q: p.mean() - q.mean(), a, b)
    alone = bootstrap_se(np.mean, a)
    assert paired < alone / 5
    assert paired == pytest.approx(0.05 / math.sqrt(300), rel=0.3)


def test_bootstrap_se_reproduces_and_keeps_the_statistics_shape():
    rng = np.random.default_rng(3)
    v, w = rng.normal(size=60), torch.tensor(rng.normal(size=(60, 2)))
    assert bootstrap_se(np.median, v, seed=5) == bootstrap_se(np.median, v, seed=5)
    assert bootstrap_se(np.median, v, seed=5) != bootstrap_se(np.median, v, seed=6)
    both = bootstrap_se(lambda a: a.mean(0), w)
    assert both.shape == (2,) and np.all(both > 0)
    keyed = bootstrap_se(lambda a, b: {"a": a.mean(), "b": float(b.mean())}, v, w)
    assert set(keyed) == {"a", "b"} and keyed["a"] == bootstrap_se(np.mean, v)


def test_bootstrap_rejects_bad_inputs():
    v = np.arange(10.0)
    with pytest.raises(ValueError, match="one row per digit"):
        bootstrap_se(lambda a, b: 0.0, v, v[:9])
    with pytest.raises(ValueError, match="at least one array"):
        bootstrap_se(lambda: 0.0)
    with pytest.raises(ValueError, match="non-empty array"):
        bootstrap_se(np.mean, np.array([]))
    with pytest.raises(ValueError, match="n_boot: expected an integer of at least 2"):
        bootstrap_se(np.mean, v, n_boot=1)
    with pytest.raises(ValueError, match="statistic: expected a function"):
        bootstrap_se(v, v)
    with pytest.raises(ValueError, match="seed: expected an integer"):
        bootstrap_indices(10, seed=0.5)
    with pytest.raises(ValueError, match="n: expected a positive number"):
        bootstrap_indices(0)


def _noisy_clusters(n=120, runs=3, keep=0.6, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    renamed = (labels + 1) % 4  # the clusters' names are not the classes'
    clusters = np.where(rng.random((n, runs)) < keep, renamed[:, None], rng.integers(0, 4, (n, runs)))
    return labels, clusters


def test_accuracy_se_is_the_bootstrap_of_the_matched_accuracy():
    """The fast path (one table per resample and run, recounted) against the plain bootstrap of
    :func:`clustering_accuracy` averaged over the runs: the same resamples, the same numbers."""
    labels, clusters = _noisy_clusters()
    mean_acc = lambda y, c: np.mean([clustering_accuracy(y, c[:, r]) for r in range(c.shape[1])])
    assert accuracy_se(labels, clusters, n_boot=50, seed=1) == pytest.approx(
        bootstrap_se(mean_acc, labels, clusters, n_boot=50, seed=1), rel=1e-12)
    other = _noisy_clusters(keep=0.3, seed=9)[1]
    diff = lambda y, c, o: mean_acc(y, c) - mean_acc(y, o)
    assert accuracy_se(labels, clusters, other, n_boot=50) == pytest.approx(
        bootstrap_se(diff, labels, clusters, other, n_boot=50), rel=1e-12)
    assert accuracy_se(labels, clusters[:, 0], n_boot=50) == pytest.approx(
        bootstrap_se(clustering_accuracy, labels, clusters[:, 0], n_boot=50), rel=1e-12)


def test_accuracy_se_is_zero_for_a_renaming_and_for_a_clustering_against_itself():
    labels, clusters = _noisy_clusters()
    assert accuracy_se(labels, (labels + 2) % 4) == 0.0  # every resample scores 1
    assert accuracy_se(labels, clusters, clusters.copy()) == 0.0
    assert accuracy_se(labels, clusters) > 0.0


def test_accuracy_se_rejects_bad_shapes():
    labels, clusters = _noisy_clusters()
    with pytest.raises(ValueError, match=r"clusters: expected \(120,\) or \(120, runs\)"):
        accuracy_se(labels, clusters[:-1])
    with pytest.raises(ValueError, match="baseline: expected"):
        accuracy_se(labels, clusters, clusters[:, :, None])


def test_cluster_codes_returns_its_clusterings_and_their_standard_error():
    rng = np.random.default_rng(4)
    labels = np.repeat([0, 1, 2], 40)
    codes = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])[labels] + rng.normal(0, 1.2, (120, 2))
    out = cluster_codes(codes, labels, "kmeans", seeds=range(4), n_boot=100, seed=2)
    assert out["clusters"].shape == (120, 4)
    assert out["runs"] == [clustering_accuracy(labels, c) for c in out["clusters"].T]
    assert out["se"] == accuracy_se(labels, out["clusters"], n_boot=100, seed=2)
    assert 0.0 < out["se"] < 0.1  # about sqrt(p (1 - p) / 120) for accuracy p
    ward = cluster_codes(codes, labels, "ward")
    assert ward["clusters"].shape == (120, 1) and ward["se"] > 0.0
    with pytest.raises(ValueError, match="at least one k-means seed"):
        cluster_codes(codes, labels, "kmeans", seeds=[])


def test_rotation_stats_by_hand():
    """Errors 0, 10, 30 and 175 degrees: median 20, within 20 degrees 2 of 4, a half turn off 1 of 4."""
    applied = np.array([10.0, 50.0, -100.0, 120.0])
    recovered = applied + np.array([0.0, 10.0, -30.0, 175.0])
    s = rotation_stats(recovered, applied, near=20.0)
    assert s["median"] == pytest.approx(20.0) and s["within"] == 0.5 and s["half"] == 0.25
    assert s["r"] == pytest.approx(circular_correlation(np.radians(recovered), np.radians(applied)))
    assert rotation_stats(applied + 5.0, applied)["r"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="applied_deg: expected one per recovered turn"):
        rotation_stats(recovered, applied[:3])
