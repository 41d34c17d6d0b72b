"""The held-out evaluation of the test-time search (``bench-heldout``): the exhaustive search's answer,
the seeded draw, the figures' structure, passes as counted, and the command line."""
from __future__ import annotations

import json
import math
from dataclasses import asdict

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.align import search_cost
from avae_tutorial.pose import PoseNet
from avae_tutorial.tools.cli import main
from avae_tutorial.tools.heldout import (EXHAUSTIVE, HELDOUT_SEED, TARGETS, TUNING_SEED, HeldoutConfig, against,
                                         draw_digits, format_heldout, heldout, stage_configs, targets)  # fmt: skip
from avae_tutorial.transforms import wrap_angle

pytestmark = pytest.mark.usefixtures("single_thread")


def test_the_exhaustive_search_finds_the_true_angle_of_the_template(template_vae, seven):
    """On the stub whose loss has one known minimum, every degree scored then refined lands on it."""
    theta = torch.tensor([0.3, -2.0, 2.9, 1.234])
    x = avae.warp(seven.expand(len(theta), -1, -1, -1), avae.rotation(theta))
    res = avae.align(template_vae, x, "rotation", EXHAUSTIVE)
    assert (wrap_angle(res.angle + theta).abs() < math.radians(0.5)).all(), torch.rad2deg(res.angle + theta)
    assert (res.passes == 360 + 2 * 4).all() and res.grid.all()  # the identity is the grid's first point


def test_draw_is_seeded_without_replacement_and_turns_each_digit():
    x, y = avae.data.mnist.synthetic_digits(30, canvas=28, seed=0)
    xs, ys, idx, angle = draw_digits(x, y, 12, seed=5, start=10)
    again = draw_digits(x, y, 12, seed=5, start=10)
    assert torch.equal(xs, again[0]) and torch.equal(idx, again[2]) and torch.equal(angle, again[3])
    assert len(set(idx.tolist())) == 12 and idx.min() >= 10 and torch.equal(ys, y[idx])
    torch.testing.assert_close(xs, avae.warp(x[idx], avae.rotation(angle)))
    assert not torch.equal(idx, draw_digits(x, y, 12, seed=6, start=10)[2])
    assert HELDOUT_SEED != TUNING_SEED
    with pytest.raises(ValueError, match="at least"):
        draw_digits(x, y, 25, seed=5, start=10)


@pytest.fixture(scope="module")
def posed():
    """A tiny VAE with an (untrained) pose net with bins: the '+pose' presets apply, some digits go on."""
    torch.manual_seed(0)
    vae = avae.VAE(2, 28).eval()
    vae.pose_net = PoseNet(28, width=4, bins=24).eval()
    x, y = avae.data.mnist.synthetic_digits(40, canvas=28, seed=1)
    return vae, x, y


@pytest.fixture(scope="module")
def run(posed):
    vae, x, y = posed
    return heldout(vae, x, y, HeldoutConfig(n=16, exhaustive_n=6, seed=3, chunk=64))


def test_heldout_figures_are_the_searches_own_counts(run, posed):
    """Each preset's passes, grid counts and losses are those of align on the drawn digits."""
    vae, x, y = posed
    xs, ys, *_ = draw_digits(x, y, 16, seed=3)
    assert [r["preset"] for r in run["presets"]] == ["default", "fast"]
    for row in run["presets"]:
        res = avae.align(vae, xs, "rotation", avae.AlignConfig(**row["search"]))
        assert row["passes_per_image"] == pytest.approx(res.passes.double().mean().item())
        assert row["passes_max"] == res.passes.max() and row["to_grid"] == res.grid.sum()
        assert sum(row["passes_counts"].values()) == 16 and sum(k * v for k, v in row["passes_counts"].items()) == res.passes.sum()
        assert row["loss"] == pytest.approx(res.loss.mean().item(), rel=1e-6)
        assert row["gain"] == pytest.approx((res.loss0 - res.loss).mean().item(), rel=1e-5)
        by_class = row["to_grid_by_class"]
        assert sum(v["n"] for v in by_class.values()) == 16 and sum(v["to_grid"] for v in by_class.values()) == row["to_grid"]
        assert all(v["n"] == (ys == k).sum() for k, v in by_class.items())
    assert run["presets"][0]["search"]["pose"] and run["pose_net"]  # the '+pose' settings
    fast = run["presets"][1]
    assert fast["to_grid"] == 0 and fast["passes_max"] <= TARGETS["fast_passes"]  # the fast preset never goes on


