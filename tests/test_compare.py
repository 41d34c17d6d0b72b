"""tools/compare.py: the training searches compared over seeds (compare-training)."""
import json
import math

import pytest

import avae_tutorial as avae
from avae_tutorial.align import search_cost
from avae_tutorial.tools import compare as cmp
from avae_tutorial.tools.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")


def test_recipes_differ_only_in_the_later_search():
    base = cmp.recipe_config("warm", 3)
    assert base.regime == "aligned" and base.seed == 3 and base.warm_start and not base.pose_online
    assert not cmp.recipe_config("cold", 0).warm_start
    assert cmp.recipe_config("online", 0).pose_online
    lite = avae.AlignConfig(**cmp.recipe_config("lite", 0).align_warm)
    assert search_cost(lite, n_init=1) == 4  # last orientation +- span, one step
    for name in cmp.RECIPES:
        assert cmp.recipe_config(name, 0).align == base.align  # the first epoch's search is the same
    with pytest.raises(ValueError, match="expected one of warm, cold, online, lite"):
        cmp.recipe_config("hot", 0)


def test_summary_is_the_mean_and_standard_error_over_seeds():
    rows = [{"run": f"lite-s{s}", "seed": s, "score_loss": v, "history_test_loss": v + 1, "passes_first": 9.0,
             "passes_later": 4.0, "seconds_per_epoch": 2.0, "seconds_later": 1.0, "R1": {1: 0.5}, "R2": {1: r}}
            for s, v, r in ((0, 100.0, 0.2), (1, 102.0, 0.4), (2, 104.0, 0.6))]  # fmt: skip
    (row,) = cmp.summarize(rows, plain_seconds=0.5)
    assert row["recipe"] == "lite" and row["seeds"] == [0, 1, 2]
    assert row["score_loss"] == pytest.approx(102.0) and row["score_loss_se"] == pytest.approx(2 / math.sqrt(3))
    assert row["later_vs_plain"] == pytest.approx(2.0) and row["R2"][1][0] == pytest.approx(0.4)
    assert "lite" in cmp.format_summary([row], 0.5)


def _rows(losses: dict, passes: dict) -> list[dict]:
    return [{"run": f"{name}-s{s}", "seed": s, "score_loss": v, "history_test_loss": v, "passes_first": 9.0,
             "passes_later": passes[name], "seconds_per_epoch": 2.0, "seconds_later": passes[name] / 4,
             "R1": {1: 0.5}, "R2": {1: 0.5}} for name, vals in losses.items() for s, v in enumerate(vals)]  # fmt: skip


def test_paired_differences_remove_what_the_seed_does_to_both():
    rows = _rows({"warm": [100.0, 110.0, 120.0], "lite": [101.0, 111.0, 121.5]}, {"warm": 13.0, "lite": 4.0})
    mean, se, n = cmp.paired(rows, "lite", "warm")
    assert n == 3 and mean == pytest.approx(7 / 6) and se == pytest.approx(math.sqrt(1 / 12) / math.sqrt(3))
    (warm, lite) = cmp.summarize(rows)
    assert lite["vs_warm"] == pytest.approx(mean) and lite["score_loss_se"] > 5  # unpaired: the seeds' spread


@pytest.mark.parametrize("lite, want", [([101.0, 109.2, 120.3], "lite"),  # within one paired SE: the cheaper
                                         ([103.0, 113.2, 122.9], "warm")])  # clearly worse: the better
def test_the_choice_is_the_best_loss_and_a_tie_goes_to_fewer_passes(lite, want):
    rows = _rows({"warm": [100.0, 110.0, 120.0], "lite": lite}, {"warm": 13.0, "lite": 4.0})
    summary = cmp.summarize(rows)
    choice = cmp.choose(rows, summary)
    assert choice["best"] == "warm" and choice["winner"] == want
    assert f"chosen: {want}" in cmp.format_summary(summary, None, choice)


def test_compare_training_end_to_end(monkeypatch, tmp_path, capsys):
    """Two recipes, one seed, a few synthetic digits: trained, scored alike, written."""
    from avae_tutorial.data import mnist as data

    def fake(split="test", canvas=40, limit=None, root=None):
        x, y = data.synthetic_digits(1004 if split == "test" else 32, canvas=canvas, seed=int(split == "test"))
        return (x[:limit], y[:limit]) if limit else (x, y)

    monkeypatch.setattr(data, "load_mnist", fake)
    assert main(["compare-training", "--recipes", "warm", "lite", "--seeds", "0", "--epochs", "2",
                 "--train-limit", "32", "--out", str(tmp_path), "--device", "cpu", "--score-n", "4", "--time-n", "16"]) == 0  # fmt: skip
    report = json.loads((tmp_path / "compare.json").read_text())
    runs = {r["run"]: r for r in report["runs"]}
    assert set(runs) == {"warm-s0", "lite-s0"}
    assert cmp.finished(tmp_path / "warm-s0.pt")
    assert runs["warm-s0"]["passes_later"] == 13 and runs["lite-s0"]["passes_later"] == 4
    assert all(r["passes_first"] == 9 and r["epochs"] == 2 for r in runs.values())
    assert all(math.isfinite(r["score_loss"]) and r["score_passes"] == 30 for r in runs.values())
    assert [r["recipe"] for r in report["summary"]] == ["warm", "lite"] and report["plain_epoch_seconds"] > 0
    assert report["choice"]["winner"] in {"warm", "lite"}
    timing = report["timing"]
    assert timing["n"] == 16 and timing["plain"] > 0 and set(timing["recipes"]) == {"warm", "lite"}
    warm = report["summary"][0]
    assert warm["later_vs_plain"] == pytest.approx(timing["recipes"]["warm"] / timing["plain"])
    assert "chosen:" in capsys.readouterr().out


