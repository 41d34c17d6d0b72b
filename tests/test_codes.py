"""The code at the pose a model reads each image in (training/codes.py), and codes.npz's round trip."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.lessons.latent import codes_at
from avae_tutorial.training.codes import encode_at_pose, encoded, searched_codes, turns
from avae_tutorial.training.peer import AmortizedVAE, peer_encode

pytestmark = pytest.mark.usefixtures("single_thread")


def test_turns_are_seeded_uniform_or_normal():
    u, n = turns(4000, "uniform", seed=1), turns(4000, "normal", spread_deg=45.0, seed=1)
    assert torch.equal(u, turns(4000, "uniform", seed=1)) and float(u.min()) >= -math.pi and float(u.max()) < math.pi
    assert abs(math.degrees(float(n.std())) - 45.0) < 2.0 and abs(float(u.mean())) < 0.1
    with pytest.raises(ValueError, match="unknown kind"):
        turns(3, "vonmises")


def test_encode_at_pose_is_the_code_at_the_pose_found(tiny_vae, digits):
    x = digits[0][:6]
    found = encode_at_pose(tiny_vae, x, config="fast")
    res = avae.align(tiny_vae, x, "rotation", "fast")
    torch.testing.assert_close(found.angle, res.angle)
    torch.testing.assert_close(found.mu, codes_at(tiny_vae, x, res.angle), atol=1e-4, rtol=1e-4)
    assert found.passes == float(res.passes.float().mean()) and found.seconds > 0
    plain = encode_at_pose(tiny_vae, x, search=False)
    assert plain.passes == 1.0 and float(plain.angle.abs().max()) == 0.0
    torch.testing.assert_close(plain.loss, res.loss0, atol=1e-3, rtol=1e-5)
    torch.manual_seed(0)
    peer = AmortizedVAE(2, 28).eval()
    own = encode_at_pose(peer, x)
    assert own.passes == 1.0
    torch.testing.assert_close(own.angle, peer_encode(peer, x)[1])


def test_searched_codes_round_trip_through_npz(tiny_vae, digits, tmp_path):
    x = digits[0][:4]
    arrays = searched_codes(lambda name: tiny_vae, x, seed=3, config="fast", models=("m",))
    assert sorted(k for k in arrays if k.startswith("turn/")) == ["turn/normal", "turn/uniform"]
    np.savez_compressed(tmp_path / "c.npz", **arrays)
    with np.load(tmp_path / "c.npz") as f:
        back = {k: f[k] for k in f.files}
    e = encoded(back, "m", "uniform")
    assert e.mu.shape == (4, 2) and e.angle.shape == e.loss.shape == (4,) and e.passes >= 1
    xr = avae.warp(x, avae.rotation(torch.as_tensor(back["turn/uniform"])))
    torch.testing.assert_close(e.angle, avae.align(tiny_vae, xr, "rotation", "fast").angle)
    with pytest.raises(ValueError, match="no codes for 'm/sideways'; available: m/none, m/normal, m/uniform"):
        encoded(back, "m", "sideways")
