"""The search: never worse than the identity, finds a known rotation, leaves the model alone, batch-exact."""
from __future__ import annotations

import math

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.align import search_cost
from avae_tutorial.transforms import wrap_angle

pytestmark = pytest.mark.usefixtures("single_thread")

SMALL = avae.AlignConfig(restarts=6, top_k=2, steps=3, lr=0.05)


def rotated(template: torch.Tensor, degrees: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    theta = torch.tensor([math.radians(d) for d in degrees])
    return avae.warp(template.expand(len(theta), -1, -1, -1), avae.rotation(theta)), theta


@pytest.mark.parametrize("family", ["rotation", "affine"])
def test_never_worse_than_identity_and_consistent(tiny_vae, digits, family):
    x = avae.data.mnist.random_rotations(digits[0][:5], seed=0)[0]
    res = avae.align(tiny_vae, x, family, SMALL)
    P = {"rotation": 1, "affine": 4}[family]
    assert res.A.shape == (5, 2, 3) and res.params.shape == (5, P) and res.loss.shape == res.loss0.shape == (5,)
    assert res.family == family
    with torch.no_grad():
        torch.testing.assert_close(res.loss0, avae.avae_loss(tiny_vae, x))  # the identity is the plain VAE
        torch.testing.assert_close(res.loss, avae.avae_loss(tiny_vae, x, res.A), rtol=1e-4, atol=1e-2)
    assert (res.loss <= res.loss0).all()


def test_recovers_a_known_rotation(template_vae, seven):
    """The stub's loss is minimal exactly where the warp undoes the rotation: the search must get there."""
    degrees = [-150.0, -100.0, -35.0, 0.0, 20.0, 75.0, 170.0]
    x, theta = rotated(seven, degrees)
    res = avae.align(template_vae, x, "rotation", "default")
    err = wrap_angle(res.angle + theta).abs()  # aligning turns each picture back by -theta
    assert err.max() < math.radians(3.0), f"angle errors (degrees): {torch.rad2deg(err).tolist()}"
    assert (res.loss[theta != 0] < 0.5 * res.loss0[theta != 0]).all()
    torch.testing.assert_close(avae.transforms.angle_of(res.A), wrap_angle(-theta), atol=math.radians(3.0), rtol=0)


def test_fast_preset_also_recovers_rotations(template_vae, seven):
    x, theta = rotated(seven, [-120.0, 50.0, 95.0])
    res = avae.align(template_vae, x, "rotation", "fast")
    assert wrap_angle(res.angle + theta).abs().max() < math.radians(6.0)


@pytest.mark.parametrize("training", [True, False])
def test_model_is_left_exactly_as_it_was(digits, training):
    torch.manual_seed(0)
    vae = avae.VAE(latent_dim=2, canvas=28)
    vae.train()
    vae(digits[0][:16])  # move the BatchNorm running statistics away from their defaults
    vae.train(training)
    for p in vae.parameters():
        p.grad = torch.randn_like(p)
    vae.to_mu.weight.requires_grad_(False)  # a frozen layer must stay frozen
    state = {k: v.clone() for k, v in vae.state_dict().items()}
    grads = [p.grad.clone() for p in vae.parameters()]
    flags = [p.requires_grad for p in vae.parameters()]
    avae.align(vae, digits[0][:6], "rotation", SMALL)
    assert vae.training is training
    assert all(m.training is training for m in vae.modules())
    assert all(torch.equal(v, vae.state_dict()[k]) for k, v in state.items())  # weights and BatchNorm buffers
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, vae.parameters()))
    assert flags == [p.requires_grad for p in vae.parameters()]


