"""The benchmark at a tiny size: its structure, finite figures, and the seed reference's semantics."""
from __future__ import annotations

import json
import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.tools.baselines import seed_reference
from avae_tutorial.tools.bench import BenchConfig, bench, cost_quality_curve
from avae_tutorial.training.train import training_search
from avae_tutorial.tools.bench_report import MIN_SEEDS_ALIGNED, format_report, targets, write_json
from avae_tutorial.align import search_cost
from avae_tutorial.tools.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = BenchConfig(n=6, n_ref=2, ref_restarts=2, ref_steps=2, train_n=16, train_epochs=2, train_batch=8,
                   train_test_n=4, curve_n=4, exhaustive_n=3, chunk=64, heldout_n=5, heldout_exhaustive_n=2)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_inputs():
    x, _ = avae.data.mnist.synthetic_digits(26, canvas=28, seed=3)
    torch.manual_seed(0)
    return avae.VAE(latent_dim=2, canvas=28).eval(), x[:10], x[10:]


@pytest.fixture(scope="module")
def tiny_run(tiny_inputs):
    return bench(*tiny_inputs, TINY)


def _finite(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and math.isfinite(v))


def test_bench_structure_and_finite_figures(tiny_run):
    out = tiny_run
    names = ["seed reference", "align 'default'", "align 'fast'", "near-exhaustive"]
    assert [r["method"] for r in out["test_time"]] == names  # no pose net: no "without pose" row
    keys = {"seconds_per_image", "cost_vs_plain", "speedup_vs_ref", "loss", "loss0", "loss_ref_subset",
            "frac_of_ref_reduction", "peak_mib", "passes_per_image", "passes_sd", "passes_max", "passes_bound"}  # fmt: skip
    for r in out["test_time"]:
        assert keys <= set(r) and all(_finite(r[k]) for k in keys), r
        assert r["seconds_per_image"] > 0 and r["cost_vs_plain"] > 0
    ref, default, fast, exhaustive = out["test_time"]
    assert ref["n"] == TINY.n_ref and default["n"] == fast["n"] == TINY.n and exhaustive["n"] == TINY.exhaustive_n
    assert exhaustive["loss"] <= default["loss_exhaustive_subset"] + 1e-3  # every degree, then refined
    assert default["loss"] <= default["loss0"] + 1e-4 and fast["loss"] <= fast["loss0"] + 1e-4  # never worse
    assert default["passes_per_image"] == search_cost(avae.preset("rotation"))  # no pose net: every image the same
    assert ref["passes_per_image"] == TINY.ref_restarts * (3 * TINY.ref_steps + 1) and ref["passes_sd"] == 0
    assert [(r["restarts"], r["steps"]) for r in out["curve"]] == [tuple(g) for g in avae.tools.bench.CURVE_GRID]
    assert [r["search"] for r in out["training"]["runs"]] == list(avae.tools.bench.TRAIN_RUNS)
    for r in out["training"]["runs"]:
        assert len(r["epoch_seconds"]) == TINY.train_epochs and all(t > 0 for t in r["epoch_seconds"])
        assert all(_finite(r[k]) for k in ("seconds_per_epoch", "epoch_vs_plain", "epoch_vs_plain_later", "train_loss",
                                           "train_loss_aligned",
                                           "test_loss_aligned", "passes_per_image_later"))  # fmt: skip
        assert len(r["passes_per_epoch"]) == TINY.train_epochs
    plain, package, seed_style, online = out["training"]["runs"]
    assert plain["passes_per_epoch"] == [0.0] * TINY.train_epochs
    assert seed_style["passes_per_image_later"] == 20 + 3 * 10 + 1  # the seed's search: 20 angles, 10 Adam steps
    warm = avae.training.train.search_config(avae.TrainConfig("aligned", **training_search("warm")), warm=True)
    assert package["passes_per_image_later"] == search_cost(warm, n_init=1) == 13  # a grid, last pose +- span, steps
    assert online["passes_per_image_later"] == 4  # last pose +- span and the online pose net's guess
    assert len(out["targets"]) == 13 + 4 and all(_finite(t["value"]) for t in out["targets"])  # + the held-out four
    assert out["targets"][-4:] == out["heldout"]["targets"]
    timed = next(t for t in out["targets"] if t["target"].startswith("training, online: aligned epoch"))
    assert timed["value"] == pytest.approx(online["epoch_vs_plain_later"])  # judged after the first epoch
    later = online["epoch_seconds"][1:]  # one seed
    assert online["seconds_per_epoch_later"] == pytest.approx(sum(later) / len(later))
    unjudged = [t["target"] for t in out["targets"] if t["met"] is None]  # one seed: aligned losses unjudged
    assert len(unjudged) == 3 and all("same aligner" in t for t in unjudged)
    assert {t["kind"] for t in out["targets"]} == {"passes", "time", "loss"}
    c = out["conditions"]
    assert c["device"] == "cpu" and c["cpu"] and isinstance(c["cpu_flags"], list) and c["torch"] == torch.__version__


