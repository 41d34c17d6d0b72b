"""How alignment and training scale with processes (``python -m avae_tutorial bench-distributed``).

For each process count N it starts ``torchrun --standalone --nproc_per_node N`` on the package's
own commands, one thread per process (``OMP_NUM_THREADS=1``), on the same images:

* ``align MODEL --n n``: the same rotated test digits, sharded over the N processes and
  gathered back; the time is the search and the gather (after a barrier), without start-up;
* ``train --epochs 1``: one epoch of the given regime on the first ``train_n`` training
  digits in global batches of ``batch_size``; the time is the training pass (the history's).

It reports the seconds, the speed-up over one process, the CPU or GPU, the backend and N, and
whether the results agree with one process's (alignment: the mean losses, exactly; training:
the epoch's loss, which differs by each process's own reparameterization noise). For alignment
it also reports the CPU seconds of all processes together: on a machine shared with other work
the wall-clock speed-up depends on the free cores, while CPU seconds that do not grow with N
show that splitting the work costs nothing.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

__all__ = ["bench_distributed", "format_report"]


def _torchrun(nproc: int, args: list[str], timeout: float) -> str:
    """Run ``python -m avae_tutorial ARGS`` under torchrun with ``nproc`` one-thread processes; stdout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "avae_tutorial", *args]  # fmt: skip
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:])} failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
    return run.stdout


def _backend(device: str, nproc: int) -> str:
    return "none" if nproc == 1 else "nccl" if torch.device(device).type == "cuda" else "gloo"


def bench_distributed(model: str = "vae-upright", n: int = 256, nprocs: tuple[int, ...] = (1, 2),
                      train_n: int = 1024, regime: str = "aligned", batch_size: int = 128,
                      device: str = "cpu", timeout: float = 1800) -> dict:  # fmt: skip
    """Time alignment of ``n`` digits and one training epoch on each process count; returns a dict."""
    from ..training.measure import conditions

    rows, load0 = [], os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory() as tmp:
        for N in nprocs:
            out = Path(tmp) / f"align{N}.json"
            _torchrun(N, ["align", model, "--digits", str(n), "--device", device, "--out", str(out)], timeout)
            a = json.loads(out.read_text())
            rows.append({"job": "align", "processes": N, "backend": _backend(device, N), "seconds": a["seconds"],
                         "cpu_seconds": a["cpu_seconds"], "images": n, "loss_aligned": a["loss_aligned"],
                         "loss_identity": a["loss_identity"]})
        for N in nprocs if train_n else ():
            ckpt = Path(tmp) / f"train{N}.pt"
            args = ["train", "--regime", regime, "--epochs", "1", "--train-limit", str(train_n), "--batch-size",
                    str(batch_size), "--test-limit", "256", "--device", device, "--out", str(ckpt), "--restart"]
            t = json.loads(_torchrun(N, args, timeout).strip().splitlines()[-1])
            rows.append({"job": f"train ({regime}, 1 epoch)", "processes": N, "backend": _backend(device, N),
                         "seconds": t["seconds"], "images": train_n, "train_loss": t["train_loss"]})
    for r in rows:
        base = next(b for b in rows if b["job"] == r["job"] and b["processes"] == nprocs[0])
        r["speedup"] = base["seconds"] / r["seconds"] * nprocs[0]
        if r["job"] == "align":
            r["same_as_one"] = r["loss_aligned"] == base["loss_aligned"] and r["loss_identity"] == base["loss_identity"]
        else:
            r["train_loss_rel_diff"] = abs(r["train_loss"] - base["train_loss"]) / abs(base["train_loss"])
    cond = {**conditions(torch.device(device)), "threads_per_process": 1, "load_avg_1min_start": load0}
    return {"conditions": cond, "rows": rows,
            "command": f"python -m avae_tutorial bench-distributed --n {n} --train-n {train_n} --regime {regime}"}


def format_report(out: dict) -> str:
    c = out["conditions"]
    lines = [f"{c['device_name']} ({c['device']}), {c['cpus']} CPUs, 1 thread per process, "
             f"load average {c['load_avg_1min_start']:.2f} at the start, {c['load_avg_1min']:.2f} at the end, "
             f"torch {c['torch']}, {c['date']}",
             f"{'job':28s} {'N':>2s} {'backend':7s} {'images':>6s} {'seconds':>8s} {'speed-up':>8s} {'CPU s':>7s}  "
             f"agrees with N=1"]
    for r in out["rows"]:
        same = ("exactly" if r["same_as_one"] else "NO") if "same_as_one" in r \
            else f"train loss rel. diff {r['train_loss_rel_diff']:.1e} (own noise)"  # fmt: skip
        cpu = f"{r['cpu_seconds']:7.2f}" if "cpu_seconds" in r else f"{'-':>7s}"
        lines.append(f"{r['job']:28s} {r['processes']:2d} {r['backend']:7s} {r['images']:6d} {r['seconds']:8.2f} "
                     f"{r['speedup']:7.2f}x {cpu}  {same}")
    return "\n".join(lines)
