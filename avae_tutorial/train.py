"""Training in three regimes (chapter 4): upright, rotated, and rotated with per-batch alignment.

* ``upright``: plain VAE training on MNIST as it is.
* ``rotated``: every digit turned by a fresh random angle each epoch (data augmentation).
* ``aligned``: as ``rotated``, but before each SGD step every image's rotation is chosen by
  :func:`avae_tutorial.align` (:func:`search_batch`); the step then trains on ``warp(x, A)``.
  The first epoch searches cold (``TrainConfig.align``); later epochs warm-start at the
  orientation at which each digit was encoded in the previous epoch (``TrainConfig.align_warm``).
  With ``TrainConfig.pose_online`` a pose net (:class:`~avae_tutorial.pose.PoseNet`) learns the
  search's answers as training goes, one step per batch, and its guess joins later epochs'
  candidates: the search is amortized, a few passes per image instead of a grid.
  ``fit(..., search=...)`` swaps in another per-batch search (the benchmark's seed-style one).

For ``aligned`` the history records, per epoch, the orientation at which each training digit
was encoded: its perturbation angle plus the chosen correction (chapter 5's histograms).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ._checks import check_choice, check_device, check_images, check_labels, check_positive_int
from .align import AlignConfig, align, for_device
from .checkpoint import checkpoint_dict, load_checkpoint, model_from_checkpoint, save_checkpoint
from .distributed import GlobalBatchSampler, align_sharded, all_sum, check_same, data_parallel, global_mean, world
from .evaluate import mean_loss
from .lesson import synchronize
from .loss import avae_loss
from .model import VAE, _sizes, check_canvas, check_channels
from .pose import PoseNet
from .transforms import rotation, warp, wrap_angle

__all__ = ["TrainConfig", "fit", "REGIMES", "evaluation_angles", "epoch_angles", "search_config", "search_batch"]

REGIMES = ("upright", "rotated", "aligned")

#: Later epochs' search (the default; it trained the shipped ``avae-transopt``): a grid of 8
#: angles, last epoch's orientation +- 0.1 rad, 2 parabolic steps (13 passes per image).
WARM_SEARCH = AlignConfig(restarts=8, steps=2, init_span=0.1, precision="auto")
#: Later epochs' search when amortized (``pose_online=True``; it trained ``avae-transopt-amortized``):
#: last epoch's orientation and it +- 0.1 rad, and the online pose net's guess; the best of the
#: four kept, no grid, no identity, no refinement step (4 passes per image).
AMORTIZED_WARM_SEARCH = AlignConfig(restarts=0, steps=0, init_span=0.1, identity=False, precision="auto")
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
    # of later epochs, warm-started at each digit's last orientation (``align_warm``): a grid,
    # that orientation +- init_span, parabolic steps (13 passes); AMORTIZED_WARM_SEARCH with
    # pose_online=True is the amortized variant (4 passes)
    align: dict = field(default_factory=lambda: asdict(AlignConfig(restarts=8, steps=1, precision="auto")))
    align_warm: dict = field(default_factory=lambda: asdict(WARM_SEARCH))
    warm_start: bool = True  # later epochs start from each digit's last orientation (False: cold every epoch)
    pose_online: bool = False  # aligned: a pose net learns the search's answers online; later epochs score its guess

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

    ``last (B,)``: where each digit was encoded in the previous epoch, in ``xb``'s frame (radians),
    or ``None`` in the first epoch; the search then uses ``config.align``, otherwise
    ``config.align_warm`` warm-started there (:func:`~avae_tutorial.align.for_device` chunks),
    with ``guess (B,)`` (the online pose net's, same frame) as one more candidate.
    """
    cfg = for_device(search_config(config, warm=last is not None), xb.device)
    init = None if last is None else torch.stack([last] + ([guess] if guess is not None else []), 1)[..., None]
    res = align(vae, xb, "rotation", cfg, init=init, progress=False)
    return res.params[:, 0], res.passes


def _test_loss(vae: VAE, x: torch.Tensor, align_cfg: AlignConfig | None = None) -> float:
    """Mean test loss: the plain VAE's, or after ``align`` with ``align_cfg`` (the aligned regime)."""
    if align_cfg is not None:
        return float(align_sharded(vae, x, "rotation", align_cfg, progress=False).loss.mean())
    return float(mean_loss(vae, x).mean())


