"""Geometry: affine matrices and the one function that warps images with them.

Convention
----------
* A transform is a batch of matrices ``A`` of shape ``(B, 2, 3)`` acting on normalized
  image coordinates in ``[-1, 1]`` (x to the right, y downwards, as an image is displayed),
  with ``align_corners=False`` everywhere.
* ``warp(x, A)`` *samples*: output pixel at ``p`` takes the input value at ``A @ [p, 1]``
  (the semantics of ``torch.nn.functional.affine_grid``). Points that fall outside the
  canvas read zero (background).
* ``rotation(angle)`` with a positive angle turns the picture **counter-clockwise as
  displayed**; ``warp(x, rotation(pi/2))`` equals ``torch.rot90(x, 1, dims=(-2, -1))``.
* Angles are radians. Composition: ``warp(warp(x, A), B) == warp(x, compose(A, B))``.
  ``wrap_angle`` folds them into ``[-pi, pi)``; ``bin_peaks`` reads angles off a distribution
  over equal angle bins (a pose net's, :mod:`avae_tutorial.pose`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import _describe, check_positive_int
from ._checks import (check_angles, check_invertible, check_matrices, check_matrix_shape, check_warp_shape,
                      finite_values, matrix_values, verify)

__all__ = [
    "rotation",
    "affine",
    "warp",
    "rotate",
    "invert",
    "compose",
    "identity",
    "to_homogeneous",
    "angle_of",
    "AFFINE_PARAMS",
]

ALIGN_CORNERS = False
AFFINE_PARAMS = ("angle", "shear", "log_sx", "log_sy", "tx", "ty")


def identity(batch: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(B, 2, 3)`` identity transforms."""
    return torch.eye(2, 3, device=device, dtype=dtype).expand(batch, 2, 3).clone()


