"""The reproduction: every shipped model's recipe, a tiny end-to-end run on synthetic digits (shared by
the tests of a partial run, of the install step and of atomic writes), and where it writes."""
from __future__ import annotations

import json
import math
import os
from dataclasses import replace
import shutil
import sys
from pathlib import Path

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.training import pretrained
from avae_tutorial.training import reproduce as repro
from avae_tutorial.training.checkpoint import checkpoint_dict, save_checkpoint, sha256_file
from avae_tutorial.tools.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")


def test_the_sweep_shares_the_main_models_data_and_epochs():
    """A fair latent-size sweep: every size trains on the same digits for as many epochs."""
    recipes = repro.recipes(repro.ReproConfig())
    main = recipes["vae-upright"]
    for name, cfg in recipes.items():
        assert (cfg.epochs, cfg.train_limit, cfg.seed) == (main.epochs, main.train_limit, main.seed), name
    assert {cfg.latent_dim for cfg in recipes.values()} == set(repro.SWEEP_LATENTS)
    assert recipes["avae-transopt"].regime == "aligned" and recipes["vae-rotated-l16"].regime == "rotated"


def _tiny(mp) -> repro.ReproConfig:
    """Shrink the reproduction to synthetic digits on the smallest canvas, one latent size and two
    angles (with ``mp``, a MonkeyPatch); returns the tiny sizes."""
    x, y = avae.data.mnist.synthetic_digits(48, canvas=28, seed=0)
    mp.setattr(repro, "load_mnist", lambda split, **kw: (x, y))
    recipes = repro.recipes  # the shipped recipes, on the 28x28 canvas
    mp.setattr(repro, "recipes", lambda rc: {name: replace(cfg, canvas=28) for name, cfg in recipes(rc).items()})
    mp.setattr(repro, "SWEEP_LATENTS", (8,))
    mp.setattr(repro, "SWEEP_ANGLES", (90,))  # with TABLE1_ANGLES: two angles, upright and turned
    mp.setattr(repro, "TABLE1_ANGLES", (0,))
    mp.setattr(repro, "POSE_RECIPE", {**repro.POSE_RECIPE, "digits": 16, "epochs": 1, "width": 4})
    mp.setattr(repro, "IWAE_K", 5)
    return repro.ReproConfig(epochs=1, train_limit=32, eval_n=2, affine_n=2, iwae_n=2, codes_n=5)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny reproduction, shared by this module's tests: ``(folder, manifest, shipped before)``.
    The tests that change the folder work on a copy."""
    out = tmp_path_factory.mktemp("models")
    shipped = {p.name: p.stat().st_mtime_ns for p in pretrained.pretrained_dir().iterdir()}
    with pytest.MonkeyPatch.context() as mp:
        rc = _tiny(mp)
        manifest = repro.reproduce(rc, out=out, device="cpu", runs=out / "runs", command="reproduce (test)")
    return out, manifest, shipped


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A copy of the tiny run's folder, free to change."""
    return Path(shutil.copytree(tiny_run[0], tmp_path / "models", ignore=shutil.ignore_patterns("runs")))


