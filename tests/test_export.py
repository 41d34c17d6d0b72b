"""The ONNX export (avae_tutorial/export.py): the graph run by onnxruntime against the package.

A reference test: the exported ``vae-upright`` graph and :func:`avae_tutorial.avae_loss` on the
same turned digits under the same matrices must agree to 1e-3 nats, and the reconstructions to
float rounding. Digits are synthetic (no download); the CLI test replaces ``load_mnist`` too.
"""
from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import sys

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.data import mnist as data
from avae_tutorial.training import pretrained
from avae_tutorial.tools.cli import main
from avae_tutorial.tools.export import TOLERANCE, export_model, export_onnx, onnx_loss, onnx_session, write_digits
from avae_tutorial.loss import loss_terms

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def upright() -> avae.VAE:
    return avae.load_pretrained("vae-upright").eval()


def fake_mnist(split="test", canvas=40, limit=None, root=None):
    """``load_mnist`` on 8-bit synthetic digits: no download."""
    x, y = avae.data.mnist.synthetic_digits(60, canvas=canvas, seed=5)
    return ((x * 255).round() / 255)[:limit], y[:limit]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """``python -m avae_tutorial export-onnx --digits digits.json`` run once, in an empty folder, with
    ``load_mnist`` replaced by :func:`fake_mnist`: ``(folder, the summary it printed)``. Its graph
    (the shipped ``vae-upright``, checked against ``avae_loss`` on the way) is the one the module's
    tests run: one export, not one per test."""
    folder = tmp_path_factory.mktemp("export")
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.chdir(folder)
        mp.setattr(data, "load_mnist", fake_mnist)
        code = main(["export-onnx", "--digits", "digits.json"])
    assert code == 0, printed.getvalue()
    return folder, json.loads(printed.getvalue())


@pytest.fixture(scope="module")
def exported(cli_run):
    """The module's export: ``(summary, onnxruntime session)``."""
    folder, info = cli_run
    return info, onnx_session(folder / "runs" / "vae-upright.onnx")


@pytest.fixture(scope="module")
def turned() -> tuple[torch.Tensor, torch.Tensor]:
    """24 synthetic digits (40x40) turned by angles around the circle, and 24 candidate matrices
    (the identity first, then random rotations): what the browser's search evaluates."""
    x = avae.data.mnist.synthetic_digits(24, canvas=40, seed=3)[0]
    x = avae.warp(x, avae.rotation(torch.linspace(-math.pi, math.pi, 25)[:24]))  # (24, 1, 40, 40)
    g = torch.Generator().manual_seed(0)
    angles = (torch.rand(24, generator=g) * 2 - 1) * math.pi
    angles[0] = 0.0
    return x, avae.rotation(angles)


def test_the_graph_matches_avae_loss_on_turned_digits(exported, upright, turned):
    x, A = turned
    loss, x_hat = onnx_loss(exported[1], x, A)
    with torch.no_grad():
        rec, kl, ref_hat = loss_terms(upright, x, A)
    diff = (loss - (rec + kl)).abs().max().item()
    print(f"max |onnxruntime - avae_loss| = {diff:.2e} nats over {len(x)} turned digits "
          f"(losses {float((rec + kl).min()):.0f} to {float((rec + kl).max()):.0f} nats)")  # pytest -rP
    assert diff <= TOLERANCE == 1e-3
    assert (x_hat - ref_hat).abs().max().item() < 1e-4
    assert torch.equal(loss.argmin(), (rec + kl).argmin())


def test_the_identity_gives_the_plain_vae(exported, upright, turned):
    x, _ = turned
    loss, x_hat = onnx_loss(exported[1], x)  # A=None: identity matrices
    with torch.no_grad():
        assert (loss - avae.avae_loss(upright, x)).abs().max().item() <= 1e-3
        assert (x_hat - upright.decode(upright.encode(x)[0])).abs().max().item() < 1e-4


def test_the_batch_size_is_dynamic(exported, turned):
    x, A = turned
    full, _ = onnx_loss(exported[1], x, A)
    for n in (1, 2, 7):
        loss, x_hat = onnx_loss(exported[1], x[:n], A[:n])
        assert loss.shape == (n,) and x_hat.shape == (n, 1, 40, 40)
        assert torch.allclose(loss, full[:n], atol=1e-4)  # each row depends on its own image only
    big = torch.cat([x] * 5)  # 120 rows, more than the export's example batch of 2
    assert onnx_loss(exported[1], big, torch.cat([A] * 5))[0].shape == (120,)


def test_the_graph_names_its_inputs_and_records_its_weights(exported):
    info, session = exported
    (images, matrices), outputs = session.get_inputs(), session.get_outputs()
    assert (images.name, matrices.name) == ("images", "matrices")
    assert [o.name for o in outputs] == ["loss", "reconstruction"]
    assert images.shape[1:] == [1, 40, 40] and matrices.shape[1:] == [2, 3]
    assert isinstance(images.shape[0], str) and images.shape[0] == matrices.shape[0]  # the symbolic N
    meta = session.get_modelmeta().custom_metadata_map
    expected = pretrained.manifest()["models"]["vae-upright"]["sha256"]
    assert meta["avae.model"] == "vae-upright" and meta["avae.source_sha256"] == expected == info["source_sha256"]
    assert info["bytes"] < 2_000_000, "the graph should hold the weights once, without the exporter's traces"