def _training_loss(vae: VAE, xb: torch.Tensor, A: torch.Tensor | None) -> torch.Tensor:
    """The SGD step's loss per sample ``(B,)``: a one-sample negative ELBO."""
    return avae_loss(vae, xb, A, sample=True)


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
            (angles (B,), passes (B,))`` (default :func:`search_batch`); ``last`` and ``guess`` are
            as :func:`search_batch` takes them.

    ``history`` has per-epoch ``train_loss``, ``test_loss`` (nats, ``z = mu``, eval mode, on
    upright test digits for ``upright`` and on randomly rotated ones otherwise; for ``aligned``
    after the same rotation search as in training), ``seconds`` (the training pass only),
    and for ``aligned`` ``orientation (epochs, N)``: radians in [-pi, pi) at which each training
    digit was encoded, with ``labels (N,)``, and ``passes (epochs, N)``: the VAE passes the search
    spent on each digit (the training step's own forward and backward not counted).

    In a process group (``torchrun``; :mod:`avae_tutorial.distributed`) every process runs
    ``fit`` alike: each trains on its slice of the same global batches of ``batch_size``
    (DistributedDataParallel, BatchNorm over the global batch), and only rank 0 writes
    ``checkpoint``.

    Raises ``ValueError`` for bad data (fewer than 2 training images, a last batch of one image
    at canvas 28-31, images not on the config's canvas) or a checkpoint written by another config, and
    ``FloatingPointError`` (naming the epoch and batch) when the loss stops being finite.
    """
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
        x_test = warp(x_test, rotation(evaluation_angles(len(x_test), config.seed + 1).to(device)))

    torch.manual_seed(config.seed)
    vae = VAE(config.latent_dim, config.canvas, config.channels).to(device)
    opt = torch.optim.Adam(vae.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history = {"epoch": [], "train_loss": [], "test_loss": [], "seconds": []}
    if config.regime == "aligned":
        history["labels"] = y.cpu()
        history["orientation"] = torch.empty(0, len(x))
        history["passes"] = torch.empty(0, len(x), dtype=torch.int16)
    pose = (PoseNet(config.canvas, channels=config.channels).to(device)
            if config.regime == "aligned" and config.pose_online else None)  # fmt: skip
    pose_opt = torch.optim.Adam(pose.parameters(), lr=POSE_LR) if pose is not None else None
    start = 0
    if checkpoint is not None and resume and Path(checkpoint).exists():
        ckpt = load_checkpoint(checkpoint, map_location=device)
        old = {"channels": 1, **ckpt["config"]}  # written before channels existed: grey
        diff = {k: (old.get(k), v) for k, v in asdict(config).items()
                if k != "epochs" and old.get(k) != v}  # more epochs continue a run
        if diff:
            raise ValueError(
                f"checkpoint {checkpoint} was written by another config (field: checkpoint's, this run's): {diff}; "
                f"pass resume=False (CLI: --restart) to start over, or another checkpoint path"
            )
        vae = model_from_checkpoint(ckpt).to(device)
        opt = torch.optim.Adam(vae.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        opt.load_state_dict(ckpt["optimizer"])
        history, start = ckpt["history"], ckpt["epoch"]
        if pose is not None:
            pose.load_state_dict(ckpt["pose_online"])
            pose_opt.load_state_dict(ckpt["pose_optimizer"])

    align_cfg = for_device(AlignConfig(**config.align), device)
    search = search or search_batch
    # several processes (torchrun): each trains on its slice of the same global batches (distributed.py)
    rank, _ = world()
    check_same(start, "the epoch to resume from")
    step = data_parallel(vae, _training_loss)  # (xb, A) -> (B,); DistributedDataParallel in a process group
    pose_step = data_parallel(pose, _pose_loss) if pose is not None else None  # (xb, angle) -> (B,)
    batches = GlobalBatchSampler(len(x), config.batch_size, config.seed)
    progress = progress and rank == 0
    for epoch in range(start, config.epochs):
        t0 = time.perf_counter()
        torch.manual_seed(config.seed * 1_000 + epoch)  # reparameterization noise, resumable
        batches.set_epoch(epoch)
        angles = epoch_angles(len(x), config.seed, epoch).to(device)
        orient, spent = torch.zeros(len(x)), torch.zeros(len(x), dtype=torch.int32)
        warm = config.regime == "aligned" and epoch > 0 and config.warm_start
        prev = history["orientation"][-1].to(device) if warm else None
        vae.train()
        total, count = 0.0, 0
        bar = tqdm(batches, desc=f"{config.regime} epoch {epoch + 1}/{config.epochs}",
                   disable=not progress, leave=False)  # fmt: skip
        for b, idx in enumerate(bar):
            idx = torch.tensor(idx, dtype=torch.long, device=device)
            xb = x[idx]
            A = None
            if config.regime != "upright" and len(idx):  # (a process may get no image of a small last batch)
                xb = warp(xb, rotation(angles[idx]))
            corr = xb.new_zeros(0)
            if config.regime == "aligned" and len(idx):
                last = None if prev is None else prev[idx] - angles[idx]  # last epoch's orientation, in xb's frame
                guess = None
                if pose is not None and last is not None:  # the online pose net's guess
                    with torch.no_grad():
                        vec = pose.vector(xb)  # (B, 2) its (cos, sin)
                    guess = torch.atan2(vec[:, 1], vec[:, 0])
                corr, passes = search(vae, xb, last, config, guess)
                A = rotation(corr)
                orient[idx.cpu()] = wrap_angle(angles[idx] + corr).cpu()
                spent[idx.cpu()] = passes.to(spent.dtype).cpu()
            if pose is not None:  # one step towards the search's answer (every process takes part)
                pose_opt.zero_grad(set_to_none=True)
                global_mean(pose_step(xb, corr.detach()), batches.global_batch(b)).backward()
                pose_opt.step()
            per_sample = step(xb, A)
            loss = global_mean(per_sample, batches.global_batch(b))
            if not torch.isfinite(loss):
                kept = f"the last good checkpoint is kept at {checkpoint}" if checkpoint else "no checkpoint was asked for"
                raise FloatingPointError(
                    f"non-finite training loss ({loss.item()}) at epoch {epoch + 1}, batch {b + 1}; {kept}; "
                    f"try a smaller lr (now {config.lr})"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += per_sample.detach().sum().item()
            count += len(idx)
            bar.set_postfix(loss=f"{total / max(count, 1):.1f}")
        total, count = all_sum(torch.tensor([total, count], dtype=torch.float64)).tolist()
        orient = all_sum(orient)  # each digit's orientation (and its search's passes) was found by one process
        spent = all_sum(spent)
        synchronize(device)  # queued GPU work belongs to this epoch's time
        history["seconds"].append(time.perf_counter() - t0)
        history["epoch"].append(epoch + 1)
        history["train_loss"].append(total / count)
        history["test_loss"].append(_test_loss(vae, x_test, align_cfg if config.regime == "aligned" else None))
        if config.regime == "aligned":
            history["orientation"] = torch.cat([history["orientation"], orient[None]])
            history["passes"] = torch.cat([history["passes"], spent[None].to(torch.int16)])
        if progress:
            tqdm.write(
                f"[{config.regime} L={config.latent_dim}] epoch {epoch + 1}: train {history['train_loss'][-1]:.2f} "
                f"test {history['test_loss'][-1]:.2f} nats ({history['seconds'][-1]:.0f}s)"
            )
        if checkpoint is not None and rank == 0:
            online = {} if pose is None else {"pose_online": pose.state_dict(), "pose_optimizer": pose_opt.state_dict()}
            save_checkpoint(checkpoint_dict(vae, config=asdict(config), optimizer=opt.state_dict(), epoch=epoch + 1,
                                            history=history, **online), checkpoint)  # fmt: skip
    vae.eval()
    return vae, history


def _pose_loss(pose: PoseNet, xb: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Per image ``(B,)``: the online pose net's ``(cos, sin)`` against the search's ``angle (B,)``."""
    target = torch.stack([angle.cos(), angle.sin()], 1)
    return (pose.vector(xb) - target).pow(2).sum(1)
