"""A reader's images: folders of grey, RGB, RGBA and 16-bit files of mixed sizes, array files,
the order of names, the conversion steps, and a clear error for every bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import avae_tutorial as avae
from avae_tutorial.data.images import ImageError, batches, open_images, to_canvas

pytestmark = pytest.mark.usefixtures("single_thread")


def _bar(h: int, w: int) -> np.ndarray:
    """A white horizontal bar across the middle of a black (h, w) image, values 0-1."""
    a = np.zeros((h, w), np.float32)
    a[h // 2 - 2 : h // 2 + 2, w // 4 : 3 * w // 4] = 1.0
    return a


@pytest.fixture
def folder(tmp_path):
    """Grey, RGB, RGBA (bar opaque, rest transparent), 16-bit grey PNG, a BMP, a TIFF and a JPEG,
    all of other sizes; a subfolder; and files that are not images."""
    g = _bar(30, 20)
    Image.fromarray((g * 255).astype(np.uint8)).save(tmp_path / "b_grey.png")
    Image.fromarray((np.stack([g] * 3, -1) * 255).astype(np.uint8)).save(tmp_path / "a_rgb.png")
    rgba = np.stack([np.ones_like(g)] * 3 + [g], -1)  # white everywhere, opaque only on the bar
    Image.fromarray((rgba * 255).astype(np.uint8), "RGBA").save(tmp_path / "c_rgba.png")
    Image.fromarray((_bar(44, 33) * 65535).astype(np.uint16)).save(tmp_path / "d16.png")
    Image.fromarray((np.stack([_bar(24, 40)] * 3, -1) * 255).astype(np.uint8)).save(tmp_path / "e.BMP")
    Image.fromarray((_bar(44, 33) * 65535).astype(np.uint16)).save(tmp_path / "f16.tif")
    Image.fromarray((np.stack([_bar(32, 32)] * 3, -1) * 255).astype(np.uint8)).save(tmp_path / "g.jpg", quality=95)
    (tmp_path / "sub").mkdir()
    Image.fromarray((g * 255).astype(np.uint8)).save(tmp_path / "sub" / "z.png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"")
    return tmp_path


NAMES = ["a_rgb.png", "b_grey.png", "c_rgba.png", "d16.png", "e.BMP", "f16.tif", "g.jpg"]


def test_a_folder_of_mixed_files_and_sizes(folder):
    x, names = avae.load_images(folder, canvas=32)
    assert names == NAMES  # sorted relative paths; other suffixes and hidden files ignored
    assert x.shape == (7, 1, 32, 32) and x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    for i, img in enumerate(x):  # every image is the same bar, whatever its file: bright middle, dark corners
        assert img[0, 16, 16] > 0.8 and img[0, 0, 0] < 0.05, names[i]
    x3, _ = avae.load_images(folder, canvas=32, channels=3)
    assert x3.shape == (7, 3, 32, 32)
    torch.testing.assert_close(x3[1], x[1].expand(3, -1, -1))  # grey repeated


def test_recursive_names_hold_the_subfolder_and_sort_as_strings(folder):
    for name in ("10.png", "2.png"):
        Image.fromarray(np.zeros((5, 5), np.uint8)).save(folder / "sub" / name)
    _, names = avae.load_images(folder, canvas=28, recursive=True)
    assert names == NAMES + ["sub/10.png", "sub/2.png", "sub/z.png"]


def test_16_bit_values_are_scaled_by_65535_and_rgb_is_weighted_by_luminance(tmp_path):
    Image.fromarray(np.full((28, 28), 32768, np.uint16)).save(tmp_path / "half.png")
    Image.fromarray(np.full((28, 28, 3), [255, 0, 0], np.uint8)).save(tmp_path / "red.png")
    x, names = avae.load_images(tmp_path, canvas=28)
    assert names == ["half.png", "red.png"]
    torch.testing.assert_close(x[0].mean(), torch.tensor(32768 / 65535), atol=1e-4, rtol=0)
    torch.testing.assert_close(x[1].mean(), torch.tensor(0.299), atol=2e-3, rtol=0)


def test_padding_keeps_the_aspect_ratio_and_invert_flips_a_light_background():
    wide = torch.zeros(1, 10, 40)  # a dark 10x40 strip: on a light background after inverting ...
    x = to_canvas(wide, canvas=40, invert=True)  # ... it becomes a light strip padded with black
    assert x.shape == (1, 40, 40)
    assert x[0, 20].min() > 0.99 and x[0, :10].max() == 0 and x[0, 30:].max() == 0
    rgba = torch.zeros(4, 8, 8)  # fully transparent: background whatever the colour
    rgba[:3] = 1.0
    assert to_canvas(rgba, 28).max() == 0 and to_canvas(rgba, 28, invert=True).max() < 1e-3


def test_array_files_of_every_kind(tmp_path):
    u8 = (np.random.default_rng(0).random((5, 20, 30)) * 255).astype(np.uint8)
    np.save(tmp_path / "a.npy", u8)
    np.savez(tmp_path / "b.npz", images=u8[:, None].repeat(3, 1), labels=np.arange(5))
    torch.save({"x": torch.from_numpy(u8).float() / 255}, tmp_path / "c.pt")
    torch.save(torch.from_numpy(u8.astype(np.uint16) * 257)[:, None], tmp_path / "d.pt")
    want, _ = avae.load_images(tmp_path / "a.npy", canvas=32)
    for name in ("b.npz", "c.pt", "d.pt"):
        x, names = avae.load_images(tmp_path / name, canvas=32)
        assert names == [f"{name}[{i}]" for i in range(5)]
        torch.testing.assert_close(x, want, atol=2e-3, rtol=0)  # luminance of a grey RGB is the grey


def test_a_dataset_through_a_dataloader_with_workers_equals_the_tensor(folder):
    x, names = avae.load_images(folder, canvas=28)
    ds = open_images(folder, canvas=28)
    got = list(batches(ds, indices=[5, 1, 3], batch_size=2, workers=2))
    assert [i for idx, _, _ in got for i in idx] == [5, 1, 3]
    torch.testing.assert_close(torch.cat([b for _, b, _ in got]), x[[5, 1, 3]])
    assert ds.names == names and len(ds) == 7


def _write_bad(folder, kind):
    if kind == "corrupt":
        blob = (folder / "b_grey.png").read_bytes()
        (folder / "b_grey.png").write_bytes(blob[: len(blob) // 2])  # truncated
    elif kind == "not an image":
        (folder / "b_grey.png").write_text("hello, I am text")
    elif kind == "empty file":
        (folder / "b_grey.png").write_bytes(b"")
    return "b_grey.png"


@pytest.mark.parametrize("kind, match", [
    ("corrupt", r"b_grey\.png: is corrupt or truncated"),
    ("not an image", r"b_grey\.png: is not an image, or is corrupt or truncated \(PIL cannot identify it\)"),
    ("empty file", r"b_grey\.png: is an empty file \(0 bytes\)"),
])  # fmt: skip
def test_a_bad_file_is_named_or_skipped(folder, kind, match):
    _write_bad(folder, kind)
    with pytest.raises(ImageError, match=match):
        avae.load_images(folder, canvas=28)
    got = list(batches(open_images(folder, canvas=28), skip_bad=True))
    assert [b[1] for _, _, bad in got for b in bad] == ["b_grey.png"]
    assert sum(len(idx) for idx, _, _ in got) == 6


@pytest.mark.parametrize("make, kw, exc, match", [
    (lambda p: p, {}, ValueError, r"holds no image files .*1 other files ignored\); pass recursive=True"),
    (lambda p: p / "missing", {}, FileNotFoundError, r"images: .*missing does not exist"),
    (lambda p: (p / "n.txt").write_text("x") and p / "n.txt", {}, ValueError,
     r"is not a folder of images or an array file \(\.npy, \.npz, \.pt\); got a \.txt file"),
    (lambda p: p, {"canvas": 30}, ValueError, r"canvas: expected a multiple of 4 from 28 to 128, got 30"),
    (lambda p: p, {"channels": 2}, ValueError, r"channels: expected 1 \(grey\) or 3 \(RGB\), got 2"),
    (lambda p: np.save(p / "z.npy", np.zeros((3, 0, 5), np.uint8)) or p / "z.npy", {}, ImageError,
     r"z\.npy: holds zero-size images \(5x0\)"),
    (lambda p: np.save(p / "e.npy", np.zeros((0, 5, 5), np.uint8)) or p / "e.npy", {}, ImageError,
     r"e\.npy: holds no images"),
    (lambda p: np.save(p / "c.npy", np.zeros((2, 5, 5, 3), np.uint8)) or p / "c.npy", {}, ImageError,
     r"expected shape \(N, H, W\) or \(N, C, H, W\).*channels-last"),
    (lambda p: np.save(p / "i.npy", np.zeros((2, 5, 5), np.int32)) or p / "i.npy", {}, ImageError,
     r"i\.npy: expected uint8 .* got int32"),
    (lambda p: np.save(p / "f.npy", np.full((2, 5, 5), 200.0, np.float32)) or p / "f.npy", {}, ImageError,
     r"f\.npy\[0\]: expected float values in \[0, 1\], got range \[200, 200\]; divide 0-255 values by 255"),
    (lambda p: [(p / "t.npy").write_bytes(b"\x93NUMPY garbage"), p / "t.npy"][1], {}, ImageError,
     r"t\.npy: is corrupt, truncated or not a safe array file"),
    (lambda p: np.savez(p / "m.npz", a=np.zeros(1), b=np.zeros(1)) or p / "m.npz", {}, ImageError,
     r"m\.npz: holds 2 arrays \['a', 'b'\]; expected one, or one named 'x' or 'images'"),
])  # fmt: skip
def test_bad_sources_get_a_clear_error(tmp_path, make, kw, exc, match):
    (tmp_path / "readme.md").write_text("x")
    source = make(tmp_path)
    with pytest.raises(exc, match=match):
        avae.load_images(source, **{"canvas": 28, **kw})


def test_a_zero_size_image_file_is_named(tmp_path, monkeypatch):
    """No common writer makes a 0x0 PNG, so a decoder that returns one stands in for it."""
    from avae_tutorial.data import images

    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "z.tif")
    monkeypatch.setattr(images, "_decode_pil", lambda blob, name: torch.zeros(1, 0, 4, dtype=torch.uint8))
    with pytest.raises(ImageError, match=r"z\.tif: is a zero-size image \(4x0\)"):
        avae.load_images(tmp_path, canvas=28)
