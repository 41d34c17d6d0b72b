"""``python -m avae_tutorial {train,evaluate,align,reproduce,bench,export-onnx}``: the package's jobs from the shell."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]


def _device(name: str | None) -> str:
    import torch

    from .notebook import default_device

    if name in (None, "auto"):
        return default_device()
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name} asked for, but CUDA is not available here; use --device cpu")
    from ._checks import check_device

    check_device(name)  # "tpu", "cuda:x": a clear error, not a traceback
    return name


_JOINED = []  # the process group this command joined (left at its end)


def _launch(name: str | None) -> str:
    """The device, after joining torchrun's process group when started by it (one GPU per process)."""
    from .distributed import init_from_env, world

    joined = world()[1] == 1
    device = init_from_env(_device(name))
    if joined and world()[1] > 1:
        _JOINED.append(True)
    return device


def _rank() -> int:
    from .distributed import world

    return world()[0]


def _world_size() -> int:
    from .distributed import world

    return world()[1]


def _positive_int(text: str) -> int:
    from ._checks import check_positive_int

    try:
        return check_positive_int(int(text), "value")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None


def _load_model(spec: str):
    from .pretrained import load_model

    return load_model(spec)


def _angles(text: str) -> list[float]:
    """``"0:360:15"`` (start:stop:step, stop excluded) or ``"0,90,180"``."""
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if step <= 0:
                raise ValueError
            return [start + i * step for i in range(math.ceil((stop - start) / step))]
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected start:stop:step or a comma list of degrees, got {text!r}") from None


def _fields(text: str) -> dict:
    """``"restarts=12,steps=2,init_span=0.1"`` -> ``{"restarts": 12, "steps": 2, "init_span": 0.1}``."""
    out = {}
    for item in text.split(","):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise argparse.ArgumentTypeError(f"expected name=value pairs separated by commas, got {text!r}")
        try:
            out[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else float(value)
        except ValueError:
            out[key.strip()] = value.strip()
    return out


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}")
    return value


def _read_images(a, canvas: int, channels: int):
    """``--images`` read whole: ``(x, names, bad)`` (``bad``: ``"name: reason"`` of skipped files)."""
    import torch

    from .images import batches, open_images

    ds = open_images(a.images, canvas, channels, a.invert, a.recursive)
    parts, idx, bad = [], [], []
    for i, x, b in batches(ds, workers=a.workers, skip_bad=a.skip_bad):
        idx += i
        parts += [] if x is None else [x]
        bad += [f"{name}: {reason}" for _, name, reason in b]
    if not parts:
        raise ValueError(f"--images {a.images}: none of its {len(ds)} images could be read")
    return torch.cat(parts), [ds.names[i] for i in idx], bad


def _held_out(x, fraction: float, seed: int):
    """``(train, test)`` pairs of ``x`` with zero labels: a seeded ``fraction`` held out for the test loss."""
    import torch

    n_test = max(1, round(fraction * len(x)))
    if len(x) - n_test < 2:
        raise ValueError(f"--images: {len(x)} images leave fewer than 2 to train on after holding out {n_test}; "
                         f"add images or lower --test-fraction")  # fmt: skip
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    test, train = x[perm[:n_test]], x[perm[n_test:]]
    return (train, torch.zeros(len(train), dtype=torch.long)), (test, torch.zeros(len(test), dtype=torch.long))


