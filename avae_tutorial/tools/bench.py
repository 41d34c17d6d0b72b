"""What the alignment search costs and what it buys (chapter 3; ``python -m avae_tutorial bench``).

On one trained model and the same randomly rotated (or affine-perturbed) test digits:

* **test time**: the seed-style reference (one image and one restart at a time: angle uniform
  in (-2pi, 2pi), Adam lr 0.01 for 20 steps, best loss kept; 30 restarts) against
  :func:`~avae_tutorial.align` at its ``"default"`` and ``"fast"`` presets: seconds per image,
  mean loss, the fraction of the reference's loss reduction achieved, the time relative to one
  plain VAE evaluation of the same images, peak memory;
* **training time**: epochs of :func:`~avae_tutorial.fit` on rotated digits, plain, with the
  package's per-batch search and with the seed-style one (20 random angles scored, the best
  kept, 10 Adam steps), from the same weights on the same data (``train_seeds`` repeats it from
  other seeds: 40 steps from random weights are a noisy comparison); each run's last-epoch
  training loss, at its own search's angles, and the final model's loss on its training digits and
  on held-out digits, rotated alike and aligned by the same ``"default"`` search. The targets
  compare all three (the last two from :data:`~avae_tutorial.tools.bench_report.MIN_SEEDS_ALIGNED` seeds or more): the first also
  measures how finely each run's search resolves angles, the other two only the model it trained;
* :func:`cost_quality_curve`: restarts x steps against loss and time (the chapter's figure).

The reference is slow (seconds per image on a CPU): it runs on a few images only, and every
comparison with it uses those images.
"""
from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import MappingProxyType

import torch

from .._checks import check_positive_int
from ..align import PRECISIONS, PRESET_NAMES, AlignConfig, align, for_device, preset, search_cost
from .baselines import seed_reference, seed_train_search
from .bench_report import targets
from .heldout import EXHAUSTIVE as HELDOUT_EXHAUSTIVE, HeldoutConfig, heldout
from ..data.mnist import random_rotations, random_transforms
from ..families import get_family
from ..loss import chunked_loss
from ..training.measure import PeakMemory, conditions, passes_summary, plain_seconds, timed
from ..model import VAE, for_inference
from ..training.poses import folder_throughput
from ..training.train import ONLINE_SEARCH, TrainConfig, fit, training_search

# The seed's searches live in .baselines, the measuring tools in .measure, the verdicts and the report
# in .bench_report; imported here too (``from avae_tutorial.tools.bench import PeakMemory, conditions`` as
# the chapters do).
__all__ = ["BenchConfig", "bench", "cost_quality_curve", "train_comparison", "seed_reference", "seed_train_search",
           "PeakMemory", "conditions"]  # fmt: skip


@dataclass
class BenchConfig:
    """Sizes of a benchmark run; the defaults take a few minutes on two CPU cores."""

    family: str = "rotation"  # a registered family: the perturbation (its sample) and the search
    n: int = 256  # test digits for the package's aligners
    n_ref: int = 8  # of which the seed-style reference searches (seconds per image on a CPU)
    ref_restarts: int = 30
    ref_steps: int = 20
    train_n: int = 1280  # training digits for the epoch comparison (0: skip it)
    train_epochs: int = 4
    train_seeds: int = 1  # training comparisons from different initial weights and angles (seed, seed + 1, ...)
    train_batch: int = 128
    train_test_n: int = 128  # rotated test digits on which the trained models are compared
    curve_n: int = 32  # test digits for the cost/quality curve (0: skip it)
    exhaustive_n: int = 64  # of the n digits, those searched near-exhaustively (360 angles + refinement; 0: skip)
    chunk: int | None = None  # rows per chunk (None: AlignConfig's, or for_device's off the CPU)
    train_align: dict | None = None  # AlignConfig fields over TrainConfig.align (the first epoch's search)
    train_align_warm: dict | None = None  # ... over TrainConfig.align_warm (later epochs' search)
    precision: str | None = None  # of every package search (None: as configured; "float32": as on a CPU without bfloat16)
    seed: int = 0
    heldout_n: int = 1000  # test digits drawn with the held-out seed for the presets' held-out figures (0: skip)
    heldout_exhaustive_n: int = 200  # of which the 360-angle exhaustive search scores (0: skip the gap)

    def __post_init__(self):
        get_family(self.family)
        for name in ("n", "n_ref", "ref_restarts", "ref_steps", "train_epochs", "train_batch", "train_test_n",
                     "train_seeds"):
            check_positive_int(getattr(self, name), name)
        for name in ("train_n", "curve_n", "exhaustive_n", "seed", "heldout_n", "heldout_exhaustive_n"):
            check_positive_int(getattr(self, name), name, minimum=0)
        if self.chunk is not None:
            check_positive_int(self.chunk, "chunk")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"precision: expected None or one of {PRECISIONS}, got {self.precision!r}")
        for name in ("train_align", "train_align_warm"):
            if getattr(self, name) is not None:
                AlignConfig(**getattr(self, name))  # validates the fields
        for name in ("n_ref", "exhaustive_n"):
            if getattr(self, name) > self.n:
                raise ValueError(f"{name}: expected at most n={self.n} images, got {getattr(self, name)}")
        if self.heldout_n and self.heldout_exhaustive_n > self.heldout_n:
            raise ValueError(f"heldout_exhaustive_n: expected at most heldout_n={self.heldout_n} digits, "
                             f"got {self.heldout_exhaustive_n}")


