"""Rotate a digit and watch what each model makes of it (chapter 2).

Two versions of the same view, the rotated input, the plain VAE's reconstruction and the AVAE's
(the same VAE wrapped in the warp that :func:`avae_tutorial.align` finds), with both losses:

* :func:`rotation_explorer`: live ipywidgets controls (Jupyter, Colab), computed on each change;
* :func:`rotation_frames` + :func:`rotation_animation`: frames computed once and played by a
  JavaScript slider, for pages without a kernel (the built book).

Angles are degrees here (they face the reader); a positive angle turns the digit
counter-clockwise, as :func:`avae_tutorial.rotation` does.
"""
from __future__ import annotations

import base64
import html
import io
import math
import re
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.animation import FuncAnimation
from matplotlib.figure import Figure

from ..align import AlignConfig, align
from ..loss import loss_terms
from ..model import VAE, for_inference
from .plotting import imshow, to_images
from ..transforms import rotation, warp

__all__ = ["RotationFrames", "rotation_frames", "rotation_animation", "RotationExplorer", "rotation_explorer"]


@dataclass
class RotationFrames:
    """One digit at ``F`` angles. Images ``(F, H, W)`` in [0, 1]; losses ``(F,)`` in nats.

    ``found_deg`` is the rotation (degrees, in [-180, 180)) that the search applied to each
    rotated input; undoing an input turned by ``a`` degrees takes ``-a``.
    """

    angles_deg: np.ndarray
    inputs: np.ndarray
    vae_rec: np.ndarray
    avae_rec: np.ndarray
    vae_loss: np.ndarray
    avae_loss: np.ndarray
    found_deg: np.ndarray

    def __len__(self) -> int:
        return len(self.angles_deg)


