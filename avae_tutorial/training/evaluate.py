"""Evaluation sweeps: loss per rotation angle, with and without alignment (chapters 1, 3, 4)."""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .._checks import check_images, check_matrices, check_same_device
from .._io import atomic_write
from ..align import AlignConfig, align
from ..data.mnist import random_affines
from ..families import Family, get_family
from ..loss import chunked_loss
from ..model import VAE, for_inference
from ..transforms import rotate

__all__ = ["loss_per_angle", "affine_comparison", "mean_loss", "write_rows"]


def mean_loss(vae: VAE, x: torch.Tensor, A: torch.Tensor | None = None, chunk: int = 512) -> torch.Tensor:
    """Per-image loss ``(N,)`` (``z = mu``, eval mode), ``chunk`` images at a time: of the plain VAE,
    or with a warp ``A (N, 2, 3)`` per image (:func:`~avae_tutorial.loss.avae_loss`)."""
    check_same_device(vae, x)
    check_images(x, canvas=vae.canvas, channels=getattr(vae, "channels", 1))
    if A is not None:
        A = check_matrices(A, batch=len(x)).to(x)
    return chunked_loss(for_inference(vae), x, A, chunk=chunk)


def loss_per_angle(
    vae: VAE,
    x: torch.Tensor,
    angles_deg,
    aligned: bool = False,
    config: AlignConfig | str = "default",
    progress: bool = True,
    per_image: bool = False,
) -> list[dict]:
    """Mean loss of ``x`` turned by each angle (degrees), without or with rotation alignment.

    Returns rows ``{"angle_deg", "loss", "loss_std", "n", "aligned"}``; with ``per_image``, each
    row also holds ``"losses"``, the ``(N,)`` tensor of every image's loss at that angle.
    """
    check_same_device(vae, x)
    check_images(x, canvas=vae.canvas, channels=getattr(vae, "channels", 1))
    rows = []
    for deg in tqdm(list(angles_deg), desc="angles", disable=not progress):
        xr = rotate(x, math.radians(float(deg)))
        loss = align(vae, xr, "rotation", config, progress=False).loss if aligned else mean_loss(vae, xr)
        rows.append({"angle_deg": float(deg), "loss": float(loss.mean()), "loss_std": float(loss.std()),
                     "n": len(x), "aligned": bool(aligned)} | ({"losses": loss.cpu()} if per_image else {}))  # fmt: skip
    return rows


def affine_comparison(
    vae: VAE, x: torch.Tensor, seed: int = 0, config: AlignConfig | str = "default", progress: bool = True,
    family: str | Family = "affine",
) -> dict:  # fmt: skip
    """VAE vs AVAE (``family``, by default ``"affine"``) on random affine perturbations of ``x``
    (see ``random_affines``): mean losses in nats, each with its standard error over the digits
    (``_se``), and the gain (VAE minus AVAE) with its standard error paired digit by digit."""
    from .measure import standard_error

    xa, _ = random_affines(x, seed=seed)
    plain = mean_loss(vae, xa).double()
    searched = align(vae, xa, family, config, progress=progress).loss.double()
    vae_l, avae_l = float(plain.mean()), float(searched.mean())
    return {"n": len(x), "family": get_family(family).name, "vae_loss": vae_l, "avae_loss": avae_l,
            "reduction": 1 - avae_l / vae_l, "seed": seed, "vae_loss_se": standard_error(plain),
            "avae_loss_se": standard_error(searched), "gain": vae_l - avae_l,
            "gain_se": standard_error(plain - searched)}  # fmt: skip


def write_rows(rows: list[dict], path: str | os.PathLike) -> Path:
    """Write rows as CSV (``.csv``) or JSON (anything else), atomically: a reader (or a run
    interrupted half way) sees the old file or the new one, never part of it."""
    path = Path(path)
    if path.suffix == ".csv":
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
        text = buf.getvalue()
    else:
        text = json.dumps(rows, indent=2)
    return atomic_write(path, text.encode())
