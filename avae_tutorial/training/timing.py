"""Timing done right: ``time_it``, the median time of a call (warm-up, CUDA
synchronization, repeats), and ``synchronize``; training and chapter 3b use them.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from .._checks import check_positive_int

__all__ = ["time_it", "synchronize"]


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
