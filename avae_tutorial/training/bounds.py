"""An importance-weighted bound of ``-log p(x)`` (chapter 6): how far the ``z = mu`` loss that ranks
the models is from a bound on the likelihood (Burda, Grosse and Salakhutdinov 2016).

For an image ``x`` seen through a warp ``A`` (the model encodes ``warp(x, A)`` and its decoder's
picture is warped back by ``A^-1``), draw ``z_1..z_k`` from ``q(z | warp(x, A))`` and weigh each by
``w_j = p(x | z_j) p(z_j) / q(z_j | warp(x, A))``. Then ``-log (1/k sum_j w_j)`` bounds
``-log p_A(x)`` from above in expectation, is the one-sample negative ELBO for ``k = 1``, and comes
down towards ``-log p_A(x)`` as ``k`` grows. ``p_A`` is the model seen through ``A``: a pose chosen
per image from ``K`` candidates adds at most ``log K`` to bound the model that picks it uniformly.
"""
from __future__ import annotations

import math

import torch

from .._checks import check_positive_int
from ..loss import EPS
from ..model import VAE, check_inputs, for_inference
from ..transforms import _invert, _warp

__all__ = ["iwae_bound", "log_weights", "bounds_from_weights"]


def iwae_bound(vae: VAE, x: torch.Tensor, A: torch.Tensor | None = None, k: int = 100, seed: int = 0,
               chunk: int = 4096) -> torch.Tensor:  # fmt: skip
    """Per image ``(B,)``, nats: the ``k``-sample importance-weighted bound of ``-log p(x)`` at poses
    ``A (B, 2, 3)`` (``None``: the identity), eval mode, no gradients, seeded. Bernoulli pixels as
    :func:`~avae_tutorial.avae_loss`; ``chunk`` bounds the decoded samples held at once."""
    return bounds_from_weights(log_weights(vae, x, A, k, seed, chunk))[0]


def bounds_from_weights(log_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(iwae, elbo)``, each ``(B,)``, nats, from log-weights ``(B, k)``: the importance-weighted
    bound ``-log(1/k sum_j w_j)`` and the ``k``-sample estimate of the negative ELBO,
    ``-1/k sum_j log w_j``, which is never below it (Jensen's inequality, draw by draw)."""
    return -(torch.logsumexp(log_w, 1) - math.log(log_w.shape[1])), -log_w.mean(1)


def log_weights(vae: VAE, x: torch.Tensor, A: torch.Tensor | None = None, k: int = 100, seed: int = 0,
                chunk: int = 4096) -> torch.Tensor:  # fmt: skip
    """``(B, k)``: ``log w_j = log p(x | z_j) + log p(z_j) - log q(z_j | warp(x, A))`` for ``k`` codes
    drawn per image from the encoder's posterior (arguments as :func:`iwae_bound`)."""
    check_inputs(vae, x, A)
    check_positive_int(k, "k")
    check_positive_int(chunk, "chunk")
    model = for_inference(vae)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    per = max(1, chunk // k)  # images per chunk
    out = []
    with torch.no_grad():
        for s in range(0, len(x), per):
            xs, As = x[s : s + per], None if A is None else A[s : s + per]
            out.append(_log_weights(model, xs, As, k, gen))
    return torch.cat(out)


def _log_weights(model, x: torch.Tensor, A: torch.Tensor | None, k: int, gen: torch.Generator) -> torch.Tensor:
    B = len(x)
    mu, logvar = model.encode(x if A is None else _warp(x, A))  # (B, L)
    eps = torch.randn((B, k, mu.shape[1]), generator=gen, device=x.device, dtype=mu.dtype)
    z = mu[:, None] + eps * torch.exp(0.5 * logvar)[:, None]  # (B, k, L)
    x_hat = model.decode(z.flatten(0, 1))  # (B*k, C, H, W)
    if A is not None:
        x_hat = _warp(x_hat, _invert(A).repeat_interleave(k, 0))
    p = (EPS + (1 - 2 * EPS) * x_hat.to(x.dtype)).view(B, k, *x.shape[1:])
    log_px = (x[:, None] * torch.log(p) + (1 - x[:, None]) * torch.log1p(-p)).flatten(2).sum(2)  # (B, k)
    log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(2)  # (B, k)
    log_qz = -0.5 * (eps.pow(2) + logvar[:, None] + math.log(2 * math.pi)).sum(2)  # (B, k)
    return log_px + log_pz - log_qz  # (B, k)
