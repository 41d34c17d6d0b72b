"""Several processes through ``torch.distributed`` (``torchrun``): results that do not depend on N.

Start any number of processes with ``torchrun``; each one calls :func:`init_from_env` once (the
command line does), and the package's two long jobs use the process group when there is one:

* **Alignment** (:func:`align_sharded`): the images are cut into N contiguous shares, each
  process aligns its own, and the results are gathered back into input order on every process.
  The search is deterministic per image, so the rows equal one process's, bit for bit.
* **Training** (:func:`avae_tutorial.fit`): ``batch_size`` stays the *global* batch. A
  :class:`GlobalBatchSampler` hands each process its slice of the same global batches one
  process would draw, so the data order does not depend on N. Each process computes the loss of
  its slice, scaled by :func:`global_mean` so that ``DistributedDataParallel``'s gradient average
  equals the gradient of the global batch's mean loss; BatchNorm normalizes with the global
  batch's statistics (:class:`GlobalBatchNorm`), as one process would.

Without a process group (one plain process) every function here is the single-process one.
"""
from __future__ import annotations

import copy
import math
import os
from dataclasses import fields, is_dataclass, replace

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import Dataset, Sampler

from .._checks import check_positive_int

__all__ = ["init_from_env", "backend_for", "world", "rank_label", "failure_line", "record_failure", "barrier", "shard",
           "shard_chunks", "gather_rows", "gather_objects", "broadcast_object", "all_sum", "check_same", "align_sharded",
           "GlobalBatchSampler", "GlobalBatchNorm", "data_parallel", "global_mean"]  # fmt: skip


# ---------------------------------------------------------------- the process group
def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: ``(0, 1)`` without an initialized process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_label() -> str:
    """``" on rank 1 of 2"`` in a process group of several processes, else ``""`` (for messages)."""
    rank, size = world()
    return f" on rank {rank} of {size}" if size > 1 else ""


#: What an error raised by a collective says when the process it waited for is gone (Gloo: the
#: peer closed or reset the connection; NCCL and the store: timeouts and refusals).
_LOST = ("closed by peer", "reset by peer", "broken pipe", "connection refused", "timed out", "timeout",
         "remote worker crashing")  # fmt: skip


def failure_line(e: BaseException, label: str | None = None) -> str:
    """What to print when ``e`` stops this process in a process group (``label``: its
    :func:`rank_label`, by default now's): which process, what happened, and, when ``e`` says that
    another process is gone (it failed or was killed first, and this one lost its connection to it
    or waited for it in vain), where to look and what to do."""
    text = str(e).strip()
    line = f"error{rank_label() if label is None else label}: {type(e).__name__}: {text.splitlines()[0] if text else ''}"
    lost = isinstance(e, getattr(dist, "DistNetworkError", ())) or any(s in str(e).lower() for s in _LOST)
    if lost:
        line += ("\n  another process stopped first, and this one lost its connection to it: that process's own "
                 "error is above (none if it was killed, by the out-of-memory killer say; torchrun's summary gives "
                 "its exit code). Run the same command again: align --images continues its CSV, train its "
                 "checkpoint.")  # fmt: skip
    return line


def record_failure(e: BaseException) -> None:
    """Under torchrun, write ``e`` and the traceback being handled to this process's error file
    (``$TORCHELASTIC_ERROR_FILE``), so that torchrun's summary of a failed job shows them for this
    process instead of "To enable traceback see ...". Elsewhere nothing. Call it in the
    ``except`` block that caught ``e``."""
    if not os.environ.get("TORCHELASTIC_ERROR_FILE"):
        return
    try:
        from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

        ErrorHandler().record_exception(e)
    except Exception:  # the summary is a convenience: never let it hide the error itself
        pass


def init_from_env(device: str | torch.device = "cpu") -> str:
    """Join the process group that ``torchrun`` describes in the environment; returns the device.

    With ``WORLD_SIZE`` > 1 in the environment (``torchrun`` sets it, with ``RANK``,
    ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``) and no group yet: on a CUDA ``device``
    the process takes GPU ``LOCAL_RANK`` (one GPU per process) and the ``nccl`` backend for
    CUDA tensors (with ``gloo`` for the few CPU tensors exchanged: counts, orientations),
    elsewhere ``gloo``. Without those variables (one plain process) ``device`` comes back as it is.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return str(device)
    cuda = torch.device(device).type == "cuda"
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local}: this node has only {torch.cuda.device_count()} GPU(s); "
                             f"start at most that many processes per node (--nproc_per_node)")  # fmt: skip
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group(backend_for(device))
    return str(device)


def barrier() -> None:
    """Wait for every process (nothing to wait for without a process group)."""
    if world()[1] > 1:
        dist.barrier()


def backend_for(device: str | torch.device) -> str:
    """The process group's backend for a device: NCCL for CUDA tensors (and Gloo for CPU ones), else Gloo."""
    return "cpu:gloo,cuda:nccl" if torch.device(device).type == "cuda" else "gloo"