def test_heldout_gap_share_and_targets(run):
    ex = run["exhaustive"]
    assert ex["n"] == 6 and ex["passes_per_image"] == 368
    for row in run["presets"]:
        gap = row["loss_exhaustive_subset"] / ex["loss"] - 1
        assert row["gap_to_exhaustive"] == pytest.approx(gap, abs=1e-9) and row["gap_to_exhaustive"] > -1e-3
        assert row["gap_to_exhaustive_se"] >= 0
    share = run["fast_share_of_default_gain"]
    assert share["share"] == pytest.approx(share["fast_gain"] / share["default_gain"])
    ts = run["targets"]
    assert [t["kind"] for t in ts] == ["passes", "loss", "passes", "loss"] and all(isinstance(t["met"], bool) for t in ts)
    assert ts[0]["value"] == run["presets"][0]["passes_per_image"] and ts[0]["met"] == (ts[0]["value"] <= 8)
    no_gap = {**run, "presets": [{k: v for k, v in r.items() if "exhaustive" not in k} for r in run["presets"]]}
    assert len(targets(no_gap)) == 3  # the gap is judged only where the exhaustive search ran
    text = format_heldout(run)
    for word in ("held out", "seed 3", "exhaustive", "to the grid by class", "digits per pass count", "fast keeps"):
        assert word in text
    assert json.loads(json.dumps(run))["digits"]["n"] == 16  # JSON as it is
    assert "per_digit" not in run


def test_per_digit_figures_add_up_to_the_summary(posed):
    vae, x, y = posed
    out = heldout(vae, x, y, HeldoutConfig(n=8, exhaustive_n=3, seed=4, chunk=64, per_digit=True))
    each = out["per_digit"]
    assert len(each["index"]) == len(each["class"]) == 8 and len(each["exhaustive"]["loss"]) == 3
    for row in out["presets"]:
        d = each[row["preset"]]
        assert sum(d["passes"]) / 8 == pytest.approx(row["passes_per_image"]) and sum(d["grid"]) == row["to_grid"]
        assert sum(d["loss"]) / 8 == pytest.approx(row["loss"], rel=1e-5)


def test_heldout_config_checks():
    with pytest.raises(ValueError, match="exhaustive_n"):
        HeldoutConfig(n=4, exhaustive_n=5)
    with pytest.raises(ValueError, match="precision"):
        HeldoutConfig(precision="float16")
    assert HeldoutConfig().seed == HELDOUT_SEED and HeldoutConfig().n >= 1000


