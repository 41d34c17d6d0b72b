"""Aligning a reader's images (chapter 7; ``python -m avae_tutorial align MODEL --images PATH``).

:func:`iter_align` runs :func:`~avae_tutorial.align` over a dataset (read by a ``DataLoader``,
:func:`~avae_tutorial.data.images.batches`) or an in-memory tensor, one chunk at a time and in input
order, optionally on a subset of the indices; each chunk comes back with its indices, so a
caller can write results as they arrive and start again where it stopped. :func:`pose_rows`
turns a chunk into CSV rows (:data:`POSE_COLUMNS`, then the family's other parameters), and
:func:`done_names` reads back a CSV that an interrupted run left behind.

Convention: ``angle_deg`` is :attr:`AlignResult.angle` in degrees, the rotation the search
applied: ``warp(x, rotation(radians(angle_deg)))`` is what the model encodes, so an image turned
by +30 degrees from the model's pose gets about -30.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..align import AlignConfig, AlignResult, align
from ..families import Family, get_family
from ..data.images import batches

__all__ = ["PoseChunk", "iter_align", "align_images", "pose_rows", "pose_columns", "done_names", "POSE_COLUMNS"]

POSE_COLUMNS = ("file", "angle_deg", "loss_before", "loss_after")


@dataclass
class PoseChunk:
    """One chunk: input indices ``idx``, images ``x (b, C, H, W)`` on the model's device and their
    :class:`AlignResult` (both ``None`` when every image of the chunk was unreadable), and the
    skipped images ``bad``: ``(index, name, reason)``."""

    idx: list[int]
    x: torch.Tensor | None
    result: AlignResult | None
    bad: list[tuple[int, str, str]]


def iter_align(
    vae,
    data,
    family: str | Family = "rotation",
    config: AlignConfig | str = "default",
    indices=None,
    batch_size: int = 256,
    workers: int = 0,
    skip_bad: bool = False,
    progress: bool | None = None,
):
    """Yield a :class:`PoseChunk` per ``batch_size`` images of ``data``, in input order.

    ``data``: a ``Dataset`` of ``(C, canvas, canvas)`` images (:func:`~avae_tutorial.data.images.open_images`)
    or a tensor ``(N, C, canvas, canvas)``; ``indices``: the subset to align, in the order given
    (default: all). ``workers``: ``DataLoader`` processes decoding files while the model searches.
    Each chunk is searched by :func:`~avae_tutorial.align` with ``family`` and ``config``.
    """
    device = next(vae.parameters()).device
    total = len(data) if indices is None else len(indices)
    bar = tqdm(total=total, desc=f"align ({get_family(family).name})", unit="img",
               disable=not (progress if progress is not None else total > batch_size))  # fmt: skip
    try:
        for idx, x, bad in batches(data, indices, batch_size, workers, skip_bad, pin_memory=device.type == "cuda"):
            res = None
            if x is not None:
                x = x.to(device, non_blocking=True)
                res = align(vae, x, family, config, batch_size=len(x), progress=False)
            bar.update(len(idx) + len(bad))
            yield PoseChunk(idx, x, res, bad)
    finally:
        bar.close()


def align_images(vae, data, family="rotation", config="default", **kw) -> tuple[AlignResult, list[int], list]:
    """:func:`iter_align` gathered: ``(result, idx, bad)``, the result's rows in the order of ``idx``."""
    chunks = [c for c in iter_align(vae, data, family, config, **kw)]
    good = [c for c in chunks if c.result is not None]
    if not good:
        raise ValueError("images: no image could be read")
    r = [c.result for c in good]
    res = AlignResult.concat(r)
    return res, [i for c in good for i in c.idx], [b for c in chunks for b in c.bad]


def pose_columns(family: str | Family = "rotation") -> list[str]:
    """The CSV columns: :data:`POSE_COLUMNS`, then the family's parameters other than its angle."""
    fam = get_family(family)
    return [*POSE_COLUMNS, *(n for i, n in enumerate(fam.names) if i != fam.angle)]


