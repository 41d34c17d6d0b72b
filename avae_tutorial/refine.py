"""Refining the search's starting candidates (chapter 3): the steps after scoring and choosing.

For one angle, :func:`_basins` finds the local minima on the circle of scored candidates and
:func:`_refine_angle` shrinks each bracket by successive parabolic interpolation, one no-grad
forward pass per step; for any other family, :func:`adam_keep_best` runs Adam on the transform
parameters, keeping the best loss seen per row (shared with the seed's searches in
``baselines``). :func:`_best_per_image` folds refined rows back into one result per image.
Every row's value is computed in chunks of a fixed size (:func:`_fixed_chunks`), so it does not
depend on how many other rows a batch holds.
"""
from __future__ import annotations

import math
from typing import Protocol

import torch

from .families import Family
from .loss import _avae_loss, chunked_loss



class AlignConfig(Protocol):
    """What refinement reads of :class:`avae_tutorial.align.AlignConfig` (which satisfies this):
    refine sits below align and does not import it."""

    steps: int
    lr: float
    chunk: int
    settle: float | None
    settle_after: int


def _rows_loss(model, x, img, params, fam: Family, chunk: int, spent: torch.Tensor) -> torch.Tensor:
    """No-grad loss of rows ``(x[img], params)``: ``img (N,)``, ``params (N, P)`` -> ``(N,)``; each
    row is one VAE pass spent on its image (``spent (B,)`` counts them)."""
    if img.numel() == 0:
        return params.new_empty(0)
    spent.index_add_(0, img, torch.ones_like(img))
    return _fixed_chunks(lambda i, p: chunked_loss(model, x, fam.build(p), idx=i, chunk=chunk), chunk, img, params)


def _fixed_chunks(fn, chunk: int, *rows: torch.Tensor) -> torch.Tensor:
    """``fn(*rows)`` computed in chunks of exactly ``chunk`` rows (the last padded by repeating its
    final row, the padding dropped): the kernels a backend picks depend on the batch size, so
    this keeps every row's value independent of how many other rows a batch holds. Results per
    image are then the same whether a batch is aligned whole or in parts (several processes)."""
    n = len(rows[0])
    pad = -n % chunk
    if pad:
        rows = tuple(torch.cat([r, r[-1:].expand(pad, *r.shape[1:])]) for r in rows)
    return fn(*rows)[:n]


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
    gap_l = torch.remainder(th - th[:, prev], 2 * math.pi).clamp_min(1e-4)
    gap_r = torch.remainder(th[:, nxt] - th, 2 * math.pi).clamp_min(1e-4)
    if R == 1:  # a lone candidate brackets the whole circle
        gap_l, gap_r = torch.full_like(th, 2 * math.pi), torch.full_like(th, 2 * math.pi)
    fa, fc = f[:, prev], f[:, nxt]
    _, pred = _parabola(th - gap_l, th, th + gap_r, fa, f, fc)
    pred = torch.where((f <= fa) & (f <= fc), torch.minimum(pred, f), torch.full_like(f, math.inf))
    rank, pos = pred.topk(min(k, R), dim=1, largest=False)  # (B, k)

    def pick(t):
        return t.gather(1, pos)

    b = pick(th)
    return b - pick(gap_l), b, b + pick(gap_r), pick(fa), pick(f), pick(fc), order.gather(1, pos), rank < math.inf


