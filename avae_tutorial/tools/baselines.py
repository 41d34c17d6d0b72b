"""The seed's two searches, kept as baselines for the benchmark (chapters 3-4).

:func:`seed_reference`: its test-time search, one image and one restart at a time.
:func:`seed_train_search`: its per-batch training search, as a ``fit(..., search=...)`` hook.
Both run Adam and keep the best loss seen per image with :func:`avae_tutorial.align`'s own
refinement loop (``refine.adam_keep_best``), on :func:`for_inference`'s copy as ``align`` does.
"""
from __future__ import annotations

import math

import torch

from ..align import AlignConfig, for_device
from ..families import get_family
from ..loss import chunked_loss
from ..model import VAE, for_inference
from ..refine import adam_keep_best
from ..transforms import rotation

__all__ = ["seed_reference", "seed_train_search"]


def seed_reference(
    vae: VAE, x: torch.Tensor, family: str = "rotation", restarts: int = 30, steps: int = 20,
    lr: float = 0.01, seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The seed's test-time search, as described: ``(loss (N,), params (N, P))``.

    Per image, per restart (Python loops, batch of one): an angle uniform in (-2pi, 2pi) (other
    parameters 0), ``steps`` Adam steps with ``lr`` on the parameters, the best loss seen kept.
    Unlike the seed it runs in eval mode on :func:`for_inference`'s copy (as ``align`` does)
    and gives the weights no gradients.
    """
    fam = get_family(family)
    g = torch.Generator().manual_seed(seed)
    losses, params = [], []
    model = for_inference(vae)
    for i in range(x.shape[0]):
        best_l, best_p = math.inf, None
        for _ in range(restarts):
            p = torch.zeros(1, fam.n_params, device=x.device, dtype=x.dtype)
            if fam.angle is not None:
                p[0, fam.angle] = float(torch.rand((), generator=g) * 4 * math.pi - 2 * math.pi)
            p, loss = adam_keep_best(model, x[i : i + 1], p, fam.build, steps, lr)
            if loss.item() < best_l:
                best_l, best_p = loss.item(), p
        losses.append(best_l)
        params.append(best_p)
    return torch.tensor(losses, dtype=x.dtype), torch.cat(params)


def seed_train_search(vae: VAE, xb: torch.Tensor, last=None, config=None, guess=None, candidates: int = 20,
                      steps: int = 10, lr: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The seed's per-batch training search, batched, as a ``fit(..., search=...)`` hook: per
    image ``candidates`` random angles scored, the best kept, ``steps`` Adam steps on it (best
    loss seen kept), on :func:`for_inference`'s copy as ``align`` does -> ``(angles (B,), passes
    (B,))``, ``candidates + 3 * steps + 1`` passes each. ``last``, ``config`` and ``guess`` are
    ignored (it has no warm start)."""
    B = xb.shape[0]
    model = for_inference(vae)
    chunk = for_device(AlignConfig(), xb.device).chunk
    angle = torch.rand(B, candidates, device=xb.device, dtype=xb.dtype) * 2 * math.pi  # (B, C)
    img = torch.arange(B, device=xb.device).repeat_interleave(candidates)
    scores = chunked_loss(model, xb, rotation(angle.reshape(-1)), idx=img, chunk=chunk)
    best_a = angle.gather(1, scores.view(B, candidates).argmin(1, keepdim=True))  # (B, 1)
    best_a, _ = adam_keep_best(model, xb, best_a, lambda a: rotation(a[:, 0]), steps, lr)
    return best_a[:, 0], torch.full((B,), candidates + 3 * steps + 1, device=xb.device)
