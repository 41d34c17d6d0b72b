"""Shared fixtures: tiny synthetic data, tiny models and a stub "VAE" whose loss has a known minimum.

Everything here runs on the CPU in milliseconds; nothing touches the network or the shipped models.

``precision="auto"`` scores in float32 in every test (``AVAE_BFLOAT16=off``, see
:func:`avae_tutorial.align.fast_bfloat16`): the passes and losses the tests count and compare do
not depend on whether the CPU has AMX. The bfloat16 path is tested on every CPU all the same:
explicitly (``precision="bfloat16"``), or with the ``bfloat16_on`` fixture, under which ``"auto"``
picks it.
"""
from __future__ import annotations

import os
import sys

import matplotlib
import pytest
import torch
import torch.nn as nn

import avae_tutorial as avae

matplotlib.use("Agg")  # figures are drawn off-screen, in this process only

CANVAS = 28  # the smallest canvas the VAE accepts: the fastest models

# Set at import, not in a fixture: it holds at collection too, and in the processes tests start
# (the command line, torchrun); whatever the shell that started pytest had set.
os.environ["AVAE_BFLOAT16"] = "off"


@pytest.fixture
def bfloat16_on(monkeypatch):
    """``precision="auto"`` picks bfloat16 in this test, on every CPU (as on one with AMX, or a GPU)."""
    monkeypatch.setenv("AVAE_BFLOAT16", "on")


@pytest.fixture
def bfloat16_auto(monkeypatch):
    """``precision="auto"`` decides by the hardware in this test, as it does outside the tests."""
    monkeypatch.setenv("AVAE_BFLOAT16", "auto")


@pytest.fixture(autouse=True)
def _close_figures():
    """Every figure a test drew is closed after it."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """One intra-op thread for the whole run (restored after): tiny tensors gain nothing from more,
    and on a shared CPU extra threads only wait for each other (a widget update took 3 s on two
    threads of a loaded two-core machine, 0.35 s on one)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread for a module's tests, whatever an earlier module left (restored after).
    Use with ``pytestmark = pytest.mark.usefixtures("single_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """32 synthetic digits ``(32, 1, 28, 28)`` in [0, 1] and their labels."""
    return avae.data.mnist.synthetic_digits(32, canvas=CANVAS, seed=0)


@pytest.fixture
def tiny_vae() -> avae.VAE:
    """An untrained latent-2 VAE on the 28x28 canvas, in eval mode, seeded."""
    torch.manual_seed(0)
    return avae.VAE(latent_dim=2, canvas=CANVAS).eval()


class TemplateVAE(nn.Module):
    """A stub "VAE" that ignores its input and always decodes one fixed template.

    Its AVAE loss is ``BCE(x, warp(template, A^-1))`` (the KL is zero), so for
    ``x = warp(template, rotation(theta))`` the search must find ``A = rotation(-theta)``.
    """

    def __init__(self, template: torch.Tensor):
        super().__init__()
        self.register_buffer("template", template.clamp(0.02, 0.98))  # (1, 1, H, W)
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the module a device
        self.canvas = template.shape[-1]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zero = torch.zeros(len(x), 1, dtype=x.dtype, device=x.device)
        return zero, zero  # mu = 0, logvar = 0: KL = 0

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.template.expand(len(z), -1, -1, -1)


@pytest.fixture(scope="session")
def seven() -> torch.Tensor:
    """One synthetic "7" ``(1, 1, 28, 28)``: no rotational symmetry, so its orientation is unique."""
    x, y = avae.data.mnist.synthetic_digits(40, canvas=CANVAS, seed=1)
    return x[(y == 7).nonzero()[0]]


@pytest.fixture
def template_vae(seven) -> TemplateVAE:
    return TemplateVAE(seven)