def cmd_train(a) -> int:
    from .data import load_mnist
    from .train import TrainConfig, fit

    bad = []
    cfg = dict(regime=a.regime, latent_dim=a.latent, canvas=a.canvas, channels=a.channels, epochs=a.epochs,
               batch_size=a.batch_size, lr=a.lr, train_limit=a.train_limit, test_limit=a.test_limit, seed=a.seed)
    from .model import check_canvas, check_channels

    check_canvas(a.canvas, "--canvas")  # before any image is read
    check_channels(a.channels, "--channels")
    device = _launch(a.device)  # before loading any data
    if a.images is None:
        if a.channels != 1:
            raise ValueError(f"--channels {a.channels}: MNIST digits are grey; colour needs --images")
        train, test = load_mnist("train", canvas=a.canvas), load_mnist("test", canvas=a.canvas)
    else:
        x, _, bad = _read_images(a, a.canvas, a.channels)
        train, test = _held_out(x, a.test_fraction, a.seed)
        cfg["test_limit"] = len(test[0])
    _, hist = fit(TrainConfig(**cfg), train, test, checkpoint=a.out, resume=not a.restart, device=device)
    out = {"checkpoint": str(a.out), "test_loss": hist["test_loss"][-1], "train_loss": hist["train_loss"][-1],
           "seconds": round(sum(hist["seconds"]), 1)}  # fmt: skip
    if a.images is not None:
        out.update(train_images=len(train[0]), test_images=len(test[0]), skipped_bad=len(bad), bad=bad)
    if _rank() > 0:
        return 0
    print(json.dumps(out))
    return 0


def cmd_evaluate(a) -> int:
    from .data import load_mnist
    from .evaluate import loss_per_angle, write_rows

    dev = _device(a.device)
    vae = _load_model(a.model).to(dev)
    x = load_mnist("test", canvas=vae.canvas, limit=a.n)[0].to(dev)
    rows = loss_per_angle(vae, x, a.angles, aligned=False)
    if not a.no_align:
        rows += loss_per_angle(vae, x, a.angles, aligned=True, config=a.preset)
    for r in rows:
        print(f"{r['angle_deg']:6.1f} deg  aligned={str(r['aligned']):5s}  loss {r['loss']:8.2f} nats")
    if a.out:
        write_rows(rows, a.out)
        print(f"wrote {a.out}")
    return 0


def aligned_path(folder: Path, name: str) -> Path:
    """Where ``--aligned`` writes image ``name``: its relative path (``.png`` appended unless it
    is a PNG already); ``"cells.npy[007]"`` becomes ``cells.npy_007.png``."""
    if name.endswith("]") and "[" in name:
        base, _, i = name[:-1].rpartition("[")
        name = f"{base}_{i}"
    return folder / (name if name.lower().endswith(".png") else name + ".png")


def cmd_align_images(a) -> int:
    """``align MODEL --images PATH --out FILE.csv``: one row per image, in input order, resumable.

    Under torchrun every chunk of ``--batch-size`` images is split across the processes; rank 0
    gathers the rows and writes them in input order (and alone reads and writes the CSV)."""
    import csv
    import time
    from contextlib import nullcontext

    from .distributed import broadcast_object, gather_objects, shard_chunks
    from .images import open_images, save_images
    from .poses import done_names, iter_align, pose_columns, pose_rows
    from .transforms import warp

    if a.out is None or a.out.suffix.lower() != ".csv":
        raise ValueError(f"--out: with --images, expected the pose table's .csv path, got {a.out}")
    dev = _launch(a.device)
    lead = _rank() == 0
    vae = _load_model(a.model).to(dev)
    if a.channels is not None and a.channels != vae.channels:
        raise ValueError(f"--channels {a.channels}: model {a.model} takes {vae.channels}-channel images; "
                         f"leave --channels out to convert the images to what the model takes")  # fmt: skip
    ds = open_images(a.images, vae.canvas, vae.channels, a.invert, a.recursive)
    cols = pose_columns(a.family)
    if a.restart and lead:
        a.out.unlink(missing_ok=True)
    done = set(broadcast_object(done_names(a.out, cols) if lead else None))
    todo = [i for i, name in enumerate(ds.names) if name not in done]
    if a.limit is not None:
        todo = todo[: a.limit]
    mine, per, n_chunks = shard_chunks(todo, a.batch_size)  # this process's share of each chunk
    if lead:
        a.out.parent.mkdir(parents=True, exist_ok=True)
    new = lead and (not a.out.exists() or a.out.stat().st_size == 0)
    bad, before, after, t0 = [], [], [], time.perf_counter()
    with open(a.out, "a", newline="") if lead else nullcontext() as f:
        writer = csv.DictWriter(f, cols) if lead else None
        if new:
            writer.writeheader()
        chunks = iter_align(vae, ds, a.family, a.preset, indices=mine, batch_size=per, workers=a.workers,
                            skip_bad=a.skip_bad, progress=lead)  # fmt: skip
        try:
            for _ in range(n_chunks):
                chunk = next(chunks, None)  # None: nothing of the last chunk fell to this process
                if a.aligned is not None and chunk is not None and chunk.x is not None:
                    save_images(warp(chunk.x, chunk.result.A), [aligned_path(a.aligned, ds.names[i]) for i in chunk.idx])
                mine_rows = ([], []) if chunk is None else (pose_rows(ds.names, chunk, a.family), chunk.bad)
                for rows, skipped in gather_objects(mine_rows):  # in rank order: input order
                    if lead:
                        writer.writerows(rows)
                    before += [r["loss_before"] for r in rows]
                    after += [r["loss_after"] for r in rows]
                    bad += [f"{name}: {reason}" for _, name, reason in skipped]
                if lead:
                    f.flush()
        except KeyboardInterrupt:
            if lead:
                print(f"interrupted: {len(done) + len(after)} rows are in {a.out}; run the same command again "
                      f"to continue", file=sys.stderr)  # fmt: skip
            return 130
    if not lead:
        return 0
    out = {"images": len(ds), "csv": str(a.out), "rows": len(done) + len(after), "aligned_now": len(after),
           "already_done": len(done), "left": len(ds) - len(done) - len(after) - len(bad),
           "skipped_bad": len(bad), "bad": bad, "model": a.model, "family": a.family, "preset": a.preset,
           "device": dev, "processes": _world_size(), "loss_before_mean": sum(before) / len(before) if before else None,
           "loss_after_mean": sum(after) / len(after) if after else None,
           "seconds": round(time.perf_counter() - t0, 3)}  # fmt: skip
    if a.aligned is not None:
        out["aligned_dir"] = str(a.aligned)
    print(json.dumps(out, indent=2))
    return 0


