"""What every chapter's first cells use: the run mode, the device, and "load the shipped model or train it".

``AVAE_MODE`` is the one switch: ``full`` (default; what readers see) or ``quick`` (small
subsets and few steps, for CI).
"""
from __future__ import annotations

import os
from dataclasses import replace

import torch

from .model import VAE

__all__ = ["mode", "pick", "default_device", "pretrained_or_train"]

MODES = ("full", "quick")


def mode() -> str:
    """``"full"`` or ``"quick"``, from ``$AVAE_MODE`` (default ``"full"``)."""
    value = os.environ.get("AVAE_MODE", "full").strip().lower() or "full"
    if value not in MODES:
        raise ValueError(f"AVAE_MODE: expected one of {MODES}, got {value!r}")
    return value


def pick(quick, full):
    """``quick`` in quick mode, ``full`` otherwise: ``N = pick(quick=64, full=2000)``."""
    return quick if mode() == "quick" else full


def default_device() -> str:
    """``"cuda"`` when a GPU is available, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def pretrained_or_train(
    name: str,
    retrain: bool = False,
    device: str | None = None,
    quick_train_limit: int = 512,
    quick_epochs: int = 1,
) -> tuple[VAE, dict]:
    """The shipped model ``name`` and its history, or (``retrain`` or none shipped) train it now.

    Training uses the same recipe as ``python -m avae_tutorial reproduce``; in quick mode it is
    shrunk to ``quick_epochs`` epochs on ``quick_train_limit`` digits.
    """
    from .data import load_mnist
    from .pretrained import load_history, load_pretrained, pretrained_names
    from .reproduce import ReproConfig, recipes
    from .train import fit

    device = device or default_device()
    if not retrain and name in pretrained_names():
        return load_pretrained(name, device=device), load_history(name)
    all_recipes = recipes(ReproConfig())
    if name not in all_recipes:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(sorted(all_recipes))}")
    cfg = all_recipes[name]
    if mode() == "quick":
        cfg = replace(cfg, epochs=quick_epochs, train_limit=quick_train_limit, test_limit=min(cfg.test_limit, 256))
    return fit(cfg, load_mnist("train"), load_mnist("test"), device=device)
