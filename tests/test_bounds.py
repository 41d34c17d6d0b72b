"""The importance-weighted bound (training/bounds.py): k = 1 is the one-sample ELBO, more samples
bound tighter, the pose is the loss's, and the answer is seeded."""
from __future__ import annotations

import math

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.training.bounds import bounds_from_weights, iwae_bound, log_weights

pytestmark = pytest.mark.usefixtures("single_thread")


def test_one_sample_is_the_elbo_in_expectation(tiny_vae, digits):
    """E[iwae_bound(k=1)] = rec expected over q + KL = E[avae_loss(sample=True)]: the same quantity,
    estimated with different draws; 400 draws of 4 digits put the two means within 1%."""
    x = digits[0][:4].repeat(100, 1, 1, 1)  # 400 rows: each digit 100 times
    A = avae.rotation(torch.full((400,), 0.7))
    one = iwae_bound(tiny_vae, x, A, k=1, seed=1)
    torch.manual_seed(2)
    with torch.no_grad():
        elbo = avae.avae_loss(tiny_vae, x, A, sample=True)
    assert one.shape == (400,)
    assert float(one.mean()) == pytest.approx(float(elbo.mean()), rel=0.01)


def test_more_samples_bound_tighter_and_below_the_elbo(tiny_vae, digits):
    """Per image, the bound with k = 100 is below the one-sample ELBO's mean (Burda et al.,
    Theorem 1). The decoder is made sensitive to z (its first layer scaled up), so that the weights
    vary and the gap is wide enough to show through 100 draws of the ELBO."""
    with torch.no_grad():
        tiny_vae.from_z[0].weight.mul_(30)
    x = digits[0][:8]
    k1 = torch.stack([iwae_bound(tiny_vae, x, k=1, seed=s) for s in range(100)]).mean(0)  # (8,) ~ the ELBO
    k100 = iwae_bound(tiny_vae, x, k=100, seed=0)
    assert bool((k100 < k1).all()), (k100, k1)


def test_the_bound_cannot_beat_log_p_when_the_posterior_is_the_prior(digits):
    """A decoder that ignores z: p(x|z) is the same for every z, so log p(x) = log p(x|z) exactly and
    every k gives it (the weights are p(z)/q(z) with q = p: 1)."""

    class Flat(avae.VAE):
        def encode(self, x):
            zero = torch.zeros(len(x), self.latent_dim)
            return zero, zero  # q = N(0, I) = the prior

        def decode(self, z):
            return torch.full((len(z), 1, 28, 28), 0.3)

    torch.manual_seed(0)
    vae = Flat(2, 28).eval()
    x = digits[0][:3]
    exact = -(x * math.log(0.3) + (1 - x) * math.log(0.7)).flatten(1).sum(1)
    for k in (1, 7, 100):
        torch.testing.assert_close(iwae_bound(vae, x, k=k), exact, rtol=1e-5, atol=1e-3)


def test_seeded_and_chunked_alike(tiny_vae, digits):
    x = digits[0][:5]
    A = avae.rotation(torch.linspace(0, 3, 5))
    a = iwae_bound(tiny_vae, x, A, k=20, seed=3, chunk=20)  # one image per chunk
    b = iwae_bound(tiny_vae, x, A, k=20, seed=3, chunk=4096)
    assert a.shape == (5,) and torch.isfinite(a).all()
    torch.testing.assert_close(a, iwae_bound(tiny_vae, x, A, k=20, seed=3, chunk=20))
    # different chunking draws the same numbers in another order per image: close, not equal
    assert float((a - b).abs().max()) < 0.05 * float(a.abs().max())


def test_bad_inputs(tiny_vae, digits):
    with pytest.raises(ValueError, match="k: expected a positive int"):
        iwae_bound(tiny_vae, digits[0][:2], k=0)
    with pytest.raises(ValueError, match="expected pixel values"):
        iwae_bound(tiny_vae, digits[0][:2] * 3)
    with pytest.raises(ValueError, match="A: expected 2 matrices"):
        iwae_bound(tiny_vae, digits[0][:2], avae.rotation(torch.zeros(3)))


def test_the_elbo_from_the_same_draws_is_never_below_the_bound(tiny_vae, digits):
    """Draw by draw: -log mean w <= -mean log w (Jensen); both come from the same weights."""
    log_w = log_weights(tiny_vae, digits[0][:4], k=30, seed=0)
    iwae, elbo = bounds_from_weights(log_w)
    assert log_w.shape == (4, 30) and bool((iwae <= elbo + 1e-4).all())
    torch.testing.assert_close(iwae, iwae_bound(tiny_vae, digits[0][:4], k=30, seed=0))