def shard(n: int, rank: int | None = None, world_size: int | None = None) -> slice:
    """Rank ``rank``'s contiguous share of ``n`` rows: the first ``n % N`` ranks get one more."""
    if rank is None or world_size is None:
        rank, world_size = world()
    q, r = divmod(n, world_size)
    start = rank * q + min(rank, r)
    return slice(start, start + q + (rank < r))


def gather_rows(t: torch.Tensor, n: int) -> torch.Tensor:
    """Every rank's :func:`shard` of ``n`` rows, concatenated in rank order (on every rank).

    ``t`` holds this rank's rows ``(shard size, ...)``; shares are padded to equal size for
    ``all_gather`` and trimmed after. Without a process group ``t`` comes back as it is.
    """
    rank, size = world()
    if size == 1:
        return t
    m = math.ceil(n / size)
    wire = t.to(torch.uint8) if t.dtype == torch.bool else t  # gloo gathers no bool
    pad = wire.new_zeros((m - len(t), *t.shape[1:]))
    parts = [torch.empty((m, *t.shape[1:]), dtype=wire.dtype, device=t.device) for _ in range(size)]
    dist.all_gather(parts, torch.cat([wire, pad]).contiguous())
    sizes = [len(range(n)[shard(n, r, size)]) for r in range(size)]
    return torch.cat([p[:k] for p, k in zip(parts, sizes)]).to(t.dtype)


def gather_objects(obj) -> list:
    """Every rank's picklable ``obj``, in rank order, on every rank (``[obj]`` without a group)."""
    size = world()[1]
    if size == 1:
        return [obj]
    out = [None] * size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    """Rank 0's picklable ``obj`` on every rank (``obj`` itself without a group)."""
    if world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard_chunks(indices: list[int], chunk: int, rank: int | None = None,
                 world_size: int | None = None) -> tuple[list[int], int, int]:  # fmt: skip
    """Split ``indices`` into global chunks, each shared among the ranks in order.

    The chunk size is ``chunk`` rounded up to a multiple of the world size N. Returns
    ``(mine, per_rank, n_chunks)``: this rank's :func:`shard` of every chunk, concatenated;
    the share of a full chunk (``chunk / N`` rounded up); and the number of chunks. Read in
    batches of ``per_rank``, ``mine``'s k-th batch is this rank's share of chunk k (the last
    chunk's share may be short, or missing when the chunk has fewer indices than ranks).
    """
    rank, size = (rank, world_size) if rank is not None else world()
    per = math.ceil(chunk / size)
    mine = []
    for s in range(0, len(indices), per * size):
        part = indices[s : s + per * size]
        mine += part[shard(len(part), rank, size)]
    return mine, per, math.ceil(len(indices) / (per * size))


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over all ranks (a copy; ``t`` itself without a process group)."""
    if world()[1] == 1:
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t


def check_same(value: int, what: str) -> None:
    """Raise ``ValueError`` if the integer ``value`` differs between ranks (e.g. the epoch resumed
    from: a checkpoint that some nodes cannot see)."""
    if world()[1] == 1:
        return
    t = torch.tensor([value, -value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    if t[0] != -t[1]:
        raise ValueError(f"{what} differs between processes (from {-t[1]:.0f} to {t[0]:.0f}){rank_label()}; "
                         f"every process must see the same files (on several nodes: a shared folder)")  # fmt: skip


# ---------------------------------------------------------------- alignment, sharded
def align_sharded(vae, data, family="rotation", config="default", init: torch.Tensor | None = None,
                  batch_size: int = 512, num_workers: int = 0, progress: bool | None = None):  # fmt: skip
    """:func:`avae_tutorial.align` over all processes: each aligns its :func:`shard` of ``data``,
    and every process gets the whole :class:`~avae_tutorial.AlignResult`, rows in input order.

    ``data``: images ``(N, C, H, W)`` on the model's device, or a ``torch.utils.data.Dataset``
    of images ``(C, H, W)`` (:func:`~avae_tutorial.data.images.open_images`), read through a
    ``DataLoader`` with ``num_workers`` in batches of ``batch_size``
    (:func:`~avae_tutorial.training.poses.iter_align`); a file that cannot be read stops it, named. ``init`` (tensors only) is
    sharded with the images. The search is deterministic per image, so the result equals one
    process's row for row; without a process group this *is* one process's :func:`align`.
    """
    from ..align import AlignResult, align

    rank, size = world()
    progress = False if rank > 0 else progress  # one bar: rank 0's share
    if not isinstance(data, (torch.Tensor, Dataset)):
        raise TypeError(f"data: expected images (N, C, H, W) or a torch.utils.data.Dataset, got {type(data).__name__}")
    n = len(data)
    if n < size:
        raise ValueError(f"data: {n} images for {size} processes; give every process at least one")
    s = shard(n)
    if isinstance(data, torch.Tensor):
        res = align(vae, data[s], family, config, init=None if init is None else init[s], batch_size=batch_size,
                    progress=progress)  # fmt: skip
    else:
        from .poses import iter_align

        chunks = iter_align(vae, data, family, config, indices=list(range(n))[s], batch_size=batch_size,
                            workers=num_workers, progress=progress)  # fmt: skip
        res = AlignResult.concat([c.result for c in chunks])
    return res if size == 1 else _gather_result(res, n)


def _gather_result(res, n: int):
    """Every tensor field of a per-image result (a dataclass), gathered into input order."""
    assert is_dataclass(res)
    return replace(res, **{f.name: gather_rows(getattr(res, f.name), n) for f in fields(res)
                           if isinstance(getattr(res, f.name), torch.Tensor)})  # fmt: skip


# ---------------------------------------------------------------- training, data parallel
class GlobalBatchSampler(Sampler[list]):
    """This process's slice of each global batch: the batches are those one process would draw.

    Epoch ``e`` shuffles ``n`` indices with ``torch.randperm`` seeded by ``seed * 1000 + e``,
    cuts them into global batches of ``batch_size`` and yields, for each, this rank's
    :func:`shard` of it: the data order does not depend on the number of processes. Use as a
    ``DataLoader``'s ``batch_sampler``; call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None):  # fmt: skip
        check_positive_int(n, "n")
        check_positive_int(batch_size, "batch_size")
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0
        self.rank, self.world_size = (rank, world_size) if rank is not None else world()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batch(self, b: int) -> int:
        """The number of images in global batch ``b`` (all ranks together)."""
        return min(self.batch_size, self.n - b * self.batch_size)

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        # drawn on the host and made a list once per epoch: no per-batch conversion
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1_000 + self.epoch)).tolist()
        for s in range(0, self.n, self.batch_size):
            batch = order[s : s + self.batch_size]
            yield batch[shard(len(batch), self.rank, self.world_size)]


