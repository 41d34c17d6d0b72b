"""Latent codes of digits at a chosen pose, and which class each code sits nearest (chapter 5).

Used to test a claim rather than assert it: if an aligned model encodes a "6" as an upside-down
"9", then a "9" turned a half turn past the pose at which the model encodes nines should get a
code near the codes of sixes.
"""
from __future__ import annotations

import torch

from .._checks import check_images, check_same_device
from ..model import VAE, for_inference
from ..transforms import rotation, warp

__all__ = ["codes_at", "class_centroids", "nearest_class"]


def codes_at(vae: VAE, x: torch.Tensor, angle: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """``(B, L)``: the encoder's mean code ``mu`` of each image of ``x (B, 1, H, W)`` turned by
    ``angle (B,)`` radians (counter-clockwise), in eval mode, without gradients."""
    check_same_device(vae, x)
    check_images(x, canvas=vae.canvas)
    angle = torch.as_tensor(angle, dtype=x.dtype, device=x.device).reshape(-1)
    if angle.numel() != len(x):
        raise ValueError(f"angle: expected one angle per image ({len(x)}), got {angle.numel()}")
    model = for_inference(vae)  # eval mode on a frozen copy; vae is left as it is
    with torch.no_grad():
        return torch.cat([model.encode(warp(x[s : s + chunk], rotation(angle[s : s + chunk])))[0]
                          for s in range(0, len(x), chunk)])  # fmt: skip


def class_centroids(codes: torch.Tensor, labels: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """The classes present in ``labels (N,)`` and the mean code of each, ``(C, L)``."""
    labels = torch.as_tensor(labels).to(codes.device).flatten()
    if labels.numel() != len(codes):
        raise ValueError(f"labels: expected one per code ({len(codes)}), got {labels.numel()}")
    classes = sorted(int(c) for c in torch.unique(labels))
    return classes, torch.stack([codes[labels == c].mean(0) for c in classes])


def nearest_class(codes: torch.Tensor, classes: list[int], centroids: torch.Tensor) -> torch.Tensor:
    """``(B,)``: for each code, the class whose centroid is nearest (Euclidean distance)."""
    idx = torch.cdist(codes, centroids.to(codes)).argmin(1)
    return torch.as_tensor(classes, device=codes.device)[idx]
