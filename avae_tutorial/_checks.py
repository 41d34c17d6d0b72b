"""Input validation shared by every public entry point.

Each check raises one ``ValueError`` / ``TypeError`` whose message names the argument, what
was expected and what was received, and, where there is one, the usual fix; so a user never
meets a silent NaN or a shape error from deep inside torch.

Checks run **once, at the door**: every public function (``warp``, ``invert``, ``rotation``,
``affine``, ``avae_loss``, ``loss_terms``, ``align``, ``fit``, the loaders, the CLI) validates its
inputs on entry, and the private cores it calls (``_warp``, ``_loss_terms``, the search) trust
their caller. Two kinds, as in kornia: *shape* checks (``check_image_shape``,
``check_matrix_shape``, ...) read only metadata (type, dtype, shape) and cost nothing; *value*
checks (finite, in range, invertible) are reductions on the device whose flags a public function
gathers and reads with one :func:`verify`: one read of the device per call, whatever it checks
(on a GPU each read waits for all queued work). Value checks are skipped on the ``meta`` device,
which has no values, and while torch traces a graph.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch

__all__ = [
    "verify",
    "ValueCheck",
    "image_values",
    "finite_values",
    "matrix_values",
    "check_images",
    "check_warp_shape",
    "check_image_shape",
    "check_warp_images",
    "check_matrices",
    "check_matrix_shape",
    "check_invertible",
    "check_angles",
    "check_choice",
    "check_same_device",
    "check_positive_int",
    "check_labels",
    "check_codes",
    "check_device",
    "default_device",
]


def _describe(t: torch.Tensor) -> str:
    return f"tensor of shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


def _has_values(t: torch.Tensor) -> bool:
    """Whether ``t``'s values can be read: not on the meta device, and not while torch traces a
    graph (``torch.export``, ``torch.compile``), where a value read would be data-dependent."""
    return t.device.type != "meta" and not (torch.compiler.is_compiling() or torch.compiler.is_exporting())


class ValueCheck(NamedTuple):
    """The value part of a check, computed on the device and read later: ``flags (k,)`` and
    ``fail(values)``, which raises the check's error when the ``k`` values read show one."""

    flags: torch.Tensor
    fail: Callable[[list[float]], None]


def verify(*checks: ValueCheck | None) -> None:
    """Run value checks with **one** read of the device: their flags are joined on the device and
    copied to the host together; the first failing check raises its error. A public function
    computes every value check it needs, then calls this once (a GPU waits for its queued work
    at each read, so a read per check or per layer would stall it)."""
    checks = [c for c in checks if c is not None]
    if not checks:
        return
    dev = checks[0].flags.device
    values = torch.cat([c.flags.detach().float().reshape(-1).to(dev) for c in checks]).tolist()
    i = 0
    for c in checks:
        k = c.flags.numel()
        c.fail(values[i : i + k])
        i += k


def image_values(x: torch.Tensor, name: str = "x") -> ValueCheck | None:
    """Pixels finite and in [0, 1] (``None`` where values cannot be read: meta, tracing)."""
    if not _has_values(x):
        return None

    def fail(v):
        finite, lo, hi = v
        if not finite:
            raise ValueError(f"{name}: contains NaN or inf values ({_describe(x)})")
        if lo < 0.0 or hi > 1.0:
            hint = "; for 0-255 pixel values divide by 255" if lo >= 0.0 and hi <= 255.0 else ""
            raise ValueError(f"{name}: expected pixel values in [0, 1] (Bernoulli probabilities), "
                             f"got range [{lo:.4g}, {hi:.4g}]{hint}")  # fmt: skip

    x = x.detach()
    return ValueCheck(torch.stack([torch.isfinite(x).all().float(), x.amin().float(), x.amax().float()]), fail)


def finite_values(t: torch.Tensor, name: str, what: str = "") -> ValueCheck | None:
    """Values finite (``None`` where values cannot be read)."""
    if not _has_values(t):
        return None

    def fail(v):
        if not v[0]:
            raise ValueError(f"{name}: contains NaN or inf values{what}")

    return ValueCheck(torch.isfinite(t.detach()).all().float()[None], fail)


def matrix_values(A: torch.Tensor, name: str = "A", invertible: bool = True) -> ValueCheck | None:
    """Matrices ``(B, 2, 3)`` finite and, with ``invertible``, with a linear part that has an inverse
    (determinant not ~0 relative to the matrix' scale); the message lists the first singular ones."""
    if not _has_values(A):
        return None
    A = A.detach()
    flags = [torch.isfinite(A).all().float()]
    if invertible:
        flags.append(_singular(A).any().float())

    def fail(v):
        if not v[0]:
            raise ValueError(f"{name}: contains NaN or inf values")
        if invertible and v[1]:
            idx = _singular(A).nonzero().flatten()[:5].tolist()
            raise ValueError(f"{name}: singular affine matrix at batch index {idx} (determinant ~0); it has no inverse")

    return ValueCheck(torch.stack(flags), fail)


