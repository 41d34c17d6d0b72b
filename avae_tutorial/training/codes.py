"""The code of each image at the pose a model reads it in (chapter 6), and the shipped ``codes.npz``.

:func:`turns` draws the rotations applied to test digits (uniform on the circle, or normal around
upright); :func:`encode_at_pose` reads what a model makes of images: its mean code at the pose
the search found (or the image as it is, or the amortized peer's own pose), that pose, the loss
there and what it cost. :func:`searched_codes` does it for the searched models on test digits
upright and under both kinds of turns: ``python -m avae_tutorial reproduce --codes-only`` writes
it to ``codes.npz`` (the search over thousands of digits takes minutes on a CPU), and
:func:`encoded` reads one model's answer back from it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..align import align
from ..model import for_inference
from ..transforms import _rotation, _warp
from .evaluate import mean_loss
from .peer import AmortizedVAE, peer_encode, peer_loss
from .timing import synchronize

__all__ = ["turns", "Encoded", "encode_at_pose", "searched_codes", "encoded", "TURNS", "SEARCHED", "POSES"]

TURNS = ("uniform", "normal")


def turns(n: int, kind: str = "uniform", spread_deg: float = 45.0, seed: int = 0) -> torch.Tensor:
    """``(n,)`` radians, seeded: uniform on the circle, ``[-pi, pi)``, or ``"normal"`` with a
    standard deviation of ``spread_deg`` degrees around upright."""
    g = torch.Generator().manual_seed(seed)
    if kind == "uniform":
        return (torch.rand(n, generator=g) * 2 - 1) * math.pi
    if kind == "normal":
        return torch.randn(n, generator=g) * math.radians(spread_deg)
    raise ValueError(f"unknown kind {kind!r}; expected one of: {', '.join(map(repr, TURNS))}")


@dataclass
class Encoded:
    """What a model makes of ``N`` images, on the CPU: mean codes ``mu (N, L)``, the pose ``angle (N,)``
    (radians, :func:`~avae_tutorial.align`'s convention; 0 where the model takes the image as it
    is), the loss there ``loss (N,)`` (nats, ``z = mu``), ``passes`` (VAE passes per image, mean)
    and ``seconds`` (the wall time of the whole call)."""

    mu: torch.Tensor
    angle: torch.Tensor
    loss: torch.Tensor
    passes: float
    seconds: float


def encode_at_pose(vae, x: torch.Tensor, search: bool = True, config="default") -> Encoded:
    """The code of each image of ``x`` at the pose the model reads it in: the search's
    (:func:`~avae_tutorial.align` with ``config``) when ``search``, the image as it is otherwise,
    and for the amortized peer (:class:`~avae_tutorial.training.peer.AmortizedVAE`) its encoder's
    own pose (one pass: its encoder and its decoder once)."""
    t0 = time.perf_counter()
    if isinstance(vae, AmortizedVAE):
        mu, angle = peer_encode(vae, x)
        loss, passes = peer_loss(vae, x), 1.0
    elif search:
        res = align(vae, x, "rotation", config, progress=False)
        with torch.no_grad():
            mu = torch.cat([for_inference(vae).encode(_warp(x[s : s + 512], res.A[s : s + 512]))[0]
                            for s in range(0, len(x), 512)])  # fmt: skip
        angle, loss, passes = res.angle, res.loss, float(res.passes.float().mean())
    else:
        with torch.no_grad():
            mu = torch.cat([for_inference(vae).encode(x[s : s + 512])[0] for s in range(0, len(x), 512)])
        angle, loss, passes = torch.zeros(len(x), device=x.device), mean_loss(vae, x), 1.0
    synchronize(x.device)
    return Encoded(mu.cpu(), angle.cpu(), loss.cpu(), passes, time.perf_counter() - t0)


#: The models whose codes :func:`searched_codes` records (each with the search), and the poses of
#: the digits: as drawn (``"none"``) and under each kind of :func:`turns`.
SEARCHED = ("vae-upright", "avae-transopt")
POSES = ("none", *TURNS)


def searched_codes(load, x: torch.Tensor, seed: int = 0, config="default", models=SEARCHED) -> dict[str, np.ndarray]:
    """For each model that ``load(name)`` returns, :func:`encode_at_pose` with the search on ``x`` as
    drawn and turned by each kind of :func:`turns` (seeded ``seed``): arrays keyed
    ``"<model>/<pose>/<field>"`` (``mu``, ``angle``, ``loss``; ``passes`` and ``seconds`` as 0-d
    arrays) and the applied turns as ``"turn/<kind>"`` (radians), all float32."""
    applied = {kind: turns(len(x), kind, seed=seed) for kind in TURNS}
    out = {f"turn/{k}": v.numpy().astype(np.float32) for k, v in applied.items()}
    for name in models:
        vae = load(name)
        for pose in POSES:
            xr = x if pose == "none" else _warp(x, _rotation(applied[pose].to(x)))
            e = encode_at_pose(vae, xr, search=True, config=config)
            for field in ("mu", "angle", "loss", "passes", "seconds"):
                out[f"{name}/{pose}/{field}"] = np.asarray(torch.as_tensor(getattr(e, field)), dtype=np.float32)
    return out


def encoded(results, model: str, pose: str) -> Encoded:
    """The :class:`Encoded` of ``model`` at ``pose`` from :func:`searched_codes`' arrays (or the
    shipped ``codes.npz``, ``load_results("codes.npz")``)."""
    key = f"{model}/{pose}"
    if f"{key}/mu" not in results:
        have = sorted({k.rsplit("/", 1)[0] for k in results if k.count("/") == 2})
        raise ValueError(f"no codes for {key!r}; available: {', '.join(have)}")
    t = {f: torch.as_tensor(np.asarray(results[f"{key}/{f}"])) for f in ("mu", "angle", "loss")}
    return Encoded(t["mu"], t["angle"], t["loss"], float(results[f"{key}/passes"]), float(results[f"{key}/seconds"]))
