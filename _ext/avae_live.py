"""The files of chapter 2's live widget, made at build time and served by the site itself.

When the HTML builder starts, this

* exports the shipped ``vae-upright`` model to ONNX with ``python -m avae_tutorial export-onnx``
  (the weights are loaded with ``load_pretrained``, which checks their sha256 against
  ``avae_tutorial/pretrained/manifest.json``; the export is checked against ``avae_loss`` with
  onnxruntime) and writes the 20 test digits the widget offers;
* copies onnxruntime-web's WebAssembly build (one module and its ``.wasm``) from
  ``node_modules/``, which ``npm ci`` fills from ``package-lock.json`` (``make book`` runs it);

into ``_build/avae_live/avae_live/``, and adds that folder's parent and ``book/_static`` (the
widget's own ``avae_live.js`` and ``avae_live.css``) to ``html_static_path``. The page then
finds everything under ``_static/``; nothing comes from a CDN.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

MODEL = "vae-upright"
#: What the page loads from onnxruntime-web: the wasm-only bundle (its loader built in) and
#: the WebAssembly binary it instantiates.
RUNTIME_FILES = ("ort.wasm.bundle.min.mjs", "ort-wasm-simd-threaded.wasm")
PACKAGE = "onnxruntime-web"


def pinned_package(root: Path, package: str) -> Path:
    """``node_modules/<package>``, checked to hold the version that ``package-lock.json`` pins."""
    lock = json.loads((root / "package-lock.json").read_text(encoding="utf-8"))
    pinned = lock["packages"][f"node_modules/{package}"]["version"]
    meta = root / "node_modules" / package / "package.json"
    installed = json.loads(meta.read_text(encoding="utf-8"))["version"] if meta.exists() else None
    if installed != pinned:
        have = f"version {installed} is installed" if installed else "it is not installed"
        raise ExtensionError(f"the site needs {package} {pinned} (package-lock.json), but {have}: "
                             "run `npm ci` in the repository root (make book and make test do)")  # fmt: skip
    return meta.parent


def _export(root: Path, out: Path) -> dict:
    """Run ``python -m avae_tutorial export-onnx``; returns its JSON summary."""
    cmd = [sys.executable, "-m", "avae_tutorial", "export-onnx", MODEL, "--out", str(out / f"{MODEL}.onnx"),
           "--digits", str(out / "digits.json")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ExtensionError(f"exporting {MODEL} to ONNX failed ({' '.join(cmd[1:])}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def make_assets(app) -> None:
    if app.builder.format != "html":
        return
    root = Path(app.srcdir)
    static = Path(app.outdir).parent / "avae_live"  # _build/avae_live, beside _build/html
    out = static / "avae_live"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    dist = pinned_package(root, PACKAGE) / "dist"
    for name in RUNTIME_FILES:
        shutil.copy2(dist / name, out / name)
    info = _export(root, out)
    manifest = json.loads((root / "avae_tutorial" / "pretrained" / "manifest.json").read_text(encoding="utf-8"))
    expected = manifest["models"][MODEL]["sha256"]
    if info["source_sha256"] != expected:  # load_pretrained already refused a mismatch; belt and braces
        raise ExtensionError(f"{MODEL}.onnx was made from weights with sha256 {info['source_sha256']}, "
                             f"not the manifest's {expected}")  # fmt: skip
    files = {p.name: {"bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
             for p in sorted(out.iterdir())}  # fmt: skip
    summary = {"model": MODEL, "source_sha256": expected, "runtime": f"{PACKAGE} {_version(dist)}",
               "max_abs_loss_diff": info.get("max_abs_loss_diff"), "files": files}  # fmt: skip
    (out / "export.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    total = sum(f["bytes"] for f in files.values())
    logger.info(f"[avae_live] {MODEL}.onnx, digits and {PACKAGE} in {out} ({total / 1e6:.1f} MB)")
    app.config.html_static_path.extend([str(root / "book" / "_static"), str(static)])


def _version(dist: Path) -> str:
    return json.loads((dist.parent / "package.json").read_text(encoding="utf-8"))["version"]


def setup(app) -> dict:
    app.connect("builder-inited", make_assets)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