def global_mean(per_sample: torch.Tensor, n_global: int) -> torch.Tensor:
    """This rank's share of the global batch's mean loss, scaled for ``DistributedDataParallel``.

    DDP averages gradients over the N ranks, so each rank returns ``N / n_global`` times its
    sum: the average of those gradients is the gradient of the global batch's mean, whatever the
    slices' sizes. One process: ``per_sample.mean()``.
    """
    size = world()[1]
    return per_sample.mean() if size == 1 else per_sample.sum() * (size / n_global)


class _AllSum(torch.autograd.Function):
    """``all_reduce`` (sum) with its gradient: the gradient of a sum over ranks is the sum of the
    ranks' gradients."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.Module):
    """A ``BatchNorm`` that normalizes with the statistics of the *global* batch in training.

    It wraps (and shares the parameters and running statistics of) a ``nn.BatchNorm2d``; in
    training the per-channel sums travel through a differentiable ``all_reduce``, so forward
    and backward are those of one process holding the whole batch (``nn.SyncBatchNorm`` does the
    same, on GPUs only). In eval mode, and without a process group, it is the wrapped module.
    """

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        self.bn = bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn = self.bn
        if not bn.training or world()[1] == 1:
            return bn(x)
        C, dims, shape = x.shape[1], [0, *range(2, x.dim())], (1, -1) + (1,) * (x.dim() - 2)
        count = x.new_full((1,), x.numel() // C)
        tot = _AllSum.apply(torch.cat([x.sum(dims), count]))  # (C + 1,) sums over every rank
        n = tot[C]
        mean = tot[:C] / n
        d = x - mean.view(shape)
        var = _AllSum.apply((d * d).sum(dims)) / n  # biased, as BatchNorm normalizes
        if bn.track_running_stats:
            with torch.no_grad():
                bn.num_batches_tracked.add_(1)
                m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
                bn.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                bn.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)).detach(), alpha=m)
        y = d * torch.rsqrt(var + bn.eps).view(shape)
        return y * bn.weight.view(shape) + bn.bias.view(shape) if bn.affine else y


class _Loss(nn.Module):
    """``loss(vae, *args)`` as a module's forward (what DDP wraps: it hooks ``forward``)."""

    def __init__(self, vae: nn.Module, loss):
        super().__init__()
        self.vae, self.loss = vae, loss

    def forward(self, *args) -> torch.Tensor:
        return self.loss(self.vae, *args)


def data_parallel(vae: nn.Module, loss) -> nn.Module:
    """A module whose forward is ``loss(vae, *args)`` (per-sample losses), data parallel when there
    is a process group.

    With a process group: ``DistributedDataParallel`` around a twin of ``vae`` that shares its
    parameters and buffers (so ``vae`` itself trains, and checkpoints and the search keep using
    it) and whose BatchNorms are :class:`GlobalBatchNorm`. Without one: ``vae``'s loss as it is.
    """
    if world()[1] == 1:
        return _Loss(vae, loss)
    leaves = {id(m): m for m in vae.modules() if not list(m.children())}
    twin = copy.deepcopy(vae, memo=dict(leaves))  # new containers, the same layers
    norms = [(parent, name, child) for parent in twin.modules() for name, child in parent.named_children()
             if isinstance(child, nn.modules.batchnorm._BatchNorm)]  # fmt: skip
    for parent, name, child in norms:
        setattr(parent, name, GlobalBatchNorm(child))
    device = next(vae.parameters()).device
    ids = [device] if device.type == "cuda" else None  # one GPU per process
    return nn.parallel.DistributedDataParallel(_Loss(twin, loss), device_ids=ids)
