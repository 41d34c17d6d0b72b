"""Tests for avae_tutorial.plotting: every figure function draws what it says and returns its Figure/Axes."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from avae_tutorial import plotting  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


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


def test_local_minima_finds_both_valleys_lowest_first():
    a = np.linspace(0, 2 * math.pi, 72, endpoint=False)
    v = np.cos(2 * a) + 0.1 * np.sin(a)  # valleys near 90 (higher) and 270 degrees (lower)
    idx = plotting.local_minima(v)
    assert len(idx) == 2
    assert abs(math.degrees(a[idx[0]]) - 270) <= 10 and abs(math.degrees(a[idx[1]]) - 90) <= 10


def test_local_minima_wraps_and_filters_by_prominence():
    a = np.linspace(0, 2 * math.pi, 36, endpoint=False)
    v = -np.cos(a)  # the only minimum is at index 0
    assert plotting.local_minima(v).tolist() == [0]
    assert plotting.local_minima(v, circular=False).tolist() == []
    v = [9, 5, 3, 3.2, 2.5, 4, 8, 6, 7, 9]  # a shallow dip at 2 (0.2 deep), a valley at 7 (2 deep)
    assert plotting.local_minima(v).tolist() == [4, 2, 7]
    assert plotting.local_minima(v, prominence=1.0).tolist() == [4, 7]
    assert plotting.local_minima(v, prominence=2.5).tolist() == [4]
    with pytest.raises(ValueError, match="at least 3"):
        plotting.local_minima([1.0, 2.0])


def test_plot_landscape_marks_minima_and_the_exact_undo():
    a = torch.linspace(0, 2 * math.pi, 73)[:-1]
    v = torch.cos(2 * a) + 0.1 * torch.sin(a)
    minima = plotting.local_minima(v)
    ax = plotting.plot_landscape(a, v, minima=minima, exact=-math.pi / 2)
    assert ax.get_xlim() == (0.0, 360.0)
    dots, star = ax.collections
    assert len(dots.get_offsets()) == 2
    np.testing.assert_allclose(star.get_offsets()[0][0], math.degrees(float(a[minima[0]])), atol=1e-4)
    exact = [line for line in ax.get_lines() if line.get_label() == "exact undo"]
    np.testing.assert_allclose(exact[0].get_xdata()[0], 270.0)
    with pytest.raises(ValueError, match="same length"):
        plotting.plot_landscape(a, v[:-1])


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


def test_landscape_figure_puts_each_digit_over_its_landscape():
    a = torch.linspace(0, 2 * math.pi, 37)[:-1]
    losses = torch.stack([torch.cos(a), torch.cos(2 * a)]) * 10  # one valley, then two
    fig = plotting.landscape_figure(torch.rand(2, 1, 8, 8), a, losses, titles=["a 1", "a 6"],
                                    exact=[math.pi, math.pi / 2], found=[math.pi, 3 * math.pi / 2])  # fmt: skip
    axes = np.array(fig.axes).reshape(2, 2)
    assert axes[0, 1].get_title() == "a 6" and axes[0, 0].get_images()
    assert len(axes[1, 0].collections[0].get_offsets()) == 1
    assert len(axes[1, 1].collections[0].get_offsets()) == 2
    search = [ln for ln in axes[1, 1].get_lines() if ln.get_label() == "search"]
    np.testing.assert_allclose(search[0].get_xdata()[0], 270.0)
    with pytest.raises(ValueError, match="one row per image"):
        plotting.landscape_figure(torch.rand(2, 8, 8), a, losses[:1])


def test_plot_resultant_by_epoch_one_line_per_class_and_panel():
    rows = [{"epoch": e, "class": c, "R1": 0.1 * e, "R2": 0.05 * e} for e in (0, 1, 2) for c in (1, 6)]
    fig = plotting.plot_resultant_by_epoch(rows, noise=0.02)
    assert [ax.get_title() for ax in fig.axes] == ["R1", "R2"]
    line = next(ln for ln in fig.axes[0].get_lines() if ln.get_label() == '"6"')
    np.testing.assert_allclose(line.get_ydata(), [0.0, 0.1, 0.2])
    assert any(ln.get_label() == "uniform" for ln in fig.axes[1].get_lines())
    with pytest.raises(ValueError, match="rows"):
        plotting.plot_resultant_by_epoch([])


def test_wrapper_diagram_draws_the_stages_with_optional_images():
    fig = plotting.wrapper_diagram()
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "encoder" in texts and "decoder" in texts and "warp back" in texts
    assert not fig.axes[0].get_images()
    img = np.random.rand(40, 40)
    fig = plotting.wrapper_diagram(img, img, img[None], img)
    assert len(fig.axes[0].get_images()) == 4


def test_plot_orientation_histograms_names_panels_by_epoch():
    labels = np.array([1, 1, 6, 9])
    orientation = torch.zeros(3, 4)  # rows: epochs 0, 1, 2
    fig = plotting.plot_orientation_histograms(orientation, labels, [6, 9], [0, 2], first_epoch=0)
    assert [ax.get_title() for ax in fig.axes] == ["epoch 0", "epoch 2"]
    fig = plotting.plot_orientation_histograms(orientation, labels, [1], [1, 3])
    assert [ax.get_title() for ax in fig.axes] == ["epoch 1", "epoch 3"]
    with pytest.raises(ValueError, match="outside 1..3"):
        plotting.plot_orientation_histograms(orientation, labels, [1], [0])


def test_orientation_histograms_cut_the_circle_where_the_angles_are_sparse():
    """A peak at 180 degrees is drawn whole, in the middle of the axis, not split at both edges."""
    g = torch.Generator().manual_seed(0)
    peak = math.pi + 0.2 * torch.randn(400, generator=g)  # around 180 degrees
    cut = plotting.circular_cut(np.degrees(peak.numpy()))
    assert abs(((cut + 180) % 360) - 180) < 30  # cut near 0 degrees, far from the peak
    fig = plotting.plot_orientation_histograms(peak[None], np.ones(400, dtype=int), [1], [1])
    lo, hi = fig.axes[0].get_xlim()
    assert lo < 180 < hi and hi - lo == pytest.approx(360)
    assert all(t.get_text() in {"-180", "-90", "0", "90"} for t in fig.axes[0].get_xticklabels())
    fig = plotting.plot_class_orientations(torch.cat([peak, peak - math.pi]), np.repeat([1, 2], 400))
    for ax in fig.axes[:2]:
        lo, hi = ax.get_xlim()
        assert hi - lo == pytest.approx(360)


def _every_figure():
    """One figure from each plotting function, at its default size, with small synthetic inputs."""
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
    yield "landscape_figure", plotting.landscape_figure(img[:5], a, torch.rand(5, 36), titles=list("abcde"))
    yield "plot_sweep", plotting.plot_sweep(sweep).figure
    yield "hero_figure", plotting.hero_figure(range(0, 360, 45), img, img, img, range(8), range(8), range(8))
    yield "plot_training_curves", plotting.plot_training_curves({"a": {"train_loss": [2, 1], "test_loss": [2, 1]}})
    yield "plot_orientation_histograms", plotting.plot_orientation_histograms(angles, labels, [6, 9], [0, 1, 2],
                                                                              first_epoch=0)  # fmt: skip
    yield "plot_class_orientations", plotting.plot_class_orientations(angles[-1], labels)
    yield "plot_resultant_by_epoch", plotting.plot_resultant_by_epoch(hist_rows, noise=0.05)
    from avae_tutorial.distributed import GlobalBatchSampler

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
    from avae_tutorial.distributed import GlobalBatchSampler

    slices = {N: [list(GlobalBatchSampler(12, 4, rank=r, world_size=N)) for r in range(N)] for N in (1, 2)}
    grads = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, -0.5]])
    fig = plotting.plot_data_parallel(slices, grads, grads.mean(0))
    left, right = fig.axes[0], fig.axes[-1]
    assert len(fig.axes) == 3 and left.get_title().startswith("N = 1") and fig.axes[1].get_title().startswith("N = 2")
    assert sorted(int(t.get_text()) for t in fig.axes[1].texts) == list(range(12))
    assert {len(set(p.get_facecolor() for p in ax.patches)) for ax in fig.axes[:2]} == {1, 2}
    heights = [p.get_height() for p in right.patches]
    np.testing.assert_allclose(heights[6:9], [2.0, -1.0, 0.0])  # the average of the ranks
