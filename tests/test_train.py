"""Training: every regime runs, the history is complete, resuming is bit-exact, NaNs stop it cleanly."""
from __future__ import annotations

import math
from dataclasses import asdict

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.align import search_cost
from avae_tutorial.training import train as train_mod
from avae_tutorial.training.checkpoint import load_checkpoint, model_from_checkpoint
from avae_tutorial.model import for_inference

pytestmark = pytest.mark.usefixtures("single_thread")

N, BATCH = 24, 8  # 3 batches per epoch


def tiny_config(regime: str, epochs: int = 1, **kw) -> avae.TrainConfig:
    align = {"restarts": 4, "top_k": 1, "steps": 1, "lr": 0.1}
    return avae.TrainConfig(regime, latent_dim=2, canvas=28, epochs=epochs, batch_size=BATCH, test_limit=8,
                            seed=kw.pop("seed", 0), align=align, **kw)  # fmt: skip


@pytest.fixture(scope="module")
def data():
    return avae.data.mnist.synthetic_digits(N, canvas=28, seed=3)


@pytest.fixture(scope="module")
def fitted(data):
    """``fitted(regime, epochs=1, **kw)``: ``fit(tiny_config(...), data)``'s ``(vae, history)``, trained
    once per config for the module's tests (training is seeded: the same config gives the same
    model). Shared: read them, never change them. Tests that watch ``fit`` from inside (a spy, an
    interruption) or need a second, independent run train their own."""
    runs = {}

    def get(regime: str, epochs: int = 1, **kw):
        key = (regime, epochs, tuple(sorted(kw.items())))
        if key not in runs:
            runs[key] = avae.fit(tiny_config(regime, epochs, **kw), data, progress=False)
        return runs[key]

    return get


class Interrupt(Exception):
    pass


def count_batches(monkeypatch, on_batch=None):
    """Wrap the per-batch training loss; ``on_batch(k, loss)`` (k counts from 1) may raise or edit it."""
    calls = []
    real = train_mod._avae_loss

    def wrapped(vae, x, A=None, sample=False):
        loss = real(vae, x, A, sample=sample)
        if sample:  # the SGD steps; the per-epoch test loss uses z = mu
            calls.append(len(x))
            if on_batch is not None:
                loss = on_batch(len(calls), loss)
        return loss

    monkeypatch.setattr(train_mod, "_avae_loss", wrapped)
    return calls


@pytest.mark.parametrize("regime", avae.training.train.REGIMES)
def test_each_regime_runs_an_epoch(regime, data, monkeypatch):
    calls = count_batches(monkeypatch)
    vae, hist = avae.fit(tiny_config(regime), data, progress=False)
    assert calls == [8, 8, 8]
    assert not vae.training and vae.latent_dim == 2 and vae.canvas == 28
    assert hist["epoch"] == [1] and len(hist["train_loss"]) == len(hist["test_loss"]) == len(hist["seconds"]) == 1
    assert all(math.isfinite(v) and v > 0 for v in hist["train_loss"] + hist["test_loss"])
    assert ("orientation" in hist) == (regime == "aligned")


def test_aligned_history_records_orientation_per_epoch(data, fitted):
    _, hist = fitted("aligned", 2)
    orient = hist["orientation"]
    assert orient.shape == (2, N) and orient.dtype == torch.float32
    assert (orient >= -math.pi).all() and (orient < math.pi).all()
    assert torch.equal(hist["labels"], data[1])
    angles = train_mod.epoch_angles(N, 0, 0)  # the perturbation of epoch 1
    assert not torch.allclose(orient[0], avae.transforms.wrap_angle(angles))  # corrections were applied


def test_training_lowers_the_loss(fitted):
    _, hist = fitted("upright", 3, lr=3e-3)
    assert hist["train_loss"][-1] < hist["train_loss"][0]


def test_same_seed_same_weights_other_seed_other_weights(data, fitted):
    a, _ = fitted("rotated")
    b, _ = avae.fit(tiny_config("rotated"), data, progress=False)  # a second, independent run
    c, _ = fitted("rotated", seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.to_mu.weight, c.to_mu.weight)


@pytest.mark.parametrize("regime", ["rotated", "aligned"])
def test_resume_after_an_interruption_is_bitwise_identical(regime, data, fitted, tmp_path, monkeypatch):
    cfg = tiny_config(regime, epochs=2)
    ref, ref_hist = fitted(regime, 2)  # uninterrupted

    def interrupt(k, loss):  # epoch 2, batch 2 (the 5th SGD step)
        if k == 5:
            raise Interrupt
        return loss

    path = tmp_path / "run.pt"
    count_batches(monkeypatch, interrupt)
    with pytest.raises(Interrupt):
        avae.fit(cfg, data, checkpoint=path, progress=False)
    assert load_checkpoint(path)["epoch"] == 1  # the checkpoint of the last finished epoch
    calls = count_batches(monkeypatch)
    vae, hist = avae.fit(cfg, data, checkpoint=path, progress=False)
    assert len(calls) == 3  # epoch 2 only: it resumed, it did not start over
    for (k, v), w in zip(ref.state_dict().items(), vae.state_dict().values()):
        assert torch.equal(v, w), f"{k} differs after resuming"
    assert hist["train_loss"] == ref_hist["train_loss"] and hist["test_loss"] == ref_hist["test_loss"]
    if regime == "aligned":
        assert torch.equal(hist["orientation"], ref_hist["orientation"])
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 2 and all(torch.equal(v, ckpt["model"][k]) for k, v in ref.state_dict().items())


