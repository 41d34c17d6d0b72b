"""Test-time search for the transform that minimizes the AVAE loss (chapter 3).

Per image, batched over images *and* candidates (no Python loop over either):

1. **score** ``restarts`` starting transforms in one no-grad pass: a regular grid of angles
   (the identity among them) plus, if given, caller-supplied ``init`` angles;
2. **refine** the best ``top_k`` per image with ``steps`` Adam steps on the transform
   parameters only (the model is in eval mode and its weights get no gradients);
3. **keep** the best loss seen per image; the identity is always scored, so the result is
   never worse than the plain VAE.

Families: ``"rotation"`` (one angle) and ``"affine"`` (angle, shear, log-scales; see
:func:`avae_tutorial.transforms.affine`), optionally with translation (``"affine_t"``).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
from tqdm.auto import tqdm

from ._checks import check_choice, check_images, check_same_device
from .loss import avae_loss
from .model import VAE
from .transforms import affine, rotation

__all__ = ["align", "AlignConfig", "AlignResult", "FAMILIES", "PRESETS"]

FAMILIES = ("rotation", "affine", "affine_t")
_N_PARAMS = {"rotation": 1, "affine": 4, "affine_t": 6}


@dataclass(frozen=True)
class AlignConfig:
    """Search settings. ``restarts`` candidates scored, best ``top_k`` refined for ``steps``."""

    restarts: int = 24
    top_k: int = 2
    steps: int = 8
    lr: float = 0.04
    chunk: int = 512  # (image, candidate) rows evaluated at once: bounds memory; larger is not faster on CPU

    def __post_init__(self):
        for name in ("restarts", "top_k", "chunk"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive int, got {getattr(self, name)!r}")
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps: expected an int >= 0, got {self.steps!r}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected a positive float, got {self.lr!r}")


#: Named settings per family: "default" (quality), "fast" (a coarse grid and a short refinement).
#: Shear and scale need more Adam steps than an angle alone.
PRESETS = {
    "rotation": {"default": AlignConfig(), "fast": AlignConfig(restarts=12, top_k=1, steps=2, lr=0.1)},
    "affine": {"default": AlignConfig(steps=24, lr=0.05), "fast": AlignConfig(restarts=12, top_k=1, steps=8, lr=0.1)},
}
PRESETS["affine_t"] = PRESETS["affine"]


@dataclass
class AlignResult:
    """Per image: ``A (B, 2, 3)``, ``loss (B,)``, ``params (B, P)`` and the identity's ``loss0 (B,)``."""

    A: torch.Tensor
    loss: torch.Tensor
    params: torch.Tensor
    loss0: torch.Tensor
    family: str

    @property
    def angle(self) -> torch.Tensor:
        """The rotation (radians) that the search applied to each image, wrapped to [-pi, pi)."""
        return torch.remainder(self.params[:, 0] + math.pi, 2 * math.pi) - math.pi


def params_to_matrix(params: torch.Tensor, family: str) -> torch.Tensor:
    """``(N, P)`` search parameters -> ``(N, 2, 3)`` sampling matrices."""
    return rotation(params[:, 0]) if family == "rotation" else affine(params)


