"""The loss against torch.distributions (reference checks), its identity case and its per-sample shape."""
from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

import avae_tutorial as avae
from avae_tutorial.loss import loss_terms

pytestmark = pytest.mark.usefixtures("single_thread")


def test_terms_match_torch_distributions(tiny_vae, digits):
    x = digits[0][:6]
    rec, kl, x_hat = loss_terms(tiny_vae, x)
    mu, logvar = tiny_vae.encode(x)
    ref_rec = -Bernoulli(probs=tiny_vae.decode(mu), validate_args=False).log_prob(x).flatten(1).sum(1)
    ref_kl = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(rec, ref_rec, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(kl, ref_kl, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(avae.avae_loss(tiny_vae, x), ref_rec + ref_kl, rtol=1e-5, atol=1e-3)


def test_kl_term_uses_log_variance_with_a_nontrivial_posterior(tiny_vae, digits, monkeypatch):
    x = digits[0][:2]
    mu = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    logvar = torch.tensor([[-1.0, 0.7], [0.0, -2.5]])
    monkeypatch.setattr(tiny_vae, "encode", lambda x: (mu, logvar))
    _, kl, _ = loss_terms(tiny_vae, x)
    ref = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(kl, ref)


def test_with_a_transform_matches_the_wrapper_by_hand(tiny_vae, digits):
    x = digits[0][:4]
    A = avae.affine(torch.tensor([[0.3, 0.1, 0.0, 0.1], [1.5, 0.0, -0.1, 0.0], [-2.0, -0.2, 0.1, 0.1], [3.0, 0, 0, 0]]))
    mu, logvar = tiny_vae.encode(avae.warp(x, A))
    x_hat = avae.warp(tiny_vae.decode(mu), avae.invert(A)).clamp(1e-6, 1 - 1e-6)
    ref = -Bernoulli(probs=x_hat, validate_args=False).log_prob(x).flatten(1).sum(1)
    ref = ref + kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(avae.avae_loss(tiny_vae, x, A), ref, rtol=1e-4, atol=1e-2)


def test_none_equals_the_identity_matrix(tiny_vae, digits):
    x = digits[0][:5]
    with_identity = avae.avae_loss(tiny_vae, x, avae.transforms.identity(5))
    torch.testing.assert_close(avae.avae_loss(tiny_vae, x), with_identity, rtol=1e-5, atol=1e-3)


def test_per_sample_shape_and_independence(tiny_vae, digits):
    x = digits[0][:7]
    loss = avae.avae_loss(tiny_vae, x)
    assert loss.shape == (7,) and loss.dtype == torch.float32
    torch.testing.assert_close(avae.avae_loss(tiny_vae, x[2:3]), loss[2:3], rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(avae.avae_loss(tiny_vae, x.flip(0)), loss.flip(0), rtol=1e-5, atol=1e-3)


def test_deterministic_by_default_stochastic_when_sampling(tiny_vae, digits):
    x = digits[0][:3]
    assert torch.equal(avae.avae_loss(tiny_vae, x), avae.avae_loss(tiny_vae, x))
    torch.manual_seed(0)
    a = avae.avae_loss(tiny_vae, x, sample=True)
    assert not torch.allclose(a, avae.avae_loss(tiny_vae, x, sample=True))


def test_gradients_reach_the_weights_and_the_transform(tiny_vae, digits):
    x = digits[0][:2]
    angle = torch.tensor([0.3, -0.2], requires_grad=True)
    avae.avae_loss(tiny_vae, x, avae.rotation(angle)).sum().backward()
    assert angle.grad is not None and torch.isfinite(angle.grad).all() and angle.grad.abs().sum() > 0
    assert all(p.grad is not None for p in tiny_vae.to_mu.parameters())


def test_a_perfect_reconstruction_costs_only_the_entropy(tiny_vae, monkeypatch):
    """Binary x decoded exactly (up to EPS) costs ~0 reconstruction nats: the sign and scale of the term."""
    x = (torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    monkeypatch.setattr(tiny_vae, "encode", lambda x_: (torch.zeros(len(x_), 2), torch.zeros(len(x_), 2)))
    monkeypatch.setattr(tiny_vae, "decode", lambda z: x)
    rec, kl, _ = loss_terms(tiny_vae, x)
    assert (rec >= 0).all() and (rec < 784 * 2e-6).all() and torch.equal(kl, torch.zeros(2))
    monkeypatch.setattr(tiny_vae, "decode", lambda z: torch.full_like(x, 0.5))
    torch.testing.assert_close(loss_terms(tiny_vae, x)[0], torch.full((2,), 784 * 0.6931472), rtol=1e-5, atol=1e-3)
