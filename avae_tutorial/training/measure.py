"""Measuring tools for the benchmarks (chapter 3): time, peak memory, and the machine they ran on.

``timed``: the result, seconds and peak memory of one call. ``PeakMemory``: peak memory above
the level at entry. ``plain_seconds``: the unit of cost, one plain evaluation. ``conditions``:
where and under what load figures were measured; ``hardware``: the same in a few words.
"""
from __future__ import annotations

import math
import os
import platform
import threading
import time

import torch

from ..align import AlignConfig, bfloat16_switch, scoring_dtype
from ..loss import chunked_loss
from ..model import VAE, for_inference
from .timing import synchronize, time_it

__all__ = ["PeakMemory", "timed", "plain_seconds", "conditions", "hardware", "passes_summary"]


class PeakMemory:
    """Peak memory (MiB) above the level at entry: CUDA allocator statistics on a GPU, else the
    process' resident set sampled every 2 ms from ``/proc/self/statm`` (``None`` where absent)."""

    def __init__(self, device: torch.device):
        self.device, self.mib = torch.device(device), None
        self._stop, self._thread, self._base, self._peak = threading.Event(), None, 0, 0

    @staticmethod
    def _rss() -> int | None:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return None

    def _poll(self):
        while not self._stop.wait(0.002):
            self._peak = max(self._peak, self._rss() or 0)

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self._rss() is not None:
            self._base = self._peak = self._rss()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.mib = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, self._rss() or 0)
            self.mib = (self._peak - self._base) / 2**20


def timed(fn, device) -> tuple[object, float, float | None]:
    """``(result, seconds, peak MiB)`` of one call of ``fn()``."""
    synchronize(device)
    with PeakMemory(device) as mem:
        t0 = time.perf_counter()
        out = fn()
        synchronize(device)
        seconds = time.perf_counter() - t0
    return out, seconds, mem.mib


def plain_seconds(vae: VAE, x: torch.Tensor, chunk: int, repeats: int = 3) -> float:
    """Median seconds of one plain evaluation of ``x`` (``z = mu``, no gradients) with the model
    in eval mode (:func:`for_inference`'s copy, unfolded: as a user holds it), after a warm-up:
    the unit of cost. The caller's model is left as it is."""
    model = for_inference(vae, fold=False)
    return time_it(lambda: chunked_loss(model, x, chunk=chunk), x.device, repeats=repeats)


def standard_error(v: torch.Tensor) -> float:
    """Standard error of the mean of ``v`` (one value per independent unit); NaN below two values.

    Computed in ``v``'s dtype: pass a float64 tensor where float32 rounding would matter."""
    return float(v.std() / math.sqrt(len(v))) if len(v) > 1 else math.nan


def passes_summary(passes: torch.Tensor) -> dict:
    """``{passes_per_image, passes_sd, passes_min, passes_max}`` of VAE passes per image."""
    p = passes.double().flatten()
    return {"passes_per_image": float(p.mean()), "passes_sd": float(p.std(correction=0)),
            "passes_min": int(p.min()), "passes_max": int(p.max())}  # fmt: skip


def _cpu_model() -> tuple[str, list[str]]:
    """The CPU's model name and its vector extensions (AVX, AMX, ...), from ``/proc/cpuinfo``."""
    name, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and name in ("", platform.machine(), platform.processor()):
                    name = value.strip()
                elif key.strip() in ("flags", "Features") and not flags:
                    flags = sorted(v for v in value.split() if v.startswith(("avx", "amx", "sse4", "fma", "asimd", "sve")))
    except OSError:
        pass
    return name, flags


def hardware(device: torch.device) -> str:
    """The device in a few words: the GPU's name, or the CPU's model and the threads used."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"{_cpu_model()[0]} CPU, {torch.get_num_threads()} threads"


def conditions(device: torch.device) -> dict:
    """Where and under what load the figures were measured: the device, the CPU's model and vector
    extensions (``avx2``, ``avx512_bf16``, ``amx_bf16``, ...), threads, load, torch, and what
    ``precision="auto"`` picks here (``auto_precision``) under ``$AVAE_BFLOAT16``
    (``bfloat16_switch``; see :func:`avae_tutorial.align.fast_bfloat16`)."""
    dev = torch.device(device)
    cpu, flags = _cpu_model()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu,
            "cpu": cpu, "cpu_flags": flags, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "load_avg_1min": load, "torch": torch.__version__,
            "auto_precision": str(scoring_dtype(AlignConfig(precision="auto"), dev)).removeprefix("torch."),
            "bfloat16_switch": bfloat16_switch(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}  # fmt: skip
