"""What the alignment search costs and what it buys (chapter 3; ``python -m avae_tutorial bench``).

On one trained model and the same randomly rotated (or affine-perturbed) test digits:

* **test time**: the seed-style reference (one image and one restart at a time: angle uniform
  in (-2pi, 2pi), Adam lr 0.01 for 20 steps, best loss kept; 30 restarts) against
  :func:`~avae_tutorial.align` at its ``"default"`` and ``"fast"`` presets: seconds per image,
  mean loss, the fraction of the reference's loss reduction (vs the identity) achieved, the cost
  relative to one plain VAE evaluation of the same images, peak memory;
* **training time**: one epoch of per-batch alignment (the package's training search, and the
  seed-style per-batch search: 20 random angles scored, best kept, 10 Adam steps) against a
  plain epoch on rotated digits, with the loss each run reaches;
* :func:`cost_quality_curve`: restarts x steps against loss and time (the chapter's figure).

The reference is slow (seconds per image on a CPU): it runs on a few images only, and every
comparison with it uses those images.
"""
from __future__ import annotations

import json
import math
import os
import platform
import statistics
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .align import PRESETS, AlignConfig, align, eval_mode, fit_pose_net, for_device, params_to_matrix, search_cost
from .data import random_affines, random_rotations
from .loss import avae_loss
from .model import VAE, for_inference
from .train import TrainConfig, search_batch
from .transforms import rotation, warp

__all__ = ["BenchConfig", "bench", "seed_reference", "cost_quality_curve", "train_comparison",
           "format_report"]  # fmt: skip

@dataclass
class BenchConfig:
    """Sizes of a benchmark run; the defaults take a few minutes on two CPU cores."""

    family: str = "rotation"  # "rotation" or "affine": the perturbation and the search
    n: int = 256  # test digits for the package's aligners
    n_ref: int = 8  # of which the seed-style reference searches (about 5 s each on 2 CPU cores)
    ref_restarts: int = 30
    ref_steps: int = 20
    train_n: int = 1280  # training digits for the epoch comparison (0: skip it)
    train_epochs: int = 4
    train_batch: int = 128
    train_test_n: int = 128  # rotated test digits on which the trained models are compared
    curve_n: int = 32  # test digits for the cost/quality curve (0: skip it)
    pose_n: int = 0  # training digits to fit a pose net on, for an amortized row (0: skip it)
    pose_epochs: int = 30
    train_align: dict | None = None  # AlignConfig fields overriding TrainConfig.align (the first epoch's search)
    train_align_warm: dict | None = None  # ... overriding TrainConfig.align_warm (later epochs' search)
    chunk: int | None = None  # rows per chunk for align() and the plain evaluation (None: AlignConfig().chunk, 64, on a CPU)
    seed: int = 0

    def __post_init__(self):
        if self.family not in ("rotation", "affine"):
            raise ValueError(f"family: expected 'rotation' or 'affine', got {self.family!r}")
        for name in ("n", "n_ref", "ref_restarts", "ref_steps", "train_epochs", "train_batch", "train_test_n",
                     "pose_epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        for name in ("train_n", "curve_n", "pose_n", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name}: expected an int >= 0, got {v!r}")
        if self.chunk is not None and (isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 1):
            raise ValueError(f"chunk: expected a positive int or None, got {self.chunk!r}")
        for name in ("train_align", "train_align_warm"):
            if getattr(self, name) is not None:
                AlignConfig(**getattr(self, name))  # validates
        if self.n_ref > self.n:
            raise ValueError(f"n_ref: expected at most n={self.n} images, got {self.n_ref}")


# ------------------------------------------------------------------ measuring
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory (MiB) above the level at entry: CUDA allocator statistics on a GPU, else the
    process' resident set sampled every 2 ms from ``/proc/self/statm`` (``None`` where absent)."""

    def __init__(self, device: torch.device):
        self.device, self.mib = torch.device(device), None
        self._stop, self._thread, self._base, self._peak = threading.Event(), None, 0, 0

    @staticmethod
    def _rss() -> int | None:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return None

    def _poll(self):
        while not self._stop.wait(0.002):
            self._peak = max(self._peak, self._rss() or 0)

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self._rss() is not None:
            self._base = self._peak = self._rss()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.mib = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, self._rss() or 0)
            self.mib = (self._peak - self._base) / 2**20


