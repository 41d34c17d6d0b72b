"""Input validation shared by every public entry point.

Each check raises one ``ValueError`` / ``TypeError`` whose message names what was
expected and what was received, so a user never meets a silent NaN or a shape
error from deep inside torch.
"""
from __future__ import annotations

import torch

__all__ = ["check_images", "check_matrices", "check_angles", "check_choice", "check_same_device"]


def _describe(t: torch.Tensor) -> str:
    return f"tensor of shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


def check_images(x, name: str = "x", canvas: int | None = None) -> torch.Tensor:
    """Validate a batch of images: float tensor (B, 1, H, W), values in [0, 1], finite, B > 0."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (B, 1, H, W), got {type(x).__name__}")
    if x.dtype == torch.uint8 or not x.is_floating_point():
        raise TypeError(
            f"{name}: expected floating-point images in [0, 1], got {_describe(x)}; "
            f"convert with `{name}.float() / 255` for 0-255 images"
        )
    if x.dim() != 4 or x.shape[1] != 1:
        hint = " (add a channel axis with x.unsqueeze(1))" if x.dim() == 3 else ""
        raise ValueError(f"{name}: expected shape (B, 1, H, W) with one channel, got {_describe(x)}{hint}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty batch, got {_describe(x)}")
    if canvas is not None and (x.shape[-2] != canvas or x.shape[-1] != canvas):
        raise ValueError(
            f"{name}: the model expects {canvas}x{canvas} images, got {x.shape[-2]}x{x.shape[-1]}; "
            f"pad or resize to the model's canvas (see avae_tutorial.pad_to_canvas)"
        )
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or inf values ({_describe(x)})")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name}: expected pixel values in [0, 1], got range [{lo:.4g}, {hi:.4g}]")
    return x


def check_matrices(A, batch: int | None = None, name: str = "A") -> torch.Tensor:
    """Validate affine matrices: float tensor (B, 2, 3), finite."""
    if not isinstance(A, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (B, 2, 3), got {type(A).__name__}")
    if not A.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {_describe(A)}")
    if A.dim() != 3 or tuple(A.shape[1:]) != (2, 3):
        raise ValueError(f"{name}: expected shape (B, 2, 3), got {_describe(A)}")
    if batch is not None and A.shape[0] != batch:
        raise ValueError(f"{name}: expected {batch} matrices (one per image), got {A.shape[0]}")
    if not torch.isfinite(A).all():
        raise ValueError(f"{name}: contains NaN or inf values")
    return A


def check_angles(angle, name: str = "angle") -> torch.Tensor:
    """Validate angles: a 1-d float tensor (B,) in radians, finite."""
    if not isinstance(angle, torch.Tensor):
        raise TypeError(f"{name}: expected a 1-d torch.Tensor of radians, got {type(angle).__name__}")
    if not angle.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor of radians, got {_describe(angle)}")
    if angle.dim() != 1:
        raise ValueError(f"{name}: expected shape (B,), got {_describe(angle)}")
    if not torch.isfinite(angle).all():
        raise ValueError(f"{name}: contains NaN or inf values")
    return angle


def check_choice(value, choices, name: str) -> str:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of: {', '.join(map(repr, choices))}")
    return value


def check_same_device(model: torch.nn.Module, x: torch.Tensor) -> None:
    p = next(model.parameters(), None)
    if p is not None and p.device != x.device:
        raise ValueError(
            f"the model is on {p.device} but the images are on {x.device}; "
            f"move one of them, e.g. x = x.to({str(p.device)!r})"
        )