@contextmanager
def eval_mode(model: torch.nn.Module):
    """Eval mode and no weight gradients inside; both restored on exit."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        model.train(was_training)
        for p, flag in flags:
            p.requires_grad_(flag)


def _candidates(restarts: int, family: str, device, dtype) -> torch.Tensor:
    """``(R, P)`` starting parameters shared by every image: a regular angle grid from 0."""
    angles = torch.arange(restarts, device=device, dtype=dtype) * (2 * math.pi / restarts)
    params = torch.zeros(restarts, _N_PARAMS[family], device=device, dtype=dtype)
    params[:, 0] = angles
    return params


def _loss(vae: VAE, x: torch.Tensor, params: torch.Tensor, family: str) -> torch.Tensor:
    return avae_loss(vae, x, params_to_matrix(params, family), check=False)


def _score(vae, x, params, family, chunk) -> torch.Tensor:
    """Loss of every (image, candidate) pair: ``x (B,1,H,W)``, ``params (B, R, P)`` -> ``(B, R)``."""
    B, R, P = params.shape
    flat_p = params.reshape(B * R, P)
    idx = torch.arange(B, device=x.device).repeat_interleave(R)  # image index of each row
    out = torch.empty(B * R, device=x.device, dtype=x.dtype)
    with torch.no_grad():
        for s in range(0, B * R, chunk):
            e = min(s + chunk, B * R)
            out[s:e] = _loss(vae, x[idx[s:e]], flat_p[s:e], family)
    return out.view(B, R)


def _refine(vae, x, params, family, cfg: AlignConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam on ``params (N, P)`` for ``x (N,...)``; returns the best ``(params, loss)`` seen per row."""
    params = params.clone().requires_grad_(True)
    opt = torch.optim.Adam([params], lr=cfg.lr)
    best_p = params.detach().clone()
    best_l = torch.full((params.shape[0],), math.inf, device=x.device, dtype=x.dtype)
    for _ in range(cfg.steps + 1):
        loss = _loss(vae, x, params, family)  # (N,)
        better = loss.detach() < best_l
        best_l = torch.where(better, loss.detach(), best_l)
        best_p[better] = params.detach()[better]
        if _ == cfg.steps:
            break
        (grad,) = torch.autograd.grad(loss.sum(), params)  # rows are independent
        params.grad = grad
        opt.step()
        with torch.no_grad():
            _project(params, family)
    return best_p, best_l


#: Bounds of the affine search (the perturbations studied reach 55 degrees of shear and 50% scale):
#: without them the search can shrink the decoded picture into the zero padding and "win" on
#: the background. Angles are unbounded.
SHEAR_MAX = math.radians(60.0)
LOG_SCALE_MAX = math.log(2.0)
SHIFT_MAX = 0.25


def _project(params: torch.Tensor, family: str) -> None:
    if family == "rotation":
        return
    params[:, 1].clamp_(-SHEAR_MAX, SHEAR_MAX)
    params[:, 2:4].clamp_(-LOG_SCALE_MAX, LOG_SCALE_MAX)
    if params.shape[1] == 6:
        params[:, 4:6].clamp_(-SHIFT_MAX, SHIFT_MAX)


