"""Train every shipped model with :func:`fit` and write the results the book reads.

``python -m avae_tutorial reproduce`` writes into a folder of the user's (``--out``; by default
:func:`models_dir`, ``~/.cache/avae-tutorial/models``): one ``<name>.pt`` per model (config,
weights, history), ``manifest.json`` (config, command, epochs, data checksum, final metrics, file
hash, hardware, time) and the results files ``rotation.csv``, ``table1.csv``, ``affine.json``,
``sweep.csv``, ``iwae.csv`` and ``codes.npz``. Every file is written atomically (a temporary file
in the same folder, then a rename): an interrupted run leaves each file old or new, never half
written.

Putting the models into the package, where :func:`~avae_tutorial.load_pretrained` and the book
read them, is a separate, explicit step: :func:`install_models` (``python -m avae_tutorial
install-models``), which checks every file against the manifest's sha256 first. The book thus
never reads a half-finished or a reader's experimental run by accident.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType

import torch

from .._io import atomic_write
from .checkpoint import checkpoint_dict, load_checkpoint, model_from_checkpoint, save_checkpoint, sha256_file
from ..data.mnist import load_mnist
from .evaluate import affine_comparison, loss_per_angle, mean_loss, write_rows
from .measure import hardware, standard_error
from .._checks import default_device
from ..pose import fit_pose_net
from .bounds import bounds_from_weights, log_weights
from .codes import searched_codes
from .peer import PeerConfig
from .peer_fit import fit_peer
from .pretrained import pretrained_dir, read_rows
from .train import TrainConfig, evaluation_angles, fit, training_search
from ..align import align
from ..transforms import rotate, rotation, warp

__all__ = ["ReproConfig", "recipes", "reproduce", "models_dir", "install_models", "MAIN_MODELS", "sweep_losses",
           "sweep_name", "evaluate_sweep", "iwae_table", "evaluate_iwae", "IWAE_K", "evaluate_codes", "evaluate_affine"]  # fmt: skip

MAIN_MODELS = ("vae-upright", "vae-rotated", "avae-transopt")
#: The control for chapter 5: aligned training with a cold search every epoch (no warm start).
CONTROL = "avae-transopt-cold"
#: The ``warm`` training search (chapter 4b): later epochs score a grid of 8 beside the last pose
#: (13 passes per image); ``avae-transopt`` scores the last pose and an online pose net's guess (4).
WARM = "avae-transopt-warm"
#: The amortized peer for chapter 6 (:mod:`avae_tutorial.training.peer`): its encoder predicts the
#: rotation, at ``avae-transopt``'s budget (same digits, rotations, batches, epochs, latent size).
PEER = "amortized-peer"
SWEEP_LATENTS = (2, 4, 8, 16, 32)
SWEEP_ANGLES = tuple(range(0, 360, 15))
TABLE1_ANGLES = tuple(range(0, 161, 20))
#: Samples per image of the importance-weighted bound beside Table 1 (:func:`iwae_table`).
IWAE_K = 100
#: The models that carry a pose net (chapter 3's amortized first guess), fitted after training by
#: :func:`fit_pose_net` with these arguments on the first ``digits`` training digits.
POSE_MODELS = MAIN_MODELS
POSE_RECIPE = MappingProxyType({"digits": 12800, "epochs": 60, "width": 32, "seed": 0, "bins": 72})  # read-only
#: The results files that :func:`evaluate_all` writes beside the models.
RESULTS_FILES = ("rotation.csv", "table1.csv", "sweep.csv", "affine.json", "iwae.csv", "codes.npz")


@dataclass
class ReproConfig:
    """Sizes of the reproduction. The defaults are the CPU settings the shipped models used."""

    epochs: int = 8  # the three latent-8 models
    sweep_epochs: int = 8  # the latent-size sweep: the same data and epochs as the latent-8 models
    train_limit: int | None = 12800  # first N training digits (None: all 60,000)
    eval_n: int = 150  # test digits per angle in the aligned sweeps
    affine_n: int = 500  # test digits for the affine comparison
    iwae_n: int = 40  # test digits per angle for the importance-weighted bound (iwae.csv)
    codes_n: int = 1000  # test digits for chapter 6's codes at the searched pose (codes.npz)
    seed: int = 0


def recipes(rc: ReproConfig) -> dict[str, TrainConfig | PeerConfig]:
    """Name -> training config of every shipped model (:func:`fit`'s, or for :data:`PEER`
    :func:`~avae_tutorial.training.peer_fit.fit_peer`'s)."""
    out = {
        "vae-upright": TrainConfig("upright", 8, epochs=rc.epochs, train_limit=rc.train_limit, seed=rc.seed),
        "vae-rotated": TrainConfig("rotated", 8, epochs=rc.epochs, train_limit=rc.train_limit, seed=rc.seed),
        "avae-transopt": TrainConfig("aligned", 8, epochs=rc.epochs, train_limit=rc.train_limit, seed=rc.seed),
        CONTROL: TrainConfig("aligned", 8, epochs=rc.epochs, train_limit=rc.train_limit, seed=rc.seed,
                             **training_search("cold")),
        WARM: TrainConfig("aligned", 8, epochs=rc.epochs, train_limit=rc.train_limit, seed=rc.seed,
                          **training_search("warm")),
        PEER: PeerConfig(8, epochs=rc.epochs, train_limit=rc.train_limit, seed=rc.seed),
    }
    for latent in SWEEP_LATENTS:
        if latent == 8:
            continue
        for regime in ("upright", "rotated"):
            out[sweep_name(regime, latent)] = TrainConfig(
                regime, latent, epochs=rc.sweep_epochs, train_limit=rc.train_limit, seed=rc.seed
            )
    return out


def _data_checksum(x: torch.Tensor, y: torch.Tensor) -> str:
    h = hashlib.sha256()
    h.update((x * 255).round().to(torch.uint8).numpy().tobytes())
    h.update(y.numpy().tobytes())
    return h.hexdigest()


def models_dir() -> Path:
    """Where :func:`reproduce` writes by default: ``$XDG_CACHE_HOME/avae-tutorial/models``
    (``~/.cache/avae-tutorial/models`` where ``XDG_CACHE_HOME`` is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "avae-tutorial" / "models"


def _write_manifest(path: Path, manifest: dict) -> None:
    atomic_write(path, json.dumps(manifest, indent=2).encode())


def reproduce(
    rc: ReproConfig | None = None,
    out: str | Path | None = None,
    only: list[str] | None = None,
    device: str | None = None,
    runs: str | Path = "runs",
    evaluate_only: bool = False,
    pose_only: bool = False,
    command: str | None = None,
    iwae_only: bool = False,
    codes_only: bool = False,
    affine_only: bool = False,
) -> dict:
    """Train (resumably, checkpoints under ``runs``) and evaluate into ``out``; returns the manifest.

    ``out`` defaults to :func:`models_dir`; nothing is written into the package (that is
    :func:`install_models`). A partial run (``only``, ``evaluate_only`` or ``pose_only``) into a
    folder without a manifest starts from a copy of the shipped models, so that its models and
    rows sit beside the others'. ``rc`` defaults to ``ReproConfig()``, the shipped run's sizes.
    ``command`` is recorded in the manifest as the command that trained each model (the command
    line passes its own; default: ``reproduce --only <name>``).

    The models of :data:`POSE_MODELS` get a pose net after training (:data:`POSE_RECIPE`);
    ``pose_only`` refits only the pose nets of the shipped ``only`` models (or all of
    :data:`POSE_MODELS`), keeping their weights, and evaluates nothing; ``iwae_only`` writes only
    ``iwae.csv`` (:func:`evaluate_iwae`) from the shipped models, ``codes_only`` only ``codes.npz``
    (:func:`evaluate_codes`; with ``only``, only those models' arrays), ``affine_only`` only
    ``affine.json`` (:func:`evaluate_affine`)."""
    rc = ReproConfig() if rc is None else rc
    out = Path(out).expanduser() if out is not None else models_dir()
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    if (only or evaluate_only or pose_only or iwae_only or codes_only or affine_only) and not manifest_path.exists() and (pretrained_dir() / "manifest.json").exists():
        install_models(pretrained_dir(), out)
    dev = torch.device(device or default_device())
    train, test = load_mnist("train"), load_mnist("test")
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"models": {}}
    manifest["repro"] = asdict(rc)
    all_recipes = recipes(rc)
    names = list(all_recipes) if not only else only
    if codes_only or iwae_only or affine_only:  # the manifest read again after the (long) evaluation: other runs may have written it
        if codes_only:
            key, record = "codes", evaluate_codes(out, rc, test, dev, models=only)
        elif affine_only:
            key, record = "affine", evaluate_affine(out, rc, test, dev)
        else:
            key, record = "iwae", evaluate_iwae(out, rc, test, dev)
        record["command"] = command or f"python -m avae_tutorial reproduce --{key}-only"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"models": {}}
        manifest.setdefault("results", {})[key] = record
        _write_manifest(manifest_path, manifest)
        return manifest
    if pose_only:
        for name in only or POSE_MODELS:
            if name not in POSE_MODELS:
                raise ValueError(f"only: {name} carries no pose net; expected names among {', '.join(POSE_MODELS)}")
            ckpt = load_checkpoint(out / f"{name}.pt")
            vae = model_from_checkpoint(ckpt).to(dev)
            manifest["models"][name]["pose_net"] = _fit_pose(vae, train, dev)
            fitted = checkpoint_dict(vae)  # the weights and the pose net's config; the rest as it was
            ckpt = {**ckpt, "model": fitted["model"], "pose_config": fitted["pose_config"]}
            manifest["models"][name]["sha256"] = sha256_file(save_checkpoint(ckpt, out / f"{name}.pt"))
            _write_manifest(manifest_path, manifest)
        return manifest
    for name in names:
        if evaluate_only:
            break
        cfg = all_recipes[name]
        t0 = time.perf_counter()
        if isinstance(cfg, PeerConfig):  # trained in one go (minutes), no checkpoint per epoch
            vae, hist = fit_peer(cfg, train, test, device=dev)
        else:
            vae, hist = fit(cfg, train, test, checkpoint=Path(runs) / f"{name}.pt", device=dev)
        if "orientation" in hist:  # float16 degrees-precision is plenty for histograms
            hist = {**hist, "orientation": hist["orientation"].half()}
        pose = _fit_pose(vae, train, dev) if name in POSE_MODELS else None
        path = save_checkpoint(checkpoint_dict(vae, config=asdict(cfg), history=hist), out / f"{name}.pt")
        xs = cfg.train_limit or len(train[0])
        manifest["models"][name] = {
            "file": path.name,
            "sha256": sha256_file(path),
            "config": asdict(cfg),
            "command": command or f"python -m avae_tutorial reproduce --only {name}",
            "epochs": cfg.epochs,
            "data": {"source": "MNIST train split, first %d digits" % xs,
                     "sha256": _data_checksum(train[0][:xs], train[1][:xs])},  # fmt: skip
            "metrics": {"train_loss": hist["train_loss"][-1], "test_loss": hist["test_loss"][-1]},
            "hardware": hardware(dev),
            "train_seconds": round(sum(hist["seconds"]), 1),
            "wall_seconds_this_run": round(time.perf_counter() - t0, 1),
            "torch": torch.__version__,
            **({"pose_net": pose} if pose else {}),
        }
        _write_manifest(manifest_path, manifest)
    if evaluate_only and only:  # these models' rows again, the rest kept
        again = evaluate_all(out, rc, test, dev, models=only)
        manifest.setdefault("results", {}).setdefault("reevaluated", []).append({**again, "command": command or ""})
        _write_manifest(manifest_path, manifest)
    elif not only or evaluate_only:
        manifest["results"] = evaluate_all(out, rc, test, dev)
        _write_manifest(manifest_path, manifest)
    return manifest


def install_models(src: str | Path | None = None, dest: str | Path | None = None) -> list[str]:
    """Copy the models of ``src``'s manifest (default: :func:`models_dir`), their results files and
    the manifest into ``dest`` (default: the package's ``pretrained/`` folder); returns the files
    copied.

    Every model file is checked against the manifest's sha256 before anything is copied, so a
    corrupted or half-written run installs nothing; each file is copied atomically and the
    manifest last, so that a reader never sees a manifest whose files are not there yet. Files in
    ``dest`` that ``src`` does not have are left as they are."""
    src = Path(src).expanduser() if src is not None else models_dir()
    dest = Path(dest).expanduser() if dest is not None else pretrained_dir()
    manifest_path = src / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"no manifest.json in {src}: run `python -m avae_tutorial reproduce` first "
                                f"(or name the folder it wrote)")  # fmt: skip
    if src.resolve() == dest.resolve():
        raise ValueError(f"install_models: source and destination are the same folder ({src})")
    manifest = json.loads(manifest_path.read_text())
    files = []
    for name, entry in sorted(manifest.get("models", {}).items()):
        path = src / entry["file"]
        if not path.is_file():
            raise FileNotFoundError(f"model {name!r}: {path} is missing; the manifest lists it")
        got = sha256_file(path)
        if got != entry["sha256"]:
            raise ValueError(f"model {name!r}: {path} has sha256 {got}, the manifest says {entry['sha256']}; "
                             f"nothing was installed")  # fmt: skip
        files.append(entry["file"])
    files += [f for f in RESULTS_FILES if (src / f).is_file()]
    for f in [*files, "manifest.json"]:
        atomic_write(dest / f, (src / f).read_bytes())
    return [*files, "manifest.json"]


def _fit_pose(vae, train, dev) -> dict:
    """Fit ``vae.pose_net`` by :data:`POSE_RECIPE` on the first training digits; its manifest entry."""
    r, t0 = POSE_RECIPE, time.perf_counter()
    x = train[0][: r["digits"]].to(dev)
    vae.pose_net = fit_pose_net(vae, x, epochs=r["epochs"], seed=r["seed"], bins=r["bins"], width=r["width"],
                                progress=True)  # fmt: skip
    args = ", ".join(f"{k}={v}" for k, v in r.items() if k != "digits")
    return {"command": f"fit_pose_net(vae, load_mnist('train', limit={r['digits']})[0], {args})", **r,
            "hardware": hardware(dev), "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip


def sweep_name(regime: str, latent: int) -> str:
    """The shipped name of the sweep's model: ``vae-<regime>`` at latent 8, else ``vae-<regime>-l<L>``."""
    return f"vae-{regime}" if latent == 8 else f"vae-{regime}-l{latent}"


def sweep_losses(load, x: torch.Tensor, seed: int = 1) -> list[dict]:
    """One row per sweep model that ``load(name)`` returns (``None``: skipped), on digits ``x``.

    ``loss_upright_test``: on the upright digits; ``loss_rotated_test``: on the same digits turned
    by seeded random angles (:func:`~avae_tutorial.training.train.evaluation_angles`); ``loss_rotated_undone``:
    on those turned digits with the exact turn undone before encoding and redone after decoding,
    ``avae_loss(vae, x_rot, rotation(-angle))``. The last two are scored against the same turned
    digits, so they compare an upright model with a rotated one like with like.

    Standard errors over the digits: ``<column>_se`` for each mean; ``blur_se`` of the per-digit
    blur cost (upright model: turned and undone minus upright; rotated model: turned minus upright);
    on a rotated row whose upright twin was scored (else NaN), ``capacity_upright_se`` and
    ``capacity_turned_se`` of the per-digit capacity cost (rotated minus upright on upright digits;
    rotated as turned minus upright with the turn undone), paired because both models see the
    same digits.
    """
    angle = evaluation_angles(len(x), seed).to(x.device)  # (N,)
    xr = warp(x, rotation(angle))
    undo = rotation(-angle)
    rows = []

    def _se(v: torch.Tensor) -> float:  # over the digits, in float64
        return standard_error(v.double())

    for latent in SWEEP_LATENTS:
        per_digit = {}
        for regime in ("upright", "rotated"):
            vae = load(sweep_name(regime, latent))
            if vae is None:
                continue
            up, turned, undone = mean_loss(vae, x), mean_loss(vae, xr), mean_loss(vae, xr, undo)
            per_digit[regime] = (up, turned, undone)
            row = {"model": sweep_name(regime, latent), "regime": regime, "latent_dim": latent,
                   "loss_upright_test": float(up.mean()), "loss_rotated_test": float(turned.mean()),
                   "loss_rotated_undone": float(undone.mean()),
                   "loss_upright_test_se": _se(up), "loss_rotated_test_se": _se(turned),
                   "loss_rotated_undone_se": _se(undone),
                   "blur_se": _se((undone if regime == "upright" else turned) - up),
                   "capacity_upright_se": float("nan"), "capacity_turned_se": float("nan")}  # fmt: skip
            if regime == "rotated" and "upright" in per_digit:
                u_up, _, u_undone = per_digit["upright"]
                row["capacity_upright_se"] = _se(up - u_up)
                row["capacity_turned_se"] = _se(turned - u_undone)
            rows.append(row)
    return rows


def evaluate_sweep(out: Path, rc: ReproConfig, test, dev) -> list[dict]:
    """Write sweep.csv (:func:`sweep_losses` on all test digits, angles seeded ``rc.seed + 1``) from
    the models in ``out``, with each model's training epochs."""

    def load(name):
        path = out / f"{name}.pt"
        return model_from_checkpoint(load_checkpoint(path)).to(dev) if path.exists() else None

    sweep = sweep_losses(load, test[0].to(dev), seed=rc.seed + 1)
    for r in sweep:
        r["epochs"] = load_checkpoint(out / f"{r['model']}.pt")["config"]["epochs"]
    write_rows(sweep, out / "sweep.csv")
    return sweep


def evaluate_all(out: Path, rc: ReproConfig, test, dev, models: list[str] | None = None) -> dict:
    """Write rotation.csv, table1.csv, sweep.csv and affine.json from the models in ``out``.

    ``models``: re-evaluate only these models' rows of rotation.csv and table1.csv (the other
    models' rows are kept as they are in ``out``; sweep.csv and affine.json are left alone).
    """
    def load(name):
        return model_from_checkpoint(load_checkpoint(out / f"{name}.pt")).to(dev)

    t0 = time.perf_counter()
    x = test[0][: rc.eval_n].to(dev)
    angles = sorted(set(SWEEP_ANGLES) | set(TABLE1_ANGLES))
    table_models = [*MAIN_MODELS, *[n for n in (WARM,) if (out / f"{n}.pt").exists()]]  # and the warm search (chapter 4b)
    unknown = sorted(set(models or ()) - set(table_models))
    if unknown:
        raise ValueError(f"models: expected names among {table_models}, got {unknown}")
    rows = []
    if models:  # keep the rows of the models not asked for, in the file's order
        rows = [r for r in read_rows(out / "rotation.csv") if r["model"] in table_models and r["model"] not in models]
    for name in models or table_models:
        vae = load(name)
        for aligned in (False, True):
            for r in loss_per_angle(vae, x, angles, aligned=aligned):
                rows.append({"model": name, **r})
    rows.sort(key=lambda r: table_models.index(r["model"]))  # stable: each model's rows stay in order
    write_rows(rows, out / "rotation.csv")
    table = []
    for name in table_models:
        for aligned in (False, True):
            sel = [r["loss"] for r in rows if r["model"] == name and r["aligned"] == aligned and r["angle_deg"] in TABLE1_ANGLES]
            table.append({"model": name, "aligned": aligned, "mean_loss_0_160": sum(sel) / len(sel)})
    write_rows(table, out / "table1.csv")
    if models:
        return {"models": list(models), "eval_seconds": round(time.perf_counter() - t0, 1),
                "hardware": hardware(dev), "eval_n": rc.eval_n, "angles_deg": angles}  # fmt: skip

    evaluate_sweep(out, rc, test, dev)
    iwae = evaluate_iwae(out, rc, test, dev)
    codes = evaluate_codes(out, rc, test, dev)

    affine = evaluate_affine(out, rc, test, dev)
    return {"eval_seconds": round(time.perf_counter() - t0, 1), "hardware": hardware(dev),
            "eval_n": rc.eval_n, "angles_deg": angles, "iwae": iwae, "codes": codes, "affine": affine}  # fmt: skip


def evaluate_affine(out: Path, rc: ReproConfig, test, dev) -> dict:
    """Write affine.json (:func:`~avae_tutorial.training.evaluate.affine_comparison` of
    ``vae-upright`` on the first ``rc.affine_n`` test digits, perturbations seeded ``rc.seed``, the
    default search) from ``out``'s model; its record."""
    t0 = time.perf_counter()
    vae = model_from_checkpoint(load_checkpoint(out / "vae-upright.pt")).to(dev)
    aff = {"vae-upright": affine_comparison(vae, test[0][: rc.affine_n].to(dev), seed=rc.seed, progress=False)}
    atomic_write(out / "affine.json", json.dumps(aff, indent=2).encode())
    return {"seconds": round(time.perf_counter() - t0, 1), "hardware": hardware(dev), "n": rc.affine_n,
            "search": "default"}  # fmt: skip


def iwae_table(load, x: torch.Tensor, k: int = IWAE_K, angles=TABLE1_ANGLES, seed: int = 0, config="default",
               models=MAIN_MODELS) -> list[dict]:  # fmt: skip
    """Table 1's rows with a bound beside the loss: per model that ``load(name)`` returns and
    searched or not, over digits ``x`` turned by each of ``angles`` (degrees), the mean ``z = mu``
    loss (``surrogate``), the ``k``-sample estimate of the negative ELBO (``elbo``) and the
    importance-weighted bound of ``-log p(x)`` (``iwae``, :mod:`~avae_tutorial.training.bounds`),
    each at the pose the search (``config``) found, or at the identity. Nats, means over all rows;
    beside each its standard error over the digits (``<column>_se``: each digit's mean over the
    angles is one sample, since the angles reuse the same digits)."""
    rows = []
    for name in models:
        vae = load(name)
        per_digit = {a: torch.zeros(3, len(x), dtype=torch.float64) for a in (False, True)}
        for i, deg in enumerate(angles):
            xr = rotate(x, math.radians(float(deg)))
            res = align(vae, xr, "rotation", config, progress=False)
            for aligned in (False, True):
                A = res.A if aligned else None
                iwae, elbo = bounds_from_weights(log_weights(vae, xr, A, k=k, seed=seed + i))
                loss = res.loss if aligned else res.loss0
                per_digit[aligned] += torch.stack([loss, elbo, iwae]).double().cpu()
        for aligned, v in per_digit.items():
            v = v / len(angles)  # (3, digits): each digit's mean over the angles
            cols = dict(zip(("surrogate", "elbo", "iwae"), v))
            rows.append({"model": name, "aligned": aligned, "n": len(x) * len(angles), "k": k,
                         **{c: float(d.mean()) for c, d in cols.items()},
                         **{f"{c}_se": standard_error(d) for c, d in cols.items()}})  # fmt: skip
    return rows


def evaluate_iwae(out: Path, rc: ReproConfig, test, dev) -> dict:
    """Write iwae.csv (:func:`iwae_table` on the first ``rc.iwae_n`` test digits at Table 1's angles,
    :data:`IWAE_K` samples, the default search) from the models in ``out``; its record."""

    def load(name):
        return model_from_checkpoint(load_checkpoint(out / f"{name}.pt")).to(dev)

    t0 = time.perf_counter()
    rows = iwae_table(load, test[0][: rc.iwae_n].to(dev), k=IWAE_K, angles=TABLE1_ANGLES, seed=rc.seed)
    write_rows(rows, out / "iwae.csv")
    return {"seconds": round(time.perf_counter() - t0, 1), "hardware": hardware(dev), "n_per_angle": rc.iwae_n,
            "k": IWAE_K, "angles_deg": list(TABLE1_ANGLES), "search": "default"}  # fmt: skip



def evaluate_codes(out: Path, rc: ReproConfig, test, dev, models: list[str] | None = None) -> dict:
    """Write codes.npz (:func:`~avae_tutorial.training.codes.searched_codes` on the first
    ``rc.codes_n`` test digits, turns seeded ``rc.seed``, the default search) from the models in
    ``out``; its record. ``models``: recompute only these models' arrays, keeping the others'
    from ``out``'s codes.npz (same digits and turns, checked)."""
    import numpy as np

    from .codes import SEARCHED

    def load(name):
        return model_from_checkpoint(load_checkpoint(out / f"{name}.pt")).to(dev)

    unknown = sorted(set(models or ()) - set(SEARCHED))
    if unknown:
        raise ValueError(f"models: codes.npz holds {', '.join(SEARCHED)}; got {', '.join(unknown)}")
    t0 = time.perf_counter()
    x, y = test[0][: rc.codes_n].to(dev), test[1][: rc.codes_n]
    arrays = searched_codes(load, x, seed=rc.seed, models=tuple(models or SEARCHED))
    if models:
        with np.load(out / "codes.npz") as old:
            kept = {k: old[k] for k in old.files if k.split("/")[0] not in models}
        labels = kept.pop("labels")
        same = all(np.array_equal(kept[f"turn/{t}"], arrays[f"turn/{t}"]) for t in ("uniform", "normal"))
        if not same or not np.array_equal(labels, y.numpy()):
            raise ValueError("codes.npz in out was written for other digits or turns; recompute every model")
        arrays = {**kept, **arrays}
    buf = io.BytesIO()
    np.savez_compressed(buf, labels=y.numpy().astype(np.int64), **arrays)
    atomic_write(out / "codes.npz", buf.getvalue())
    return {"seconds": round(time.perf_counter() - t0, 1), "hardware": hardware(dev), "n": len(x), "seed": rc.seed,
            "search": "default", "models": list(models or SEARCHED)}  # fmt: skip