def test_rows_are_judged_against_the_reference_on_its_own_images(tiny_run, tiny_inputs):
    """The reference's loss is what seed_reference returns for the first ``n_ref`` digits; every
    row is compared with it on those digits: ``loss_ref_subset`` is the row's mean loss there,
    ``frac_of_ref_reduction`` its share of the reference's gain there, ``speedup_vs_ref`` the
    ratio of the times per image."""
    vae, x_test, _ = tiny_inputs
    x = avae.data.mnist.random_rotations(x_test[: TINY.n], seed=TINY.seed)[0]
    loss, _ = seed_reference(vae, x[: TINY.n_ref], restarts=TINY.ref_restarts, steps=TINY.ref_steps, seed=TINY.seed)
    ref, default, fast, _ = tiny_run["test_time"]
    assert ref["loss"] == pytest.approx(float(loss.mean()), abs=1e-3)
    for name, row in (("default", default), ("fast", fast)):  # the same search again, on the same digits
        again = avae.align(vae, x, "rotation", replace(avae.preset("rotation", name), chunk=TINY.chunk), progress=False)
        assert row["loss"] == pytest.approx(float(again.loss.mean()), rel=1e-5)
        assert row["loss_ref_subset"] == pytest.approx(float(again.loss[: TINY.n_ref].mean()), rel=1e-5)
    gain = ref["loss0"] - ref["loss"]  # the reference's own digits: its loss0 is theirs
    assert gain > 0
    for r in tiny_run["test_time"]:
        assert r["frac_of_ref_reduction"] == pytest.approx((ref["loss0"] - r["loss_ref_subset"]) / gain, rel=1e-4)
        assert r["speedup_vs_ref"] == pytest.approx(ref["seconds_per_image"] / r["seconds_per_image"])


def test_training_runs_go_through_fit(tiny_run, tiny_inputs):
    """The plain run is fit's rotated regime on the same digits from the same seed: same losses, and
    its aligned train loss is the 'default' aligner's on the training digits rotated with seed + 2."""
    _, x_test, x_train = tiny_inputs
    cfg = avae.TrainConfig("rotated", 2, 28, epochs=TINY.train_epochs, batch_size=TINY.train_batch,
                           test_limit=TINY.train_test_n, seed=TINY.seed)  # fmt: skip
    zeros = torch.zeros(TINY.train_n, dtype=torch.long)
    test = (x_test[-TINY.train_test_n :], zeros[: TINY.train_test_n])
    vae, hist = avae.fit(cfg, (x_train[: TINY.train_n], zeros), test, progress=False)
    plain, package, seed_style, online = tiny_run["training"]["runs"]
    assert plain["train_loss"] == pytest.approx(hist["train_loss"][-1], rel=1e-5)
    x_fit = avae.data.mnist.random_rotations(x_train[: TINY.train_n], seed=TINY.seed + 2)[0]
    fit_loss = avae.align(vae, x_fit, "rotation", "default", progress=False).loss.mean()
    assert plain["train_loss_aligned"] == pytest.approx(float(fit_loss), rel=1e-4)
    assert plain["train_loss_aligned_per_seed"] == [plain["train_loss_aligned"]]
    assert package["train_loss"] != pytest.approx(plain["train_loss"], rel=1e-6)  # the search changed the inputs
    assert seed_style["train_loss"] != pytest.approx(package["train_loss"], rel=1e-6)


