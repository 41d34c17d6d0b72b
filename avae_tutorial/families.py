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
    p = avae.families()["shift"].sample(16)  # (16, 2) random parameters, within the bounds

Parameters all zero must give the identity (checked at registration): the search starts there.
A family also says how to perturb test images (:meth:`Family.sample`) and, optionally, its
search settings (``presets``); a family that names none gets those of its kind.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable

import torch

from ._checks import check_positive_int
from .transforms import _affine, _rotation, identity

__all__ = ["Family", "register_family", "unregister_family", "get_family", "families"]

Bounds = tuple[float, float] | None

#: Search settings (:class:`~avae_tutorial.align.AlignConfig` fields) a family gets for a preset it
#: does not name, by kind; measured by ``python -m avae_tutorial bench`` and ``bench-heldout``. One
#: angle: a grid on the circle, then parabolic steps; "+pose" (a model with a pose net, tuned on
#: training digits the shipped models never saw: ``tools.heldout``), adaptive: a bins net's two best
#: peaks scored, the first +- init_span, the best basins refined while they promise more than settle,
#: the grid only where the best peak's mass is below confident ("default"); the best peak
#: +- init_span alone, 4 passes ("fast"). An angle and more: grid, Adam. No angle: Adam.
ANGLE_PRESETS = {
    "default": dict(restarts=24, top_k=1, steps=6, precision="auto"),
    "fast": dict(restarts=14, steps=3, precision="auto"),
    "default+pose": dict(restarts=8, top_k=2, steps=6, init_span=0.25, pose=True, peaks=2, confident=0.2,
                         settle=0.02, settle_after=2, precision="auto"),
    "fast+pose": dict(restarts=0, steps=0, init_span=0.15, pose=True, peaks=1, confident=0.0, precision="auto"),
}  # fmt: skip
ANGLE_PLUS_PRESETS = {"default": dict(restarts=24, top_k=2, steps=24, lr=0.05),
                      "fast": dict(restarts=12, top_k=1, steps=8, lr=0.1)}  # fmt: skip
GRADIENT_PRESETS = {"default": dict(restarts=1, steps=40, lr=0.02), "fast": dict(restarts=1, steps=15, lr=0.04)}