# ------------------------------------------------------------------ test time
#: The near-exhaustive search: every degree, then parabolic steps, in float32 (:data:`.heldout.EXHAUSTIVE`).
EXHAUSTIVE = HELDOUT_EXHAUSTIVE


def _search_fields(cfg: BenchConfig) -> dict:
    """The :class:`AlignConfig` fields that ``cfg`` imposes on every package search: its
    ``chunk`` and ``precision``, where set."""
    return {k: v for k, v in (("chunk", cfg.chunk), ("precision", cfg.precision)) if v is not None}


def inference_rows(vae: VAE, x: torch.Tensor, cfg: BenchConfig) -> list[dict]:
    """One row per method on the perturbed digits ``x``: the seed reference (on the first
    ``cfg.n_ref``), ``align`` at the ``"default"`` and ``"fast"`` presets (with the model's pose
    net when it has one), the default without the pose net (its grid) and, on the first
    ``cfg.exhaustive_n``, the near-exhaustive search (a rotation-like family only)."""
    dev = x.device
    loss0 = chunked_loss(for_inference(vae), x, chunk=cfg.chunk)
    pose = getattr(vae, "pose_net", None) is not None
    ref_cost = cfg.ref_restarts * (3 * cfg.ref_steps + 1)  # a forward and a backward (two passes) per step
    methods = [("seed reference", lambda: _with_passes(seed_reference(vae, x[: cfg.n_ref], cfg.family, cfg.ref_restarts,
                                                                      cfg.ref_steps, seed=cfg.seed)[0].to(dev), ref_cost),
                ref_cost)]  # fmt: skip
    own = _search_fields(cfg)
    confs = {f"align {name!r}": replace(preset(cfg.family, name, pose), **own) for name in PRESET_NAMES}
    if pose:
        confs["default, grid (no pose)"] = replace(preset(cfg.family, "default"), **own)
    if cfg.exhaustive_n and get_family(cfg.family).is_angle:
        confs["near-exhaustive"] = replace(EXHAUSTIVE, chunk=cfg.chunk)
    for name, conf in confs.items():
        xs = x[: cfg.exhaustive_n] if name == "near-exhaustive" else x
        methods.append((name, lambda conf=conf, xs=xs: _aligned(vae, xs, cfg.family, conf),
                        search_cost(conf, cfg.family, pose_net=getattr(vae, "pose_net", None))))  # fmt: skip
    rows = []
    for name, fn, bound in methods:
        if name != "seed reference":
            fn()  # one untimed call: first-call allocations and lazy initialization
        before = plain_seconds(vae, x, cfg.chunk)
        (loss, passes), sec, mem = timed(fn, dev)
        plain_s = 0.5 * (before + plain_seconds(vae, x, cfg.chunk))  # the load drifts: average around
        rows.append({"method": name, "n": len(loss), "seconds_per_image": sec / len(loss),
                     "cost_vs_plain": (sec / len(loss)) / (plain_s / len(x)), **passes_summary(passes),
                     "passes_bound": bound, "loss": float(loss.mean()), "loss0": float(loss0[: len(loss)].mean()),
                     "peak_mib": mem, "_losses": loss})  # fmt: skip
    ref, default = rows[0], rows[1]
    gain_ref = float((loss0[: cfg.n_ref] - ref["_losses"]).mean())
    exhaustive = next((r for r in rows if r["method"] == "near-exhaustive"), None)
    for r in rows[1:]:
        if exhaustive is not None:
            r["loss_exhaustive_subset"] = float(r["_losses"][: exhaustive["n"]].mean())
    for r in rows:
        sub = r.pop("_losses")[: cfg.n_ref]
        r["loss_ref_subset"] = float(sub.mean())
        r["frac_of_ref_reduction"] = float((loss0[: cfg.n_ref] - sub).mean()) / gain_ref if gain_ref else math.nan
        r["speedup_vs_ref"] = ref["seconds_per_image"] / r["seconds_per_image"]
    for r in rows[1:]:
        if r is not exhaustive:
            r["frac_of_default_reduction"] = (r["loss0"] - r["loss"]) / (default["loss0"] - default["loss"])
    return rows