def cmd_align(a) -> int:
    import time

    if a.images is not None:
        return cmd_align_images(a)

    from .data import load_mnist, random_transforms
    import torch

    from .distributed import align_sharded, all_sum, barrier, world
    from .lesson import synchronize

    dev = _launch(a.device)
    vae = _load_model(a.model).to(dev)
    x = load_mnist("test", canvas=vae.canvas, limit=a.n)[0].to(dev)
    if a.perturb != "none":
        x = random_transforms(x, a.perturb, seed=a.seed)[0]
    barrier()  # under torchrun: every process starts the clock together
    t0, c0 = time.perf_counter(), time.process_time()
    res = align_sharded(vae, x, a.family, a.preset, progress=True)  # one process, or all of torchrun's
    synchronize(dev)
    cpu = float(all_sum(torch.tensor([time.process_time() - c0], dtype=torch.float64)))  # all processes
    if _rank() > 0:
        return 0
    out = {"n": len(x), "family": a.family, "preset": a.preset, "perturb": a.perturb, "device": dev,
           "processes": world()[1], "loss_identity": float(res.loss0.mean()), "loss_aligned": float(res.loss.mean()),
           "seconds": round(time.perf_counter() - t0, 3), "cpu_seconds": round(cpu, 3)}  # fmt: skip
    print(json.dumps(out, indent=2))
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=2))
    return 0


def cmd_reproduce(a) -> int:
    from .reproduce import ReproConfig, recipes, reproduce

    rc = ReproConfig(epochs=a.epochs, sweep_epochs=a.sweep_epochs, train_limit=a.train_limit or None,
                     eval_n=a.eval_n, affine_n=a.affine_n)  # fmt: skip
    if a.train_limit is not None and a.train_limit < 0:
        raise ValueError(f"--train-limit: expected a positive number of digits, or 0 for all, got {a.train_limit}")
    unknown = sorted(set(a.only or ()) - set(recipes(rc)))
    if unknown:
        raise ValueError(f"--only: unknown model(s) {', '.join(unknown)}; valid names: {', '.join(recipes(rc))}")
    m = reproduce(rc, out=a.out, only=a.only, device=_device(a.device), runs=a.runs, evaluate_only=a.evaluate_only)
    print(json.dumps({k: {"test_loss": v["metrics"]["test_loss"], "train_seconds": v["train_seconds"]}
                      for k, v in m["models"].items()}, indent=2))  # fmt: skip
    return 0


