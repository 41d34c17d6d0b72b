"""The model as an ONNX graph, for the live widget of the book's web page (chapter 2).

:func:`export_onnx` writes one graph with two inputs and two outputs::

    images     (N, 1, H, W)  float32 in [0, 1]
    matrices   (N, 2, 3)     float32 sampling matrices, as avae.rotation / avae.affine build them
    loss       (N,)          avae.avae_loss(vae, images, matrices) in nats (z = mu, eval mode)
    reconstruction (N, 1, H, W)  warp(decode(mu(warp(x, A))), A^-1), probabilities

``N`` is dynamic. The graph is traced from the package's own :func:`avae_tutorial.loss.loss_terms`
on an eval-mode copy of the model, so the warp, its closed-form inverse, the Bernoulli term and
the KL are the package's arithmetic (GridSample with ``align_corners=False`` in the graph); an
identity matrix gives the plain VAE. The browser runs it with onnxruntime-web; a test runs it with
onnxruntime and compares it with :func:`avae_tutorial.avae_loss`.

:func:`write_digits` writes the test digits that the web page offers, and
``python -m avae_tutorial export-onnx`` does both from the shell (the book build calls it).
Exporting needs the ``onnx`` and ``onnxscript`` packages; checking needs ``onnxruntime``.
"""
from __future__ import annotations

import base64
import inspect
import json
import math
import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from .._checks import check_images, check_matrices, check_positive_int
from .._io import sha256_file
from ..loss import loss_terms
from ..model import for_inference
from ..transforms import identity

__all__ = ["export_onnx", "export_model", "onnx_session", "onnx_loss", "write_digits",
           "INPUTS", "OUTPUTS", "MIN_OPSET"]  # fmt: skip

INPUTS = ("images", "matrices")
OUTPUTS = ("loss", "reconstruction")
#: GridSample, the warp, entered ONNX in opset 16.
MIN_OPSET = 16
#: Largest |loss difference| (nats) between the graph run by onnxruntime and ``avae_loss``.
TOLERANCE = 1e-3