def _with_passes(loss: torch.Tensor, passes: int) -> tuple[torch.Tensor, torch.Tensor]:
    return loss, torch.full(loss.shape, passes)


def _aligned(vae: VAE, x: torch.Tensor, family: str, conf: AlignConfig) -> tuple[torch.Tensor, torch.Tensor]:
    res = align(vae, x, family, conf, progress=False)
    return res.loss, res.passes


# ------------------------------------------------------------------ training time
#: ``name: (regime, per-batch search (None: the package's), TrainConfig fields over the base)``.
TRAIN_RUNS = MappingProxyType({
    "plain epoch": ("rotated", None, {}), "package (per batch)": ("aligned", None, {}),
    "seed-style (per batch)": ("aligned", seed_train_search, {}),
    "package (online)": ("aligned", None, {"pose_online": True, "align_warm": ONLINE_SEARCH})})  # fmt: skip


def train_comparison(x_train: torch.Tensor, x_test: torch.Tensor, cfg: BenchConfig, latent_dim: int = 8) -> dict:
    """Plain, package-aligned and seed-style-aligned training with :func:`fit`, from the same
    initial weights on the same rotated digits, for each of ``cfg.train_seeds`` seeds.

    Per seed, the runs advance in turns, one epoch each (``fit`` resumes from its checkpoint),
    after an untimed warm-up batch of each, so that a change in the machine's load affects all
    alike. Per run: seconds per epoch (``fit``'s timing of the training pass; the mean over all
    epochs and seeds, the cold first epoch included) and its ratio to the plain epoch, the last
    epoch's training loss (per seed, and their mean), and the final model's loss on the training
    digits (rotated with seed ``cfg.seed + 2``) and on ``x_test`` (seed ``cfg.seed + 1``), both
    aligned by the ``"default"`` preset (per seed for the former, and the means over seeds).
    """
    x_rot = random_rotations(x_test, seed=cfg.seed + 1)[0]
    x_fit = random_rotations(x_train, seed=cfg.seed + 2)[0]  # the training digits, rotated alike for every run
    runs = {name: {"seconds": [], "later": [], "train": [], "fit": [], "test": [], "passes": []} for name in TRAIN_RUNS}
    seeds = list(range(cfg.seed, cfg.seed + cfg.train_seeds))
    for seed in seeds:
        base = train_config(cfg, seed, latent_dim, x_train.shape[-1], len(x_test))
        for name, (vae, hist) in _train_turns(x_train, x_test, base, cfg.train_epochs).items():
            runs[name]["seconds"] += hist["seconds"]
            runs[name]["later"] += hist["seconds"][1:] or hist["seconds"]
            runs[name]["passes"].append(hist["passes"] if "passes" in hist else torch.zeros(len(hist["seconds"]), 1))
            runs[name]["train"].append(hist["train_loss"][-1])
            runs[name]["fit"].append(float(align(vae, x_fit, "rotation", "default", progress=False).loss.mean()))
            runs[name]["test"].append(float(align(vae, x_rot, "rotation", "default", progress=False).loss.mean()))
    rows = [{"search": name, "seconds_per_epoch": statistics.fmean(r["seconds"]), "epoch_seconds": r["seconds"],
             "seconds_per_epoch_later": statistics.fmean(r["later"]),
             "train_loss": statistics.fmean(r["train"]), "train_loss_per_seed": r["train"],
             "train_loss_aligned": statistics.fmean(r["fit"]), "train_loss_aligned_per_seed": r["fit"],
             "test_loss_aligned": statistics.fmean(r["test"]), **_epoch_passes(r["passes"])}
            for name, r in runs.items()]  # fmt: skip
    for r in rows:
        r["epoch_vs_plain"] = r["seconds_per_epoch"] / rows[0]["seconds_per_epoch"]
        r["epoch_vs_plain_later"] = r["seconds_per_epoch_later"] / rows[0]["seconds_per_epoch_later"]
    return {"runs": rows, "align": base.align, "align_warm": base.align_warm, "warm_start": base.warm_start,
            "seeds": seeds}  # fmt: skip


