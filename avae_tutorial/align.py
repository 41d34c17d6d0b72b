"""Test-time search for the transform that minimizes the AVAE loss (chapter 3).

Per image, batched over images *and* candidates (no Python loop over either):

1. **score** ``restarts`` starting angles in one no-grad pass: a regular grid from 0 (the
   identity is its first point, scored as the plain VAE) plus, if given, caller-supplied
   ``init`` candidates (an amortized first guess: last epoch's orientation, a pose network),
   each with two neighbours ``init_span`` radians to either side when that is set, so that a
   good guess arrives already bracketed;
2. **choose** the best ``top_k`` *basins*: candidates whose loss is below both neighbours on
   the circle of angles, ranked by the minimum of the parabola through the three (free: no
   extra forward pass);
3. **refine** each chosen basin for ``steps`` steps. Rotation: successive parabolic
   interpolation inside the bracket of the two neighbours (one no-grad forward pass per step;
   on a smooth valley each step roughly squares the error). Affine families: Adam on the
   transform parameters only, from the parabola's angle (forward and backward per step);
4. **keep** the best loss seen per image. The identity is always scored, so the result is
   never worse than the plain VAE.

The search runs on a frozen copy of the model in eval mode with each BatchNorm folded into its
convolution (:func:`avae_tutorial.model.for_inference`); the model itself is left untouched.
Cost, in forward passes of the VAE per image: ``restarts + K' + top_k * steps`` for rotation,
about ``restarts + K' + top_k * 3 * steps`` for affine (a backward costs about two forwards),
where ``K'`` is the number of ``init`` guesses, times 3 with ``init_span``.
``python -m avae_tutorial bench`` measures it against the seed's search.

Families: ``"rotation"`` (one angle) and ``"affine"`` (angle, shear, log-scales; see
:func:`avae_tutorial.transforms.affine`), optionally with translation (``"affine_t"``).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
from tqdm.auto import tqdm

from ._checks import check_choice, check_images, check_positive_int, check_same_device
from .loss import avae_loss
from .model import VAE, for_inference
from .transforms import affine, rotation, warp

__all__ = ["align", "AlignConfig", "AlignResult", "FAMILIES", "PRESETS", "search_cost", "PoseNet", "fit_pose_net"]

FAMILIES = ("rotation", "affine", "affine_t")
_N_PARAMS = {"rotation": 1, "affine": 4, "affine_t": 6}


@dataclass(frozen=True)
class AlignConfig:
    """Search settings: a grid of ``restarts`` angles scored, the best ``top_k`` basins refined.

    ``steps``: refinement steps per basin (rotation: one loss evaluation each, parabolic;
    affine: Adam steps with step size ``lr``). ``init_span``: radians; when ``align`` gets
    ``init`` guesses, each is also scored at its angle +- ``init_span``, which brackets a good
    guess tightly (a warm start then needs one or two parabolic steps). ``chunk``: (image, candidate) rows evaluated at
    once; it bounds memory. On a CPU 32-96 rows are fastest per row (they stay in cache; 128 or
    more rows cost up to 1.5 times as much per row); a preset given by name on a GPU uses
    :data:`GPU_CHUNK`.
    """

    restarts: int = 24
    top_k: int = 1
    steps: int = 6
    lr: float = 0.05
    chunk: int = 64
    init_span: float = 0.0

    def __post_init__(self):
        for name in ("restarts", "top_k", "chunk"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive int, got {getattr(self, name)!r}")
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps: expected an int >= 0, got {self.steps!r}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected a positive float, got {self.lr!r}")
        if not (isinstance(self.init_span, (int, float)) and 0 <= self.init_span < math.pi):
            raise ValueError(f"init_span: expected radians in [0, pi), got {self.init_span!r}")


#: Named settings per family. Rotation "default" (30 VAE evaluations per image, ``search_cost``)
#: matches the seed's 30 x 20 Adam search in loss at well under 1/100 of its time; "fast" (17
#: evaluations) keeps nearly all of the default's gain (``python -m avae_tutorial bench`` measures
#: both). Shear and scale need Adam steps.
PRESETS = {
    "rotation": {
        "default": AlignConfig(restarts=24, top_k=1, steps=6),
        "fast": AlignConfig(restarts=14, top_k=1, steps=3),
    },
    "affine": {
        "default": AlignConfig(restarts=24, top_k=2, steps=24, lr=0.05),
        "fast": AlignConfig(restarts=12, top_k=1, steps=8, lr=0.1),
    },
}
PRESETS["affine_t"] = PRESETS["affine"]

#: Rows per chunk when the images are not on a CPU: a GPU wants big launches.
GPU_CHUNK = 8192


def for_device(config: AlignConfig, device: torch.device | str) -> AlignConfig:
    """``config`` as it should run on ``device``: on anything but a CPU, with ``chunk=GPU_CHUNK``."""
    return config if torch.device(device).type == "cpu" else replace(config, chunk=GPU_CHUNK)


def search_cost(config: AlignConfig, family: str = "rotation", n_init: int = 0) -> int:
    """Forward-pass equivalents per image of :func:`align` at most (a backward counts as two)."""
    per_step = 1 if family == "rotation" else 3
    n_init *= 3 if config.init_span > 0 else 1
    return config.restarts + n_init + config.top_k * (config.steps * per_step + (family != "rotation"))


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


def _losses(vae, x, idx, params, family, chunk) -> torch.Tensor:
    """No-grad loss of rows ``(x[idx], params)``: ``idx (N,)``, ``params (N, P)`` -> ``(N,)``."""
    out = torch.empty(idx.shape[0], device=x.device, dtype=x.dtype)
    with torch.no_grad():
        for s in range(0, idx.shape[0], chunk):
            out[s : s + chunk] = _loss(vae, x[idx[s : s + chunk]], params[s : s + chunk], family)
    return out


def _score(vae, x, cand, loss0, family, chunk) -> torch.Tensor:
    """Loss of every (image, candidate) pair, ``cand (B, R, P)`` -> ``(B, R)``.

    Candidate 0 is the grid's angle 0, the identity: its score is ``loss0``, the plain VAE's.
    """
    B, R, P = cand.shape
    rest = cand[:, 1:].reshape(B * (R - 1), P)
    idx = torch.arange(B, device=x.device).repeat_interleave(R - 1)  # image index of each row
    scores = _losses(vae, x, idx, rest, family, chunk).view(B, R - 1)
    return torch.cat([loss0[:, None], scores], 1)


def _parabola(a, b, c, fa, fb, fc) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum ``(t, f(t))`` of the parabola through ``(a, fa), (b, fb), (c, fc)``, ``a < b < c``.

    Newton form ``f(t) = fa + d1 (t - a) + q (t - a)(t - b)``; with no upward curvature the
    midpoint of the longer side is returned (a golden-section-like fallback).
    """
    d1 = (fb - fa) / (b - a)
    q = ((fc - fb) / (c - b) - d1) / (c - a)
    ok = q > 1e-12
    qs = torch.where(ok, q, torch.ones_like(q))
    t = torch.where(ok, 0.5 * (a + b) - d1 / (2 * qs), torch.where(c - b > b - a, 0.5 * (b + c), 0.5 * (a + b)))
    t = torch.minimum(torch.maximum(t, a), c)
    return t, torch.where(ok, fa + d1 * (t - a) + q * (t - a) * (t - b), fb)


