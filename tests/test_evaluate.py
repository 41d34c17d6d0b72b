"""Evaluation sweeps: the plain loss in chunks, loss per angle, the affine comparison, result files."""
from __future__ import annotations

import csv
import json

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.training.evaluate import affine_comparison, loss_per_angle, mean_loss, write_rows

pytestmark = pytest.mark.usefixtures("single_thread")


def test_mean_loss_is_the_eval_mode_loss_whatever_the_chunk(digits):
    torch.manual_seed(0)
    vae = avae.VAE(2, 28)
    vae.train()
    vae(digits[0][:16])  # BatchNorm statistics away from their defaults
    x = digits[0][:7]
    with torch.no_grad():
        want = avae.avae_loss(vae.eval(), x)
    vae.train()
    for chunk in (1, 3, 512):
        torch.testing.assert_close(mean_loss(vae, x, chunk=chunk), want, rtol=1e-4, atol=1e-3)
    assert vae.training  # the model is left as it was


def test_loss_per_angle_rows_and_alignment_helps(template_vae, seven):
    x = seven.expand(3, -1, -1, -1)
    plain = loss_per_angle(template_vae, x, [0, 90, 200], progress=False)
    aligned = loss_per_angle(template_vae, x, [0, 90, 200], aligned=True, progress=False)
    assert [r["angle_deg"] for r in plain] == [0.0, 90.0, 200.0] and all(r["n"] == 3 for r in plain)
    assert not plain[0]["aligned"] and aligned[0]["aligned"]
    assert plain[1]["loss"] > 1.5 * plain[0]["loss"]  # the stub knows one orientation
    for p, a in zip(plain, aligned):
        assert a["loss"] <= p["loss"] + 1e-3
    assert aligned[1]["loss"] < 1.1 * plain[0]["loss"]  # the search turns it back


def test_affine_comparison_reads_the_family(tiny_vae, digits):
    out = affine_comparison(tiny_vae, digits[0][:4], config=avae.AlignConfig(restarts=4, steps=2), progress=False)
    assert out["family"] == "affine" and out["n"] == 4
    assert out["avae_loss"] <= out["vae_loss"] + 1e-3 and 0 <= out["reduction"] < 1
    same = affine_comparison(tiny_vae, digits[0][:4], config=avae.AlignConfig(restarts=1, steps=0), progress=False)
    assert same["avae_loss"] == pytest.approx(same["vae_loss"]) and same["reduction"] == pytest.approx(0.0, abs=1e-6)
    rot = affine_comparison(tiny_vae, digits[0][:4], config=avae.AlignConfig(restarts=4, steps=2), progress=False,
                            family="rotation")  # fmt: skip
    assert rot["family"] == "rotation" and rot["vae_loss"] == pytest.approx(out["vae_loss"])


def test_affine_comparison_gives_standard_errors_over_digits(tiny_vae, digits):
    """Each mean has its standard error over the digits; the gain's is paired digit by digit, so
    a search that changes nothing has a gain of 0 with error 0 however much the digits differ."""
    from avae_tutorial.training.evaluate import random_affines

    x = digits[0][:6]
    out = affine_comparison(tiny_vae, x, config=avae.AlignConfig(restarts=4, steps=2), progress=False)
    plain = mean_loss(tiny_vae, random_affines(x, seed=0)[0]).double()
    assert out["vae_loss_se"] == pytest.approx(float(plain.std() / 6 ** 0.5), rel=1e-5)
    assert out["gain"] == pytest.approx(out["vae_loss"] - out["avae_loss"]) and out["gain_se"] >= 0
    same = affine_comparison(tiny_vae, x, config=avae.AlignConfig(restarts=1, steps=0), progress=False)
    assert same["vae_loss_se"] > 0 and same["gain_se"] == pytest.approx(0.0, abs=1e-4)


def test_write_rows_csv_and_json(tmp_path):
    rows = [{"angle_deg": 0.0, "loss": 1.5}, {"angle_deg": 15.0, "loss": 2.5}]
    with open(write_rows(rows, tmp_path / "a" / "r.csv"), newline="") as f:
        assert [float(r["loss"]) for r in csv.DictReader(f)] == [1.5, 2.5]
    assert json.loads(write_rows(rows, tmp_path / "r.json").read_text()) == rows


def test_mean_loss_with_a_warp_is_avae_loss_and_loss_per_angle_keeps_per_image_losses(template_vae, seven):
    x = seven.expand(3, -1, -1, -1)
    A = avae.rotation(torch.tensor([0.3, -1.0, 2.0]))
    with torch.no_grad():
        torch.testing.assert_close(mean_loss(template_vae, x, A), avae.avae_loss(template_vae, x, A))
    with pytest.raises(ValueError, match="A"):
        mean_loss(template_vae, x, A[:2])
    rows = loss_per_angle(template_vae, x, [0, 90], progress=False, per_image=True)
    assert [tuple(r["losses"].shape) for r in rows] == [(3,), (3,)]
    assert rows[1]["loss"] == pytest.approx(float(rows[1]["losses"].mean()))
