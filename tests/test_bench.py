"""The benchmark at a tiny size: its structure, finite figures, and the seed reference's semantics."""
from __future__ import annotations

import json
import math

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.bench import BenchConfig, bench, cost_quality_curve, format_report, seed_reference, write_json
from avae_tutorial.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = BenchConfig(n=6, n_ref=2, ref_restarts=2, ref_steps=2, train_n=16, train_epochs=1, train_batch=8,
                   train_test_n=4, curve_n=4, chunk=64)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run():
    x, _ = avae.synthetic_digits(26, canvas=28, seed=3)
    torch.manual_seed(0)
    vae = avae.VAE(latent_dim=2, canvas=28).eval()
    return bench(vae, x[:10], x[10:], TINY)


def _finite(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and math.isfinite(v))


def test_bench_structure_and_finite_figures(tiny_run):
    out = tiny_run
    assert [r["method"] for r in out["test_time"]] == ["seed reference", "align 'default'", "align 'fast'"]
    keys = {"seconds_per_image", "cost_vs_plain", "speedup_vs_ref", "loss", "loss0", "loss_ref_subset",
            "frac_of_ref_reduction", "peak_mib", "evals_per_image"}  # fmt: skip
    for r in out["test_time"]:
        assert keys <= set(r)
        assert all(_finite(r[k]) for k in keys), r
        assert r["seconds_per_image"] > 0 and r["cost_vs_plain"] > 0
    ref, default, fast = out["test_time"]
    assert ref["n"] == TINY.n_ref and default["n"] == fast["n"] == TINY.n
    assert default["loss"] <= default["loss0"] + 1e-4 and fast["loss"] <= fast["loss0"] + 1e-4  # never worse
    assert ref["speedup_vs_ref"] == pytest.approx(1.0)
    assert ref["frac_of_ref_reduction"] == pytest.approx(1.0)
    assert [(r["restarts"], r["steps"]) for r in out["curve"]] == [tuple(g) for g in avae.bench.CURVE_GRID]
    assert all(_finite(r[k]) for r in out["curve"] for k in ("loss", "seconds_per_image", "cost_vs_plain"))
    assert [r["search"] for r in out["training"]["runs"]] == ["plain epoch", "package (per batch)", "seed-style (per batch)"]
    for r in out["training"]["runs"]:
        assert all(_finite(r[k]) for k in ("seconds_per_epoch", "epoch_vs_plain", "train_loss", "test_loss_aligned"))
    assert out["training"]["runs"][0]["epoch_vs_plain"] == 1.0
    assert [r["search"] for r in out["training"]["search"]] == ["package (warm start)", "seed-style"]
    assert all(_finite(r["loss"]) and r["seconds_per_image"] > 0 for r in out["training"]["search"])
    assert len(out["targets"]) == 8 and all(isinstance(t["met"], bool) and _finite(t["value"]) for t in out["targets"])
    assert out["conditions"]["device"] == "cpu"


def test_report_and_json(tiny_run, tmp_path):
    text = format_report(tiny_run)
    for word in ("seed reference", "align 'default'", "align 'fast'", "cost/quality curve", "training", "targets"):
        assert word in text
    path = write_json(tiny_run, tmp_path / "bench.json")
    assert json.loads(path.read_text())["config"]["n"] == TINY.n


def test_seed_reference_keeps_best_loss_per_image(template_vae, seven):
    """On the stub whose loss has one known minimum, the reference's loss is that of its angle."""
    x = avae.warp(seven.expand(2, -1, -1, -1), avae.rotation(torch.tensor([0.5, -1.0])))
    loss, params = seed_reference(template_vae, x, restarts=3, steps=5, seed=0)
    assert loss.shape == (2,) and params.shape == (2, 1)
    again = avae.avae_loss(template_vae, x, avae.rotation(params[:, 0]))
    torch.testing.assert_close(loss, again, rtol=1e-5, atol=1e-4)


def test_curve_rows(tiny_vae, digits):
    rows = cost_quality_curve(tiny_vae, digits[0][:3], grid=((4, 0), (4, 2)), top_k=1)
    assert [(r["restarts"], r["steps"], r["evals_per_image"]) for r in rows] == [(4, 0, 4), (4, 2, 6)]
    assert rows[1]["loss"] <= rows[0]["loss"] + 1e-4  # refinement only keeps improvements


@pytest.mark.parametrize("bad", [dict(n=0), dict(n_ref=9, n=8), dict(family="shear"), dict(train_n=-1)])
def test_config_rejects_bad_sizes(bad):
    with pytest.raises(ValueError):
        BenchConfig(**bad)


def test_cli_bench_rejects_unknown_model(capsys):
    assert main(["bench", "--model", "no-such-model", "--n", "2", "--train-n", "0", "--curve-n", "0"]) == 2
    assert "no-such-model" in capsys.readouterr().err
