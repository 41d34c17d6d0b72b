"""Chapter 7's letters: the applied turn follows rotation()'s convention, files and rows are seeded."""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

import avae_tutorial as avae
from avae_tutorial.data.letters import render_letter, write_letters


def _ink(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(255 - a.astype(np.float32))[None, None] / 255  # light on black


def test_a_letter_turned_by_90_degrees_is_the_warp_by_rotation_90():
    upright, turned = render_letter("F", 0.0, 48, 48), render_letter("F", 90.0, 48, 48)
    assert upright.shape == (48, 48) and upright.dtype == np.uint8 and upright.min() == 0 and upright.max() == 255
    warped = avae.warp(_ink(upright), avae.rotation(torch.tensor([math.pi / 2])))
    assert (warped - _ink(turned)).abs().mean() < 1e-3  # turned counter-clockwise, as rotation() says
    assert (warped - _ink(render_letter("F", -90.0, 48, 48))).abs().mean() > 0.05


def test_holes_stay_holes_and_the_letter_fits_at_any_turn():
    o = _ink(render_letter("O", 45.0, 40, 60))[0, 0]  # (60, 40)
    assert o[30, 20] < 0.05 and o.max() > 0.95  # the counter of the "O" is empty
    assert o[0].max() == 0 and o[-1].max() == 0 and o[:, 0].max() == 0 and o[:, -1].max() == 0


def test_write_letters_is_seeded_and_names_its_files(tmp_path):
    rows = write_letters(tmp_path / "a", "FS", per_letter=3, seed=1)
    again = write_letters(tmp_path / "b", "FS", per_letter=3, seed=1)
    assert rows == again and [r["file"] for r in rows] == ["F_000.png", "F_001.png", "F_002.png",
                                                           "S_000.png", "S_001.png", "S_002.png"]  # fmt: skip
    assert all(-180 <= r["angle_deg"] < 180 and r["letter"] == r["file"][0] for r in rows)
    sizes = {Image.open(tmp_path / "a" / r["file"]).size for r in rows}
    assert len(sizes) > 1 and all(44 <= s <= 76 for size in sizes for s in size)
