"""Embeddings of a reader's images (training/embed.py and ``python -m avae_tutorial embed``): the code at
the pose found, resumable runs, bad files named or skipped, the peer's own pose."""
from __future__ import annotations

import csv
import json

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.training.checkpoint import checkpoint_dict, save_checkpoint
from avae_tutorial.training.embed import embed_columns, iter_embed
from avae_tutorial.training.peer import AmortizedVAE, peer_encode, peer_loss
from avae_tutorial.tools.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def folder(tmp_path):
    """12 turned synthetic digits as dark-on-white PNG files."""
    from avae_tutorial.data.images import save_images

    x, _ = avae.data.mnist.synthetic_digits(12, canvas=28, seed=5)
    x = avae.data.mnist.random_rotations(x, seed=5)[0]
    save_images(1 - x, [tmp_path / "scans" / f"scan{i:02d}.png" for i in range(len(x))])
    return tmp_path / "scans"


@pytest.fixture
def ckpt(tmp_path, tiny_vae):
    return save_checkpoint(checkpoint_dict(tiny_vae), tmp_path / "m.pt")


def run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_code_is_the_encoders_at_the_pose_found(tiny_vae, digits):
    x = digits[0][:6]
    (chunk,) = list(iter_embed(tiny_vae, x, "fast", batch_size=6))
    res = avae.align(tiny_vae, x, "rotation", "fast")
    torch.testing.assert_close(chunk.angle, res.angle)
    torch.testing.assert_close(chunk.loss, res.loss)
    with torch.no_grad():
        torch.testing.assert_close(chunk.mu, tiny_vae.encode(avae.warp(x, res.A))[0], atol=1e-4, rtol=1e-4)
    (plain,) = list(iter_embed(tiny_vae, x, search=False, batch_size=6))
    assert float(plain.angle.abs().max()) == 0.0
    torch.testing.assert_close(plain.loss, avae.avae_loss(tiny_vae, x).detach(), atol=1e-3, rtol=1e-5)
    assert embed_columns(2) == ["file", "angle_deg", "loss", "z0", "z1"]


def test_the_peer_embeds_with_its_own_pose(digits):
    torch.manual_seed(0)
    peer = AmortizedVAE(2, 28).eval()
    x = digits[0][:5]
    (chunk,) = list(iter_embed(peer, x, batch_size=8))
    mu, angle = peer_encode(peer, x)
    torch.testing.assert_close(chunk.mu, mu)
    torch.testing.assert_close(chunk.angle, angle)
    torch.testing.assert_close(chunk.loss, peer_loss(peer, x))


def test_embed_a_folder_interrupted_and_continued(folder, ckpt, tmp_path, capsys):
    out = tmp_path / "latents.csv"
    args = ["embed", str(ckpt), "--images", str(folder), "--invert", "--out", str(out), "--preset", "fast",
            "--batch-size", "4", "--device", "cpu"]  # fmt: skip
    code, text, err = run([*args, "--limit", "5"], capsys)  # stopped after 5 images ...
    assert code == 0, err
    assert json.loads(text)["left"] == 7
    with open(out, "a") as f:
        f.write("scan05.png,12.5,4")  # ... with a row cut off mid-write
    code, text, err = run(args, capsys)
    assert code == 0, err
    summary = json.loads(text)
    assert summary["rows"] == 12 and summary["already_done"] == 5 and summary["left"] == 0
    got = rows(out)
    assert [r["file"] for r in got] == [f"scan{i:02d}.png" for i in range(12)]  # once each, in input order
    assert list(got[0]) == ["file", "angle_deg", "loss", "z0", "z1"]
    assert all(float(r["loss"]) > 0 and -180 <= float(r["angle_deg"]) <= 180 for r in got)
    code, text, err = run([*args, "--restart", "--no-search"], capsys)
    assert code == 0 and {float(r["angle_deg"]) for r in rows(out)} == {0.0}


def test_a_bad_file_stops_with_its_name_or_is_skipped(folder, ckpt, tmp_path, capsys):
    (folder / "scan03.png").write_bytes((folder / "scan03.png").read_bytes()[:40])  # truncated
    args = ["embed", str(ckpt), "--images", str(folder), "--out", str(tmp_path / "z.csv"), "--preset", "fast",
            "--device", "cpu"]  # fmt: skip
    code, _, err = run(args, capsys)
    assert code == 2 and "error: scan03.png: is not an image, or is corrupt or truncated" in err
    code, text, err = run([*args, "--skip-bad"], capsys)
    assert code == 0, err
    summary = json.loads(text)
    assert summary["rows"] == 11 and summary["skipped_bad"] == 1 and summary["bad"][0].startswith("scan03.png: ")
    code, _, err = run(["embed", str(ckpt), "--images", str(folder), "--out", str(tmp_path / "z.json")], capsys)
    assert code == 2 and "error: --out: expected the embeddings' .csv path" in err