def _singular(A: torch.Tensor) -> torch.Tensor:
    det = A[:, 0, 0] * A[:, 1, 1] - A[:, 0, 1] * A[:, 1, 0]
    scale = A[:, :, :2].abs().amax(dim=(1, 2)).clamp_min(torch.finfo(A.dtype).tiny)
    return det.abs() <= 1e-6 * scale**2


def _rank_hint(x: torch.Tensor) -> str:
    if x.dim() == 2:
        return "; for one (H, W) image use x[None, None]"
    if x.dim() == 3:
        return "; for a batch (B, H, W) add the channel axis with x.unsqueeze(1), for one (1, H, W) image use x[None]"
    if x.dim() == 4 and x.shape[1] == 3:
        return "; convert RGB to grey first, e.g. x.mean(1, keepdim=True)"
    if x.dim() == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        return "; channels-last images need x.permute(0, 3, 1, 2)"
    return ""


def _check_float_images(x, name: str, shape: str, values: str = " with values in [0, 1]") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape {shape}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name}: expected floating-point images{values}, got {_describe(x)}; "
            f"convert 0-255 images with `{name.split()[-1]}.float() / 255`"
        )
    return x


def check_images(x, name: str = "x", canvas: int | None = None, channels: int = 1) -> torch.Tensor:
    """Validate a batch of images: :func:`check_image_shape`, and values finite and in [0, 1]
    (one read of the device, :func:`verify`)."""
    x = check_image_shape(x, name, canvas, channels)
    verify(image_values(x, name))
    return x


def check_image_shape(x, name: str = "x", canvas: int | None = None, channels: int = 1) -> torch.Tensor:
    """Metadata only: a float tensor ``(B, C, H, W)``, ``B > 0``, ``C == channels`` (1 unless the
    model takes colour images); with ``canvas``, ``H == W == canvas`` (the model's input size)."""
    x = _check_float_images(x, name, f"(B, {channels}, H, W)")
    if x.dim() == 4 and channels != 1 and x.shape[1] in (1, 3) and x.shape[1] != channels:
        raise ValueError(f"{name}: the model takes {channels}-channel images, got {x.shape[1]}-channel ones "
                         f"({_describe(x)}); load them with channels={channels} or use a model built for them")
    if x.dim() != 4 or x.shape[1] != channels:
        what = "one channel" if channels == 1 else f"{channels} channels"
        hint = _rank_hint(x) if channels == 1 else ""
        raise ValueError(f"{name}: expected shape (B, {channels}, H, W) with {what}, got {_describe(x)}{hint}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty batch, got {_describe(x)}")
    if canvas is not None and (x.shape[-2] != canvas or x.shape[-1] != canvas):
        raise ValueError(
            f"{name}: the model expects {canvas}x{canvas} images, got {x.shape[-2]}x{x.shape[-1]}; "
            f"pad 28x28 digits with avae_tutorial.pad_to_canvas(x, {canvas}) or use a model built for this size"
        )
    return x


def check_warp_images(x, name: str = "x") -> torch.Tensor:
    """What :func:`warp` resamples: float ``(B, C, H, W)``, ``B > 0``; any finite values."""
    x = check_warp_shape(x, name)
    verify(finite_values(x, name))
    return x


def check_warp_shape(x, name: str = "x") -> torch.Tensor:
    """Metadata only: :func:`check_warp_images` without reading the values."""
    x = _check_float_images(x, name, "(B, C, H, W)", values="")
    if x.dim() != 4:
        raise ValueError(f"{name}: expected images of shape (B, C, H, W), got {_describe(x)}{_rank_hint(x)}")
    if min(x.shape) == 0:
        raise ValueError(f"{name}: expected a non-empty batch of non-empty images, got {_describe(x)}")
    return x


def check_matrices(A, batch: int | None = None, name: str = "A", of: str = "one per image") -> torch.Tensor:
    """Validate affine matrices: :func:`check_matrix_shape`, and values finite."""
    A = check_matrix_shape(A, batch, name, of)
    verify(matrix_values(A, name, invertible=False))
    return A


