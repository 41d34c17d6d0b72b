"""``python -m avae_tutorial {train,evaluate,align,embed,reproduce,install-models,bench,bench-heldout,
compare-training,bench-gpu,bench-distributed,export-onnx}``: the package's jobs from the shell.

This module is the command line itself: its parser, the argument types, and :func:`main`, which
turns a bad input into one clear line and exit status 2. What each subcommand does is in
:mod:`avae_tutorial.tools.commands`. It is the only module that reads ``sys.argv``: :func:`main`
passes the command as it was typed (``args.command_line``) to the commands that record it.
"""
from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path

from .commands import (cmd_align, cmd_bench, cmd_bench_distributed, cmd_bench_gpu, cmd_bench_heldout,
                       cmd_compare_training, cmd_embed, cmd_evaluate, cmd_export_onnx, cmd_install_models, cmd_reproduce, cmd_train, leave)  # fmt: skip

__all__ = ["main", "build_parser"]


def _positive_int(text: str) -> int:
    from .._checks import check_positive_int

    try:
        return check_positive_int(int(text), "value")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None


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


def _image_options(p) -> None:
    p.add_argument("--invert", action="store_true", help="with --images: dark objects on a light background")
    p.add_argument("--recursive", action="store_true", help="with --images: also read subfolders")
    p.add_argument("--skip-bad", action="store_true", help="with --images: skip unreadable files and list them")
    p.add_argument("--workers", type=int, default=0, help="with --images: DataLoader processes decoding files")


#: Each subcommand: what it does in a few words (the list in ``--help``) and in a sentence or two
#: (its own ``--help``).
ABOUT = {
    "train": ("train a VAE in one of three regimes", "Train a VAE."),
    "evaluate": ("loss per rotation angle, with and without alignment",
                 "Mean loss of test digits turned by each angle."),
    "align": ("search the transform of test digits or of your own images",
              "Align test digits (a JSON summary), or with --images a folder or array file of your own (a CSV, "
              "one row per image in input order; resumable)."),
    "embed": ("the latent code, pose and loss of each of your own images",
              "Embed a folder or array file of your own images: a CSV with one row per image in input order, "
              "the encoder's mean code (z0, z1, ...) at the pose the model reads it in (the search's, or the "
              "amortized peer's own), its angle_deg and the loss there; resumable."),
    "reproduce": ("train and evaluate every shipped model (into a cache folder)",
                  "Train every shipped model with fit() and write the models, the manifest and the results files "
                  "into --out (default: ~/.cache/avae-tutorial/models, under $XDG_CACHE_HOME when set), each "
                  "atomically. install-models then copies them into the package."),
    "install-models": ("copy reproduced models into the package (hash-checked)",
                       "Copy the models of a reproduce run (--from), their results files and manifest into the "
                       "package's pretrained/ folder, where load_pretrained() and the book read them; every model "
                       "is checked against the manifest's sha256 first."),
    "bench": ("time the alignment search against the seed's",
              "Seed-style search vs align() presets, training-time alignment cost, and the cost/quality curve; "
              "prints tables and writes JSON."),
    "bench-heldout": ("the test-time search on held-out test digits: passes, and the gap to an exhaustive search",
                      "align at the default and fast presets (with the model's pose net) on MNIST test digits drawn and "
                      "turned with a seed no tuning touched, and the 360-angle exhaustive search: passes per image "
                      "(counted) and their distribution, the digits that go on to the grid by class, the gap to the "
                      "exhaustive search and the fast preset's share of the default's gain; prints them and writes JSON."),
    "compare-training": ("which training search: recipes trained over seeds and scored alike",
                         "Train avae-transopt's setup with each training search (warm, cold, online, lite) and each "
                         "seed into a folder (checkpointed per epoch, resumed), then score every run with the default "
                         "search on held-out test digits; prints the table of means and standard errors over seeds "
                         "and writes compare.json."),
    "bench-gpu": ("the GPU check: align and a training epoch on one device, host reads counted",
                  "align at the default and fast presets on 10,000 rotated test digits, and a plain and an aligned "
                  "training epoch: ms and VAE passes per image, peak memory and host reads, on a GPU (the default "
                  "where there is one) or, with --device cpu and a small --n, a CPU; prints them and writes JSON."),
    "bench-distributed": ("time alignment and training on 1 and 2 processes (torchrun)",
                          "Start torchrun with N one-thread processes on the same alignment and training epoch; "
                          "print seconds, speed-up, device, backend and N."),
    "export-onnx": ("write a model as an ONNX graph (loss and reconstruction, warp inside)",
                    "Export a model to ONNX: inputs images (N,1,H,W) and matrices (N,2,3), outputs the per-image "
                    "loss (avae_loss, z = mu) and the reconstruction warped back. Checked against avae_loss with "
                    "onnxruntime."),
}  # fmt: skip