class _LossGraph(nn.Module):
    """``(images (N,1,H,W), matrices (N,2,3)) -> (loss (N,), reconstruction (N,1,H,W))``."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, images: torch.Tensor, matrices: torch.Tensor):
        rec, kl, x_hat = loss_terms(self.vae, images, matrices)
        return rec + kl, x_hat


def _exact_sigmoid(opset: int):
    """``sigmoid(x) = 1 / (1 + exp(-x))`` in ONNX ops. onnxruntime's own Sigmoid kernel is a fast
    approximation good to about 1e-8 in absolute terms; for a pixel the decoder puts near 0 that
    is a large relative error, which the Bernoulli term's ``log`` turns into hundredths of a nat.
    ``Exp`` and ``Div`` are accurate to float rounding."""
    op = getattr(__import__("onnxscript"), f"opset{opset}")

    def sigmoid(x):
        one = op.CastLike(1.0, x)
        return op.Div(one, op.Add(one, op.Exp(op.Neg(x))))

    return sigmoid


def _require(module: str, extra: str = "onnx"):
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(f"exporting to ONNX needs the {module!r} package: "
                          f"pip install 'avae-tutorial[{extra}]' (or pip install {module})") from None


def export_onnx(
    vae: nn.Module,
    path: str | os.PathLike,
    *,
    opset: int = 18,
    metadata: dict | None = None,
    check: bool = True,
) -> dict:
    """Write ``vae`` (wrapped in the warp, with its loss) as an ONNX graph at ``path``.

    The model is copied and the copy put in eval mode; ``vae`` itself is not touched.
    ``metadata`` (str -> str) goes into the graph's ``metadata_props`` (the model's name, the
    sha256 of its weights). With ``check``, the written graph is run with onnxruntime on turned
    synthetic digits and compared with :func:`avae_tutorial.avae_loss`; a difference above
    ``TOLERANCE`` nats raises. Returns a summary: path, bytes, sha256, opset, and the check's
    largest loss difference (nats) and reconstruction difference.
    """
    if not isinstance(vae, nn.Module) or not all(hasattr(vae, a) for a in ("encode", "decode", "canvas")):
        raise TypeError(f"vae: expected an avae_tutorial.VAE (encode, decode, canvas), got {type(vae).__name__}")
    check_positive_int(opset, "opset", minimum=MIN_OPSET)  # GridSample, the warp, needs it
    onnx = _require("onnx")
    _require("onnxscript")
    if "custom_translation_table" not in inspect.signature(torch.onnx.export).parameters:
        raise RuntimeError(f"exporting needs torch's dynamo ONNX exporter (torch 2.6 or later); "
                           f"this is torch {torch.__version__}")  # fmt: skip
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"path: expected a file name ending in .onnx, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)

    model = _LossGraph(for_inference(vae, fold=False))
    device = next(vae.parameters()).device
    images = torch.rand(2, 1, vae.canvas, vae.canvas, device=device)  # N=2: a batch of 1 would be specialized
    matrices = identity(2, device=device)
    n = torch.export.Dim("N", min=1)
    # optimize=False: onnxscript's optimizer rewrites x * c as x for any c within ~1e-5 of 1,
    # which drops the loss's (1 - 2 EPS) factor; onnxruntime folds the graph itself when it loads.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notes and tracer hints
        program = torch.onnx.export(
            model, (images, matrices), input_names=list(INPUTS), output_names=list(OUTPUTS),
            opset_version=opset, dynamo=True, dynamic_shapes={"images": {0: n}, "matrices": {0: n}},
            custom_translation_table={torch.ops.aten.sigmoid.default: _exact_sigmoid(opset)},
            optimize=False, verbose=False,
        )  # fmt: skip
    proto = program.model_proto
    _strip_traces(proto)
    meta = {"avae.inputs": "images (N,1,H,W) in [0,1]; matrices (N,2,3) sampling matrices",
            "avae.outputs": "loss (N,) nats: avae_loss with z = mu; reconstruction (N,1,H,W) warped back",
            "avae.canvas": str(vae.canvas), "avae.latent_dim": str(getattr(vae, "latent_dim", "")),
            **{str(k): str(v) for k, v in (metadata or {}).items()}}  # fmt: skip
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = "avae_tutorial: the AVAE loss of a VAE wrapped in an affine warp (python -m avae_tutorial export-onnx)"
    onnx.checker.check_model(proto)
    path.write_bytes(proto.SerializeToString())

    info = {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path), "opset": opset,
            "inputs": list(INPUTS), "outputs": list(OUTPUTS), "metadata": meta}  # fmt: skip
    if check:
        info.update(check_export(vae, path))
    return info


def check_export(vae: nn.Module, path: str | os.PathLike, n: int = 16, seed: int = 0) -> dict:
    """Run the graph at ``path`` with onnxruntime on ``n`` turned synthetic digits under random
    rotations (the identity first) and compare with :func:`avae_tutorial.avae_loss`; raises when
    the loss differs by more than ``TOLERANCE`` nats. Returns the largest differences."""
    from ..data.mnist import synthetic_digits
    from ..transforms import rotation, warp

    g = torch.Generator().manual_seed(seed)
    x = synthetic_digits(n, canvas=vae.canvas, seed=seed)[0]
    x = warp(x, rotation((torch.rand(n, generator=g) * 2 - 1) * math.pi))  # (n, 1, H, W): turned digits
    angles = (torch.rand(n, generator=g) * 2 - 1) * math.pi
    angles[0] = 0.0
    A = rotation(angles)  # (n, 2, 3)
    ref_vae = for_inference(vae, fold=False).cpu()
    with torch.no_grad():
        rec, kl, x_hat = loss_terms(ref_vae, x, A)
    loss, recon = onnx_loss(path, x, A)
    d_loss = (loss - (rec + kl)).abs().max().item()
    d_rec = (recon - x_hat).abs().max().item()
    if not d_loss <= TOLERANCE:
        raise RuntimeError(f"{path}: the ONNX graph's loss differs from avae_loss by {d_loss:.2e} nats "
                           f"(tolerance {TOLERANCE:g}); the export is wrong")  # fmt: skip
    return {"check_images": n, "max_abs_loss_diff": d_loss, "max_abs_reconstruction_diff": d_rec}


def onnx_session(path: str | os.PathLike):
    """An onnxruntime ``InferenceSession`` of an exported graph (CPU)."""
    ort = _require("onnxruntime")
    if not Path(path).is_file():
        raise FileNotFoundError(f"no ONNX file at {path}; write one with python -m avae_tutorial export-onnx")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_loss(session, x: torch.Tensor, A: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss (N,), x_hat (N,1,H,W))`` of images ``x`` under matrices ``A`` (``None``: identity),
    computed by an exported graph (a path or an :func:`onnx_session`) with onnxruntime, on the CPU."""
    if not hasattr(session, "run"):
        session = onnx_session(session)
    shape = session.get_inputs()[0].shape  # ['N', 1, H, W]
    canvas = shape[-1] if isinstance(shape[-1], int) else None
    x = check_images(x, canvas=canvas)
    A = identity(len(x)) if A is None else check_matrices(A, batch=len(x))
    feed = {"images": x.detach().cpu().float().contiguous().numpy(),
            "matrices": A.detach().cpu().float().contiguous().numpy()}  # fmt: skip
    loss, recon = session.run(list(OUTPUTS), feed)
    return torch.from_numpy(loss), torch.from_numpy(recon)


