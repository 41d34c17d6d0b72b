"""Training the amortized peer (chapter 6) at the aligned regime's budget: same digits, rotations,
batches, epochs and optimizer as ``avae-transopt`` (:class:`~avae_tutorial.training.peer.PeerConfig`)."""
from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from .._checks import check_device, check_images
from ..transforms import _rotation, _warp
from .distributed import GlobalBatchSampler
from .peer import AmortizedVAE, PeerConfig, peer_loss, peer_terms
from .train import epoch_angles, evaluation_angles

__all__ = ["fit_peer"]


def fit_peer(config: PeerConfig, train: tuple[torch.Tensor, torch.Tensor],
             test: tuple[torch.Tensor, torch.Tensor] | None = None, device=None,
             progress: bool = True) -> tuple[AmortizedVAE, dict]:  # fmt: skip
    """Train the peer on rotated digits; returns ``(vae, history)``.

    Every epoch turns each training digit by the angle the aligned regime uses
    (:func:`~avae_tutorial.training.train.epoch_angles`) and visits them in its batches
    (:class:`~avae_tutorial.training.distributed.GlobalBatchSampler`, one process). ``history``:
    per epoch ``train_loss`` (the one-sample negative ELBO, both KL terms), ``test_loss``
    (:func:`peer_loss` on the test digits turned by
    :func:`~avae_tutorial.training.train.evaluation_angles` with ``seed + 1``, as ``fit`` does)
    and ``seconds`` (the training pass). The loss is read once per batch (it must stay finite).
    """
    if not isinstance(config, PeerConfig):
        raise TypeError(f"config: expected a PeerConfig, got {type(config).__name__}")
    x, _ = train
    check_images(x, "train x", canvas=config.canvas)
    x = x[: config.train_limit] if config.train_limit is not None else x
    x_test = (x[-config.test_limit :] if test is None else check_images(test[0], "test x", canvas=config.canvas))
    device = check_device(device) if device is not None else x.device
    x, x_test = x.to(device), x_test[: config.test_limit].to(device)
    x_test = _warp(x_test, _rotation(evaluation_angles(len(x_test), config.seed + 1).to(device)))
    torch.manual_seed(config.seed)
    vae = AmortizedVAE(config.latent_dim, config.canvas).to(device)
    opt = torch.optim.Adam(vae.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    batches = GlobalBatchSampler(len(x), config.batch_size, config.seed, rank=0, world_size=1)
    history = {"epoch": [], "train_loss": [], "test_loss": [], "seconds": []}
    for epoch in range(config.epochs):
        t0, total = time.perf_counter(), torch.zeros((), dtype=torch.float64, device=device)
        torch.manual_seed(config.seed * 1_000 + epoch)
        angles = epoch_angles(len(x), config.seed, epoch).to(device)
        batches.set_epoch(epoch)
        vae.train()
        for b, idx in enumerate(tqdm(batches, desc=f"peer epoch {epoch + 1}/{config.epochs}", disable=not progress,
                                     leave=False)):  # fmt: skip
            idx = torch.tensor(idx, device=device)
            rec, kl, kl_angle, _ = peer_terms(vae, _warp(x[idx], _rotation(angles[idx])), sample=True)
            loss = (rec + kl + kl_angle).mean()
            if not torch.isfinite(loss):  # a read of the device, once per step
                raise FloatingPointError(f"non-finite peer loss at epoch {epoch + 1}, batch {b + 1}; try a smaller lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach().double() * len(idx)
        history["seconds"].append(time.perf_counter() - t0)
        history["epoch"].append(epoch + 1)
        history["train_loss"].append(float(total) / len(x))
        history["test_loss"].append(float(peer_loss(vae, x_test).mean()))
        if progress:
            tqdm.write(f"[peer L={config.latent_dim}] epoch {epoch + 1}: train {history['train_loss'][-1]:.2f} "
                       f"test {history['test_loss'][-1]:.2f} nats ({history['seconds'][-1]:.0f}s)")
    return vae.eval(), history
