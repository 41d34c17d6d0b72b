"""Shipped models: the manifest's hashes, helpful errors for unknown names, tamper detection."""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.training import pretrained
from avae_tutorial.training.checkpoint import checkpoint_dict, sha256_file

pytestmark = pytest.mark.usefixtures("single_thread")

SHIPPED = pretrained.pretrained_dir()
HAS_MANIFEST = (SHIPPED / "manifest.json").exists()


@pytest.fixture
def use_dir(monkeypatch):
    """Point the package at another pretrained folder."""

    def use(path):
        monkeypatch.setattr(pretrained, "pretrained_dir", lambda: path)

    return use


@pytest.fixture
def fake_dir(tmp_path, digits):
    """A pretrained folder with two tiny models, a history and a results file."""
    entries = {}
    for i, name in enumerate(("tiny-a", "tiny-b")):
        torch.manual_seed(i)
        vae = avae.VAE(2, 28)
        cfg = asdict(avae.TrainConfig(latent_dim=2, canvas=28))
        path = avae.training.checkpoint.save_checkpoint(checkpoint_dict(vae, config=cfg, history={"test_loss": [float(i)]}),
                                    tmp_path / f"{name}.pt")  # fmt: skip
        entries[name] = {"file": path.name, "sha256": sha256_file(path), "config": cfg}
    (tmp_path / "manifest.json").write_text(json.dumps({"models": entries}))
    (tmp_path / "table1.csv").write_text("model,aligned,mean_loss_0_160\ntiny-a,True,12.5\ntiny-a,False,20\n")
    return tmp_path


@pytest.mark.skipif(not HAS_MANIFEST, reason="no shipped manifest yet (python -m avae_tutorial reproduce writes it)")
def test_manifest_hashes_match_the_shipped_files():
    models = pretrained.manifest()["models"]
    assert models, "the manifest lists no models"
    for name, entry in models.items():
        path = SHIPPED / entry["file"]
        assert path.exists(), f"{name}: {entry['file']} is missing"
        assert sha256_file(path) == entry["sha256"], f"{name}: {entry['file']} does not match the manifest"


@pytest.mark.skipif(not HAS_MANIFEST, reason="no shipped manifest yet")
def test_a_shipped_model_loads_in_eval_mode():
    name = pretrained.pretrained_names()[0]
    vae = avae.load_pretrained(name)
    entry = pretrained.manifest()["models"][name]
    assert not vae.training and vae.latent_dim == entry["config"]["latent_dim"] and vae.canvas == entry["config"]["canvas"]


@pytest.mark.skipif(not HAS_MANIFEST, reason="no shipped manifest yet")
def test_a_tampered_copy_of_the_shipped_folder_fails_the_check(tmp_path, use_dir):
    copy = tmp_path / "pretrained"
    shutil.copytree(SHIPPED, copy)
    use_dir(copy)
    name = pretrained.pretrained_names()[0]
    path = copy / pretrained.manifest()["models"][name]["file"]
    blob = bytearray(path.read_bytes())
    blob[-100] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=f"pretrained model '{name}': sha256 [0-9a-f]{{64}} does not match the manifest"):
        avae.load_pretrained(name)


def test_load_verified_model_and_history(fake_dir, use_dir):
    use_dir(fake_dir)
    assert pretrained.pretrained_names() == ["tiny-a", "tiny-b"]
    vae = avae.load_pretrained("tiny-b", device="cpu")
    torch.manual_seed(1)
    assert torch.equal(vae.to_mu.weight, avae.VAE(2, 28).to_mu.weight) and not vae.training
    assert pretrained.load_history("tiny-b") == {"test_loss": [1.0]}


def test_unknown_name_lists_the_valid_ones(fake_dir, use_dir):
    use_dir(fake_dir)
    with pytest.raises(ValueError, match=r"unknown pretrained model 'vae-sideways'; valid names: tiny-a, tiny-b"):
        avae.load_pretrained("vae-sideways")


def test_no_manifest_says_how_to_make_one(tmp_path, use_dir):
    use_dir(tmp_path)
    with pytest.raises(ValueError, match=r"valid names: \(none shipped: run `python -m avae_tutorial reproduce`, "
                                         r"then `python -m avae_tutorial install-models`\)"):
        avae.load_pretrained("vae-upright")


def test_the_manifest_is_the_callers_own_and_follows_the_file(fake_dir, use_dir):
    """No cached dict shared between callers: changing one changes nothing for the next, and a
    manifest replaced on disk (install-models) is read at once."""
    use_dir(fake_dir)
    m = pretrained.manifest()
    m["models"].clear()
    assert pretrained.pretrained_names() == ["tiny-a", "tiny-b"]
    entry = json.loads((fake_dir / "manifest.json").read_text())["models"]["tiny-b"]
    (fake_dir / "manifest.json").write_text(json.dumps({"models": {"tiny-b": entry}}))
    assert pretrained.pretrained_names() == ["tiny-b"]


def test_tampered_file_fails_the_sha256_check(fake_dir, use_dir):
    use_dir(fake_dir)
    path = fake_dir / "tiny-a.pt"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ValueError, match=r"'tiny-a': sha256 [0-9a-f]{64} does not match the manifest's"):
        avae.load_pretrained("tiny-a")
    with pytest.raises(ValueError, match="does not match the manifest"):
        pretrained.load_history("tiny-a")
    torch.manual_seed(1)  # the other one is fine: its own weights (fake_dir's seed 1)
    ref = avae.VAE(2, 28).state_dict()
    vae = avae.load_pretrained("tiny-b")
    assert all(torch.equal(v, ref[k]) for k, v in vae.state_dict().items())


def test_missing_file_is_named(fake_dir, use_dir):
    use_dir(fake_dir)
    (fake_dir / "tiny-a.pt").unlink()
    with pytest.raises(FileNotFoundError, match="file tiny-a.pt is missing from the package"):
        avae.load_pretrained("tiny-a")


def test_results_files(fake_dir, use_dir):
    use_dir(fake_dir)
    rows = pretrained.load_results("table1.csv")
    assert rows == [{"model": "tiny-a", "aligned": True, "mean_loss_0_160": 12.5},
                    {"model": "tiny-a", "aligned": False, "mean_loss_0_160": 20}]  # fmt: skip
    with pytest.raises(ValueError, match=r"unknown results file 'rotation.csv'; available: table1.csv"):
        pretrained.load_results("rotation.csv")
