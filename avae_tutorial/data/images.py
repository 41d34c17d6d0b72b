"""A reader's own images (chapter 7): a folder or an array file in, ``(N, C, canvas, canvas)`` out.

Sources
-------
* A **folder** of image files: PNG, JPEG, BMP, TIFF, WebP, GIF (:data:`IMAGE_SUFFIXES`, any
  case), decoded with PIL (as ``torchvision.datasets`` do; ``torchvision.io``'s decoders are
  deprecated since torchvision 0.29). Grey, grey + alpha, RGB, RGBA, 8- and 16-bit, any mix of
  sizes. Other files (a ``README.txt``,
  hidden files) are ignored. ``recursive=True`` also reads the subfolders.
* An **array file**: ``.npy``, ``.npz`` (its one array, or the one named ``x`` or ``images``)
  or ``.pt`` (a tensor, or a dict holding one under ``x`` or ``images``), of shape
  ``(N, H, W)`` or ``(N, C, H, W)`` with ``C`` in 1-4 (grey, grey + alpha, RGB, RGBA); ``uint8``
  (0-255), ``uint16`` (0-65535), ``bool`` or float in [0, 1]. ``.npy`` files are memory-mapped.

Order and names
---------------
A folder's images are sorted by their path relative to the folder, compared as strings
(``"a/9.png" < "b/1.png"``, ``"10.png" < "2.png"``): the same order on every machine. That
relative path (``"cells/a.png"``) is the image's name. An array file keeps its order; image
``i`` of ``cells.npy`` is named ``"cells.npy[i]"``.

Conversion (:func:`to_canvas`, the same for every source)
---------------------------------------------------------
1. integers to [0, 1] (divided by 255 or 65535);
2. transparency composited onto the background (black; white with ``invert``);
3. channels: RGB to grey by luminance (``transforms.v2``'s ``rgb_to_grayscale``) when
   ``channels=1``; grey repeated when ``channels=3``;
4. ``invert``: ``x -> 1 - x``, for dark objects on a light background (the model wants them
   light on black, as MNIST's digits are);
5. padded with background to a square, centred (the aspect ratio is kept);
6. resized to ``canvas x canvas``, bilinear with antialiasing (``transforms.v2``).

Nothing is cropped: an object that touches the image's border may have its corners cut off
when the search turns it; leave a margin around it if it can.

A folder larger than memory is read through :class:`ImageFolder` (a ``torch.utils.data.Dataset``)
and a ``DataLoader`` with workers; :func:`batches` does that in input order, and
:func:`load_images` stacks the result.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from .._checks import check_positive_int
from ..model import check_canvas, check_channels

__all__ = [
    "load_images",
    "open_images",
    "ImageFolder",
    "ArrayImages",
    "ImageError",
    "batches",
    "to_canvas",
    "list_images",
    "save_images",
    "IMAGE_SUFFIXES",
    "ARRAY_SUFFIXES",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
ARRAY_SUFFIXES = (".npy", ".npz", ".pt")
_ARRAY_KEYS = ("x", "images")


class ImageError(ValueError):
    """An image that cannot be read; ``name`` is the file (or ``file[i]``) it came from."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name, self.reason = name, reason


