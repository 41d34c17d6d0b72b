"""Training in three regimes (chapter 4): upright, rotated, and rotated with per-batch alignment.

* ``upright``: plain VAE training on MNIST as it is.
* ``rotated``: every digit turned by a fresh random angle each epoch (data augmentation).
* ``aligned``: as ``rotated``, but before each SGD step every image's rotation is chosen by
  :func:`avae_tutorial.align` (:func:`search_batch`); the step then trains on ``warp(x, A)``.
  The first epoch searches cold (``TrainConfig.align``); later epochs warm-start at the
  orientation at which each digit was encoded in the previous epoch (``TrainConfig.align_warm``).
  By default (``TrainConfig.pose_online``) a pose net (:class:`~avae_tutorial.pose.PoseNet`)
  learns the search's answers as training goes, one step per batch, and its guess joins later
  epochs' candidates: 4 passes per image instead of a grid (:data:`ONLINE_SEARCH`, the recipe
  chosen by measurement in chapter 4b; :data:`TRAINING_SEARCHES` names the others).
  ``fit(..., search=...)`` swaps in another per-batch search (the benchmark's seed-style one).

For ``aligned`` the history records, per epoch, the orientation at which each training digit
was encoded: its perturbation angle plus the chosen correction (chapter 5's histograms).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Callable

import torch
from tqdm.auto import tqdm

from .._checks import check_choice, check_device, check_images, check_labels, check_positive_int
from ..align import AlignConfig, _align, for_device
from .checkpoint import checkpoint_dict, load_checkpoint, model_from_checkpoint, save_checkpoint
from .distributed import GlobalBatchSampler, align_sharded, all_sum, check_same, data_parallel, global_mean, world
from .evaluate import mean_loss
from .timing import synchronize
from ..families import get_family
from ..loss import _avae_loss
from ..model import VAE, _sizes, check_canvas, check_channels, for_inference, refresh_inference
from ..pose import PoseNet
from ..transforms import _rotation, _warp, wrap_angle

__all__ = ["TrainConfig", "fit", "REGIMES", "TRAINING_SEARCHES", "training_search", "evaluation_angles", "epoch_angles", "search_config", "search_batch"]

REGIMES = ("upright", "rotated", "aligned")

#: Later epochs' search, the default (``pose_online=True``; it trained the shipped ``avae-transopt``):
#: last epoch's orientation and it +- 0.1 rad, and the online pose net's guess; the best of the
#: four kept, no grid, no identity, no refinement step (4 passes per image).
ONLINE_SEARCH = AlignConfig(restarts=0, steps=0, init_span=0.1, identity=False, precision="auto")
#: Later epochs' search of the ``warm`` recipe (it trained ``avae-transopt-warm``): a grid of 8
#: angles, last epoch's orientation +- 0.1 rad, 2 parabolic steps (13 passes per image).
WARM_SEARCH = AlignConfig(restarts=8, steps=2, init_span=0.1, precision="auto")
#: The ``lite`` recipe's: last orientation +- 0.1 rad, one parabolic step; no grid, no identity (4).
LITE_SEARCH = AlignConfig(restarts=0, steps=1, init_span=0.1, identity=False, precision="auto")
#: The aligned regime's training searches that chapter 4b compares: name -> the :class:`TrainConfig`
#: fields that set it (the first epoch's search is the same for all: 8 grid angles, one step).
#: ``online`` is the default, chosen on held-out digits over three seeds (``compare-training``).
TRAINING_SEARCHES = MappingProxyType({
    "online": {"align_warm": asdict(ONLINE_SEARCH), "pose_online": True, "warm_start": True},  # 4 passes
    "warm": {"align_warm": asdict(WARM_SEARCH), "pose_online": False, "warm_start": True},  # grid beside, 13
    "cold": {"align_warm": asdict(WARM_SEARCH), "pose_online": False, "warm_start": False},  # first epoch's each epoch (9)
    "lite": {"align_warm": asdict(LITE_SEARCH), "pose_online": False, "warm_start": True},  # 4
})
#: Adam's step size for the online pose net.
POSE_LR = 1e-3


@dataclass
class TrainConfig:
    regime: str = "upright"
    latent_dim: int = 8
    canvas: int = 40
    channels: int = 1  # 1 (grey) or 3 (RGB)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 5e-4
    train_limit: int | None = None  # first N training digits (None: all 60,000)
    test_limit: int = 1000  # test digits for the per-epoch test loss
    seed: int = 0
    # aligned regime: the search of the first epoch and of the per-epoch test loss (``align``) and
    # of later epochs, warm-started at each digit's last orientation (``align_warm``): that
    # orientation +- init_span and the online pose net's guess (ONLINE_SEARCH, 4 passes);
    # TRAINING_SEARCHES holds the other recipes' fields
    align: dict = field(default_factory=lambda: asdict(AlignConfig(restarts=8, steps=1, precision="auto")))
    align_warm: dict = field(default_factory=lambda: asdict(ONLINE_SEARCH))
    warm_start: bool = True  # later epochs start from each digit's last orientation (False: cold every epoch)
    pose_online: bool = True  # aligned: a pose net learns the search's answers online; later epochs score its guess

    def __post_init__(self):
        check_choice(self.regime, REGIMES, "regime")
        for name in ("latent_dim", "epochs", "batch_size", "test_limit"):
            check_positive_int(getattr(self, name), name)
        check_canvas(self.canvas)
        check_channels(self.channels)
        check_positive_int(self.seed, "seed", minimum=0)
        if self.train_limit is not None:
            check_positive_int(self.train_limit, "train_limit")
        for name in ("warm_start", "pose_online"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr: expected a positive float, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay: expected a float >= 0, got {self.weight_decay!r}")
        fields = set(AlignConfig.__dataclass_fields__)
        for name in ("align", "align_warm"):
            value = getattr(self, name)
            if not isinstance(value, dict) or not set(value) <= fields:
                extra = sorted(set(value) - fields) if isinstance(value, dict) else value
                raise ValueError(f"{name}: expected a dict with keys among {sorted(fields)}, got unknown {extra!r}")
            AlignConfig(**value)  # validates the values


def training_search(name: str) -> dict:
    """The :class:`TrainConfig` fields of training search ``name`` (a key of
    :data:`TRAINING_SEARCHES`): ``TrainConfig("aligned", **training_search("warm"))``."""
    check_choice(name, tuple(TRAINING_SEARCHES), "training search")
    return dict(TRAINING_SEARCHES[name])


def evaluation_angles(n: int, seed: int) -> torch.Tensor:
    """Fixed, seeded angles in [0, 2pi) for rotated evaluation sets."""
    return torch.rand(n, generator=torch.Generator().manual_seed(seed)) * (2 * math.pi)


def epoch_angles(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The random perturbation angles of the ``n`` training digits in epoch ``epoch`` (0-based)."""
    return evaluation_angles(n, seed * 100_003 + epoch)


