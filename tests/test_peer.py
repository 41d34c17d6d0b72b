"""The amortized peer (training/peer.py, training/peer_fit.py): shapes, its loss, its angle
convention, a training step that lowers the loss, and its checkpoint."""
from __future__ import annotations

import math

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.training.checkpoint import checkpoint_dict, model_from_checkpoint
from avae_tutorial.training.peer import AmortizedVAE, PeerConfig, peer_encode, peer_loss, peer_terms
from avae_tutorial.training.peer_fit import fit_peer

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def peer() -> AmortizedVAE:
    torch.manual_seed(0)
    return AmortizedVAE(latent_dim=2, canvas=28).eval()


def test_forward_shapes(peer, digits):
    x = digits[0][:5]
    with torch.no_grad():
        mu, logvar, angle, angle_logvar = peer.infer(x)
        rec, kl, kl_angle, angle2 = peer_terms(peer, x)
    assert mu.shape == logvar.shape == (5, 2) and angle.shape == angle_logvar.shape == (5,)
    assert float(angle.abs().max()) <= math.pi and float(angle_logvar.max()) <= 0.0
    assert rec.shape == kl.shape == kl_angle.shape == (5,) and torch.equal(angle2, angle)
    mu2, angle3 = peer_encode(peer, x)
    torch.testing.assert_close(mu2, mu, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(angle3, angle, atol=1e-5, rtol=1e-5)


def test_loss_is_finite_and_is_the_reconstruction_at_the_predicted_pose(peer, digits):
    """``peer_loss`` = Bernoulli loss of ``x`` against ``generate(vae, mu, rotation(angle))`` + KL of z."""
    x = digits[0][:6]
    loss = peer_loss(peer, x)
    assert loss.shape == (6,) and torch.isfinite(loss).all() and float(loss.min()) > 0
    with torch.no_grad():
        mu, logvar, angle, _ = peer.infer(x)
        p = avae.loss.EPS + (1 - 2 * avae.loss.EPS) * avae.generate(peer, mu, avae.rotation(angle))
        rec = -(x * p.log() + (1 - x) * (-p).log1p()).flatten(1).sum(1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
    torch.testing.assert_close(loss, rec + kl, atol=1e-3, rtol=1e-5)


def test_the_angles_kl_is_log_2pi_minus_the_entropy(peer, digits):
    """Against the uniform prior on the circle: log(2 pi) minus the normal's entropy; at the spread's
    cap (1 radian) log(2 pi) - 0.5 log(2 pi e) ~ 0.42 nats, the least it can be."""
    with torch.no_grad():
        _, _, kl_angle, _ = peer_terms(peer, digits[0][:4])
        _, _, _, angle_logvar = peer.infer(digits[0][:4])
    expected = math.log(2 * math.pi) - 0.5 * (math.log(2 * math.pi * math.e) + angle_logvar)
    torch.testing.assert_close(kl_angle, expected)
    assert float(kl_angle.min()) >= math.log(2 * math.pi) - 0.5 * math.log(2 * math.pi * math.e) - 1e-6


def test_sampling_draws_both_latents(peer, digits):
    x = digits[0][:2]
    torch.manual_seed(0)
    a = sum(peer_terms(peer, x, sample=True)[:3])
    b = sum(peer_terms(peer, x, sample=True)[:3])
    assert torch.isfinite(a).all() and not torch.equal(a, b)


def test_a_short_training_lowers_the_loss(digits):
    x, y = digits
    cfg = PeerConfig(latent_dim=2, canvas=28, epochs=3, batch_size=8, train_limit=32, test_limit=8)
    vae, history = fit_peer(cfg, (x, y), progress=False)
    assert isinstance(vae, AmortizedVAE) and not vae.training
    assert len(history["train_loss"]) == 3 and history["train_loss"][-1] < history["train_loss"][0]
    assert all(math.isfinite(v) for v in history["test_loss"])


def test_checkpoint_rebuilds_the_peer(peer, digits):
    ckpt = checkpoint_dict(peer, config={"epochs": 1})
    assert ckpt["pose_head"] is True
    again = model_from_checkpoint(ckpt)
    assert type(again) is AmortizedVAE
    torch.testing.assert_close(peer_loss(again, digits[0][:3]), peer_loss(peer, digits[0][:3]))
    assert "pose_head" not in checkpoint_dict(avae.VAE(2, 28))


def test_bad_inputs_are_refused(peer, digits):
    with pytest.raises(TypeError, match="expected an AmortizedVAE"):
        peer_loss(avae.VAE(2, 28), digits[0][:2])
    with pytest.raises(ValueError, match="expected pixel values in"):
        peer_encode(peer, digits[0][:2] * 3)
    with pytest.raises(TypeError, match="expected a PeerConfig"):
        fit_peer({"epochs": 1}, digits)
    with pytest.raises(ValueError, match="epochs"):
        PeerConfig(epochs=0)
