"""The pose net: its outputs, its half-turn head, and the round trip through a checkpoint."""
from __future__ import annotations

import math

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.training.checkpoint import checkpoint_dict, model_from_checkpoint
from avae_tutorial.pose import PoseNet
from avae_tutorial.transforms import wrap_angle

pytestmark = pytest.mark.usefixtures("single_thread")


def test_half_turn_head_reads_the_axis_on_the_side_the_plain_head_prefers(digits):
    torch.manual_seed(0)
    pose = PoseNet(28, width=4, half_turn=True).eval()
    x = digits[0][:6]
    with torch.no_grad():
        out, angle = pose.outputs(x), pose(x)
    assert out.shape == (6, 4) and pose.vector(x).shape == (6, 2)
    side = torch.atan2(out[:, 1], out[:, 0])
    axis = 0.5 * torch.atan2(out[:, 3], out[:, 2])
    # the angle is the axis or the axis + pi, whichever is nearer the plain head's angle
    assert torch.allclose(torch.cos(2 * angle), torch.cos(2 * axis), atol=1e-5)
    assert (torch.cos(angle - side) >= -1e-6).all()
    plain = PoseNet(28, width=4)
    assert plain.outputs(x).shape == (6, 2) and "half_turn" not in plain.config
    with pytest.raises(ValueError, match="half_turn"):
        PoseNet(28, half_turn=1)


def test_a_half_turn_pose_net_survives_a_checkpoint(tiny_vae, digits):
    tiny_vae.pose_net = PoseNet(28, width=4, half_turn=True).eval()
    again = model_from_checkpoint(checkpoint_dict(tiny_vae))
    assert again.pose_net.half_turn
    x = digits[0][:3]
    with torch.no_grad():
        assert torch.equal(again.pose_net.outputs(x), tiny_vae.pose_net.outputs(x))


def test_fit_pose_net_learns_both_heads(template_vae, seven):
    """On the stub whose answer is known, a half-turn net trained briefly predicts the answer's axis."""
    pose = avae.pose.fit_pose_net(template_vae, seven.expand(8, -1, -1, -1).contiguous(), epochs=3, batch_size=8,
                                  half_turn=True, width=4)  # fmt: skip
    assert pose.half_turn and not pose.training
    with torch.no_grad():
        assert torch.isfinite(pose.outputs(seven)).all() and -math.pi <= float(pose(seven)) <= 2 * math.pi


def _two_bumps(mu: torch.Tensor, weight: torch.Tensor, K: int = 36, kappa: float = 20.0) -> torch.Tensor:
    """Logits ``(B, K)`` of a mixture of von Mises bumps at ``mu (B, J)`` radians with ``weight (B, J)``."""
    centers = torch.arange(K) * (2 * math.pi / K)
    bumps = weight[:, :, None] * torch.exp(kappa * (torch.cos(centers - mu[:, :, None]) - 1))
    return bumps.sum(1).clamp_min(1e-30).log()


def test_bin_peaks_reads_the_best_peaks_between_bins_and_fills_a_missing_one():
    mu = torch.tensor([[math.radians(52.0), math.radians(233.0)], [math.radians(301.0), math.radians(301.0)]])
    logits = _two_bumps(mu, torch.tensor([[0.3, 1.0], [1.0, 1.0]]))
    angle, mass = avae.pose.bin_peaks(logits, 2)
    assert angle.shape == mass.shape == (2, 2)
    deg = torch.rad2deg(angle)
    # the heavier bump first, each read within a degree although the bins are 10 degrees apart
    assert abs(deg[0, 0] - 233.0) < 1.0 and abs(deg[0, 1] - 52.0) < 1.0, deg
    assert mass[0, 0] > mass[0, 1] > 0.1 and (mass <= 1.0 + 1e-6).all()
    # one bump only: the second guess is half a turn from the first, with no mass
    assert abs(deg[1, 0] - 301.0) < 1.0 and abs(deg[1, 1] - 121.0) < 1.0 and mass[1, 1] == 0, deg
    with pytest.raises(ValueError, match="at most the 36 bins"):
        avae.pose.bin_peaks(logits, 37)


def test_a_bins_pose_net_guesses_its_best_peak_and_survives_a_checkpoint(tiny_vae, digits):
    torch.manual_seed(0)
    pose = PoseNet(28, width=4, bins=24).eval()
    x = digits[0][:5]
    with torch.no_grad():
        out, angle = pose.outputs(x), pose(x)
        first, mass = pose.peaks(x, 3)
        vec = pose.vector(x)
    assert out.shape == (5, 24) and pose.bins == 24 and not pose.half_turn
    torch.testing.assert_close(angle, first[:, 0])
    torch.testing.assert_close(vec.norm(dim=1), mass[:, 0])
    tiny_vae.pose_net = pose
    again = model_from_checkpoint(checkpoint_dict(tiny_vae))
    assert again.pose_net.bins == 24
    with torch.no_grad():
        assert torch.equal(again.pose_net.outputs(x), out)
    with pytest.raises(ValueError, match="half_turn=False"):
        PoseNet(28, bins=24, half_turn=True)
    with pytest.raises(ValueError, match="bins"):
        PoseNet(28, bins=2)
    with pytest.raises(ValueError, match="bins"):
        PoseNet(28, width=4).peaks(x)


def test_fit_pose_net_with_bins_learns_where_the_answer_is(template_vae, seven):
    """On the stub whose answer is known (undo the turn), a bins net trained on one digit puts its
    best peak near the answer for that digit turned by angles it was not trained on."""
    x = seven.expand(32, -1, -1, -1).contiguous()
    pose = avae.pose.fit_pose_net(template_vae, x, epochs=40, batch_size=32, lr=1e-2, bins=36, width=8)
    assert pose.bins == 36 and not pose.training
    turns = torch.tensor([-2.0, -0.7, 0.4, 1.9])
    with torch.no_grad():
        got = pose(avae.warp(seven.expand(4, -1, -1, -1), avae.rotation(turns)))
    err = torch.rad2deg(wrap_angle(got - (-turns)).abs())
    assert (err < 25.0).all(), err