def _basins(angle: torch.Tensor, scores: torch.Tensor, k: int):
    """The best ``k`` local minima on the circle of candidate angles, per image.

    ``angle, scores (B, R)`` -> ``(a, b, c, fa, fb, fc, j, valid)``, each ``(B, k)``: the bracket
    of each minimum (its two neighbours, unwrapped around it), its candidate index ``j`` and
    whether the image has that many minima. Ranked by the parabola's predicted minimum.
    """
    B, R = scores.shape
    order = torch.remainder(angle, 2 * math.pi).argsort(1)  # (B, R) candidates by angle
    th, f = angle.gather(1, order), scores.gather(1, order)
    prev, nxt = torch.roll(torch.arange(R, device=th.device), 1), torch.roll(torch.arange(R, device=th.device), -1)
    gap_l = torch.remainder(th - th[:, prev], 2 * math.pi).clamp_min(1e-4)  # a lone candidate: 2pi apart
    gap_r = torch.remainder(th[:, nxt] - th, 2 * math.pi).clamp_min(1e-4)
    if R == 1:
        gap_l, gap_r = torch.full_like(th, 2 * math.pi), torch.full_like(th, 2 * math.pi)
    fa, fc = f[:, prev], f[:, nxt]
    _, pred = _parabola(th - gap_l, th, th + gap_r, fa, f, fc)
    pred = torch.where((f <= fa) & (f <= fc), torch.minimum(pred, f), torch.full_like(f, math.inf))
    k = min(k, R)
    rank, pos = pred.topk(k, dim=1, largest=False)  # (B, k)

    def pick(t):
        return t.gather(1, pos)

    b = pick(th)
    return b - pick(gap_l), b, b + pick(gap_r), pick(fa), pick(f), pick(fc), order.gather(1, pos), rank < math.inf


