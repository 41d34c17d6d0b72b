"""Embeddings of a reader's images (chapter 6; ``python -m avae_tutorial embed MODEL --images PATH``).

Per image: the encoder's mean code ``mu`` at the pose the model reads it in, that pose's angle and
the loss there. For a :class:`~avae_tutorial.VAE` the pose is the search's
(:func:`~avae_tutorial.align`; ``search=False``: the image as it is); for the amortized peer
(:class:`~avae_tutorial.training.peer.AmortizedVAE`) its encoder's own prediction. Chunks come in
input order with their indices, so a caller writes rows as they arrive and a run that stops can
start again where it stopped (:func:`~avae_tutorial.training.poses.done_names`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..align import AlignConfig
from ..data.images import batches
from ..loss import chunked_loss
from ..model import for_inference
from ..transforms import _warp
from .peer import AmortizedVAE, peer_encode, peer_loss
from .poses import iter_align

__all__ = ["EmbedChunk", "iter_embed", "embed_columns", "embed_rows"]


@dataclass
class EmbedChunk:
    """One chunk: input indices ``idx``; per readable image ``mu (b, L)``, ``angle (b,)`` (radians,
    :func:`~avae_tutorial.align`'s convention) and ``loss (b,)`` (nats, ``z = mu``); the skipped
    images ``bad``: ``(index, name, reason)``. The tensors are ``None`` when no image was readable."""

    idx: list[int]
    mu: torch.Tensor | None
    angle: torch.Tensor | None
    loss: torch.Tensor | None
    bad: list[tuple[int, str, str]]


def iter_embed(vae, data, config: AlignConfig | str = "default", search: bool = True, indices=None,
               batch_size: int = 256, workers: int = 0, skip_bad: bool = False, progress: bool | None = None):  # fmt: skip
    """Yield an :class:`EmbedChunk` per ``batch_size`` images of ``data`` (a ``Dataset`` of
    ``(C, canvas, canvas)`` images or a tensor), in input order, for ``indices`` (default: all).
    The search (``config``: :func:`~avae_tutorial.align`'s) runs for a plain VAE with ``search``."""
    if search and not isinstance(vae, AmortizedVAE):
        frozen = for_inference(vae)
        for c in iter_align(vae, data, "rotation", config, indices, batch_size, workers, skip_bad, progress):
            if c.result is None:
                yield EmbedChunk(c.idx, None, None, None, c.bad)
                continue
            with torch.no_grad():
                mu = frozen.encode(_warp(c.x, c.result.A))[0]
            yield EmbedChunk(c.idx, mu, c.result.angle, c.result.loss, c.bad)
        return
    device = next(vae.parameters()).device
    total = len(data) if indices is None else len(indices)
    frozen = None if isinstance(vae, AmortizedVAE) else for_inference(vae)
    bar = tqdm(total=total, desc="embed", unit="img", disable=not (progress if progress is not None else total > batch_size))
    try:
        for idx, x, bad in batches(data, indices, batch_size, workers, skip_bad, pin_memory=device.type == "cuda"):
            bar.update(len(idx) + len(bad))
            if x is None:
                yield EmbedChunk(idx, None, None, None, bad)
                continue
            x = x.to(device, non_blocking=True)
            if frozen is None:  # the peer: its encoder's pose
                mu, angle = peer_encode(vae, x)
                yield EmbedChunk(idx, mu, angle, peer_loss(vae, x), bad)
                continue
            with torch.no_grad():
                mu = frozen.encode(x)[0]
            yield EmbedChunk(idx, mu, torch.zeros(len(x), device=device), chunked_loss(frozen, x), bad)
    finally:
        bar.close()


def embed_columns(latent_dim: int) -> list[str]:
    """The CSV's columns: ``file``, ``angle_deg``, ``loss``, then ``z0`` ... ``z{L-1}`` (the mean code)."""
    return ["file", "angle_deg", "loss", *(f"z{i}" for i in range(latent_dim))]


def embed_rows(names, chunk: EmbedChunk) -> list[dict]:
    """One row per embedded image of ``chunk`` (``names``: every image's name, by input index)."""
    if chunk.mu is None:
        return []
    mu, angle, loss = chunk.mu.tolist(), torch.rad2deg(chunk.angle).tolist(), chunk.loss.tolist()  # one read each
    rows = []
    for k, i in enumerate(chunk.idx):
        row = {"file": names[i], "angle_deg": round(angle[k], 4), "loss": round(loss[k], 4)}
        row.update({f"z{j}": round(v, 6) for j, v in enumerate(mu[k])})
        rows.append(row)
    return rows
