"""Letters at random orientations (chapter 7): a dataset that is not MNIST, made offline.

Each image is one capital letter drawn with a font that matplotlib ships (DejaVu Sans, Serif
and Sans Mono, regular and bold), turned by a random angle, dark on a white background, in an
image of random width and height, as a scanner or a camera would give it. The outline is
turned exactly (the glyph's path, before it is rasterized), so the applied angle is known to
rounding. The letter's larger side spans 68% of the image's shorter side: it stays inside
the picture whatever the turn.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from .._checks import check_positive_int

__all__ = ["FONTS", "render_letter", "write_letters"]

#: (family, weight) pairs; all ship with matplotlib.
FONTS = (("DejaVu Sans", "normal"), ("DejaVu Sans", "bold"), ("DejaVu Serif", "normal"),
         ("DejaVu Serif", "bold"), ("DejaVu Sans Mono", "normal"))  # fmt: skip


@lru_cache(maxsize=256)  # a few letters x FONTS; each outline is laid out once
def _outline(letter: str, font: tuple[str, str]):
    """The glyph's outline at size 1. Shared by every caller (cached): read it, never change it
    (:func:`render_letter` transforms a copy)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath

    return TextPath((0, 0), letter, size=1, prop=FontProperties(family=font[0], weight=font[1]))


def render_letter(letter: str, angle_deg: float, width: int, height: int, font=FONTS[0],
                  shift=(0.0, 0.0), supersample: int = 3) -> np.ndarray:  # fmt: skip
    """``(height, width)`` uint8, a dark ``letter`` on white, turned counter-clockwise by
    ``angle_deg`` (the convention of :func:`avae_tutorial.rotation`), centred up to ``shift``
    (fractions of the shorter side). Each pixel's ink is the share of its ``supersample`` x
    ``supersample`` sample points inside the outline (even-odd rule: the holes of "O", "R")."""
    from matplotlib.path import Path as MplPath
    from matplotlib.transforms import Affine2D

    path = _outline(letter, tuple(font))
    (x0, y0), (x1, y1) = path.get_extents().get_points()
    scale = 0.68 * min(width, height) / max(x1 - x0, y1 - y0)
    cx, cy = width / 2 + shift[0] * min(width, height), height / 2 + shift[1] * min(width, height)
    t = Affine2D().translate(-(x0 + x1) / 2, -(y0 + y1) / 2).scale(scale).rotate_deg(angle_deg).translate(cx, cy)
    s = supersample
    xs = (np.arange(width * s) + 0.5) / s
    ys = height - (np.arange(height * s) + 0.5) / s  # y up, as the outline: counter-clockwise as displayed
    points = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)  # (H*s*W*s, 2)
    crossings = np.zeros(len(points), dtype=np.int64)
    for polygon in t.transform_path(path).to_polygons(closed_only=True):
        crossings += MplPath(polygon).contains_points(points)
    ink = (crossings % 2 == 1).reshape(height, s, width, s).mean((1, 3))  # (H, W) in [0, 1]
    return (255 * (1 - ink)).round().astype(np.uint8)


def write_letters(folder, letters: str = "FGLPRNSZHXO", per_letter: int = 20, seed: int = 0,
                  sizes: tuple[int, int] = (44, 76)) -> list[dict]:  # fmt: skip
    """Write ``per_letter`` images of each of ``letters`` to ``folder`` as PNG files
    (``"F_000.png"``, ...); returns one row per file: ``file``, ``letter``, ``font`` and the
    applied ``angle_deg`` (uniform in [-180, 180)). Width and height are drawn from ``sizes``,
    the font from :data:`FONTS`, a shift of up to 4% of the shorter side. Seeded."""
    from PIL import Image

    check_positive_int(per_letter, "per_letter")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for letter in letters:
        for i in range(per_letter):
            angle = float(rng.uniform(-180.0, 180.0))
            w, h = (int(v) for v in rng.integers(sizes[0], sizes[1] + 1, size=2))
            font = FONTS[int(rng.integers(len(FONTS)))]
            shift = tuple(float(v) for v in rng.uniform(-0.04, 0.04, size=2))
            name = f"{letter}_{i:03d}.png"
            Image.fromarray(render_letter(letter, angle, w, h, font, shift)).save(folder / name)
            rows.append({"file": name, "letter": letter, "font": " ".join(font).replace(" normal", ""),
                         "angle_deg": angle})  # fmt: skip
    return rows