def _timed(fn, device) -> tuple[object, float, float | None]:
    """``(result, seconds, peak MiB)`` of one call of ``fn()``."""
    _sync(device)
    with PeakMemory(device) as mem:
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        seconds = time.perf_counter() - t0
    return out, seconds, mem.mib


def plain_loss(vae: VAE, x: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """The plain VAE's loss ``(N,)`` (identity, ``z = mu``, eval mode) in chunks: the unit of cost.

    Like every search here it runs on :func:`for_inference`'s copy (BatchNorm folded in)."""
    return _plain(for_inference(vae), x, chunk)


def _plain(model, x: torch.Tensor, chunk: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([avae_loss(model, x[s : s + chunk], check=False) for s in range(0, len(x), chunk)])


def _plain_seconds(vae, x, chunk, repeats: int = 3) -> float:
    """Median seconds of one plain evaluation of ``x`` (after a warm-up). The frozen copy is made
    once, outside the timing: evaluating a model needs no copy of it."""
    model = for_inference(vae)
    _plain(model, x[:chunk], chunk)
    return statistics.median(_timed(lambda: _plain(model, x, chunk), x.device)[1] for _ in range(repeats))


# ------------------------------------------------------------------ the seed's search
def seed_reference(
    vae: VAE, x: torch.Tensor, family: str = "rotation", restarts: int = 30, steps: int = 20,
    lr: float = 0.01, seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The seed's test-time search, as described: ``(loss (N,), params (N, P))``.

    Per image, per restart (Python loops, batch of one): an angle uniform in (-2pi, 2pi) (other
    affine parameters 0), ``steps`` Adam steps with ``lr`` on the parameters, the best loss seen
    kept. Unlike the seed it runs in eval mode on :func:`for_inference`'s copy (as ``align`` does)
    and gives the weights no gradients.
    """
    g = torch.Generator().manual_seed(seed)
    P = 1 if family == "rotation" else 4
    losses, params = [], []
    vae = for_inference(vae)
    for i in range(x.shape[0]):
        best_l, best_p = math.inf, None
        for _ in range(restarts):
            p = torch.zeros(1, P, device=x.device, dtype=x.dtype)
            p[0, 0] = float(torch.rand((), generator=g) * 4 * math.pi - 2 * math.pi)
            p.requires_grad_(True)
            opt = torch.optim.Adam([p], lr=lr)
            for step in range(steps + 1):
                loss = avae_loss(vae, x[i : i + 1], params_to_matrix(p, family), check=False)
                if loss.item() < best_l:
                    best_l, best_p = loss.item(), p.detach().clone()
                if step == steps:
                    break
                opt.zero_grad()
                loss.sum().backward()
                opt.step()
        losses.append(best_l)
        params.append(best_p)
    return torch.tensor(losses, dtype=x.dtype), torch.cat(params)


def seed_train_search(
    vae: VAE, x: torch.Tensor, candidates: int = 20, steps: int = 10, lr: float = 0.01, generator=None,
    chunk: int = 64,
) -> torch.Tensor:
    """The seed's per-batch training search, batched: ``candidates`` random angles scored per
    image, the best kept, ``steps`` Adam steps on it (eval mode, best loss seen kept), on
    :func:`for_inference`'s copy as ``align`` does. -> angles ``(B,)``."""
    B = x.shape[0]
    vae = for_inference(vae)
    with torch.enable_grad():
        angle = torch.rand(B, candidates, generator=generator).to(x) * 2 * math.pi  # (B, C)
        with torch.no_grad():
            x_rep, a_rep = x.repeat_interleave(candidates, 0), angle.reshape(-1)
            scores = torch.cat([avae_loss(vae, x_rep[s : s + chunk], rotation(a_rep[s : s + chunk]), check=False)
                                for s in range(0, B * candidates, chunk)]).view(B, candidates)  # fmt: skip
        best_l, j = scores.min(1)
        best_a = angle.gather(1, j[:, None]).squeeze(1)
        a = best_a.clone().requires_grad_(True)
        opt = torch.optim.Adam([a], lr=lr)
        for step in range(steps + 1):
            loss = avae_loss(vae, x, rotation(a), check=False)  # (B,) at the angles after `step` steps
            better = loss.detach() < best_l
            best_l, best_a = torch.where(better, loss.detach(), best_l), torch.where(better, a.detach(), best_a)
            if step == steps:
                break
            (a.grad,) = torch.autograd.grad(loss.sum(), a)
            opt.step()
    return best_a.detach()


# ------------------------------------------------------------------ test time
def _perturb(x: torch.Tensor, family: str, seed: int) -> torch.Tensor:
    return random_rotations(x, seed=seed)[0] if family == "rotation" else random_affines(x, seed=seed)[0]


def inference_rows(vae: VAE, x: torch.Tensor, cfg: BenchConfig, x_pose: torch.Tensor | None = None) -> list[dict]:
    """One row per method on the perturbed digits ``x``: the seed reference (on the first
    ``cfg.n_ref``), the ``"default"`` and ``"fast"`` presets and, given ``x_pose`` (digits to fit
    a :class:`~avae_tutorial.align.PoseNet` on), a coarse grid plus the pose net's guess."""
    dev = x.device
    loss0 = plain_loss(vae, x, cfg.chunk)
    methods = [("seed reference", lambda: seed_reference(vae, x[: cfg.n_ref], cfg.family, cfg.ref_restarts,
                                                         cfg.ref_steps, seed=cfg.seed)[0].to(dev),
                cfg.ref_restarts * (3 * cfg.ref_steps + 1))]  # fmt: skip
    for preset in ("default", "fast"):
        conf = replace_conf(PRESETS[cfg.family][preset], chunk=cfg.chunk)
        methods.append((f"align {preset!r}", lambda conf=conf: align(vae, x, cfg.family, conf, progress=False).loss,
                        search_cost(conf, cfg.family)))  # fmt: skip
    extra = {}
    if x_pose is not None and cfg.family == "rotation":
        pose, extra["pose_fit_seconds"], _ = _timed(lambda: fit_pose_net(vae, x_pose, epochs=cfg.pose_epochs,
                                                                          seed=cfg.seed), dev)  # fmt: skip
        conf = replace_conf(POSE_ALIGN, chunk=cfg.chunk)
        methods.append(("pose net + grid", lambda: align(vae, x, "rotation", conf, init=_guess(pose, x),
                                                         progress=False).loss, search_cost(conf, n_init=1)))  # fmt: skip
    rows = []
    for name, fn, evals in methods:
        if name != "seed reference":
            fn()  # one untimed call: first-call allocations and lazy initialization
        before = _plain_seconds(vae, x, cfg.chunk)
        loss, sec, mem = _timed(fn, dev)
        plain_s = 0.5 * (before + _plain_seconds(vae, x, cfg.chunk))  # the load drifts: average around
        rows.append(_row(name, loss, loss0, len(loss), sec, plain_s, mem, cfg, evals))
    if "pose_fit_seconds" in extra:
        rows[-1]["pose_fit_seconds"] = extra["pose_fit_seconds"]
    ref, default = rows[0], rows[1]
    gain_ref = float((loss0[: cfg.n_ref] - ref["_losses"]).mean())
    for r in rows:
        r["loss_ref_subset"] = float(_subset(r, cfg).mean())
        r["frac_of_ref_reduction"] = float((loss0[: cfg.n_ref] - _subset(r, cfg)).mean()) / gain_ref
        r["speedup_vs_ref"] = ref["seconds_per_image"] / r["seconds_per_image"]
        if r is not ref:
            r["frac_of_default_reduction"] = (r["loss0"] - r["loss"]) / (default["loss0"] - default["loss"])
    for r in rows:
        r.pop("_losses")
    return rows


#: The search that the pose net's guess joins: a coarse grid, one basin, three parabolic steps.
POSE_ALIGN = AlignConfig(restarts=6, top_k=1, steps=3)


def _guess(pose, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return pose(x)[:, None]  # (B, 1)


def _subset(row: dict, cfg: BenchConfig) -> torch.Tensor:
    return row["_losses"][: cfg.n_ref]


def _row(method, loss, loss0, n, seconds, plain_seconds, mem, cfg, evals) -> dict:
    return {
        "method": method, "n": n, "seconds_per_image": seconds / n,
        "cost_vs_plain": (seconds / n) / (plain_seconds / len(loss0)),  # plain_seconds: all of loss0's images
        "evals_per_image": evals,
        "loss": float(loss.mean()), "loss0": float(loss0[:n].mean()), "peak_mib": mem, "_losses": loss,
    }  # fmt: skip


# ------------------------------------------------------------------ training time
class _TrainRun:
    """Rotated-digit training with per-batch alignment ``search`` ("none", "package", "seed"),
    as :func:`avae_tutorial.fit`'s ``rotated`` / ``aligned`` regimes do it, one epoch per call."""

    def __init__(self, vae: VAE, x: torch.Tensor, cfg: BenchConfig, search: str):
        self.vae, self.x, self.cfg, self.search = vae, x, cfg, search
        self.opt = torch.optim.Adam(vae.parameters(), lr=1e-3, weight_decay=5e-4)
        self.gen = torch.Generator().manual_seed(cfg.seed + 7)  # the data: the same angles and order for every run
        self.search_gen = torch.Generator().manual_seed(cfg.seed + 11)
        base = TrainConfig(regime="aligned")
        self.config = TrainConfig(regime="aligned",
                                  align={**base.align, **(cfg.train_align or {}), "chunk": cfg.chunk},
                                  align_warm={**base.align_warm, **(cfg.train_align_warm or {}), "chunk": cfg.chunk})
        self.orientation = None  # last epoch's orientation of each digit (the package's warm start)
        self.seconds, self.losses = [], []

    def epoch(self) -> None:
        x, cfg, vae = self.x, self.cfg, self.vae
        angles = (torch.rand(len(x), generator=self.gen) * 2 * math.pi).to(x.device)
        order = torch.randperm(len(x), generator=self.gen).to(x.device)
        new_orient = torch.zeros(len(x), device=x.device)
        total = 0.0
        _sync(x.device)
        t0 = time.perf_counter()
        for s in range(0, len(x), cfg.train_batch):
            idx = order[s : s + cfg.train_batch]
            xb = warp(x[idx], rotation(angles[idx]))
            A = None
            if self.search == "package":
                last = None if self.orientation is None else self.orientation[idx] - angles[idx]
                corr = search_batch(vae, xb, last, self.config)
                A, new_orient[idx] = rotation(corr), angles[idx] + corr
            elif self.search == "seed":
                A = rotation(seed_train_search(vae, xb, generator=self.search_gen, chunk=cfg.chunk))
            vae.train()
            loss = avae_loss(vae, xb, A, sample=True, check=False).mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total += loss.item() * len(idx)
        _sync(x.device)
        self.seconds.append(time.perf_counter() - t0)
        self.losses.append(total / len(x))
        self.orientation = new_orient
        vae.eval()


def train_comparison(x_train: torch.Tensor, x_test: torch.Tensor, cfg: BenchConfig, latent_dim: int = 8) -> dict:
    """Plain, package-aligned and seed-style-aligned training from the same initial weights.

    The three runs advance in turns, one epoch each, after an untimed warm-up batch of each, so
    that a change in the machine's load during the benchmark affects all three alike.
    ``"runs"``: per run, seconds per epoch (the mean over all epochs, the first, cold-started
    one included) and its ratio to the plain epoch, the last epoch's training loss (at the
    chosen transforms, sampled ``z``) and the test loss of the trained model on randomly rotated
    ``x_test`` aligned by the ``"default"`` preset.
    ``"search"``: the two per-batch searches alone on the package-trained model and the same
    rotated training digits (the package's warm-started at their last orientation): mean loss
    (``z = mu``) at the chosen angle and seconds per image.
    """
    x_rot = random_rotations(x_test, seed=cfg.seed + 1)[0]
    names = {"none": "plain epoch", "package": "package (per batch)", "seed": "seed-style (per batch)"}
    runs = {}
    for search in names:
        torch.manual_seed(cfg.seed)
        runs[search] = _TrainRun(VAE(latent_dim, x_train.shape[-1]).to(x_train.device), x_train, cfg, search)
    for search in names:  # warm-up, untimed: one batch of each on a scratch model (allocator, kernels)
        _TrainRun(VAE(latent_dim, x_train.shape[-1]).to(x_train.device), x_train[: cfg.train_batch], cfg, search).epoch()
    torch.manual_seed(cfg.seed)
    for _ in range(cfg.train_epochs):
        for run in runs.values():
            run.epoch()
    rows = []
    for search, run in runs.items():
        test = align(run.vae, x_rot, "rotation", "default", progress=False).loss.mean()
        rows.append({"search": names[search],
                     "align": run.config.align if search == "package" else None,
                     "align_warm": run.config.align_warm if search == "package" else None,
                     "seconds_per_epoch": statistics.fmean(run.seconds), "epoch_seconds": run.seconds,
                     "train_loss": run.losses[-1], "test_loss_aligned": float(test)})  # fmt: skip
    for r in rows:
        r["epoch_vs_plain"] = r["seconds_per_epoch"] / rows[0]["seconds_per_epoch"]
    return {"runs": rows, "search": _search_rows(runs["package"], x_train, cfg)}


def _search_rows(run: _TrainRun, x_train: torch.Tensor, cfg: BenchConfig) -> list[dict]:
    vae = run.vae
    m = min(len(x_train), 256)
    angles = (torch.rand(m, generator=torch.Generator().manual_seed(cfg.seed + 13)) * 2 * math.pi).to(x_train.device)
    x = warp(x_train[:m], rotation(angles))
    last = run.orientation[:m] - angles
    gen = torch.Generator().manual_seed(cfg.seed + 17)
    b = cfg.train_batch
    searches = {
        "package (warm start)": lambda: torch.cat([search_batch(vae, x[s : s + b], last[s : s + b], run.config)
                                                   for s in range(0, m, b)]),
        "seed-style": lambda: torch.cat([seed_train_search(vae, x[s : s + b], generator=gen, chunk=cfg.chunk)
                                         for s in range(0, m, b)]),
    }  # fmt: skip
    rows = []
    for name, fn in searches.items():
        angle, sec, _ = _timed(fn, x.device)
        with eval_mode(vae), torch.no_grad():
            loss = avae_loss(vae, x, rotation(angle), check=False).mean()
        rows.append({"search": name, "n": m, "loss": float(loss), "seconds_per_image": sec / m})
    return rows


# ------------------------------------------------------------------ cost/quality curve
#: ``(restarts, steps)`` settings of :func:`cost_quality_curve`.
CURVE_GRID = ((6, 0), (12, 0), (24, 0), (48, 0), (6, 3), (14, 1), (14, 3), (24, 1), (24, 3), (24, 6), (48, 6))


def cost_quality_curve(
    vae: VAE, x: torch.Tensor, grid=CURVE_GRID, top_k: int = 1, family: str = "rotation", chunk: int = 64
) -> list[dict]:
    """Loss and time of :func:`align` for each ``(restarts, steps)`` in ``grid`` on the digits ``x``.

    Rows ``{restarts, steps, top_k, loss, seconds_per_image, cost_vs_plain, evals_per_image}``;
    ``cost_vs_plain`` is the time over that of one plain VAE evaluation of ``x``.
    """
    plain_s = _plain_seconds(vae, x, chunk)
    rows = []
    for restarts, steps in grid:
        conf = replace_conf(PRESETS[family]["default"], restarts=restarts, steps=steps, top_k=top_k, chunk=chunk)
        res, sec, _ = _timed(lambda: align(vae, x, family, conf, progress=False), x.device)
        rows.append({"restarts": restarts, "steps": steps, "top_k": top_k, "loss": float(res.loss.mean()),
                     "seconds_per_image": sec / len(x), "cost_vs_plain": sec / plain_s,
                     "evals_per_image": search_cost(conf, family)})  # fmt: skip
    return rows


def replace_conf(conf: AlignConfig, **kw) -> AlignConfig:
    return AlignConfig(**{**asdict(conf), **kw})


# ------------------------------------------------------------------ the whole run
def conditions(device: torch.device) -> dict:
    """Where and under what load the figures were measured."""
    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"device": str(dev), "device_name": name, "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "load_avg_1min": load, "torch": torch.__version__}  # fmt: skip


def bench(
    vae: VAE, x_test: torch.Tensor, x_train: torch.Tensor | None = None, cfg: BenchConfig = BenchConfig()
) -> dict:
    """Run the benchmark on upright ``x_test`` (perturbed here, seeded) and ``x_train``; returns a dict.

    ``x_test`` needs at least ``cfg.n`` digits; ``x_train`` (``cfg.train_n`` digits) may be ``None``
    when ``cfg.train_n == 0``. Everything runs on ``x_test``'s device.
    """
    if len(x_test) < max(cfg.n, cfg.curve_n):
        raise ValueError(f"x_test: expected at least {max(cfg.n, cfg.curve_n)} digits, got {len(x_test)}")
    vae = vae.to(x_test.device).eval()
    if cfg.chunk is None:
        cfg = replace(cfg, chunk=for_device(AlignConfig(), x_test.device).chunk)
    out = {"config": asdict(cfg), "conditions": conditions(x_test.device)}
    t0 = time.perf_counter()
    x = _perturb(x_test[: cfg.n], cfg.family, cfg.seed)
    need = max(cfg.train_n, cfg.pose_n)
    if need and (x_train is None or len(x_train) < need):
        raise ValueError(f"x_train: expected at least {need} digits (train_n, pose_n), got "
                         f"{0 if x_train is None else len(x_train)}")  # fmt: skip
    x_pose = x_train[: cfg.pose_n].to(x.device) if cfg.pose_n else None
    out["test_time"] = inference_rows(vae, x, cfg, x_pose)
    if cfg.curve_n:
        out["curve"] = cost_quality_curve(vae, x[: cfg.curve_n], family=cfg.family, chunk=cfg.chunk)
    if cfg.train_n:
        tx = x_test[-cfg.train_test_n :] if len(x_test) >= cfg.n + cfg.train_test_n else x_test[: cfg.train_test_n]
        out["training"] = train_comparison(x_train[: cfg.train_n].to(x_test.device), tx, cfg, vae.latent_dim)
    out["targets"] = targets(out)
    out["conditions"]["load_avg_1min_end"] = conditions(x_test.device)["load_avg_1min"]
    out["seconds_total"] = time.perf_counter() - t0
    return out


def targets(out: dict) -> list[dict]:
    """The issue's targets, each with the measured value and whether it is met."""
    ref, default, fast = out["test_time"][:3]
    rows = [
        ("default: >= 100x faster per image than the reference", default["speedup_vs_ref"], default["speedup_vs_ref"] >= 100),
        ("default: mean loss <= the reference's (its images)", default["loss_ref_subset"] - ref["loss_ref_subset"],
         default["loss_ref_subset"] <= ref["loss_ref_subset"]),
        ("fast: <= 20x a plain VAE evaluation", fast["cost_vs_plain"], fast["cost_vs_plain"] <= 20),
        ("fast: >= 95% of the default's loss reduction", fast["frac_of_default_reduction"],
         fast["frac_of_default_reduction"] >= 0.95),
    ]  # fmt: skip
    if "training" in out:
        plain, pkg, seed = out["training"]["runs"]
        s_pkg, s_seed = out["training"]["search"]
        rows += [
            ("training: aligned epoch <= 4x a plain epoch", pkg["epoch_vs_plain"], pkg["epoch_vs_plain"] <= 4),
            ("training: final train loss <= the seed-style run's", pkg["train_loss"] - seed["train_loss"],
             pkg["train_loss"] <= seed["train_loss"]),
            ("training: per-batch search loss <= the seed-style search's (same model, digits)",
             s_pkg["loss"] - s_seed["loss"], s_pkg["loss"] <= s_seed["loss"]),
            ("training: aligned test loss <= the seed-style run's (noisy at this size)",
             pkg["test_loss_aligned"] - seed["test_loss_aligned"], pkg["test_loss_aligned"] <= seed["test_loss_aligned"]),
        ]  # fmt: skip
    return [{"target": t, "value": float(v), "met": bool(m)} for t, v, m in rows]


def _mib(v) -> str:
    return "n/a" if v is None else f"{v:.0f}"


def format_report(out: dict) -> str:
    """The benchmark as plain-text tables."""
    c, cfg = out["conditions"], out["config"]
    lines = [f"device {c['device']} ({c['device_name']}, {c['threads']} threads of {c['cpus']} CPUs), "
             f"load average {c['load_avg_1min']:.1f} at start, {c.get('load_avg_1min_end', float('nan')):.1f} at end; "
             f"torch {c['torch']}",  # fmt: skip
             f"test time: {cfg['family']}, {cfg['n']} perturbed test digits; the seed reference on the first "
             f"{cfg['n_ref']} only ({cfg['ref_restarts']} restarts x {cfg['ref_steps']} Adam steps, one image at a time)",
             "",  # fmt: skip
             f"{'method':18s} {'images':>6s} {'s/image':>9s} {'x plain':>8s} {'speedup':>8s} {'loss':>9s} "
             f"{'loss(ref imgs)':>14s} {'of ref gain':>11s} {'of default':>10s} {'peak MiB':>8s}"]  # fmt: skip
    for r in out["test_time"]:
        fd = f"{r['frac_of_default_reduction']:.1%}" if "frac_of_default_reduction" in r else "-"
        lines.append(f"{r['method']:18s} {r['n']:6d} {r['seconds_per_image']:9.4f} {r['cost_vs_plain']:8.1f} "
                     f"{r['speedup_vs_ref']:8.1f} {r['loss']:9.3f} {r['loss_ref_subset']:14.3f} "
                     f"{r['frac_of_ref_reduction']:11.1%} {fd:>10s} {_mib(r['peak_mib']):>8s}")  # fmt: skip
    lines.append(f"(identity loss: {out['test_time'][1]['loss0']:.3f} on all, "
                 f"speedup = reference s/image over the method's)")  # fmt: skip
    if "pose_fit_seconds" in out["test_time"][-1]:
        lines.append(f"(pose net: fitted once on {cfg['pose_n']} training digits in "
                     f"{out['test_time'][-1]['pose_fit_seconds']:.1f} s, not counted per image)")  # fmt: skip
    if "curve" in out:
        lines += ["", f"cost/quality curve ({cfg['curve_n']} digits): restarts x steps",
                  f"{'restarts':>8s} {'steps':>5s} {'top_k':>5s} {'evals':>5s} {'x plain':>8s} {'s/image':>9s} {'loss':>9s}"]
        for r in out["curve"]:
            lines.append(f"{r['restarts']:8d} {r['steps']:5d} {r['top_k']:5d} {r['evals_per_image']:5d} "
                         f"{r['cost_vs_plain']:8.1f} {r['seconds_per_image']:9.4f} {r['loss']:9.3f}")  # fmt: skip
    if "training" in out:
        a, w = out["training"]["runs"][1]["align"], out["training"]["runs"][1]["align_warm"]
        lines += ["", f"training: {cfg['train_n']} digits, {cfg['train_epochs']} epochs from the same weights, "
                  f"batch {cfg['train_batch']}; package search: epoch 1 restarts={a['restarts']} steps={a['steps']}, "
                  f"later epochs restarts={w['restarts']} steps={w['steps']} + last epoch's orientation"
                  + (f" +- {w['init_span']} rad" if w["init_span"] else "")
                  + f"; s/epoch is the mean over all epochs; test loss on "
                  f"{cfg['train_test_n']} rotated digits, 'default' aligner",
                  f"{'run':24s} {'s/epoch':>8s} {'x plain':>8s} {'train loss':>10s} {'test loss':>10s}  s per epoch"]
        for r in out["training"]["runs"]:
            each = " ".join(f"{t:.2f}" for t in r["epoch_seconds"])
            lines.append(f"{r['search']:24s} {r['seconds_per_epoch']:8.2f} {r['epoch_vs_plain']:8.2f} "
                         f"{r['train_loss']:10.3f} {r['test_loss_aligned']:10.3f}  {each}")  # fmt: skip
        lines += [f"per-batch search alone, package-trained model, {out['training']['search'][0]['n']} rotated "
                  f"training digits:", f"{'search':24s} {'s/image':>8s} {'loss':>10s}"]
        lines += [f"{r['search']:24s} {r['seconds_per_image']:8.4f} {r['loss']:10.3f}" for r in out["training"]["search"]]
    lines += ["", "targets:"]
    lines += [f"  [{'met' if t['met'] else 'NOT met'}] {t['target']}: {t['value']:.4g}" for t in out["targets"]]
    lines.append(f"total {out['seconds_total']:.0f} s")
    return "\n".join(lines)


def write_json(out: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    return path