def _refine_angle(model, x, img, a, b, c, fa, fb, fc, fam: Family, cfg: AlignConfig, spent, best=None, lead=None):
    """Successive parabolic interpolation in brackets ``a < b < c``, ``fb <= fa, fc`` (rows ``(N,)``
    of images ``img``): each step evaluates the parabola's minimum and shrinks the bracket around the
    best point; returns the final brackets ``(a, b, c, fa, fb, fc)`` (``b``, ``fb``: each row's best).
    With ``cfg.settle`` (nats): after ``settle_after`` steps, each further step is taken only by the
    rows whose parabola still predicts a loss below their image's best by more than that (one read
    of the device per step; none once no row goes on); given ``best (N,)`` (the image's best
    elsewhere), a row starts only if its parabola predicts a loss below it by more than ``settle``,
    or if ``lead (N,)`` marks it; a step goes at most twice the bracket's nearer side past its best
    point (an edge guess widens its bracket, not leaps away)."""
    br, settle = (a, b, c, fa, fb, fc), getattr(cfg, "settle", None)
    if settle is None:
        return _parabolic_steps(model, x, img, br, cfg.steps, fam, cfg.chunk, spent, None)
    first = min(cfg.settle_after, cfg.steps)
    if best is not None:  # a row gated out here stays out at the next gate (its bracket and best are unchanged)
        br = _gated_steps(model, x, img, br, first, torch.minimum(best, fb), fam, cfg, spent, lead)[0]
    else:  # every row takes the first steps
        br = _parabolic_steps(model, x, img, br, first, fam, cfg.chunk, spent, 2.0)
    ref = br[4] if best is None else torch.minimum(best, br[4])
    for _ in range(cfg.steps - first):  # a step at a time, for the rows that still promise more than settle
        ref = torch.minimum(ref, _per_image_min(br[4], img, x.shape[0])[img])  # the image's best over its rows
        br, moved = _gated_steps(model, x, img, br, 1, ref, fam, cfg, spent)
        if not moved:
            break
    return br


def _per_image_min(values: torch.Tensor, img: torch.Tensor, B: int) -> torch.Tensor:
    """``(B,)``: for each image ``0..B-1``, the lowest of ``values (N,)`` over its rows ``img (N,)``
    (``inf`` for an image without rows)."""
    low = torch.full((B,), math.inf, device=values.device, dtype=values.dtype)
    return low.scatter_reduce(0, img, values, "amin")


def _first_best_row(img: torch.Tensor, values: torch.Tensor, B: int, low: torch.Tensor | None = None) -> torch.Tensor:
    """``(B,)``: for each image ``0..B-1``, the first of its rows ``img (N,)`` holding its lowest
    ``values (N,)`` (``low``: :func:`_per_image_min`, if known); ``N`` for an image without rows.
    No read of the device."""
    N = img.numel()
    low = _per_image_min(values, img, B) if low is None else low
    key = torch.where(values == low[img], torch.arange(N, device=img.device), N)
    return torch.full((B,), N, device=img.device, dtype=key.dtype).scatter_reduce(0, img, key, "amin")


def _gated_steps(model, x, img, br, n: int, ref, fam: Family, cfg: AlignConfig, spent, force=None):
    """``n`` steps for the rows whose parabola predicts a loss below ``ref (N,)`` by more than
    ``cfg.settle``, and those ``force (N,)`` marks: the brackets and how many rows went on."""
    go = (ref - _parabola(*br)[1]) > cfg.settle
    go = (go if force is None else go | force).nonzero().squeeze(1)  # one read: which rows go on
    sub = _parabolic_steps(model, x, img[go], tuple(t[go] for t in br), n, fam, cfg.chunk, spent, 2.0)
    return tuple(t.index_copy(0, go, u) for t, u in zip(br, sub)), go.numel()


def _parabolic_steps(model, x, img, br, n: int, fam: Family, chunk: int, spent, reach: float | None):
    """:func:`_refine_angle`'s ``n`` steps on brackets ``br``; ``reach``: the longest step, in widths of the nearer side."""
    a, b, c, fa, fb, fc = br
    for _ in range(n):
        t, _ = _parabola(a, b, c, fa, fb, fc)
        if reach is not None:
            t = torch.minimum(torch.maximum(t, b - reach * (c - b)), b + reach * (b - a))
        tol = 0.02 * (c - a)  # never re-evaluate (almost) the same point
        side = torch.where(c - b > b - a, tol, -tol)
        t = torch.where((t - b).abs() < tol, b + side, t).clamp(a + tol, c - tol)
        ft = _rows_loss(model, x, img, t[:, None], fam, chunk, spent)
        better, left = ft < fb, t < b
        a, fa, c, fc = (
            torch.where(better, torch.where(left, a, b), torch.where(left, t, a)),
            torch.where(better, torch.where(left, fa, fb), torch.where(left, ft, fa)),
            torch.where(better, torch.where(left, b, c), torch.where(left, c, t)),
            torch.where(better, torch.where(left, fb, fc), torch.where(left, fc, ft)),
        )
        b, fb = torch.where(better, t, b), torch.where(better, ft, fb)
    return a, b, c, fa, fb, fc


