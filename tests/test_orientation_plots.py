"""Tests for avae_tutorial.lessons.orientation_plots: histograms cut where the angles are sparse; panels named by epoch and class."""
import math

import numpy as np
import pytest
import torch

from avae_tutorial.lessons import orientation_plots


def test_plot_resultant_by_epoch_one_line_per_class_and_panel():
    rows = [{"epoch": e, "class": c, "R1": 0.1 * e, "R2": 0.05 * e} for e in (0, 1, 2) for c in (1, 6)]
    fig = orientation_plots.plot_resultant_by_epoch(rows, noise=0.02)
    assert [ax.get_title() for ax in fig.axes] == ["R1", "R2"]
    line = next(ln for ln in fig.axes[0].get_lines() if ln.get_label() == '"6"')
    np.testing.assert_allclose(line.get_ydata(), [0.0, 0.1, 0.2])
    assert any(ln.get_label() == "uniform" for ln in fig.axes[1].get_lines())
    with pytest.raises(ValueError, match="rows"):
        orientation_plots.plot_resultant_by_epoch([])


def test_plot_orientation_histograms_names_panels_by_epoch():
    labels = np.array([1, 1, 6, 9])
    orientation = torch.zeros(3, 4)  # rows: epochs 0, 1, 2
    fig = orientation_plots.plot_orientation_histograms(orientation, labels, [6, 9], [0, 2], first_epoch=0)
    assert [ax.get_title() for ax in fig.axes] == ["epoch 0", "epoch 2"]
    fig = orientation_plots.plot_orientation_histograms(orientation, labels, [1], [1, 3])
    assert [ax.get_title() for ax in fig.axes] == ["epoch 1", "epoch 3"]
    with pytest.raises(ValueError, match="outside 1..3"):
        orientation_plots.plot_orientation_histograms(orientation, labels, [1], [0])


def test_orientation_histograms_cut_the_circle_where_the_angles_are_sparse():
    """A peak at 180 degrees is drawn whole, in the middle of the axis, not split at both edges."""
    g = torch.Generator().manual_seed(0)
    peak = math.pi + 0.2 * torch.randn(400, generator=g)  # around 180 degrees
    cut = orientation_plots.circular_cut(np.degrees(peak.numpy()))
    assert abs(((cut + 180) % 360) - 180) < 30  # cut near 0 degrees, far from the peak
    fig = orientation_plots.plot_orientation_histograms(peak[None], np.ones(400, dtype=int), [1], [1])
    lo, hi = fig.axes[0].get_xlim()
    assert lo < 180 < hi and hi - lo == pytest.approx(360)
    assert all(t.get_text() in {"-180", "-90", "0", "90"} for t in fig.axes[0].get_xticklabels())
    fig = orientation_plots.plot_class_orientations(torch.cat([peak, peak - math.pi]), np.repeat([1, 2], 400))
    for ax in fig.axes[:2]:
        lo, hi = ax.get_xlim()
        assert hi - lo == pytest.approx(360)
