"""The AVAE loss per sample, in nats: Bernoulli reconstruction plus KL (chapter 1)."""
from __future__ import annotations

import torch

from .model import VAE, avae_forward, check_inputs

__all__ = ["avae_loss", "loss_terms", "chunked_loss", "EPS"]

#: Probabilities are squeezed into [EPS, 1 - EPS] so a pixel costs at most -log(EPS) ~ 13.8 nats
#: (the inverse warp can bring in zeros from outside the canvas).
EPS = 1e-6


def loss_terms(
    vae: VAE, x: torch.Tensor, A: torch.Tensor | None = None, sample: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(rec, kl, x_hat)``: Bernoulli reconstruction term and KL per sample (B,), and ``x_hat``.

    ``rec = -sum_pixels [x log x_hat + (1 - x) log(1 - x_hat)]`` with
    ``x_hat = warp(decode(z), A^-1)``, ``z = mu`` (or a sample when ``sample``), and
    ``kl = KL(N(mu, exp(logvar)) || N(0, I)) = 1/2 sum(mu^2 + exp(logvar) - 1 - logvar)``
    (Kingma & Welling 2014, appendix B). Checks shapes, devices and values (pixels finite and in
    [0, 1], matrices invertible) with one read of the device.
    """
    check_inputs(vae, x, A)
    return _loss_terms(vae, x, A, sample)


def _loss_terms(vae: VAE, x: torch.Tensor, A: torch.Tensor | None = None, sample: bool = False):
    """:func:`loss_terms` without the checks: the search and the training step call it on inputs
    their public entry already checked (no read of the device)."""
    # float32 from here on, also when the network ran in bfloat16 (autocast): 1 - EPS rounds to
    # 1 in bfloat16 or float16, and log(1 - p) would be -inf on a confident black pixel.
    x_hat, mu, logvar = (t.to(x.dtype) for t in avae_forward(vae, x, A, sample))
    p = EPS + (1 - 2 * EPS) * x_hat
    rec = -(x * torch.log(p) + (1 - x) * torch.log1p(-p)).flatten(1).sum(1)  # (B,)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)  # (B,)
    return rec, kl, x_hat


def avae_loss(vae: VAE, x: torch.Tensor, A: torch.Tensor | None = None, sample: bool = False) -> torch.Tensor:
    """The loss per sample ``(B,)`` in nats; ``A=None`` means the identity (the plain VAE).

    With ``sample`` it is a one-sample estimate of the negative ELBO; with ``z = mu`` (the
    default) a deterministic plug-in surrogate of it. Callers reduce. The model's train/eval
    mode is left as it is: evaluate in eval mode.
    """
    check_inputs(vae, x, A)
    return _avae_loss(vae, x, A, sample)


def _avae_loss(vae: VAE, x: torch.Tensor, A: torch.Tensor | None = None, sample: bool = False) -> torch.Tensor:
    """:func:`avae_loss` without the checks."""
    rec, kl, _ = _loss_terms(vae, x, A, sample=sample)
    return rec + kl


def chunked_loss(
    model, x: torch.Tensor, A: torch.Tensor | None = None, idx: torch.Tensor | None = None, chunk: int = 512
) -> torch.Tensor:
    """No-grad loss of rows ``(x[idx[i]], A[i])``, ``chunk`` rows at a time: ``(N,)``.

    ``idx=None`` means ``x`` itself, one row per image; ``A=None`` the identity. Memory is
    bounded by ``chunk`` whatever ``N``. ``model`` is used as it is (pass a frozen copy,
    :func:`~avae_tutorial.model.for_inference`). Inputs are taken as checked by the caller.
    """
    n = len(x) if idx is None else len(idx)
    out = torch.empty(n, device=x.device, dtype=x.dtype)
    with torch.no_grad():
        for s in range(0, n, chunk):
            xs = x[s : s + chunk] if idx is None else x[idx[s : s + chunk]]
            out[s : s + chunk] = _avae_loss(model, xs, None if A is None else A[s : s + chunk])
    return out