def rotation(angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(B, 2, 3)`` from angles ``(B,)`` in radians.

    A positive angle turns the picture counter-clockwise as displayed (see module docstring).
    """
    return _rotation(check_angles(angle))


def _rotation(angle: torch.Tensor) -> torch.Tensor:
    """:func:`rotation` without the checks (its callers checked ``angle``)."""
    c, s = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(angle)
    return torch.stack([torch.stack([c, -s, zero], -1), torch.stack([s, c, zero], -1)], -2)  # (B, 2, 3)


def affine(params: torch.Tensor) -> torch.Tensor:
    """Affine matrices ``(B, 2, 3)`` from parameters ``(B, 4)`` or ``(B, 6)``.

    Columns: ``angle`` (radians, as :func:`rotation`), ``shear`` (radians, x-shear angle),
    ``log_sx``, ``log_sy`` (log of the scale of the picture along x and y) and optionally
    ``tx``, ``ty`` (translation of the picture in normalized units). The picture is first
    scaled, then sheared, then rotated, then translated; the returned matrix is the
    *sampling* matrix of that picture transform, i.e. its inverse.
    """
    names = ", ".join(AFFINE_PARAMS)
    if not isinstance(params, torch.Tensor):
        got = type(params).__name__
        raise TypeError(f"params: expected a torch.Tensor of shape (B, 4) or (B, 6) [{names}], got {got}")
    if params.dim() != 2 or params.shape[0] == 0 or params.shape[1] not in (4, 6):
        hint = "; for one transform add the batch axis with params[None]" if params.dim() == 1 else ""
        raise ValueError(f"params: expected shape (B, 4) or (B, 6) [{names}], got shape {tuple(params.shape)}{hint}")
    if not params.is_floating_point():
        raise TypeError(f"params: expected a floating-point tensor (radians, log-scales), got {params.dtype}")
    verify(finite_values(params, "params"))
    return _affine(params)


def _affine(params: torch.Tensor) -> torch.Tensor:
    """:func:`affine` without the checks (its callers checked ``params``)."""
    angle, shear, log_sx, log_sy = params[:, 0], params[:, 1], params[:, 2], params[:, 3]
    B = params.shape[0]
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    # Picture-space maps (forward, 3x3): P = T R H S; sampling matrix = P^-1 = S^-1 H^-1 R^-1 T^-1.
    S_inv = torch.diag_embed(torch.stack([torch.exp(-log_sx), torch.exp(-log_sy), one], -1))
    H_inv = _h3(torch.stack([one, -torch.tan(shear), zero], -1), torch.stack([zero, one, zero], -1))
    R_inv = to_homogeneous(_rotation(angle))  # rotation() is already a sampling matrix
    M = S_inv @ H_inv @ R_inv
    if params.shape[1] == 6:
        T_inv = _h3(torch.stack([one, zero, -params[:, 4]], -1), torch.stack([zero, one, -params[:, 5]], -1))
        M = M @ T_inv
    return M[:, :2, :].reshape(B, 2, 3)


def _h3(row0: torch.Tensor, row1: torch.Tensor) -> torch.Tensor:
    row2 = torch.zeros_like(row0)
    row2[:, 2] = 1
    return torch.stack([row0, row1, row2], -2)


def to_homogeneous(A: torch.Tensor) -> torch.Tensor:
    """``(B, 2, 3)`` -> ``(B, 3, 3)`` with last row ``[0, 0, 1]``."""
    last = torch.zeros_like(A[:, :1, :])
    last[:, 0, 2] = 1
    return torch.cat([A, last], dim=1)


def invert(A: torch.Tensor) -> torch.Tensor:
    """Inverse transforms through the 3x3 homogeneous matrix: ``warp(warp(x, A), invert(A)) ~ x``.

    Closed form of the inverse of ``[M | t]``: ``[M^-1 | -M^-1 t]`` with the 2x2 adjugate, so that
    the same arithmetic runs in an exported (ONNX) graph. A singular or non-finite matrix is
    refused with a clear error.
    """
    return _invert(check_invertible(A))


def _invert(A: torch.Tensor) -> torch.Tensor:
    """:func:`invert` without the checks (its callers checked that ``A`` is invertible)."""
    a, b, c, d = A[:, 0, 0], A[:, 0, 1], A[:, 1, 0], A[:, 1, 1]
    det = a * d - b * c
    M_inv = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2) / det[:, None, None]  # (B, 2, 2)
    return torch.cat([M_inv, -M_inv @ A[:, :, 2:]], 2)  # (B, 2, 3)


def compose(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """The transform equal to warping by ``A`` then by ``B``: ``warp(warp(x, A), B) == warp(x, compose(A, B))``."""
    A, B = check_matrices(A), check_matrices(B, batch=A.shape[0], name="B", of="as many as A")
    if A.device != B.device:
        raise ValueError(f"A is on {A.device} but B is on {B.device}; move one of them, e.g. B.to(A.device)")
    return (to_homogeneous(A) @ to_homogeneous(B))[:, :2, :]


def warp(x: torch.Tensor, A: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """Warp images ``x (B, C, H, W)`` by sampling matrices ``A (B, 2, 3)`` (bilinear, ``align_corners=False``).

    ``x`` may hold any finite real values (images, probabilities, feature maps). This is the
    only place in the package that resamples images.
    """
    x = check_warp_shape(x)
    A = check_matrix_shape(A, batch=x.shape[0])
    if A.device != x.device:
        raise ValueError(f"A is on {A.device} but x is on {x.device}; move one of them, e.g. A = A.to(x.device)")
    if padding_mode not in ("zeros", "border", "reflection"):
        raise ValueError(f"unknown padding_mode {padding_mode!r}; expected one of: 'zeros', 'border', 'reflection'")
    verify(finite_values(x, "x", f" ({_describe(x)})"), matrix_values(A, invertible=False))
    return _warp(x, A, padding_mode)


def _warp(x: torch.Tensor, A: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """:func:`warp` without the checks (its callers checked ``x`` and ``A``)."""
    grid = F.affine_grid(A.to(x.dtype), list(x.shape), align_corners=ALIGN_CORNERS)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=ALIGN_CORNERS)


def rotate(x: torch.Tensor, angle) -> torch.Tensor:
    """``x (B, C, H, W)`` turned counter-clockwise by ``angle`` radians: one number for every image,
    or ``(B,)``. Shorthand for ``warp(x, rotation(angle))``."""
    x = check_warp_shape(x)
    angle = check_angles(torch.as_tensor(angle, dtype=x.dtype, device=x.device).reshape(-1).expand(len(x)))
    return warp(x, _rotation(angle))


def angle_of(A: torch.Tensor) -> torch.Tensor:
    """Rotation angle (radians, in ``(-pi, pi]``) of the rotation part of ``A``, read with ``atan2``.

    Exact for pure rotations; for general affine matrices it is the angle of the first column.
    """
    return _angle_of(check_matrices(A))


def _angle_of(A: torch.Tensor) -> torch.Tensor:
    return torch.atan2(A[:, 1, 0], A[:, 0, 0])


def wrap_angle(angle: torch.Tensor) -> torch.Tensor:
    """Wrap radians to ``[-pi, pi)``."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def bin_peaks(logits: torch.Tensor, m: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``m`` most probable peaks of a distribution over ``K`` equal angle bins (bin ``k`` at
    ``2 pi k / K``), from its logits ``(B, K)``: ``(angle (B, m), mass (B, m))``, best first.

    A peak is a bin at least as probable as its left neighbour and more than its right; its mass
    is the probability of the three bins, its angle the vertex of the parabola through their
    log-probabilities. An image with fewer than ``m`` peaks gets, for each missing one, the first
    peak's angle plus half a turn, with mass 0. No read of the device."""
    check_positive_int(m, "m")
    lp = logits.float().log_softmax(1)
    K = lp.shape[1]
    if m > K:
        raise ValueError(f"m: expected at most the {K} bins, got {m}")
    prev, nxt, p = lp.roll(1, 1), lp.roll(-1, 1), lp.exp()
    mass = p + p.roll(1, 1) + p.roll(-1, 1)
    den = prev - 2 * lp + nxt
    off = torch.where(den < -1e-9, 0.5 * (prev - nxt) / den.clamp(max=-1e-9), torch.zeros_like(den))
    score, j = torch.where((lp >= prev) & (lp > nxt), mass, -torch.ones_like(mass)).topk(m, dim=1)
    angle = (j + off.gather(1, j)) * (2 * math.pi / K)
    angle = torch.where(score < 0, angle[:, :1] + math.pi, angle).remainder(2 * math.pi)
    return angle, score.clamp_min(0)
