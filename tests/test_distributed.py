"""Several processes (torchrun, Gloo on the CPU) give what one process gives.

The runs start two processes of ``distributed_worker.py`` with ``torchrun``; the references
run here, in one process, with the same settings.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import avae_tutorial as avae
import distributed_worker as worker
from avae_tutorial.training import train as train_mod
from avae_tutorial.training.checkpoint import load_checkpoint, model_from_checkpoint
from avae_tutorial.tools.cli import main
from avae_tutorial.training.distributed import (GlobalBatchNorm, GlobalBatchSampler, backend_for, data_parallel, gather_rows,
                                      global_mean, shard, shard_chunks)
from avae_tutorial.data.images import save_images

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[1]


def torchrun(job: str, out: Path, n: int = 2, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           str(Path(worker.__file__)), job, str(out)]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=out)


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """The worker's results on two processes, and its folder (with the checkpoint ``ddp.pt``)."""
    out = tmp_path_factory.mktemp("ddp")
    names = [f"img{i:02d}.png" for i in range(64)]
    save_images(worker.images(), [out / "images" / name for name in names])
    (out / "images" / "img32_bad.png").write_bytes(b"not a png")  # sorted among rank 1's share
    run = torchrun("run", out)
    assert run.returncode == 0, run.stdout + run.stderr
    return torch.load(out / "result.pt", weights_only=False), out


@pytest.fixture(scope="module")
def one():
    """The same epoch in this one process: ``(vae, history, images of each batch)``."""
    seen = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_mod, "_training_loss", worker.recording_loss(seen))
        vae, hist = avae.fit(worker.config(), worker.train_data(), progress=False)
    return vae, hist, seen


# ---------------------------------------------------------------- without processes
@pytest.mark.parametrize("n", [0, 1, 7, 64])
def test_shards_cover_the_rows_in_order(n):
    for size in (1, 2, 3, 5):
        rows = [i for r in range(size) for i in range(n)[shard(n, r, size)]]
        assert rows == list(range(n))


def test_sampler_slices_the_batches_of_one_process():
    one = GlobalBatchSampler(37, 8, seed=4)
    for size in (2, 3):
        ranks = [GlobalBatchSampler(37, 8, seed=4, rank=r, world_size=size) for r in range(size)]
        for epoch in (0, 3):
            for s in [one, *ranks]:
                s.set_epoch(epoch)
            joined = [sum(parts, []) for parts in zip(*ranks)]
            assert joined == list(one)
    assert len(one) == 5 and [one.global_batch(b) for b in range(5)] == [8, 8, 8, 8, 5]
    a, b = list(GlobalBatchSampler(37, 8, seed=4)), list(GlobalBatchSampler(37, 8, seed=5))
    assert a != b and sorted(sum(a, [])) == list(range(37))
    loader = torch.utils.data.DataLoader(torch.arange(37.0), batch_sampler=ranks[1])  # an ordinary batch sampler
    assert [t.long().tolist() for t in loader] == list(ranks[1])
    with pytest.raises(ValueError, match="batch_size"):
        GlobalBatchSampler(37, 0)


def test_chunks_are_shared_so_that_batches_line_up():
    idx = list(range(10, 33))  # 23 indices in chunks of 8 (rounded up to 9 for 3 ranks)
    shares = [shard_chunks(idx, 8, r, 3) for r in range(3)]
    assert all(per == 3 and n == 3 for _, per, n in shares)
    batches = [[mine[s : s + 3] for s in range(0, len(mine), 3)] for mine, _, _ in shares]
    joined = [sum((b[k] for b in batches if k < len(b)), []) for k in range(3)]
    assert joined == [idx[0:9], idx[9:18], idx[18:23]]
    assert shard_chunks(idx, 8) == (idx, 8, 3)  # one process: the chunks themselves


def test_one_process_is_the_plain_path():
    t = torch.arange(6.0)
    assert gather_rows(t, 6) is t
    assert global_mean(t, 99) == t.mean()
    torch.manual_seed(0)
    vae = avae.VAE(latent_dim=2, canvas=28).train()
    step = data_parallel(vae, lambda m, x: avae.avae_loss(m, x))
    x = worker.images()[:8]
    assert torch.equal(step(x), avae.avae_loss(vae, x))  # no DDP, no twin
    assert backend_for("cpu") == "gloo" and backend_for("cuda:1") == "cpu:gloo,cuda:nccl"