def train_config(cfg: BenchConfig, seed: int, latent_dim: int, canvas: int, test_limit: int) -> TrainConfig:
    """The one-epoch :class:`TrainConfig` every training run starts from (``regime`` set per run):
    ``cfg.train_align`` / ``cfg.train_align_warm`` and the bench's chunk and precision over the
    ``warm`` training search's (the per-batch runs score a grid; ``package (online)`` sets its own)."""
    own = _search_fields(cfg)
    base = TrainConfig("rotated", latent_dim, canvas, epochs=1, batch_size=cfg.train_batch, test_limit=test_limit,
                       seed=seed, **training_search("warm"))  # fmt: skip
    return replace(base, align={**base.align, **(cfg.train_align or {}), **own},
                   align_warm={**base.align_warm, **(cfg.train_align_warm or {}), **own})


def _overrides(base: TrainConfig, over: dict) -> dict:
    """A run's :data:`TRAIN_RUNS` fields over ``base``; a search given as an ``AlignConfig`` keeps the
    bench's own chunk and precision (``base.align_warm``'s)."""
    out = dict(over)
    if isinstance(out.get("align_warm"), AlignConfig):
        own = {k: base.align_warm[k] for k in ("chunk", "precision")}
        out["align_warm"] = {**asdict(out["align_warm"]), **own}
    return out


def _epoch_passes(passes: list[torch.Tensor]) -> dict:
    """Passes per image of a run's search from its per-seed ``(epochs, N)`` counts: the mean of each
    epoch (over seeds), and the mean and spread over every image and epoch after the first."""
    every = torch.stack(passes).double()  # (seeds, epochs, N)
    later = passes_summary(every[:, 1:]) if every.shape[1] > 1 else passes_summary(every)
    return {"passes_per_epoch": every.mean((0, 2)).tolist(), **{k + "_later": v for k, v in later.items()}}


def _train_turns(x_train: torch.Tensor, x_test: torch.Tensor, base: TrainConfig, epochs: int) -> dict:
    """``{run: (vae, history)}`` for every run of :data:`TRAIN_RUNS`, advanced one epoch at a time in turns."""
    train = (x_train, torch.zeros(len(x_train), dtype=torch.long))
    kw = dict(test=(x_test, torch.zeros(len(x_test), dtype=torch.long)), device=x_train.device, progress=False)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        configs = {name: replace(base, regime=regime, **_overrides(base, over))
                   for name, (regime, _, over) in TRAIN_RUNS.items()}  # fmt: skip
        for name, (_, search, _) in TRAIN_RUNS.items():  # warm-up: one batch each, untimed
            fit(configs[name], (train[0][: base.batch_size], train[1][: base.batch_size]), search=search, **kw)
        for epoch in range(epochs):
            for i, (name, (_, search, _)) in enumerate(TRAIN_RUNS.items()):
                out[name] = fit(replace(configs[name], epochs=epoch + 1), train, checkpoint=Path(tmp) / f"{i}.pt",
                                search=search, **kw)  # fmt: skip
    return out


# ------------------------------------------------------------------ cost/quality curve
#: ``(restarts, steps)`` settings of :func:`cost_quality_curve`.
CURVE_GRID = ((6, 0), (12, 0), (24, 0), (48, 0), (6, 3), (14, 1), (14, 3), (24, 1), (24, 3), (24, 6), (48, 6))


