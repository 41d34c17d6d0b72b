"""What every chapter's first cells use: the run mode, the device, and "load the shipped model or train it".

``AVAE_MODE`` is the one switch: ``full`` (default; what readers see) or ``quick`` (small
subsets and few steps, for CI).
"""
from __future__ import annotations

import os
import pprint
import sys
from dataclasses import replace
from types import SimpleNamespace

import torch

from .._checks import default_device  # noqa: F401 - the chapters' one device choice
from ..model import VAE

__all__ = ["mode", "pick", "sizes", "default_device", "needs_custom_widget_manager", "setup", "pretrained_or_train", "rotation_rows"]

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


WIDTH = 88  # the longest line of code or printed output that a chapter's page shows


class Sizes(SimpleNamespace):
    """A chapter's sizes, read as attributes (``S.n_test``); printed as ``name=value`` entries.

    The entries share a line while it stays within ``WIDTH`` characters, so a few sizes print
    on one line; a value too long for a line of its own is wrapped by ``pprint``.
    """

    def __repr__(self) -> str:
        lines: list[str] = []
        for k, v in vars(self).items():
            text = f"{k}={v!r}"
            if len(text) >= WIDTH:  # wrapped, continued under the value's first character
                pad = " " * (len(k) + 1)
                wrapped = pprint.pformat(v, width=WIDTH - len(pad) - 1, compact=True)
                text = f"{k}=" + wrapped.replace("\n", "\n" + pad)
            fits = lines and len(lines[-1]) + len(text) + 3 <= WIDTH  # ", " and a ","
            if fits and "\n" not in lines[-1] + text:
                lines[-1] += ", " + text
            else:
                lines.append(text)
        return ",\n".join(lines)


def sizes(**choices: tuple) -> Sizes:
    """A chapter's sizes chosen in one place: every keyword is a ``(quick, full)`` pair.

    ``S = sizes(n_test=(100, 1000), step_deg=(45, 15))`` gives ``S.n_test == 1000`` and
    ``S.step_deg == 15``, or the first of each pair where ``AVAE_MODE=quick``.
    """
    bad = [k for k, v in choices.items() if not (isinstance(v, tuple) and len(v) == 2)]
    if bad:
        got = ", ".join(f"{k}={choices[k]!r}" for k in bad)
        raise ValueError(f"sizes: expected a (quick, full) pair for every name, got {got}")
    i = 0 if mode() == "quick" else 1
    return Sizes(**{k: v[i] for k, v in choices.items()})


def needs_custom_widget_manager() -> bool:
    """Whether Colab needs its custom widget manager to show the installed ipywidgets.

    Colab renders ipywidgets 7 (it ships 7.7.1) itself; to Colab's own manager the widgets of
    ipywidgets 8 and later are third-party widgets, shown only by its custom widget manager.
    """
    try:
        import ipywidgets
    except ImportError:
        return False
    major = ipywidgets.__version__.split(".")[0]
    return not major.isdigit() or int(major) >= 8


def setup(verbose: bool = True) -> tuple[str, str]:
    """A chapter's first call: ``(device, mode)``, and on Colab the live widgets switched on.

    On Colab, Colab's custom widget manager is enabled where the installed ipywidgets needs it
    (:func:`needs_custom_widget_manager`). A Colab runtime without a GPU is told how to pick
    the quick mode (full mode trains nothing but aligns thousands of digits, which takes
    minutes on a CPU).

    On a CPU, searches score in float32 (``AVAE_BFLOAT16=off`` unless set before): with
    ``precision="auto"`` a CPU with AMX would score them in bfloat16 and the chapters' printed
    losses, angles and passes would differ from a CPU without it (on 256 rotated test digits,
    ``vae-upright``'s default search: mean loss 0.07 nats higher, one pass more per digit, 79
    angles moved by more than 1 degree). In float32 they agree to float32 rounding, below the
    printed digits: the same search with oneDNN and ATen held to AVX2 (as on a CPU without AVX-512
    or AMX) gave a mean loss within 0.00001 nats, the same passes, every angle within 0.01 degree.
    On a GPU ``"auto"`` keeps bfloat16 where it is supported: it is what the GPU chapter measures.
    """
    device, run_mode = default_device(), mode()
    if device == "cpu":
        from ..align import BFLOAT16_SWITCH

        os.environ.setdefault(BFLOAT16_SWITCH, "off")  # also for the processes a chapter starts
    from .plotting import record_figure_text

    record_figure_text()  # each figure's PNG records its smallest text (the site checks it is legible)
    colab = sys.modules.get("google.colab")
    if colab is not None and needs_custom_widget_manager():
        try:
            from google.colab import output

            output.enable_custom_widget_manager()
        except (ImportError, AttributeError):  # an old Colab: the widgets fall back to static output
            pass
    if verbose:
        from ..align import bfloat16_switch

        print(f"device: {device}, mode: {run_mode}, AVAE_BFLOAT16={bfloat16_switch()}")
        if colab is not None and device == "cpu" and run_mode == "full":
            print("No GPU in this runtime: choose Runtime > Change runtime type > GPU, or run "
                  "`import os; os.environ['AVAE_MODE'] = 'quick'` before this cell for small experiments.")
    return device, run_mode


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
    from ..data.mnist import load_mnist
    from ..training.pretrained import load_history, load_pretrained, pretrained_names
    from ..training.reproduce import ReproConfig, recipes
    from ..training.peer import PeerConfig
    from ..training.peer_fit import fit_peer
    from ..training.train import fit

    device = device or default_device()
    if not retrain and name in pretrained_names():
        return load_pretrained(name, device=device), load_history(name)
    all_recipes = recipes(ReproConfig())
    if name not in all_recipes:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(sorted(all_recipes))}")
    cfg = all_recipes[name]
    if mode() == "quick":
        cfg = replace(cfg, epochs=quick_epochs, train_limit=quick_train_limit, test_limit=min(cfg.test_limit, 256))
    train_fn = fit_peer if isinstance(cfg, PeerConfig) else fit
    return train_fn(cfg, load_mnist("train"), load_mnist("test"), device=device)


def rotation_rows(models: dict, shipped: bool = True, digits: int = 4, angles=(0, 60, 120),
                  device: str | None = None) -> list[dict]:  # fmt: skip
    """Loss per angle of ``models`` (name -> VAE), without and with the search.

    For the shipped models (``shipped``), the package's evaluation (``rotation.csv``: the
    ``"default"`` preset, 150 test digits per angle); for models trained here, measured now on
    ``digits`` test digits at ``angles`` (degrees) with the ``"fast"`` preset. Rows as
    :func:`~avae_tutorial.training.evaluate.loss_per_angle`'s, with the model's name.
    """
    from ..data.mnist import load_mnist
    from ..training.evaluate import loss_per_angle
    from ..training.pretrained import load_results

    if shipped:
        return [r for r in load_results("rotation.csv") if r["model"] in models]
    x = load_mnist("test", limit=digits)[0].to(device or default_device())
    return [{"model": name, **r} for name, vae in models.items() for aligned in (False, True)
            for r in loss_per_angle(vae, x, list(angles), aligned=aligned, config="fast", progress=False)]  # fmt: skip