def test_passes_are_counted_beside_every_time_and_the_held_out_figures_join(tiny_run, tiny_inputs):
    """Every timed row carries its counted passes; the held-out figures are heldout()'s on digits drawn
    from the pool with the held-out seed (here the test digits, labels unknown)."""
    from avae_tutorial.tools.heldout import HELDOUT_SEED, HeldoutConfig, draw_digits

    out = tiny_run
    assert all("passes_per_image" in r for r in out["test_time"] + out["curve"])
    assert all({"passes_per_image_later", "passes_per_epoch"} <= set(r) for r in out["training"]["runs"])
    vae, x_test, _ = tiny_inputs
    assert out["folder"]["passes_per_image"] == search_cost(avae.preset("rotation"))  # no pose net: the whole grid
    h = out["heldout"]
    assert h["digits"] == {"split": "test", "n": TINY.heldout_n, "seed": HELDOUT_SEED, "start": 0, "pool": len(x_test),
                           "classes": {-1: TINY.heldout_n}}  # fmt: skip
    assert h["config"] == {**HeldoutConfig(n=TINY.heldout_n, exhaustive_n=TINY.heldout_exhaustive_n).__dict__,
                           "chunk": TINY.chunk}  # fmt: skip
    xs = draw_digits(x_test, torch.full((len(x_test),), -1), TINY.heldout_n, HELDOUT_SEED)[0]
    res = avae.align(vae, xs, "rotation", avae.AlignConfig(**h["presets"][0]["search"]))
    assert h["presets"][0]["passes_per_image"] == pytest.approx(res.passes.double().mean().item())
    assert h["exhaustive"]["n"] == TINY.heldout_exhaustive_n
    text = format_report(out)
    assert "held out" in text and "passes per image" in text
    assert BenchConfig(heldout_n=0).heldout_n == 0
    with pytest.raises(ValueError, match="heldout_exhaustive_n"):
        BenchConfig(heldout_n=4, heldout_exhaustive_n=5)


def test_report_and_json(tiny_run, tmp_path):
    text = format_report(tiny_run)
    for word in ("seed reference", "align 'default'", "align 'fast'", "cost/quality curve", "training", "targets",
                 "passes", "in time on this machine", tiny_run["conditions"]["cpu"]):
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
    assert [(r["restarts"], r["steps"], r["passes_per_image"]) for r in rows] == [(4, 0, 4), (4, 2, 6)]  # float32
    assert rows[1]["loss"] <= rows[0]["loss"] + 1e-4  # refinement only keeps improvements


@pytest.mark.parametrize("bad", [dict(n=0), dict(n_ref=9, n=8), dict(family="shear"), dict(train_n=-1)])
def test_config_rejects_bad_sizes(bad):
    with pytest.raises(ValueError):
        BenchConfig(**bad)


