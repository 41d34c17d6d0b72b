"""Every public entry point, fed the usual mistakes: each must fail early with a message that says what
was wrong and, where there is one, how to fix it. One table; the assertions are on the message text.

``python tests/test_bad_inputs.py`` prints the table with the message each input gets.
"""
from __future__ import annotations

import re
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.data import mnist as data
from avae_tutorial.tools.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")

X, Y = avae.data.mnist.synthetic_digits(4, canvas=28, seed=0)  # (4, 1, 28, 28) in [0, 1]
X40 = avae.data.mnist.pad_to_canvas(X, 40)
torch.manual_seed(0)
VAE = avae.VAE(latent_dim=2, canvas=28).eval()
AVAE = avae.AffineVAE(VAE)
META_VAE = avae.VAE(latent_dim=2, canvas=28).to("meta")  # stands in for "a model on another device"
ANGLE = torch.tensor([0.1, 0.2, 0.3, 0.4])
A4 = avae.rotation(ANGLE)
NAN, INF = float("nan"), float("inf")


def with_value(x: torch.Tensor, value: float) -> torch.Tensor:
    x = x.clone()
    x[0, 0, 5, 5] = value
    return x


def cfg(**kw) -> avae.TrainConfig:
    return avae.TrainConfig(**{"latent_dim": 2, "canvas": 28, "epochs": 1, "batch_size": 4, **kw})


def fit(train=(X, Y), test=None, **kw):
    return avae.fit(kw.pop("config", cfg()), train, test, progress=False, **kw)


def checkpoint(tmp: Path, config: dict, model=None) -> Path:
    model_config = {k: config[k] for k in ("latent_dim", "canvas") if k in config}
    return avae.training.checkpoint.save_checkpoint({"model_config": model_config, "config": config, "model": model or VAE.state_dict()},
                                tmp / "m.pt")  # fmt: skip


def truncated(tmp: Path) -> Path:
    path = checkpoint(tmp, {"latent_dim": 2, "canvas": 28})
    path.write_bytes(path.read_bytes()[:1000])
    return path


def garbage(tmp: Path) -> Path:
    path = tmp / "junk.pt"
    path.write_bytes(b"this is not a checkpoint" * 10)
    return path


UINT8_HINT = r"convert 0-255 images with `x\.float\(\) / 255`"
RANGE = r"expected pixel values in \[0, 1\] \(Bernoulli probabilities\), got range"
NONFINITE = r"contains NaN or inf values"
REGIMES = r"unknown regime 'sideways'; expected one of: 'upright', 'rotated', 'aligned'"