def test_a_tiny_reproduction_writes_models_manifest_and_results(tiny_run):
    out, manifest, _ = tiny_run
    assert set(manifest["models"]) == {*repro.MAIN_MODELS, repro.CONTROL, repro.WARM, repro.PEER}
    ckpt = avae.training.checkpoint
    peer = ckpt.model_from_checkpoint(ckpt.load_checkpoint(out / f"{repro.PEER}.pt"))
    assert isinstance(peer, avae.training.peer.AmortizedVAE) and "pose_net" not in manifest["models"][repro.PEER]
    assert manifest["models"][repro.CONTROL]["config"]["warm_start"] is False
    assert manifest["models"][repro.CONTROL]["config"]["pose_online"] is False
    assert manifest["models"][repro.WARM]["config"]["pose_online"] is False
    assert manifest["models"][repro.WARM]["config"]["align_warm"]["restarts"] == 8  # a grid beside the last pose
    assert manifest["models"]["avae-transopt"]["config"]["pose_online"] is True  # the chosen search: online
    for name, entry in manifest["models"].items():
        path = out / entry["file"]
        assert sha256_file(path) == entry["sha256"] and entry["epochs"] == 1
        assert entry["command"] == "reproduce (test)"  # as given: reproduce reads no sys.argv
        vae = avae.training.checkpoint.model_from_checkpoint(avae.training.checkpoint.load_checkpoint(path))
        assert vae.latent_dim == 8 and vae.canvas == 28 and entry["config"]["train_limit"] == 32
    assert json.loads((out / "manifest.json").read_text()) == manifest
    for name in repro.POSE_MODELS:  # a pose net, recorded with the call that fitted it
        pose = avae.training.checkpoint.model_from_checkpoint(avae.training.checkpoint.load_checkpoint(out / f"{name}.pt")).pose_net
        assert pose is not None and pose.bins == repro.POSE_RECIPE["bins"] and pose.config["width"] == 4
        assert manifest["models"][name]["pose_net"]["command"].startswith("fit_pose_net(vae, load_mnist('train', limit=16)")
    assert "pose_net" not in manifest["models"][repro.CONTROL]
    table = (out / "table1.csv").read_text().splitlines()
    assert table[0] == "model,aligned,mean_loss_0_160" and len(table) == 1 + 2 * (len(repro.MAIN_MODELS) + 1)  # + control
    iwae = avae.training.pretrained.read_rows(out / "iwae.csv")
    assert [(r["model"], r["aligned"]) for r in iwae] == [(m, a) for m in repro.MAIN_MODELS for a in (False, True)]
    assert all(r["n"] == 2 and r["k"] == 5 and r["iwae"] <= r["elbo"] + 1e-3 for r in iwae)  # 2 digits x 1 angle
    import numpy as np

    with np.load(out / "codes.npz") as codes:
        assert codes["vae-upright/uniform/mu"].shape == (5, 8) and codes["labels"].shape == (5,)
        assert codes["turn/normal"].shape == (5,) and float(codes["avae-transopt/none/passes"]) >= 1
    sweep = (out / "sweep.csv").read_text().splitlines()
    assert len(sweep) == 1 + 2  # vae-upright and vae-rotated at latent 8
    affine = json.loads((out / "affine.json").read_text())
    assert affine["vae-upright"]["avae_loss"] <= affine["vae-upright"]["vae_loss"] + 1e-3
    assert torch.isfinite(torch.tensor(manifest["results"]["eval_seconds"]))
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # every write was renamed into place


def test_the_run_leaves_the_package_alone(tiny_run):
    """Nothing of the package's pretrained/ folder was written, added or removed by the run."""
    shipped = {p.name: p.stat().st_mtime_ns for p in pretrained.pretrained_dir().iterdir()}
    assert shipped == tiny_run[2]


def test_one_model_evaluated_again_in_a_new_folder_keeps_every_other_row(tiny_run, tmp_path, monkeypatch):
    """--evaluate-only --only M into a folder without a manifest: it starts from a copy of the
    shipped models (here the tiny run's), changes M's rows and keeps every other row."""
    seed, manifest, _ = tiny_run
    rc = _tiny(monkeypatch)
    monkeypatch.setattr(repro, "pretrained_dir", lambda: seed)  # the tiny run stands in for the shipped models
    out = tmp_path / "fresh"
    vae = avae.training.checkpoint.model_from_checkpoint(avae.training.checkpoint.load_checkpoint(seed / "avae-transopt.pt"))
    with torch.no_grad():
        for p in vae.decoder.parameters():
            p.mul_(0.5)
    before = (seed / "rotation.csv").read_text().splitlines()
    real_install = repro.install_models

    def install_then_change(src, dest):  # the copied model, changed before it is evaluated again
        files = real_install(src, dest)
        save_checkpoint(checkpoint_dict(vae), dest / "avae-transopt.pt")
        return files

    monkeypatch.setattr(repro, "install_models", install_then_change)
    again = repro.reproduce(rc, out=out, device="cpu", only=["avae-transopt"], evaluate_only=True, command="again")
    assert set(again["models"]) == set(manifest["models"])
    after = (out / "rotation.csv").read_text().splitlines()
    assert len(after) == len(before) and after[0] == before[0]
    changed = {line.split(",")[0] for line, old in zip(after, before) if line != old}
    assert changed == {"avae-transopt"}
    assert again["results"]["reevaluated"][-1]["models"] == ["avae-transopt"]
    assert again["results"]["reevaluated"][-1]["command"] == "again"
    table = (seed / "table1.csv").read_text().splitlines()
    assert (out / "table1.csv").read_text().splitlines()[:5] == table[:5]  # the models before it
    with pytest.raises(ValueError, match="models"):
        repro.reproduce(rc, out=out, device="cpu", only=["vae-upright-l2"], evaluate_only=True)


