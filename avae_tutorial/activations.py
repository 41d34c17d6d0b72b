"""The networks' activation: ELU, computed through ``exp`` on the CPU.

``ELU(x) = x`` for ``x > 0`` and ``exp(x) - 1`` otherwise. torch's CPU kernel evaluates the
second branch with ``expm1`` element by element, without the vector instructions its ``exp``
uses: on the CPUs this package was measured on, one ELU costs more than the convolution before
it (``python -m avae_tutorial bench`` times the model either way). :class:`ELU` computes
``max(x, 0) + (exp(min(x, 0)) - 1)`` instead, which is the same function (exact for ``x > 0``;
within float rounding, a few 1e-8, for ``x <= 0``), with the same gradient, ``1`` or ``exp(x)``,
read from the output as ``min(y, 0) + 1``. On a GPU, and while torch traces a graph (export,
compile), it is ``torch.nn.ELU`` itself.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["ELU"]


class _ExpELU(torch.autograd.Function):
    """ELU with alpha 1 through ``exp``; the backward pass reads the saved output."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = torch.clamp(x, max=0).exp_().sub_(1).add_(torch.clamp(x, min=0))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return grad * torch.clamp(y, max=0).add_(1)


class ELU(nn.ELU):
    """:class:`torch.nn.ELU` (its parameters, repr and state dict), evaluated through ``exp`` on
    the CPU (see the module's docstring). ``inplace`` overwrites the input where no gradient is
    needed, as ``nn.ELU`` does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or self.alpha != 1.0 or torch.compiler.is_compiling() or torch.compiler.is_exporting():
            return super().forward(x)
        if torch.is_grad_enabled() and x.requires_grad:
            return _ExpELU.apply(x)
        neg = torch.clamp(x, max=0).exp_().sub_(1)  # exp(min(x, 0)) - 1
        return (x.clamp_(min=0) if self.inplace else torch.clamp(x, min=0)).add_(neg)