def cmd_bench(a) -> int:
    import torch

    from .bench import BenchConfig, bench, format_report, write_json
    from .data import load_mnist

    dev = _device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = BenchConfig(family=a.family, n=a.n, n_ref=min(a.n_ref, a.n), train_n=a.train_n, train_epochs=a.train_epochs,
                      train_seeds=a.train_seeds,
                      curve_n=a.curve_n, exhaustive_n=min(a.exhaustive_n, a.n), train_align=a.train_align,
                      train_align_warm=a.train_align_warm, precision=a.precision, seed=a.seed)  # fmt: skip
    vae = _load_model(a.model).to(dev)
    x_test = load_mnist("test", canvas=vae.canvas, limit=max(cfg.n, cfg.curve_n) + cfg.train_test_n)[0].to(dev)
    x_train = load_mnist("train", canvas=vae.canvas, limit=cfg.train_n)[0].to(dev) if cfg.train_n else None
    out = bench(vae, x_test, x_train, cfg)
    print(format_report(out))
    if a.out:
        print(f"wrote {write_json(out, a.out)}")
    return 0


def cmd_bench_distributed(a) -> int:
    from .bench_distributed import bench_distributed, format_report

    out = bench_distributed(a.model, n=a.n, nprocs=tuple(a.nprocs), train_n=a.train_n, regime=a.regime,
                            batch_size=a.batch_size, device=_device(a.device))  # fmt: skip
    print(format_report(out))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(out, indent=2))
        print(f"wrote {a.out}")
    return 0


def cmd_export_onnx(a) -> int:
    from .export import export_model, write_digits

    try:
        info = export_model(a.model, a.out or Path("runs") / f"{Path(a.model).stem}.onnx", opset=a.opset,
                            check=not a.no_check)  # fmt: skip
        if a.digits:
            info["digits"] = write_digits(a.digits, n_per_class=a.n_per_class)
    except (ImportError, RuntimeError) as e:  # a package missing, or the graph fails its check
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=2))
    return 0


def _image_options(p) -> None:
    p.add_argument("--invert", action="store_true", help="with --images: dark objects on a light background")
    p.add_argument("--recursive", action="store_true", help="with --images: also read subfolders")
    p.add_argument("--skip-bad", action="store_true", help="with --images: skip unreadable files and list them")
    p.add_argument("--workers", type=int, default=0, help="with --images: DataLoader processes decoding files")