def test_global_batchnorm_without_a_group_is_the_batchnorm():
    bn = torch.nn.BatchNorm2d(3).train()
    x = torch.randn(4, 3, 5, 5)
    assert torch.equal(GlobalBatchNorm(bn)(x), torch.nn.BatchNorm2d(3).train()(x))
    assert bn.num_batches_tracked == 1


# ---------------------------------------------------------------- two processes (torchrun)
def test_uneven_shares_are_gathered_without_their_padding(two):
    """7 rows over 2 processes (4 and 3): the gathered rows are the 7, in order, on every rank; the
    padding that all_gather needs is trimmed (booleans too, which travel as bytes)."""
    rows = torch.arange(worker.GATHER_N * 2, dtype=torch.float32).view(worker.GATHER_N, 2)
    got = two[0]["gathered"]
    assert [len(range(worker.GATHER_N)[shard(worker.GATHER_N, r, 2)]) for r in range(2)] == [4, 3]
    assert torch.equal(got["float"], rows)
    assert got["bool"].dtype == torch.bool and torch.equal(got["bool"], rows[:, 0] % 3 == 0)


def test_alignment_on_two_processes_equals_one(two):
    """An odd number of images (8 on one process, 7 on the other) aligns as in one process."""
    res2 = two[0]["align"]
    res1 = avae.align(worker.vae(), worker.images()[: worker.ALIGN_N], "rotation", worker.SEARCH, progress=False)
    assert two[0]["size"] == 2 and len(res2.loss) == worker.ALIGN_N == 15
    for name in ("A", "loss", "params", "loss0", "angle"):
        assert torch.equal(getattr(res2, name), getattr(res1, name)), name


def test_training_sees_the_same_global_batches(two, one):
    per_rank = two[0]["batches"]  # rank -> [batch -> image sums]
    joined = [torch.cat(parts) for parts in zip(*per_rank)]
    assert [len(b) for b in joined] == [16, 16, 3] and [len(b) for b in per_rank[1]] == [8, 8, 1]
    for b2, b1 in zip(joined, one[2], strict=True):
        torch.testing.assert_close(b2, b1, rtol=1e-5, atol=1e-4)  # each rank rotates its slice itself


def pre_norm_biases(state: dict) -> set[str]:
    """The biases of the convolutions that a BatchNorm follows, and those BatchNorms' running means.

    In training BatchNorm subtracts each channel's batch mean, so these biases change nothing:
    their gradient is zero but for rounding, and Adam, which divides by the gradient's own scale,
    turns that rounding into steps of ``lr``. One process on 1 and on 2 threads differs there as
    much as 1 and 2 processes do (1e-2 relative after 3 steps), so they are left out; the
    running means follow them.
    """
    means = {k for k in state if k.endswith(".1.running_mean")}  # blocks (conv, BatchNorm, ELU)
    return means | {k.replace(".1.running_mean", ".0.bias") for k in means}


def test_training_on_two_processes_matches_one(two, one):
    state2, state1 = two[0]["state"], one[0].state_dict()
    skip = pre_norm_biases(state1)
    assert len(skip) == 14  # 7 conv-BatchNorm blocks
    rel = {}
    for name, p1 in state1.items():
        if not p1.is_floating_point():
            assert torch.equal(state2[name], p1), name  # BatchNorm's batch counts
        elif name not in skip:
            rel[name] = float((state2[name] - p1).norm() / p1.norm().clamp_min(1e-12))
    worst = max(rel, key=rel.get)
    assert rel[worst] < 1e-4, f"{worst}: relative difference {rel[worst]:.2e}"
    h1, h2 = one[1], two[0]["history"]
    assert math.isclose(h2["train_loss"][0], h1["train_loss"][0], rel_tol=1e-5)
    torch.testing.assert_close(h2["orientation"], h1["orientation"], rtol=0, atol=1e-3)


