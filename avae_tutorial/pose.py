"""An amortized first guess for the rotation search: a small CNN that predicts ``align``'s answer.

A model carries one as ``vae.pose_net`` (the shipped models do; checkpoints save it). The
``"default"`` and ``"fast"`` rotation presets then score its guesses and a tight bracket around
the first instead of a full grid; a model without one gets the grid.

Three heads: ``(cos, sin)`` of the answer (the plain one); with ``half_turn``, of twice it too
(a "6" read as a "9" does not contradict it); with ``bins``, a distribution over ``bins`` angles
whose best peaks (:func:`bin_peaks`) are the guesses. A digit with two valleys of nearly equal
loss (a "0", an "8", a "1" either way up) gets a peak at each instead of a guess between them.
"""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from ._checks import check_positive_int
from .activations import ELU
from .align import align, preset
from .transforms import bin_peaks, rotation, warp

__all__ = ["PoseNet", "fit_pose_net", "bin_peaks"]

#: Sharpness of a bins net's target: ``softmax(kappa * cos(bin - answer))`` (about 9 degrees wide at 40).
KAPPA = 40.0


class PoseNet(torch.nn.Module):
    """An amortized first guess: a small CNN that predicts :func:`align`'s rotation for an image.

    ``pose(x) -> angle (B,)`` in radians: read with ``atan2`` from a predicted ``(cos, sin)``, or
    with ``bins``, the best peak of a distribution over ``bins`` angles (:meth:`peaks` gives the
    others). Pass it as ``align(..., init=pose(x)[:, None])``, or carry it as ``vae.pose_net``:
    the presets then score its guesses. Costs a small fraction of one VAE evaluation.
    """

    def __init__(self, canvas: int = 40, width: int = 16, half_turn: bool = False, channels: int = 1,
                 bins: int | None = None):  # fmt: skip
        super().__init__()
        w, s = check_positive_int(width, "width"), check_positive_int(canvas, "canvas", minimum=8)
        if not isinstance(half_turn, bool):
            raise ValueError(f"half_turn: expected True or False, got {half_turn!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels: expected 1 or 3, got {channels!r}")
        if bins is not None and (check_positive_int(bins, "bins", minimum=3) and half_turn):
            raise ValueError("bins: a distribution over angles already holds both half-turn readings; "
                             "expected half_turn=False with bins")  # fmt: skip
        self.config = {"canvas": canvas, "width": width, **({"half_turn": True} if half_turn else {}),
                       **({"channels": channels} if channels != 1 else {}), **({"bins": bins} if bins else {})}
        for k in (5, 3, 3):
            s = (s + 2 * (k // 2) - k) // 2 + 1
        self.net = torch.nn.Sequential(  # 40x40 =>
            torch.nn.Conv2d(channels, w, 5, stride=2, padding=2), ELU(),  # 20x20
            torch.nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), ELU(),  # 10x10
            torch.nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), ELU(),  # 5x5
            torch.nn.Flatten(), torch.nn.Linear(4 * w * s * s, 64), ELU(),
            torch.nn.Linear(64, bins or (4 if half_turn else 2)),
        )  # fmt: skip

    @property
    def half_turn(self) -> bool:
        return bool(self.config.get("half_turn"))

    @property
    def bins(self) -> int | None:
        """The number of angle bins of a distribution head (``None``: a ``(cos, sin)`` head)."""
        return self.config.get("bins")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, H, W) -> angle (B,)``: with a half-turn head, the axis' angle on the side
        the plain head prefers; with bins, the best peak's."""
        out = self.net(x)
        if self.bins:
            return bin_peaks(out, 1)[0][:, 0]
        angle = torch.atan2(out[:, 1], out[:, 0])
        if not self.half_turn:
            return angle
        axis = 0.5 * torch.atan2(out[:, 3], out[:, 2])  # the angle up to a half turn
        flip = torch.cos(axis - angle) < 0
        return torch.where(flip, axis + math.pi, axis).remainder(2 * math.pi)

    def vector(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2)``: the predicted ``(cos, sin)`` of the angle (its length: the net's confidence;
        with bins, the best peak's direction scaled by its mass)."""
        if self.bins:
            angle, mass = bin_peaks(self.net(x), 1)
            return mass * torch.cat([torch.cos(angle), torch.sin(angle)], 1)
        return self.net(x)[:, :2]

    def peaks(self, x: torch.Tensor, m: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        """A bins net's ``m`` best guesses: ``(angle (B, m), mass (B, m))`` (:func:`bin_peaks`)."""
        if not self.bins:
            raise ValueError("peaks: expected a pose net with bins (PoseNet(..., bins=K)); this one "
                             "predicts (cos, sin): use pose(x)")  # fmt: skip
        return bin_peaks(self.net(x), m)

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2)`` or, with a half-turn head, ``(B, 4)``: ``(cos, sin)`` of the angle, then of
        twice it; with bins, ``(B, bins)`` logits over the angles ``2 pi k / bins``."""
        return self.net(x)


def fit_pose_net(
    vae, x: torch.Tensor, config="grid", epochs: int = 30, batch_size: int = 128, lr: float = 3e-3, seed: int = 0,
    progress: bool = False, half_turn: bool = False, width: int = 16, bins: int | None = None,
) -> PoseNet:  # fmt: skip
    """Train a :class:`PoseNet` to predict the search's own answer on digits ``x``.

    The search runs once on ``x``; rotation makes the rest free: if ``theta`` is the answer for
    ``x``, ``theta - alpha`` is (up to the search's precision) the answer for ``x`` turned by
    ``alpha``, so every epoch draws fresh angles without searching again. The net regresses
    ``(cos, sin)`` of the answer (mean squared error); with ``half_turn`` also of twice the
    answer, a target that a look-alike read half a turn the other way ("6" and "9", a "1" drawn
    either way up) does not contradict; with ``bins``, a distribution over ``bins`` angles is fitted
    by cross-entropy to a bump around the answer (:data:`KAPPA`). ``config="grid"``: the full-grid search
    (:func:`~avae_tutorial.align.preset` without a pose net), whatever ``vae`` carries.
    """
    check_positive_int(epochs, "epochs")
    config = preset("rotation", "default", pose=False) if config == "grid" else config
    theta = align(vae, x, "rotation", config, progress=progress).params[:, 0]  # (N,)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    pose = PoseNet(x.shape[-1], width, half_turn, channels=x.shape[1], bins=bins).to(x.device)
    centers = torch.arange(bins, device=x.device) * (2 * math.pi / bins) if bins else None  # the bins' angles
    opt = torch.optim.Adam(pose.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * math.ceil(len(x) / batch_size))
    for _ in tqdm(range(epochs), desc="pose net", disable=not progress):
        alpha = (torch.rand(len(x), generator=g) * 2 * math.pi).to(x)
        order = torch.randperm(len(x), generator=g).to(x.device)
        for s in range(0, len(x), batch_size):
            i = order[s : s + batch_size]
            target = theta[i] - alpha[i]
            pred = pose.outputs(warp(x[i], rotation(alpha[i])))
            if bins:
                goal = torch.softmax(KAPPA * torch.cos(target[:, None] - centers), 1)
                loss = -(goal * pred.log_softmax(1)).sum(1).mean()
            else:
                turns = (target, 2 * target) if half_turn else (target,)
                goal = torch.stack([f(t) for t in turns for f in (torch.cos, torch.sin)], 1)
                loss = (pred - goal).pow(2).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return pose.eval()
