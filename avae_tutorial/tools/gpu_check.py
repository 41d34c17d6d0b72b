"""The GPU check in one command: ``python -m avae_tutorial bench-gpu`` (chapter 3b).

What the package's two long jobs cost on one device, measured the same way on a GPU and on a CPU
(the same code; ``--device cpu --n 256`` is a smoke test):

* **align** at the ``"default"`` and ``"fast"`` presets (as ``align(vae, x, "rotation", name)``
  runs them: the model's pose net, ``for_device``'s chunk) on ``n`` randomly rotated test digits
  (10,000 by default: the whole MNIST test set);
* a **plain** (``rotated``) and an **aligned** training epoch of :func:`~avae_tutorial.fit` on
  ``train_n`` rotated training digits, from random weights.

Per job: milliseconds per image; VAE passes per image, counted as they run
(:attr:`AlignResult.passes <avae_tutorial.AlignResult>`, ``fit``'s ``history["passes"]``), not
estimated; peak memory (:class:`~avae_tutorial.training.measure.PeakMemory`: the CUDA allocator's peak on a
GPU, the process' resident set on a CPU); and the reads of device values on the host
(:class:`~avae_tutorial.tools.reads.HostReads`), each a wait for the GPU's queue. Counting them
dispatches every operator through Python, so they are counted on a separate call, which is also
the job's warm-up (first-call allocations, kernel selection); the timed call runs bare, and the
device is synchronized before every clock read.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from .._checks import check_positive_int
from .reads import HostReads
from ..align import PRESET_NAMES, align, for_device, preset, scoring_dtype
from ..data.mnist import random_rotations
from ..training.measure import conditions, passes_summary, timed
from ..model import VAE, for_inference
from ..training.train import TrainConfig, fit

__all__ = ["GpuCheckConfig", "gpu_check", "format_gpu_check"]


@dataclass
class GpuCheckConfig:
    """Sizes of the GPU check; the defaults are meant to take well under 5 minutes on one GPU."""

    n: int = 10_000  # rotated test digits aligned at each preset
    train_n: int = 10_000  # rotated training digits per epoch (0: no training epochs)
    epochs: int = 2  # per training run: the first searches cold, later ones warm-start
    batch_size: int = 128  # the training batch
    test_n: int = 256  # test digits for fit's per-epoch test loss (not timed: fit times the training pass)
    count_steps: int = 4  # training steps of the run on which the host reads are counted (its warm-up)
    seed: int = 0

    def __post_init__(self):
        for name in ("n", "epochs", "batch_size", "test_n", "count_steps"):
            check_positive_int(getattr(self, name), name)
        for name in ("train_n", "seed"):
            check_positive_int(getattr(self, name), name, minimum=0)
        if self.train_n == 1:
            raise ValueError("train_n: expected 0 (no training) or at least 2 digits, got 1")


def gpu_check(vae: VAE, x_test: torch.Tensor, x_train: torch.Tensor | None = None,
              cfg: GpuCheckConfig = GpuCheckConfig()) -> dict:  # fmt: skip
    """Run the check on ``x_test``'s device: upright ``x_test`` (at least ``cfg.n`` digits; the last
    ``cfg.test_n`` also serve as fit's test digits) and ``x_train`` (``cfg.train_n`` digits, or
    ``None`` with ``train_n=0``); both are rotated here, seeded. Returns a dict (see the module)."""
    if len(x_test) < cfg.n:
        raise ValueError(f"x_test: expected at least n={cfg.n} digits, got {len(x_test)}")
    if cfg.train_n and (x_train is None or len(x_train) < cfg.train_n):
        got = 0 if x_train is None else len(x_train)
        raise ValueError(f"x_train: expected at least train_n={cfg.train_n} digits, got {got}")
    dev = x_test.device
    vae = for_inference(vae, fold=False).to(dev)  # a frozen copy: the caller's model is left as given
    out = {"config": asdict(cfg), "conditions": conditions(dev)}
    out["device_name"] = out["conditions"]["device_name"]
    t0 = time.perf_counter()
    x = random_rotations(x_test[: cfg.n], seed=cfg.seed)[0]
    out["align"] = [_align_row(vae, x, name) for name in PRESET_NAMES]
    if cfg.train_n:
        test = x_test[-cfg.test_n :]
        out["training"] = [_epoch_row(vae, x_train[: cfg.train_n].to(dev), test, regime, cfg)
                           for regime in ("rotated", "aligned")]  # fmt: skip
    out["conditions"]["load_avg_1min_end"] = conditions(dev)["load_avg_1min"]
    out["seconds_total"] = time.perf_counter() - t0
    return out


def _align_row(vae: VAE, x: torch.Tensor, name: str) -> dict:
    """One preset of :func:`align` on ``x``: a counted call (reads; the warm-up), then a timed one."""
    conf = for_device(preset("rotation", name, pose=getattr(vae, "pose_net", None) is not None), x.device)
    with HostReads() as reads:
        align(vae, x, "rotation", name, progress=False)
    res, sec, mib = timed(lambda: align(vae, x, "rotation", name, progress=False), x.device)
    return {"method": f"align {name!r}", "preset": name, "n": len(x), "seconds": sec,
            "ms_per_image": 1e3 * sec / len(x), "seconds_per_image": sec / len(x), **passes_summary(res.passes),
            "loss": float(res.loss.mean()), "loss0": float(res.loss0.mean()), "peak_mib": mib,
            "host_reads": reads.count, "host_reads_by_op": dict(reads.by_op), "chunk": conf.chunk,
            "scoring": str(scoring_dtype(conf, x.device)).removeprefix("torch.")}  # fmt: skip


def _epoch_row(vae: VAE, x_train: torch.Tensor, x_test: torch.Tensor, regime: str, cfg: GpuCheckConfig) -> dict:
    """``cfg.epochs`` epochs of :func:`fit` in ``regime`` from random weights: a counted run of
    ``cfg.count_steps`` steps (one epoch; the warm-up), then the timed run."""
    base = TrainConfig(regime, vae.latent_dim, vae.canvas, getattr(vae, "channels", 1), epochs=cfg.epochs,
                       batch_size=cfg.batch_size, test_limit=len(x_test), seed=cfg.seed)  # fmt: skip
    zeros = torch.zeros(len(x_train), dtype=torch.long, device=x_train.device)
    kw = dict(test=(x_test, zeros[: len(x_test)]), device=x_train.device, progress=False)
    few = min(len(x_train), cfg.count_steps * cfg.batch_size)
    if few % cfg.batch_size == 1:  # fit refuses a last batch of one image on the smallest canvases
        few -= 1
    with HostReads() as reads:
        fit(TrainConfig(**{**asdict(base), "epochs": 1}), (x_train[:few], zeros[:few]), **kw)
    (_, hist), sec, mib = timed(lambda: fit(base, (x_train, zeros), **kw), x_train.device)
    passes = hist["passes"].double() if "passes" in hist else torch.zeros(cfg.epochs, len(x_train))
    steps = -(-few // cfg.batch_size)
    return {"regime": regime, "n": len(x_train), "epochs": cfg.epochs, "batch_size": cfg.batch_size,
            "seconds_per_epoch": hist["seconds"], "ms_per_image": [1e3 * s / len(x_train) for s in hist["seconds"]],
            "passes_per_image": passes.mean(1).tolist(), "seconds_fit": sec, "peak_mib": mib,
            "train_loss": hist["train_loss"], "test_loss": hist["test_loss"],
            "host_reads": reads.count, "host_reads_by_op": dict(reads.by_op), "host_reads_steps": steps,
            "host_reads_images": few}  # fmt: skip


def _mib(v) -> str:
    return "n/a" if v is None else f"{v:.0f}"


def format_gpu_check(out: dict) -> str:
    """The check as plain text: the device, then one line per job."""
    c = out["conditions"]
    lines = [f"device {c['device']} ({c['device_name']}); CPU {c['cpu']}, {c['threads']} threads of {c['cpus']}; "
             f"vector extensions: {' '.join(c['cpu_flags']) or 'n/a'}",
             f"torch {c['torch']}; precision='auto' picks {c['auto_precision']} here "
             f"(AVAE_BFLOAT16={c['bfloat16_switch']}); {c['date']}", "",
             f"{'job':22s} {'images':>7s} {'ms/image':>9s} {'passes':>7s} {'peak MiB':>8s} {'host reads':>10s} "
             f"{'loss':>8s}"]  # fmt: skip
    for r in out["align"]:
        lines.append(f"{r['method']:22s} {r['n']:7d} {r['ms_per_image']:9.3f} {r['passes_per_image']:7.2f} "
                     f"{_mib(r['peak_mib']):>8s} {r['host_reads']:10d} {r['loss']:8.2f}  "
                     f"(scored in {r['scoring']}, chunk {r['chunk']})")  # fmt: skip
    for r in out.get("training", []):
        each = ", ".join(f"{ms:.3f}" for ms in r["ms_per_image"])
        passes = ", ".join(f"{p:.1f}" for p in r["passes_per_image"])
        lines.append(f"{r['regime'] + ' epoch':22s} {r['n']:7d} {r['ms_per_image'][-1]:9.3f} "
                     f"{r['passes_per_image'][-1]:7.2f} {_mib(r['peak_mib']):>8s} {r['host_reads']:10d} "
                     f"{r['train_loss'][-1]:8.2f}  (per epoch: ms/image {each}; passes {passes}; reads counted "
                     f"over {r['host_reads_steps']} steps of {r['batch_size']})")  # fmt: skip
    lines += ["", "(ms/image and passes of a training run: its last epoch; passes: VAE passes of the search per image, "
              "counted as they run; host reads: counted on a separate call, the job's warm-up; "
              "peak MiB: above the level at the start of the call)",
              f"total {out['seconds_total']:.0f} s"]  # fmt: skip
    return "\n".join(lines)
