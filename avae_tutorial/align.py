"""Test-time search for the transform that minimizes the AVAE loss (chapter 3).

Per image, batched over images *and* candidates (no Python loop over either):

1. **score** the starting candidates in one no-grad pass: for a family with an angle, a grid
   of ``restarts`` angles from 0 (the identity is its first point, scored as the plain VAE);
   for a family without one, the identity alone. Guesses join them, the first with a neighbour
   ``init_span`` radians to either side when that is set, so that a good guess arrives
   bracketed: caller-supplied ``init`` (last epoch's orientation) and the model's pose net's
   (``vae.pose_net``, an amortized first guess; a net with ``bins`` offers its best ``peaks``);
2. **choose** the best ``top_k`` starts. On the circle of angles these are *basins*:
   candidates whose loss is below both neighbours, ranked by the minimum of the parabola
   through the three (free: no extra forward pass);
3. **refine** each start for ``steps`` steps (with ``settle``, only while it promises to beat
   the image's best by more than that) (:mod:`avae_tutorial.refine`). A family that is
   one angle and nothing else (rotation): successive parabolic interpolation inside the
   bracket, one no-grad forward pass per step. Any other family: Adam on the transform
   parameters only, within the family's bounds (a forward and a backward pass per step);
4. **keep** the best loss seen per image. The identity is always scored (unless
   ``identity=False``), so the result is never worse than the plain VAE.

**Adaptive** (``confident`` set, with a pose net): the guesses are refined first, alone (the
best ``top_k`` basins among the identity, the first guess's bracket and a bins net's other peaks);
only the images whose guess fails the test (its confidence, the length of its vector or a bins
net's peak mass, below ``confident``, or the net, shown the image turned by the answer, reading it
as turned by more than ``consistent``/``consistent_axis`` radians: a guess confidently in the wrong
valley) score the grid and a half-turn head's other side, and refine the best ``top_k`` basins
that promise to beat the first answer (``settle``). Every image's
result depends on that image alone; ``AlignResult.passes`` counts what each image cost.

Scoring and parabolic steps need no gradients, so they may run in bfloat16 (``precision``;
``"auto"``: where that is measured faster, on CPUs with AMX and GPUs that support it); the
chosen transform is then re-scored in float32, so every reported loss is exact (unless
``exact=False``: the training loop needs only the transform).

It runs on :func:`~avae_tutorial.model.for_inference`'s frozen copy; ``bench`` measures it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
from tqdm.auto import tqdm

from ._checks import check_image_shape, check_positive_int, check_same_device, finite_values, image_values, verify
from ._precision import BFLOAT16_CHOICES, BFLOAT16_SWITCH, bfloat16_switch, fast_bfloat16  # noqa: F401 (also here)
from .families import Family, get_family
from .loss import chunked_loss
from .model import VAE, for_inference
from .refine import (_basins, _best_per_image, _first_best_row, _fixed_chunks, _parabola, _refine_adam, _refine_angle,
                     _rows_loss)
from .transforms import _angle_of, _rotation, _warp, bin_peaks, wrap_angle

__all__ = ["align", "AlignConfig", "AlignResult", "preset", "PRESET_NAMES", "search_cost", "for_device"]


@dataclass(frozen=True)
class AlignConfig:
    """Search settings: ``restarts`` grid angles scored, the best ``top_k`` starts refined.

    ``steps``: refinement steps per start (parabolic for a pure angle; Adam with step size
    ``lr`` otherwise). ``init_span``: radians; each ``init`` guess is also scored at its
    angle +- ``init_span``. ``chunk``: (image, candidate) rows evaluated at once; it bounds
    memory (:func:`for_device` picks a large one off the CPU). ``exact=False`` skips the two
    float32 passes of a bfloat16 search (the identity's and the winner's): the transform is
    chosen as before, but the losses reported are bfloat16-scored (the training loop needs
    only the transform). ``restarts=0``: no grid, only the guesses (``init`` or a pose net's).
    ``identity=False`` does not score the plain VAE (``loss0`` is NaN; the training loop's warm
    search). ``confident``, ``consistent``, ``consistent_axis``: adaptive (the module's docstring;
    ``confident=0.0`` trusts every guess); ``settle``: adaptive refinement (``refine._refine_angle``).
    ``peaks``: the guesses a pose net with bins offers (its most probable angles).
    """

    restarts: int = 24
    top_k: int = 1
    steps: int = 6
    lr: float = 0.05
    chunk: int = 64
    init_span: float = 0.0
    pose: bool = False  # score the model's pose-net guess (if it has one; rotation-like families)
    precision: str = "float32"  # of the no-grad scoring: "float32", "bfloat16" or "auto"
    exact: bool = True  # losses in float32 (False: the identity and the winner keep their scoring-precision loss)
    identity: bool = True  # score the plain VAE (loss0) and never do worse (False: loss0 is NaN; training)
    confident: float | None = None  # adaptive: the grid only where the guess fails this test (see align)
    consistent: float | None = None  # adaptive: ... or where the net reads the aligned image as turned by more
    consistent_axis: float | None = None  # ... or where a half-turn head reads its axis as turned by more
    settle: float | None = None  # nats: adaptive refinement (refine._refine_angle); None: every start takes steps
    settle_after: int = 2  # with settle: the steps every start takes before the gate
    peaks: int = 2  # a bins pose net's guesses: its best peaks

    def __post_init__(self):
        check_positive_int(self.top_k, "top_k")
        check_positive_int(self.chunk, "chunk")
        check_positive_int(self.restarts, "restarts", minimum=0)
        check_positive_int(self.steps, "steps", minimum=0)
        check_positive_int(self.settle_after, "settle_after", minimum=0)
        check_positive_int(self.peaks, "peaks")
        for name in ("identity", "exact"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        for name in ("confident", "consistent", "consistent_axis", "settle"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0):
                raise ValueError(f"{name}: expected None or a float >= 0, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected a positive float, got {self.lr!r}")
        if not (isinstance(self.init_span, (int, float)) and 0 <= self.init_span < math.pi):
            raise ValueError(f"init_span: expected radians in [0, pi), got {self.init_span!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {PRECISIONS}, got {self.precision!r}")


PRECISIONS = ("float32", "bfloat16", "auto")


def scoring_dtype(config: AlignConfig, device) -> torch.dtype:
    """The dtype of the no-grad scoring on ``device``: bfloat16 where asked for, or for ``"auto"``
    where bfloat16 is measured to be faster than float32: CUDA GPUs that support it and CPUs with
    AMX tiles. Not on a CPU whose only bfloat16 path is AVX512-BF16 (an AMD EPYC, Zen 4): there the
    search takes as long in bfloat16 as in float32 and only loses precision
    (``python -m avae_tutorial bench --precision float32`` against ``--precision bfloat16``)."""
    if config.precision != "auto":
        return getattr(torch, config.precision)
    return torch.bfloat16 if fast_bfloat16(device) else torch.float32


PRESET_NAMES = ("default", "fast")

#: Rows per chunk when the images are not on a CPU: a GPU wants big launches.
GPU_CHUNK = 8192


def preset(family: str | Family, name: str = "default", pose: bool = False) -> AlignConfig:
    """The named settings of ``family`` (:attr:`Family.presets`: its own, or those of its kind);
    ``pose``: for a model with a pose net (:func:`align` passes ``vae.pose_net is not None``), the
    ``"<name>+pose"`` settings where the family has them."""
    fam = get_family(family)
    if "+" in name or name not in fam.presets:
        raise ValueError(f"unknown preset {name!r} for family {fam.name!r}; expected one of {PRESET_NAMES}")
    own = fam.presets[f"{name}+pose" if pose and f"{name}+pose" in fam.presets else name]
    return own if isinstance(own, AlignConfig) else AlignConfig(**own)


def for_device(config: AlignConfig, device: torch.device | str) -> AlignConfig:
    """``config`` as it should run on ``device``: on anything but a CPU, with ``chunk=GPU_CHUNK``."""
    return config if torch.device(device).type == "cpu" else replace(config, chunk=GPU_CHUNK)


def search_cost(config: AlignConfig, family: str | Family = "rotation", n_init: int = 0, device="cpu",
                pose_net=None) -> int:  # fmt: skip
    """VAE passes per image of :func:`align`, at most (a backward counts as two), whatever their
    precision; the pose net's own cost (about a tenth of a pass) is left out. A bfloat16 search (on
    ``device``) adds one float32 re-score unless ``exact=False``. An adaptive search spends this only
    on the images that fail its test: :attr:`AlignResult.passes` counts what each image cost.
    ``pose_net``: the model's, whose guesses a ``pose`` search scores (``None``: a net with bins,
    ``config.peaks`` guesses; a ``(cos, sin)`` head guesses once, a half-turn head twice)."""
    fam = get_family(family)
    now, later = 0, 0
    if config.pose and fam.is_angle:
        by_peaks = pose_net is None or bool(getattr(pose_net, "bins", None))  # no net known: count config.peaks
        half = not by_peaks and getattr(pose_net, "half_turn", False)  # a net with bins has no half-turn head
        now, later = (1, 1) if half and config.confident is not None else (config.peaks if by_peaks else 1 + half, 0)
    n_init += now
    guesses = n_init + (2 if config.init_span > 0 and n_init and fam.angle is not None else 0)
    grid = max(config.restarts if fam.angle is not None else 1, int(config.identity))
    refine = config.steps if fam.is_angle else 3 * config.steps + 1
    rescore = config.exact and scoring_dtype(config, device) != torch.float32
    if config.confident is None or not n_init:
        return grid + guesses + config.top_k * refine + rescore
    first = int(config.identity) + guesses + config.top_k * refine  # the guesses, the best top_k refined
    return first + grid - int(config.identity) + later + config.top_k * refine + rescore


@dataclass
class AlignResult:
    """Per image: ``A (B, 2, 3)``, ``loss (B,)``, ``params (B, P)``, the identity's ``loss0 (B,)``,
    ``angle (B,)``, the rotation (radians, in [-pi, pi)) that the search applied,
    ``passes (B,)``, the VAE passes the search spent on the image (counted as they run: a backward
    counts as two; the pose net's guess is not counted), and ``grid (B,)``, whether the image
    scored the grid of starts (an adaptive search sends there only the images whose guess fails
    its test; a search without guesses, every image; ``restarts=0``, none)."""

    A: torch.Tensor
    loss: torch.Tensor
    params: torch.Tensor
    loss0: torch.Tensor
    family: str
    angle: torch.Tensor
    passes: torch.Tensor
    grid: torch.Tensor

    @staticmethod
    def concat(parts: list[AlignResult]) -> AlignResult:
        """One result from several (of one family), every per-image field concatenated in order."""
        first = parts[0]
        return replace(first, **{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(first)
                                 if isinstance(getattr(first, f.name), torch.Tensor)})  # fmt: skip


def align(
    vae: VAE,
    x: torch.Tensor,
    family: str | Family = "rotation",
    config: AlignConfig | str = "default",
    init: torch.Tensor | None = None,
    batch_size: int = 512,
    progress: bool | None = None,
) -> AlignResult:
    """Find, per image, the transform ``A`` minimizing :func:`avae_loss` (``z = mu``).

    Args:
        vae: a trained :class:`VAE`; it is searched in eval mode and left unchanged.
        x: images ``(B, 1, canvas, canvas)`` in [0, 1] on the model's device.
        family: a registered family name (``"rotation"``, ``"affine"``, ``"affine_t"``, or
            one added with :func:`~avae_tutorial.register_family`) or a :class:`Family`.
        config: an :class:`AlignConfig` or a preset name (``"default"``, ``"fast"``; by name,
            off the CPU, with large chunks).
        init: optional extra starting parameters per image, ``(B, P)`` or ``(B, K, P)``.
        batch_size: images processed together; memory is bounded by ``config.chunk`` rows.
        progress: show a progress bar (default: when there is more than one batch).
    """
    fam = get_family(family)
    if isinstance(config, str):
        has_pose = getattr(vae, "pose_net", None) is not None
        config = for_device(preset(fam, config, pose=has_pose), x.device if isinstance(x, torch.Tensor) else "cpu")
    if not isinstance(config, AlignConfig):
        raise TypeError(f"config: expected an AlignConfig or a preset name, got {type(config).__name__}")
    check_same_device(vae, x)
    check_image_shape(x, canvas=vae.canvas, channels=getattr(vae, "channels", 1))
    check_positive_int(batch_size, "batch_size")
    init = _check_init_shape(init, x, fam.n_params)
    verify(image_values(x), None if init is None else finite_values(init, "init"))  # one read of the device
    guessed = init is not None or (config.pose and fam.is_angle and getattr(vae, "pose_net", None) is not None)
    if fam.angle is not None and config.restarts == 0 and not guessed:
        raise ValueError("config: restarts=0 scores no grid; expected guesses to start from (init, or a pose net)")
    return _align(for_inference(vae), x, fam, config, init, batch_size, progress)


def _align(model, x: torch.Tensor, fam: Family, config: AlignConfig, init: torch.Tensor | None = None,
           batch_size: int = 512, progress: bool | None = False) -> AlignResult:  # fmt: skip
    """:func:`align`'s core on a frozen model (:func:`~avae_tutorial.model.for_inference`), its
    inputs taken as checked: the training loop calls it on every batch. Reads the device only
    where the adaptive search picks the images that go on to the grid (once per batch)."""
    init = None if init is None else (init[:, None] if init.dim() == 2 else init).to(x)
    n_batches = math.ceil(x.shape[0] / batch_size)
    bar = tqdm(total=x.shape[0], desc=f"align ({fam.name})", unit="img",
               disable=not (progress if progress is not None else n_batches > 1))  # fmt: skip
    outs = []
    for s in range(0, x.shape[0], batch_size):
        extra = None if init is None else init[s : s + batch_size]
        outs.append(_align_batch(model, x[s : s + batch_size], fam, config, extra))
        bar.update(len(outs[-1][0]))
    bar.close()
    params, loss, loss0, passes, grid = (torch.cat(t) for t in zip(*outs))
    A = fam.build(params)
    angle = wrap_angle(params[:, fam.angle] if fam.angle is not None else _angle_of(A))
    return AlignResult(A, loss, params, loss0, fam.name, angle, passes, grid)


def _check_init_shape(init, x: torch.Tensor, P: int) -> torch.Tensor | None:
    if init is None:
        return None
    if not isinstance(init, torch.Tensor) or init.dim() not in (2, 3) or init.shape[0] != x.shape[0] \
            or init.shape[-1] != P:  # fmt: skip
        got = tuple(init.shape) if isinstance(init, torch.Tensor) else type(init).__name__
        raise ValueError(f"init: expected shape ({x.shape[0]}, {P}) or ({x.shape[0]}, K, {P}), got {got}")
    if not init.is_floating_point():
        raise TypeError(f"init: expected floating-point parameters (radians), got {init.dtype}; use init.float()")
    return init


def _starts(fam: Family, cfg: AlignConfig, extra, B: int, device, dtype) -> torch.Tensor:
    """``(B, R, P)`` starting parameters: the angle grid (for a family without an angle, the
    identity; the identity is candidate 0 whenever it is scored), then the guesses, the first
    of them with a neighbour ``init_span`` radians to either side when that is set."""
    R = cfg.restarts if fam.angle is not None else 1
    R = max(R, int(cfg.identity))
    grid = torch.zeros(R, fam.n_params, device=device, dtype=dtype)
    if fam.angle is not None:
        grid[:, fam.angle] = torch.arange(R, device=device, dtype=dtype) * (2 * math.pi / max(R, 1))
    cand = grid.expand(B, R, fam.n_params)
    if extra is None:
        return cand
    if cfg.init_span > 0 and fam.angle is not None:  # the first guess with a neighbour on either side
        shift = torch.zeros(fam.n_params, device=device, dtype=dtype)
        shift[fam.angle] = cfg.init_span
        extra = torch.cat([extra[:, :1] - shift, extra, extra[:, :1] + shift], 1)
    return torch.cat([cand, fam.project(extra.clone())], 1)


def _align_batch(model, x, fam: Family, cfg: AlignConfig, extra):
    dtype = scoring_dtype(cfg, x.device)
    lowp = dtype != x.dtype
    B = x.shape[0]
    spent = torch.zeros(B, dtype=torch.long, device=x.device)  # (B,) VAE passes spent on each image
    loss0 = torch.full((B,), math.nan, device=x.device, dtype=x.dtype)
    if cfg.identity:
        with torch.autocast(x.device.type, dtype=dtype, enabled=lowp and not cfg.exact):
            loss0 = _fixed_chunks(lambda xs: chunked_loss(model, xs, chunk=cfg.chunk), cfg.chunk, x)  # (B,) plain VAE
        spent += 1
    with torch.autocast(x.device.type, dtype=dtype, enabled=lowp):
        best_p, best_l, grid = _search(model, x, fam, cfg, extra, loss0, spent)
    if lowp and cfg.exact:  # the chosen transform, re-scored exactly
        best_l = _rows_loss(model, x, torch.arange(B, device=x.device), best_p, fam, cfg.chunk, spent)
    if cfg.identity:  # never worse than the identity
        keep0 = loss0 <= best_l
        best_p, best_l = torch.where(keep0[:, None], torch.zeros_like(best_p), best_p), torch.where(keep0, loss0, best_l)
    return best_p.detach(), best_l.detach(), loss0, spent, grid


def _pose_guess(model, x: torch.Tensor, cfg: AlignConfig, fam: Family):
    """``(guesses (B, K, 1), confidence (B,), later (B, K', 1) or None)`` from the pose net, or
    ``None`` without one or for other families. A ``(cos, sin)`` head: its angle is the guess and
    the length of its vector the confidence. A half-turn head guesses its axis on the side it
    prefers and, half a turn from it, a second guess that an adaptive search holds back for the
    images it sends on (``later``; the confidence is the shorter of its two vectors: the axis' and
    the side's). A bins head: its best ``cfg.peaks`` peaks, all guessed at once, and the first
    one's mass as the confidence."""
    pose = getattr(model, "pose_net", None)
    if not (cfg.pose and fam.is_angle and pose is not None):
        return None
    out = _pose_outputs(pose, x, cfg.chunk)
    if getattr(pose, "bins", None):
        angle, mass = bin_peaks(out, cfg.peaks)
        return angle[..., None], mass[:, 0], None
    angle = torch.atan2(out[:, 1], out[:, 0])
    if out.shape[1] == 2:
        return angle[:, None, None], out.norm(dim=1), None
    axis = 0.5 * torch.atan2(out[:, 3], out[:, 2])
    axis = torch.where(torch.cos(axis - angle) < 0, axis + math.pi, axis)
    sure = torch.minimum(out[:, 2:].norm(dim=1), out[:, :2].norm(dim=1))  # of the axis, and of its side
    both = torch.stack([axis, axis + math.pi], 1)[..., None]
    return (both, sure, None) if cfg.confident is None else (both[:, :1], sure, both[:, 1:])


def _search(model, x, fam: Family, cfg: AlignConfig, extra, loss0, spent):
    """Steps 1-3 for one batch: the best ``(params (B, P), loss (B,))`` per image and whether it scored
    the grid ``(B,)``. Adaptive with ``cfg.confident``: the guess refined first (a half-turn head's
    other side held back); only the images that fail the test go on to that side, the grid and the
    best ``top_k`` basins, seeded with the guess's refined bracket."""
    B, imgs = x.shape[0], torch.arange(x.shape[0], device=x.device)
    pose = _pose_guess(model, x, cfg, fam)
    conf, later = None, None
    if pose is not None:
        guess, conf, later = pose  # (B, K, 1), (B,), (B, K', 1) or None
        extra = guess.to(x.dtype) if extra is None else torch.cat([extra, guess.to(x.dtype)], 1)
    if cfg.confident is None or extra is None:
        cand = _starts(fam, cfg, extra, B, x.device, x.dtype)  # (B, R, P)
        p, loss, _ = _descend(model, x, imgs, fam, cfg, cand, _score(model, x, imgs, fam, cfg, cand, loss0, spent), spent)
        return p, loss, torch.full((B,), fam.angle is None or cfg.restarts > 0, dtype=torch.bool, device=x.device)
    first = _starts(fam, replace(cfg, restarts=0), extra, B, x.device, x.dtype)  # identity, guesses
    scores = _score(model, x, imgs, fam, cfg, first, loss0, spent)
    best_p, best_l, bracket = _descend(model, x, imgs, fam, cfg, first, scores, spent)
    if bracket is not None:  # the refined brackets join the candidates (replace a lone guess's raw one)
        k = first.shape[1] if first.shape[1] != int(cfg.identity) + 3 else int(cfg.identity)
        first = torch.cat([first[:, :k], torch.stack(bracket[:3], 1)[..., None]], 1)
        scores = torch.cat([scores[:, :k], torch.stack(bracket[3:], 1)], 1)
    unsure = _unsure(cfg, conf, B, x.device)
    if (cfg.consistent is not None or cfg.consistent_axis is not None) and conf is not None:
        unsure |= _inconsistent(model, x, best_p[:, fam.angle], cfg)
    hard = imgs[unsure]  # (H,) the images that go on
    if hard.numel():
        grid = _starts(fam, cfg, None, len(hard), x.device, x.dtype)[:, int(cfg.identity):]  # less the identity
        if later is not None:
            grid = torch.cat([grid, fam.project(later[hard].to(x.dtype).clone())], 1)
        R, P = grid.shape[1:]
        more = _rows_loss(model, x, hard.repeat_interleave(R), grid.reshape(-1, P), fam, cfg.chunk, spent)
        cand, sc = torch.cat([first[hard], grid], 1), torch.cat([scores[hard], more.view(len(hard), R)], 1)
        p2, l2, _ = _descend(model, x, hard, fam, cfg, cand, sc, spent, best_l[hard])
        better = l2 < best_l[hard]  # kept on the device: where, not a mask index
        best_p[hard] = torch.where(better[:, None], p2.to(best_p.dtype), best_p[hard])
        best_l[hard] = torch.where(better, l2.to(best_l.dtype), best_l[hard])
    return best_p, best_l, unsure


def _unsure(cfg: AlignConfig, conf: torch.Tensor | None, B: int, device) -> torch.Tensor:
    """``(B,)`` bool: the images whose guess fails the confidence test, the pose net's confidence
    (the length of its predicted vector, 1 for a sure guess) below ``cfg.confident``. Caller-supplied
    guesses (``init``) carry no confidence: every image then scores the grid."""
    if conf is None:
        return torch.ones(B, dtype=torch.bool, device=device)
    return conf < cfg.confident


def _inconsistent(model, x: torch.Tensor, angle: torch.Tensor, cfg: AlignConfig) -> torch.Tensor:
    """``(B,)`` bool: the pose net, shown each image turned by its answer ``angle (B,)``, reads it as
    still turned by more than ``cfg.consistent`` radians, or a half-turn head its axis by more than
    ``cfg.consistent_axis`` (an answer in the wrong valley is rarely read as upright). One pass of
    the pose net, no VAE pass."""
    with torch.no_grad():
        turned = _warp(x, _rotation(angle.to(x.dtype)))
    out, no = _pose_outputs(model.pose_net, turned, cfg.chunk), math.inf  # no: a check not asked for
    bins = getattr(model.pose_net, "bins", None)
    read = wrap_angle(bin_peaks(out, 1)[0][:, 0]) if bins else torch.atan2(out[:, 1], out[:, 0])
    off = read.abs() > (no if cfg.consistent is None else cfg.consistent)
    axis = 0.5 * torch.atan2(out[:, 3], out[:, 2]).abs() if out.shape[1] == 4 and not bins \
        else torch.zeros_like(off, dtype=out.dtype)  # fmt: skip
    return off | (axis > (no if cfg.consistent_axis is None else cfg.consistent_axis))


def _pose_outputs(pose, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """The pose net's raw outputs for ``x``, no grad, float32, in fixed-size chunks of ``chunk``
    images (each image's outputs independent of the batch)."""
    with torch.no_grad():
        return _fixed_chunks(lambda xs: torch.cat([pose.outputs(xs[s : s + chunk]) for s in range(0, len(xs), chunk)]),
                             chunk, x).float()  # fmt: skip


def _score(model, x, imgs, fam: Family, cfg: AlignConfig, cand, loss0, spent) -> torch.Tensor:
    """``(B', R)`` no-grad losses of candidates ``cand (B', R, P)`` of images ``imgs (B',)``;
    candidate 0, when ``cfg.identity``, is the identity, whose loss ``loss0`` is known."""
    R, P = cand.shape[1:]
    k = int(cfg.identity)
    rest = _rows_loss(model, x, imgs.repeat_interleave(R - k), cand[:, k:].reshape(-1, P), fam, cfg.chunk, spent)
    rest = rest.view(len(imgs), R - k)
    return torch.cat([loss0[imgs, None], rest], 1) if k else rest


def _descend(model, x, imgs, fam: Family, cfg: AlignConfig, cand, scores, spent, best=None):
    """Steps 2-3 for images ``imgs (B',)`` with scored candidates ``cand (B', R, P)``, ``scores (B', R)``:
    the best ``(params (B', P), loss (B',))`` per image and, for one angle, the refined bracket of
    each image's best start (``None`` without refinement). ``best (B',)``: the images' best losses
    found elsewhere; without it, each image's best-ranked start is refined whenever it holds the
    image's best score, its other starts only while they promise to beat that by ``settle``."""
    B, (R, P) = len(imgs), cand.shape[1:]
    best_l, j0 = scores.min(1)
    best_p = cand[torch.arange(B, device=x.device), j0]  # (B', P)
    if cfg.steps == 0:
        return best_p, best_l, None
    if fam.angle is not None:
        a, b, c, fa, fb, fc, j, valid = _basins(cand[..., fam.angle], scores, cfg.top_k)  # each (B', k)
    else:
        j = scores.topk(min(cfg.top_k, R), dim=1, largest=False)[1]  # (B', k) the best starts
        valid = None  # every start is a real one
    # the starts to refine, (N,) into (B', k): all for one start per image, else the real basins (one read)
    whole = j.shape[1] == 1 or valid is None
    keep = torch.arange(j.numel(), device=x.device) if whole else valid.reshape(-1).nonzero().squeeze(1)
    rows = keep // j.shape[1]  # (N,) start -> row of imgs

    def at(t):
        return t.reshape(-1)[keep]

    bracket = None
    if fam.is_angle:
        lead = None
        if best is None and j.shape[1] > 1:  # several starts per image: gate all but the leader
            best, lead = best_l, (keep % j.shape[1] == 0) & (at(fb) <= best_l[rows])
        bracket = _refine_angle(model, x, imgs[rows], at(a), at(b), at(c), at(fa), at(fb), at(fc), fam, cfg, spent,
                                None if best is None else best[rows], lead)  # fmt: skip
        rp, rl = bracket[1][:, None], bracket[4]
        best_row = _first_best_row(rows, rl, B).clamp(max=rows.numel() - 1)  # every image has a start
        bracket = tuple(t[best_row] for t in bracket)  # (B',) each: the best start's
    else:
        p0 = cand.gather(1, j[..., None].expand(*j.shape, P)).reshape(-1, P)[keep]  # (N, P)
        if fam.angle is not None:
            p0[:, fam.angle] = _parabola(at(a), at(b), at(c), at(fa), at(fb), at(fc))[0]
        with torch.autocast(x.device.type, enabled=False):  # gradients in float32
            rp, rl = _refine_adam(model, x, imgs[rows], p0, fam, cfg, spent)
    return *_best_per_image(best_p, best_l, rows, rp, rl), bracket

