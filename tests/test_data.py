"""MNIST loading without the network (sources monkeypatched), the cache, safe unpickling, perturbations."""
from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle

import numpy as np
import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.data import mnist as data

pytestmark = pytest.mark.usefixtures("single_thread")

SIZES = {"train": 60, "test": 10}


def fake_arrays(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for split, n in SIZES.items():
        out[f"{split}_x"] = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        out[f"{split}_y"] = torch.randint(0, 10, (n,), generator=g)
    return out


class Sources:
    """Stand-ins for torchvision and PyPI that count their calls; ``fail`` makes them raise."""

    def __init__(self, monkeypatch, fail=()):
        self.calls = {"torchvision": 0, "pypi": 0}
        self.fail = set(fail)
        monkeypatch.setattr(data, "SPLIT_SIZES", SIZES)
        monkeypatch.setattr(data, "_from_torchvision", lambda root: self._call("torchvision"))
        monkeypatch.setattr(data, "_from_pypi", lambda root: self._call("pypi"))

    def _call(self, name):
        self.calls[name] += 1
        if name in self.fail:
            raise ConnectionError(f"{name} is offline in this test")
        return fake_arrays()


def test_cache_is_written_atomically_and_reused(tmp_path, monkeypatch):
    src = Sources(monkeypatch)
    x, y = avae.load_mnist("test", root=tmp_path)
    assert x.shape == (10, 1, 40, 40) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    ref = fake_arrays()
    torch.testing.assert_close(x[:, 0, 6:34, 6:34], ref["test_x"].float() / 255)  # centred on the canvas
    assert x[:, :, :6].abs().max() == 0 and torch.equal(y, ref["test_y"])
    assert src.calls == {"torchvision": 1, "pypi": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist_uint8.pt", "mnist_uint8.sha256"]  # no temp files
    digest = (tmp_path / "mnist_uint8.sha256").read_text().strip()
    assert digest == hashlib.sha256((tmp_path / "mnist_uint8.pt").read_bytes()).hexdigest()

    src.fail = {"torchvision", "pypi"}  # the second call must not touch any source
    x2, y2 = avae.load_mnist("test", root=tmp_path)
    assert torch.equal(x2, x) and torch.equal(y2, y) and src.calls == {"torchvision": 1, "pypi": 0}
    xt, yt = avae.load_mnist("train", canvas=28, limit=7, root=tmp_path)
    assert xt.shape == (7, 1, 28, 28) and torch.equal(yt, ref["train_y"][:7])


def test_a_write_that_fails_half_way_leaves_no_cache_and_no_temp_file(tmp_path, monkeypatch):
    Sources(monkeypatch)

    def crash(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(data.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        avae.load_mnist("test", root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_corrupted_cache_is_detected_and_rebuilt(tmp_path, monkeypatch):
    src = Sources(monkeypatch)
    avae.load_mnist("test", root=tmp_path)
    cache = tmp_path / "mnist_uint8.pt"
    blob = bytearray(cache.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    cache.write_bytes(bytes(blob))
    x, _ = avae.load_mnist("test", root=tmp_path)
    assert src.calls["torchvision"] == 2  # rebuilt from a source
    assert (tmp_path / "mnist_uint8.sha256").read_text().strip() == hashlib.sha256(cache.read_bytes()).hexdigest()
    torch.testing.assert_close(x[:, 0, 6:34, 6:34], fake_arrays()["test_x"].float() / 255)


def test_all_sources_failing_gives_one_error_naming_each(tmp_path, monkeypatch):
    Sources(monkeypatch, fail={"torchvision", "pypi"})
    with pytest.raises(RuntimeError) as e:
        avae.load_mnist("test", root=tmp_path)
    msg = str(e.value)
    assert "could not load MNIST from any source" in msg
    assert f"cache: {tmp_path / 'mnist_uint8.pt'} does not exist" in msg
    assert "torchvision: ConnectionError: torchvision is offline" in msg
    assert "pypi: ConnectionError: pypi is offline" in msg
    assert "AVAE_DATA_DIR" in msg


def test_a_source_returning_bad_arrays_is_reported_and_the_next_one_used(tmp_path, monkeypatch):
    src = Sources(monkeypatch)
    bad = fake_arrays()
    bad["test_x"] = bad["test_x"][:, :20]
    monkeypatch.setattr(data, "_from_torchvision", lambda root: bad)
    x, _ = avae.load_mnist("test", root=tmp_path)
    assert src.calls["pypi"] == 1 and x.shape == (10, 1, 40, 40)


def test_data_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AVAE_DATA_DIR", str(tmp_path / "here"))
    assert data.data_dir() == tmp_path / "here"
    assert data.data_dir(tmp_path) == tmp_path


# ---------------------------------------------------------------- the PyPI pickle
class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def _gz_pickle(obj, protocol: int = 4) -> bytes:  # 4: bytes as BINBYTES, as numpy arrays need
    return gzip.compress(pickle.dumps(obj, protocol=protocol))


def test_restricted_unpickler_refuses_os_system(tmp_path):
    marker = tmp_path / "pwned"
    blob = _gz_pickle(_Evil(marker))
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to unpickle (posix|nt|os)\.system"):
        data._NumpyOnlyUnpickler(gzip.open(io.BytesIO(blob)), encoding="latin1").load()
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to unpickle (__builtin__|builtins)\.eval"):
        data._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(eval, protocol=2))).load()


def test_restricted_unpickler_admits_numpy_arrays():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    got = data._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps((a, a[0].astype(np.int64)), protocol=4))).load()
    np.testing.assert_array_equal(got[0], a)
    np.testing.assert_array_equal(got[1], a[0])


def test_mnist_from_pickle_rejects_a_wrong_sha256():
    with pytest.raises(ValueError, match=f"sha256 of {data.PYPI_MEMBER} is [0-9a-f]{{64}}, expected {data.PYPI_SHA256}"):
        data.mnist_from_pickle(_gz_pickle("not mnist"))


def test_mnist_from_pickle_parses_the_classic_layout(monkeypatch):
    """train + valid become the 60,000 training digits; pixels stored as k/256 come back as k."""
    g = np.random.default_rng(0)
    k = {s: g.integers(0, 256, size=(n, 784)) for s, n in (("train", 5), ("valid", 2), ("test", 3))}
    lab = {s: g.integers(0, 10, size=len(v)) for s, v in k.items()}
    blob = _gz_pickle(tuple((k[s].astype(np.float32) / 256, lab[s]) for s in ("train", "valid", "test")))
    monkeypatch.setattr(data, "PYPI_SHA256", hashlib.sha256(blob).hexdigest())
    out = data.mnist_from_pickle(blob)
    assert out["train_x"].shape == (7, 28, 28) and out["train_x"].dtype == torch.uint8
    np.testing.assert_array_equal(out["train_x"].numpy().reshape(7, 784), np.concatenate([k["train"], k["valid"]]))
    np.testing.assert_array_equal(out["test_y"].numpy(), lab["test"])


# ---------------------------------------------------------------- perturbations and synthetic digits
def test_random_rotations_are_seeded_and_return_their_angles(digits):
    x = digits[0][:6]
    xr, angle = avae.data.mnist.random_rotations(x, seed=3)
    xr2, angle2 = avae.data.mnist.random_rotations(x, seed=3)
    assert torch.equal(angle, angle2) and torch.equal(xr, xr2)
    assert not torch.equal(angle, avae.data.mnist.random_rotations(x, seed=4)[1])
    assert angle.shape == (6,) and 0 <= float(angle.min()) and float(angle.max()) < 2 * math.pi
    torch.testing.assert_close(xr, avae.warp(x, avae.rotation(angle)))


def test_random_affines_are_seeded_bounded_and_return_their_params(digits):
    x = digits[0][:8]
    xa, params = avae.data.mnist.random_affines(x, seed=5, max_shear_deg=55.0, max_scale=0.5)
    assert params.shape == (8, 4) and torch.equal(params, avae.data.mnist.random_affines(x, seed=5)[1])
    assert params[:, 1].abs().max() <= math.radians(55.0) and params[:, 2:].abs().max() <= math.log(1.5) + 1e-6
    torch.testing.assert_close(xa, avae.warp(x, avae.affine(params)))
    assert 0 <= float(xa.min()) and float(xa.max()) <= 1


def test_synthetic_digits():
    x, y = avae.data.mnist.synthetic_digits(50, canvas=40, seed=0)
    assert x.shape == (50, 1, 40, 40) and x.dtype == torch.float32 and y.shape == (50,) and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0 and set(y.tolist()) <= set(range(10))
    assert len(set(y.tolist())) >= 8
    x2, y2 = avae.data.mnist.synthetic_digits(50, canvas=40, seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert x[:, :, :5].max() == 0 and x[:, :, -5:].max() == 0  # room to rotate without clipping
    ones, eights = x[y == 1].sum((1, 2, 3)), x[y == 8].sum((1, 2, 3))
    assert ones.mean() < eights.mean()  # the classes differ in ink


def test_pad_to_canvas_centres():
    x = torch.ones(2, 1, 28, 28)
    out = avae.data.mnist.pad_to_canvas(x, 40)
    assert out.shape == (2, 1, 40, 40) and out[..., 6:34, 6:34].min() == 1 and out.sum() == x.sum()