def test_a_ddp_checkpoint_loads_and_aligns_in_one_process(two):
    ckpt = load_checkpoint(two[1] / "ddp.pt")
    vae = model_from_checkpoint(ckpt)
    assert ckpt["epoch"] == 1 and ckpt["history"]["epoch"] == [1]
    for name, t in two[0]["state"].items():
        assert torch.equal(vae.state_dict()[name], t), name
    res = avae.align(vae, worker.images()[:8], "rotation", worker.SEARCH, progress=False)
    assert (res.loss <= res.loss0).all() and torch.isfinite(res.loss).all()


def test_align_images_on_two_processes_writes_the_same_csv(two, tmp_path):
    out = two[1]
    one_csv = tmp_path / "one.csv"
    assert main(["align", str(out / "ddp.pt"), "--images", str(out / "images"), "--out", str(one_csv),
                 *worker.ALIGN_ARGS]) == 0  # fmt: skip
    text = (out / "poses.csv").read_text()
    assert text == one_csv.read_text()
    assert len(text.splitlines()) == 1 + 64 and "img32_bad" not in text


def test_a_failing_process_stops_the_others_and_is_named(tmp_path):
    t0 = time.perf_counter()
    run = torchrun("fail", tmp_path)
    assert run.returncode != 0
    assert "error on rank 1 of 2: checkpoint" in run.stderr and "does not exist" in run.stderr, run.stderr
    assert time.perf_counter() - t0 < 60  # rank 0 did not wait for its lost partner
    root = run.stderr.partition("Root Cause")[2]  # torchrun's summary: rank 1's error file, not "To enable traceback"
    assert "rank      : 1" in root and "FileNotFoundError: checkpoint" in root, run.stderr


LOST = RuntimeError("[gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:41660. This is typically "
                    "caused by a remote worker crashing.")  # fmt: skip


def test_a_lost_partner_is_named_with_what_to_do():
    from avae_tutorial.training.distributed import failure_line

    line = failure_line(LOST, " on rank 0 of 2")
    assert line.startswith("error on rank 0 of 2: RuntimeError: [gloo/transport/tcp/pair.cc:561] Connection closed")
    assert "another process stopped first" in line and "Run the same command again" in line
    other = failure_line(KeyError("x"), " on rank 1 of 2")
    assert other == "error on rank 1 of 2: KeyError: 'x'"  # not a lost partner: no advice about one


def test_cli_under_torchrun_names_the_process_and_writes_torchruns_error_file(monkeypatch, capsys, tmp_path):
    """Any error that stops a process of a torchrun job ends in one line naming the process (exit 1),
    and goes to torchrun's error file; in one process the traceback is Python's own, as ever."""
    import json

    from avae_tutorial.tools import cli
    from avae_tutorial.training import distributed

    def lost(args):
        raise LOST

    monkeypatch.setattr(cli, "cmd_evaluate", lost)
    with pytest.raises(RuntimeError, match="closed by peer"):
        main(["evaluate", "vae-upright"])
    monkeypatch.setattr(distributed, "world", lambda: (1, 2))
    error_file = tmp_path / "error.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(error_file))
    assert main(["evaluate", "vae-upright"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "error on rank 1 of 2: RuntimeError: [gloo" in err and "stopped first" in err
    assert "Connection closed by peer" in json.loads(error_file.read_text())["message"]["message"]


def test_a_clean_finish_leaves_the_group_together(monkeypatch):
    """leave(clean=True) waits for every process (a barrier) before leaving the group; after a
    failure it leaves at once; the group is left even when the barrier fails."""
    import torch.distributed as dist

    from avae_tutorial.tools import commands

    calls = []

    def barrier():
        calls.append("barrier")
        if fail:
            raise LOST

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "destroy_process_group", lambda: calls.append("destroy"))
    monkeypatch.setattr(dist, "barrier", barrier)
    for clean, fail, want in ((True, False, ["barrier", "destroy"]), (False, False, ["destroy"]),
                              (True, True, ["barrier", "destroy"])):  # fmt: skip
        calls.clear()
        a = argparse.Namespace(joined_group=True)  # the command joined the group
        if fail:
            with pytest.raises(RuntimeError, match="closed by peer"):
                commands.leave(a, clean=clean)
        else:
            commands.leave(a, clean=clean)
        assert calls == want and not a.joined_group