def _refine_rotation(vae, x, img, a, b, c, fa, fb, fc, steps, chunk):
    """Successive parabolic interpolation in brackets ``a < b < c`` with ``fb <= fa, fc`` (rows ``(N,)``).

    Each step evaluates the parabola's minimum ``t`` and shrinks the bracket around the best
    point; returns the best ``(b, fb)`` per row.
    """
    for _ in range(steps):
        t, _ = _parabola(a, b, c, fa, fb, fc)
        tol = 0.02 * (c - a)  # never re-evaluate (almost) the same point
        side = torch.where(c - b > b - a, tol, -tol)
        t = torch.where((t - b).abs() < tol, b + side, t).clamp(a + tol, c - tol)
        ft = _losses(vae, x, img, t[:, None], "rotation", chunk)
        better, left = ft < fb, t < b
        a, fa, c, fc = (
            torch.where(better, torch.where(left, a, b), torch.where(left, t, a)),
            torch.where(better, torch.where(left, fa, fb), torch.where(left, ft, fa)),
            torch.where(better, torch.where(left, b, c), torch.where(left, c, t)),
            torch.where(better, torch.where(left, fb, fc), torch.where(left, fc, ft)),
        )
        b, fb = torch.where(better, t, b), torch.where(better, ft, fb)
    return b, fb