#: (entry point, bad input, call(tmp), exception, pattern the message must contain)
CASES = [
    # ------------------------------------------------------------ load_mnist (validated before any data is read)
    ("load_mnist", "unknown split", lambda t: avae.load_mnist("validation"), ValueError,
     r"unknown split 'validation'; expected one of: 'train', 'test'"),
    ("load_mnist", "canvas too small", lambda t: avae.load_mnist("test", canvas=20), ValueError,
     r"canvas: "),
    ("load_mnist", "float canvas", lambda t: avae.load_mnist("test", canvas=40.0), ValueError,
     r"canvas: "),
    ("load_mnist", "limit 0", lambda t: avae.load_mnist("test", limit=0), ValueError,
     r"limit: "),
    # ------------------------------------------------------------ rotation
    ("rotation", "python float", lambda t: avae.rotation(0.5), TypeError,
     r"angle: "),
    ("rotation", "integer degrees", lambda t: avae.rotation(torch.tensor([90])), TypeError,
     r"expected a floating-point tensor of radians, got .*int64.*torch\.deg2rad"),
    ("rotation", "wrong shape (B, 1)", lambda t: avae.rotation(ANGLE[:, None]), ValueError,
     r"angle: "),
    ("rotation", "0-d tensor", lambda t: avae.rotation(torch.tensor(0.5)), ValueError,
     r"angle: "),
    ("rotation", "empty", lambda t: avae.rotation(torch.zeros(0)), ValueError, r"angle: "),
    ("rotation", "NaN", lambda t: avae.rotation(torch.tensor([NAN])), ValueError, r"angle: " + NONFINITE),
    ("rotation", "inf", lambda t: avae.rotation(torch.tensor([INF])), ValueError, r"angle: " + NONFINITE),
    # ------------------------------------------------------------ affine
    ("affine", "5 params", lambda t: avae.affine(torch.zeros(3, 5)), ValueError,
     r"params: "),
    ("affine", "no batch axis", lambda t: avae.affine(torch.zeros(4)), ValueError,
     r"got shape \(4,\); for one transform add the batch axis with params\[None\]"),
    ("affine", "empty", lambda t: avae.affine(torch.zeros(0, 4)), ValueError, r"got shape \(0, 4\)"),
    ("affine", "integers", lambda t: avae.affine(torch.zeros(2, 4, dtype=torch.long)), TypeError,
     r"params: "),
    ("affine", "NaN", lambda t: avae.affine(torch.full((2, 4), NAN)), ValueError, r"params: " + NONFINITE),
    ("affine", "a list", lambda t: avae.affine([[0.0, 0, 0, 0]]), TypeError, r"params: "),
    # ------------------------------------------------------------ warp (any finite real values are fine)
    ("warp", "uint8 images", lambda t: avae.warp((X * 255).to(torch.uint8), A4), TypeError, UINT8_HINT),
    ("warp", "rank 3 images", lambda t: avae.warp(X[:, 0], A4), ValueError,
     r"x: "),
    ("warp", "NaN image", lambda t: avae.warp(with_value(X, NAN), A4), ValueError, r"x: " + NONFINITE),
    ("warp", "empty batch", lambda t: avae.warp(X[:0], A4[:0]), ValueError, r"x: "),
    ("warp", "one (2, 3) matrix", lambda t: avae.warp(X[:1], A4[0]), ValueError,
     r"A: "),
    ("warp", "(B, 3, 3) matrices", lambda t: avae.warp(X, torch.eye(3).expand(4, 3, 3)), ValueError,
     r"homogeneous 3x3 matrices drop the last row with A\[:, :2\]"),
    ("warp", "angles instead of matrices", lambda t: avae.warp(X, ANGLE), ValueError,
     r"for angles build the matrices with avae_tutorial\.rotation\(angle\)"),
    ("warp", "too few matrices", lambda t: avae.warp(X, A4[:2]), ValueError,
     r"A: "),
    ("warp", "NaN matrix", lambda t: avae.warp(X, A4 * NAN), ValueError, r"A: " + NONFINITE),
    ("warp", "integer matrix", lambda t: avae.warp(X, A4.long()), TypeError, r"A: "),
    ("warp", "matrices on another device", lambda t: avae.warp(X, A4.to("meta")), ValueError,
     r"A is on meta but x is on cpu; move one of them"),
    ("warp", "unknown padding_mode", lambda t: avae.warp(X, A4, padding_mode="wrap"), ValueError,
     r"unknown padding_mode 'wrap'; expected one of: 'zeros', 'border', 'reflection'"),
    # ------------------------------------------------------------ invert, compose
    ("invert", "singular matrix", lambda t: avae.invert(torch.tensor([[[1.0, 2, 0], [2, 4, 0]]])), ValueError,
     r"A: "),
    ("invert", "zero matrix (2nd of 2)", lambda t: avae.invert(torch.cat([A4[:1], torch.zeros(1, 2, 3)])), ValueError,
     r"singular affine matrix at batch index \[1\]"),
    ("invert", "inf", lambda t: avae.invert(A4 * INF), ValueError, r"A: " + NONFINITE),
    ("invert", "one (2, 3) matrix", lambda t: avae.invert(A4[0]), ValueError, r"A\[None\]"),
    ("invert", "empty", lambda t: avae.invert(A4[:0]), ValueError, r"A: "),
    ("compose", "batch mismatch", lambda t: avae.transforms.compose(A4, A4[:2]), ValueError,
     r"B: "),
    ("compose", "B of wrong shape", lambda t: avae.transforms.compose(A4, torch.zeros(4, 2, 2)), ValueError,
     r"B: "),
    ("compose", "B on another device", lambda t: avae.transforms.compose(A4, A4.to("meta")), ValueError,
     r"A is on cpu but B is on meta"),
    # ------------------------------------------------------------ VAE(...)
    ("VAE()", "latent_dim 0", lambda t: avae.VAE(latent_dim=0), ValueError, r"latent_dim: "),
    ("VAE()", "latent_dim 2.5", lambda t: avae.VAE(latent_dim=2.5), ValueError, r"latent_dim: "),
    ("VAE()", "latent_dim True", lambda t: avae.VAE(latent_dim=True), ValueError, r"latent_dim: "),
    ("VAE()", "latent_dim '8'", lambda t: avae.VAE(latent_dim="8"), ValueError, r"latent_dim: "),
    ("VAE()", "canvas 20", lambda t: avae.VAE(canvas=20), ValueError, r"canvas: "),
    ("VAE()", "canvas 40.0", lambda t: avae.VAE(canvas=40.0), ValueError, r"canvas: "),
    # ------------------------------------------------------------ VAE.forward
    ("VAE.forward", "rank 3 (B, H, W)", lambda t: VAE(X[:, 0]), ValueError,
     r"x: "),
    ("VAE.forward", "rank 2 (H, W)", lambda t: VAE(X[0, 0]), ValueError, r"x\[None, None\]"),
    ("VAE.forward", "3 channels", lambda t: VAE(X.expand(4, 3, 28, 28)), ValueError,
     r"one channel, got tensor of shape \(4, 3, 28, 28\).*x\.mean\(1, keepdim=True\)"),
    ("VAE.forward", "channels last", lambda t: VAE(X.permute(0, 2, 3, 1)), ValueError, r"x\.permute\(0, 3, 1, 2\)"),
    ("VAE.forward", "40x40 into a 28 model", lambda t: VAE(X40), ValueError,
     r"x: "),
    ("VAE.forward", "uint8", lambda t: VAE((X * 255).to(torch.uint8)), TypeError, UINT8_HINT),
    ("VAE.forward", "float 0-255", lambda t: VAE(X * 255), ValueError, RANGE + r" \[0, 255\]; for 0-255 pixel values divide by 255"),
    ("VAE.forward", "normalized (negative)", lambda t: VAE((X - 0.13) / 0.31), ValueError, RANGE + r" \[-0\.4194"),
    ("VAE.forward", "NaN", lambda t: VAE(with_value(X, NAN)), ValueError, r"x: " + NONFINITE),
    ("VAE.forward", "inf", lambda t: VAE(with_value(X, INF)), ValueError, r"x: " + NONFINITE),
    ("VAE.forward", "empty batch", lambda t: VAE(X[:0]), ValueError, r"x: "),
    ("VAE.forward", "model on another device", lambda t: META_VAE(X), ValueError,
     r"the model is on meta but the images are on cpu; move one of them"),
    ("VAE.forward", "images on another device", lambda t: VAE(X.to("meta")), ValueError,
     r"the model is on cpu but the images are on meta"),
    # ------------------------------------------------------------ AffineVAE.forward (values read where data comes in)
    ("AffineVAE.forward", "values above 1", lambda t: AVAE(X * 2, A4), ValueError, RANGE),
    ("AffineVAE.forward", "NaN", lambda t: AVAE(with_value(X, NAN), A4), ValueError, r"x: " + NONFINITE),
    ("AffineVAE.forward", "singular A", lambda t: AVAE(X, torch.zeros(4, 2, 3)), ValueError,
     r"A: singular affine matrix at batch index \[0, 1, 2, 3\]"),
    ("AffineVAE.forward", "zero matrix (2nd of 2)", lambda t: AVAE(X[:2], torch.cat([A4[:1], torch.zeros(1, 2, 3)])),
     ValueError, r"A: singular affine matrix at batch index \[1\]"),
    ("AffineVAE.forward", "NaN A", lambda t: AVAE(X, A4 * NAN), ValueError, r"A: " + NONFINITE),
    ("AffineVAE.forward", "inf A", lambda t: AVAE(X, A4 * INF), ValueError, r"A: " + NONFINITE),
    # ------------------------------------------------------------ generate
    ("generate", "one code, no batch axis", lambda t: avae.generate(VAE, torch.zeros(2)), ValueError,
     r"z: expected shape \(B, 2\) \(the model's latent size\).*z\[None\]"),
    ("generate", "wrong latent size", lambda t: avae.generate(VAE, torch.zeros(4, 3)), ValueError, r"z: expected shape \(B, 2\)"),
    ("generate", "integer codes", lambda t: avae.generate(VAE, torch.zeros(4, 2, dtype=torch.long)), TypeError,
     r"z: expected floating-point latent codes"),
    ("generate", "NaN code", lambda t: avae.generate(VAE, torch.full((4, 2), NAN)), ValueError, r"z: " + NONFINITE),
    ("generate", "a list", lambda t: avae.generate(VAE, [[0.0, 0.0]]), TypeError, r"z: expected a torch\.Tensor"),
    ("generate", "one matrix for four codes", lambda t: avae.generate(VAE, torch.zeros(4, 2), A4[:1]), ValueError,
     r"A: expected 4 matrices \(one per code\), got 1"),
    ("generate", "singular A", lambda t: avae.generate(VAE, torch.zeros(4, 2), torch.zeros(4, 2, 3)), ValueError,
     r"A: singular affine matrix"),
    ("generate", "codes on another device", lambda t: avae.generate(VAE, torch.zeros(4, 2, device="meta")), ValueError,
     r"the model is on cpu but the codes z are on meta"),
    # ------------------------------------------------------------ avae_loss
    ("avae_loss", "uint8", lambda t: avae.avae_loss(VAE, (X * 255).to(torch.uint8)), TypeError, UINT8_HINT),
    ("avae_loss", "wrong canvas", lambda t: avae.avae_loss(VAE, X40), ValueError, r"model expects 28x28 images, got 40x40"),
    ("avae_loss", "values above 1", lambda t: avae.avae_loss(VAE, X * 2), ValueError, RANGE),
    ("avae_loss", "NaN", lambda t: avae.avae_loss(VAE, with_value(X, NAN)), ValueError, NONFINITE),
    ("avae_loss", "singular A", lambda t: avae.avae_loss(VAE, X, torch.zeros(4, 2, 3)), ValueError, r"singular affine matrix"),
    ("avae_loss", "NaN A", lambda t: avae.avae_loss(VAE, X, A4 * NAN), ValueError, r"A: " + NONFINITE),
    ("avae_loss", "empty batch", lambda t: avae.avae_loss(VAE, X[:0]), ValueError, r"non-empty batch"),
    ("avae_loss", "angles for A", lambda t: avae.avae_loss(VAE, X, ANGLE), ValueError, r"avae_tutorial\.rotation\(angle\)"),
    ("avae_loss", "A batch mismatch", lambda t: avae.avae_loss(VAE, X, A4[:3]), ValueError,
     r"A: "),
    ("avae_loss", "model on another device", lambda t: avae.avae_loss(META_VAE, X), ValueError,
     r"the model is on meta but the images are on cpu"),
    ("avae_loss", "A on another device", lambda t: avae.avae_loss(VAE, X, A4.to("meta")), ValueError,
     r"the model is on cpu but the matrices A are on meta"),
    # ------------------------------------------------------------ align, AlignConfig
    ("align", "unknown family", lambda t: avae.align(VAE, X, "shear"), ValueError,
     r"unknown family 'shear'; registered: rotation, affine, affine_t \(see register_family\)"),
    ("align", "unknown preset", lambda t: avae.align(VAE, X, "rotation", "slow"), ValueError,
     r"unknown preset 'slow' for family 'rotation'; expected one of \('default', 'fast'\)"),
    ("align", "config as a dict", lambda t: avae.align(VAE, X, "rotation", {"steps": 2}), TypeError,
     r"config: "),
    ("align", "uint8", lambda t: avae.align(VAE, (X * 255).to(torch.uint8)), TypeError, UINT8_HINT),
    ("align", "wrong canvas", lambda t: avae.align(VAE, X40), ValueError, r"model expects 28x28 images, got 40x40"),
    ("align", "values above 1", lambda t: avae.align(VAE, X * 255), ValueError, r"divide by 255"),
    ("align", "NaN", lambda t: avae.align(VAE, with_value(X, NAN)), ValueError, NONFINITE),
    ("align", "empty batch", lambda t: avae.align(VAE, X[:0]), ValueError, r"non-empty batch"),
    ("align", "3 channels", lambda t: avae.align(VAE, X.expand(4, 3, 28, 28)), ValueError, r"one channel"),
    ("align", "init of wrong shape", lambda t: avae.align(VAE, X, init=torch.zeros(4, 2)), ValueError,
     r"init: "),
    ("align", "init for 3 of 4 images", lambda t: avae.align(VAE, X, init=torch.zeros(3, 1)), ValueError,
     r"init: "),
    ("align", "NaN init", lambda t: avae.align(VAE, X, init=torch.full((4, 1), NAN)), ValueError,
     r"init: " + NONFINITE),
    ("align", "integer init", lambda t: avae.align(VAE, X, init=torch.zeros(4, 1, dtype=torch.long)), TypeError,
     r"init: "),
    ("align", "batch_size 0", lambda t: avae.align(VAE, X, batch_size=0), ValueError,
     r"batch_size: "),
    ("align", "model on another device", lambda t: avae.align(META_VAE, X), ValueError,
     r"the model is on meta but the images are on cpu"),
    ("AlignConfig", "restarts -1", lambda t: avae.AlignConfig(restarts=-1), ValueError,
     r"restarts: "),
    ("AlignConfig", "negative steps", lambda t: avae.AlignConfig(steps=-1), ValueError, r"steps: "),
    ("AlignConfig", "a bool for an int", lambda t: avae.AlignConfig(top_k=True), ValueError, r"top_k: "),
    ("Family", "a bool for n_params", lambda t: avae.Family("b", True, avae.rotation), ValueError, r"n_params: "),
    ("AlignConfig", "lr 0", lambda t: avae.AlignConfig(lr=0.0), ValueError, r"lr: "),
    # ------------------------------------------------------------ TrainConfig, fit
    ("TrainConfig", "unknown regime", lambda t: cfg(regime="sideways"), ValueError, REGIMES),
    ("TrainConfig", "epochs 0", lambda t: cfg(epochs=0), ValueError, r"epochs: "),
    ("TrainConfig", "batch_size -1", lambda t: cfg(batch_size=-1), ValueError, r"batch_size: "),
    ("TrainConfig", "latent_dim 0", lambda t: cfg(latent_dim=0), ValueError, r"latent_dim: "),
    ("TrainConfig", "canvas 20", lambda t: cfg(canvas=20), ValueError, r"canvas: "),
    ("TrainConfig", "lr 0", lambda t: cfg(lr=0), ValueError, r"lr: "),
    ("TrainConfig", "weight_decay -1", lambda t: cfg(weight_decay=-1.0), ValueError, r"weight_decay: "),
    ("TrainConfig", "seed -1", lambda t: cfg(seed=-1), ValueError, r"seed: "),
    ("TrainConfig", "train_limit 0", lambda t: cfg(train_limit=0), ValueError, r"train_limit: "),
    ("TrainConfig", "unknown align key", lambda t: cfg(align={"restart": 8}), ValueError,
     r"align: "),
    ("TrainConfig", "bad align value", lambda t: cfg(align={"restarts": -1}), ValueError, r"restarts: "),
    ("fit", "config as a dict", lambda t: fit(config={"regime": "upright"}), TypeError,
     r"config: "),
    ("fit", "train is not a pair", lambda t: fit(train=X), TypeError, r"train: "),
    ("fit", "empty train set", lambda t: fit(train=(X[:0], Y[:0])), ValueError, r"train x: expected a non-empty batch"),
    ("fit", "one training image", lambda t: fit(train=(X[:1], Y[:1])), ValueError,
     r"train: "),
    ("fit", "last batch of one (canvas 28)", lambda t: fit(train=(torch.cat([X, X[:1]]), torch.cat([Y, Y[:1]]))),
     ValueError, r"5 images in batches of 4 leave a last batch of one image.*change batch_size or train_limit"),
    ("fit", "wrong canvas", lambda t: fit(train=(X40, Y)), ValueError, r"train x: the model expects 28x28 images, got 40x40"),
    ("fit", "uint8 images", lambda t: fit(train=((X * 255).to(torch.uint8), Y)), TypeError, r"`x\.float\(\) / 255`"),
    ("fit", "values above 1", lambda t: fit(train=(X * 255, Y)), ValueError, r"train x: expected pixel values in \[0, 1\]"),
    ("fit", "NaN images", lambda t: fit(train=(with_value(X, NAN), Y)), ValueError, r"train x: " + NONFINITE),
    ("fit", "labels of wrong length", lambda t: fit(train=(X, Y[:3])), ValueError,
     r"train y: expected a 1-d tensor with one label per image \(4,\)"),
    ("fit", "float labels", lambda t: fit(train=(X, Y.float())), TypeError, r"train y: expected integer class labels"),
    ("fit", "test set on another canvas", lambda t: fit(test=(X40, Y)), ValueError, r"test x: the model expects 28x28"),
    ("fit", "unusable device", lambda t: fit(device="nonexistent"), ValueError, r"device: "),
    ("fit", "checkpoint of another config", lambda t: fit(checkpoint=checkpoint(t, asdict(cfg(lr=0.5)))), ValueError,
     r"written by another config .*'lr': \(0\.5, 0\.001\).*resume=False"),
    # ------------------------------------------------------------ load_pretrained, load_checkpoint
    ("load_pretrained", "unknown name", lambda t: avae.load_pretrained("vae-sideways"), ValueError,
     r"unknown pretrained model 'vae-sideways'; valid names: "),
    ("load_pretrained", "None", lambda t: avae.load_pretrained(None), ValueError, r"unknown pretrained model None"),
    ("load_pretrained", "unusable device", lambda t: avae.load_pretrained("vae-upright", device="gpu0"), ValueError,
     r"device: "),
    ("load_checkpoint", "missing file", lambda t: avae.training.checkpoint.load_checkpoint(t / "nope.pt"), FileNotFoundError,
     r"checkpoint .*nope\.pt does not exist"),
    ("load_checkpoint", "a directory", lambda t: avae.training.checkpoint.load_checkpoint(t), FileNotFoundError, r"is not a file"),
    ("load_checkpoint", "truncated file", lambda t: avae.training.checkpoint.load_checkpoint(truncated(t)), ValueError,
     r"m\.pt is truncated, corrupted or not a safe torch file"),
    ("load_checkpoint", "garbage file", lambda t: avae.training.checkpoint.load_checkpoint(garbage(t)), ValueError,
     r"junk\.pt is truncated, corrupted or not a safe torch file"),
    ("model_from_checkpoint", "config vs weights",
     lambda t: avae.training.checkpoint.model_from_checkpoint(avae.training.checkpoint.load_checkpoint(checkpoint(t, {"latent_dim": 8, "canvas": 28}))),
     ValueError, r"checkpoint weights do not match its model_config \{'latent_dim': 8, 'canvas': 28\}: .*size mismatch"),
    ("model_from_checkpoint", "config without sizes",
     lambda t: avae.training.checkpoint.model_from_checkpoint(avae.training.checkpoint.load_checkpoint(checkpoint(t, {"regime": "upright"}))),
     ValueError, r"expected a model_config with fields \['canvas', 'latent_dim'\], got \{\}"),
    # ------------------------------------------------------------ random_rotations, random_affines
    ("random_rotations", "uint8", lambda t: avae.data.mnist.random_rotations((X * 255).to(torch.uint8)), TypeError, UINT8_HINT),
    ("random_rotations", "rank 3", lambda t: avae.data.mnist.random_rotations(X[:, 0]), ValueError, r"x\.unsqueeze\(1\)"),
    ("random_rotations", "values above 1", lambda t: avae.data.mnist.random_rotations(X * 255), ValueError, RANGE),
    ("random_rotations", "NaN", lambda t: avae.data.mnist.random_rotations(with_value(X, NAN)), ValueError, NONFINITE),
    ("random_rotations", "empty", lambda t: avae.data.mnist.random_rotations(X[:0]), ValueError, r"non-empty batch"),
    ("random_rotations", "seed 'a'", lambda t: avae.data.mnist.random_rotations(X, seed="a"), ValueError, r"seed: "),
    ("random_rotations", "seed 1.5", lambda t: avae.data.mnist.random_rotations(X, seed=1.5), ValueError, r"seed: "),
    ("random_affines", "shear 90 degrees", lambda t: avae.data.mnist.random_affines(X, max_shear_deg=90), ValueError,
     r"max_shear_deg: "),
    ("random_affines", "negative scale", lambda t: avae.data.mnist.random_affines(X, max_scale=-0.5), ValueError,
     r"max_scale: "),
    ("random_affines", "uint8", lambda t: avae.data.mnist.random_affines((X * 255).to(torch.uint8)), TypeError, UINT8_HINT),
    ("random_affines", "NaN", lambda t: avae.data.mnist.random_affines(with_value(X, NAN)), ValueError, NONFINITE),
]


