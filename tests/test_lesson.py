"""avae_tutorial.lesson: the timing and memory helpers of chapter 3."""
from __future__ import annotations

import time

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.lesson import layer_activations, saved_for_backward, time_it
from avae_tutorial.model import for_inference

pytestmark = pytest.mark.usefixtures("single_thread")


def test_time_it_warms_up_then_repeats():
    calls = []
    t = time_it(lambda: calls.append(1), "cpu", repeats=3, warmup=2)
    assert len(calls) == 5 and t >= 0


def test_time_it_is_the_median(monkeypatch):
    ticks = iter([0.0, 1.0, 1.0, 11.0, 11.0, 13.0])  # runs of 1 s, 10 s and 2 s
    monkeypatch.setattr(time, "perf_counter", lambda: next(ticks))
    assert time_it(lambda: None, "cpu", repeats=3, warmup=0) == 2.0


def test_time_it_measures_real_time():
    assert time_it(lambda: time.sleep(0.01), "cpu", repeats=2, warmup=0) >= 0.01


@pytest.mark.parametrize("repeats,warmup", [(0, 1), (2, -1), (1.5, 0)])
def test_time_it_rejects_bad_counts(repeats, warmup):
    with pytest.raises(ValueError):
        time_it(lambda: None, "cpu", repeats=repeats, warmup=warmup)


def test_layer_activations_reads_the_vae_shapes(tiny_vae):
    x = torch.rand(1, 1, tiny_vae.canvas, tiny_vae.canvas)
    with torch.no_grad():
        rows = layer_activations(tiny_vae, lambda: tiny_vae(x))
    first = rows[0]
    assert first["layer"] == "encoder.0.0"
    assert first["shape"] == (1, 32, tiny_vae.canvas - 4, tiny_vae.canvas - 4)
    assert first["inputs"] == tiny_vae.canvas**2
    assert first["outputs"] == 32 * (tiny_vae.canvas - 4) ** 2
    assert rows[-1]["shape"] == (1, 1, tiny_vae.canvas, tiny_vae.canvas)
    assert max(r["outputs"] for r in rows) == first["outputs"]


def test_layer_activations_removes_its_hooks(tiny_vae):
    x = torch.rand(1, 1, tiny_vae.canvas, tiny_vae.canvas)
    with torch.no_grad():
        layer_activations(tiny_vae, lambda: tiny_vae(x))
    assert all(not m._forward_hooks for m in tiny_vae.modules())
    with pytest.raises(ValueError):
        layer_activations(tiny_vae, lambda: None)


def test_saved_for_backward_counts_bytes():
    a = torch.rand(10, requires_grad=True)
    assert saved_for_backward(lambda: a.exp()) == 10 * 4  # exp saves its result
    with torch.no_grad():
        assert saved_for_backward(lambda: a.exp()) == 0
    assert saved_for_backward(lambda: a.detach().exp()) == 0


def test_no_grad_scoring_saves_nothing(tiny_vae):
    x = torch.rand(2, 1, tiny_vae.canvas, tiny_vae.canvas)
    p = torch.zeros(2, 1, requires_grad=True)
    model = for_inference(tiny_vae)

    def loss():
        return avae.avae_loss(model, x, avae.rotation(p[:, 0]), check=False)

    assert saved_for_backward(loss) > 2 * 32 * (tiny_vae.canvas - 4) ** 2 * 4
    with torch.no_grad():
        assert saved_for_backward(loss) == 0
