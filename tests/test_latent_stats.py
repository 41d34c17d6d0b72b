"""Clustering accuracy and circular statistics (lessons/latent_stats.py) against hand-computed cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avae_tutorial.lessons.latent_stats import (circular_correlation, cluster_codes, clustering_accuracy,
                                                error_by_class, recovered_rotation, wrap_degrees)


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