def build_parser() -> argparse.ArgumentParser:
    from .align import PRECISIONS, PRESET_NAMES
    from .bench import BenchConfig
    from .families import FAMILIES
    from .reproduce import ReproConfig
    from .train import REGIMES

    p = argparse.ArgumentParser(prog="python -m avae_tutorial", description="Affine VAEs: train, evaluate, align.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a VAE in one of three regimes", description="Train a VAE.")
    t.add_argument("--images", type=Path, help="train on a folder of images or an array file (default: MNIST)")
    t.add_argument("--canvas", type=int, default=40, help="image size (multiple of 4, 28-128)")
    t.add_argument("--channels", type=int, default=1, help="1 (grey) or 3 (RGB)")
    t.add_argument("--test-fraction", type=_fraction, default=0.1, help="--images held out for the test loss")
    _image_options(t)
    t.add_argument("--regime", choices=REGIMES, default="upright")
    t.add_argument("--latent", type=_positive_int, default=8)
    t.add_argument("--epochs", type=_positive_int, default=10)
    t.add_argument("--batch-size", type=_positive_int, default=128)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--train-limit", type=_positive_int, default=None, help="use the first N training digits")
    t.add_argument("--test-limit", type=_positive_int, default=1000)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", type=Path, default=Path("runs/model.pt"), help="checkpoint (resumed if present)")
    t.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    t.add_argument("--device", default="auto")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="loss per rotation angle, with and without alignment",
                       description="Mean loss of test digits turned by each angle.")  # fmt: skip
    e.add_argument("model", help="a pretrained name (e.g. vae-upright) or a checkpoint .pt")
    e.add_argument("--angles", type=_angles, default=_angles("0:360:15"), help="degrees: start:stop:step or a,b,c")
    e.add_argument("--n", type=_positive_int, default=500, help="test digits")
    e.add_argument("--preset", choices=PRESET_NAMES, default="default")
    e.add_argument("--no-align", action="store_true")
    e.add_argument("--out", type=Path, help="write .csv or .json")
    e.add_argument("--device", default="auto")
    e.set_defaults(func=cmd_evaluate)

    g = sub.add_parser("align", help="search the transform of test digits or of your own images",
                       description="Align test digits (a JSON summary), or with --images a folder or array file "
                                   "of your own (a CSV, one row per image in input order; resumable).")  # fmt: skip
    g.add_argument("model", help="a pretrained name or a checkpoint .pt")
    g.add_argument("--images", type=Path, help="a folder of images or an array file, resized to the model's canvas")
    g.add_argument("--channels", type=int, help="with --images: must equal the model's (default: the model's)")
    g.add_argument("--aligned", type=Path, help="with --images: also write each image in the model's pose here")
    g.add_argument("--batch-size", type=_positive_int, default=256, help="with --images: images per chunk")
    g.add_argument("--limit", type=_positive_int, help="with --images: align at most this many more images")
    g.add_argument("--restart", action="store_true", help="with --images: overwrite --out instead of continuing")
    _image_options(g)
    g.add_argument("--family", choices=list(FAMILIES), default="rotation")
    g.add_argument("--preset", choices=PRESET_NAMES, default="default")
    g.add_argument("--perturb", choices=("none", *FAMILIES), default="rotation")
    g.add_argument("--n", "--digits", type=_positive_int, default=500,
                   help="test digits (under torchrun spell it --digits: torchrun reads --n as its own)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", type=Path, help="the pose table .csv with --images; else write the summary as JSON")
    g.add_argument("--device", default="auto")
    g.set_defaults(func=cmd_align)

    d = ReproConfig()
    r = sub.add_parser("reproduce", help="train and evaluate every shipped model",
                       description="Train every shipped model with fit() and write the results files.")  # fmt: skip
    r.add_argument("--epochs", type=_positive_int, default=d.epochs)
    r.add_argument("--sweep-epochs", type=_positive_int, default=d.sweep_epochs)
    r.add_argument("--train-limit", type=int, default=d.train_limit, help="0 for all 60,000")
    r.add_argument("--eval-n", type=_positive_int, default=d.eval_n)
    r.add_argument("--affine-n", type=_positive_int, default=d.affine_n)
    r.add_argument("--only", nargs="+", help="train only these models (no evaluation); with --evaluate-only: "
                   "evaluate only these models again (rotation.csv and table1.csv rows)")
    r.add_argument("--evaluate-only", action="store_true")
    r.add_argument("--out", type=Path, help="default: the package's pretrained/ folder")
    r.add_argument("--runs", type=Path, default=Path("runs"), help="resumable training checkpoints")
    r.add_argument("--device", default="auto")
    r.set_defaults(func=cmd_reproduce)

    b = sub.add_parser("bench", help="time the alignment search against the seed's",
                       description="Seed-style search vs align() presets, training-time alignment cost, "
                                   "and the cost/quality curve; prints tables and writes JSON.")  # fmt: skip
    b.add_argument("--model", default="vae-upright", help="a pretrained name or a checkpoint .pt")
    b.add_argument("--family", choices=list(FAMILIES), default="rotation")
    bc = BenchConfig()
    b.add_argument("--n", type=_positive_int, default=bc.n, help="perturbed test digits for align()")
    b.add_argument("--n-ref", type=_positive_int, default=bc.n_ref, help="of which the (slow) seed reference searches")
    b.add_argument("--train-n", type=int, default=bc.train_n, help="training digits for the epoch comparison (0: skip)")
    b.add_argument("--train-epochs", type=_positive_int, default=bc.train_epochs,
                   help="epochs per training run; the first searches cold, later ones warm-start")
    b.add_argument("--train-seeds", type=_positive_int, default=bc.train_seeds,
                   help="repeat the training comparison from this many seeds (seed, seed + 1, ...); losses are means")
    b.add_argument("--curve-n", type=int, default=bc.curve_n, help="digits for the cost/quality curve (0: skip)")
    b.add_argument("--train-align", type=_fields, help="AlignConfig fields for the training search's first "
                   "epoch, e.g. restarts=12,steps=2 (default: TrainConfig's)")
    b.add_argument("--train-align-warm", type=_fields, help="... for its later, warm-started epochs")
    b.add_argument("--exhaustive-n", type=int, default=bc.exhaustive_n,
                   help="digits searched near-exhaustively (360 angles + refinement) for the quality check (0: skip)")
    b.add_argument("--precision", choices=PRECISIONS,
                   help="score every package search in this precision (float32: as on a CPU without bfloat16; "
                        "default: as configured)")
    b.add_argument("--seed", type=int, default=bc.seed)
    b.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: leave as is; 1 on a machine shared with other jobs)")
    b.add_argument("--out", type=Path, default=Path("runs/bench.json"), help="JSON results")
    b.add_argument("--device", default="auto")
    b.set_defaults(func=cmd_bench)

    bd = sub.add_parser("bench-distributed", help="time alignment and training on 1 and 2 processes (torchrun)",
                        description="Start torchrun with N one-thread processes on the same alignment and training "
                                    "epoch; print seconds, speed-up, device, backend and N.")  # fmt: skip
    bd.add_argument("--model", default="vae-upright", help="a pretrained name or a checkpoint .pt")
    bd.add_argument("--n", type=_positive_int, default=256, help="rotated test digits to align")
    bd.add_argument("--nprocs", type=_positive_int, nargs="+", default=[1, 2], help="process counts")
    bd.add_argument("--train-n", type=int, default=1024, help="training digits for one epoch (0: skip)")
    bd.add_argument("--regime", choices=REGIMES, default="aligned")
    bd.add_argument("--batch-size", type=_positive_int, default=128, help="the global batch")
    bd.add_argument("--out", type=Path, default=Path("runs/bench_distributed.json"), help="JSON results")
    bd.add_argument("--device", default="cpu", help="cpu, or cuda (one GPU per process)")
    bd.set_defaults(func=cmd_bench_distributed)

    x = sub.add_parser("export-onnx", help="write a model as an ONNX graph (loss and reconstruction, warp inside)",
                       description="Export a model to ONNX: inputs images (N,1,H,W) and matrices (N,2,3), outputs "
                                   "the per-image loss (avae_loss, z = mu) and the reconstruction warped back. "
                                   "Checked against avae_loss with onnxruntime.")  # fmt: skip
    x.add_argument("model", nargs="?", default="vae-upright", help="a pretrained name (hash-checked) or a checkpoint .pt")
    x.add_argument("--out", type=Path, help="the .onnx file (default: runs/<model>.onnx)")
    x.add_argument("--opset", type=int, default=18, help="ONNX opset, 16 or later (GridSample)")
    x.add_argument("--digits", type=Path, help="also write MNIST test digits as JSON (for the book's live widget)")
    x.add_argument("--n-per-class", type=_positive_int, default=2, help="digits per class for --digits")
    x.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison with avae_loss")
    x.set_defaults(func=cmd_export_onnx)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, FloatingPointError) as e:
        print(f"error{_where()}: {e}", file=sys.stderr)  # under torchrun: which process failed
        return 2
    finally:
        _leave()


def _where() -> str:
    if "torch.distributed" not in sys.modules:
        return ""
    from .distributed import rank_label

    return rank_label()


def _leave() -> None:
    """Leave torchrun's process group, if this command joined it."""
    if _JOINED:
        import torch.distributed as dist

        _JOINED.clear()
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    raise SystemExit(main())
