"""Shipped models: ``load_pretrained(name)`` with a sha256 check against the manifest.

The weights, their training histories and the evaluation results live in
``avae_tutorial/pretrained/``; nothing is downloaded at run time. ``python -m avae_tutorial
reproduce`` trains them again into a folder of the user's (``~/.cache/avae-tutorial/models`` by
default), and ``python -m avae_tutorial install-models`` copies them here, hash-checked. Only this
folder is read: the book's figures come from the models that ship (or that were installed on
purpose), never from whatever a reader's last experiment left in the cache; a model elsewhere
loads by its path (:func:`load_model`).
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from .._checks import check_device
from .checkpoint import load_checkpoint, model_from_checkpoint, sha256_file
from ..model import VAE

__all__ = ["load_pretrained", "pretrained_names", "manifest", "pretrained_dir", "load_history", "load_results"]


def pretrained_dir() -> Path:
    return Path(str(resources.files("avae_tutorial") / "pretrained"))


def manifest() -> dict:
    """The manifest: per model its config, training command, epochs, data checksum, metrics and file hash.

    Read afresh on each call (a small file): the caller gets its own dict to change at will, and
    a manifest that ``install-models`` just replaced is seen at once."""
    path = pretrained_dir() / "manifest.json"
    if not path.exists():
        return {"models": {}}
    return json.loads(path.read_text())


def pretrained_names() -> list[str]:
    return sorted(manifest()["models"])


def _entry(name: str) -> dict:
    models = manifest()["models"]
    if name not in models:
        valid = ", ".join(sorted(models)) or ("(none shipped: run `python -m avae_tutorial reproduce`, then "
                                              "`python -m avae_tutorial install-models`)")
        raise ValueError(f"unknown pretrained model {name!r}; valid names: {valid}")
    return models[name]


def _verified(name: str) -> dict:
    entry = _entry(name)
    path = pretrained_dir() / entry["file"]
    if not path.exists():
        raise FileNotFoundError(f"pretrained model {name!r}: file {path.name} is missing from the package")
    got = sha256_file(path)
    if got != entry["sha256"]:
        raise ValueError(f"pretrained model {name!r}: sha256 {got} does not match the manifest's {entry['sha256']}")
    return load_checkpoint(path)


def load_pretrained(name: str, device=None) -> VAE:
    """A shipped :class:`VAE` in eval mode, its file checked against the manifest's sha256."""
    device = check_device(device) if device is not None else None
    vae = model_from_checkpoint(_verified(name))
    return vae.to(device) if device is not None else vae


def load_model(spec: str) -> VAE:
    """A model from a checkpoint file (``spec`` ends in ``.pt`` or is a file) or by a shipped
    model's name (:func:`load_pretrained`, hash-checked): what the command line's ``MODEL`` means."""
    if is_checkpoint_path(spec):
        return model_from_checkpoint(load_checkpoint(spec))
    return load_pretrained(spec)


def is_checkpoint_path(spec: str) -> bool:
    """Whether ``spec`` names a checkpoint file rather than a shipped model."""
    return Path(spec).suffix == ".pt" or Path(spec).is_file()


def load_history(name: str) -> dict:
    """The training history shipped with a model (``orientation`` and ``labels`` for ``avae-transopt``)."""
    return _verified(name).get("history", {})


def load_results(filename: str):
    """A shipped results file (``.csv`` as a list of dicts with numbers parsed, ``.json`` as parsed,
    ``.npz`` as a dict of numpy arrays)."""
    path = pretrained_dir() / filename
    if not path.exists():
        available = sorted(p.name for p in pretrained_dir().glob("*.csv")) + sorted(
            p.name for p in pretrained_dir().glob("*.json") if p.name != "manifest.json"
        ) + sorted(p.name for p in pretrained_dir().glob("*.npz"))
        raise ValueError(f"unknown results file {filename!r}; available: {', '.join(available) or '(none)'}")
    if path.suffix == ".json":
        return json.loads(path.read_text())
    if path.suffix == ".npz":
        import numpy as np

        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    return read_rows(path)


def read_rows(path: str | Path) -> list[dict]:
    """A results ``.csv`` as a list of dicts: ``True``/``False``, integers and floats parsed."""
    import csv

    def parse(v: str):
        if v in ("True", "False"):
            return v == "True"
        try:
            return int(v)
        except ValueError:
            try:
                return float(v)
            except ValueError:
                return v

    with open(path, newline="") as f:
        return [{k: parse(v) for k, v in row.items()} for row in csv.DictReader(f)]
