"""Transform families: how a few numbers per image become an affine matrix (chapters 2-3).

A family is a matrix builder ``(B, P) -> (B, 2, 3)`` plus what the search needs to know about
its parameters: their bounds and which one, if any, is an angle searched on the circle. The
search (:func:`avae_tutorial.align`) reads nothing else; a new family is one builder and one
:func:`register_family` call::

    def shift(p):                       # (B, 2) -> (B, 2, 3)
        A = torch.zeros(p.shape[0], 2, 3, dtype=p.dtype, device=p.device)
        A[:, 0, 0] = A[:, 1, 1] = 1
        A[:, :, 2] = p
        return A
    avae.register_family(avae.Family("shift", n_params=2, build=shift, bounds=[(-0.3, 0.3)] * 2))
    res = avae.align(vae, x_shifted, family="shift")

Parameters all zero must give the identity (checked at registration): the search starts there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .transforms import affine, rotation

__all__ = ["Family", "register_family", "get_family", "FAMILIES"]

Bounds = tuple[float, float] | None


@dataclass(frozen=True)
class Family:
    """One transform family.

    ``build``: parameters ``(B, n_params)`` -> sampling matrices ``(B, 2, 3)``, differentiable.
    ``bounds``: per parameter ``(low, high)`` or ``None`` (unbounded); the search never leaves
    them. ``angle``: index of the parameter that is a rotation angle in radians (searched on a
    grid around the circle), or ``None``. ``names``: parameter names, for tables and errors.
    ``presets``: named :class:`~avae_tutorial.align.AlignConfig` settings (``"default"``,
    ``"fast"``); a family without them gets defaults from :func:`avae_tutorial.align.preset`.
    """

    name: str
    n_params: int
    build: Callable[[torch.Tensor], torch.Tensor]
    bounds: tuple[Bounds, ...] | list[Bounds] | None = None
    angle: int | None = None
    names: tuple[str, ...] | None = None
    presets: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Family name: expected a non-empty string, got {self.name!r}")
        if isinstance(self.n_params, bool) or not isinstance(self.n_params, int) or self.n_params < 1:
            raise ValueError(f"Family {self.name!r}: n_params must be a positive int, got {self.n_params!r}")
        if not callable(self.build):
            raise TypeError(f"Family {self.name!r}: build must be a function (B, P) -> (B, 2, 3)")
        bounds = tuple(self.bounds) if self.bounds is not None else (None,) * self.n_params
        if len(bounds) != self.n_params:
            raise ValueError(f"Family {self.name!r}: {len(bounds)} bounds for {self.n_params} parameters")
        for i, b in enumerate(bounds):
            if b is not None and not (len(b) == 2 and float(b[0]) <= 0.0 <= float(b[1]) and b[0] < b[1]):
                raise ValueError(f"Family {self.name!r}: bounds[{i}] = {b!r}; expected (low, high) with low <= 0 <= high")
        object.__setattr__(self, "bounds", bounds)
        if self.angle is not None and not (isinstance(self.angle, int) and 0 <= self.angle < self.n_params):
            raise ValueError(f"Family {self.name!r}: angle must be a parameter index below {self.n_params}")
        names = tuple(self.names) if self.names is not None else tuple(f"p{i}" for i in range(self.n_params))
        if len(names) != self.n_params:
            raise ValueError(f"Family {self.name!r}: {len(names)} names for {self.n_params} parameters")
        object.__setattr__(self, "names", names)

    @property
    def is_angle(self) -> bool:
        """One parameter, an angle: searched without gradients (grid, then parabolic steps)."""
        return self.n_params == 1 and self.angle == 0

    def project(self, params: torch.Tensor) -> torch.Tensor:
        """``params`` clamped into the bounds, in place (for the search's Adam steps)."""
        with torch.no_grad():
            for i, b in enumerate(self.bounds):
                if b is not None:
                    params[:, i].clamp_(b[0], b[1])
        return params


def _check_identity(fam: Family) -> None:
    p = torch.zeros(2, fam.n_params)
    try:
        A = fam.build(p)
    except Exception as e:  # noqa: BLE001 - re-raised naming the family
        raise ValueError(f"Family {fam.name!r}: build failed on zero parameters of shape (2, {fam.n_params}): {e}") from e
    if not isinstance(A, torch.Tensor) or A.shape != (2, 2, 3):
        got = tuple(A.shape) if isinstance(A, torch.Tensor) else type(A).__name__
        raise ValueError(f"Family {fam.name!r}: build must return (B, 2, 3) matrices, got {got} for B=2")
    if not torch.allclose(A, torch.eye(2, 3).expand(2, 2, 3), atol=1e-6):
        raise ValueError(f"Family {fam.name!r}: zero parameters must build the identity, got {A[0].tolist()}")


#: name -> :class:`Family`; :func:`register_family` adds to it.
FAMILIES: dict[str, Family] = {}


def register_family(family: Family, replace: bool = False) -> Family:
    """Add ``family`` to the registry (``replace=True`` to redefine a name); returns it."""
    if not isinstance(family, Family):
        raise TypeError(f"register_family: expected a Family, got {type(family).__name__}")
    if family.name in FAMILIES and not replace:
        raise ValueError(f"family {family.name!r} is already registered; pass replace=True to redefine it")
    _check_identity(family)
    FAMILIES[family.name] = family
    return family


def get_family(family: str | Family) -> Family:
    """A registered family by name (or the :class:`Family` itself)."""
    if isinstance(family, Family):
        return family
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; registered: {', '.join(FAMILIES)} (see register_family)")
    return FAMILIES[family]


#: The affine search's bounds: 55 degrees of shear and 50% scale are the perturbations studied;
#: without bounds the search can shrink the decoded picture into the padding and win on background.
SHEAR_MAX = math.radians(60.0)
LOG_SCALE_MAX = math.log(2.0)
SHIFT_MAX = 0.25
_AFFINE_BOUNDS = (None, (-SHEAR_MAX, SHEAR_MAX), (-LOG_SCALE_MAX, LOG_SCALE_MAX), (-LOG_SCALE_MAX, LOG_SCALE_MAX))

register_family(Family("rotation", 1, lambda p: rotation(p[:, 0]), angle=0, names=("angle",)))
register_family(Family("affine", 4, affine, _AFFINE_BOUNDS, angle=0, names=("angle", "shear", "log_sx", "log_sy")))
register_family(Family("affine_t", 6, affine, _AFFINE_BOUNDS + ((-SHIFT_MAX, SHIFT_MAX),) * 2, angle=0,
                       names=("angle", "shear", "log_sx", "log_sy", "tx", "ty")))  # fmt: skip