@dataclass(frozen=True)
class Family:
    """One transform family.

    ``build``: parameters ``(B, n_params)`` -> sampling matrices ``(B, 2, 3)``, differentiable.
    ``bounds``: per parameter ``(low, high)`` or ``None`` (unbounded); the search never leaves
    them. ``angle``: index of the parameter that is a rotation angle in radians (searched on a
    grid around the circle), or ``None``. ``names``: parameter names, for tables and errors.
    ``presets``: named :class:`~avae_tutorial.align.AlignConfig` settings (or their fields as a
    dict): ``"default"``, ``"fast"`` and ``"<name>+pose"`` for a model with a pose net; the ones a
    family does not name are those of its kind (:data:`ANGLE_PRESETS`, :data:`ANGLE_PLUS_PRESETS`,
    :data:`GRADIENT_PRESETS`). ``sampler``: ``(n, generator) -> (n, n_params)`` random parameters
    for :meth:`sample`; ``None``: the angle uniform on the circle, bounded parameters uniform
    within their bounds, unbounded ones 0.
    """

    name: str
    n_params: int
    build: Callable[[torch.Tensor], torch.Tensor]
    bounds: tuple[Bounds, ...] | list[Bounds] | None = None
    angle: int | None = None
    names: tuple[str, ...] | None = None
    presets: dict = field(default_factory=dict)
    sampler: Callable[[int, torch.Generator | None], torch.Tensor] | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Family name: expected a non-empty string, got {self.name!r}")
        check_positive_int(self.n_params, f"Family {self.name!r}: n_params")
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
        if self.sampler is not None and not callable(self.sampler):
            raise TypeError(f"Family {self.name!r}: sampler must be a function (n, generator) -> (n, n_params)")
        kind = ANGLE_PRESETS if self.is_angle else ANGLE_PLUS_PRESETS if self.angle is not None else GRADIENT_PRESETS
        given = dict(self.presets)  # a preset named here wins over the kind's, its "+pose" variant too
        object.__setattr__(self, "presets", {**{k: v for k, v in kind.items() if k.split("+")[0] not in given}, **given})

    @property
    def is_angle(self) -> bool:
        """One parameter, an angle: searched without gradients (grid, then parabolic steps)."""
        return self.n_params == 1 and self.angle == 0

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` random parameter vectors ``(n, n_params)`` (float32, CPU): how test images of this
        family are perturbed (``warp(x, family.build(family.sample(len(x))))``)."""
        check_positive_int(n, "n")
        if self.sampler is not None:
            p = self.sampler(n, generator)
            if not isinstance(p, torch.Tensor) or p.shape != (n, self.n_params):
                got = tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
                raise ValueError(f"Family {self.name!r}: sampler must return ({n}, {self.n_params}) parameters, got {got}")
            return p
        u = torch.rand(n, self.n_params, generator=generator)
        p = torch.zeros(n, self.n_params)
        for i, b in enumerate(self.bounds):
            if i == self.angle:
                p[:, i] = u[:, i] * (2 * math.pi)
            elif b is not None:
                p[:, i] = b[0] + (b[1] - b[0]) * u[:, i]
        return p

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
    if not torch.allclose(A, identity(2), atol=1e-6):
        raise ValueError(f"Family {fam.name!r}: zero parameters must build the identity, got {A[0].tolist()}")


_REGISTRY: dict[str, Family] = {}  # name -> Family; written only by register_family / unregister_family


def families() -> MappingProxyType:
    """The registered families, name -> :class:`Family`: a read-only view (it follows later
    registrations; add to it with :func:`register_family`)."""
    return MappingProxyType(_REGISTRY)


def unregister_family(name: str) -> None:
    """Remove the family registered as ``name`` (one of the built-in ones cannot be removed)."""
    if name in BUILT_IN:
        raise ValueError(f"family {name!r} is built in; it cannot be removed")
    if name not in _REGISTRY:
        raise ValueError(f"unknown family {name!r}; registered: {', '.join(_REGISTRY)}")
    del _REGISTRY[name]


def register_family(family: Family, replace: bool = False) -> Family:
    """Add ``family`` to the registry (``replace=True`` to redefine a name); returns it."""
    if not isinstance(family, Family):
        raise TypeError(f"register_family: expected a Family, got {type(family).__name__}")
    if family.name in BUILT_IN and family.name in _REGISTRY:
        raise ValueError(f"family {family.name!r} is built in; register yours under another name")
    if family.name in _REGISTRY and not replace:
        raise ValueError(f"family {family.name!r} is already registered; pass replace=True to redefine it")
    _check_identity(family)
    _REGISTRY[family.name] = family
    return family


def get_family(family: str | Family) -> Family:
    """A registered family by name (or the :class:`Family` itself)."""
    if isinstance(family, Family):
        return family
    if family not in _REGISTRY:
        raise ValueError(f"unknown family {family!r}; registered: {', '.join(_REGISTRY)} (see register_family)")
    return _REGISTRY[family]


#: The families every model knows; they cannot be replaced or removed.
BUILT_IN = ("rotation", "affine", "affine_t")

#: The affine search's bounds: 55 degrees of shear and 50% scale are the perturbations studied;
#: without bounds the search can shrink the decoded picture into the padding and win on background.
SHEAR_MAX = math.radians(60.0)
LOG_SCALE_MAX = math.log(2.0)
SHIFT_MAX = 0.25
_AFFINE_BOUNDS = (None, (-SHEAR_MAX, SHEAR_MAX), (-LOG_SCALE_MAX, LOG_SCALE_MAX), (-LOG_SCALE_MAX, LOG_SCALE_MAX))



def affine_params(n: int, generator: torch.Generator | None = None, max_shear_deg: float = 55.0,
                  max_scale: float = 0.5) -> torch.Tensor:  # fmt: skip
    """Random affine parameters ``(n, 4)`` as :func:`~avae_tutorial.affine` takes them: rotation
    uniform in [0, 2pi), shear uniform in +-``max_shear_deg`` degrees, and per-axis scale
    log-uniform in ``[1/(1+max_scale), 1+max_scale]``: the perturbations studied (chapter 5)."""
    angle = torch.rand(n, generator=generator) * (2 * math.pi)
    shear = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(max_shear_deg)
    log_s = (torch.rand(n, 2, generator=generator) * 2 - 1) * math.log1p(max_scale)
    return torch.cat([angle[:, None], shear[:, None], log_s], 1)


def _affine_t_params(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * SHIFT_MAX
    return torch.cat([affine_params(n, generator), shift], 1)


register_family(Family("rotation", 1, lambda p: _rotation(p[:, 0]), angle=0, names=("angle",), presets=ANGLE_PRESETS))
register_family(Family("affine", 4, _affine, _AFFINE_BOUNDS, angle=0, names=("angle", "shear", "log_sx", "log_sy"),
                       presets=ANGLE_PLUS_PRESETS, sampler=affine_params))  # fmt: skip
register_family(Family("affine_t", 6, _affine, _AFFINE_BOUNDS + ((-SHIFT_MAX, SHIFT_MAX),) * 2, angle=0,
                       names=("angle", "shear", "log_sx", "log_sy", "tx", "ty"), presets=ANGLE_PLUS_PRESETS,
                       sampler=_affine_t_params))  # fmt: skip
