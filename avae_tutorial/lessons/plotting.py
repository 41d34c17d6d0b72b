"""Matplotlib figures of the book: digits, loss per angle, the latent sweep, the hero, tables, curves.

A flat list of functions. Each draws with ``matplotlib.pyplot`` and returns its Figure (or the
Axes it drew on, when it can draw into a caller's ``ax``); none calls ``plt.show()``.

Convention: angles are radians in code and degrees on the axes. Functions that take *rows*
read the dicts that :func:`avae_tutorial.training.evaluate.loss_per_angle` and the shipped results
files (``load_results``) contain, whose angles are already in degrees (``angle_deg``).
Chapter 2's loss landscapes are drawn by :mod:`avae_tutorial.lessons.landscape`, chapter 5's
orientation histograms by :mod:`avae_tutorial.lessons.orientation_plots`; both use this module's
sizes (``FONT``, ``MAX_WIDTH_IN``) and :func:`imshow`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .._checks import check_positive_int

__all__ = [
    "to_images",
    "show_images",
    "show_grid",
    "plot_loss_vs_angle",
    "plot_sweep",
    "hero_figure",
    "plot_data_parallel",
]

CMAP = "gray"  # digits are white strokes on black, as MNIST stores them
#: The smallest font size (points) that any figure here uses. Figures are drawn at most
#: ``MAX_WIDTH_IN`` inches wide, so that at matplotlib's 100 dpi they fit a book page's
#: column (about 660-740 px) scaled down by at most a tenth: text stays at least 9 pt as displayed.
FONT = 10
MAX_WIDTH_IN = 7.4


def to_images(x) -> np.ndarray:
    """Images as a float numpy array ``(N, H, W)`` from ``(N, 1, H, W)``, ``(N, H, W)`` or ``(H, W)``."""
    a = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    elif a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"x: expected images of shape (N, 1, H, W), (N, H, W) or (H, W), got {a.shape}")
    return a


def imshow(ax, img: np.ndarray, title: str | None = None, fontsize: float = FONT) -> None:
    """An image in grey levels 0..1 on ``ax``, pixels as they are, without ticks."""
    ax.imshow(img, cmap=CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=fontsize)


def show_images(x, titles: Sequence[str] | None = None, nrow: int = 8, size: float = 1.3) -> plt.Figure:
    """A grid of images, ``nrow`` per row, each with an optional title; returns the Figure."""
    imgs = to_images(x)  # (N, H, W)
    n = len(imgs)
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles: expected {n} titles (one per image), got {len(titles)}")
    check_positive_int(nrow, "nrow")
    cols, rows = min(nrow, n), math.ceil(n / nrow)
    size = min(size, MAX_WIDTH_IN / cols)  # never wider than the page: text keeps its size
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, (size + 0.25) * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < n:
            imshow(ax, imgs[i], None if titles is None else titles[i])
        else:
            ax.axis("off")
    fig.tight_layout()
    return fig


def show_grid(
    rows: Sequence,
    row_labels: Sequence[str] | None = None,
    col_titles: Sequence[str] | None = None,
    captions: Sequence[Sequence[str]] | None = None,
    size: float = 1.3,
) -> plt.Figure:
    """Rows of images with the same number of columns: ``rows[r]`` is ``(C, 1, H, W)`` (or ``(C, H, W)``).

    ``row_labels`` go on the left, ``col_titles`` above the first row and ``captions[r][c]``
    under each image (for example its loss). Returns the Figure.
    """
    grids = [to_images(r) for r in rows]
    n_cols = len(grids[0])
    if any(len(g) != n_cols for g in grids):
        raise ValueError(f"rows: expected the same number of images in every row, got {[len(g) for g in grids]}")
    for name, labels, want in (("row_labels", row_labels, len(grids)), ("col_titles", col_titles, n_cols)):
        if labels is not None and len(labels) != want:
            raise ValueError(f"{name}: expected {want} labels, got {len(labels)}")
    size = min(size, (MAX_WIDTH_IN - 0.6) / n_cols)  # never wider than the page: text keeps its size
    fig, axes = plt.subplots(len(grids), n_cols, figsize=(size * n_cols + 0.6, (size + 0.45) * len(grids)), squeeze=False)
    for r, grid in enumerate(grids):
        for c, img in enumerate(grid):
            ax = axes[r, c]
            imshow(ax, img, col_titles[c] if (col_titles is not None and r == 0) else None)
            if captions is not None:
                ax.set_xlabel(captions[r][c], fontsize=FONT)
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], fontsize=FONT)
    fig.tight_layout()
    return fig


def _rows_by_label(series) -> dict[str, list[dict]]:
    if isinstance(series, Mapping):
        return {str(k): list(v) for k, v in series.items()}
    return {"": list(series)}


def plot_loss_vs_angle(series, ax: plt.Axes | None = None, band: bool = True, ylabel: str = "loss (nats)") -> plt.Axes:
    """Mean loss against the rotation angle (degrees).

    ``series`` is a list of rows ``{"angle_deg", "loss"[, "loss_std", "n"]}`` (as
    :func:`~avae_tutorial.training.evaluate.loss_per_angle` returns) or a mapping ``label -> rows``.
    With ``band`` and ``loss_std``/``n`` in the rows, a shaded band shows +-1 standard error of
    the mean. Returns the Axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.4, 3.4))
    top = 0.0
    for label, rows in _rows_by_label(series).items():
        if not rows:
            raise ValueError(f"series {label!r}: no rows")
        rows = sorted(rows, key=lambda r: r["angle_deg"])
        deg = np.array([r["angle_deg"] for r in rows], dtype=float)
        loss = np.array([r["loss"] for r in rows], dtype=float)
        top = max(top, float(deg.max()))
        (line,) = ax.plot(deg, loss, marker="o", markersize=3, label=label or None)
        if band and all("loss_std" in r and "n" in r for r in rows):
            se = np.array([r["loss_std"] / math.sqrt(r["n"]) for r in rows])
            ax.fill_between(deg, loss - se, loss + se, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("rotation of the input (degrees, counter-clockwise)")
    ax.set_ylabel(ylabel)
    ax.set_xticks(np.arange(0, 45 * math.ceil(top / 45) + 1, 45))
    ax.grid(alpha=0.3)
    if any(label for label in _rows_by_label(series)):
        legend_outside(ax)
    return ax


def legend_outside(ax, **kw):
    """The axes' legend to the right of the plot, off the data."""
    return ax.legend(fontsize=FONT, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, **kw)


def plot_sweep(rows: Sequence[dict], ax: plt.Axes | None = None) -> plt.Axes:
    """Loss against latent size for each training regime (rows as in ``sweep.csv``).

    Solid lines: loss on rotated test digits; dashed: on upright test digits; dotted (where the
    rows have ``loss_rotated_undone``): on the rotated digits with the exact turn undone. Returns
    the Axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(MAX_WIDTH_IN - 0.2, 3.6), layout="constrained")  # legend at the right
    regimes = sorted({r["regime"] for r in rows})
    if not regimes:
        raise ValueError("rows: expected sweep rows with regime, latent_dim and losses, got none")
    for i, regime in enumerate(regimes):
        sel = sorted((r for r in rows if r["regime"] == regime), key=lambda r: r["latent_dim"])
        L = [r["latent_dim"] for r in sel]
        color = f"C{i}"
        ax.plot(L, [r["loss_rotated_test"] for r in sel], "o-", color=color, label=f"{regime} model, turned digits")
        ax.plot(L, [r["loss_upright_test"] for r in sel], "s--", color=color, alpha=0.7,
                label=f"{regime} model, upright digits")  # fmt: skip
        if regime == "upright" and all(r.get("loss_rotated_undone") is not None for r in sel):
            ax.plot(L, [r["loss_rotated_undone"] for r in sel], "^:", color=color, alpha=0.9,
                    label=f"{regime} model, turned digits, turn undone")  # fmt: skip
    dims = sorted({r["latent_dim"] for r in rows})
    ax.set_xscale("log", base=2)
    ax.set_xticks(dims)
    ax.set_xticklabels([str(d) for d in dims])
    ax.set_xlabel("latent size L")
    ax.set_ylabel("mean loss (nats)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=FONT, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return ax


def hero_figure(
    angles_deg,
    inputs,
    vae_rec,
    avae_rec,
    vae_loss,
    avae_loss,
    found_deg=None,
    size: float = 1.3,
    ncols: int = 4,
) -> plt.Figure:
    """Three rows over the same angles: the rotated input, the VAE's and the AVAE's reconstructions.

    Images ``(F, H, W)`` (or ``(F, 1, H, W)``), losses ``(F,)`` in nats, ``found_deg`` the
    rotation the search applied (optional). ``ncols`` angles per block of three rows; more
    angles start a new block below. Returns the Figure (the README's picture).
    """
    angles = [float(a) for a in np.asarray(angles_deg).ravel()]
    vl, al = np.asarray(vae_loss, dtype=float).ravel(), np.asarray(avae_loss, dtype=float).ravel()
    found = None if found_deg is None else np.asarray(found_deg, dtype=float).ravel()
    rows = [to_images(inputs), to_images(vae_rec), to_images(avae_rec)]
    n, cols = len(angles), min(ncols, len(angles))
    blocks = math.ceil(n / cols)
    fig = plt.figure(figsize=(size * cols + 0.9, (size + 0.42) * 3 * blocks + 0.3 * blocks + 0.5), layout="constrained")
    for b, sub in enumerate(np.atleast_1d(fig.subfigures(blocks, 1, hspace=0.04))):
        axes = sub.subplots(3, cols, squeeze=False)
        for c in range(cols):
            i = b * cols + c
            for r, label in enumerate(("rotated input", "VAE", "AVAE")):
                ax = axes[r, c]
                if i >= n:
                    ax.axis("off")
                    continue
                imshow(ax, rows[r][i], f"{angles[i]:.0f}°" if r == 0 else None)
                if r == 1:
                    ax.set_xlabel(f"{vl[i]:.0f} nats", fontsize=FONT)
                elif r == 2:
                    turn = "" if found is None else f", {found[i]:+.0f}°"
                    ax.set_xlabel(f"{al[i]:.0f} nats{turn}", fontsize=FONT)
                if c == 0:
                    ax.set_ylabel(label, fontsize=FONT)
    fig.suptitle("A turned test digit, the upright VAE's reconstruction and the AVAE's;\n"
                 "under each: its loss (for the AVAE, and the turn the search applied)", fontsize=FONT)
    return fig


def wrapper_diagram(x=None, x_warped=None, x_rec=None, x_hat=None) -> plt.Figure:
    """The AVAE as a diagram (the introduction's figure): warp, encoder, code, decoder, inverse warp.

    Optional images ``(H, W)`` (or ``(1, H, W)``) are drawn at their stage: the input ``x``, the
    warped input, the decoder's output and the warped-back reconstruction ``x_hat``.
    """
    fig, ax = plt.subplots(figsize=(MAX_WIDTH_IN, 2.6 * MAX_WIDTH_IN / 10.5 + 0.3))  # drawn in 10.5 x 2.6 units
    ax.set_xlim(0, 10.5)
    ax.set_ylim(-0.1, 2.6)
    ax.axis("off")
    boxes = [(1.55, "warp\n$(x, A)$", "#dce9f5"), (3.75, "encoder\n$q_\\phi(z \\mid \\cdot)$", "#fde9d9"),
             (5.25, "code\n$z = \\mu$", "#eeeeee"), (6.75, "decoder\n$\\hat x_\\theta(z)$", "#fde9d9"),
             (8.95, "warp back\n$(\\cdot, A^{-1})$", "#dce9f5")]  # fmt: skip
    for cx, text, color in boxes:
        ax.add_patch(plt.Rectangle((cx - 0.55, 0.95), 1.1, 0.8, facecolor=color, edgecolor="k", lw=1))
        ax.text(cx, 1.35, text, ha="center", va="center", fontsize=FONT)
    images = [(0.45, x, "$x$"), (2.65, x_warped, "warp$(x, A)$"), (7.85, x_rec, "decoded"),
              (10.05, x_hat, "$\\hat x_A$")]  # fmt: skip
    for cx, img, label in images:
        if img is not None:
            a = to_images(img)[-1]  # (H, W)
            ax.imshow(a, cmap=CMAP, vmin=0, vmax=1, extent=(cx - 0.4, cx + 0.4, 0.95, 1.75))
        ax.text(cx, 0.75, label, ha="center", va="top", fontsize=FONT)
    xs = [0.85, 1.0, 2.1, 2.25, 3.05, 3.2, 4.3, 4.7, 5.8, 6.2, 7.3, 7.45, 8.25, 8.4, 9.5, 9.65]
    for a, b in zip(xs[::2], xs[1::2]):
        ax.annotate("", xy=(b, 1.35), xytext=(a, 1.35), arrowprops={"arrowstyle": "->", "lw": 1.2})
    ax.text(5.25, 2.35, "the VAE, unchanged", ha="center", fontsize=FONT, color="0.3")
    ax.add_patch(plt.Rectangle((3.1, 0.85), 4.3, 1.25, fill=False, ls="--", ec="0.5"))
    ax.text(5.25, 0.1, "$A$ per image: the transform that minimizes the loss of $x$ against $\\hat x_A$",
            ha="center", fontsize=FONT, color="0.2")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- chapters 3-5: tables, training curves, orientations
def markdown_table(rows: Sequence[dict], columns: Mapping[str, str]) -> str:
    """A Markdown table of ``rows`` (dicts): ``columns`` maps each key to a format spec (``".1f"``, ``""``).

    Display it in a notebook with ``IPython.display.Markdown(markdown_table(...))``.
    """
    if not rows:
        raise ValueError("rows: expected at least one row")
    missing = [k for k in columns if any(k not in r for r in rows)]
    if missing:
        raise ValueError(f"columns {missing} are missing from some rows; row keys: {sorted(rows[0])}")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r[k], fmt) for k, fmt in columns.items()) + " |")
    return "\n".join(lines)


def _cell(v, fmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return format(v, fmt) if fmt else str(v)


def plot_training_curves(histories: Mapping[str, dict], keys: Sequence[str] = ("train_loss", "test_loss")) -> plt.Figure:
    """One panel per history key (loss per epoch), one line per model: ``histories`` maps label -> history."""
    if not histories:
        raise ValueError("histories: expected at least one label -> history")
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2), sharey=False, squeeze=False)
    for ax, key in zip(axes[0], keys):
        for label, h in histories.items():
            if key not in h:
                raise ValueError(f"history {label!r} has no {key!r}; keys: {sorted(h)}")
            ax.plot(np.arange(1, len(h[key]) + 1), h[key], "o-", markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{key.replace('_', ' ')} (nats)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=FONT, loc="lower center", ncol=min(len(labels), 4), frameon=False)
    fig.tight_layout(rect=(0, 0.08 * math.ceil(len(labels) / 4) + 0.02, 1, 1))
    return fig


def plot_cost_quality(rows: Sequence[dict], ax: plt.Axes | None = None) -> plt.Axes:
    """Mean loss against cost (x a plain VAE evaluation, log scale) of search settings.

    ``rows`` as :func:`avae_tutorial.tools.bench.cost_quality_curve` returns them (``restarts``,
    ``steps``, ``loss``, ``cost_vs_plain``): one line per number of refinement steps, each point
    labelled with its number of restarts. Returns the Axes.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if not rows:
        raise ValueError("rows: expected cost/quality rows, got none")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.4))
    notes = []
    for i, steps in enumerate(sorted({r["steps"] for r in rows})):
        sel = sorted((r for r in rows if r["steps"] == steps), key=lambda r: r["cost_vs_plain"])
        cost, loss = [r["cost_vs_plain"] for r in sel], [r["loss"] for r in sel]
        ax.plot(cost, loss, "o-", color=f"C{i}", label=f"{steps} refinement steps")
        for r in sel:
            notes.append(ax.annotate(str(r["restarts"]), (r["cost_vs_plain"], r["loss"]), textcoords="offset points",
                                     xytext=(3, 4), fontsize=FONT, color=f"C{i}"))  # fmt: skip
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # 1, 2, 5, 10, 20, ...: never crowded
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("cost per image (x one plain VAE evaluation)")
    ax.set_ylabel("mean loss (nats)")
    ax.grid(alpha=0.3, which="both")
    legend_outside(ax, title="numbers: restarts", title_fontsize=FONT)
    _spread_labels(ax.figure, notes)
    return ax


#: Where a point's label may go, in points from the point, in the order tried.
_LABEL_OFFSETS = ((3, 4), (3, -12), (-10, 4), (-10, -12), (6, 10), (6, -18))


def _spread_labels(fig, notes) -> None:
    """Move each annotation to the first offset (:data:`_LABEL_OFFSETS`) at which it overlaps no
    label placed before it."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    placed = []
    for note in notes:
        for off in _LABEL_OFFSETS:
            note.set_position(off)
            box = note.get_window_extent(renderer)
            if not any(box.overlaps(b) for b in placed):
                break
        placed.append(note.get_window_extent(renderer))


__all__ += ["markdown_table", "plot_training_curves", "plot_cost_quality", "wrapper_diagram", "FONT", "MAX_WIDTH_IN",
            "plot_data_parallel", "legend_outside", "layout_problems", "smallest_text_pt", "figure_png"]


def plot_data_parallel(slices: Mapping[int, Sequence[Sequence[Sequence[int]]]], rank_grads, single) -> plt.Figure:
    """Data-parallel training in a picture (the "Beyond one machine" appendix).

    Left, one panel per process count N: ``slices[N][rank][b]`` are the indices that ``rank``
    trains on in global batch ``b`` (:class:`~avae_tutorial.training.distributed.GlobalBatchSampler`);
    each row is a global batch, each cell an image, coloured by the process that takes it.
    Right: ``rank_grads (N, K)``, a few gradient coordinates of each process's share of the loss,
    their average (what DistributedDataParallel applies) and ``single (K,)``, one process's
    gradient of the whole batch's mean loss.
    """
    rank_grads = torch.as_tensor(rank_grads).detach().float().cpu()
    single = torch.as_tensor(single).detach().float().cpu()
    counts = list(slices)
    fig = plt.figure(figsize=(MAX_WIDTH_IN, 3.2 + 1.3 * len(counts)))
    grid = fig.add_gridspec(len(counts) + 1, 1, height_ratios=[1.0] * len(counts) + [2.2], hspace=0.9)
    colors = plt.get_cmap("tab10")
    for row, n in enumerate(counts):
        ax = fig.add_subplot(grid[row, 0])
        batches = [sum((list(slices[n][r][b]) for r in range(n)), []) for b in range(len(slices[n][0]))]
        owner = [[r for r in range(n) for _ in slices[n][r][b]] for b in range(len(batches))]
        width = max(len(b) for b in batches)
        for b, (idx, who) in enumerate(zip(batches, owner)):
            for j, (i, r) in enumerate(zip(idx, who)):
                ax.add_patch(plt.Rectangle((j, b), 0.95, 0.9, color=colors(r), alpha=0.55))
                ax.text(j + 0.47, b + 0.45, str(i), ha="center", va="center", fontsize=FONT)
        ax.set_xlim(0, width)
        ax.set_ylim(len(batches), 0)
        ax.set_xticks([])
        ax.set_yticks([b + 0.45 for b in range(len(batches))], [f"batch {b + 1}" for b in range(len(batches))],
                      fontsize=FONT)  # fmt: skip
        ax.set_title(f"N = {n}: " + ("one process" if n == 1 else f"{n} processes, one colour each"), fontsize=FONT)
        for spine in ax.spines.values():
            spine.set_visible(False)
    ax = fig.add_subplot(grid[-1, 0])
    n, k = rank_grads.shape
    w = 0.8 / (n + 2)
    x = np.arange(k)
    for r in range(n):
        ax.bar(x + r * w, rank_grads[r].numpy(), w, color=colors(r), alpha=0.55, label=f"rank {r}'s share")
    ax.bar(x + n * w, rank_grads.mean(0).numpy(), w, color="0.3", label="average of the ranks")
    ax.bar(x + (n + 1) * w, single.numpy(), w, color="0.3", hatch="///", fill=False, label="one process")
    ax.axhline(0, color="0.5", lw=0.6)
    ax.set_xticks(x + 0.4 - w / 2, [str(i) for i in range(k)], fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    ax.set_xlabel("gradient coordinate", fontsize=FONT)
    ax.set_ylabel("gradient value", fontsize=FONT)
    ax.set_title("one global batch's gradient", fontsize=FONT)
    ax.legend(fontsize=FONT, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2)
    return fig


# ---------------------------------------------------------------- the smallest text of a figure
#: The PNG text key under which :func:`figure_png` records a figure's smallest text, in points.
TEXT_KEY = "avae:smallest-text-pt"


def smallest_text_pt(fig) -> float | None:
    """The size in points of the smallest visible, non-empty text of a drawn figure (titles,
    labels, tick labels, legends, annotations); ``None`` for a figure without text."""
    from matplotlib.text import Text

    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return min(sizes) if sizes else None


def png_text_chunk(png: bytes, key: str, value: str) -> bytes:
    """``png`` with a ``tEXt`` chunk ``key: value`` after its header (a reader's viewer ignores it)."""
    import struct
    import zlib

    body = key.encode("latin-1") + b"\0" + value.encode("latin-1")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    end_of_header = 8 + 4 + 4 + 13 + 4  # signature, then IHDR (length, type, 13 bytes, crc)
    return png[:end_of_header] + chunk + png[end_of_header:]


def png_text(png: bytes, key: str) -> str | None:
    """The value of ``png``'s ``tEXt`` chunk ``key`` (``None`` if it has none)."""
    pos = 8
    while pos + 8 <= len(png):
        length, kind = int.from_bytes(png[pos : pos + 4], "big"), png[pos + 4 : pos + 8]
        if kind == b"tEXt":
            k, _, v = png[pos + 8 : pos + 8 + length].partition(b"\0")
            if k.decode("latin-1") == key:
                return v.decode("latin-1")
        pos += 12 + length
    return None


def figure_png(fig) -> bytes | None:
    """A figure as the notebook shows it (PNG, tight bounding box), recording its smallest text
    (:data:`TEXT_KEY`): the book's site test scales it by the figure's dpi and displayed width."""
    from IPython.core.pylabtools import print_figure

    png = print_figure(fig, "png", bbox_inches="tight")  # draws the figure: its tick labels exist
    if not png:
        return png
    size = smallest_text_pt(fig)
    return png if size is None else png_text_chunk(png, TEXT_KEY, f"{size:g}")


def record_figure_text(shell=None) -> bool:
    """Show matplotlib figures in this IPython session through :func:`figure_png`; ``False``
    outside IPython."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return False
    from matplotlib.figure import Figure

    plt.close(plt.figure())  # loads the backend now: the inline one registers its formatter first, ours wins

    shell.display_formatter.formatters["image/png"].for_type(Figure, figure_png)
    return True



def layout_problems(fig) -> list[str]:
    """What keeps a reader from reading a drawn figure: a legend inside its axes that covers
    plotted points, and text (titles, labels, annotations, legends, tick labels) overlapping
    other text. An empty list is a clean figure."""
    from matplotlib.legend import Legend
    from matplotlib.lines import Line2D
    from matplotlib.text import Annotation, Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems = []
    for ax in fig.axes:
        leg = ax.get_legend()
        if leg is None or not leg.get_visible():
            continue
        box = leg.get_window_extent(renderer)
        for line in ax.get_lines():
            pts = line.get_transform().transform(line.get_xydata()) if len(line.get_xydata()) else []
            if any(box.contains(px, py) for px, py in pts):
                problems.append(f"legend of {ax.get_title()!r} covers points of {line.get_label()!r}")
                break
    texts = []
    for t in fig.findobj(Text):
        if not (t.get_visible() and t.get_text().strip()) or t.get_figure() is None:
            continue
        if any(isinstance(a, Legend) for a in _ancestors(t, fig)):
            continue  # a legend's own texts are laid out by the legend
        texts.append((t, t.get_window_extent(renderer)))
    for i, (a, ba) in enumerate(texts):
        for b, bb in texts[i + 1 :]:
            inter = ba.intersection(ba, bb)
            if inter is not None and inter.width > 1 and inter.height > 1:
                problems.append(f"text {a.get_text()!r} overlaps {b.get_text()!r}")
    return problems


def _ancestors(artist, fig):
    """The legends of ``fig`` that hold ``artist`` (a legend's texts are its children)."""
    from matplotlib.legend import Legend

    legends = [l for ax in fig.axes for l in [ax.get_legend()] if l is not None] + list(fig.legends)
    return [l for l in legends if artist in l.get_texts() or artist is l.get_title()]
