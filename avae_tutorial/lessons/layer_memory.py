"""How much memory a forward pass needs per row (chapter 3b, *chunk size, speed and memory*).

``layer_activations``: the size of every layer's input and output, from the model's own
shapes. ``saved_for_backward``: the bytes autograd keeps for a backward pass.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["layer_activations", "saved_for_backward"]


def layer_activations(model: nn.Module, run: Callable[[], object]) -> list[dict]:
    """Input and output sizes of every layer with weights of ``model`` during ``run()``.

    Rows ``{layer, shape, inputs, outputs}`` in call order: ``shape`` is the output's
    shape, ``inputs`` and ``outputs`` count values (all rows of the batch that ``run``
    evaluates; run it on one row for the per-row sizes). Layers with weights
    (convolutions, linear maps, normalizations) make new tensors; activations may run
    in place.
    """
    rows, hooks = [], []
    names = {m: n for n, m in model.named_modules()}

    def hook(module, args, out):
        ins = sum(a.numel() for a in args if isinstance(a, torch.Tensor))
        rows.append({"layer": names[module], "shape": tuple(out.shape), "inputs": ins,
                     "outputs": out.numel()})

    for m in model.modules():
        if any(True for _ in m.parameters(recurse=False)):
            hooks.append(m.register_forward_hook(hook))
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    if not rows:
        raise ValueError("run: no layer with weights of model was called")
    return rows


def saved_for_backward(fn: Callable[[], object]) -> int:
    """Bytes of the tensors that autograd saves for a backward pass while ``fn()`` runs.

    Counted with :func:`torch.autograd.graph.saved_tensors_hooks`; ``0`` under
    ``torch.no_grad()`` or when nothing requires a gradient. A tensor saved twice counts
    twice.
    """
    total = 0

    def pack(t: torch.Tensor):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total
