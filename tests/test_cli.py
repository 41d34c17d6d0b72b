"""The command line: every --help, a tiny train -> evaluate -> align run, and clean exits on bad input."""
from __future__ import annotations

import argparse
import json

import pytest

import avae_tutorial as avae
from avae_tutorial import data
from avae_tutorial.cli import build_parser, main

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def synthetic_mnist(monkeypatch):
    """``load_mnist`` replaced by synthetic digits: no download, no cache."""

    def fake(split="test", canvas=40, limit=None, root=None):
        x, y = avae.synthetic_digits(33 if split == "train" else 16, canvas=canvas, seed=int(split == "test"))
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
    assert avae.load_checkpoint(ckpt)["config"]["regime"] == "rotated"

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