def test_a_pose_net_refitted_alone_keeps_the_weights_and_the_results(run_copy, monkeypatch):
    """The model's own weights and the results are kept, its hash follows."""
    out = run_copy
    rc = _tiny(monkeypatch)
    rows = (out / "rotation.csv").read_text().splitlines()
    old = avae.training.checkpoint.load_checkpoint(out / "vae-rotated.pt")
    monkeypatch.setattr(repro, "POSE_RECIPE", {**repro.POSE_RECIPE, "width": 6})
    refit = repro.reproduce(rc, out=out, device="cpu", only=["vae-rotated"], pose_only=True)
    new = avae.training.checkpoint.load_checkpoint(out / "vae-rotated.pt")
    assert new["pose_config"]["width"] == 6 and refit["models"]["vae-rotated"]["pose_net"]["width"] == 6
    assert all(torch.equal(v, new["model"][k]) for k, v in old["model"].items() if not k.startswith("pose_net."))
    assert new["model_config"] == old["model_config"] and new["history"] == old["history"]
    assert refit["models"]["vae-rotated"]["sha256"] == sha256_file(out / "vae-rotated.pt")
    assert json.loads((out / "manifest.json").read_text()) == refit
    assert (out / "rotation.csv").read_text().splitlines() == rows
    with pytest.raises(ValueError, match="carries no pose net"):
        repro.reproduce(rc, out=out, device="cpu", only=[repro.CONTROL], pose_only=True)


def test_the_default_folder_is_a_cache_folder_that_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert repro.models_dir() == tmp_path / "xdg" / "avae-tutorial" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert repro.models_dir() == tmp_path / "home" / ".cache" / "avae-tutorial" / "models"


def test_a_manifest_write_that_fails_half_way_keeps_the_old_manifest(run_copy, monkeypatch):
    """Atomic writes: the new manifest goes to a temporary file that is renamed over the old one."""
    old = (run_copy / "manifest.json").read_bytes()

    def crash(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        repro._write_manifest(run_copy / "manifest.json", {"models": {}})
    assert (run_copy / "manifest.json").read_bytes() == old
    assert not [p.name for p in run_copy.iterdir() if p.name.endswith(".tmp")]


def test_install_copies_the_checked_models_into_the_package(run_copy, tmp_path, monkeypatch, capsys):
    """install-models: the run's models, results and manifest, then load_pretrained reads them."""
    package = tmp_path / "pretrained"
    package.mkdir()
    (package / "keep.txt").write_text("not the run's")
    monkeypatch.setattr(pretrained, "pretrained_dir", lambda: package)
    assert main(["install-models", "--from", str(run_copy)]) == 0
    printed = json.loads(capsys.readouterr().out)
    files = printed["files"]
    assert printed["from"] == str(run_copy) and printed["to"] == str(package)
    assert files[-1] == "manifest.json" and {"rotation.csv", "table1.csv", "sweep.csv", "affine.json"} <= set(files)
    for name in files:
        assert (package / name).read_bytes() == (run_copy / name).read_bytes(), name
    assert (package / "keep.txt").exists()
    vae = avae.load_pretrained("avae-transopt")  # hash-checked against the installed manifest
    ref = avae.training.checkpoint.model_from_checkpoint(avae.training.checkpoint.load_checkpoint(run_copy / "avae-transopt.pt"))
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in vae.state_dict().items())


def test_install_checks_every_model_before_copying_any(run_copy, tmp_path):
    dest = tmp_path / "pretrained"
    path = run_copy / "vae-upright.pt"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ValueError, match=r"model 'vae-upright': .* has sha256 [0-9a-f]{64}, the manifest says .*nothing was installed"):
        repro.install_models(run_copy, dest)
    assert not dest.exists() or not list(dest.iterdir())
    with pytest.raises(ValueError, match="same folder"):
        repro.install_models(run_copy, run_copy)
    (run_copy / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="no manifest.json in .*reproduce"):
        repro.install_models(run_copy, dest)


def test_the_command_line_records_its_own_command(monkeypatch, tmp_path, capsys):
    """reproduce's command is what main was given (main reads sys.argv only when given nothing)."""
    seen = {}
    monkeypatch.setattr(repro, "reproduce", lambda rc, **kw: seen.update(kw) or {"models": {}})
    assert main(["reproduce", "--only", "vae-upright", "--out", str(tmp_path)]) == 0
    assert seen["command"] == f"python -m avae_tutorial reproduce --only vae-upright --out {tmp_path}"
    assert seen["out"] == tmp_path
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(sys, "argv", ["avae-tutorial", "reproduce", "--epochs", "2"])
    assert main() == 0
    assert seen["command"] == "python -m avae_tutorial reproduce --epochs 2"
    assert seen["out"] == tmp_path / "xdg" / "avae-tutorial" / "models"
    assert "install-models" in capsys.readouterr().err


