"""The command line: every --help, a tiny train -> evaluate -> align run, and clean exits on bad input."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.data import mnist as data
from avae_tutorial.training.checkpoint import checkpoint_dict
from avae_tutorial.tools.cli import build_parser, main

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def synthetic_mnist(monkeypatch):
    """``load_mnist`` replaced by synthetic digits: no download, no cache."""

    def fake(split="test", canvas=40, limit=None, root=None):
        x, y = avae.data.mnist.synthetic_digits(33 if split == "train" else 16, canvas=canvas, seed=int(split == "test"))
        return (x[:limit], y[:limit]) if limit else (x, y)

    monkeypatch.setattr(data, "load_mnist", fake)


def run(args, capsys) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as e:  # argparse exits on --help and on bad arguments
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def subcommands() -> list[str]:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return list(sub.choices)


def test_the_documented_subcommands_exist():
    assert {"train", "evaluate", "align", "reproduce"} <= set(subcommands())


@pytest.mark.parametrize("command", [[]] + [[c] for c in subcommands()])
def test_help_exits_zero(command, capsys):
    code, out, _ = run([*command, "--help"], capsys)
    assert code == 0 and "usage:" in out


def test_train_evaluate_align_end_to_end(synthetic_mnist, tmp_path, capsys):
    ckpt = tmp_path / "m.pt"
    code, out, err = run(["train", "--regime", "rotated", "--latent", "2", "--epochs", "1", "--batch-size", "16",
                          "--test-limit", "8", "--out", str(ckpt), "--device", "cpu"], capsys)  # fmt: skip
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["checkpoint"] == str(ckpt) and summary["test_loss"] > 0 and ckpt.exists()
    assert avae.training.checkpoint.load_checkpoint(ckpt)["config"]["regime"] == "rotated"

    csv = tmp_path / "eval.csv"
    code, out, err = run(["evaluate", str(ckpt), "--n", "4", "--angles", "0,90", "--preset", "fast",
                          "--out", str(csv), "--device", "cpu"], capsys)  # fmt: skip
    assert code == 0, err
    lines = csv.read_text().splitlines()
    assert lines[0] == "angle_deg,loss,loss_std,n,aligned" and len(lines) == 5  # 2 angles x {plain, aligned}

    summary_path = tmp_path / "align.json"
    code, out, err = run(["align", str(ckpt), "--n", "4", "--preset", "fast", "--perturb", "affine",
                          "--family", "affine", "--out", str(summary_path), "--device", "cpu"], capsys)  # fmt: skip
    assert code == 0, err
    summary = json.loads(summary_path.read_text())
    assert summary["n"] == 4 and summary["loss_aligned"] <= summary["loss_identity"]


def test_bad_settings_exit_2_with_a_message(synthetic_mnist, tmp_path, capsys):
    code, _, err = run(["train", "--epochs", "0", "--out", str(tmp_path / "m.pt")], capsys)
    assert code == 2 and "argument --epochs: expected a positive integer, got '0'" in err
    code, _, err = run(["evaluate", "vae-sideways"], capsys)
    assert code == 2 and "error: unknown pretrained model 'vae-sideways'; valid names:" in err


# ---------------------------------------------------------------- a reader's own images
@pytest.fixture
def image_folder(tmp_path):
    """26 turned synthetic digits as dark-on-white PNG files, as a scanner would give them."""
    from avae_tutorial.data.images import save_images

    x, _ = avae.data.mnist.synthetic_digits(26, canvas=28, seed=5)
    x = avae.data.mnist.random_rotations(x, seed=5)[0]
    folder = tmp_path / "scans"
    save_images(1 - x, [folder / f"scan{i:02d}.png" for i in range(len(x))])
    return folder


def _csv_rows(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_and_align_a_folder_end_to_end_interrupted_and_continued(image_folder, tmp_path, capsys, monkeypatch):
    ckpt, poses, aligned = tmp_path / "m.pt", tmp_path / "poses.csv", tmp_path / "aligned"
    code, out, err = run(["train", "--images", str(image_folder), "--invert", "--canvas", "28", "--regime", "aligned",
                          "--latent", "2", "--epochs", "1", "--batch-size", "8", "--out", str(ckpt),
                          "--device", "cpu"], capsys)  # fmt: skip
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["train_images"] == 23 and summary["test_images"] == 3 and summary["test_loss"] > 0
    assert avae.training.checkpoint.load_checkpoint(ckpt)["config"]["canvas"] == 28

    args = ["align", str(ckpt), "--images", str(image_folder), "--invert", "--out", str(poses), "--preset", "fast",
            "--batch-size", "4", "--aligned", str(aligned), "--device", "cpu"]  # fmt: skip
    code, out, err = run([*args, "--limit", "6"], capsys)  # a run stopped after 6 images ...
    assert code == 0, err
    assert json.loads(out)["left"] == 20
    from avae_tutorial.training import poses as poses_module

    calls = {"n": 0}
    real = poses_module.pose_rows

    def interrupted(*a, **kw):  # ... and one interrupted (Ctrl-C) in its third chunk
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(poses_module, "pose_rows", interrupted)
    code, _, err = run(args, capsys)
    assert code == 130 and "interrupted: 14 rows are in" in err
    monkeypatch.undo()
    with open(poses, "a") as f:
        f.write("scan14.png,12.5,40")  # a row cut off mid-write
    code, out, err = run(args, capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["rows"] == 26 and summary["already_done"] == 14 and summary["left"] == 0
    rows = _csv_rows(poses)
    assert [r["file"] for r in rows] == [f"scan{i:02d}.png" for i in range(26)]  # once each, in input order
    assert list(rows[0]) == ["file", "angle_deg", "loss_before", "loss_after"]
    assert all(float(r["loss_after"]) <= float(r["loss_before"]) + 1e-3 for r in rows)
    assert sorted(p.name for p in aligned.iterdir()) == [f"scan{i:02d}.png" for i in range(26)]


def test_a_folder_with_a_bad_file_stops_with_its_name_or_is_skipped(image_folder, tmp_path, capsys):
    (image_folder / "scan03.png").write_bytes((image_folder / "scan03.png").read_bytes()[:40])  # truncated
    ckpt = tmp_path / "m.pt"
    avae.training.checkpoint.save_checkpoint(checkpoint_dict(avae.VAE(2, 28)), ckpt)
    args = ["align", str(ckpt), "--images", str(image_folder), "--out", str(tmp_path / "p.csv"), "--preset", "fast",
            "--device", "cpu"]  # fmt: skip
    code, out, err = run(args, capsys)
    assert code == 2 and "error: scan03.png: is not an image, or is corrupt or truncated" in err
    assert "Traceback" not in err
    code, out, err = run([*args, "--skip-bad"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["rows"] == 25 and summary["skipped_bad"] == 1 and summary["bad"][0].startswith("scan03.png: ")
    code, _, err = run(["train", "--images", str(image_folder), "--canvas", "28", "--epochs", "1", "--out",
                        str(tmp_path / "t.pt"), "--device", "cpu"], capsys)  # fmt: skip
    assert code == 2 and "error: scan03.png: is not an image, or is corrupt or truncated" in err


@pytest.mark.parametrize("args, message", [
    (["train", "--canvas", "30"], "error: --canvas: expected a multiple of 4 from 28 to 128, got 30"),
    (["train", "--canvas", "132"], "error: --canvas: expected a multiple of 4 from 28 to 128, got 132"),
    (["train", "--channels", "2"], "error: --channels: expected 1 (grey) or 3 (RGB), got 2"),
    (["align", "vae-upright", "--channels", "3"], "error: --channels 3: model vae-upright takes 1-channel images"),
    (["align", "vae-upright", "--images", "EMPTY"], "holds no image files"),
    (["align", "vae-upright", "--out", "p.json"], "error: --out: with --images, expected the pose table's .csv"),
])  # fmt: skip
def test_bad_image_arguments_exit_2_with_a_message(args, message, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    images = ["--images", str(tmp_path / "empty")] if "--images" not in args else []
    args = [str(tmp_path / "empty") if a == "EMPTY" else a for a in args] + images
    if args[0] == "align" and "--out" not in args:
        args += ["--out", str(tmp_path / "p.csv")]
    code, _, err = run([*args, "--device", "cpu"] + (["--out", str(tmp_path / "m.pt")] if args[0] == "train" else []),
                       capsys)  # fmt: skip
    assert code == 2 and message in err and "Traceback" not in err, err


def test_a_family_registered_in_process_works_from_the_command_line(synthetic_mnist, tmp_path, capsys):
    """``--family`` and ``--perturb`` read the registry when the parser is built: a family
    registered in this process perturbs the digits (its ``sample``) and is searched."""
    from avae_tutorial.families import unregister_family

    def shift(p):  # (B, 2) -> (B, 2, 3)
        return torch.cat([torch.eye(2).expand(p.shape[0], 2, 2), p[:, :, None]], 2)

    avae.register_family(avae.Family("shift_cli", 2, shift, bounds=[(-0.2, 0.2)] * 2))
    try:
        path = tmp_path / "align.json"
        code, _, err = run(["align", "vae-upright", "--n", "4", "--preset", "fast", "--family", "shift_cli",
                            "--perturb", "shift_cli", "--out", str(path), "--device", "cpu"], capsys)  # fmt: skip
    finally:
        unregister_family("shift_cli")
    assert code == 0, err
    summary = json.loads(path.read_text())
    assert summary["perturb"] == summary["family"] == "shift_cli" and summary["loss_aligned"] <= summary["loss_identity"]
    code, _, err = run(["align", "vae-upright", "--perturb", "shift_cli"], capsys)
    assert code == 2 and "--perturb" in err


@pytest.mark.parametrize("search", ["online", "warm", "cold", "lite", None])
def test_train_search_sets_the_training_search(monkeypatch, tmp_path, search):
    """--search picks one of the training searches (TrainConfig fields from TRAINING_SEARCHES;
    without it the default, online); it belongs to the aligned regime only."""
    from dataclasses import asdict

    from avae_tutorial.training import train as train_mod

    seen = []
    monkeypatch.setattr(train_mod, "fit", lambda cfg, *a, **k: (seen.append(cfg), (None, {"test_loss": [1.0],
                        "train_loss": [1.0], "seconds": [0.0]}))[1])  # fmt: skip
    x, y = avae.data.mnist.synthetic_digits(8, canvas=28, seed=0)
    monkeypatch.setattr(data, "load_mnist", lambda split, canvas=40, **k: (x, y))
    args = ["train", "--regime", "aligned", *(["--search", search] if search else []), "--canvas", "28", "--epochs", "1",
            "--out", str(tmp_path / "m.pt")]  # fmt: skip
    assert main(args) == 0
    fields = train_mod.TRAINING_SEARCHES[search or "online"]
    assert {k: getattr(seen[0], k) for k in fields} == fields
    assert seen[0].pose_online == (search in ("online", None))
    assert seen[0].warm_start == (search != "cold")
    if search in ("online", None):
        assert seen[0].align_warm == asdict(train_mod.ONLINE_SEARCH)
    if search:
        assert main(["train", "--regime", "rotated", "--search", search, "--out", str(tmp_path / "r.pt")]) == 2