@pytest.fixture(autouse=True)
def no_data(monkeypatch):
    """Entry points must reject bad arguments before loading anything."""

    def refuse(*a, **k):
        raise AssertionError("MNIST was loaded before the arguments were validated")

    monkeypatch.setattr(data, "_load_arrays", refuse)
    monkeypatch.setattr(data, "load_mnist", refuse)  # what the CLI imports at call time; avae.load_mnist stays real


@pytest.mark.parametrize(
    "call, exc, pattern", [pytest.param(c, e, p, id=f"{entry}: {what}") for entry, what, c, e, p in CASES]
)
def test_bad_input_gets_a_clear_error(call, exc, pattern, tmp_path):
    with pytest.raises(exc) as info:
        call(tmp_path)
    assert re.search(pattern, str(info.value)), f"message was: {info.value}"


def test_every_public_entry_point_is_in_the_table():
    covered = {entry for entry, *_ in CASES}
    expected = {"load_mnist", "rotation", "affine", "warp", "invert", "compose", "VAE()", "VAE.forward", "avae_loss",
                "generate",
                "AffineVAE.forward",
                "align", "fit", "TrainConfig", "load_pretrained", "load_checkpoint", "random_rotations",
                "random_affines"}  # fmt: skip
    assert expected <= covered, expected - covered