def search_config(config: TrainConfig, warm: bool) -> AlignConfig:
    """The aligned regime's per-batch search settings: ``config.align`` in the first epoch,
    ``config.align_warm`` when warm-started; ``exact=False`` either way (training uses only the
    angles, so no pass is spent re-scoring the winner in float32)."""
    return replace(AlignConfig(**(config.align_warm if warm else config.align)), exact=False)


def search_batch(vae: VAE, xb: torch.Tensor, last: torch.Tensor | None, config: TrainConfig,
                 guess: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The aligned regime's search for one batch: ``(angle (B,), passes (B,))``, the correction
    angle for each image of ``xb`` and the VAE passes it cost.

    ``vae``: the model as the search runs it, frozen and folded
    (:func:`~avae_tutorial.model.for_inference`, kept up to date by :func:`fit`); ``xb``: images
    the training loop made itself, so nothing is checked again (no read of the device).
    ``last (B,)``: where each digit was encoded in the previous epoch, in ``xb``'s frame (radians),
    or ``None`` in the first epoch; the search then uses ``config.align``, otherwise
    ``config.align_warm`` warm-started there (:func:`~avae_tutorial.align.for_device` chunks),
    with ``guess (B,)`` (the online pose net's, same frame) as one more candidate.
    """
    cfg = for_device(search_config(config, warm=last is not None), xb.device)
    init = None if last is None else torch.stack([last] + ([guess] if guess is not None else []), 1)[..., None]
    res = _align(vae, xb, get_family("rotation"), cfg, init=init)
    return res.params[:, 0], res.passes


def _test_loss(vae: VAE, x: torch.Tensor, align_cfg: AlignConfig | None = None) -> torch.Tensor:
    """Mean test loss, on the device: the plain VAE's, or after ``align`` with ``align_cfg`` (the
    aligned regime)."""
    if align_cfg is not None:
        return align_sharded(vae, x, "rotation", align_cfg, progress=False).loss.mean()
    return mean_loss(vae, x).mean()


def _training_loss(vae: VAE, xb: torch.Tensor, A: torch.Tensor | None) -> torch.Tensor:
    """The SGD step's loss per sample ``(B,)``: a one-sample negative ELBO (inputs made by the
    training loop itself: not checked again)."""
    return _avae_loss(vae, xb, A, sample=True)


def _pair(data, name: str, canvas: int, channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``(x, y)``: images as :func:`load_mnist` returns them and one label per image."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"{name}: expected a pair (x, y) as load_mnist returns, got {type(data).__name__}")
    x, y = data
    check_images(x, name=f"{name} x", canvas=canvas, channels=channels)
    check_labels(y, len(x), name=f"{name} y")
    return x, y


def _check_batches(n: int, batch_size: int, canvas: int) -> None:
    """At least two training images; and on canvases 28-31, whose encoder ends in 1x1 feature maps,
    no batch of a single image (BatchNorm cannot compute statistics from one value per channel)."""
    if n < 2:
        raise ValueError(f"train: expected at least 2 training images, got {n}")
    if n % batch_size == 1 and _sizes(canvas)[3] == 1:
        raise ValueError(
            f"train: {n} images in batches of {batch_size} leave a last batch of one image, which BatchNorm "
            f"cannot train on at canvas {canvas}; change batch_size or train_limit by one"
        )


def fit(
    config: TrainConfig,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    device: str | torch.device | None = None,
    progress: bool = True,
    search=None,
) -> tuple[VAE, dict]:
    """Train a :class:`VAE` as ``config`` says; returns ``(vae, history)``.

    Args:
        train, test: ``(x, y)`` upright digits as :func:`load_mnist` returns them; the regime
            rotates them itself. ``test`` defaults to the last ``test_limit`` training digits.
        checkpoint: file written atomically after every epoch (config, weights, optimizer,
            history); with ``resume`` an existing file is continued from its last epoch.
        device: where to train (default: where ``train`` lives).
        search: the aligned regime's per-batch search, ``(vae, xb, last, config, guess) ->
            (angles (B,), passes (B,))`` (default :func:`search_batch`); ``vae`` is the frozen,
            folded copy of the model, up to date with its weights; ``last`` and ``guess`` are as
            :func:`search_batch` takes them.

    ``history`` has per-epoch ``train_loss``, ``test_loss`` (nats, ``z = mu``, eval mode, on
    upright test digits for ``upright`` and on randomly rotated ones otherwise; for ``aligned``
    after the search ``config.align``, named in ``test_search``), ``seconds`` (the training pass
    only), and for ``aligned`` ``orientation (epochs, N)``: radians in [-pi, pi) at which each
    training digit was encoded, with ``labels (N,)``, and ``passes (epochs, N)``: the VAE passes
    the search spent on each digit (the training step's own forward and backward not counted).

    In a process group (``torchrun``; :mod:`avae_tutorial.training.distributed`) every process runs
    ``fit`` alike: each trains on its slice of the same global batches of ``batch_size``
    (DistributedDataParallel, BatchNorm over the global batch), and only rank 0 writes
    ``checkpoint``.

    The inputs are checked once, here; inside, values stay on the device: a step reads it once
    (the loss, to stop at the first non-finite one), an epoch a few times (its history).

    Raises ``ValueError`` for bad data (fewer than 2 training images, a last batch of one image
    at canvas 28-31, images not on the config's canvas) or a checkpoint written by another config, and
    ``FloatingPointError`` (naming the epoch and batch) when the loss stops being finite.
    """
    run = _start(config, train, test, checkpoint, resume, device, search)
    progress = progress and run.rank == 0
    for epoch in range(run.start, config.epochs):
        t0 = time.perf_counter()
        orient, spent, total = _train_epoch(run, epoch, progress)
        synchronize(run.device)  # queued GPU work belongs to this epoch's time
        _record_epoch(run, epoch, time.perf_counter() - t0, orient, spent, total, progress)
        _save(run, epoch)
    run.vae.eval()
    return run.vae, run.history


@dataclass
class _Run:
    """What one training run holds between its steps (made by :func:`_start`)."""

    config: TrainConfig
    checkpoint: Path | None
    device: torch.device
    x: torch.Tensor
    x_test: torch.Tensor
    vae: VAE
    opt: torch.optim.Optimizer
    history: dict
    start: int
    search: Callable
    step: torch.nn.Module
    batches: GlobalBatchSampler
    rank: int
    pose: PoseNet | None = None
    pose_opt: torch.optim.Optimizer | None = None
    pose_step: torch.nn.Module | None = None
    frozen: torch.nn.Module | None = None  # the search's folded copy, refreshed after each step


def _adam(params, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam, fused where torch has it for the device (CPU and GPU since torch 2.4): one kernel for
    every tensor, and the step count kept on the device (the plain loop reads it for every
    parameter at every step: 36 reads per step for this model)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):  # an older torch, or a device without the fused kernel
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def _start(config, train, test, checkpoint, resume, device, search) -> _Run:
    """Check the inputs (once), build the model, optimizer and history, or resume them."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config: expected a TrainConfig, got {type(config).__name__}")
    x, y = _pair(train, "train", config.canvas, config.channels)
    if config.train_limit is not None:
        x, y = x[: config.train_limit], y[: config.train_limit]
    _check_batches(len(x), config.batch_size, config.canvas)
    test = (x[-config.test_limit :], y[-config.test_limit :]) if test is None else _pair(test, "test", config.canvas, config.channels)
    device = check_device(device) if device is not None else x.device
    x, y = x.to(device), y.to(device)
    x_test = test[0][: config.test_limit].to(device)
    if config.regime != "upright":
        x_test = _warp(x_test, _rotation(evaluation_angles(len(x_test), config.seed + 1).to(device)))

    torch.manual_seed(config.seed)
    vae = VAE(config.latent_dim, config.canvas, config.channels).to(device)
    opt = _adam(vae.parameters(), config.lr, config.weight_decay)
    history = {"epoch": [], "train_loss": [], "test_loss": [], "seconds": []}
    if config.regime == "aligned":
        history["test_search"] = asdict(AlignConfig(**config.align))
        history["labels"] = y.cpu()
        history["orientation"] = torch.empty(0, len(x))
        history["passes"] = torch.empty(0, len(x), dtype=torch.int16)
    pose = (PoseNet(config.canvas, channels=config.channels).to(device)
            if config.regime == "aligned" and config.pose_online else None)  # fmt: skip
    pose_opt = _adam(pose.parameters(), POSE_LR) if pose is not None else None
    start = 0
    if checkpoint is not None and resume and Path(checkpoint).exists():
        vae, opt, history, start = _resume(config, checkpoint, device, pose, pose_opt)
    check_same(start, "the epoch to resume from")
    run = _Run(config, None if checkpoint is None else Path(checkpoint), device, x, x_test, vae, opt, history, start,
               search or search_batch, data_parallel(vae, _training_loss), GlobalBatchSampler(len(x), config.batch_size,
               config.seed), world()[0], pose, pose_opt)  # fmt: skip
    if pose is not None:
        run.pose_step = data_parallel(pose, _pose_loss)  # (xb, angle) -> (B,)
    if config.regime == "aligned":
        run.frozen = for_inference(vae)
    return run


def _resume(config: TrainConfig, checkpoint, device, pose, pose_opt):
    """``(vae, opt, history, start epoch)`` from ``checkpoint``, which this config must have written."""
    ckpt = load_checkpoint(checkpoint, map_location=device)
    old = {"channels": 1, **ckpt["config"]}  # written before channels existed: grey
    diff = {k: (old.get(k), v) for k, v in asdict(config).items() if k != "epochs" and old.get(k) != v}
    if diff:  # (more epochs continue a run)
        raise ValueError(
            f"checkpoint {checkpoint} was written by another config (field: checkpoint's, this run's): {diff}; "
            f"pass resume=False (CLI: --restart) to start over, or another checkpoint path"
        )
    vae = model_from_checkpoint(ckpt).to(device)
    opt = _adam(vae.parameters(), config.lr, config.weight_decay)
    opt.load_state_dict(ckpt["optimizer"])
    if pose is not None:
        pose.load_state_dict(ckpt["pose_online"])
        pose_opt.load_state_dict(ckpt["pose_optimizer"])
    return vae, opt, ckpt["history"], ckpt["epoch"]


def _train_epoch(run: _Run, epoch: int, progress: bool):
    """One pass over the training digits: ``(orientation (N,), passes (N,), [loss sum, count])``,
    all on the device (each process fills the digits it trained on)."""
    config, n = run.config, len(run.x)
    torch.manual_seed(config.seed * 1_000 + epoch)  # reparameterization noise, resumable
    run.batches.set_epoch(epoch)
    angles = epoch_angles(n, config.seed, epoch).to(run.device)
    orient = torch.zeros(n, device=run.device)
    spent = torch.zeros(n, dtype=torch.int32, device=run.device)
    total = torch.zeros(2, dtype=torch.float64, device=run.device)  # loss sum, images
    warm = config.regime == "aligned" and epoch > 0 and config.warm_start
    prev = run.history["orientation"][-1].to(run.device) if warm else None
    run.vae.train()
    bar = tqdm(run.batches, desc=f"{config.regime} epoch {epoch + 1}/{config.epochs}", disable=not progress,
               leave=False)  # fmt: skip
    for b, idx in enumerate(bar):
        idx = torch.tensor(idx, dtype=torch.long, device=run.device)  # host to device: no read
        loss = _train_batch(run, epoch, b, idx, angles, prev, orient, spent)
        total += torch.stack([loss.detach().sum().double(), loss.new_tensor(len(idx), dtype=torch.float64)])
        if progress and (b % 10 == 0 or b == len(run.batches) - 1):  # a read of the device, for the reader
            bar.set_postfix(loss=f"{float(total[0] / total[1].clamp_min(1)):.1f}")
    return orient, spent, total


def _train_batch(run: _Run, epoch: int, b: int, idx: torch.Tensor, angles, prev, orient, spent) -> torch.Tensor:
    """One optimizer step on the digits ``idx`` of this process' slice of global batch ``b``: the
    rotation, the search (aligned), the pose net's step (online) and the model's; returns the
    per-sample losses ``(B,)``. One read of the device: the loss, checked to be finite."""
    config = run.config
    xb, A, corr = run.x[idx], None, None
    if config.regime != "upright" and len(idx):  # (a process may get no image of a small last batch)
        xb = _warp(xb, _rotation(angles[idx]))
    if config.regime == "aligned" and len(idx):
        corr = _search_step(run, xb, idx, angles, prev, orient, spent)
        A = _rotation(corr)
    if run.pose is not None:  # one step towards the search's answer (every process takes part)
        run.pose_opt.zero_grad(set_to_none=True)
        target = xb.new_zeros(0) if corr is None else corr.detach()
        global_mean(run.pose_step(xb, target), run.batches.global_batch(b)).backward()
        run.pose_opt.step()
    per_sample = run.step(xb, A)
    loss = global_mean(per_sample, run.batches.global_batch(b))
    if not torch.isfinite(loss):
        kept = f"the last good checkpoint is kept at {run.checkpoint}" if run.checkpoint else "no checkpoint was asked for"
        raise FloatingPointError(
            f"non-finite training loss ({loss.item()}) at epoch {epoch + 1}, batch {b + 1}; {kept}; "
            f"try a smaller lr (now {config.lr})"
        )
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    run.opt.step()
    return per_sample.detach()


def _search_step(run: _Run, xb, idx, angles, prev, orient, spent) -> torch.Tensor:
    """The aligned regime's search for one batch, on the folded copy refreshed to the current
    weights: the correction angles ``(B,)``; each digit's orientation and passes recorded."""
    last = None if prev is None else prev[idx] - angles[idx]  # last epoch's orientation, in xb's frame
    guess = None
    if run.pose is not None and last is not None:  # the online pose net's guess
        with torch.no_grad():
            vec = run.pose.vector(xb)  # (B, 2) its (cos, sin)
        guess = torch.atan2(vec[:, 1], vec[:, 0])
    corr, passes = run.search(refresh_inference(run.frozen, run.vae), xb, last, run.config, guess)
    orient[idx] = wrap_angle(angles[idx] + corr).to(orient.dtype)
    spent[idx] = passes.to(spent.dtype)
    return corr


def _record_epoch(run: _Run, epoch: int, seconds: float, orient, spent, total, progress: bool) -> None:
    """The per-epoch evaluation and history: the processes' sums joined, the test loss."""
    config, history = run.config, run.history
    total = all_sum(total).tolist()  # each digit's orientation (and its search's passes) was found by one process
    history["seconds"].append(seconds)
    history["epoch"].append(epoch + 1)
    history["train_loss"].append(total[0] / total[1])
    test_cfg = for_device(AlignConfig(**config.align), run.device) if config.regime == "aligned" else None
    history["test_loss"].append(float(_test_loss(run.vae, run.x_test, test_cfg)))
    if config.regime == "aligned":
        history["orientation"] = torch.cat([history["orientation"], all_sum(orient).cpu()[None]])
        history["passes"] = torch.cat([history["passes"], all_sum(spent).cpu()[None].to(torch.int16)])
    if progress:
        tqdm.write(
            f"[{config.regime} L={config.latent_dim}] epoch {epoch + 1}: train {history['train_loss'][-1]:.2f} "
            f"test {history['test_loss'][-1]:.2f} nats ({history['seconds'][-1]:.0f}s)"
        )


def _save(run: _Run, epoch: int) -> None:
    """The checkpoint after ``epoch`` (rank 0 only; written atomically by :func:`save_checkpoint`)."""
    if run.checkpoint is None or run.rank != 0:
        return
    online = {} if run.pose is None else {"pose_online": run.pose.state_dict(), "pose_optimizer": run.pose_opt.state_dict()}
    save_checkpoint(checkpoint_dict(run.vae, config=asdict(run.config), optimizer=run.opt.state_dict(),
                                    epoch=epoch + 1, history=run.history, **online), run.checkpoint)  # fmt: skip


def _pose_loss(pose: PoseNet, xb: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Per image ``(B,)``: the online pose net's ``(cos, sin)`` against the search's ``angle (B,)``."""
    target = torch.stack([angle.cos(), angle.sin()], 1)
    return (pose.vector(xb) - target).pow(2).sum(1)