def test_no_module_reads_sys_argv_but_the_command_line():
    import ast

    root = Path(avae.__file__).parent
    readers = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "argv" and getattr(node.value, "id", None) == "sys":
                readers.add(path.relative_to(root).as_posix())
    assert readers <= {"tools/cli.py"}, readers


def test_sweep_losses_scores_the_undone_turn_against_the_same_turned_digits(template_vae, seven):
    """An upright model given the exact turn back is scored on the digits the rotated models see."""
    x = seven.expand(4, -1, -1, -1).contiguous()
    rows = repro.sweep_losses(lambda name: template_vae if name == "vae-upright" else None, x, seed=1)
    assert [r["model"] for r in rows] == ["vae-upright"] and repro.sweep_name("rotated", 16) == "vae-rotated-l16"
    r = rows[0]
    assert r["loss_rotated_undone"] < r["loss_rotated_test"]  # turned back, the stub knows the digit
    assert r["loss_rotated_undone"] >= r["loss_upright_test"] - 1.0  # resampling only blurs


def test_sweep_losses_give_standard_errors_over_digits(template_vae, seven):
    """Each mean has its standard error over the digits; the capacity cost's is paired per digit."""
    x = torch.cat([seven, seven.flip(-1), seven.flip(-2), seven.transpose(-1, -2)])
    rows = repro.sweep_losses(lambda name: template_vae if name in ("vae-upright", "vae-rotated") else None,
                              x, seed=1)  # fmt: skip
    up, rot = rows
    assert up["loss_upright_test_se"] > 0 and up["blur_se"] > 0 and math.isnan(up["capacity_upright_se"])
    losses = repro.mean_loss(template_vae, x).double()
    assert up["loss_upright_test_se"] == pytest.approx(float(losses.std() / 2))
    # the same model on both sides: the paired capacity cost is zero on every digit
    assert rot["capacity_upright_se"] == pytest.approx(0.0) and rot["capacity_turned_se"] >= 0


def test_iwae_table_gives_standard_errors_over_digits(template_vae, seven):
    """Each digit's mean over the angles is one sample: two copies of one digit have the same
    surrogate loss at every angle (error 0), four different digits do not."""
    same = repro.iwae_table(lambda name: template_vae, seven.expand(2, -1, -1, -1).contiguous(), k=4,
                            angles=(0, 90), models=("m",))  # fmt: skip
    assert [(r["model"], r["aligned"], r["n"]) for r in same] == [("m", False, 4), ("m", True, 4)]
    assert all(r["surrogate_se"] == pytest.approx(0.0, abs=1e-6) for r in same)
    x = torch.cat([seven, seven.flip(-1), seven.flip(-2), seven.transpose(-1, -2)])
    rows = repro.iwae_table(lambda name: template_vae, x, k=4, angles=(0, 90), models=("m",))
    plain = rows[0]
    per_digit = (repro.mean_loss(template_vae, x).double() + repro.mean_loss(template_vae, repro.rotate(x, math.pi / 2)).double()) / 2
    assert plain["surrogate"] == pytest.approx(float(per_digit.mean()), rel=1e-3)
    assert plain["surrogate_se"] == pytest.approx(float(per_digit.std() / 2), rel=1e-3)
    assert all(r[f"{c}_se"] > 0 for r in rows for c in ("surrogate", "elbo", "iwae"))


def test_codes_of_one_model_again_keep_the_others(run_copy, monkeypatch):
    """--codes-only --only avae-transopt recomputes that model's arrays, keeps the rest as they are."""
    import numpy as np

    out = run_copy
    rc = _tiny(monkeypatch)
    with np.load(out / "codes.npz") as z:
        before = {k: z[k] for k in z.files}
    planted = {**before, "vae-upright/none/mu": np.zeros_like(before["vae-upright/none/mu"]),
               "avae-transopt/none/mu": np.zeros_like(before["avae-transopt/none/mu"])}  # fmt: skip
    np.savez(out / "codes.npz", **planted)
    manifest = repro.reproduce(rc, out=out, device="cpu", only=["avae-transopt"], codes_only=True)
    with np.load(out / "codes.npz") as z:
        after = {k: z[k] for k in z.files}
    assert set(after) == set(before) and manifest["results"]["codes"]["models"] == ["avae-transopt"]
    assert not after["vae-upright/none/mu"].any()  # kept as it was in the folder
    np.testing.assert_allclose(after["avae-transopt/none/mu"], before["avae-transopt/none/mu"], atol=1e-5)
    with pytest.raises(ValueError, match="codes.npz holds"):
        repro.reproduce(rc, out=out, device="cpu", only=["vae-rotated"], codes_only=True)
