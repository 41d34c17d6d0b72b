"""Reads of device values on the host (a GPU stall each) do not grow with candidates, steps or layers.

Each test counts them with :class:`avae_tutorial.tools.reads.HostReads` on the CPU, where the same calls
happen; one ``.item()`` added to a loop of the search or of the training step makes it fail.
"""
from __future__ import annotations

import math
import sys

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.training import train as train_mod
from avae_tutorial.tools.reads import HostReads
from avae_tutorial.model import for_inference, refresh_inference
from avae_tutorial.pose import PoseNet

align_mod = sys.modules["avae_tutorial.align"]  # (the package exports the function align under that name)

def reads(fn) -> int:
    with HostReads() as r:
        fn()
    return r.count


def test_the_counter_sees_each_kind_of_read():
    t = torch.arange(6.0)
    assert reads(lambda: t.sum().item()) == 1
    assert reads(lambda: float(t.max())) == 1
    assert reads(lambda: bool((t > 2).any())) == 1
    assert reads(lambda: t[t > 2]) == 1  # a boolean mask: its nonzero runs inside the index
    assert reads(lambda: t.nonzero()) == 1
    assert reads(lambda: t.tolist()) == 1
    assert reads(lambda: torch.where(t > 2, t, -t).sum(0, keepdim=True)) == 0  # stays on the device
    assert reads(lambda: t[torch.tensor([0, 2])]) == 0  # an integer index reads nothing


@pytest.fixture(scope="module")
def posed():
    """A small VAE with a pose net (so ``align`` runs the adaptive default) and 1,024 turned digits."""
    torch.manual_seed(0)
    vae = avae.VAE(2, 28).eval()
    vae.pose_net = PoseNet(28, width=4, bins=24).eval()
    x, _ = avae.data.mnist.synthetic_digits(1024, canvas=28, seed=1)
    return vae, avae.warp(x, avae.rotation(torch.rand(len(x), generator=torch.Generator().manual_seed(2)) * 6.28))


def test_align_default_reads_a_few_times_per_call(posed):
    vae, x = posed
    with HostReads() as r:
        res = avae.align(vae, x)
    assert r.count <= 2 * 12, dict(r.by_op)  # two batches of 512, a gate per refinement step (was 1,719: 1.7 per image)
    assert res.passes.float().mean() > 4  # the adaptive search ran: some digits went on to the grid


@pytest.mark.parametrize("family", ["rotation", "affine"])
def test_align_reads_do_not_grow_with_images(tiny_vae, digits, family):
    x = digits[0][:16]
    cfg = align_mod.AlignConfig(restarts=6, top_k=2, steps=3)
    few = reads(lambda: avae.align(tiny_vae, x[:4], family, cfg, batch_size=4))
    many = reads(lambda: avae.align(tiny_vae, x, family, cfg, batch_size=16))
    assert many == few <= 3


def test_public_functions_read_once(tiny_vae, digits):
    x = digits[0][:8]
    angle = torch.linspace(0, 3, 8)
    A = avae.rotation(angle)
    assert reads(lambda: avae.avae_loss(tiny_vae, x, A)) <= 1  # was 12
    assert reads(lambda: avae.avae_loss(tiny_vae, x)) <= 1
    assert reads(lambda: avae.loss_terms(tiny_vae, x, A)) <= 1
    assert reads(lambda: avae.warp(x, A)) == 1
    assert reads(lambda: avae.invert(A)) == 1
    assert reads(lambda: avae.rotation(angle)) == 1
    assert reads(lambda: avae.affine(torch.zeros(8, 4))) == 1


N, BATCH = 24, 8


@pytest.mark.parametrize("regime", avae.training.train.REGIMES)
def test_fit_reads_per_step_and_epoch(regime):
    """At most 2 reads per training step plus 40 per epoch, in every regime."""
    data = avae.data.mnist.synthetic_digits(N, canvas=28, seed=3)
    epochs, steps = 2, 2 * math.ceil(N / BATCH)
    cfg = avae.TrainConfig(regime, latent_dim=2, canvas=28, epochs=epochs, batch_size=BATCH, test_limit=8,
                           align={"restarts": 4, "top_k": 1, "steps": 1})  # fmt: skip
    with HostReads() as r:
        avae.fit(cfg, data, progress=False)
    assert r.count <= 2 * steps + 40 * epochs, dict(r.by_op)


def test_fit_aligned_reads_do_not_grow_with_batches():
    """The search of each batch reads nothing: more batches of the same digits add at most one read each."""
    data = avae.data.mnist.synthetic_digits(16, canvas=28, seed=3)

    def run(batch):
        cfg = avae.TrainConfig("aligned", latent_dim=2, canvas=28, epochs=1, batch_size=batch, test_limit=4,
                               align={"restarts": 3, "top_k": 1, "steps": 2})  # fmt: skip
        return reads(lambda: avae.fit(cfg, data, progress=False))

    assert run(2) - run(8) <= 8 - 2  # 8 steps against 2: one read (the loss) per step


def test_fit_folds_the_model_once_per_epoch_not_per_batch(monkeypatch):
    """The search runs on one folded copy, refreshed in place after each step; only the per-epoch
    test loss makes a copy of its own."""
    copies = []
    real = for_inference

    def spy(model, *a, **k):
        copies.append(1)
        return real(model, *a, **k)

    monkeypatch.setattr(train_mod, "for_inference", spy)
    monkeypatch.setattr(align_mod, "for_inference", spy)
    data = avae.data.mnist.synthetic_digits(12, canvas=28, seed=3)
    cfg = avae.TrainConfig("aligned", latent_dim=2, canvas=28, epochs=2, batch_size=4, test_limit=4,
                           align={"restarts": 3, "top_k": 1, "steps": 1})  # fmt: skip
    avae.fit(cfg, data, progress=False)
    assert len(copies) == 1 + 2  # the search's copy, and one per epoch's test loss (6 batches)


def test_refresh_matches_a_fresh_fold(digits):
    torch.manual_seed(0)
    vae = avae.VAE(2, 28)
    x = digits[0][:8]
    frozen = for_inference(vae)
    opt = torch.optim.SGD(vae.parameters(), lr=0.5)
    vae.train()
    avae.avae_loss(vae, x).sum().backward()
    opt.step()
    vae(x)  # moves BatchNorm's running statistics too
    vae.eval()
    with torch.no_grad():
        stale = frozen.encode(x)[0]
        fresh = refresh_inference(frozen, vae).encode(x)[0]
        expect = for_inference(vae).encode(x)[0]
    assert torch.equal(fresh, expect)
    assert not torch.allclose(stale, expect)
