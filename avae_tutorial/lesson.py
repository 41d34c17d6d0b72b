"""Small measuring tools for chapter 3's lesson on the batched search.

``time_it``: the median time of a call, done right (warm-up, CUDA synchronization,
repeats). ``layer_activations``: the size of every layer's input and output, from the
model's own shapes. ``saved_for_backward``: the bytes autograd keeps for a backward
pass.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch
from torch import nn

from ._checks import check_positive_int

__all__ = ["time_it", "synchronize", "layer_activations", "saved_for_backward"]


def synchronize(device) -> None:
    """Wait for the GPU to finish queued work (a no-op elsewhere): before reading a clock."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_it(fn: Callable[[], object], device="cpu", repeats: int = 5,
            warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` calls, after ``warmup``.

    On a CUDA device the GPU runs asynchronously: the clock is read only after
    ``torch.cuda.synchronize``, before and after each call. The warm-up calls (untimed)
    pay for one-time costs: memory allocation, kernel selection, lazy initialization.
    The median of several runs ignores the occasional slow one (another process).
    """
    check_positive_int(repeats, "repeats")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup: expected an int >= 0, got {warmup!r}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


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
