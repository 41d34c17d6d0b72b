"""The GPU check (``python -m avae_tutorial bench-gpu``) at a tiny size on the CPU: the same code as
on a GPU; its JSON's keys, and passes and host reads counted, not estimated."""
from __future__ import annotations

import json
import math

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.data import mnist as data
from avae_tutorial.align import search_cost
from avae_tutorial.training.checkpoint import checkpoint_dict
from avae_tutorial.tools.cli import main
from avae_tutorial.tools.gpu_check import GpuCheckConfig, format_gpu_check, gpu_check
from avae_tutorial.training.train import search_config

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = GpuCheckConfig(n=6, train_n=16, epochs=2, batch_size=8, test_n=4, count_steps=1)


@pytest.fixture(scope="module")
def tiny_check():
    x, _ = avae.data.mnist.synthetic_digits(26, canvas=28, seed=3)
    torch.manual_seed(0)
    vae = avae.VAE(latent_dim=2, canvas=28).eval()
    return gpu_check(vae, x[:10], x[10:], TINY)


def test_json_has_the_device_and_every_job(tiny_check):
    out = json.loads(json.dumps(tiny_check))  # all of it serializable
    assert out["device_name"] == out["conditions"]["device_name"] and out["device_name"]
    c = out["conditions"]
    assert c["device"] == "cpu" and isinstance(c["cpu_flags"], list)
    assert c["auto_precision"] == "float32" and c["bfloat16_switch"] == "off"  # the tests' precision
    assert [r["preset"] for r in out["align"]] == ["default", "fast"]
    for r in out["align"]:
        assert {"ms_per_image", "passes_per_image", "peak_mib", "host_reads", "host_reads_by_op", "loss", "loss0",
                "scoring"} <= set(r)  # fmt: skip
        assert r["n"] == TINY.n and r["ms_per_image"] > 0 and math.isfinite(r["loss"]) and r["loss"] <= r["loss0"] + 1e-4
        assert r["ms_per_image"] == pytest.approx(1e3 * r["seconds"] / r["n"])
    assert [r["regime"] for r in out["training"]] == ["rotated", "aligned"]
    for r in out["training"]:
        assert len(r["seconds_per_epoch"]) == len(r["ms_per_image"]) == len(r["passes_per_image"]) == TINY.epochs
        assert all(t > 0 for t in r["ms_per_image"]) and "peak_mib" in r and r["n"] == TINY.train_n
    assert out["seconds_total"] > 0
    text = format_gpu_check(tiny_check)
    for word in ("align 'default'", "align 'fast'", "rotated epoch", "aligned epoch", "host reads", c["cpu"]):
        assert word in text


def test_passes_are_counted_as_the_searches_ran(tiny_check):
    """No pose net, float32: every image costs exactly what the preset's search costs; the aligned
    epochs spend the cold search, then the warm-started one (last orientation +- span, the online
    pose net's guess); the plain epoch none."""
    default, fast = tiny_check["align"]
    for row in (default, fast):
        want = search_cost(avae.preset("rotation", row["preset"]))
        assert row["passes_per_image"] == row["passes_min"] == row["passes_max"] == want
    plain, aligned = tiny_check["training"]
    assert plain["passes_per_image"] == [0.0, 0.0]
    cfg = avae.TrainConfig("aligned")
    assert aligned["passes_per_image"] == [search_cost(search_config(cfg, warm=False)),
                                           search_cost(search_config(cfg, warm=True), n_init=1 + cfg.pose_online)]  # fmt: skip


def test_host_reads_are_counted(tiny_check):
    """Each job's reads are counted (HostReads): a whole number, the sum of those by operator, and a
    training run reads its loss at least once per step."""
    for r in tiny_check["align"] + tiny_check["training"]:
        assert isinstance(r["host_reads"], int) and r["host_reads"] == sum(r["host_reads_by_op"].values())
    for r in tiny_check["training"]:
        assert r["host_reads_steps"] == TINY.count_steps and r["host_reads"] >= r["host_reads_steps"]


def test_bad_sizes_are_refused():
    for bad in (dict(n=0), dict(train_n=-1), dict(train_n=1), dict(epochs=0)):
        with pytest.raises(ValueError):
            GpuCheckConfig(**bad)
    x, _ = avae.data.mnist.synthetic_digits(4, canvas=28, seed=0)
    with pytest.raises(ValueError, match="x_test: expected at least n=8 digits, got 4"):
        gpu_check(avae.VAE(2, 28), x, None, GpuCheckConfig(n=8, train_n=0))


def test_command_line_writes_the_json(tmp_path, monkeypatch, capsys):
    def fake(split="test", canvas=40, limit=None, root=None):
        x, y = avae.data.mnist.synthetic_digits(16, canvas=canvas, seed=int(split == "test"))
        return (x[:limit], y[:limit]) if limit else (x, y)

    monkeypatch.setattr(data, "load_mnist", fake)
    ckpt = tmp_path / "m.pt"
    avae.training.checkpoint.save_checkpoint(checkpoint_dict(avae.VAE(2, 28)), ckpt)
    out = tmp_path / "gpu.json"
    code = main(["bench-gpu", "--model", str(ckpt), "--device", "cpu", "--n", "4", "--train-n", "0", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    got = json.loads(out.read_text())
    assert got["config"]["model"] == str(ckpt) and [r["n"] for r in got["align"]] == [4, 4] and "training" not in got
    assert main(["bench-gpu", "--model", str(ckpt), "--device", "cpu", "--n", "99", "--train-n", "0",
                 "--out", str(out)]) == 2  # fmt: skip
    assert "--n 99: the MNIST test set has only 16 digits" in capsys.readouterr().err
