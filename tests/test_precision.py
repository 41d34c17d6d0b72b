"""``precision="auto"`` and its switch, ``AVAE_BFLOAT16``: the tests run in float32 on every CPU
(tests/conftest.py), and the bfloat16 path that a CPU with AMX (or a GPU) takes is tested here on
every CPU, by switching ``"auto"`` to it."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.align import bfloat16_switch, scoring_dtype, search_cost
from avae_tutorial.tools.bench import cost_quality_curve
from avae_tutorial.training.measure import conditions

pytestmark = pytest.mark.usefixtures("single_thread")

AUTO = avae.AlignConfig(restarts=6, steps=2, precision="auto")


def _amx(monkeypatch, present: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: present, raising=False)


def test_the_tests_run_auto_in_float32_whatever_the_cpu(monkeypatch):
    """conftest sets the switch off: even a CPU with AMX scores ``"auto"`` in float32 here."""
    _amx(monkeypatch, True)
    assert bfloat16_switch() == "off"
    assert scoring_dtype(avae.preset("rotation"), "cpu") == torch.float32
    assert search_cost(avae.preset("rotation")) == search_cost(replace(avae.preset("rotation"), precision="float32"))


@pytest.mark.parametrize("value, amx, want", [("off", True, torch.float32), ("on", False, torch.bfloat16),
                                             (" ON ", False, torch.bfloat16), ("auto", True, torch.bfloat16),
                                             ("auto", False, torch.float32), ("", True, torch.bfloat16)])  # fmt: skip
def test_the_switch_decides_what_auto_picks(monkeypatch, value, amx, want):
    monkeypatch.setenv("AVAE_BFLOAT16", value)
    _amx(monkeypatch, amx)
    assert scoring_dtype(AUTO, "cpu") == want
    # an explicit precision is what it says, whatever the switch
    assert scoring_dtype(replace(AUTO, precision="float32"), "cpu") == torch.float32
    assert scoring_dtype(replace(AUTO, precision="bfloat16"), "cpu") == torch.bfloat16


def test_the_switch_unset_is_auto(monkeypatch):
    monkeypatch.delenv("AVAE_BFLOAT16")
    assert bfloat16_switch() == "auto"


def test_a_bad_switch_value_names_the_valid_ones(monkeypatch, tiny_vae, digits):
    monkeypatch.setenv("AVAE_BFLOAT16", "yes")
    with pytest.raises(ValueError, match=r"AVAE_BFLOAT16: expected one of \('auto', 'on', 'off'\), got 'yes'"):
        avae.align(tiny_vae, digits[0][:2], "rotation", AUTO)


def test_bfloat16_path_searches_then_rescores_exactly_in_float32(bfloat16_on, tiny_vae, digits):
    """With ``"auto"`` switched to bfloat16 (as on a CPU with AMX): the search scores in bfloat16,
    the winner and the identity are scored again in float32, and that pass is counted."""
    x = avae.data.mnist.random_rotations(digits[0][:6], seed=7)[0]
    assert scoring_dtype(AUTO, "cpu") == torch.bfloat16
    res = avae.align(tiny_vae, x, "rotation", AUTO, progress=False)
    rough = avae.align(tiny_vae, x, "rotation", replace(AUTO, exact=False), progress=False)
    with torch.no_grad():
        torch.testing.assert_close(res.loss, avae.avae_loss(tiny_vae, x, res.A), rtol=1e-5, atol=1e-3)
        torch.testing.assert_close(res.loss0, avae.avae_loss(tiny_vae, x))
        rough_true = avae.avae_loss(tiny_vae, x, rough.A)
    assert not torch.allclose(rough.loss, rough_true, rtol=1e-5, atol=1e-5)  # scored in bfloat16 indeed
    assert (res.loss <= res.loss0).all()  # never worse than the plain VAE, in float32
    # the restarts, the steps, and the float32 re-score of the winner
    assert (res.passes == AUTO.restarts + AUTO.steps + 1).all() and (res.passes == search_cost(AUTO)).all()
    assert (rough.passes == AUTO.restarts + AUTO.steps).all()


def test_float32_path_scores_exactly_without_a_rescore(tiny_vae, digits):
    """The same search with the switch off (the tests' default): float32 scores, no extra pass, so
    ``exact=False`` changes nothing."""
    x = avae.data.mnist.random_rotations(digits[0][:6], seed=7)[0]
    res = avae.align(tiny_vae, x, "rotation", AUTO, progress=False)
    rough = avae.align(tiny_vae, x, "rotation", replace(AUTO, exact=False), progress=False)
    assert torch.equal(res.loss, rough.loss) and torch.equal(res.A, rough.A)
    assert (res.passes == AUTO.restarts + AUTO.steps).all()


def test_curve_counts_the_rescore_in_bfloat16(bfloat16_on, tiny_vae, digits):
    """The cost/quality curve in bfloat16 (what test_bench.test_curve_rows saw on a CPU with AMX
    before the tests fixed the precision): one pass more per image than in float32."""
    rows = cost_quality_curve(tiny_vae, digits[0][:3], grid=((4, 0), (4, 2)), top_k=1)
    assert [(r["restarts"], r["steps"], r["passes_per_image"]) for r in rows] == [(4, 0, 5), (4, 2, 7)]


def test_bench_conditions_record_the_cpu_and_the_precision(monkeypatch):
    c = conditions("cpu")
    assert c["cpu"] and isinstance(c["cpu_flags"], list)
    assert c["auto_precision"] == "float32" and c["bfloat16_switch"] == "off"
    monkeypatch.setenv("AVAE_BFLOAT16", "on")
    c = conditions("cpu")
    assert c["auto_precision"] == "bfloat16" and c["bfloat16_switch"] == "on"


def test_cpu_model_degrades_without_proc_cpuinfo(monkeypatch):
    """Where ``/proc/cpuinfo`` cannot be read (macOS, Windows): the platform's name, no extensions."""
    import builtins

    from avae_tutorial.training import measure

    real = builtins.open

    def no_cpuinfo(path, *a, **k):
        if str(path) == "/proc/cpuinfo":
            raise FileNotFoundError(path)
        return real(path, *a, **k)

    monkeypatch.setattr(builtins, "open", no_cpuinfo)
    name, flags = measure._cpu_model()
    assert isinstance(name, str) and flags == []