def _one_digit(vae: VAE, x: torch.Tensor) -> torch.Tensor:
    """``(H, W)``, ``(1, H, W)`` or ``(1, 1, H, W)`` -> ``(1, 1, H, W)`` on the model's device."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor holding one digit, got {type(x).__name__}")
    if x.dim() not in (2, 3, 4) or math.prod(x.shape[:-2]) != 1:
        raise ValueError(f"x: expected one digit of shape (H, W), (1, H, W) or (1, 1, H, W), got {tuple(x.shape)}")
    device = next(vae.parameters()).device
    return x.reshape(1, 1, *x.shape[-2:]).to(device=device, dtype=torch.float32)


def rotation_frames(
    vae: VAE, x: torch.Tensor, angles_deg=range(0, 360, 15), config: AlignConfig | str = "default"
) -> RotationFrames:
    """Turn one digit ``x`` by each angle (degrees) and reconstruct it with the VAE and the AVAE.

    All angles go through the model as one batch; the AVAE's transform per frame comes from
    ``align(vae, rotated, "rotation", config)``.
    """
    x = _one_digit(vae, x)
    deg = torch.as_tensor(np.asarray(list(angles_deg), dtype=np.float64), dtype=x.dtype, device=x.device)  # (F,)
    if deg.dim() != 1 or len(deg) == 0:
        raise ValueError(f"angles_deg: expected a non-empty 1-d sequence of degrees, got shape {tuple(deg.shape)}")
    xr = warp(x.expand(len(deg), -1, -1, -1), rotation(torch.deg2rad(deg)))  # (F, 1, H, W)
    res = align(vae, xr, "rotation", config, progress=False)
    model = for_inference(vae)
    with torch.no_grad():
        vae_rec = loss_terms(model, xr)[2]  # (F, 1, H, W)
        avae_rec = loss_terms(model, xr, res.A)[2]  # decoded, then warped back by A^-1
    return RotationFrames(
        angles_deg=deg.cpu().numpy(),
        inputs=to_images(xr),
        vae_rec=to_images(vae_rec),
        avae_rec=to_images(avae_rec),
        vae_loss=res.loss0.cpu().numpy(),
        avae_loss=res.loss.cpu().numpy(),
        found_deg=torch.rad2deg(res.angle).cpu().numpy(),
    )


def _frame_titles(f: RotationFrames, i: int) -> tuple[str, str, str]:
    return (
        f"input, turned {f.angles_deg[i]:.0f}°",
        f"VAE: {f.vae_loss[i]:.1f} nats",
        f"AVAE: {f.avae_loss[i]:.1f} nats\n(search turned it {f.found_deg[i]:+.0f}°)",
    )


def _image_axes(fig: Figure, cells, images: list[np.ndarray], titles) -> list:
    axes = []
    for cell, img, title in zip(cells, images, titles):
        ax = fig.add_subplot(cell)
        imshow(ax, img, title, fontsize=9)
        axes.append(ax)
    return axes


def rotation_animation(frames: RotationFrames, interval: int = 500, dpi: int = 80) -> str:
    """An HTML/JavaScript player (play buttons and a frame slider) over ``frames``; returns the HTML.

    Display it with ``IPython.display.HTML(rotation_animation(frames))``; it needs no kernel.
    Each frame shows the rotated input, both reconstructions with their losses, and both loss
    curves against the angle with the current angle marked.
    """
    if len(frames) == 0:
        raise ValueError("frames: expected at least one frame")
    fig = Figure(figsize=(10.5, 3.1), dpi=dpi)
    grid = fig.add_gridspec(1, 4, width_ratios=[1, 1, 1, 1.7], left=0.02, right=0.98, bottom=0.17, top=0.8, wspace=0.3)
    images = [frames.inputs[0], frames.vae_rec[0], frames.avae_rec[0]]
    axes = _image_axes(fig, [grid[0, c] for c in range(3)], images, _frame_titles(frames, 0))
    ims = [ax.get_images()[0] for ax in axes]
    curve = fig.add_subplot(grid[0, 3])
    curve.plot(frames.angles_deg, frames.vae_loss, "o-", markersize=3, label="VAE")
    curve.plot(frames.angles_deg, frames.avae_loss, "o-", markersize=3, label="AVAE")
    marker = curve.axvline(frames.angles_deg[0], color="0.3", linestyle=":")
    curve.set_xlabel("input rotation (degrees)", fontsize=8)
    curve.set_ylabel("loss (nats)", fontsize=8)
    curve.tick_params(labelsize=7)
    curve.legend(fontsize=7)

    def draw(i: int):
        for im, img in zip(ims, (frames.inputs[i], frames.vae_rec[i], frames.avae_rec[i])):
            im.set_data(img)
        for ax, title in zip(axes, _frame_titles(frames, i)):
            ax.set_title(title, fontsize=9)
        marker.set_xdata([frames.angles_deg[i]] * 2)
        return [*ims, marker]

    anim = FuncAnimation(fig, draw, frames=len(frames), interval=interval, blit=False)
    return _without_icon_font(anim.to_jshtml(default_mode="loop"))


#: The player's button icons as SVG paths (12x12), in place of matplotlib's font-awesome icons
#: (a stylesheet from a CDN); drawn in the button's text colour, needing no font.
BUTTON_ICONS = {
    "minus": "M1 5h10v2H1z",
    "plus": "M5 1h2v4h4v2H7v4H5V7H1V5h4z",
    "fast-backward": "M1 1h1.5v10H1zM7 1v10L2.5 6zM12 1v10L7 6z",
    "step-backward": "M2 1h2v10H2zM11 1v10L4 6z",
    "play fa-flip-horizontal": "M10 1v10L2 6z",
    "pause": "M2 1h3v10H2zM7 1h3v10H7z",
    "play": "M2 1v10l8-5z",
    "step-forward": "M1 1v10l7-5zM8 1h2v10H8z",
    "fast-forward": "M0 1v10l4.5-5zM4.5 1v10L9 6zM9.5 1H11v10H9.5z",
}


def _without_icon_font(player: str) -> str:
    """``to_jshtml``'s player with no outside resource: the font-awesome stylesheet link dropped and
    each ``<i class="fa fa-...">`` icon replaced by an inline SVG."""
    player = re.sub(r"<link[^>]*font-awesome[^>]*>", "", player)

    def icon(match: re.Match) -> str:
        if match[1] not in BUTTON_ICONS:
            raise ValueError(f"matplotlib's player has an icon this module does not draw: fa-{match[1]}")
        return (f'<svg width="12" height="12" viewBox="0 0 12 12" aria-hidden="true">'
                f'<path fill="currentColor" d="{BUTTON_ICONS[match[1]]}"/></svg>')  # fmt: skip

    return re.sub(r'<i class="fa fa-([^"]+)"></i>', icon, player)


class RotationExplorer:
    """Live controls: ``digit`` picks a test digit, ``angle`` turns it; ``image`` and ``text`` show the result.

    Each change runs one forward pass and one ``align(..., config)``. Display the object (or
    its ``widget``) in Jupyter or Colab; where no widget can run, the object shows :meth:`still`.
    """

    def __init__(self, vae: VAE, x: torch.Tensor, labels=None, config: AlignConfig | str = "fast", angle_step: int = 5):
        import ipywidgets as W

        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 1 or len(x) == 0:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x: expected digits of shape (N, 1, H, W), got {got}")
        if labels is not None and len(labels) != len(x):
            raise ValueError(f"labels: expected {len(x)} labels (one per digit), got {len(labels)}")
        self.vae, self.x, self.config = vae, x, config
        names = [f"#{i}" + ("" if labels is None else f" (a {int(labels[i])})") for i in range(len(x))]
        self.digit = W.Dropdown(options=list(zip(names, range(len(x)))), value=0, description="digit")
        self.angle = W.IntSlider(value=0, min=0, max=360 - angle_step, step=angle_step, description="angle (°)",
                                 continuous_update=False)  # fmt: skip
        self.image = W.Image(format="png")
        self.text = W.HTML()
        self.widget = W.VBox([W.HBox([self.digit, self.angle]), self.image, self.text])
        self.digit.observe(self.update, names="value")
        self.angle.observe(self.update, names="value")
        self.frame: RotationFrames | None = None
        self.update()

    def update(self, change=None) -> None:
        """Recompute the shown frame from the current digit and angle."""
        f = rotation_frames(self.vae, self.x[self.digit.value], [self.angle.value], self.config)
        self.frame = f
        fig = Figure(figsize=(6.0, 2.4), dpi=80)
        grid = fig.add_gridspec(1, 3, left=0.02, right=0.98, bottom=0.02, top=0.8, wspace=0.15)
        _image_axes(fig, [grid[0, c] for c in range(3)], [f.inputs[0], f.vae_rec[0], f.avae_rec[0]], _frame_titles(f, 0))
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        self.image.value = buf.getvalue()
        gain = 1 - f.avae_loss[0] / f.vae_loss[0] if math.isfinite(f.vae_loss[0]) and f.vae_loss[0] > 0 else 0.0
        self.text.value = (
            f"<b>{f.angles_deg[0]:.0f}°</b>: VAE loss <b>{f.vae_loss[0]:.1f}</b> nats, "
            f"AVAE loss <b>{f.avae_loss[0]:.1f}</b> nats ({100 * gain:.0f}% lower); "
            f"the search turned the input by <b>{f.found_deg[0]:+.0f}°</b>"
        )

    def still(self) -> str:
        """The shown frame and its losses as HTML, with a note that the controls need a kernel."""
        f = self.frame
        png = base64.b64encode(self.image.value).decode("ascii")
        alt = html.escape(_frame_titles(f, 0)[0])
        return (
            f'<img src="data:image/png;base64,{png}" alt="{alt}"><p>{self.text.value}</p>'
            "<p><em>A still of the explorer: with a running Python kernel (Jupyter, Colab) its "
            "digit menu and angle slider recompute this view.</em></p>"
        )

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """The live widget; where none can run (a static page), the still frame instead."""
        return {
            "application/vnd.jupyter.widget-view+json": {
                "version_major": 2, "version_minor": 0, "model_id": self.widget.model_id},
            "text/html": self.still(),
            "text/plain": f"RotationExplorer over {len(self.x)} digits (needs a running Python kernel)",
        }  # fmt: skip


def rotation_explorer(
    vae: VAE, x: torch.Tensor, labels=None, config: AlignConfig | str = "fast", angle_step: int = 5
) -> RotationExplorer:
    """A :class:`RotationExplorer` over digits ``x (N, 1, H, W)`` (``labels (N,)`` name them in the menu)."""
    return RotationExplorer(vae, x, labels=labels, config=config, angle_step=angle_step)
