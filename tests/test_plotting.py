"""Tests for avae_tutorial.lessons.plotting: every figure function draws what it says and returns its Figure/Axes;
and every figure of the book (also landscape's and orientation_plots') fits the page."""
import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from avae_tutorial.lessons import landscape, orientation_plots, plotting


def test_to_images_accepts_the_usual_layouts():
    assert plotting.to_images(torch.zeros(5, 1, 8, 9)).shape == (5, 8, 9)
    assert plotting.to_images(np.zeros((5, 8, 9))).shape == (5, 8, 9)
    assert plotting.to_images(torch.zeros(8, 9)).shape == (1, 8, 9)
    with pytest.raises(ValueError, match="expected images"):
        plotting.to_images(torch.zeros(2, 3, 8, 8))


def test_show_images_lays_out_rows_and_titles():
    x = torch.rand(5, 1, 8, 8)
    fig = plotting.show_images(x, titles=[f"t{i}" for i in range(5)], nrow=3)
    assert isinstance(fig, plt.Figure)
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert len(fig.axes) == 6 and len(shown) == 5
    assert [ax.get_title() for ax in shown] == ["t0", "t1", "t2", "t3", "t4"]
    np.testing.assert_allclose(shown[4].get_images()[0].get_array(), x[4, 0].numpy())
    with pytest.raises(ValueError, match="titles"):
        plotting.show_images(x, titles=["a"])


def test_show_grid_labels_rows_columns_and_captions():
    rows = [torch.rand(3, 1, 8, 8), torch.rand(3, 8, 8)]
    fig = plotting.show_grid(rows, ["in", "out"], ["a", "b", "c"], [["", "", ""], ["1", "2", "3"]])
    axes = np.array(fig.axes).reshape(2, 3)
    assert [ax.get_title() for ax in axes[0]] == ["a", "b", "c"]
    assert axes[1, 0].get_ylabel() == "out" and axes[1, 2].get_xlabel() == "3"
    with pytest.raises(ValueError, match="same number of images"):
        plotting.show_grid([torch.rand(3, 8, 8), torch.rand(2, 8, 8)])
    with pytest.raises(ValueError, match="row_labels"):
        plotting.show_grid(rows, row_labels=["only one"])


def _rows(offset=0.0):
    return [{"angle_deg": d, "loss": 100 + offset + d / 10, "loss_std": 10.0, "n": 100} for d in (180, 0, 90, 270)]


def test_plot_loss_vs_angle_draws_each_series_sorted_in_degrees():
    ax = plotting.plot_loss_vs_angle({"VAE": _rows(), "AVAE": _rows(-50)})
    assert [line.get_label() for line in ax.get_lines()] == ["VAE", "AVAE"]
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), [0, 90, 180, 270])
    assert len(ax.collections) == 2  # one standard-error band per series
    assert list(ax.get_xticks())[-1] == 270 and "degrees" in ax.get_xlabel()
    ax2 = plotting.plot_loss_vs_angle(_rows(), band=False)
    assert len(ax2.collections) == 0 and ax2.get_legend() is None


def test_plot_sweep_draws_rotated_and_upright_lines_per_regime():
    rows = [{"regime": g, "latent_dim": L, "loss_upright_test": 100 + L, "loss_rotated_test": 200 - L}
            for g in ("upright", "rotated") for L in (2, 8, 32)]  # fmt: skip
    ax = plotting.plot_sweep(rows)
    assert len(ax.get_lines()) == 4 and ax.get_xscale() == "log"
    line = next(ln for ln in ax.get_lines() if ln.get_label() == "rotated model, turned digits")
    np.testing.assert_array_equal(line.get_xdata(), [2, 8, 32])
    np.testing.assert_array_equal(line.get_ydata(), [198, 192, 168])
    with pytest.raises(ValueError, match="sweep rows"):
        plotting.plot_sweep([])
    undone = [r | {"loss_rotated_undone": 150.0} for r in rows]
    labels = [ln.get_label() for ln in plotting.plot_sweep(undone).get_lines()]
    assert len(labels) == 5 and "upright model, turned digits, turn undone" in labels


