"""The AVAE loss: negative ELBO per sample, in nats."""
from __future__ import annotations

import torch

from ._checks import check_images, check_matrices, check_same_device
from .model import VAE
from .transforms import _invert, _warp, invert, warp

__all__ = ["avae_loss", "loss_terms", "EPS"]

#: Probabilities are squeezed into [EPS, 1 - EPS] so a pixel costs at most -log(EPS) ~ 13.8 nats
#: (the inverse warp can bring in zeros from outside the canvas).
EPS = 1e-6


def loss_terms(
    vae: VAE, x: torch.Tensor, A: torch.Tensor | None = None, sample: bool = False, check: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(rec, kl, x_hat)``: Bernoulli reconstruction term and KL per sample (B,), and ``x_hat``.

    ``rec = -sum_pixels [x log x_hat + (1 - x) log(1 - x_hat)]`` with
    ``x_hat = warp(decode(z), A^-1)``, ``z = mu`` (or a sample when ``sample``), and
    ``kl = KL(N(mu, exp(logvar)) || N(0, I)) = 1/2 sum(mu^2 + exp(logvar) - 1 - logvar)``
    (Kingma & Welling 2014, appendix B).
    """
    if check:
        check_same_device(vae, x)
        check_images(x, canvas=vae.canvas)
        if A is not None:
            check_matrices(A, batch=x.shape[0])
            check_same_device(vae, A, name="matrices A")
    # check=False: the caller (the search, the training loop) has validated its inputs once.
    warp_, invert_ = (warp, invert) if check else (_warp, _invert)
    xw = x if A is None else warp_(x, A)
    mu, logvar = vae.encode(xw)  # (B, L), (B, L)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
    x_hat = vae.decode(z)  # (B, 1, H, W)
    if A is not None:
        x_hat = warp_(x_hat, invert_(A))
    p = EPS + (1 - 2 * EPS) * x_hat
    rec = -(x * torch.log(p) + (1 - x) * torch.log1p(-p)).flatten(1).sum(1)  # (B,)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)  # (B,)
    return rec, kl, x_hat


def avae_loss(
    vae: VAE, x: torch.Tensor, A: torch.Tensor | None = None, sample: bool = False, check: bool = True
) -> torch.Tensor:
    """Negative ELBO per sample ``(B,)`` in nats; ``A=None`` means the identity (the plain VAE).

    Deterministic (``z = mu``) unless ``sample``; callers reduce. The model's train/eval mode is
    left as it is: evaluate in ``vae.eval()`` mode.
    """
    rec, kl, _ = loss_terms(vae, x, A, sample=sample, check=check)
    return rec + kl