def test_export_copies_the_model_and_uses_eval_mode(tiny_vae, tmp_path, digits):
    """A model in train mode is exported as in eval mode (BatchNorm's running statistics) and left
    as it was; a 28x28 model exports too."""
    x = digits[0][:5]
    tiny_vae.train()
    before = {k: v.clone() for k, v in tiny_vae.state_dict().items()}
    info = export_onnx(tiny_vae, tmp_path / "tiny.onnx")  # check=True: compared with avae_loss inside
    assert info["max_abs_loss_diff"] <= TOLERANCE
    assert tiny_vae.training
    assert all(torch.equal(before[k], v) for k, v in tiny_vae.state_dict().items())
    with torch.no_grad():
        ref = avae.avae_loss(tiny_vae.eval(), x)
    assert (onnx_loss(tmp_path / "tiny.onnx", x)[0] - ref).abs().max().item() <= TOLERANCE


def test_cli_exports_checks_and_writes_the_digits(cli_run):
    """By default the command exports vae-upright to runs/vae-upright.onnx and checks it."""
    folder, info = cli_run
    assert info["model"] == "vae-upright" and info["max_abs_loss_diff"] <= TOLERANCE
    assert (folder / "runs" / "vae-upright.onnx").is_file() and sorted(p.name for p in folder.iterdir()) == [
        "digits.json", "runs"]  # fmt: skip
    d = json.loads((folder / "digits.json").read_text())
    assert d["canvas"] == 40 and d["labels"] == list(range(10)) * 2 and info["digits"]["count"] == 20
    pixels = torch.frombuffer(bytearray(base64.b64decode(d["pixels"])), dtype=torch.uint8).float() / 255
    expected = fake_mnist("test", canvas=40, limit=200)[0][d["indices"]]
    assert pixels.shape == (20 * 1600,) and torch.allclose(pixels.view(20, 1, 40, 40), expected, atol=1e-6)


def test_cli_writes_where_out_says(tmp_path, capsys, monkeypatch):
    """--out names the file (here with --no-check, and the export itself stubbed: the export is the
    module's own, above)."""
    seen = []
    monkeypatch.setattr(avae.tools.export, "export_model", lambda model, out, opset, check: seen.append(
        (model, out, opset, check)) or {"model": model})  # fmt: skip
    assert main(["export-onnx", "vae-rotated", "--out", str(tmp_path / "m.onnx"), "--no-check", "--opset", "17"]) == 0
    assert seen == [("vae-rotated", tmp_path / "m.onnx", 17, False)]
    assert json.loads(capsys.readouterr().out) == {"model": "vae-rotated"}


# ---------------------------------------------------------------------------------------------
# Bad inputs: clear errors
# ---------------------------------------------------------------------------------------------
def test_export_rejects_what_is_not_a_vae(tmp_path):
    with pytest.raises(TypeError, match="expected an avae_tutorial.VAE"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "m.onnx")


def test_export_rejects_an_opset_without_gridsample(tiny_vae, tmp_path):
    with pytest.raises(ValueError, match="opset"):
        export_onnx(tiny_vae, tmp_path / "m.onnx", opset=13)


def test_export_wants_an_onnx_file_name(tiny_vae, tmp_path):
    with pytest.raises(ValueError, match=r"\.onnx"):
        export_onnx(tiny_vae, tmp_path / "m.pt", check=False)


def test_export_refuses_weights_that_differ_from_the_manifest(tmp_path, monkeypatch):
    real = pretrained.manifest()
    entry = {**real["models"]["vae-upright"], "sha256": "0" * 64}
    monkeypatch.setattr(pretrained, "manifest", lambda: {**real, "models": {**real["models"], "vae-upright": entry}})
    with pytest.raises(ValueError, match="does not match the manifest"):
        export_model("vae-upright", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_cli_reports_unknown_models_and_missing_packages(tmp_path, capsys, monkeypatch):
    assert main(["export-onnx", "vae-sideways", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "unknown pretrained model 'vae-sideways'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if it were not installed
    assert main(["export-onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "pip install" in capsys.readouterr().err


def test_running_the_graph_checks_its_inputs(exported, turned, tmp_path):
    session = exported[1]
    x, A = turned
    with pytest.raises(ValueError, match="40x40"):
        onnx_loss(session, torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"\(B, 2, 3\)"):
        onnx_loss(session, x[:2], torch.zeros(2, 3, 3))
    with pytest.raises(ValueError, match="expected 2 matrices"):
        onnx_loss(session, x[:2], A[:3])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        onnx_loss(session, x[:2] * 255)
    with pytest.raises(FileNotFoundError, match="export-onnx"):
        onnx_session(tmp_path / "none.onnx")


def test_write_digits_rejects_a_bad_count(tmp_path):
    with pytest.raises(ValueError, match="n_per_class"):
        write_digits(tmp_path / "d.json", n_per_class=0)
