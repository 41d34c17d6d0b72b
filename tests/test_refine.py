"""The refinement steps: a parabola's exact minimum, basins on the circle, Adam keeping the best."""
from __future__ import annotations

import math

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.refine import _basins, _best_per_image, _fixed_chunks, _parabola, adam_keep_best

pytestmark = pytest.mark.usefixtures("single_thread")


def test_parabola_finds_the_minimum_of_a_quadratic():
    a, b, c = torch.tensor([-1.0, 0.0]), torch.tensor([0.5, 1.0]), torch.tensor([2.0, 3.0])

    def f(t):
        return 2 * (t - 0.3) ** 2 + 1

    t, ft = _parabola(a, b, c, f(a), f(b), f(c))
    torch.testing.assert_close(t, torch.tensor([0.3, 0.3]))
    torch.testing.assert_close(ft, torch.tensor([1.0, 1.0]))


def test_parabola_without_curvature_halves_the_longer_side():
    a, b, c = torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([4.0])
    t, ft = _parabola(a, b, c, torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([1.0]))
    assert t.item() == 2.5 and ft.item() == 1.0


def test_basins_are_local_minima_on_the_circle_ranked_by_depth():
    angle = torch.arange(8.0)[None] * (2 * math.pi / 8)  # (1, 8)
    scores = torch.tensor([[5.0, 3.0, 5.0, 6.0, 5.0, 1.0, 5.0, 6.0]])  # minima at 5 (deeper) and 1
    a, b, c, fa, fb, fc, j, valid = _basins(angle, scores, k=3)
    assert j[0, :2].tolist() == [5, 1] and valid[0].tolist() == [True, True, False]
    torch.testing.assert_close(b[0, :2], angle[0, [5, 1]])
    assert (a[0, :2] < b[0, :2]).all() and (b[0, :2] < c[0, :2]).all()
    assert (fb[0, :2] <= fa[0, :2]).all() and (fb[0, :2] <= fc[0, :2]).all()


def test_basins_wrap_around_zero():
    angle = torch.arange(4.0)[None] * (math.pi / 2)
    a, b, c, *_ = _basins(angle, torch.tensor([[0.0, 1.0, 2.0, 1.0]]), k=1)
    assert b.item() == 0.0 and a.item() == pytest.approx(-math.pi / 2) and c.item() == pytest.approx(math.pi / 2)


def test_best_per_image_keeps_only_improvements():
    best_p, best_l = torch.zeros(3, 1), torch.tensor([1.0, 1.0, 1.0])
    img = torch.tensor([0, 0, 2])
    rp, rl = torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([0.5, 0.25, 4.0])
    p, loss = _best_per_image(best_p, best_l, img, rp, rl)
    assert p[:, 0].tolist() == [2.0, 0.0, 0.0] and loss.tolist() == [0.25, 1.0, 1.0]
    assert best_p.abs().sum() == 0  # the caller's tensor is left as it was


def test_fixed_chunks_pads_to_whole_chunks_and_drops_the_padding():
    sizes = []

    def fn(r):
        sizes.append(len(r))
        return r * 2

    out = _fixed_chunks(fn, 4, torch.arange(6.0))
    assert sizes == [8] and out.tolist() == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]


def test_adam_keep_best_never_loses_its_start(template_vae, seven):
    x = avae.warp(seven.expand(3, -1, -1, -1), avae.rotation(torch.tensor([0.4, -0.3, 0.0])))
    p0 = torch.zeros(3, 1)

    def build(p):
        return avae.rotation(p[:, 0])

    with torch.no_grad():
        start = avae.avae_loss(template_vae, x, build(p0))
    p, loss = adam_keep_best(template_vae, x, p0, build, steps=0, lr=0.05)
    torch.testing.assert_close(p, p0)
    torch.testing.assert_close(loss, start)
    p, loss = adam_keep_best(template_vae, x, p0, build, steps=20, lr=0.05)
    assert (loss <= start).all() and loss[:2].lt(start[:2]).all() and p0.abs().sum() == 0
    with torch.no_grad():
        torch.testing.assert_close(loss, avae.avae_loss(template_vae, x, build(p)))


def test_per_image_min_and_first_best_row_work_per_image():
    from avae_tutorial.refine import _first_best_row, _per_image_min

    img = torch.tensor([0, 0, 1, 2, 2, 2])
    v = torch.tensor([3.0, 1.0, 5.0, 2.0, 0.5, 0.5])
    assert _per_image_min(v, img, 3)[img].tolist() == [1.0, 1.0, 5.0, 0.5, 0.5, 0.5]
    assert _first_best_row(img, v, 3).tolist() == [1, 2, 4]  # ties: the first row


def test_a_start_that_cannot_beat_its_images_best_costs_nothing(template_vae, seven):
    """With ``settle``, the leader of an image refines; a second start whose parabola promises no
    gain over the image's best by ``settle`` takes no step, so it costs no pass."""
    from avae_tutorial.align import AlignConfig
    from avae_tutorial.families import get_family
    from avae_tutorial.model import for_inference
    from avae_tutorial.refine import _refine_angle, _rows_loss

    fam, model = get_family("rotation"), for_inference(template_vae)
    theta = 0.7
    x = avae.warp(seven, avae.rotation(torch.tensor([theta])))
    cfg = AlignConfig(steps=6, settle=0.05, settle_after=2)

    def run(centres):
        b = torch.tensor(centres)
        a, c = b - 0.3, b + 0.3
        img = torch.zeros(len(b), dtype=torch.long)
        spent = torch.zeros(1, dtype=torch.long)
        fa, fb, fc = (_rows_loss(model, x, img, t[:, None], fam, 64, torch.zeros(1, dtype=torch.long)) for t in (a, b, c))
        lead = torch.arange(len(b)) == 0
        br = _refine_angle(model, x, img, a, b, c, fa, fb, fc, fam, cfg, spent, fb.min().expand(len(b)), lead)
        return br, int(spent)

    alone, spent_alone = run([-theta + 0.1])
    both, spent_both = run([-theta + 0.1, -theta + math.pi])  # the second start: half a turn off
    assert spent_alone >= cfg.settle_after and spent_both == spent_alone
    assert torch.equal(both[1][:1], alone[1]) and abs(float(alone[1][0]) + theta) < 0.02