def cost_quality_curve(
    vae: VAE, x: torch.Tensor, grid=CURVE_GRID, top_k: int = 1, family: str = "rotation", chunk: int = 64
) -> list[dict]:
    """Loss and time of :func:`align` for each ``(restarts, steps)`` in ``grid`` on the digits ``x``.

    Rows ``{restarts, steps, top_k, loss, seconds_per_image, cost_vs_plain, passes_per_image}``;
    ``cost_vs_plain`` is the time over that of one plain VAE evaluation of ``x``.
    """
    plain_s = plain_seconds(vae, x, chunk)
    rows = []
    for restarts, steps in grid:
        conf = replace(preset(family), restarts=restarts, steps=steps, top_k=top_k, chunk=chunk)
        res, sec, _ = timed(lambda: align(vae, x, family, conf, progress=False), x.device)
        rows.append({"restarts": restarts, "steps": steps, "top_k": top_k, "loss": float(res.loss.mean()),
                     "seconds_per_image": sec / len(x), "cost_vs_plain": sec / plain_s,
                     "passes_per_image": float(res.passes.double().mean())})  # fmt: skip
    return rows


# ------------------------------------------------------------------ the whole run
def bench(vae: VAE, x_test: torch.Tensor, x_train: torch.Tensor | None = None, cfg: BenchConfig | None = None,
          heldout_pool: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:  # fmt: skip
    """Run the benchmark on upright ``x_test`` (perturbed here, seeded) and ``x_train``; returns a dict.

    ``cfg`` defaults to ``BenchConfig()`` (a new one per call: a default instance shared between
    calls would carry one caller's changes into the next). ``x_test`` needs at least ``cfg.n``
    digits; ``x_train`` (``cfg.train_n`` digits) may be ``None`` when ``cfg.train_n == 0``.
    ``heldout_pool``: upright digits and labels (the MNIST test split) from which
    :func:`~avae_tutorial.tools.heldout.heldout` draws ``cfg.heldout_n`` with the held-out seed, for
    ``out["heldout"]`` (a rotation family only; default: ``x_test``, labels unknown, -1).
    Everything runs on ``x_test``'s device.
    """
    cfg = BenchConfig() if cfg is None else cfg
    if len(x_test) < max(cfg.n, cfg.curve_n):
        raise ValueError(f"x_test: expected at least {max(cfg.n, cfg.curve_n)} digits, got {len(x_test)}")
    if cfg.train_n and (x_train is None or len(x_train) < cfg.train_n):
        got = 0 if x_train is None else len(x_train)
        raise ValueError(f"x_train: expected at least {cfg.train_n} digits (train_n), got {got}")
    vae = for_inference(vae, fold=False).to(x_test.device)  # a frozen copy: the caller's model is left as given
    if cfg.chunk is None:
        cfg = replace(cfg, chunk=for_device(AlignConfig(), x_test.device).chunk)
    out = {"config": asdict(cfg), "conditions": conditions(x_test.device)}
    out["conditions"]["scoring"] = cfg.precision or out["conditions"]["auto_precision"]
    t0 = time.perf_counter()
    x = random_transforms(x_test[: cfg.n], cfg.family, cfg.seed)[0]
    out["test_time"] = inference_rows(vae, x, cfg)
    out["folder"] = folder_throughput(vae, x[:128])  # align from PNG files through a DataLoader vs a tensor
    if cfg.curve_n:
        out["curve"] = cost_quality_curve(vae, x[: cfg.curve_n], family=cfg.family, chunk=cfg.chunk)
    if cfg.heldout_n and get_family(cfg.family).is_angle:
        pool = heldout_pool if heldout_pool is not None else (x_test, torch.full((len(x_test),), -1))
        hcfg = HeldoutConfig(n=cfg.heldout_n, exhaustive_n=cfg.heldout_exhaustive_n, chunk=cfg.chunk,
                             precision=cfg.precision)  # fmt: skip
        out["heldout"] = heldout(vae, pool[0].to(x_test.device), pool[1], hcfg)
    if cfg.train_n:
        tx = x_test[-cfg.train_test_n :] if len(x_test) >= cfg.n + cfg.train_test_n else x_test[: cfg.train_test_n]
        out["training"] = train_comparison(x_train[: cfg.train_n].to(x_test.device), tx, cfg, vae.latent_dim)
    out["targets"] = targets(out)
    out["conditions"]["load_avg_1min_end"] = conditions(x_test.device)["load_avg_1min"]
    out["seconds_total"] = time.perf_counter() - t0
    return out
