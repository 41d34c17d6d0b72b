"""avae_tutorial.lessons.layer_memory: the memory of a forward pass per row."""
from __future__ import annotations

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.lessons.layer_memory import layer_activations, saved_for_backward
from avae_tutorial.model import for_inference

pytestmark = pytest.mark.usefixtures("single_thread")


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
        return avae.avae_loss(model, x, avae.rotation(p[:, 0]))

    assert saved_for_backward(loss) > 2 * 32 * (tiny_vae.canvas - 4) ** 2 * 4
    with torch.no_grad():
        assert saved_for_backward(loss) == 0