# ---------------------------------------------------------------- conversion
def to_canvas(img: torch.Tensor, canvas: int, channels: int = 1, invert: bool = False) -> torch.Tensor:
    """One decoded image ``(C, H, W)`` (C in 1-4; uint8, uint16, bool or float in [0, 1]) as
    float32 ``(channels, canvas, canvas)`` in [0, 1] (steps 1-6 of the module docstring)."""
    from torchvision.transforms import v2  # here: importing the package stays light

    x = _unit(img)  # (C, H, W) in [0, 1]
    if x.shape[0] in (2, 4):  # grey + alpha, RGBA: composite onto the background
        alpha, x = x[-1:], x[:-1]
        x = x * alpha + (1.0 - alpha) * float(invert)
    if channels == 1 and x.shape[0] == 3:
        x = v2.functional.rgb_to_grayscale(x)
    elif channels == 3 and x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    if invert:
        x = 1.0 - x
    h, w = x.shape[-2:]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    x = v2.functional.pad(x, [left, top, side - w - left, side - h - top], fill=0.0)  # (C, side, side)
    x = v2.functional.resize(x, [canvas, canvas], interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
    return x.clamp_(0.0, 1.0).contiguous()


def _unit(img: torch.Tensor) -> torch.Tensor:
    if img.dtype == torch.uint8:
        return img.float() / 255.0
    if img.dtype == torch.uint16:
        return img.to(torch.int32).float() / 65535.0
    if img.dtype == torch.bool:
        return img.float()
    return img.float()


# ---------------------------------------------------------------- files
def list_images(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """The image files of ``folder`` in the documented order (sorted relative paths)."""
    folder = Path(folder)
    found = folder.rglob("*") if recursive else folder.iterdir()
    files = [p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]  # fmt: skip
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def decode_file(path: Path, name: str) -> torch.Tensor:
    """``(C, H, W)`` as stored (uint8, uint16 or float), or :class:`ImageError` naming ``name``."""
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise ImageError(name, f"cannot be read ({e.strerror or e})") from None
    if not blob:
        raise ImageError(name, "is an empty file (0 bytes)")
    img = _decode_pil(blob, name)
    if img.dim() != 3 or img.shape[0] not in (1, 2, 3, 4):
        raise ImageError(name, f"decoded to an unexpected shape {tuple(img.shape)}")
    if img.shape[-1] == 0 or img.shape[-2] == 0:
        raise ImageError(name, f"is a zero-size image ({img.shape[-1]}x{img.shape[-2]})")
    return img


def _decode_pil(blob: bytes, name: str) -> torch.Tensor:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(blob)) as im:
            im.load()
            if im.mode.startswith("I"):  # 16-bit grey (read as 0-65535)
                a = np.asarray(im).astype(np.float32) / 65535.0
                return torch.from_numpy(np.clip(a, 0, 1))[None]
            if im.mode == "F":
                return torch.from_numpy(np.clip(np.asarray(im, dtype=np.float32), 0, 1))[None]
            if im.mode not in ("L", "LA", "RGB", "RGBA"):
                im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
            a = np.array(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        reason = "is not an image, or is corrupt or truncated (PIL cannot identify it)" if isinstance(e, UnidentifiedImageError) \
            else f"is corrupt or truncated ({e})"  # fmt: skip
        raise ImageError(name, reason) from None
    t = torch.from_numpy(a)
    return t[None] if t.dim() == 2 else t.permute(2, 0, 1)


# ---------------------------------------------------------------- datasets
class ImageFolder(Dataset):
    """The images of a folder as a ``Dataset``: item ``i`` is ``(channels, canvas, canvas)`` float32.

    Files are decoded when asked for (a ``DataLoader``'s workers do it in parallel), so the
    folder may be larger than memory. ``names[i]`` is file ``i``'s path relative to the folder.
    A file that cannot be read raises :class:`ImageError` naming it.
    """

    def __init__(self, folder, canvas: int, channels: int = 1, invert: bool = False, recursive: bool = False):
        self.folder = Path(folder)
        self.canvas, self.channels, self.invert = check_canvas(canvas), check_channels(channels), bool(invert)
        self.files = list_images(self.folder, recursive)
        if not self.files:
            others = sum(1 for p in self.folder.rglob("*") if p.is_file()) if recursive else \
                sum(1 for p in self.folder.iterdir() if p.is_file())  # fmt: skip
            where = "or its subfolders " if recursive else ""
            hint = "" if recursive else "; pass recursive=True (CLI: --recursive) to look in subfolders"
            raise ValueError(f"images: folder {self.folder} {where}holds no image files ({', '.join(IMAGE_SUFFIXES)}; "
                             f"{others} other files ignored){hint}")  # fmt: skip
        self.names = [p.relative_to(self.folder).as_posix() for p in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return to_canvas(decode_file(self.files[i], self.names[i]), self.canvas, self.channels, self.invert)


class ArrayImages(Dataset):
    """The images of an array file (``.npy``, ``.npz``, ``.pt``) as a ``Dataset``, as :class:`ImageFolder`."""

    def __init__(self, path, canvas: int, channels: int = 1, invert: bool = False):
        self.path = Path(path)
        self.canvas, self.channels, self.invert = check_canvas(canvas), check_channels(channels), bool(invert)
        self.array = _read_array(self.path)  # (N, C, H, W)
        width = len(str(len(self.array) - 1))
        self.names = [f"{self.path.name}[{i:0{width}d}]" for i in range(len(self.array))]

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i: int) -> torch.Tensor:
        img = self.array[i]
        img = img if isinstance(img, torch.Tensor) else torch.from_numpy(img.copy())  # out of the memory map
        if img.is_floating_point():
            if not torch.isfinite(img).all():
                raise ImageError(self.names[i], "contains NaN or inf values")
            lo, hi = float(img.min()), float(img.max())
            if lo < 0 or hi > 1:
                hint = "; divide 0-255 values by 255" if hi <= 255 and lo >= 0 else ""
                raise ImageError(self.names[i], f"expected float values in [0, 1], got range [{lo:.4g}, {hi:.4g}]{hint}")
        return to_canvas(img, self.canvas, self.channels, self.invert)


def _read_array(path: Path):
    import numpy as np

    name = path.name
    try:
        if path.suffix == ".npy":
            a = np.load(path, mmap_mode="r", allow_pickle=False)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                a = z[_pick(list(z.files), name)]
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict):
                obj = obj[_pick([k for k, v in obj.items() if isinstance(v, torch.Tensor)], name)]
            if not isinstance(obj, torch.Tensor):
                raise ImageError(name, f"expected a tensor (or a dict with one), got {type(obj).__name__}")
            a = obj
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - numpy and torch raise many kinds; all mean "unreadable"
        raise ImageError(name, f"is corrupt, truncated or not a safe array file ({type(e).__name__}: {e})") from None
    ok = {"uint8", "uint16", "bool", "float16", "float32", "float64"}
    dtype = str(a.dtype).replace("torch.", "")
    if dtype not in ok:
        raise ImageError(name, f"expected uint8 (0-255), uint16, bool or float (0-1) values, got {dtype}")
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4 or a.shape[1] not in (1, 2, 3, 4):
        hint = "; channels-last arrays (N, H, W, C) need a.transpose(0, 3, 1, 2)" if a.ndim == 4 and \
            a.shape[-1] in (1, 3, 4) else ""  # fmt: skip
        raise ImageError(name, f"expected shape (N, H, W) or (N, C, H, W) with C in 1-4, got {tuple(a.shape)}{hint}")
    if a.shape[0] == 0:
        raise ImageError(name, "holds no images (N = 0)")
    if a.shape[-1] == 0 or a.shape[-2] == 0:
        raise ImageError(name, f"holds zero-size images ({a.shape[-1]}x{a.shape[-2]})")
    return a


def _pick(keys: list[str], name: str) -> str:
    if len(keys) == 1:
        return keys[0]
    for k in _ARRAY_KEYS:
        if k in keys:
            return k
    raise ImageError(name, f"holds {len(keys)} arrays {keys}; expected one, or one named 'x' or 'images'")


def open_images(source, canvas: int, channels: int = 1, invert: bool = False, recursive: bool = False) -> Dataset:
    """A folder or an array file as a ``Dataset`` (:class:`ImageFolder` or :class:`ArrayImages`),
    each with ``names``. Clear errors for a path that is neither."""
    check_canvas(canvas)
    check_channels(channels)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"images: {path} does not exist")
    if path.is_dir():
        return ImageFolder(path, canvas, channels, invert, recursive)
    if path.suffix.lower() in ARRAY_SUFFIXES:
        return ArrayImages(path, canvas, channels, invert)
    kinds = ", ".join(ARRAY_SUFFIXES)
    raise ValueError(f"images: {path} is not a folder of images or an array file ({kinds}); got a "
                     f"{path.suffix or 'suffix-less'} file")  # fmt: skip