def test_hero_figure_has_three_rows_with_losses():
    F = 4
    imgs = np.random.rand(F, 8, 8)
    fig = plotting.hero_figure([0, 90, 180, 270], imgs, imgs, imgs, [200, 210, 220, 230], [90, 91, 92, 93],
                               found_deg=[0, -90, 180, 90])  # fmt: skip
    axes = np.array(fig.axes).reshape(3, F)  # one block of three rows: F <= ncols
    assert axes[0, 1].get_title() == "90°"
    assert axes[1, 2].get_xlabel() == "220 nats"
    assert axes[2, 1].get_xlabel() == "91 nats, -90°"
    assert [axes[r, 0].get_ylabel() for r in range(3)] == ["rotated input", "VAE", "AVAE"]


def test_wrapper_diagram_draws_the_stages_with_optional_images():
    fig = plotting.wrapper_diagram()
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "encoder" in texts and "decoder" in texts and "warp back" in texts
    assert not fig.axes[0].get_images()
    img = np.random.rand(40, 40)
    fig = plotting.wrapper_diagram(img, img, img[None], img)
    assert len(fig.axes[0].get_images()) == 4


def _every_figure():
    """One figure from each figure function of the book, at its default size, with small synthetic inputs."""
    img = np.random.rand(8, 8, 8)
    a = torch.linspace(0, 2 * math.pi, 37)[:-1]
    hist_rows = [{"epoch": e, "class": c, "R1": 0.1 * e, "R2": 0.05 * e} for e in (0, 1, 2) for c in range(10)]
    sweep = [{"regime": g, "latent_dim": L, "loss_upright_test": 100.0, "loss_rotated_test": 150.0,
              "loss_rotated_undone": 120.0} for g in ("upright", "rotated") for L in (2, 8)]  # fmt: skip
    angles = torch.rand(3, 200) * 6.28 - 3.14
    labels = np.arange(200) % 10
    yield "show_images", plotting.show_images(img[:5], titles=list("abcde"), nrow=5)
    yield "show_grid", plotting.show_grid([img[:6], img[:6]], ["in", "out"], list("abcdef"), [["1"] * 6] * 2, size=1.15)
    yield "plot_loss_vs_angle", plotting.plot_loss_vs_angle(_rows()).figure
    yield "landscape_figure", landscape.landscape_figure(img[:5], a, torch.rand(5, 36), titles=list("abcde"))
    yield "plot_sweep", plotting.plot_sweep(sweep).figure
    yield "hero_figure", plotting.hero_figure(range(0, 360, 45), img, img, img, range(8), range(8), range(8))
    yield "plot_training_curves", plotting.plot_training_curves({"a": {"train_loss": [2, 1], "test_loss": [2, 1]}})
    yield "plot_orientation_histograms", orientation_plots.plot_orientation_histograms(angles, labels, [6, 9], [0, 1, 2],
                                                                                       first_epoch=0)  # fmt: skip
    yield "plot_class_orientations", orientation_plots.plot_class_orientations(angles[-1], labels)
    yield "plot_resultant_by_epoch", orientation_plots.plot_resultant_by_epoch(hist_rows, noise=0.05)
    from avae_tutorial.lessons import latent_plots

    deg = np.degrees(angles.numpy())
    yield "plot_recovered_vs_applied", latent_plots.plot_recovered_vs_applied({k: (deg[0], deg[1]) for k in "abc"})
    yield "plot_error_by_class", latent_plots.plot_error_by_class({k: deg[2] for k in "abc"}, labels)
    from avae_tutorial.training.distributed import GlobalBatchSampler

    slices = {N: [list(GlobalBatchSampler(12, 4, rank=r, world_size=N)) for r in range(N)] for N in (1, 2)}
    yield "plot_data_parallel", plotting.plot_data_parallel(slices, torch.rand(2, 3), torch.rand(3))


