"""The pose net: its outputs, its half-turn head, and the round trip through a checkpoint."""
from __future__ import annotations

import math

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.training.checkpoint import checkpoint_dict, model_from_checkpoint
from avae_tutorial.pose import PoseNet

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