def test_batch_order_invariance(tiny_vae, digits):
    x = avae.data.mnist.random_rotations(digits[0][:10], seed=1)[0]
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    a = avae.align(tiny_vae, x, "rotation", SMALL)
    b = avae.align(tiny_vae, x[perm], "rotation", SMALL)
    torch.testing.assert_close(b.loss, a.loss[perm], rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(b.A, a.A[perm], rtol=0, atol=1e-4)


def test_chunking_and_batching_do_not_change_results(tiny_vae, digits):
    x = avae.data.mnist.random_rotations(digits[0][:5], seed=2)[0]
    ref = avae.align(tiny_vae, x, "rotation", SMALL)  # 30 (image, candidate) rows in one chunk
    for cfg, batch_size in [(SMALL, 2), (avae.AlignConfig(**{**SMALL.__dict__, "chunk": 7}), 512),
                            (avae.AlignConfig(**{**SMALL.__dict__, "chunk": 2}), 3)]:  # fmt: skip
        got = avae.align(tiny_vae, x, "rotation", cfg, batch_size=batch_size)
        torch.testing.assert_close(got.loss, ref.loss, rtol=1e-5, atol=1e-3)
        torch.testing.assert_close(got.A, ref.A, rtol=0, atol=1e-4)


def test_init_candidates_are_used(template_vae, seven):
    x, theta = rotated(seven, [100.0, -130.0])
    only_identity = avae.AlignConfig(restarts=1, top_k=1, steps=0)  # scores angle 0 and nothing else
    plain = avae.align(template_vae, x, "rotation", only_identity)
    assert torch.equal(plain.params, torch.zeros(2, 1))
    for init in ((-theta)[:, None], torch.stack([torch.zeros(2), -theta, theta], 1)[..., None]):  # (B, P), (B, K, P)
        res = avae.align(template_vae, x, "rotation", only_identity, init=init)
        torch.testing.assert_close(res.angle, wrap_angle(-theta), atol=1e-6, rtol=0)
        assert (res.loss < 0.5 * plain.loss).all()


def test_affine_search_recovers_a_shear_better_than_rotation_alone(template_vae, seven):
    params = torch.tensor([[0.4, 0.35, 0.15, -0.1]])
    x = avae.warp(seven, avae.affine(params))
    rot = avae.align(template_vae, x, "rotation", "default")
    aff = avae.align(template_vae, x, "affine", "default")
    assert aff.loss < rot.loss < rot.loss0
    assert aff.params.shape == (1, 4) and avae.align(template_vae, x, "affine_t", "fast").params.shape == (1, 6)


def test_init_span_brackets_a_warm_start(template_vae, seven):
    """With ``init_span`` a guess a few degrees off is bracketed and refined by one step; without
    it, a lone guess far from every grid angle has no bracket and stays where it was."""
    x, theta = rotated(seven, [100.0, -130.0, 150.0])
    guess = -theta + math.radians(4.0)  # last epoch's answer, slightly stale
    coarse = avae.AlignConfig(restarts=1, top_k=1, steps=1)
    spanned = avae.AlignConfig(restarts=1, top_k=1, steps=1, init_span=0.2)
    plain = avae.align(template_vae, x, "rotation", coarse, init=guess[:, None])
    res = avae.align(template_vae, x, "rotation", spanned, init=guess[:, None])
    err = (res.angle - wrap_angle(-theta)).abs()
    assert (err < math.radians(1.5)).all(), torch.rad2deg(err)
    torch.testing.assert_close(plain.angle, wrap_angle(guess), atol=1e-5, rtol=0)
    assert (res.loss < plain.loss).all()
    assert search_cost(spanned, n_init=1) == 1 + 3 + 1 and search_cost(coarse, n_init=1) == 1 + 1 + 1


@pytest.mark.parametrize("span", [-0.1, math.pi, float("nan"), "0.2"])
def test_init_span_must_be_radians_in_range(span):
    with pytest.raises(ValueError, match="init_span"):
        avae.AlignConfig(init_span=span)


def test_for_device_uses_big_chunks_off_the_cpu():
    from avae_tutorial.align import GPU_CHUNK, for_device

    cfg = avae.AlignConfig(restarts=5, chunk=64)
    assert for_device(cfg, "cpu") is cfg
    assert for_device(cfg, "meta") == avae.AlignConfig(restarts=5, chunk=GPU_CHUNK)


@pytest.mark.parametrize("family", ["rotation", "affine"])
def test_a_grid_of_one_angle_is_refined_around_the_circle(tiny_vae, digits, family):
    """restarts=1: the identity alone is the grid; its bracket is the whole circle."""
    x = digits[0][:3]
    res = avae.align(tiny_vae, x, family, avae.AlignConfig(restarts=1, steps=2))
    assert res.loss.shape == (3,) and (res.loss <= res.loss0).all()


def test_bfloat16_scoring_reports_exact_losses_unless_told_not_to(tiny_vae, digits):
    """A bfloat16 search re-scores its winner in float32 (exact); ``exact=False`` keeps the
    bfloat16 scores, saves that pass and the identity's float32 pass, and chooses alike."""
    from dataclasses import replace

    x = avae.data.mnist.random_rotations(digits[0][:8], seed=3)[0]
    bf = replace(SMALL, precision="bfloat16")
    exact = avae.align(tiny_vae, x, "rotation", bf)
    rough = avae.align(tiny_vae, x, "rotation", replace(bf, exact=False))
    with torch.no_grad():
        torch.testing.assert_close(exact.loss, avae.avae_loss(tiny_vae, x, exact.A), rtol=1e-4, atol=1e-2)
        torch.testing.assert_close(exact.loss0, avae.avae_loss(tiny_vae, x))
        true = avae.avae_loss(tiny_vae, x, rough.A)
    assert not torch.allclose(rough.loss, true, rtol=1e-5, atol=1e-5)  # bfloat16 scores, not re-scored ...
    torch.testing.assert_close(rough.loss, true, rtol=0.02, atol=0.5)  # ... but close to them
    assert (wrap_angle(rough.angle - exact.angle).abs() < 0.05).float().mean() >= 0.75
    assert search_cost(replace(bf, exact=False)) == search_cost(bf) - 1
    with pytest.raises(ValueError, match="exact"):
        avae.AlignConfig(exact=1)


def test_passes_are_counted_per_image_and_match_the_config(tiny_vae, digits):
    """``AlignResult.passes`` counts the VAE passes each image cost: a plain search spends
    exactly ``search_cost`` on every image (Adam's backward counting as two)."""
    from dataclasses import replace

    x = avae.data.mnist.random_rotations(digits[0][:6], seed=4)[0]
    for family, cfg in (("rotation", SMALL), ("affine", replace(SMALL, steps=2))):
        res = avae.align(tiny_vae, x, family, cfg)
        assert res.passes.shape == (6,) and res.passes.dtype == torch.long
        assert (res.passes == search_cost(cfg, family)).all(), (family, res.passes)
    res = avae.align(tiny_vae, x, "rotation", replace(SMALL, top_k=3))  # an image may have fewer basins
    assert (res.passes <= search_cost(replace(SMALL, top_k=3))).all()


def test_aligning_a_batch_equals_aligning_its_halves(tiny_vae, digits):
    """Row for row, a batch's result does not depend on which other images are in it, so that
    alignment can be split across processes: the same digits in one batch, in two halves and
    in small batches give equal angles, losses and passes."""
    from dataclasses import replace

    x = avae.data.mnist.random_rotations(digits[0][:12], seed=5)[0]
    vae = _with_pose_net(tiny_vae)
    for cfg in (SMALL, preset_of(vae, "default"), preset_of(vae, "fast"), replace(SMALL, precision="bfloat16")):
        whole = avae.align(vae, x, "rotation", cfg)
        halves = [avae.align(vae, h, "rotation", cfg) for h in (x[:5], x[5:])]
        small = avae.align(vae, x, "rotation", cfg, batch_size=3)
        for got in (halves, [small]):
            for name in ("params", "loss", "loss0", "passes"):
                assert torch.equal(torch.cat([getattr(r, name) for r in got]), getattr(whole, name)), (cfg, name)


def _with_pose_net(vae):
    """``vae`` carrying an untrained pose net (seeded)."""
    import copy

    from avae_tutorial.pose import PoseNet

    torch.manual_seed(1)
    out = copy.deepcopy(vae)
    out.pose_net = PoseNet(vae.canvas, half_turn=True).eval()
    return out


def preset_of(vae, name):
    return avae.preset("rotation", name, pose=vae.pose_net is not None)


def test_restarts_zero_starts_from_the_guesses_only(template_vae, seven):
    """No grid: the guesses (and the identity, unless ``identity=False``) are the candidates."""
    x, theta = rotated(seven, [100.0, -130.0])
    guess = (-theta + math.radians(4.0))[:, None]
    cfg = avae.AlignConfig(restarts=0, steps=1, init_span=0.2)
    res = avae.align(template_vae, x, "rotation", cfg, init=guess)
    assert (res.passes == 1 + 3 + 1).all() and (res.passes == search_cost(cfg, n_init=1)).all()
    assert (wrap_angle(res.angle + theta).abs() < math.radians(1.5)).all()
    bare = avae.align(template_vae, x, "rotation", avae.AlignConfig(restarts=0, steps=0, init_span=0.2,
                                                                     identity=False), init=guess)  # fmt: skip
    assert (bare.passes == 3).all() and torch.isnan(bare.loss0).all()
    with pytest.raises(ValueError, match="restarts=0"):
        avae.align(template_vae, x, "rotation", cfg)


def test_auto_precision_picks_bfloat16_only_where_it_is_measured_faster(monkeypatch, bfloat16_auto):
    """``"auto"``: bfloat16 on CPUs with AMX and on CUDA GPUs that support it; float32 on a CPU
    whose only bfloat16 path is AVX512-BF16 (an AMD EPYC, Zen 4), and on other devices."""
    from avae_tutorial.align import scoring_dtype

    auto = avae.AlignConfig(precision="auto")
    for amx, avx512_bf16, want in ((True, True, torch.bfloat16), (False, True, torch.float32),
                                   (False, False, torch.float32)):  # fmt: skip
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v, raising=False)
        assert scoring_dtype(auto, "cpu") == want, (amx, avx512_bf16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert scoring_dtype(auto, "cuda") == torch.bfloat16
    assert scoring_dtype(auto, "meta") == torch.float32
    assert scoring_dtype(avae.AlignConfig(precision="bfloat16"), "cpu") == torch.bfloat16


class _OraclePose(torch.nn.Module):
    """A stub pose net: for each image, in order of the batch, the given ``(cos, sin)`` outputs."""

    def __init__(self, angle: torch.Tensor, length: torch.Tensor, half_turn: bool = False):
        super().__init__()
        self.angle, self.length, self.half_turn, self.seen = angle, length, half_turn, 0

    def outputs(self, x):
        a, n = self.angle[self.seen : self.seen + len(x)], self.length[self.seen : self.seen + len(x)]
        self.seen += len(x)
        one = torch.stack([a.cos(), a.sin()], 1) * n[:, None]
        out = torch.cat([one, torch.stack([(2 * a).cos(), (2 * a).sin()], 1) * n[:, None]], 1) if self.half_turn else one
        return torch.cat([out, out[-1:].expand(len(x) - len(a), -1)]) if len(a) < len(x) else out  # chunk padding


def test_adaptive_search_scores_the_grid_only_for_unsure_guesses(template_vae, seven):
    """``confident``: a sure guess is refined alone; an unsure one (a short pose vector) also scores
    the grid, and finds the answer that its wrong guess missed."""
    import copy
    from dataclasses import replace

    x, theta = rotated(seven, [100.0, -130.0, 20.0, 60.0])
    truth = wrap_angle(-theta)
    guess = truth + torch.tensor([0.05, -0.05, 2.5, 2.0])  # the last two in the wrong valley
    length = torch.tensor([0.99, 0.99, 0.3, 0.95])  # ... but only the third one knows it
    vae = copy.deepcopy(template_vae)
    cfg = avae.AlignConfig(restarts=12, top_k=1, steps=3, init_span=0.15, pose=True, confident=0.9)
    vae.pose_net = _OraclePose(guess, length)
    res = avae.align(vae, x, "rotation", cfg)
    first = 1 + 3 + 3  # identity, the guess +- span, 3 steps
    assert res.passes.tolist() == [first, first, first + 11 + 3, first], res.passes
    err = wrap_angle(res.angle - truth).abs()
    assert (err[:3] < math.radians(2.0)).all() and err[3] > 1.0, torch.rad2deg(err)
    assert search_cost(cfg, pose_net=vae.pose_net) == first + 11 + 3
    assert res.grid.tolist() == [False, False, True, False]  # which images went on
    vae.pose_net = _OraclePose(guess, length)
    whole = avae.align(vae, x, "rotation", replace(cfg, confident=None))  # not adaptive: everyone scores the grid
    assert (whole.passes == 12 + 3 + 3).all() and (wrap_angle(whole.angle - truth).abs() < math.radians(2.0)).all()
    assert whole.grid.all()


def test_settle_stops_refining_where_the_parabola_promises_little(template_vae, seven):
    """``settle``: after ``settle_after`` steps only the starts whose parabola still predicts a gain
    above ``settle`` nats go on; a guess on the answer stops there, a guess off it goes on, and both
    end on the answer."""
    from dataclasses import replace

    x, theta = rotated(seven, [100.0, -130.0])
    truth = wrap_angle(-theta)
    guess = (truth + torch.tensor([0.0, math.radians(6.0)]))[:, None]
    cfg = avae.AlignConfig(restarts=0, steps=6, init_span=0.15, settle=0.05, settle_after=1)
    res = avae.align(template_vae, x, "rotation", cfg, init=guess)
    assert res.passes[0] == 1 + 3 + 1 and res.passes[1] > res.passes[0], res.passes
    assert (res.passes <= search_cost(cfg, n_init=1)).all() and not res.grid.any()
    assert (wrap_angle(res.angle - truth).abs() < math.radians(1.0)).all(), torch.rad2deg(res.angle - truth)
    full = avae.align(template_vae, x, "rotation", replace(cfg, settle=None), init=guess)
    assert (full.passes == 1 + 3 + 6).all() and (res.loss <= full.loss + 0.05).all()
    with pytest.raises(ValueError, match="settle"):
        avae.AlignConfig(settle=-1.0)


def test_a_start_that_cannot_beat_the_best_found_elsewhere_is_not_refined(template_vae, seven):
    """``_refine_angle`` with ``best``: rows whose parabola does not promise a loss below the image's
    best by more than ``settle`` take no step (the grid stage's basins that cannot beat the guess)."""
    from avae_tutorial.families import get_family
    from avae_tutorial.refine import _refine_angle

    x, theta = rotated(seven, [100.0, -130.0])
    b = wrap_angle(-theta) + 0.05
    a, c = b - 0.2, b + 0.2
    f = [avae.avae_loss(template_vae, x, avae.rotation(t)).detach() for t in (a, b, c)]
    cfg = avae.AlignConfig(steps=4, settle=0.01, settle_after=2)
    img = torch.arange(2)
    spent = torch.zeros(2, dtype=torch.long)
    best = torch.stack([f[1][0] - 100.0, torch.tensor(math.inf)])  # image 0 has a far better answer elsewhere
    out = _refine_angle(template_vae, x, img, a, b, c, *f, get_family("rotation"), cfg, spent, best)
    assert spent[0] == 0 and out[1][0] == b[0] and out[4][0] == f[1][0]  # image 0 untouched
    assert 0 < spent[1] <= cfg.steps and out[4][1] < f[1][1]


class _SecondLook(torch.nn.Module):
    """A stub pose net that answers ``first`` (angles, with vector lengths ``length``) for the images
    as given, then ``second`` for the images turned by the search's answer (the consistency check)."""

    def __init__(self, first: torch.Tensor, length: torch.Tensor, second: torch.Tensor):
        super().__init__()
        self.calls, self.first, self.length, self.second = 0, first, length, second

    def outputs(self, x):
        a, n = (self.first, self.length) if self.calls == 0 else (self.second, torch.ones_like(self.second))
        self.calls += 1
        return torch.stack([a.cos(), a.sin()], 1)[: len(x)] * n[: len(x), None]


def test_a_confident_guess_the_net_does_not_read_as_upright_also_scores_the_grid(template_vae, seven):
    """``consistent``: shown the image turned by its refined answer, the net should read it as upright;
    a confident guess in the wrong valley that it then reads as still turned goes on to the grid."""
    import copy
    from dataclasses import replace

    x, theta = rotated(seven, [100.0, -130.0, 150.0])
    truth = wrap_angle(-theta)
    guess = truth + torch.tensor([0.05, -0.05, 2.0])  # the last one confidently in the wrong valley
    vae = copy.deepcopy(template_vae)
    cfg = avae.AlignConfig(restarts=12, top_k=1, steps=3, init_span=0.15, pose=True, confident=0.5, consistent=0.4)
    vae.pose_net = _SecondLook(guess, torch.ones(3), torch.tensor([0.02, -0.1, 1.9]))
    res = avae.align(vae, x, "rotation", cfg)
    first = 1 + 3 + 3
    assert res.passes.tolist() == [first, first, first + 11 + 3], res.passes
    assert (wrap_angle(res.angle - truth).abs() < math.radians(2.0)).all()
    vae.pose_net = _SecondLook(guess, torch.ones(3), torch.tensor([0.02, -0.1, 1.9]))
    trusting = avae.align(vae, x, "rotation", replace(cfg, consistent=None))  # no second look: the guess stays
    assert trusting.passes.tolist() == [first] * 3 and wrap_angle(trusting.angle[2] - truth[2]).abs() > 1.0
    with pytest.raises(ValueError, match="consistent"):
        avae.AlignConfig(consistent=-0.1)


def test_a_half_turn_head_guesses_both_sides(template_vae, seven):
    """A pose net with a half-turn head guesses its axis and half a turn from it: a guess that is
    right up to a half turn is found without the grid."""
    import copy

    x, theta = rotated(seven, [100.0, -130.0])
    truth = wrap_angle(-theta)
    vae = copy.deepcopy(template_vae)
    vae.pose_net = _OraclePose(truth + math.pi, torch.ones(2), half_turn=True)  # the plain head is wrong
    vae.pose_net.angle = truth + math.pi
    res = avae.align(vae, x, "rotation", avae.AlignConfig(restarts=0, steps=2, init_span=0.15, pose=True))
    assert (res.passes == 1 + 3 + 1 + 2).all()
    assert (wrap_angle(res.angle - truth).abs() < math.radians(2.0)).all()


class _BinsOracle(torch.nn.Module):
    """A stub pose net with bins: for each image, in order of the batch, peaks at ``mu (B, J)``
    weighted ``weight (B, J)`` (logits of a mixture of von Mises bumps)."""

    half_turn = False

    def __init__(self, mu: torch.Tensor, weight: torch.Tensor, bins: int = 36):
        super().__init__()
        self.mu, self.weight, self.bins, self.seen = mu, weight, bins, 0

    def outputs(self, x):
        mu, w = self.mu[self.seen : self.seen + len(x)], self.weight[self.seen : self.seen + len(x)]
        self.seen = (self.seen + len(x)) % len(self.mu)  # the consistency check reads the batch again
        centers = torch.arange(self.bins) * (2 * math.pi / self.bins)
        out = (w[:, :, None] * torch.exp(20.0 * (torch.cos(centers - mu[:, :, None]) - 1))).sum(1).clamp_min(1e-30).log()
        return torch.cat([out, out[-1:].expand(len(x) - len(mu), -1)]) if len(mu) < len(x) else out  # chunk padding


def test_a_bins_pose_net_offers_its_peaks_and_the_second_finds_what_the_first_missed(template_vae, seven):
    """Each peak of a bins net is a guess scored at once; the best basin among them is refined
    first, another only while it promises to beat the image's best by ``settle``, so a digit whose
    heavier peak is in the wrong valley is found through its second, without the grid."""
    import copy
    from dataclasses import replace

    x, theta = rotated(seven, [100.0, -130.0, 40.0])
    truth = wrap_angle(-theta)
    off = torch.tensor([0.03, 2.6, 0.03])  # the second digit's heavier peak is in the wrong valley
    mu = torch.stack([truth + off, truth + torch.tensor([math.pi, 0.02, math.pi])], 1)
    weight = torch.tensor([[1.0, 0.5], [1.0, 0.6], [1.0, 0.5]])
    vae = copy.deepcopy(template_vae)
    vae.pose_net = _BinsOracle(mu, weight)
    cfg = avae.AlignConfig(restarts=8, top_k=2, steps=6, init_span=0.15, pose=True, confident=0.0, settle=0.05,
                           settle_after=2, peaks=2)  # fmt: skip
    res = avae.align(vae, x, "rotation", cfg)
    err = wrap_angle(res.angle - truth).abs()
    assert (err < math.radians(1.5)).all(), torch.rad2deg(err)
    assert not res.grid.any()  # every guess trusted: no digit scored the grid
    vae.pose_net = _BinsOracle(mu, weight)
    one = avae.align(vae, x, "rotation", replace(cfg, peaks=1))  # the heavier peak alone
    assert wrap_angle(one.angle - truth).abs()[1] > 1.0  # ... misses the second digit's answer
    # the first and third digits: the second peak is scored (one pass) and, promising nothing, not refined
    assert res.passes[0] == one.passes[0] + 1 and res.passes[2] == one.passes[2] + 1, (res.passes, one.passes)
    assert (res.passes <= search_cost(cfg, pose_net=vae.pose_net)).all()
    assert search_cost(cfg, pose_net=vae.pose_net) == search_cost(cfg) == (1 + 3 + 1 + 2 * 6) + 7 + 2 * 6  # at most