def export_model(spec: str, path: str | os.PathLike, opset: int = 18, check: bool = True) -> dict:
    """Export a shipped model by name (loaded with :func:`avae_tutorial.load_pretrained`, whose
    file must match the manifest's sha256) or a checkpoint file; the graph's metadata records the
    name and the sha256 of the weights it was made from."""
    from ..training.pretrained import is_checkpoint_path, load_model, manifest

    vae = load_model(spec)  # a shipped model's file is checked against the manifest's sha256
    source = sha256_file(spec) if is_checkpoint_path(spec) else manifest()["models"][spec]["sha256"]
    meta = {"avae.model": Path(spec).stem if Path(spec).suffix == ".pt" else spec, "avae.source_sha256": source}
    info = export_onnx(vae, path, opset=opset, metadata=meta, check=check)
    info.update(model=meta["avae.model"], source_sha256=source)
    return info


def write_digits(path: str | os.PathLike, n_per_class: int = 2, canvas: int = 40) -> dict:
    """Write the first ``n_per_class`` MNIST test digits of each class (0-9, then 0-9 again) as
    JSON: ``{"canvas", "labels", "indices", "pixels"}``, ``pixels`` the base64 of ``uint8``
    values (``round(255 x)``, row-major ``(N, canvas, canvas)``; MNIST stores 8-bit pixels, so
    ``pixels / 255`` gives back ``load_mnist``'s values). Returns a summary."""
    from ..data.mnist import load_mnist

    check_positive_int(n_per_class, "n_per_class")
    x, y = load_mnist("test", canvas=canvas, limit=200 * n_per_class)
    picks = [[int(i) for i in (y == c).nonzero().flatten()[:n_per_class]] for c in range(10)]
    if any(len(p) < n_per_class for p in picks):
        raise ValueError(f"fewer than {n_per_class} test digits of some class among the first {len(y)}")
    order = [p[k] for k in range(n_per_class) for p in picks]  # 0-9, then 0-9 again
    q = (x[order] * 255).round()  # (N, 1, canvas, canvas)
    if (q / 255 - x[order]).abs().max() > 1e-6:
        raise ValueError("the test digits are not 8-bit images; they cannot be written as uint8")
    blob = q.to(torch.uint8).flatten().numpy().tobytes()
    data = {"canvas": canvas, "source": "MNIST test split", "labels": y[order].tolist(), "indices": order,
            "pixels": base64.b64encode(blob).decode("ascii")}  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return {"path": str(path), "bytes": path.stat().st_size, "count": len(order)}


def _strip_traces(proto) -> None:
    """Drop the exporter's per-node notes (Python stack traces with this machine's paths, FX
    names): a third of the file, and nothing the runtime reads."""
    graph = proto.graph
    for item in [*graph.node, *graph.value_info, *graph.input, *graph.output, *graph.initializer]:
        del item.metadata_props[:]
        if hasattr(item, "doc_string"):
            item.doc_string = ""