def test_cli_bench_rejects_unknown_model(capsys):
    assert main(["bench", "--model", "no-such-model", "--n", "2", "--train-n", "0", "--curve-n", "0"]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_training_search_overrides_reach_fit(tiny_run):
    """--train-align / --train-align-warm: the runs train with those fields, the rest as TrainConfig's;
    the comparison reports the settings it trained with."""
    cfg = BenchConfig(**{**TINY.__dict__, "train_align": {"restarts": 5}, "train_align_warm": {"steps": 3}})
    base = avae.tools.bench.train_config(cfg, 0, latent_dim=2, canvas=28, test_limit=cfg.train_test_n)
    assert base.align["restarts"] == 5 and base.align["steps"] == avae.TrainConfig().align["steps"]
    assert base.align_warm["steps"] == 3 and base.align_warm["chunk"] == cfg.chunk
    assert base.seed == 0 and base.batch_size == cfg.train_batch and base.epochs == 1
    tiny = avae.tools.bench.train_config(TINY, 0, latent_dim=2, canvas=28, test_limit=TINY.train_test_n)
    assert tiny_run["training"]["align"] == tiny.align and tiny_run["training"]["align_warm"] == tiny.align_warm
    with pytest.raises(ValueError, match="restarts"):
        BenchConfig(train_align={"restarts": -1})
    from avae_tutorial.tools.cli import _fields

    assert _fields("restarts=12,steps=2,init_span=0.1,precision=auto") == {
        "restarts": 12, "steps": 2, "init_span": 0.1, "precision": "auto"}


def test_training_comparison_over_seeds_reports_each_and_their_mean(tiny_inputs, monkeypatch):
    """train_seeds=2: every run trains from seeds 0 and 1, and each figure is reported per seed and
    as the mean over seeds; seed 0's figures are those of a one-seed comparison. The training and
    the search are stand-ins whose figures follow the seed and the run (the real ones run in the
    tiny benchmark above; fit's seeding is tested in test_train)."""
    _, x_test, x_train = tiny_inputs
    seeds = []

    def turns(x_train, x_test, base, epochs):  # as _train_turns: {run: (model, history)}
        seeds.append(base.seed)
        out = {}
        for i, name in enumerate(avae.tools.bench.TRAIN_RUNS):
            torch.manual_seed(100 * base.seed + i)
            vae = avae.VAE(latent_dim=2, canvas=28)
            hist = {"seconds": [1.0 + base.seed + i + e for e in range(epochs)], "train_loss": [10.0 * (i + 1) + base.seed],
                    "passes": torch.full((epochs, len(x_train)), float(i + base.seed))}  # fmt: skip
            out[name] = (vae, hist)
        return out

    def search(vae, x, family, config, **kw):  # a loss per image that names the model and the digits
        return SimpleNamespace(loss=torch.full((len(x),), float(vae.to_mu.bias.detach().sum()) + len(x)))

    monkeypatch.setattr(avae.tools.bench, "_train_turns", turns)
    monkeypatch.setattr(avae.tools.bench, "align", search)
    cfg = BenchConfig(**{**TINY.__dict__, "train_seeds": 2})
    two = avae.tools.bench.train_comparison(x_train[: cfg.train_n], x_test[-cfg.train_test_n :], cfg, latent_dim=2)
    one = avae.tools.bench.train_comparison(x_train[: cfg.train_n], x_test[-cfg.train_test_n :], TINY, latent_dim=2)
    assert seeds == [0, 1, 0] and two["seeds"] == [0, 1] and one["seeds"] == [0]
    for i, (r2, r1) in enumerate(zip(two["runs"], one["runs"], strict=True)):
        assert r2["train_loss_per_seed"] == [10.0 * (i + 1), 10.0 * (i + 1) + 1] and r2["train_loss"] == 10.0 * (i + 1) + 0.5
        assert r2["epoch_seconds"] == [1.0 + i, 2.0 + i, 2.0 + i, 3.0 + i]  # seed 0's epochs, then seed 1's
        assert r2["seconds_per_epoch_later"] == pytest.approx(2.5 + i)  # the epochs after each seed's first
        assert r2["passes_per_epoch"] == [i + 0.5] * TINY.train_epochs
        fit = r2["train_loss_aligned_per_seed"]
        assert fit[0] != fit[1] and r2["train_loss_aligned"] == pytest.approx(sum(fit) / 2)
        assert r2["test_loss_aligned"] != r2["train_loss_aligned"]  # other digits: another figure
        assert (r2["train_loss_per_seed"][0], fit[0]) == (r1["train_loss"], r1["train_loss_aligned"])
    with pytest.raises(ValueError, match="train_seeds"):
        BenchConfig(train_seeds=0)


def test_aligned_loss_targets_are_judged_from_three_seeds(tiny_run):
    """The final models' aligned losses are judged (met or not) only from MIN_SEEDS_ALIGNED seeds:
    the same targets, fed three seeds' figures, say met or NOT met by the sign of the gap."""
    out = json.loads(json.dumps(tiny_run, default=float))
    plain, package, seed_style, online = out["training"]["runs"]
    for r, loss in ((plain, 230.0), (package, 220.0), (seed_style, 225.0)):
        r["train_loss_per_seed"] = [loss] * MIN_SEEDS_ALIGNED
        r["train_loss_aligned"], r["test_loss_aligned"] = loss, loss + 1
    met = {t["target"].split(":")[1].strip(): t for t in targets(out) if t["target"].startswith("training:")}
    aligned = [t for name, t in met.items() if "same aligner" in name]
    assert len(aligned) == 2 and all(t["met"] is True and t["value"] == -5.0 for t in aligned)
    seed_style["train_loss_aligned"] = seed_style["test_loss_aligned"] = 210.0
    assert [t["met"] for t in targets(out) if t["target"].startswith("training:")][-2:] == [False, False]
    assert "not judged" in format_report(tiny_run) and "not judged" not in format_report({**out, "targets": targets(out)})


def test_precision_override_reaches_every_package_search(tiny_inputs, monkeypatch):
    """--precision float32: the presets and the training search run as on a CPU without bfloat16."""
    seen = []
    real = avae.tools.bench.align

    def spy(vae, x, family, config, **kw):
        seen.append(config)
        return real(vae, x, family, config, **kw)

    monkeypatch.setattr(avae.tools.bench, "align", spy)
    vae, x_test, x_train = tiny_inputs
    cfg = BenchConfig(**{**TINY.__dict__, "precision": "float32", "exhaustive_n": 0})  # the presets and training
    rows = avae.tools.bench.inference_rows(vae, x_test[: cfg.n], cfg)
    assert len(seen) >= 3 and all(c.precision == "float32" for c in seen if isinstance(c, avae.AlignConfig))
    assert [r["method"] for r in rows][:3] == ["seed reference", "align 'default'", "align 'fast'"]
    base = avae.tools.bench.train_config(cfg, 0, latent_dim=2, canvas=28, test_limit=cfg.train_test_n)
    assert base.align["precision"] == base.align_warm["precision"] == "float32"
    with pytest.raises(ValueError, match="precision"):
        BenchConfig(precision="float16")
