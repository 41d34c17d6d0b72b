"""What each ``python -m avae_tutorial`` subcommand does: ``cmd_<name>(args)`` runs it from the
parsed arguments (:func:`avae_tutorial.cli.build_parser`) and returns the exit status.

Each imports what it needs when it runs, so that ``--help`` stays fast. Under ``torchrun`` a
command joins the process group first (:func:`_launch`, which notes it on the command's own
arguments, not in a module global); :func:`leave` leaves it at the end.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

__all__ = ["cmd_compare_training", "cmd_train", "cmd_evaluate", "cmd_align", "cmd_align_images", "cmd_embed", "cmd_reproduce",
           "cmd_install_models", "cmd_bench", "cmd_bench_distributed", "cmd_bench_gpu", "cmd_export_onnx",
           "aligned_path", "leave"]  # fmt: skip


def _device(name: str | None) -> str:
    import torch

    from .._checks import default_device

    if name in (None, "auto"):
        return default_device()
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name} asked for, but CUDA is not available here; use --device cpu")
    from .._checks import check_device

    check_device(name)  # "tpu", "cuda:x": a clear error, not a traceback
    return name


def _launch(a) -> str:
    """The device (``a.device``), after joining torchrun's process group when started by it (one GPU
    per process); ``a.joined_group`` tells :func:`leave` whether this command joined it."""
    from ..training.distributed import init_from_env, world

    alone = world()[1] == 1
    device = init_from_env(_device(a.device))
    a.joined_group = alone and world()[1] > 1
    return device


def _rank() -> int:
    from ..training.distributed import world

    return world()[0]


def _world_size() -> int:
    from ..training.distributed import world

    return world()[1]


def _load_model(spec: str):
    from ..training.pretrained import load_model

    return load_model(spec)


def _read_images(a, canvas: int, channels: int):
    """``--images`` read whole: ``(x, names, bad)`` (``bad``: ``"name: reason"`` of skipped files)."""
    import torch

    from ..data.images import batches, open_images

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
    from ..data.mnist import load_mnist
    from ..training.train import TrainConfig, fit

    bad = []
    from ..model import check_canvas, check_channels
    from ..training.train import training_search

    cfg = dict(regime=a.regime, latent_dim=a.latent, canvas=a.canvas, channels=a.channels, epochs=a.epochs,
               batch_size=a.batch_size, lr=a.lr, train_limit=a.train_limit, test_limit=a.test_limit, seed=a.seed)
    if a.search is not None:
        if a.regime != "aligned":
            raise ValueError(f"--search {a.search}: the training search is part of the aligned regime, not {a.regime!r}")
        cfg.update(training_search(a.search))

    check_canvas(a.canvas, "--canvas")  # before any image is read
    check_channels(a.channels, "--channels")
    device = _launch(a)  # before loading any data
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
    from ..data.mnist import load_mnist
    from ..training.evaluate import loss_per_angle, write_rows

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

    from ..training.distributed import broadcast_object, gather_objects, shard_chunks
    from ..data.images import open_images, save_images
    from ..training.poses import done_names, iter_align, pose_columns, pose_rows
    from ..transforms import warp

    if a.out is None or a.out.suffix.lower() != ".csv":
        raise ValueError(f"--out: with --images, expected the pose table's .csv path, got {a.out}")
    dev = _launch(a)
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


def cmd_embed(a) -> int:
    """``embed MODEL --images PATH --out FILE.csv``: per image the mean code, the pose and the loss
    (:mod:`avae_tutorial.training.embed`), one row per image in input order; resumable: rows already
    in ``--out`` are kept and their images skipped (``--restart`` starts over)."""
    import csv
    import time

    from ..data.images import open_images
    from ..training.embed import embed_columns, embed_rows, iter_embed
    from ..training.poses import done_names

    if a.out is None or a.out.suffix.lower() != ".csv":
        raise ValueError(f"--out: expected the embeddings' .csv path, got {a.out}")
    dev = _device(a.device)
    vae = _load_model(a.model).to(dev)
    ds = open_images(a.images, vae.canvas, vae.channels, a.invert, a.recursive)
    cols = embed_columns(vae.latent_dim)
    if a.restart:
        a.out.unlink(missing_ok=True)
    done = set(done_names(a.out, cols))
    todo = [i for i, name in enumerate(ds.names) if name not in done]
    if a.limit is not None:
        todo = todo[: a.limit]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    new = not a.out.exists() or a.out.stat().st_size == 0
    bad, losses, t0 = [], [], time.perf_counter()
    with open(a.out, "a", newline="") as f:
        writer = csv.DictWriter(f, cols)
        if new:
            writer.writeheader()
        try:
            for chunk in iter_embed(vae, ds, a.preset, search=not a.no_search, indices=todo, batch_size=a.batch_size,
                                    workers=a.workers, skip_bad=a.skip_bad, progress=True):  # fmt: skip
                rows = embed_rows(ds.names, chunk)
                writer.writerows(rows)
                f.flush()
                losses += [r["loss"] for r in rows]
                bad += [f"{name}: {reason}" for _, name, reason in chunk.bad]
        except KeyboardInterrupt:
            print(f"interrupted: {len(done) + len(losses)} rows are in {a.out}; run the same command again to continue",
                  file=sys.stderr)  # fmt: skip
            return 130
    pose = "the model's encoder" if type(vae).__name__ == "AmortizedVAE" else ("none" if a.no_search else a.preset)
    out = {"images": len(ds), "csv": str(a.out), "rows": len(done) + len(losses), "embedded_now": len(losses),
           "already_done": len(done), "left": len(ds) - len(done) - len(losses) - len(bad), "skipped_bad": len(bad),
           "bad": bad, "model": a.model, "latent_dim": vae.latent_dim, "pose": pose, "device": dev,
           "loss_mean": sum(losses) / len(losses) if losses else None, "seconds": round(time.perf_counter() - t0, 3)}
    print(json.dumps(out, indent=2))
    return 0


def cmd_align(a) -> int:
    import time

    if a.images is not None:
        return cmd_align_images(a)

    from ..data.mnist import load_mnist, random_transforms
    import torch

    from ..training.distributed import align_sharded, all_sum, barrier, world
    from ..training.timing import synchronize

    dev = _launch(a)
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
    from ..training.reproduce import ReproConfig, models_dir, recipes, reproduce

    rc = ReproConfig(epochs=a.epochs, sweep_epochs=a.sweep_epochs, train_limit=a.train_limit or None,
                     eval_n=a.eval_n, affine_n=a.affine_n, iwae_n=a.iwae_n, codes_n=a.codes_n)  # fmt: skip
    if a.train_limit is not None and a.train_limit < 0:
        raise ValueError(f"--train-limit: expected a positive number of digits, or 0 for all, got {a.train_limit}")
    unknown = sorted(set(a.only or ()) - set(recipes(rc)))
    if unknown:
        raise ValueError(f"--only: unknown model(s) {', '.join(unknown)}; valid names: {', '.join(recipes(rc))}")
    out = a.out or models_dir()
    m = reproduce(rc, out=out, only=a.only, device=_device(a.device), runs=a.runs, evaluate_only=a.evaluate_only,
                  pose_only=a.pose_only, iwae_only=a.iwae_only, codes_only=a.codes_only, affine_only=a.affine_only,
                  command=getattr(a, "command_line", None))  # fmt: skip
    print(json.dumps({k: {"test_loss": v["metrics"]["test_loss"], "train_seconds": v["train_seconds"]}
                      for k, v in m["models"].items()}, indent=2))  # fmt: skip
    print(f"wrote {out}; `python -m avae_tutorial install-models --from {out}` copies the models into the package",
          file=sys.stderr)  # fmt: skip
    return 0


def cmd_install_models(a) -> int:
    from ..training.pretrained import pretrained_dir
    from ..training.reproduce import install_models, models_dir

    src, dest = a.source or models_dir(), pretrained_dir()
    files = install_models(src, dest)
    print(json.dumps({"from": str(src), "to": str(dest), "files": files}, indent=2))
    return 0


def cmd_bench(a) -> int:
    import torch

    from .bench import BenchConfig, bench
    from .bench_report import format_report, write_json
    from ..data.mnist import load_mnist

    dev = _device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = BenchConfig(family=a.family, n=a.n, n_ref=min(a.n_ref, a.n), train_n=a.train_n, train_epochs=a.train_epochs,
                      train_seeds=a.train_seeds,
                      curve_n=a.curve_n, exhaustive_n=min(a.exhaustive_n, a.n), train_align=a.train_align,
                      train_align_warm=a.train_align_warm, precision=a.precision, seed=a.seed,
                      heldout_n=a.heldout_n if a.family == "rotation" else 0,
                      heldout_exhaustive_n=min(a.heldout_exhaustive_n, a.heldout_n))  # fmt: skip
    vae = _load_model(a.model).to(dev)
    x_test = load_mnist("test", canvas=vae.canvas, limit=max(cfg.n, cfg.curve_n) + cfg.train_test_n)[0].to(dev)
    x_train = load_mnist("train", canvas=vae.canvas, limit=cfg.train_n)[0].to(dev) if cfg.train_n else None
    pool = tuple(t.to(dev) for t in load_mnist("test", canvas=vae.canvas)) if cfg.heldout_n else None
    out = bench(vae, x_test, x_train, cfg, heldout_pool=pool)
    print(format_report(out))
    if a.out:
        print(f"wrote {write_json(out, a.out)}")
    return 0


def cmd_bench_heldout(a) -> int:
    import torch

    from .bench_report import write_json
    from .heldout import HeldoutConfig, against, format_heldout, heldout
    from ..data.mnist import load_mnist

    dev = _device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    earlier = json.loads(Path(a.against).read_text()) if a.against else None  # checked first: fail before the run
    if earlier is not None:
        want = {"split": a.split, "n": a.n, "seed": a.seed, "start": a.start}
        got = {k: earlier.get("digits", {}).get(k) for k in want}
        if "per_digit" not in earlier or got != want:
            raise ValueError(f"--against: expected a run with --per-digit on the same digits {want}; {a.against} "
                             f"has {got}" + ("" if "per_digit" in earlier else ", without per-digit figures"))
    cfg = HeldoutConfig(n=a.n, exhaustive_n=min(a.exhaustive_n, a.n), seed=a.seed, start=a.start, precision=a.precision,
                        per_digit=a.per_digit or bool(a.against), gate_bound=a.gate_bound)  # fmt: skip
    vae = _load_model(a.model).to(dev)
    x, y = load_mnist(a.split, canvas=vae.canvas)
    out = {"model": a.model, **heldout(vae, x.to(dev), y, cfg, split=a.split)}
    if earlier is not None:
        out["against"] = {"file": str(a.against), "model": earlier.get("model"), "presets": against(out, earlier)}
    print(a.model)
    print(format_heldout(out))
    if a.out:
        print(f"wrote {write_json(out, a.out)}")
    return 0


def cmd_compare_training(a) -> int:
    import torch

    from .compare import compare, time_here

    if a.threads:
        torch.set_num_threads(a.threads)
    if a.time_here:
        entry = time_here(a.time_here, recipes=a.recipes, n=a.time_n, repeats=a.repeats, device=_device(a.device))
        cpu = entry["conditions"].get("cpu") or entry["conditions"].get("device")
        print(f"{cpu}, {entry['conditions'].get('threads')} threads, AVAE_BFLOAT16={entry['bfloat16']}: "
              f"a later epoch against a plain one (median of {entry['repeats']}): "
              + ", ".join(f"{k} {v:.2f}x" for k, v in entry["later_vs_plain_median"].items()))
        return 0
    compare(a.out, recipes=a.recipes, seeds=a.seeds, device=_device(a.device), train_only=a.train_only,
            score_only=a.score_only, plain=not a.no_plain, score_n=a.score_n, time_n=a.time_n, epochs=a.epochs, train_limit=a.train_limit)  # fmt: skip
    return 0


def cmd_bench_gpu(a) -> int:
    import torch

    from .bench_report import write_json
    from ..data.mnist import load_mnist
    from .gpu_check import GpuCheckConfig, format_gpu_check, gpu_check

    dev = _device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = GpuCheckConfig(n=a.n, train_n=a.train_n, epochs=a.epochs, batch_size=a.batch_size, seed=a.seed)
    vae = _load_model(a.model).to(dev)
    x_test = load_mnist("test", canvas=vae.canvas, limit=max(cfg.n, cfg.test_n))[0].to(dev)
    if len(x_test) < cfg.n:
        raise ValueError(f"--n {cfg.n}: the MNIST test set has only {len(x_test)} digits")
    x_train = load_mnist("train", canvas=vae.canvas, limit=cfg.train_n)[0].to(dev) if cfg.train_n else None
    out = gpu_check(vae, x_test, x_train, cfg)
    out["config"]["model"] = a.model
    print(format_gpu_check(out))
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


def leave(a, clean: bool = False) -> None:
    """Leave torchrun's process group, if the command run with arguments ``a`` joined it.

    ``clean``: this process finished its command; it first waits for the others to finish theirs
    (a barrier), so that no process closes its connections while another still works in the group
    (rank 0 writing the last rows of a CSV, say): the processes leave together. After a failure
    (``clean=False``) it leaves at once, and the others, waiting for it, stop with an error that
    says so (:func:`~avae_tutorial.training.distributed.failure_line`)."""
    if getattr(a, "joined_group", False):
        import torch.distributed as dist

        a.joined_group = False
        if dist.is_initialized():
            try:
                if clean:
                    dist.barrier()
            finally:
                dist.destroy_process_group()