def test_warp_accepts_any_finite_real_values():
    """Not a bad input: warp resamples images, probabilities or features alike (only NaN/inf are refused)."""
    out = avae.warp(X * 4 - 2, A4)
    assert out.shape == X.shape and float(out.min()) < 0


# ------------------------------------------------------------ the command line: exit code 2 and one clear line
CUDA = torch.cuda.is_available()
CLI_CASES = [
    ("(none)", [], r"the following arguments are required: command"),
    ("(unknown)", ["frobnicate"], r"argument command: invalid choice: 'frobnicate'"),
    ("train", ["train", "--regime", "sideways"], r"argument --regime: "),
    ("train", ["train", "--epochs", "0"], r"argument --epochs: "),
    ("train", ["train", "--latent", "eight"], r"argument --latent: "),
    ("train", ["train", "--batch-size", "-5"], r"argument --batch-size: "),
    ("train", ["train", "--lr", "fast"], r"argument --lr: "),
    ("train", ["train", "--device", "tpu"], r"error: device: tpu is not usable here"),
    ("evaluate", ["evaluate"], r"the following arguments are required: model"),
    ("evaluate", ["evaluate", "vae-sideways"], r"error: unknown pretrained model 'vae-sideways'; valid names: "),
    ("evaluate", ["evaluate", "missing.pt"], r"error: checkpoint missing\.pt does not exist"),
    ("evaluate", ["evaluate", "m.pt", "--angles", "abc"],
     r"argument --angles: "),
    ("evaluate", ["evaluate", "m.pt", "--angles", "0:360:0"], r"got '0:360:0'"),
    ("evaluate", ["evaluate", "m.pt", "--preset", "slow"], r"argument --preset: "),
    ("evaluate", ["evaluate", "m.pt", "--n", "0"], r"argument --n: "),
    ("align", ["align", "m.pt", "--family", "shear"], r"argument --family: "),
    ("align", ["align", "m.pt", "--perturb", "zoom"], r"argument --perturb: "),
    ("align", ["align", "vae-sideways"], r"error: unknown pretrained model 'vae-sideways'"),
    ("reproduce", ["reproduce", "--only", "vae-sideways"],
     r"error: --only: unknown model\(s\) vae-sideways; valid names: vae-upright, vae-rotated, avae-transopt"),
    ("reproduce", ["reproduce", "--epochs", "0"], r"argument --epochs: "),
    ("reproduce", ["reproduce", "--train-limit", "-3"], r"--train-limit: expected a positive number of digits, or 0"),
]
if not CUDA:
    CLI_CASES.append(("train", ["train", "--device", "cuda"], r"error: --device cuda asked for, but CUDA is not available"))


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(args)
    except SystemExit as e:  # argparse exits on bad arguments
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("args, pattern", [pytest.param(a, p, id=f"{cmd}: {' '.join(a)}") for cmd, a, p in CLI_CASES])
def test_cli_bad_input_exits_2_with_a_message(args, pattern, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checkpoint(tmp_path, {"latent_dim": 2, "canvas": 28})  # m.pt: a valid model for the argument errors
    code, err = run_cli(args, capsys)
    assert code == 2, err
    assert re.search(pattern, err), f"stderr was: {err}"
    assert "Traceback" not in err


if __name__ == "__main__":  # print the table: entry point | bad input | exception: message
    import tempfile

    data._load_arrays = lambda *a, **k: (_ for _ in ()).throw(AssertionError("MNIST loaded"))
    with tempfile.TemporaryDirectory() as tmp:
        for entry, what, call, _, _ in CASES:
            try:
                call(Path(tmp))
                msg = "NO ERROR"
            except Exception as e:  # noqa: BLE001
                msg = f"{type(e).__name__}: {e}"
            print(f"| {entry} | {what} | {msg.splitlines()[0][:220]} |")
        import contextlib
        import io

        os_cwd = Path.cwd()
        import os

        os.chdir(tmp)
        checkpoint(Path(tmp), {"latent_dim": 2, "canvas": 28})
        for cmd, args, _ in CLI_CASES:
            buf = io.StringIO()
            with contextlib.redirect_stderr(buf):
                try:
                    code = main(args)
                except SystemExit as e:
                    code = e.code
            last = [line for line in buf.getvalue().splitlines() if line.strip()][-1]
            print(f"| CLI {cmd} | `{' '.join(args)}` | exit {code}: {last[:200]} |")
        os.chdir(os_cwd)
    sys.exit(0)
