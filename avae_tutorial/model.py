"""The convolutional VAE of the seed and the affine wrapper around it (chapter 2).

:class:`VAE` is the architecture as the paper describes it; :func:`for_inference` makes the
fast, frozen copy that evaluation and the search use (BatchNorm folded in, channels-last
memory), with the same outputs up to float rounding.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_conv_bn_weights

from ._checks import (check_codes, check_image_shape, check_matrix_shape, check_positive_int, check_same_device,
                      finite_values, image_values, matrix_values, verify)
from .activations import ELU
from .transforms import _invert, _warp

__all__ = ["VAEConfig", "VAE", "AffineVAE", "avae_forward", "generate", "check_inputs", "for_inference", "check_canvas",
           "check_channels", "refresh_inference", "MIN_CANVAS", "MAX_CANVAS", "CHANNELS"]  # fmt: skip

#: The canvases the conv stack is built for: multiples of 4 from 28 (the MNIST digits themselves)
#: to 128 pixels.
MIN_CANVAS, MAX_CANVAS = 28, 128
#: Grey (1) or colour (3) images.
CHANNELS = (1, 3)


@dataclass(frozen=True)
class VAEConfig:
    """What a :class:`VAE` is built from; checkpoints store it (``channels`` may be absent in
    checkpoints written before it existed: 1)."""

    latent_dim: int = 8
    canvas: int = 40
    channels: int = 1


def check_canvas(canvas, name: str = "canvas") -> int:
    """``canvas`` must be a multiple of 4 from 28 to 128 (the sizes the conv stack is built for)."""
    check_positive_int(canvas, name, minimum=MIN_CANVAS)
    if canvas > MAX_CANVAS or canvas % 4:
        raise ValueError(f"{name}: expected a multiple of 4 from {MIN_CANVAS} to {MAX_CANVAS}, got {canvas}")
    return canvas


def check_channels(channels, name: str = "channels") -> int:
    """``channels`` must be 1 (grey) or 3 (RGB)."""
    if isinstance(channels, bool) or not isinstance(channels, int) or channels not in CHANNELS:
        raise ValueError(f"{name}: expected 1 (grey) or 3 (RGB), got {channels!r}")
    return channels


def _sizes(canvas: int) -> tuple[int, int, int, int]:
    s1 = canvas - 4  # 5x5
    s2 = (s1 - 4) // 2 + 1  # 4x4 / 2
    s3 = (s2 - 3) // 2 + 1  # 3x3 / 2
    s4 = s3 - 4  # 5x5
    return s1, s2, s3, s4


def _block(conv: nn.Module, channels: int) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm2d(channels), ELU())


class VAE(nn.Module):
    """Conv VAE: encoder 32-32-64-16 channels (5x5, 4x4/2, 3x3/2, 5x5), mirrored decoder.

    ``encode(x) -> (mu, logvar)`` (``logvar`` is the log-variance), ``decode(z) -> probabilities``.
    ``canvas``: a multiple of 4 from 28 to 128; ``channels``: 1 (grey) or 3 (RGB), each an
    independent Bernoulli probability per pixel. ``VAE(**asdict(config))`` rebuilds one.
    """

    def __init__(self, latent_dim: int = 8, canvas: int = 40, channels: int = 1):
        super().__init__()
        check_positive_int(latent_dim, "latent_dim")
        check_canvas(canvas)
        check_channels(channels)
        self.config = VAEConfig(latent_dim, canvas, channels)
        s1, s2, s3, s4 = _sizes(canvas)
        self._flat = (16, s4, s4)
        n = 16 * s4 * s4
        self.encoder = nn.Sequential(  # 40x40 =>
            _block(nn.Conv2d(channels, 32, 5), 32),  # 36x36
            _block(nn.Conv2d(32, 32, 4, stride=2), 32),  # 17x17
            _block(nn.Conv2d(32, 64, 3, stride=2), 64),  # 8x8
            _block(nn.Conv2d(64, 16, 5), 16),  # 4x4
            nn.Flatten(),
        )
        self.pose_net: nn.Module | None = None  # an optional amortized first guess (pose.py)
        self.to_mu = nn.Linear(n, latent_dim)
        self.to_logvar = nn.Linear(n, latent_dim)
        self.from_z = nn.Sequential(nn.Linear(latent_dim, n), ELU())
        self.decoder = nn.Sequential(  # 4x4 =>
            _block(nn.ConvTranspose2d(16, 64, 5), 64),  # 8x8
            _block(nn.ConvTranspose2d(64, 32, 3, stride=2, output_padding=s2 - (2 * s3 + 1)), 32),  # 17x17
            _block(nn.ConvTranspose2d(32, 32, 4, stride=2, output_padding=s1 - (2 * s2 + 2)), 32),  # 36x36
            nn.ConvTranspose2d(32, channels, 5),  # 40x40 logits
        )

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def canvas(self) -> int:
        return self.config.canvas

    @property
    def channels(self) -> int:
        return self.config.channels

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)  # (B, 16*s4*s4)
        return self.to_mu(h), self.to_logvar(h)  # (B, L), (B, L)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.from_z(z).view(-1, *self._flat))  # (B, C, canvas, canvas)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor, sample: bool = False):
        """``x -> (x_hat, mu, logvar)``; ``z = mu`` unless ``sample`` (reparameterization)."""
        check_inputs(self, x)
        return avae_forward(self, x, None, sample)

    def config_dict(self) -> dict:
        return asdict(self.config)


def check_inputs(vae, x: torch.Tensor, A: torch.Tensor | None = None) -> None:
    """What every call into the forward pass validates: images on the model's device, of its
    canvas and channels, finite and in [0, 1]; matrices ``A``, one per image, on that device,
    finite and invertible (a clear error, not a NaN). One read of the device
    (:func:`~avae_tutorial._checks.verify`), however much it checks."""
    check_same_device(vae, x)
    check_image_shape(x, canvas=vae.canvas, channels=getattr(vae, "channels", 1))
    if A is not None:
        check_same_device(vae, check_matrix_shape(A, batch=x.shape[0]), name="matrices A")
    verify(image_values(x), None if A is None else matrix_values(A))


def avae_forward(vae, x: torch.Tensor, A: torch.Tensor | None = None, sample: bool = False):
    """The AVAE's forward pass, its inputs taken as checked: ``(x_hat, mu, logvar)`` with
    ``x_hat = warp(decode(z), A^-1)``, ``(mu, logvar) = encode(warp(x, A))`` and ``z = mu``, or
    ``z = mu + sigma * eps`` when ``sample``. ``A=None`` is the identity (the plain VAE)."""
    mu, logvar = vae.encode(x if A is None else _warp(x, A))  # (B, L), (B, L)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
    x_hat = vae.decode(z)  # (B, C, H, W)
    return (x_hat if A is None else _warp(x_hat, _invert(A))), mu, logvar


def generate(vae: VAE, z: torch.Tensor, A: torch.Tensor | None = None) -> torch.Tensor:
    """Images ``(B, C, canvas, canvas)`` decoded from codes ``z (B, L)`` at poses ``A (B, 2, 3)``:
    ``warp(decode(z), A^-1)``, the picture the model reads as ``z`` when it is warped by ``A``
    (:func:`align`'s convention; ``A=None``: the identity). The model's mode is left as it is."""
    check_same_device(vae, check_codes(z, vae.latent_dim), name="codes z")
    if A is not None:
        check_same_device(vae, check_matrix_shape(A, batch=len(z), of="one per code"), name="matrices A")
    verify(finite_values(z, "z"), None if A is None else matrix_values(A))
    return vae.decode(z) if A is None else _warp(vae.decode(z), _invert(A))


class AffineVAE(nn.Module):
    """``x_hat = warp(decode(z(warp(x, A))), A^-1)``: a VAE wrapped in an affine warp and its inverse.

    The forward pass takes the transform explicitly; choosing it is :func:`avae_tutorial.align`'s job.
    """

    def __init__(self, vae: VAE):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, A: torch.Tensor | None = None, sample: bool = False):
        """``(x, A) -> (x_hat, mu, logvar)``; ``A=None`` is the identity (the plain VAE)."""
        check_inputs(self.vae, x, A)
        return avae_forward(self.vae, x, A, sample)


# ---------------------------------------------------------------- the fast, frozen copy
def for_inference(model: nn.Module, fold: bool = True) -> nn.Module:
    """A frozen copy of ``model`` for evaluation only: eval mode, no weight gradients, and for a
    :class:`VAE` (unless ``fold=False``: the layers as the user holds them) each BatchNorm folded
    into the convolution before it, the ELUs in place and channels-last memory. Outputs equal
    ``model.eval()``'s up to float rounding; ``model`` itself is not touched. Other modules are
    copied as they are.
    """
    m = copy.deepcopy(model).eval()
    if fold and isinstance(m, VAE):
        for seq in (m.encoder, m.decoder):
            for i, block in enumerate(seq):
                if isinstance(block, nn.Sequential) and isinstance(block[1], nn.BatchNorm2d):
                    conv = fuse_conv_bn_eval(block[0], block[1], transpose=isinstance(block[0], nn.ConvTranspose2d))
                    seq[i] = nn.Sequential(conv, ELU(inplace=True))
        m.to(memory_format=torch.channels_last)
    return m.requires_grad_(False)


def refresh_inference(frozen: nn.Module, model: nn.Module) -> nn.Module:
    """Bring ``frozen`` (made by :func:`for_inference` from ``model``) up to ``model``'s current
    weights, in place: each BatchNorm folded again into the convolution before it, the other
    weights copied. No module is built or copied, so the training loop can search on the
    fast, folded model after every optimizer step at the cost of a few small tensor copies."""
    with torch.no_grad():
        target = frozen.state_dict()
        for name, value in _folded_state(model).items():
            target[name].copy_(value)
    return frozen


def _folded_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state as :func:`for_inference`'s copy holds it (BatchNorms folded)."""
    state = dict(model.state_dict())
    if not isinstance(model, VAE):
        return state
    for part in ("encoder", "decoder"):
        for i, block in enumerate(getattr(model, part)):
            if isinstance(block, nn.Sequential) and isinstance(block[1], nn.BatchNorm2d):
                conv, bn = block[0], block[1]
                w, b = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps,
                                            bn.weight, bn.bias, transpose=isinstance(conv, nn.ConvTranspose2d))
                prefix = f"{part}.{i}."
                state = {k: v for k, v in state.items() if not k.startswith(prefix)}
                state[prefix + "0.weight"], state[prefix + "0.bias"] = w, b
    return state
