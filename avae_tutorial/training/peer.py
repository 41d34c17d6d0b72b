"""An amortized peer (chapter 6): a VAE whose encoder also predicts the rotation, in the spirit of
spatial-VAE (Bepler et al. 2019), the approach the AVAE's search is measured against.

The encoder reads the image as it comes and returns, beside ``(mu, logvar)`` of the code ``z``, the
image's rotation ``angle`` (read with ``atan2`` from a predicted ``(cos, sin)``) and the log-variance
of that angle. The decoder draws the digit at its own pose and the package's one warp turns it back:
``x_hat = warp(decode(z), rotation(angle)^-1) = generate(vae, z, rotation(angle))``. The angle is in
:func:`~avae_tutorial.align`'s convention (the image warped by ``rotation(angle)`` is what the
decoder draws), so the peer's answer and the search's compare directly. Test time costs one pass of
the encoder and one of the decoder per image: no search.

Training maximizes the ELBO with both latents sampled: ``z ~ N(mu, exp(logvar))`` against
``N(0, I)``, and the angle ``~ N(angle, exp(angle_logvar))`` taken round the circle, against a
uniform prior on the circle: its KL is ``log(2 pi)`` minus the posterior's entropy, the entropy of
the normal (the spread is held at or below 1 radian, where wrapping lowers it by at most 0.005
nats: the term is then the circle's KL to that much, a hair below it).
The budget and data are those of the aligned regime (:class:`PeerConfig`); training is
:func:`avae_tutorial.training.peer_fit.fit_peer`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from .._checks import check_images, check_positive_int, check_same_device
from ..loss import EPS
from ..model import VAE, for_inference
from ..transforms import _invert, _rotation, _warp

__all__ = ["AmortizedVAE", "PeerConfig", "peer_terms", "peer_loss", "peer_encode", "ANGLE_LOGVAR_MAX",
           "ANGLE_LOGVAR_START"]

#: The angle's log-variance is held at or below this (a spread of 1 radian): the normal's entropy is
#: then the wrapped normal's to 0.005 nats (0.3%), so the angle's KL term is the circle's to that much.
ANGLE_LOGVAR_MAX = 0.0
#: ... and starts here (a spread of 0.1 radian, about 6 degrees), so that the decoder learns from
#: the start with the angle nearly as predicted: in a trial on 2,560 digits for 6 epochs, a peer
#: whose spread started at 1 radian ended 28 nats worse than one with no noise on the angle, and
#: no better at the angle.
ANGLE_LOGVAR_START = 2 * math.log(0.1)


class AmortizedVAE(VAE):
    """A :class:`~avae_tutorial.VAE` with one more head on its encoder: the rotation of the image.

    ``infer(x) -> (mu, logvar, angle, angle_logvar)``, one encoder pass; ``encode``/``decode`` are
    the VAE's. ``angle`` is in radians, in :func:`~avae_tutorial.align`'s convention.
    """

    def __init__(self, latent_dim: int = 8, canvas: int = 40, channels: int = 1):
        super().__init__(latent_dim, canvas, channels)
        self.to_pose = nn.Linear(math.prod(self._flat), 3)  # (cos, sin, log-variance of the angle)
        with torch.no_grad():
            self.to_pose.bias[2] = ANGLE_LOGVAR_START

    def infer(self, x: torch.Tensor):
        h = self.encoder(x)  # (B, 16*s4*s4)
        pose = self.to_pose(h)  # (B, 3)
        angle = torch.atan2(pose[:, 1], pose[:, 0])  # (B,)
        return self.to_mu(h), self.to_logvar(h), angle, pose[:, 2].clamp(max=ANGLE_LOGVAR_MAX)


@dataclass
class PeerConfig:
    """The peer's training: the aligned regime's budget (``avae-transopt``: the first 12,800 MNIST
    training digits, 8 epochs, latent 8, batches of 128, Adam 1e-3 with weight decay 5e-4, the same
    rotations and batches, seeded)."""

    latent_dim: int = 8
    canvas: int = 40
    epochs: int = 8
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 5e-4
    train_limit: int | None = 12800
    test_limit: int = 1000
    seed: int = 0

    def __post_init__(self):
        for name in ("latent_dim", "epochs", "batch_size", "test_limit"):
            check_positive_int(getattr(self, name), name)
        check_positive_int(self.seed, "seed", minimum=0)
        if self.train_limit is not None:
            check_positive_int(self.train_limit, "train_limit", minimum=2)
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr: expected a positive float, got {self.lr!r}")


def peer_terms(vae: AmortizedVAE, x: torch.Tensor, sample: bool = False):
    """``(rec, kl, kl_angle, angle)``, each ``(B,)``: the Bernoulli reconstruction of ``x`` from
    ``warp(decode(z), rotation(angle)^-1)``, the code's KL, the angle's KL against the uniform
    prior on the circle and the predicted angle. ``z = mu`` and the angle at its mean unless
    ``sample`` (both drawn: a one-sample estimate of the negative ELBO is ``rec + kl + kl_angle``).
    Inputs taken as checked."""
    mu, logvar, angle, angle_logvar = vae.infer(x)
    z, theta = mu, angle
    if sample:
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        theta = angle + torch.randn_like(angle) * torch.exp(0.5 * angle_logvar)
    x_hat = _warp(vae.decode(z), _invert(_rotation(theta))).to(x.dtype)
    p = EPS + (1 - 2 * EPS) * x_hat
    rec = -(x * torch.log(p) + (1 - x) * torch.log1p(-p)).flatten(1).sum(1)  # (B,)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)  # (B,)
    kl_angle = math.log(2 * math.pi) - 0.5 * (math.log(2 * math.pi * math.e) + angle_logvar)  # log 2pi - entropy
    return rec, kl, kl_angle, angle


def _check(vae, x: torch.Tensor) -> None:
    if not isinstance(vae, AmortizedVAE):
        raise TypeError(f"vae: expected an AmortizedVAE (the amortized peer), got {type(vae).__name__}")
    check_same_device(vae, x)
    check_images(x, canvas=vae.canvas, channels=vae.channels)


def peer_loss(vae: AmortizedVAE, x: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """Per image ``(N,)``, nats, no gradients, eval mode: the loss at the predicted pose with
    ``z = mu``, ``rec + kl``, the same plug-in surrogate as :func:`~avae_tutorial.avae_loss` at the
    pose the search found (neither counts what the pose itself costs)."""
    _check(vae, x)
    model = for_inference(vae)
    with torch.no_grad():
        return torch.cat([sum(peer_terms(model, x[s : s + chunk])[:2]) for s in range(0, len(x), chunk)])


def peer_encode(vae: AmortizedVAE, x: torch.Tensor, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu (N, L), angle (N,))``: the code's mean and the predicted rotation (radians, in
    :func:`~avae_tutorial.align`'s convention), no gradients, eval mode."""
    _check(vae, x)
    model = for_inference(vae)
    with torch.no_grad():
        outs = [model.infer(x[s : s + chunk]) for s in range(0, len(x), chunk)]
    return torch.cat([o[0] for o in outs]), torch.cat([o[2] for o in outs])