def _refine_adam(vae, x, params, family, cfg: AlignConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam on ``params (N, P)`` for ``x (N,...)``; returns the best ``(params, loss)`` seen per row."""
    params = params.clone().requires_grad_(True)
    opt = torch.optim.Adam([params], lr=cfg.lr)
    best_p = params.detach().clone()
    best_l = torch.full((params.shape[0],), math.inf, device=x.device, dtype=x.dtype)
    for step in range(cfg.steps + 1):
        loss = _loss(vae, x, params, family)  # (N,)
        better = loss.detach() < best_l
        best_l = torch.where(better, loss.detach(), best_l)
        best_p[better] = params.detach()[better]
        if step == cfg.steps:
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
        config: an :class:`AlignConfig` or a preset name (``"default"``, ``"fast"``; by name, on
            a GPU, with ``chunk=GPU_CHUNK``).
        init: optional extra starting parameters per image, ``(B, P)`` or ``(B, K, P)``
            (for example the previous epoch's result during training); scored with the grid,
            together with their angle +- ``config.init_span`` when that is set.
        batch_size: images processed together; memory grows with
            ``batch_size * restarts`` up to ``config.chunk`` rows at once.
        progress: show a progress bar (default: when there is more than one batch).

    Returns:
        :class:`AlignResult` with ``A (B, 2, 3)``, ``loss (B,)``, ``params (B, P)``, ``loss0 (B,)``.
    """
    check_choice(family, FAMILIES, "family")
    if isinstance(config, str):
        config = PRESETS[family][check_choice(config, tuple(PRESETS[family]), "config preset")]
        if isinstance(x, torch.Tensor):
            config = for_device(config, x.device)
    if not isinstance(config, AlignConfig):
        raise TypeError(f"config: expected an AlignConfig or a preset name, got {type(config).__name__}")
    check_same_device(vae, x)
    check_images(x, canvas=vae.canvas)
    check_positive_int(batch_size, "batch_size")
    P = _N_PARAMS[family]
    if init is not None:
        if not isinstance(init, torch.Tensor) or init.dim() not in (2, 3) or init.shape[0] != x.shape[0] \
                or init.shape[-1] != P:  # fmt: skip
            got = tuple(init.shape) if isinstance(init, torch.Tensor) else type(init).__name__
            raise ValueError(f"init: expected shape ({x.shape[0]}, {P}) or ({x.shape[0]}, K, {P}), got {got}")
        if not init.is_floating_point():
            raise TypeError(f"init: expected floating-point parameters (radians), got {init.dtype}; use init.float()")
        if init.device.type != "meta" and not torch.isfinite(init).all():
            raise ValueError("init: contains NaN or inf values")
        init = (init[:, None] if init.dim() == 2 else init).to(x)
    starts = _candidates(config.restarts, family, x.device, x.dtype)  # (R, P)
    n_batches = math.ceil(x.shape[0] / batch_size)
    bar = tqdm(total=x.shape[0], desc=f"align ({family})", unit="img",
               disable=not (progress if progress is not None else n_batches > 1))  # fmt: skip
    outs = []
    model = for_inference(vae)  # a frozen copy with BatchNorm folded in: the search never touches vae
    for s in range(0, x.shape[0], batch_size):
        xb = x[s : s + batch_size]
        extra = None if init is None else init[s : s + batch_size]
        outs.append(_align_batch(model, xb, family, config, starts, extra))
        bar.update(xb.shape[0])
    bar.close()
    params, loss, loss0 = (torch.cat(t) for t in zip(*outs))
    return AlignResult(params_to_matrix(params, family), loss, params, loss0, family)


def _align_batch(vae, x, family, cfg, starts, extra):
    B = x.shape[0]
    with torch.no_grad():
        loss0 = avae_loss(vae, x, check=False)  # (B,) the plain VAE, no warp at all
    cand = starts.expand(B, *starts.shape)  # (B, R, P)
    if extra is not None:
        if cfg.init_span > 0:  # each guess with a neighbour on either side: a ready-made bracket
            shift = torch.zeros(extra.shape[-1], device=x.device, dtype=x.dtype)
            shift[0] = cfg.init_span
            extra = torch.cat([extra - shift, extra, extra + shift], 1)
        cand = torch.cat([cand, extra], 1)  # (B, R + K, P)
    scores = _score(vae, x, cand, loss0, family, cfg.chunk)  # (B, R')
    j0 = scores.argmin(1)
    best_l, best_p = scores.gather(1, j0[:, None]).squeeze(1), cand[torch.arange(B), j0]  # (B,), (B, P)
    if cfg.steps > 0:
        a, b, c, fa, fb, fc, j, valid = _basins(cand[..., 0], scores, cfg.top_k)  # each (B, k)
        img = torch.arange(B, device=x.device)[:, None].expand_as(b)[valid]  # (N,) image of each basin
        if family == "rotation":
            rb, rl = _refine_rotation(vae, x, img, a[valid], b[valid], c[valid], fa[valid], fb[valid], fc[valid],
                                      cfg.steps, cfg.chunk)  # fmt: skip
            rp = rb[:, None]
        else:
            p0 = cand.gather(1, j[..., None].expand(*j.shape, cand.shape[2]))[valid]  # (N, P)
            p0[:, 0] = _parabola(a[valid], b[valid], c[valid], fa[valid], fb[valid], fc[valid])[0]
            rp, rl = _refine_adam_chunked(vae, x, img, p0, family, cfg)
        best_p, best_l = _best_per_image(best_p, best_l, img, rp, rl)
    keep0 = loss0 <= best_l  # never worse than the identity
    best_p = torch.where(keep0[:, None], torch.zeros_like(best_p), best_p)
    best_l = torch.where(keep0, loss0, best_l)
    return best_p.detach(), best_l.detach(), loss0


def _refine_adam_chunked(vae, x, img, p0, family, cfg):
    """:func:`_refine_adam` over rows ``(x[img], p0)`` in chunks (gradients cost memory)."""
    n = max(1, cfg.chunk // 4)
    out_p, out_l = [], []
    for s in range(0, img.shape[0], n):
        with torch.enable_grad():
            p_, l_ = _refine_adam(vae, x[img[s : s + n]], p0[s : s + n], family, cfg)
        out_p.append(p_)
        out_l.append(l_)
    return torch.cat(out_p), torch.cat(out_l)


def _best_per_image(best_p, best_l, img, rp, rl):
    """Fold refined rows ``(img (N,), rp (N, P), rl (N,))`` into the per-image best ``(B, P), (B,)``."""
    B = best_l.shape[0]
    low = torch.full((B,), math.inf, device=rl.device, dtype=rl.dtype).scatter_reduce(0, img, rl, "amin")
    better = low < best_l
    hit = better[img] & (rl == low[img])  # a row achieving its image's new best
    best_p = best_p.clone()
    best_p[img[hit]] = rp[hit].to(best_p.dtype)
    return best_p, torch.where(better, low, best_l)


def with_overrides(config: AlignConfig | str, family: str = "rotation", **kw) -> AlignConfig:
    """A preset or config with some fields replaced (``with_overrides("fast", steps=4)``)."""
    base = PRESETS[family][config] if isinstance(config, str) else config
    return replace(base, **kw)


class PoseNet(torch.nn.Module):
    """An amortized first guess: a small CNN that predicts :func:`align`'s rotation for an image.

    ``pose(x) -> angle (B,)`` in radians, read with ``atan2`` from a predicted ``(cos, sin)``;
    pass it as ``align(..., init=pose(x)[:, None])``: one extra candidate among a coarse grid,
    which stays there to catch the guesses that land in the wrong valley. Costs a small
    fraction of one VAE evaluation.
    """

    def __init__(self, canvas: int = 40, width: int = 16):
        super().__init__()
        w, s = check_positive_int(width, "width"), check_positive_int(canvas, "canvas", minimum=8)
        for k in (5, 3, 3):
            s = (s + 2 * (k // 2) - k) // 2 + 1
        self.net = torch.nn.Sequential(  # 40x40 =>
            torch.nn.Conv2d(1, w, 5, stride=2, padding=2), torch.nn.ELU(),  # 20x20
            torch.nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), torch.nn.ELU(),  # 10x10
            torch.nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), torch.nn.ELU(),  # 5x5
            torch.nn.Flatten(), torch.nn.Linear(4 * w * s * s, 64), torch.nn.ELU(), torch.nn.Linear(64, 2),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cs = self.net(x)  # (B, 2): (cos, sin) of the angle
        return torch.atan2(cs[:, 1], cs[:, 0])

    def vector(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def fit_pose_net(
    vae: VAE, x: torch.Tensor, config: AlignConfig | str = "default", epochs: int = 30, batch_size: int = 128,
    lr: float = 3e-3, seed: int = 0,
) -> PoseNet:  # fmt: skip
    """Train a :class:`PoseNet` to predict the search's own answer on digits ``x``.

    The search runs once on ``x``; rotation makes the rest free: if ``theta`` is the answer for
    ``x``, ``theta - alpha`` is (up to the search's precision) the answer for ``x`` turned by
    ``alpha``, so every epoch draws fresh angles without searching again. The net regresses
    ``(cos, sin)`` of the answer (mean squared error).
    """
    check_positive_int(epochs, "epochs")
    theta = align(vae, x, "rotation", config, progress=False).params[:, 0]  # (N,)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    pose = PoseNet(x.shape[-1]).to(x.device)
    opt = torch.optim.Adam(pose.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * math.ceil(len(x) / batch_size))
    for _ in range(epochs):
        alpha = (torch.rand(len(x), generator=g) * 2 * math.pi).to(x)
        order = torch.randperm(len(x), generator=g).to(x.device)
        for s in range(0, len(x), batch_size):
            i = order[s : s + batch_size]
            target = theta[i] - alpha[i]
            pred = pose.vector(warp(x[i], rotation(alpha[i])))
            loss = (pred - torch.stack([target.cos(), target.sin()], 1)).pow(2).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return pose.eval()
