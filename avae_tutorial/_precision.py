"""The switch behind ``precision="auto"`` (:func:`avae_tutorial.align.scoring_dtype`): whether this
machine scores the search in bfloat16. Plumbing, not the method: the environment variable
``AVAE_BFLOAT16`` and what the hardware offers. Importable from :mod:`avae_tutorial.align` too.
"""
from __future__ import annotations

import os

import torch

__all__ = ["BFLOAT16_SWITCH", "BFLOAT16_CHOICES", "bfloat16_switch", "fast_bfloat16"]

#: The environment variable that decides what ``precision="auto"`` picks (:func:`fast_bfloat16`).
BFLOAT16_SWITCH = "AVAE_BFLOAT16"
BFLOAT16_CHOICES = ("auto", "on", "off")


def bfloat16_switch() -> str:
    """``$AVAE_BFLOAT16``: ``"auto"`` (unset or empty), ``"on"`` or ``"off"``; any other value is an error."""
    value = os.environ.get(BFLOAT16_SWITCH, "").strip().lower() or "auto"
    if value not in BFLOAT16_CHOICES:
        raise ValueError(f"{BFLOAT16_SWITCH}: expected one of {BFLOAT16_CHOICES}, got {value!r}")
    return value


def fast_bfloat16(device) -> bool:
    """Whether ``precision="auto"`` scores in bfloat16 on ``device``.

    ``$AVAE_BFLOAT16`` decides (:func:`bfloat16_switch`): ``off``, float32 everywhere, so that
    results do not depend on the hardware (the unit tests and the book's cells on a CPU run so);
    ``on``, bfloat16 everywhere (the way to test the bfloat16 path on a CPU without AMX);
    ``auto`` (the default), bfloat16 where this model's passes are measured faster in it than in
    float32: a CUDA GPU that supports it, or a CPU with AMX (matrix tiles); AVX512-BF16 alone is
    not enough. With ``auto`` the chosen transform, and so the losses and passes reported, can
    differ slightly between a CPU with AMX and one without."""
    switch = bfloat16_switch()
    if switch != "auto":
        return switch == "on"
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if dev.type == "cpu":
        return bool(getattr(getattr(torch, "cpu", None), "_is_amx_tile_supported", lambda: False)())
    return False