def test_each_recipe_is_described_by_its_search():
    assert cmp.describe("warm") == "last pose +- 0.1 rad, grid of 8; 2 parabolic steps"
    assert cmp.describe("cold") == "grid of 8; 1 parabolic step"
    assert cmp.describe("online") == "last pose +- 0.1 rad, pose net's guess; no step"
    assert cmp.describe("lite") == "last pose +- 0.1 rad; 1 parabolic step"


def test_table_rows_show_means_with_their_errors():
    rows = _rows({"warm": [100.0, 110.0, 120.0], "lite": [101.0, 109.2, 120.3]}, {"warm": 13.0, "lite": 4.0})
    report = {"summary": cmp.summarize(rows, plain_seconds=1.0)}
    warm, lite = cmp.table_rows(report)
    assert warm["scored loss"] == "110.0 ± 5.8" and warm["minus warm"] == "–"
    assert lite["minus warm"].startswith("+0.17 ± ") and lite["passes, later"] == 4.0 and lite["x plain"] == 1.0


def test_a_recorded_config_names_its_recipe():
    from dataclasses import asdict

    for name in cmp.RECIPES:
        assert cmp.recipe_of(asdict(cmp.recipe_config(name, 5))) == name
    assert cmp.recipe_of({"warm_start": True, "align_warm": {"restarts": 3, "steps": 9, "init_span": 0.4}}) is None


def test_structure_rows_give_each_recipes_concentration_over_seeds():
    rows = _rows({"warm": [100.0, 110.0, 120.0]}, {"warm": 13.0})
    for x, r1 in zip(rows, (0.2, 0.4, 0.6)):
        x["R1"], x["R2"] = {1: r1, 6: 0.9, 9: 0.1}, {1: 0.8, 6: 0.9, 9: 0.2}
    (row,) = cmp.structure_rows({"summary": cmp.summarize(rows), "runs": rows})
    assert row["median R1"] == "0.40 ± 0.12" and row['R1 of "1"'] == "0.40 ± 0.12" and row['R2 of "9"'] == "0.20 ± 0.00"


def test_a_run_still_training_is_not_finished(monkeypatch, tmp_path):
    ckpts = {"a": {"epoch": 3, "config": {"epochs": 8}}, "b": {"epoch": 8, "config": {"epochs": 8}}}
    monkeypatch.setattr(cmp, "load_checkpoint", lambda p: ckpts[p.stem])
    assert not cmp.finished(tmp_path / "a.pt") and cmp.finished(tmp_path / "b.pt")


def test_the_shipped_model_and_the_default_recipe_are_the_comparisons_winner():
    """The default TrainConfig, reproduce's avae-transopt and the shipped manifest's avae-transopt
    all use the training search that the shipped comparison (compare.json) chose."""
    from dataclasses import asdict

    from avae_tutorial.training import reproduce as repro
    from avae_tutorial.training.pretrained import pretrained_dir

    winner = json.loads((pretrained_dir() / "compare.json").read_text())["choice"]["winner"]
    assert cmp.recipe_of(asdict(avae.TrainConfig("aligned"))) == winner
    assert asdict(repro.recipes(repro.ReproConfig())["avae-transopt"]) == asdict(cmp.recipe_config(winner, 0))
    shipped = json.loads((pretrained_dir() / "manifest.json").read_text())["models"]
    assert cmp.recipe_of(shipped["avae-transopt"]["config"]) == winner
    assert cmp.recipe_of(shipped[repro.WARM]["config"]) == "warm"
    assert cmp.recipe_of(shipped[repro.CONTROL]["config"]) == "cold"


def test_time_here_adds_this_machines_timing_and_keeps_the_report(tmp_path, monkeypatch):
    """--time-here times the recipes on this machine and appends an entry; the rest is untouched."""
    from avae_tutorial.data import mnist

    x, y = mnist.synthetic_digits(24, canvas=40, seed=0)
    monkeypatch.setattr(mnist, "load_mnist", lambda split, **k: (x, y))
    path = tmp_path / "compare.json"
    path.write_text(json.dumps({"choice": {"winner": "online"}, "runs": [1, 2]}))
    entry = cmp.time_here(path, recipes=("online", "lite"), n=16, repeats=2)
    report = json.loads(path.read_text())
    assert report["choice"] == {"winner": "online"} and report["runs"] == [1, 2]
    assert report["timing_elsewhere"] == [entry] and entry["repeats"] == 2 and len(entry["runs"]) == 2
    for name in ("online", "lite"):
        lo, hi = entry["later_vs_plain_range"][name]
        assert 0 < lo <= entry["later_vs_plain_median"][name] <= hi
    assert entry["conditions"]["cpu"] and entry["bfloat16"]
    assert main(["compare-training", "--time-here", str(path), "--recipes", "online", "--time-n", "16",
                 "--repeats", "1"]) == 0  # fmt: skip
    assert len(json.loads(path.read_text())["timing_elsewhere"]) == 2
