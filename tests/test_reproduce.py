"""The reproduction: every shipped model's recipe, and a tiny end-to-end run on synthetic digits."""
from __future__ import annotations

import json

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.training import reproduce as repro
from avae_tutorial.training.checkpoint import checkpoint_dict, save_checkpoint, sha256_file

pytestmark = pytest.mark.usefixtures("single_thread")


def test_the_sweep_shares_the_main_models_data_and_epochs():
    """A fair latent-size sweep: every size trains on the same digits for as many epochs."""
    recipes = repro.recipes(repro.ReproConfig())
    main = recipes["vae-upright"]
    for name, cfg in recipes.items():
        assert (cfg.epochs, cfg.train_limit, cfg.seed) == (main.epochs, main.train_limit, main.seed), name
    assert {cfg.latent_dim for cfg in recipes.values()} == set(repro.SWEEP_LATENTS)
    assert recipes["avae-transopt"].regime == "aligned" and recipes["vae-rotated-l16"].regime == "rotated"


def test_a_tiny_reproduction_writes_models_manifest_and_results(tmp_path, monkeypatch):
    x, y = avae.data.mnist.synthetic_digits(48, canvas=40, seed=0)
    monkeypatch.setattr(repro, "load_mnist", lambda split, **kw: (x, y))
    monkeypatch.setattr(repro, "SWEEP_LATENTS", (8,))
    monkeypatch.setattr(repro, "SWEEP_ANGLES", (0, 90))
    monkeypatch.setattr(repro, "TABLE1_ANGLES", (0, 20))
    monkeypatch.setattr(repro, "POSE_RECIPE", {**repro.POSE_RECIPE, "digits": 16, "epochs": 1, "width": 4})
    monkeypatch.setattr(repro, "IWAE_K", 5)
    rc = repro.ReproConfig(epochs=1, train_limit=32, eval_n=2, affine_n=2, iwae_n=2, codes_n=5)
    manifest = repro.reproduce(rc, out=tmp_path, device="cpu", runs=tmp_path / "runs")
    assert set(manifest["models"]) == {*repro.MAIN_MODELS, repro.CONTROL, repro.AMORTIZED, repro.PEER}
    peer = avae.training.checkpoint.model_from_checkpoint(avae.training.checkpoint.load_checkpoint(tmp_path / f"{repro.PEER}.pt"))
    assert isinstance(peer, avae.training.peer.AmortizedVAE) and "pose_net" not in manifest["models"][repro.PEER]
    assert manifest["models"][repro.CONTROL]["config"]["warm_start"] is False
    assert manifest["models"][repro.AMORTIZED]["config"]["pose_online"] is True
    assert manifest["models"]["avae-transopt"]["config"]["pose_online"] is False
    for name, entry in manifest["models"].items():
        path = tmp_path / entry["file"]
        assert sha256_file(path) == entry["sha256"] and entry["epochs"] == 1
        vae = avae.training.checkpoint.model_from_checkpoint(avae.training.checkpoint.load_checkpoint(path))
        assert vae.latent_dim == 8 and entry["config"]["train_limit"] == 32
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    for name in repro.POSE_MODELS:  # a pose net, recorded with the call that fitted it
        pose = avae.training.checkpoint.model_from_checkpoint(avae.training.checkpoint.load_checkpoint(tmp_path / f"{name}.pt")).pose_net
        assert pose is not None and pose.half_turn and pose.config["width"] == 4
        assert manifest["models"][name]["pose_net"]["command"].startswith("fit_pose_net(vae, load_mnist('train', limit=16)")
    assert "pose_net" not in manifest["models"][repro.CONTROL]
    table = (tmp_path / "table1.csv").read_text().splitlines()
    assert table[0] == "model,aligned,mean_loss_0_160" and len(table) == 1 + 2 * (len(repro.MAIN_MODELS) + 1)  # + control
    iwae = avae.training.pretrained.read_rows(tmp_path / "iwae.csv")
    assert [(r["model"], r["aligned"]) for r in iwae] == [(m, a) for m in repro.MAIN_MODELS for a in (False, True)]
    assert all(r["n"] == 4 and r["k"] == 5 and r["iwae"] <= r["elbo"] + 1e-3 for r in iwae)
    import numpy as np

    with np.load(tmp_path / "codes.npz") as codes:
        assert codes["vae-upright/uniform/mu"].shape == (5, 8) and codes["labels"].shape == (5,)
        assert codes["turn/normal"].shape == (5,) and float(codes["avae-transopt/none/passes"]) >= 1
    sweep = (tmp_path / "sweep.csv").read_text().splitlines()
    assert len(sweep) == 1 + 2  # vae-upright and vae-rotated at latent 8
    affine = json.loads((tmp_path / "affine.json").read_text())
    assert affine["vae-upright"]["avae_loss"] <= affine["vae-upright"]["vae_loss"] + 1e-3
    assert torch.isfinite(torch.tensor(manifest["results"]["eval_seconds"]))

    # one model retrained and evaluated again: its rows change, every other row is kept
    before = (tmp_path / "rotation.csv").read_text().splitlines()
    vae = avae.training.checkpoint.model_from_checkpoint(avae.training.checkpoint.load_checkpoint(tmp_path / "avae-transopt.pt"))
    with torch.no_grad():
        for p in vae.decoder.parameters():
            p.mul_(0.5)
    save_checkpoint(checkpoint_dict(vae), tmp_path / "avae-transopt.pt")
    again = repro.reproduce(rc, out=tmp_path, device="cpu", only=["avae-transopt"], evaluate_only=True)
    after = (tmp_path / "rotation.csv").read_text().splitlines()
    assert len(after) == len(before) and after[0] == before[0]
    changed = {line.split(",")[0] for line, old in zip(after, before) if line != old}
    assert changed == {"avae-transopt"}
    assert again["results"]["reevaluated"][-1]["models"] == ["avae-transopt"]
    assert (tmp_path / "table1.csv").read_text().splitlines()[:5] == table[:5]  # the models before it
    with pytest.raises(ValueError, match="models"):
        repro.reproduce(rc, out=tmp_path, device="cpu", only=["vae-upright-l2"], evaluate_only=True)

    # a pose net refitted alone: the model's own weights and the results are kept, its hash follows
    old = avae.training.checkpoint.load_checkpoint(tmp_path / "vae-rotated.pt")
    monkeypatch.setattr(repro, "POSE_RECIPE", {**repro.POSE_RECIPE, "width": 6})
    refit = repro.reproduce(rc, out=tmp_path, device="cpu", only=["vae-rotated"], pose_only=True)
    new = avae.training.checkpoint.load_checkpoint(tmp_path / "vae-rotated.pt")
    assert new["pose_config"]["width"] == 6 and refit["models"]["vae-rotated"]["pose_net"]["width"] == 6
    assert all(torch.equal(v, new["model"][k]) for k, v in old["model"].items() if not k.startswith("pose_net."))
    assert new["model_config"] == old["model_config"] and new["history"] == old["history"] and refit["models"]["vae-rotated"]["sha256"] == sha256_file(
        tmp_path / "vae-rotated.pt")
    assert (tmp_path / "rotation.csv").read_text().splitlines() == after
    with pytest.raises(ValueError, match="carries no pose net"):
        repro.reproduce(rc, out=tmp_path, device="cpu", only=[repro.CONTROL], pose_only=True)


def test_sweep_losses_scores_the_undone_turn_against_the_same_turned_digits(template_vae, seven):
    """An upright model given the exact turn back is scored on the digits the rotated models see."""
    x = seven.expand(4, -1, -1, -1).contiguous()
    rows = repro.sweep_losses(lambda name: template_vae if name == "vae-upright" else None, x, seed=1)
    assert [r["model"] for r in rows] == ["vae-upright"] and repro.sweep_name("rotated", 16) == "vae-rotated-l16"
    r = rows[0]
    assert r["loss_rotated_undone"] < r["loss_rotated_test"]  # turned back, the stub knows the digit
    assert r["loss_rotated_undone"] >= r["loss_upright_test"] - 1.0  # resampling only blurs
