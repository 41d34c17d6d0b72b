"""Checkpoints that carry their model's config (nanoGPT style): ``VAE(**ckpt["model_config"])``.

A checkpoint is a dict with ``model_config`` (:class:`~avae_tutorial.model.VAEConfig` fields),
``model`` (the state dict) and whatever else its writer adds (``config``: the training config,
``history``, ``optimizer``, ``epoch``). Written atomically; loaded with ``weights_only=True``.
"""
from __future__ import annotations

import io
import os
from dataclasses import fields
from pathlib import Path

import torch

from .._io import atomic_write, sha256_file
from ..model import VAE, VAEConfig
from ..pose import PoseNet
from .peer import AmortizedVAE

__all__ = ["save_checkpoint", "load_checkpoint", "model_from_checkpoint", "checkpoint_dict", "sha256_file"]

#: ``model_config`` fields that older checkpoints lack (their defaults apply: one channel).
OPTIONAL_FIELDS = frozenset({"channels"})


def checkpoint_dict(vae: VAE, **extra) -> dict:
    """``{"model_config", "model", **extra}`` for ``vae``, weights on the CPU; with ``pose_config``
    when the model carries a pose net (its weights are in ``model``), and ``pose_head: True`` for
    the amortized peer (:class:`~avae_tutorial.training.peer.AmortizedVAE`)."""
    pose = {"pose_config": vae.pose_net.config} if vae.pose_net is not None else {}
    pose |= {"pose_head": True} if isinstance(vae, AmortizedVAE) else {}
    return {"model_config": vae.config_dict(), "model": {k: v.cpu() for k, v in vae.state_dict().items()}, **pose,
            **extra}  # fmt: skip


def save_checkpoint(obj: dict, path: str | os.PathLike) -> Path:
    """Write ``obj`` with ``torch.save`` atomically: readers see the old file or the new one, never half."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code); clear errors on bad files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist (or is not a file)")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"checkpoint {path} is truncated, corrupted or not a safe torch file: {e}") from e
    if not isinstance(obj, dict) or "model" not in obj or "model_config" not in obj:
        raise ValueError(f"checkpoint {path}: expected a dict with 'model_config' and 'model' entries")
    return obj


def model_from_checkpoint(ckpt: dict) -> VAE:
    """Rebuild the :class:`VAE` from the checkpoint's ``model_config`` (the amortized peer's
    :class:`~avae_tutorial.training.peer.AmortizedVAE` with ``pose_head``), load its weights, eval mode."""
    cfg = ckpt.get("model_config") if isinstance(ckpt, dict) else None
    names = {f.name for f in fields(VAEConfig)}
    required = names - OPTIONAL_FIELDS
    if not isinstance(cfg, dict) or not required <= set(cfg) <= names:
        raise ValueError(f"checkpoint: expected a model_config with fields {sorted(required)}, got {cfg!r} "
                         f"(optional fields: {sorted(OPTIONAL_FIELDS)})")
    vae = (AmortizedVAE if ckpt.get("pose_head") else VAE)(**cfg)
    if ckpt.get("pose_config") is not None:
        vae.pose_net = PoseNet(**ckpt["pose_config"])
    try:
        vae.load_state_dict(ckpt["model"])
    except (RuntimeError, TypeError, AttributeError) as e:
        detail = " ".join(line.strip() for line in str(e).splitlines()[:2])
        raise ValueError(f"checkpoint weights do not match its model_config {cfg}: {detail}") from e
    return vae.eval()