def _refine_adam(model, x, img, p0, fam: Family, cfg: AlignConfig, spent):
    """Adam on the parameters ``p0 (N, P)`` of rows ``x[img]``, within the family's bounds, in
    chunks (gradients cost memory); returns the best ``(params, loss)`` seen per row. Each row
    spends ``steps + 1`` forward passes and ``steps`` backward ones (two passes each)."""
    spent.index_add_(0, img, torch.full_like(img, 3 * cfg.steps + 1))
    n = max(1, cfg.chunk // 4)
    out = _fixed_chunks(lambda i, p: torch.cat(_adam_rows(model, x, i, p, fam, cfg, n), 1), n, img, p0)  # (N, P + 1)
    return out[:, :-1], out[:, -1]


def _adam_rows(model, x, img, p0, fam: Family, cfg: AlignConfig, n: int):
    """:func:`_refine_adam`'s loop, ``n`` rows at a time: ``(params (N, P), loss (N, 1))``."""
    out_p, out_l = [], []
    for s in range(0, img.shape[0], n):
        best_p, best_l = adam_keep_best(model, x[img[s : s + n]], p0[s : s + n], fam.build, cfg.steps, cfg.lr,
                                        fam.project)  # fmt: skip
        out_p.append(best_p)
        out_l.append(best_l)
    return torch.cat(out_p), torch.cat(out_l)[:, None]


def adam_keep_best(model, x, p0, build, steps: int, lr: float, project=None):
    """Adam with ``lr`` on the parameters ``p0 (N, P)`` of the images ``x (N, C, H, W)``, ``steps``
    steps (``project`` puts the parameters back within bounds after each), the best loss seen per
    image kept: ``(params (N, P), loss (N,))``. Rows are independent; ``steps + 1`` forward passes
    and ``steps`` backward ones. The search's refinement and the seed's searches alike."""
    params = p0.clone().requires_grad_(True)
    m, v = torch.zeros_like(p0), torch.zeros_like(p0)  # Adam's moments, per parameter (rows stay independent)
    best_p, best_l = params.detach().clone(), torch.full((x.shape[0],), math.inf, device=x.device, dtype=x.dtype)
    for step in range(steps + 1):
        with torch.enable_grad():
            loss = _avae_loss(model, x, build(params))  # (N,)
        better = loss.detach() < best_l
        best_l = torch.where(better, loss.detach(), best_l)
        best_p = torch.where(better[:, None], params.detach(), best_p)
        if step == steps:
            break
        (grad,) = torch.autograd.grad(loss.sum(), params)  # rows are independent
        with torch.no_grad():
            _adam_update(params, grad, m, v, step + 1, lr)
            if project is not None:
                project(params)
    return best_p, best_l


def _adam_update(params, grad, m, v, t: int, lr: float, betas=(0.9, 0.999), eps: float = 1e-8) -> None:
    """One Adam step (Kingma & Ba 2015, as ``torch.optim.Adam`` takes it) in place; the step count
    ``t`` is the loop's own, so nothing is read from the device (``torch.optim.Adam`` keeps it in a
    tensor and reads it at every step)."""
    b1, b2 = betas
    m.mul_(b1).add_(grad, alpha=1 - b1)
    v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
    denom = (v.sqrt() / math.sqrt(1 - b2**t)).add_(eps)
    params.addcdiv_(m, denom, value=-lr / (1 - b1**t))


def _best_per_image(best_p, best_l, img, rp, rl):
    """Fold refined rows ``(img (N,), rp (N, P), rl (N,))`` into the per-image best ``(B, P), (B,)``."""
    B, N = best_l.shape[0], rl.shape[0]
    if N == 0:
        return best_p, best_l
    low = _per_image_min(rl, img, B)
    better = low < best_l
    first = _first_best_row(img, rl, B, low)  # the first row achieving its image's new best (N: none)
    row = rp[first.clamp(max=N - 1)].to(best_p.dtype)  # (B, P)
    return torch.where(better[:, None], row, best_p), torch.where(better, low, best_l)