def pose_rows(names, chunk: PoseChunk, family: str | Family = "rotation") -> list[dict]:
    """One row per aligned image of ``chunk`` (``names``: every image's name, by input index)."""
    if chunk.result is None:
        return []
    fam = get_family(family)
    res = chunk.result
    angle = torch.rad2deg(res.angle).tolist()
    before, after, params = res.loss0.tolist(), res.loss.tolist(), res.params.tolist()
    rows = []
    for k, i in enumerate(chunk.idx):
        row = {"file": names[i], "angle_deg": round(angle[k], 4), "loss_before": round(before[k], 4),
               "loss_after": round(after[k], 4)}  # fmt: skip
        row.update({n: round(params[k][j], 6) for j, n in enumerate(fam.names) if j != fam.angle})
        rows.append(row)
    return rows


def done_names(path: str | os.PathLike, columns: list[str]) -> list[str]:
    """The ``file`` column of a pose CSV that an earlier (interrupted) run wrote, in order.

    A last line cut off mid-write is removed from the file, so that appending continues cleanly.
    A CSV with other columns (another family, another tool's file) is refused, naming both.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return []
    with open(path, newline="") as f:
        text = f.read()
    if not text.endswith("\n"):  # interrupted mid-line: drop the partial row
        text = text[: text.rfind("\n") + 1]
        with open(path, "w", newline="") as f:
            f.write(text)
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        return []
    if rows[0] != list(columns):
        raise ValueError(f"--out {path} exists with columns {rows[0]}, not {list(columns)}; "
                         f"pass --restart to overwrite it, or another --out")  # fmt: skip
    return [r[0] for r in rows[1:] if r]


# ---------------------------------------------------------------- benchmark: is loading the bottleneck?
def folder_throughput(vae, x: torch.Tensor, workers: int | None = None, batch_size: int = 256, config="default",
                      repeats: int = 3) -> dict:  # fmt: skip
    """Align throughput (images per second) from a folder of PNG files through a ``DataLoader``
    with ``workers`` processes, against the same images as an in-memory tensor.

    ``x (N, C, H, W)`` is written to a temporary folder as 8-bit PNG files and read back, so both
    paths align identical images with the same search; the two are timed alternately
    ``repeats`` times and the median of each kept (the machine's load changes during a run).
    ``ratio`` is the folder's throughput over the tensor's (target: at least 0.8);
    ``passes_per_image``: the VAE passes the search spent per image, counted. ``workers``
    (default): none on a CPU, where the search takes the cores and decoding in the main process
    costs little beside it; up to 8 beside a GPU, whose search outpaces one decoding process.
    """
    import statistics
    import tempfile
    import time

    from ..data.images import open_images, save_images
    from .timing import synchronize

    device = next(vae.parameters()).device
    if workers is None:
        workers = 0 if device.type == "cpu" else min(8, max(1, (os.cpu_count() or 2) - 1))
    with tempfile.TemporaryDirectory() as tmp:
        save_images(x, [Path(tmp) / f"{i:06d}.png" for i in range(len(x))])
        ds = open_images(tmp, canvas=x.shape[-1], channels=x.shape[1])
        x_mem = torch.stack([ds[i] for i in range(len(ds))]).to(device)

        passes = []  # the last run's, per chunk: the same searches on both paths

        def run(data, w):
            passes.clear()
            t0 = time.perf_counter()
            for chunk in iter_align(vae, data, "rotation", config, batch_size=batch_size, workers=w, progress=False):
                passes.append(chunk.result.passes)
            synchronize(device)
            return time.perf_counter() - t0

        run(x_mem[:batch_size], 0)  # warm-up
        times = {"tensor": [], "folder": []}
        for _ in range(repeats):
            times["tensor"].append(run(x_mem, 0))
            times["folder"].append(run(ds, workers))
    tensor, folder = (len(x) / statistics.median(times[k]) for k in ("tensor", "folder"))
    return {"n": len(x), "workers": workers, "batch_size": batch_size, "tensor_img_per_s": tensor,
            "folder_img_per_s": folder, "ratio": folder / tensor,
            "passes_per_image": float(torch.cat(passes).double().mean())}  # fmt: skip


def folder_report_line(r: dict) -> str:
    """:func:`folder_throughput`'s result as one line of the benchmark report."""
    met = "met" if r["ratio"] >= 0.8 else "NOT met"
    passes = f", {r['passes_per_image']:.2f} passes per image" if "passes_per_image" in r else ""
    return (f"align from a folder ({r['n']} PNG files, DataLoader, {r['workers']} workers{passes}): "
            f"{r['folder_img_per_s']:.0f} img/s vs {r['tensor_img_per_s']:.0f} img/s from a tensor = "
            f"{r['ratio']:.0%} [{met}: >= 80%]")