def check_matrix_shape(A, batch: int | None = None, name: str = "A", of: str = "one per image") -> torch.Tensor:
    """Metadata only: a float tensor ``(B, 2, 3)``, ``B > 0``; ``B == batch`` when given."""
    if not isinstance(A, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (B, 2, 3), got {type(A).__name__}")
    if not A.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {_describe(A)}; convert with {name}.float()")
    if A.dim() != 3 or tuple(A.shape[1:]) != (2, 3):
        hint = ""
        if tuple(A.shape) == (2, 3):
            hint = f"; for one matrix add the batch axis with {name}[None]"
        elif A.dim() == 3 and tuple(A.shape[1:]) == (3, 3):
            hint = f"; for homogeneous 3x3 matrices drop the last row with {name}[:, :2]"
        elif A.dim() == 1:
            hint = "; for angles build the matrices with avae_tutorial.rotation(angle)"
        raise ValueError(f"{name}: expected shape (B, 2, 3), got {_describe(A)}{hint}")
    if A.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one matrix, got {_describe(A)}")
    if batch is not None and A.shape[0] != batch:
        raise ValueError(f"{name}: expected {batch} matrices ({of}), got {A.shape[0]}")
    return A


def check_invertible(A, name: str = "A") -> torch.Tensor:
    """Validate finite matrices ``(B, 2, 3)`` whose linear part has an inverse (determinant not ~0
    relative to the matrix' scale); the message lists the first singular ones."""
    A = check_matrix_shape(A, name=name)
    verify(matrix_values(A, name))
    return A


def check_angles(angle, name: str = "angle") -> torch.Tensor:
    """Validate angles: a 1-d float tensor ``(B,)`` of radians, ``B > 0``, finite."""
    if not isinstance(angle, torch.Tensor):
        raise TypeError(
            f"{name}: expected a 1-d torch.Tensor of radians, got {type(angle).__name__}; "
            f"wrap numbers with torch.tensor([...])"
        )
    if not angle.is_floating_point():
        raise TypeError(
            f"{name}: expected a floating-point tensor of radians, got {_describe(angle)}; "
            f"for degrees use torch.deg2rad({name}.float())"
        )
    if angle.dim() != 1:
        raise ValueError(f"{name}: expected shape (B,), got {_describe(angle)}; flatten with {name}.reshape(-1)")
    if angle.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one angle, got {_describe(angle)}")
    verify(finite_values(angle, name))
    return angle


def check_choice(value, choices, name: str) -> str:
    """``value`` must be one of ``choices``; the message lists them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of: {', '.join(map(repr, choices))}")
    return value


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """``value`` must be an ``int`` (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name}: expected {kind}, got {value!r}")
    return value


def check_labels(y, n: int, name: str = "y") -> torch.Tensor:
    """Validate labels: an integer tensor ``(N,)`` with one label per image."""
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != n:
        got = _describe(y) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{name}: expected a 1-d tensor with one label per image ({n},), got {got}")
    if y.is_floating_point() or y.is_complex():
        raise TypeError(f"{name}: expected integer class labels, got {_describe(y)}; convert with y.long()")
    return y


def check_codes(z, latent_dim: int, name: str = "z") -> torch.Tensor:
    """Metadata only: latent codes, a float tensor ``(B, latent_dim)`` with ``B > 0``."""
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of latent codes (B, {latent_dim}), got {type(z).__name__}")
    if not z.is_floating_point():
        raise TypeError(f"{name}: expected floating-point latent codes, got {_describe(z)}; convert with {name}.float()")
    if z.dim() != 2 or z.shape[0] == 0 or z.shape[1] != latent_dim:
        hint = f"; for one code add the batch axis with {name}[None]" if z.dim() == 1 and len(z) == latent_dim else ""
        raise ValueError(f"{name}: expected shape (B, {latent_dim}) (the model's latent size), got {_describe(z)}{hint}")
    return z


def check_same_device(model: torch.nn.Module, x: torch.Tensor, name: str = "images") -> None:
    """The model's parameters and ``x`` must live on the same device."""
    p = next(model.parameters(), None)
    if p is not None and isinstance(x, torch.Tensor) and p.device != x.device:
        raise ValueError(
            f"the model is on {p.device} but the {name} are on {x.device}; "
            f"move one of them, e.g. x = x.to({str(p.device)!r}) or model.to(x.device)"
        )


def default_device() -> str:
    """The one device choice: ``"cuda"`` when a GPU is available, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device) -> torch.device:
    """A device that exists and works here (``"cuda"`` on a machine without a GPU does not)."""
    try:
        dev = torch.device(device)
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError, TypeError) as e:
        raise ValueError(f"device: {device!s} is not usable here ({str(e).splitlines()[0]}); use 'cpu'") from e
    return dev
