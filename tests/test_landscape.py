"""Tests for avae_tutorial.lessons.landscape: valleys of a curve, lowest first; each figure draws what it says."""
import math

import numpy as np
import pytest
import torch

from avae_tutorial.lessons import landscape


def test_local_minima_finds_both_valleys_lowest_first():
    a = np.linspace(0, 2 * math.pi, 72, endpoint=False)
    v = np.cos(2 * a) + 0.1 * np.sin(a)  # valleys near 90 (higher) and 270 degrees (lower)
    idx = landscape.local_minima(v)
    assert len(idx) == 2
    assert abs(math.degrees(a[idx[0]]) - 270) <= 10 and abs(math.degrees(a[idx[1]]) - 90) <= 10


def test_local_minima_wraps_and_filters_by_prominence():
    a = np.linspace(0, 2 * math.pi, 36, endpoint=False)
    v = -np.cos(a)  # the only minimum is at index 0
    assert landscape.local_minima(v).tolist() == [0]
    assert landscape.local_minima(v, circular=False).tolist() == []
    v = [9, 5, 3, 3.2, 2.5, 4, 8, 6, 7, 9]  # a shallow dip at 2 (0.2 deep), a valley at 7 (2 deep)
    assert landscape.local_minima(v).tolist() == [4, 2, 7]
    assert landscape.local_minima(v, prominence=1.0).tolist() == [4, 7]
    assert landscape.local_minima(v, prominence=2.5).tolist() == [4]
    with pytest.raises(ValueError, match="at least 3"):
        landscape.local_minima([1.0, 2.0])


def test_plot_landscape_marks_minima_and_the_exact_undo():
    a = torch.linspace(0, 2 * math.pi, 73)[:-1]
    v = torch.cos(2 * a) + 0.1 * torch.sin(a)
    minima = landscape.local_minima(v)
    ax = landscape.plot_landscape(a, v, minima=minima, exact=-math.pi / 2)
    assert ax.get_xlim() == (0.0, 360.0)
    dots, star = ax.collections
    assert len(dots.get_offsets()) == 2
    np.testing.assert_allclose(star.get_offsets()[0][0], math.degrees(float(a[minima[0]])), atol=1e-4)
    exact = [line for line in ax.get_lines() if line.get_label() == "exact undo"]
    np.testing.assert_allclose(exact[0].get_xdata()[0], 270.0)
    with pytest.raises(ValueError, match="same length"):
        landscape.plot_landscape(a, v[:-1])


def test_landscape_figure_puts_each_digit_over_its_landscape():
    a = torch.linspace(0, 2 * math.pi, 37)[:-1]
    losses = torch.stack([torch.cos(a), torch.cos(2 * a)]) * 10  # one valley, then two
    fig = landscape.landscape_figure(torch.rand(2, 1, 8, 8), a, losses, titles=["a 1", "a 6"],
                                    exact=[math.pi, math.pi / 2], found=[math.pi, 3 * math.pi / 2])  # fmt: skip
    axes = np.array(fig.axes).reshape(2, 2)
    assert axes[0, 1].get_title() == "a 6" and axes[0, 0].get_images()
    assert len(axes[1, 0].collections[0].get_offsets()) == 1
    assert len(axes[1, 1].collections[0].get_offsets()) == 2
    search = [ln for ln in axes[1, 1].get_lines() if ln.get_label() == "search"]
    np.testing.assert_allclose(search[0].get_xdata()[0], 270.0)
    with pytest.raises(ValueError, match="one row per image"):
        landscape.landscape_figure(torch.rand(2, 8, 8), a, losses[:1])