# ---------------------------------------------------------------- batches, in input order
class _Tolerant(Dataset):
    """Item ``i`` -> ``(i, image or None, error message or None)``: a bad file does not stop a worker."""

    def __init__(self, ds: Dataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        try:
            return i, self.ds[i], None
        except ImageError as e:
            return i, None, (e.name, e.reason)


def _collate(items):
    good = [(i, x) for i, x, _ in items if x is not None]
    bad = [(i, *err) for i, x, err in items if x is None]
    x = torch.stack([x for _, x in good]) if good else None
    return [i for i, _ in good], x, bad


def batches(data, indices=None, batch_size: int = 256, workers: int = 0, skip_bad: bool = False,
            pin_memory: bool = False):  # fmt: skip
    """Yield ``(idx, x, bad)`` over ``data`` in input order: ``idx`` the indices of the images in
    ``x (b, C, canvas, canvas)`` (``x`` is ``None`` if a whole batch was bad), ``bad`` a list of
    ``(index, name, reason)``. ``data``: a ``Dataset`` (read by a ``DataLoader`` with ``workers``
    processes) or an in-memory tensor ``(N, C, H, W)`` (sliced). ``indices``: a subset, in the
    order given (default: all). A bad image raises :class:`ImageError` unless ``skip_bad``.
    """
    check_positive_int(batch_size, "batch_size")
    check_positive_int(workers, "workers", minimum=0)
    n = len(data)
    idx_all = list(range(n)) if indices is None else [int(i) for i in indices]
    if isinstance(data, torch.Tensor):
        for s in range(0, len(idx_all), batch_size):
            idx = idx_all[s : s + batch_size]
            yield idx, data[s : s + batch_size] if indices is None else data[idx], []
        return
    loader = DataLoader(torch.utils.data.Subset(_Tolerant(data), idx_all), batch_size=batch_size, shuffle=False,
                        num_workers=workers, collate_fn=_collate, pin_memory=pin_memory)  # fmt: skip
    for idx, x, bad in loader:
        if bad and not skip_bad:
            raise ImageError(*bad[0][1:])
        yield idx, x, bad


def load_images(source, canvas: int = 40, channels: int = 1, invert: bool = False, recursive: bool = False,
                workers: int = 0) -> tuple[torch.Tensor, list[str]]:  # fmt: skip
    """A reader's images as ``(x, names)``: float32 ``(N, channels, canvas, canvas)`` in [0, 1] and
    each image's name, in the order of the module docstring (sorted relative paths for a folder;
    ``"file.npy[i]"`` for an array file).

    ``source``: a folder of PNG/JPEG/BMP/TIFF/... files (``recursive``: with its subfolders) or
    an array file (``.npy``, ``.npz``, ``.pt``). ``canvas``: a multiple of 4 from 28 to 128, the
    model's input size. ``channels``: 1 (grey; colour is converted by luminance) or 3 (RGB).
    ``invert``: for dark objects on a light background. ``workers``: ``DataLoader`` processes
    that decode files in parallel. A file that cannot be read raises :class:`ImageError` (a
    ``ValueError``) naming it.
    """
    ds = open_images(source, canvas, channels, invert, recursive)
    parts = [x for _, x, _ in batches(ds, batch_size=256, workers=workers)]
    return torch.cat(parts), list(ds.names)


def save_images(x: torch.Tensor, paths) -> None:
    """Write images ``(N, C, H, W)`` in [0, 1] as 8-bit PNG files (folders created as needed)."""
    from PIL import Image

    q = (x.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    for img, path in zip(q, paths):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(path)
