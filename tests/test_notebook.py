"""What every chapter's first cell uses: the run mode, the device, the shipped-or-trained model."""
from __future__ import annotations

import pytest

import avae_tutorial as avae
from avae_tutorial.lessons import notebook


@pytest.mark.parametrize("value, want", [(None, "full"), ("", "full"), ("quick", "quick"), (" Full ", "full")])
def test_mode_reads_the_environment(monkeypatch, value, want):
    if value is None:
        monkeypatch.delenv("AVAE_MODE", raising=False)
    else:
        monkeypatch.setenv("AVAE_MODE", value)
    assert notebook.mode() == want
    assert notebook.pick(quick=1, full=2) == (1 if want == "quick" else 2)


@pytest.mark.parametrize("value, want", [("quick", 64), ("full", 1000)])
def test_sizes_are_chosen_in_one_place(monkeypatch, value, want):
    monkeypatch.setenv("AVAE_MODE", value)
    S = notebook.sizes(n=(64, 1000), angles=((0, 90), (0, 45, 90)))
    assert S.n == want and len(S.angles) == (2 if value == "quick" else 3)
    assert repr(S).startswith(f"n={want}, angles=(0, ")


def test_sizes_print_on_lines_that_fit_the_page(monkeypatch):
    monkeypatch.setenv("AVAE_MODE", "full")
    few = notebook.sizes(n_test=(100, 1000), step_deg=(45, 15))
    assert repr(few) == "n_test=1000, step_deg=15"
    grid = tuple((r, s) for r in (6, 12, 24, 48) for s in (0, 1, 3, 6))
    many = notebook.sizes(**{f"n_{i}": (1, 1000 + i) for i in range(12)}, grid=((), grid))
    lines = repr(many).splitlines()
    assert len(lines) > 2 and all(len(line) <= notebook.WIDTH for line in lines), lines
    assert eval(f"dict({repr(many)})") == vars(many)  # still name=value, entry by entry


def test_sizes_name_the_entry_that_is_not_a_pair():
    with pytest.raises(ValueError, match=r"expected a \(quick, full\) pair for every name, got n=64"):
        notebook.sizes(n=64, m=(1, 2))


def test_a_bad_mode_names_the_valid_ones(monkeypatch):
    monkeypatch.setenv("AVAE_MODE", "fast")
    with pytest.raises(ValueError, match=r"AVAE_MODE: expected one of \('full', 'quick'\), got 'fast'"):
        notebook.mode()


def test_setup_returns_the_device_and_mode(monkeypatch, capsys):
    monkeypatch.setenv("AVAE_MODE", "quick")
    monkeypatch.setattr(avae.lessons.notebook, "default_device", lambda: "cpu")
    assert notebook.setup() == ("cpu", "quick")
    assert "device: cpu, mode: quick" in capsys.readouterr().out


@pytest.mark.parametrize("device, before, want", [("cpu", None, "off"), ("cpu", "on", "on"), ("cuda", None, None)])
def test_setup_fixes_the_precision_on_a_cpu(monkeypatch, capsys, device, before, want):
    """On a CPU the chapters' searches score in float32 (the same figures with AMX or without),
    unless the reader set ``AVAE_BFLOAT16``; on a GPU ``"auto"`` is left to decide."""
    if before is None:
        monkeypatch.delenv("AVAE_BFLOAT16", raising=False)
    else:
        monkeypatch.setenv("AVAE_BFLOAT16", before)
    monkeypatch.setattr(avae.lessons.notebook, "default_device", lambda: device)
    notebook.setup()
    import os

    assert os.environ.get("AVAE_BFLOAT16") == want
    assert f"AVAE_BFLOAT16={want or 'auto'}" in capsys.readouterr().out


def test_a_shipped_model_is_loaded_not_trained(monkeypatch):
    monkeypatch.setattr(avae.training.train, "fit", lambda *a, **k: pytest.fail("trained although the model is shipped"))
    vae, history = notebook.pretrained_or_train("vae-upright", device="cpu")
    assert not vae.training and vae.latent_dim == 8 and history["test_loss"]


def test_unknown_model_names_the_recipes():
    with pytest.raises(ValueError, match="unknown model 'vae-sideways'; valid names: amortized-peer, avae-transopt"):
        notebook.pretrained_or_train("vae-sideways", retrain=True)