def test_a_finished_checkpoint_is_not_retrained(data, tmp_path, monkeypatch):
    cfg = tiny_config("upright")
    avae.fit(cfg, data, checkpoint=tmp_path / "m.pt", progress=False)
    calls = count_batches(monkeypatch)
    avae.fit(cfg, data, checkpoint=tmp_path / "m.pt", progress=False)
    assert calls == []
    avae.fit(cfg, data, checkpoint=tmp_path / "m.pt", resume=False, progress=False)
    assert len(calls) == 3


def test_nan_loss_stops_with_epoch_and_batch_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    count_batches(monkeypatch, lambda k, loss: loss * float("nan") if k == 6 else loss)  # epoch 2, batch 3
    with pytest.raises(FloatingPointError, match=r"at epoch 2, batch 3; the last good checkpoint is kept at .*m\.pt"):
        avae.fit(tiny_config("upright", epochs=3), data, checkpoint=path, progress=False)
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 1 and ckpt["history"]["epoch"] == [1]
    vae = model_from_checkpoint(ckpt)
    assert all(torch.isfinite(p).all() for p in vae.state_dict().values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_inf_loss_without_a_checkpoint_says_so(data, monkeypatch):
    count_batches(monkeypatch, lambda k, loss: loss + float("inf"))
    with pytest.raises(FloatingPointError, match="at epoch 1, batch 1; no checkpoint was asked for"):
        avae.fit(tiny_config("upright"), data, progress=False)


def test_resuming_with_another_config_is_refused_clearly(data, tmp_path):
    avae.fit(tiny_config("upright"), data, checkpoint=tmp_path / "m.pt", progress=False)
    with pytest.raises(ValueError, match=r"written by another config.*'lr': \(0\.001, 0\.002\).*resume=False"):
        avae.fit(tiny_config("upright", lr=2e-3), data, checkpoint=tmp_path / "m.pt", progress=False)


def test_evaluation_angles_are_seeded():
    a = train_mod.evaluation_angles(5, 1)
    assert torch.equal(a, train_mod.evaluation_angles(5, 1)) and not torch.equal(a, train_mod.evaluation_angles(5, 2))
    assert (a >= 0).all() and (a < 2 * math.pi).all()


def test_search_batch_is_cold_without_a_last_orientation_and_warm_with_one(data, monkeypatch):
    """Epoch 1 searches with ``align``; later epochs with ``align_warm``, started at the last orientation."""
    seen = []
    real = train_mod._align

    def spy(vae, x, family, config, init=None, **kw):
        seen.append((config, init))
        return real(vae, x, family, config, init=init, **kw)

    monkeypatch.setattr(train_mod, "_align", spy)
    cfg = tiny_config("aligned", align_warm={"restarts": 3, "top_k": 1, "steps": 1, "init_span": 0.2})
    vae = for_inference(avae.VAE(2, 28))
    xb = data[0][:BATCH]
    cold, cold_passes = train_mod.search_batch(vae, xb, None, cfg)
    last = torch.linspace(-3, 3, BATCH)
    warm, warm_passes = train_mod.search_batch(vae, xb, last, cfg)
    assert cold.shape == warm.shape == (BATCH,)
    assert (cold_passes == search_cost(seen[0][0])).all() and (warm_passes <= search_cost(seen[1][0], n_init=1)).all()
    assert seen[0][0].restarts == 4 and seen[0][1] is None
    # only the angles are used, so neither search spends float32 passes on exact losses
    assert seen[1][0] == avae.AlignConfig(restarts=3, top_k=1, steps=1, init_span=0.2, exact=False)
    assert not seen[0][0].exact
    assert torch.equal(seen[1][1], last[:, None, None])
    guess = last + 1.0  # the online pose net's guess joins as a second candidate
    train_mod.search_batch(vae, xb, last, cfg, guess)
    assert torch.equal(seen[2][1], torch.stack([last, guess], 1)[..., None])


def test_aligned_training_uses_the_warm_search_after_the_first_epoch(data, monkeypatch):
    configs = []
    real = train_mod.search_batch

    def spy(vae, xb, last, config, guess):
        configs.append((last is None, guess is None))
        return real(vae, xb, last, config, guess)

    monkeypatch.setattr(train_mod, "search_batch", spy)
    _, hist = avae.fit(tiny_config("aligned", epochs=2, **train_mod.training_search("warm")), data, progress=False)
    assert configs == [(True, True)] * 3 + [(False, True)] * 3  # warm from epoch 2; no pose net
    assert hist["passes"][1].float().mean() == 13  # a grid of 8, the last pose +- init_span, 2 steps
    configs.clear()
    _, hist = avae.fit(tiny_config("aligned", epochs=2), data, progress=False)  # the default: online
    assert configs == [(True, True)] * 3 + [(False, False)] * 3  # the online pose net's guess from epoch 2
    assert hist["passes"][1].float().mean() == 4  # the last pose +- init_span and the guess, nothing else


@pytest.mark.parametrize("bad", [{"restarts": -1}, {"nope": 1}, "fast"])
def test_a_bad_warm_search_config_is_refused(bad):
    with pytest.raises(ValueError, match="align_warm|restarts"):
        tiny_config("aligned", align_warm=bad)
