"""Checkpoints: atomic writes, weights-only loading, clear errors for bad files and mismatched configs."""
from __future__ import annotations

import os
from dataclasses import asdict

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial import _io
from avae_tutorial.training import checkpoint as ckpt_mod

pytestmark = pytest.mark.usefixtures("single_thread")


def payload(vae: avae.VAE) -> dict:
    cfg = asdict(avae.TrainConfig(latent_dim=vae.latent_dim, canvas=vae.canvas))
    return ckpt_mod.checkpoint_dict(vae, config=cfg, epoch=1, history={"train_loss": [1.0]})


def test_round_trip_rebuilds_the_model_from_its_config(tiny_vae, digits, tmp_path):
    path = avae.training.checkpoint.save_checkpoint(payload(tiny_vae), tmp_path / "sub" / "m.pt")
    assert path.exists() and sorted(p.name for p in path.parent.iterdir()) == ["m.pt"]  # no temp files
    ckpt = avae.training.checkpoint.load_checkpoint(path)
    vae = avae.training.checkpoint.model_from_checkpoint(ckpt)
    assert not vae.training and vae.config == tiny_vae.config
    x = digits[0][:3]
    torch.testing.assert_close(vae(x)[0], tiny_vae(x)[0], rtol=0, atol=0)
    # the model's own config is all it takes (nanoGPT style): no training config needed
    bare = {"model_config": {"latent_dim": 2, "canvas": 28}, "model": tiny_vae.state_dict()}
    assert avae.training.checkpoint.model_from_checkpoint(bare).config == tiny_vae.config


def test_overwrite_is_atomic_and_a_failed_write_keeps_the_old_file(tiny_vae, tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    avae.training.checkpoint.save_checkpoint(payload(tiny_vae), path)
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("power cut (simulated)")

    monkeypatch.setattr(_io.os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        avae.training.checkpoint.save_checkpoint({**payload(tiny_vae), "epoch": 2}, path)
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["m.pt"]
    monkeypatch.undo()
    avae.training.checkpoint.save_checkpoint({**payload(tiny_vae), "epoch": 2}, path)
    assert avae.training.checkpoint.load_checkpoint(path)["epoch"] == 2 and sorted(os.listdir(tmp_path)) == ["m.pt"]


def test_truncated_file_is_a_clear_error(tiny_vae, tmp_path):
    path = avae.training.checkpoint.save_checkpoint(payload(tiny_vae), tmp_path / "m.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"checkpoint .*m\.pt is truncated, corrupted or not a safe torch file"):
        avae.training.checkpoint.load_checkpoint(path)


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(os.urandom(300))
    with pytest.raises(ValueError, match="truncated, corrupted or not a safe torch file"):
        avae.training.checkpoint.load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        avae.training.checkpoint.load_checkpoint(tmp_path / "nope.pt")


def test_wrong_structure(tmp_path):
    path = tmp_path / "weights_only.pt"
    torch.save({"a": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="expected a dict with 'model_config' and 'model' entries"):
        avae.training.checkpoint.load_checkpoint(path)


def test_config_that_does_not_match_the_weights(tiny_vae):
    bad = {**payload(tiny_vae), "model_config": {"latent_dim": 4, "canvas": 28}}
    with pytest.raises(ValueError, match=r"do not match its model_config \{'latent_dim': 4, 'canvas': 28\}.*size mismatch"):
        avae.training.checkpoint.model_from_checkpoint(bad)
    with pytest.raises(ValueError, match=r"'canvas': 40"):
        avae.training.checkpoint.model_from_checkpoint({**payload(tiny_vae), "model_config": {"latent_dim": 2, "canvas": 40}})
    with pytest.raises(ValueError, match=r"expected a model_config with fields \['canvas', 'latent_dim'\]"):
        avae.training.checkpoint.model_from_checkpoint({**payload(tiny_vae), "model_config": {"regime": "upright"}})


class Payload:
    """A pickled object that would run code on load if unpickled without restrictions."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def test_only_weights_only_loading(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"config": {"latent_dim": 2, "canvas": 28}, "model": {}, "extra": Payload(marker)}, path)
    with pytest.raises(ValueError, match="not a safe torch file"):
        avae.training.checkpoint.load_checkpoint(path)
    assert not marker.exists()


def test_sha256_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert ckpt_mod.sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
