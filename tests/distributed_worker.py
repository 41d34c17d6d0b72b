"""One process of tests/test_distributed.py's runs, started there with ``torchrun`` (Gloo, CPU).

``python -m torch.distributed.run --standalone --nproc_per_node 2 distributed_worker.py JOB OUT``

* ``run``: gather uneven shares of rows (:func:`gather_rows`, 7 rows: 4 and 3, floats and
  booleans), align :data:`ALIGN_N` images with :func:`align_sharded` (uneven too: 8 and 7),
  then train one epoch with :func:`fit`
  (aligned regime, z = mu: the reparameterization noise fixed at zero) recording the images of
  every batch; rank 0 writes what the test compares with one process to ``OUT/result.pt`` and
  ``fit`` writes ``OUT/ddp.pt``; last, the command line aligns the folder ``OUT/images`` with
  that checkpoint into ``OUT/poses.csv`` (:data:`ALIGN_ARGS`).
* ``fail``: rank 1 runs the command line on a checkpoint that does not exist; rank 0 aligns and
  waits for rank 1's share, until torchrun stops it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

import avae_tutorial as avae
from avae_tutorial.tools import cli
from avae_tutorial.training import train as train_mod
from avae_tutorial.training.distributed import align_sharded, gather_rows, init_from_env, shard, world
from avae_tutorial.loss import avae_loss

CANVAS = 28
SEARCH = avae.AlignConfig(restarts=8, steps=2)
ALIGN_N = 15  # odd: the two processes' shares differ (8 and 7), so gather_rows must trim the padding
GATHER_N = 7  # rows gathered directly: 4 and 3
ALIGN_ARGS = ["--batch-size", "24", "--skip-bad", "--preset", "fast", "--device", "cpu"]  # chunks of 24: 12 a process


def vae() -> avae.VAE:
    torch.manual_seed(0)
    return avae.VAE(latent_dim=2, canvas=CANVAS).eval()


def images() -> torch.Tensor:
    """64 synthetic digits, randomly rotated: ``(64, 1, 28, 28)``."""
    return avae.data.mnist.random_rotations(avae.data.mnist.synthetic_digits(64, canvas=CANVAS, seed=1)[0], seed=2)[0]


def config() -> avae.TrainConfig:
    return avae.TrainConfig("aligned", latent_dim=2, canvas=CANVAS, epochs=1, batch_size=16, test_limit=8,
                            align={"restarts": 6, "steps": 1})  # fmt: skip


def train_data() -> tuple[torch.Tensor, torch.Tensor]:
    return avae.data.mnist.synthetic_digits(35, canvas=CANVAS, seed=3)  # batches of 16, 16 and 3 (2 + 1: uneven slices)


def recording_loss(seen: list):
    """The training loss with z = mu (no noise), recording each batch's images (one number per image)."""

    def loss(vae, xb, A):
        seen.append(xb.detach().flatten(1).sum(1))
        return avae_loss(vae, xb, A, sample=False)

    return loss


def main(job: str, out: Path) -> int:
    init_from_env("cpu")
    rank, size = world()
    if job == "fail":
        if rank == 1:
            return cli.main(["align", str(out / "missing.pt"), "--n", "8"])
        align_sharded(vae(), images(), "rotation", SEARCH)  # waits for rank 1's share
        return 0
    rows = torch.arange(GATHER_N * 2, dtype=torch.float32).view(GATHER_N, 2)[shard(GATHER_N, rank, size)]
    gathered = {"float": gather_rows(rows, GATHER_N), "bool": gather_rows(rows[:, 0] % 3 == 0, GATHER_N)}
    res = align_sharded(vae(), images()[:ALIGN_N], "rotation", SEARCH, progress=False)
    seen = []
    train_mod._training_loss = recording_loss(seen)
    model, hist = avae.fit(config(), train_data(), checkpoint=out / "ddp.pt", progress=False)
    batches = [None] * size
    dist.all_gather_object(batches, seen)
    code = cli.main(["align", str(out / "ddp.pt"), "--images", str(out / "images"), "--out", str(out / "poses.csv"),
                     *ALIGN_ARGS])  # fmt: skip
    if rank == 0:
        torch.save({"align": res, "gathered": gathered, "batches": batches, "state": model.state_dict(),
                    "history": hist, "size": size}, out / "result.pt")  # fmt: skip
    dist.destroy_process_group()
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], Path(sys.argv[2])))
