"""Safe, atomic checkpoints: ``torch.save`` to a temporary file then rename; ``weights_only`` loads."""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

import torch

from .model import VAE

__all__ = ["save_checkpoint", "load_checkpoint", "model_from_checkpoint", "sha256_file"]


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(obj: dict, path: str | os.PathLike) -> Path:
    """Write ``obj`` with ``torch.save`` atomically: readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(obj, buf)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code); clear errors on bad files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist (or is not a file)")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"checkpoint {path} is truncated, corrupted or not a safe torch file: {e}") from e
    if not isinstance(obj, dict) or "model" not in obj or "config" not in obj:
        raise ValueError(f"checkpoint {path}: expected a dict with 'model' and 'config' entries")
    return obj


def model_from_checkpoint(ckpt: dict) -> VAE:
    """Rebuild the :class:`VAE` from the config stored in the checkpoint and load its weights."""
    cfg = ckpt.get("config") if isinstance(ckpt, dict) else None
    model_cfg = cfg.get("model", cfg) if isinstance(cfg, dict) else None
    if not isinstance(model_cfg, dict) or not {"latent_dim", "canvas"} <= set(model_cfg):
        raise ValueError(f"checkpoint: expected a config with 'latent_dim' and 'canvas', got {cfg!r}")
    vae = VAE(latent_dim=model_cfg["latent_dim"], canvas=model_cfg["canvas"])
    try:
        vae.load_state_dict(ckpt["model"])
    except (RuntimeError, TypeError, AttributeError) as e:
        detail = " ".join(line.strip() for line in str(e).splitlines()[:2])
        raise ValueError(
            f"checkpoint weights do not match its config (latent_dim={model_cfg['latent_dim']}, "
            f"canvas={model_cfg['canvas']}): {detail}"
        ) from e
    vae.eval()
    return vae