def align(
    vae: VAE,
    x: torch.Tensor,
    family: str = "rotation",
    config: AlignConfig | str = "default",
    init: torch.Tensor | None = None,
    batch_size: int = 512,
    progress: bool | None = None,
) -> AlignResult:
    """Find, per image, the transform ``A`` minimizing :func:`avae_loss` (``z = mu``).

    Args:
        vae: a trained :class:`VAE`; it is searched in eval mode and left unchanged.
        x: images ``(B, 1, canvas, canvas)`` in [0, 1] on the model's device.
        family: ``"rotation"``, ``"affine"`` or ``"affine_t"`` (affine with translation).
        config: an :class:`AlignConfig` or a preset name (``"default"``, ``"fast"``).
        init: optional extra starting parameters per image, ``(B, P)`` or ``(B, K, P)``
            (for example the previous epoch's result during training).
        batch_size: images processed together; memory grows with
            ``batch_size * restarts`` up to ``config.chunk`` rows at once.
        progress: show a progress bar (default: when there is more than one batch).

    Returns:
        :class:`AlignResult` with ``A (B, 2, 3)``, ``loss (B,)``, ``params (B, P)``, ``loss0 (B,)``.
    """
    check_choice(family, FAMILIES, "family")
    if isinstance(config, str):
        config = PRESETS[family][check_choice(config, tuple(PRESETS[family]), "config preset")]
    if not isinstance(config, AlignConfig):
        raise TypeError(f"config: expected an AlignConfig or a preset name, got {type(config).__name__}")
    check_images(x, canvas=vae.canvas)
    check_same_device(vae, x)
    P = _N_PARAMS[family]
    if init is not None:
        if not isinstance(init, torch.Tensor) or init.dim() not in (2, 3) or init.shape[0] != x.shape[0] \
                or init.shape[-1] != P:  # fmt: skip
            got = tuple(init.shape) if isinstance(init, torch.Tensor) else type(init).__name__
            raise ValueError(f"init: expected shape ({x.shape[0]}, {P}) or ({x.shape[0]}, K, {P}), got {got}")
        init = (init[:, None] if init.dim() == 2 else init).to(x)
    starts = _candidates(config.restarts, family, x.device, x.dtype)  # (R, P)
    n_batches = math.ceil(x.shape[0] / batch_size)
    bar = tqdm(total=x.shape[0], desc=f"align ({family})", unit="img",
               disable=not (progress if progress is not None else n_batches > 1))  # fmt: skip
    outs = []
    with eval_mode(vae):
        for s in range(0, x.shape[0], batch_size):
            xb = x[s : s + batch_size]
            extra = None if init is None else init[s : s + batch_size]
            outs.append(_align_batch(vae, xb, family, config, starts, extra))
            bar.update(xb.shape[0])
    bar.close()
    params, loss, loss0 = (torch.cat(t) for t in zip(*outs))
    return AlignResult(params_to_matrix(params, family), loss, params, loss0, family)


def _align_batch(vae, x, family, cfg, starts, extra):
    B = x.shape[0]
    cand = starts.expand(B, *starts.shape)  # (B, R, P)
    if extra is not None:
        cand = torch.cat([cand, extra], 1)  # (B, R + K, P)
    scores = _score(vae, x, cand, family, cfg.chunk)  # (B, R')
    with torch.no_grad():
        loss0 = avae_loss(vae, x, check=False)  # (B,) the plain VAE, no warp at all
    k = min(cfg.top_k, cand.shape[1])
    top = scores.topk(k, dim=1, largest=False).indices  # (B, k)
    p0 = torch.gather(cand, 1, top[..., None].expand(B, k, cand.shape[2]))  # (B, k, P)
    best_p, best_l = p0[:, 0], scores.gather(1, top[:, :1]).squeeze(1)
    if cfg.steps > 0:
        x_rep = x.repeat_interleave(k, 0)  # (B*k, 1, H, W)
        ref_p, ref_l = [], []
        n = max(1, cfg.chunk // 4)  # gradients cost memory: smaller chunks
        for s in range(0, B * k, n):
            with torch.enable_grad():
                p_, l_ = _refine(vae, x_rep[s : s + n], p0.reshape(B * k, -1)[s : s + n], family, cfg)
            ref_p.append(p_)
            ref_l.append(l_)
        ref_p, ref_l = torch.cat(ref_p).view(B, k, -1), torch.cat(ref_l).view(B, k)
        j = ref_l.argmin(1)  # (B,)
        cand_l = ref_l.gather(1, j[:, None]).squeeze(1)
        better = cand_l < best_l
        best_l = torch.where(better, cand_l, best_l)
        best_p = torch.where(better[:, None], ref_p[torch.arange(B), j], best_p)
    keep0 = loss0 <= best_l  # never worse than the identity
    best_p = torch.where(keep0[:, None], torch.zeros_like(best_p), best_p)
    best_l = torch.where(keep0, loss0, best_l)
    return best_p.detach(), best_l.detach(), loss0


def with_overrides(config: AlignConfig | str, family: str = "rotation", **kw) -> AlignConfig:
    """A preset or config with some fields replaced (``with_overrides("fast", steps=4)``)."""
    base = PRESETS[family][config] if isinstance(config, str) else config
    return replace(base, **kw)