def _subcommand(sub, name: str, func) -> argparse.ArgumentParser:
    """The parser of subcommand ``name`` (described by :data:`ABOUT`), which runs ``func(args)``."""
    short, long = ABOUT[name]
    p = sub.add_parser(name, help=short, description=long)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    from ..align import PRECISIONS, PRESET_NAMES
    from .bench import BenchConfig
    from ..families import families
    from ..training.reproduce import ReproConfig
    from ..training.train import REGIMES, TRAINING_SEARCHES
    from .gpu_check import GpuCheckConfig
    from .heldout import HeldoutConfig

    p = argparse.ArgumentParser(prog="python -m avae_tutorial", description="Affine VAEs: train, evaluate, align.")
    sub = p.add_subparsers(dest="command", required=True)

    t = _subcommand(sub, "train", cmd_train)
    t.add_argument("--images", type=Path, help="train on a folder of images or an array file (default: MNIST)")
    t.add_argument("--canvas", type=int, default=40, help="image size (multiple of 4, 28-128)")
    t.add_argument("--channels", type=int, default=1, help="1 (grey) or 3 (RGB)")
    t.add_argument("--test-fraction", type=_fraction, default=0.1, help="--images held out for the test loss")
    _image_options(t)
    t.add_argument("--regime", choices=REGIMES, default="upright")
    t.add_argument("--search", choices=tuple(TRAINING_SEARCHES),
                   help="aligned: the later epochs' search (default online: the last pose and an online pose net's "
                        "guess, 4 passes per digit; warm: a grid of 8 beside the last pose, 13; cold: the first "
                        "epoch's grid every epoch, 9; lite: the last pose and one step, 4)")
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

    e = _subcommand(sub, "evaluate", cmd_evaluate)
    e.add_argument("model", help="a pretrained name (e.g. vae-upright) or a checkpoint .pt")
    e.add_argument("--angles", type=_angles, default=_angles("0:360:15"), help="degrees: start:stop:step or a,b,c")
    e.add_argument("--n", type=_positive_int, default=500, help="test digits")
    e.add_argument("--preset", choices=PRESET_NAMES, default="default")
    e.add_argument("--no-align", action="store_true")
    e.add_argument("--out", type=Path, help="write .csv or .json")
    e.add_argument("--device", default="auto")

    g = _subcommand(sub, "align", cmd_align)
    g.add_argument("model", help="a pretrained name or a checkpoint .pt")
    g.add_argument("--images", type=Path, help="a folder of images or an array file, resized to the model's canvas")
    g.add_argument("--channels", type=int, help="with --images: must equal the model's (default: the model's)")
    g.add_argument("--aligned", type=Path, help="with --images: also write each image in the model's pose here")
    g.add_argument("--batch-size", type=_positive_int, default=256, help="with --images: images per chunk")
    g.add_argument("--limit", type=_positive_int, help="with --images: align at most this many more images")
    g.add_argument("--restart", action="store_true", help="with --images: overwrite --out instead of continuing")
    _image_options(g)
    g.add_argument("--family", choices=list(families()), default="rotation")
    g.add_argument("--preset", choices=PRESET_NAMES, default="default")
    g.add_argument("--perturb", choices=("none", *families()), default="rotation")
    g.add_argument("--n", "--digits", type=_positive_int, default=500,
                   help="test digits (under torchrun spell it --digits: torchrun reads --n as its own)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", type=Path, help="the pose table .csv with --images; else write the summary as JSON")
    g.add_argument("--device", default="auto")

    m = _subcommand(sub, "embed", cmd_embed)
    m.add_argument("model", help="a pretrained name or a checkpoint .pt")
    m.add_argument("--images", type=Path, required=True, help="a folder of images or an array file")
    m.add_argument("--out", type=Path, required=True, help="the embeddings .csv (continued if present)")
    m.add_argument("--preset", choices=PRESET_NAMES, default="default", help="the search's settings")
    m.add_argument("--no-search", action="store_true", help="embed each image as it is (angle 0), no search")
    m.add_argument("--batch-size", type=_positive_int, default=256, help="images per chunk")
    m.add_argument("--limit", type=_positive_int, help="embed at most this many more images")
    m.add_argument("--restart", action="store_true", help="overwrite --out instead of continuing")
    _image_options(m)
    m.add_argument("--device", default="auto")

    d = ReproConfig()
    r = _subcommand(sub, "reproduce", cmd_reproduce)
    r.add_argument("--epochs", type=_positive_int, default=d.epochs)
    r.add_argument("--sweep-epochs", type=_positive_int, default=d.sweep_epochs)
    r.add_argument("--train-limit", type=int, default=d.train_limit, help="0 for all 60,000")
    r.add_argument("--eval-n", type=_positive_int, default=d.eval_n)
    r.add_argument("--affine-n", type=_positive_int, default=d.affine_n)
    r.add_argument("--iwae-n", type=_positive_int, default=d.iwae_n, help="test digits per angle for iwae.csv")
    r.add_argument("--codes-n", type=_positive_int, default=d.codes_n, help="test digits for codes.npz")
    r.add_argument("--only", nargs="+", help="train only these models (no evaluation); with --evaluate-only: "
                   "evaluate only these models again (rotation.csv and table1.csv rows)")
    r.add_argument("--evaluate-only", action="store_true")
    r.add_argument("--pose-only", action="store_true", help="refit only the pose nets of the shipped (--only) models")
    r.add_argument("--iwae-only", action="store_true", help="write only iwae.csv (the bound beside Table 1)")
    r.add_argument("--affine-only", action="store_true", help="write only affine.json (chapter 3's affine comparison)")
    r.add_argument("--codes-only", action="store_true", help="write only codes.npz (chapter 6's searched codes; with --only, those models' arrays)")
    r.add_argument("--out", type=Path, help="the folder to write (default: ~/.cache/avae-tutorial/models, "
                   "$XDG_CACHE_HOME/avae-tutorial/models when set); never the package's (see install-models)")
    r.add_argument("--runs", type=Path, default=Path("runs"), help="resumable training checkpoints")
    r.add_argument("--device", default="auto")

    im = _subcommand(sub, "install-models", cmd_install_models)
    im.add_argument("--from", dest="source", metavar="DIR", type=Path, default=None,
                    help="the folder reproduce wrote (default: ~/.cache/avae-tutorial/models)")

    b = _subcommand(sub, "bench", cmd_bench)
    b.add_argument("--model", default="vae-upright", help="a pretrained name or a checkpoint .pt")
    b.add_argument("--family", choices=list(families()), default="rotation")
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
    b.add_argument("--heldout-n", type=int, default=bc.heldout_n,
                   help="test digits drawn with the held-out seed for the presets' held-out figures (0: skip)")
    b.add_argument("--heldout-exhaustive-n", type=int, default=bc.heldout_exhaustive_n,
                   help="of which the 360-angle exhaustive search scores (the gap to it; 0: skip)")
    b.add_argument("--precision", choices=PRECISIONS,
                   help="score every package search in this precision (float32: as on a CPU without bfloat16; "
                        "default: as configured)")
    b.add_argument("--seed", type=int, default=bc.seed)
    b.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: leave as is; 1 on a machine shared with other jobs)")
    b.add_argument("--out", type=Path, default=Path("runs/bench.json"), help="JSON results")
    b.add_argument("--device", default="auto")

    hc = HeldoutConfig()
    h = _subcommand(sub, "bench-heldout", cmd_bench_heldout)
    h.add_argument("--model", default="vae-upright", help="a pretrained name or a checkpoint .pt")
    h.add_argument("--n", type=_positive_int, default=hc.n, help="digits drawn from the split")
    h.add_argument("--exhaustive-n", type=int, default=hc.exhaustive_n,
                   help="of which the 360-angle exhaustive search scores (0: skip)")
    h.add_argument("--split", choices=("test", "train"), default="test",
                   help="test: the held-out digits; train with --start 12800 --seed 7031: the tuning digits")
    h.add_argument("--start", type=int, default=hc.start, help="draw from the split's digits from this index on")
    h.add_argument("--seed", type=int, default=hc.seed, help="the draw's seed (default: the held-out one)")
    h.add_argument("--precision", choices=PRECISIONS, help="score the presets in this precision (default: as configured)")
    h.add_argument("--per-digit", action="store_true", help="also write every digit's figures to the JSON")
    h.add_argument("--gate-bound", action="store_true",
                   help="also run the default's first stage alone and its grid for every digit (with a pose net): "
                        "the lowest gap any gate could reach at 8 passes")
    h.add_argument("--against", type=Path,
                   help="an earlier run's JSON (--per-digit, same digits): the change in loss and passes")
    h.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    h.add_argument("--out", type=Path, default=Path("runs/bench_heldout.json"), help="JSON results")
    h.add_argument("--device", default="auto")

    from .compare import RECIPES

    ct = _subcommand(sub, "compare-training", cmd_compare_training)
    ct.add_argument("--recipes", nargs="+", choices=tuple(RECIPES), default=list(RECIPES))
    ct.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ct.add_argument("--epochs", type=_positive_int, default=8)
    ct.add_argument("--train-limit", type=_positive_int, default=12_800, help="the first N training digits")
    ct.add_argument("--score-n", type=_positive_int, default=1000, help="held-out test digits scored per run")
    ct.add_argument("--train-only", action="store_true", help="train (or resume) the runs, score nothing")
    ct.add_argument("--score-only", action="store_true", help="score the runs already in --out")
    ct.add_argument("--time-here", type=Path, metavar="REPORT",
                    help="only time each recipe's later epoch against a plain one on this machine (--repeats "
                         "times) and add it to REPORT's timing_elsewhere (e.g. avae_tutorial/pretrained/compare.json)")
    ct.add_argument("--repeats", type=_positive_int, default=3, help="--time-here: timings per recipe (median)")
    ct.add_argument("--no-plain", action="store_true", help="do not time a plain epoch (keep compare.json's)")
    ct.add_argument("--time-n", type=int, default=1280,
                    help="time each recipe's second epoch against a plain one on N digits (0: keep compare.json's)")
    ct.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    ct.add_argument("--out", type=Path, default=Path("runs/compare"), help="folder of the runs and compare.json")
    ct.add_argument("--device", default="auto")

    gc = GpuCheckConfig()
    bg = _subcommand(sub, "bench-gpu", cmd_bench_gpu)
    bg.add_argument("--model", default="vae-upright", help="a pretrained name or a checkpoint .pt")
    bg.add_argument("--n", type=_positive_int, default=gc.n, help="rotated test digits aligned at each preset")
    bg.add_argument("--train-n", type=int, default=gc.train_n, help="rotated training digits per epoch (0: skip)")
    bg.add_argument("--epochs", type=_positive_int, default=gc.epochs, help="epochs per training run")
    bg.add_argument("--batch-size", type=_positive_int, default=gc.batch_size, help="the training batch")
    bg.add_argument("--seed", type=int, default=gc.seed)
    bg.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    bg.add_argument("--out", type=Path, default=Path("runs/bench_gpu.json"), help="JSON results")
    bg.add_argument("--device", default="auto", help="auto (a GPU where there is one), cuda, cpu, ...")

    bd = _subcommand(sub, "bench-distributed", cmd_bench_distributed)
    bd.add_argument("--model", default="vae-upright", help="a pretrained name or a checkpoint .pt")
    bd.add_argument("--n", type=_positive_int, default=256, help="rotated test digits to align")
    bd.add_argument("--nprocs", type=_positive_int, nargs="+", default=[1, 2], help="process counts")
    bd.add_argument("--train-n", type=int, default=1024, help="training digits for one epoch (0: skip)")
    bd.add_argument("--regime", choices=REGIMES, default="aligned")
    bd.add_argument("--batch-size", type=_positive_int, default=128, help="the global batch")
    bd.add_argument("--out", type=Path, default=Path("runs/bench_distributed.json"), help="JSON results")
    bd.add_argument("--device", default="cpu", help="cpu, or cuda (one GPU per process)")

    x = _subcommand(sub, "export-onnx", cmd_export_onnx)
    x.add_argument("model", nargs="?", default="vae-upright", help="a pretrained name (hash-checked) or a checkpoint .pt")
    x.add_argument("--out", type=Path, help="the .onnx file (default: runs/<model>.onnx)")
    x.add_argument("--opset", type=int, default=18, help="ONNX opset, 16 or later (GridSample)")
    x.add_argument("--digits", type=Path, help="also write MNIST test digits as JSON (for the book's live widget)")
    x.add_argument("--n-per-class", type=_positive_int, default=2, help="digits per class for --digits")
    x.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison with avae_loss")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; returns its exit status: 2 for a bad input (one clear line, naming the
    process under torchrun), 1 when a process of a torchrun job fails otherwise (its traceback, then
    what happened and what to do: :func:`avae_tutorial.distributed.failure_line`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = "python -m avae_tutorial " + shlex.join(argv)  # what the manifest records
    try:
        code = args.func(args)
    except (ValueError, TypeError, FileNotFoundError, FloatingPointError) as e:
        code = _failed(e, f"error{_where()}: {e}", 2)  # under torchrun: which process failed
    except Exception as e:
        if not _where():
            leave(args)
            raise  # one process: Python's own traceback
        import traceback

        from ..training.distributed import failure_line

        traceback.print_exc()
        code = _failed(e, failure_line(e), 1)
    except BaseException:  # Ctrl-C, SystemExit: leave the group, nothing more
        leave(args)
        raise
    where = _where()
    try:
        leave(args, clean=code == 0)  # a clean finish waits for the other processes to finish theirs
    except Exception as e:  # another process stopped before the end
        from ..training.distributed import failure_line

        code = _failed(e, failure_line(e, where), 1, where)
    return code


def _failed(e: BaseException, line: str, code: int, where: str | None = None) -> int:
    """Print ``line`` for the error ``e`` being handled and, in a process group (``where``: its rank
    label, by default this process's now), hand ``e`` to torchrun's error file too: its summary
    then shows this process's error. Returns ``code``."""
    print(line, file=sys.stderr)
    if (_where() if where is None else where) != "":
        from ..training.distributed import record_failure

        record_failure(e)
    return code


def _where() -> str:
    if "torch.distributed" not in sys.modules:
        return ""
    from ..training.distributed import rank_label

    return rank_label()


if __name__ == "__main__":
    raise SystemExit(main())