def test_cli_bench_heldout_writes_json(monkeypatch, tmp_path, capsys):
    """``bench-heldout`` on a checkpoint and synthetic digits: the report and its JSON."""
    from avae_tutorial.data import mnist as data

    def fake(split="test", canvas=40, limit=None, root=None):
        x, y = avae.data.mnist.synthetic_digits(20, canvas=canvas, seed=int(split == "test"))
        return (x[:limit], y[:limit]) if limit else (x, y)

    monkeypatch.setattr(data, "load_mnist", fake)
    path = tmp_path / "m.pt"
    assert main(["train", "--regime", "rotated", "--canvas", "28", "--latent", "2", "--epochs", "1", "--batch-size",
                 "16", "--test-limit", "4", "--out", str(path), "--device", "cpu"]) == 0  # fmt: skip
    capsys.readouterr()
    out = tmp_path / "h.json"
    assert main(["bench-heldout", "--model", str(path), "--n", "6", "--exhaustive-n", "2", "--out", str(out),
                 "--device", "cpu", "--per-digit"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "held out" in text and "pose net: no" in text
    got = json.loads(out.read_text())
    assert got["digits"]["split"] == "test" and got["digits"]["n"] == 6 and got["exhaustive"]["n"] == 2
    assert got["presets"][0]["passes_per_image"] == search_cost(avae.preset("rotation"))  # no pose net: the grid
    # the same model again, against the first run: the same digits, so no change at all
    again = tmp_path / "h2.json"
    assert main(["bench-heldout", "--model", str(path), "--n", "6", "--exhaustive-n", "2", "--out", str(again),
                 "--device", "cpu", "--against", str(out)]) == 0  # fmt: skip
    assert "default against" in capsys.readouterr().out
    rows = json.loads(again.read_text())["against"]["presets"]
    assert set(rows) == {"default", "fast"}
    assert all(r["loss_change"] == 0 and r["passes_change"] == 0 for r in rows.values())
    # another seed draws other digits: refused before the run
    assert main(["bench-heldout", "--model", str(path), "--n", "6", "--exhaustive-n", "0", "--seed", "5", "--out",
                 str(tmp_path / "h3.json"), "--device", "cpu", "--against", str(out)]) == 2  # fmt: skip
    assert "same digits" in capsys.readouterr().err and not (tmp_path / "h3.json").exists()


def test_against_gives_the_paired_change_per_preset():
    def run(loss, passes, ex=None):
        each = {"index": [3, 1, 4], "angle": [0.1, 0.2, 0.3], "default": {"loss": loss, "passes": passes}}
        return {"per_digit": {**each, **({"exhaustive": {"loss": ex}} if ex else {})}}

    new, old = run([10.0, 12.0, 14.0], [7, 8, 9], ex=[10.0, 10.0, 10.0]), run([11.0, 12.0, 16.0], [7, 7, 7])
    got = against(new, old)["default"]
    diff = torch.tensor([-1.0, 0.0, -2.0], dtype=torch.float64)
    assert got["loss_change"] == pytest.approx(-1.0 / 10.0)  # in percent of the exhaustive loss (as a fraction)
    assert got["loss_change_se"] == pytest.approx(float(diff.std() / math.sqrt(3)) / 10.0)
    assert got["passes_change"] == pytest.approx(1.0) and got["passes_change_se"] > 0
    assert against(run([10.0, 12.0, 14.0], [7, 8, 9]), old)["default"]["loss_change"] == pytest.approx(-1.0 / 12.0)
    with pytest.raises(ValueError, match="per-digit"):
        against({"presets": []}, old)
    other = run([10.0, 12.0, 14.0], [7, 8, 9])
    other["per_digit"]["index"] = [3, 1, 5]
    with pytest.raises(ValueError, match="same digits"):
        against(other, old)


def _result(loss, passes):
    n = len(loss)
    z = torch.zeros(n)
    return avae.AlignResult(torch.zeros(n, 2, 3), torch.tensor(loss), z[:, None], z, "rotation", z,
                            torch.tensor(passes), torch.zeros(n, dtype=torch.bool))  # fmt: skip


def test_gate_bound_sends_the_digits_with_most_gain_per_pass_first():
    """Four digits, exhaustive loss 100 each: the grid helps digits 0 and 2 most per pass, then 1;
    digit 3 gains nothing and is never sent."""
    from avae_tutorial.tools.heldout import gate_bound

    first = _result([104.0, 101.0, 102.0, 100.0], [6, 6, 6, 6])
    every = _result([100.0, 100.0, 100.0, 100.0], [14, 14, 10, 18])
    g = gate_bound(first, every, torch.full((4,), 100.0), budget=8.0, target=0.001)
    assert g["first_passes"] == 6 and g["first_gap"] == pytest.approx(7 / 4 / 100)
    assert g["every_passes"] == pytest.approx(14) and g["every_gap"] == 0
    # digit 0 (+8 passes) -> mean 8: the budget; gap (3 / 4) / 100
    assert g["sent_at_budget"] == 1 and g["gap_at_budget"] == pytest.approx(3 / 4 / 100)
    # 0.1% needs digits 0, 2 and 1: 6 + (8 + 4 + 8) / 4 passes (digit 3 is never sent)
    assert g["passes_for_target"] == pytest.approx(11)
    assert gate_bound(first, every, torch.full((4,), 100.0), target=0.0)["passes_for_target"] == pytest.approx(11)
    assert gate_bound(first, first, torch.full((4,), 99.0))["passes_for_target"] is None  # nothing gained: never
    assert gate_bound(first, every, torch.full((4,), 100.0), budget=5.0)["gap_at_budget"] is None


def test_heldout_gate_bound_runs_the_default_in_its_two_stages(posed):
    vae, x, y = posed
    # float32 scoring: the second stage keeps the first's best exactly, on any CPU (bfloat16 or not)
    out = heldout(vae, x, y, HeldoutConfig(n=8, exhaustive_n=6, seed=4, chunk=64, precision="float32", gate_bound=True))
    g = out["gate_bound"]
    xs = draw_digits(x, y, 8, seed=4)[0][:6]
    a = avae.align(vae, xs, "rotation", avae.AlignConfig(**g["first_stage"]))
    b = avae.align(vae, xs, "rotation", avae.AlignConfig(**g["every_digit_to_grid"]))
    assert not a.grid.any() and b.grid.all() and (b.passes >= a.passes).all() and (b.loss <= a.loss + 1e-4).all()
    assert g["first_passes"] == pytest.approx(a.passes.double().mean().item())
    assert g["first_gap"] >= g["every_gap"] - 1e-6 and g["first_passes"] <= g["every_passes"]
    assert set(g["guess_off_by_more_than"]) == {10, 30, 150}
    assert all(0 <= v <= 1 for v in g["guess_off_by_more_than"].values())
    # the nearest of the net's peaks is never further than its first guess
    assert all(g["nearest_peak_off_by_more_than"][d] <= g["guess_off_by_more_than"][d] for d in (10, 30, 150))
    assert "gate bound" in format_heldout(out) and json.loads(json.dumps(out))["gate_bound"]
    assert "gate_bound" not in heldout(vae, x, y, HeldoutConfig(n=4, exhaustive_n=2, seed=4, chunk=64))
    stages = stage_configs(avae.AlignConfig(**out["presets"][0]["search"]))
    assert [asdict(c) for c in stages] == [g["first_stage"], g["every_digit_to_grid"]]