def test_every_figure_fits_the_page_with_text_of_at_least_font_points():
    """Legible as displayed: no wider than MAX_WIDTH_IN (so a page shows it unscaled), no text
    smaller than FONT points. The site test checks the same figures as the browser draws them."""
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    for name, fig in _every_figure():
        fig.canvas.draw()
        width = fig.get_tightbbox().width  # inches, as saved with bbox_inches="tight"
        assert width <= plotting.MAX_WIDTH_IN + 0.1, f"{name}: {width:.2f} in wide"
        texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
        small = {t.get_text(): t.get_fontsize() for t in texts if t.get_fontsize() < plotting.FONT}
        assert not small, f"{name}: text below {plotting.FONT} pt: {small}"
        plt.close(fig)


def test_plot_data_parallel_colours_each_rank_and_draws_the_average():
    from avae_tutorial.training.distributed import GlobalBatchSampler

    slices = {N: [list(GlobalBatchSampler(12, 4, rank=r, world_size=N)) for r in range(N)] for N in (1, 2)}
    grads = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, -0.5]])
    fig = plotting.plot_data_parallel(slices, grads, grads.mean(0))
    left, right = fig.axes[0], fig.axes[-1]
    assert len(fig.axes) == 3 and left.get_title().startswith("N = 1") and fig.axes[1].get_title().startswith("N = 2")
    assert sorted(int(t.get_text()) for t in fig.axes[1].texts) == list(range(12))
    assert {len(set(p.get_facecolor() for p in ax.patches)) for ax in fig.axes[:2]} == {1, 2}
    heights = [p.get_height() for p in right.patches]
    np.testing.assert_allclose(heights[6:9], [2.0, -1.0, 0.0])  # the average of the ranks


# ---------------------------------------------------------------- figures a reader can read
def test_layout_check_sees_a_legend_on_the_data_and_text_on_text():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1, 2], [0, 1, 2], label="line")
    ax.plot([0.05, 0.1], [1.95, 1.9], "o", label="points under the legend")
    ax.legend(loc="upper left")
    ax.text(0.5, 0.5, "first", transform=ax.transAxes)
    ax.text(0.5, 0.5, "second", transform=ax.transAxes)
    problems = plotting.layout_problems(fig)
    assert any("legend" in p for p in problems) and any("'first' overlaps 'second'" in p for p in problems)
    fig2, ax2 = plt.subplots(figsize=(4, 3))
    ax2.plot([0, 1], [0, 1], label="line")
    plotting.legend_outside(ax2)
    assert plotting.layout_problems(fig2) == []


def test_the_books_plots_keep_legends_and_labels_apart():
    rows = {f"model {i}": [{"angle_deg": a, "loss": 100 + 5 * i + 30 * math.sin(math.radians(a)), "loss_std": 3.0,
                            "n": 10} for a in range(0, 361, 45)] for i in range(10)}  # fmt: skip
    assert plotting.layout_problems(plotting.plot_loss_vs_angle(rows).figure) == []
    curve = [{"restarts": r, "steps": s, "loss": 120 - 0.1 * r - 0.3 * s, "cost_vs_plain": r + 1.2 * s}
             for r in (6, 12, 24, 48) for s in (0, 1, 3)]  # fmt: skip
    assert plotting.layout_problems(plotting.plot_cost_quality(curve).figure) == []
    stats = [{"epoch": e, "class": c, "R1": 0.5 + 0.01 * c, "R2": 0.5} for e in range(1, 6) for c in range(10)]
    assert plotting.layout_problems(orientation_plots.plot_resultant_by_epoch(stats, noise=0.1)) == []
    hist = {"a": {"train_loss": [3, 2, 1], "test_loss": [3, 2, 1.5]}, "b": {"train_loss": [4, 2, 1], "test_loss": [4, 2, 1.5]}}
    assert plotting.layout_problems(plotting.plot_training_curves(hist)) == []


def test_a_figure_records_its_smallest_text():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    ax.set_title("title", fontsize=7)
    png = plotting.figure_png(fig)
    assert plotting.png_text(png, plotting.TEXT_KEY) == "7"
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
