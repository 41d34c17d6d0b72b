"""Geometry: the warp convention against torch.rot90, hand-computed cases, inverses, composition, gradients."""
from __future__ import annotations

import math

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.transforms import to_homogeneous, wrap_angle

pytestmark = pytest.mark.usefixtures("single_thread")


def smooth_images(b: int = 3, size: int = 40, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """Low-frequency random images ``(b, 1, size, size)``: bilinear resampling is nearly exact on them."""
    g = torch.Generator().manual_seed(seed)
    c = torch.linspace(-1, 1, size, dtype=torch.float64)
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    out = torch.zeros(b, 1, size, size, dtype=torch.float64)
    for kx in range(3):
        for ky in range(3):
            a, p = torch.rand(b, 1, 1, 1, generator=g, dtype=torch.float64), torch.rand(b, 1, 1, 1, generator=g) * 6.3
            out += a * torch.cos(kx * xx + ky * yy + p)
    out = (out - out.amin((2, 3), keepdim=True)) / (out.amax((2, 3), keepdim=True) - out.amin((2, 3), keepdim=True))
    return out.to(dtype)


def disk(size: int, radius: float) -> torch.Tensor:
    """Boolean mask ``(size, size)`` of pixel centres within ``radius`` (normalized units) of the centre."""
    c = (torch.arange(size) + 0.5) / size * 2 - 1  # align_corners=False pixel centres
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return xx**2 + yy**2 <= radius**2


def rot(deg: float, b: int = 1, dtype=torch.float32) -> torch.Tensor:
    return avae.rotation(torch.full((b,), math.radians(deg), dtype=dtype))


# ---------------------------------------------------------------- the convention, pinned
@pytest.mark.parametrize("k", [1, 2, 3, -1])
def test_quarter_turns_match_rot90_on_a_square_image(k):
    x = torch.rand(2, 1, 5, 5, generator=torch.Generator().manual_seed(k % 4))
    out = avae.warp(x, rot(90 * k, b=2))
    torch.testing.assert_close(out, torch.rot90(x, k, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_half_turn_matches_rot90_on_a_non_square_image():
    x = torch.rand(1, 2, 3, 5, generator=torch.Generator().manual_seed(0))  # two channels, 3x5
    torch.testing.assert_close(avae.warp(x, rot(180)), torch.rot90(x, 2, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_quarter_turn_of_a_non_square_picture_on_a_square_canvas():
    x = torch.rand(1, 1, 2, 4, generator=torch.Generator().manual_seed(1))  # a 2x4 picture
    canvas = avae.data.mnist.pad_to_canvas(x, 4)  # rows 1-2 of a 4x4 canvas
    out = avae.warp(canvas, rot(90))
    torch.testing.assert_close(out[..., :, 1:3], torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5, rtol=0)
    assert out[..., :, [0, 3]].abs().max() < 1e-5  # nothing outside the turned picture


def test_hand_computed_4x4_quarter_turn_is_counter_clockwise():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # Counter-clockwise as displayed: the right column becomes the top row.
    expected = torch.tensor([[3, 7, 11, 15], [2, 6, 10, 14], [1, 5, 9, 13], [0, 4, 8, 12]], dtype=torch.float32)
    torch.testing.assert_close(avae.warp(x, rot(90))[0, 0], expected, atol=1e-4, rtol=0)


def test_identity_warp_is_exact():
    x = smooth_images(2, 9)
    torch.testing.assert_close(avae.warp(x, avae.transforms.identity(2)), x, atol=1e-6, rtol=0)


def test_rotation_by_two_pi_is_identity():
    x = smooth_images(2, 12)
    torch.testing.assert_close(rot(360, b=2), avae.transforms.identity(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(avae.warp(x, rot(360, b=2)), x, atol=1e-5, rtol=0)


def test_rotation_matrix_values():
    A = avae.rotation(torch.tensor([math.pi / 6]))
    c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
    torch.testing.assert_close(A, torch.tensor([[[c, -s, 0.0], [s, c, 0.0]]]))


# ---------------------------------------------------------------- inverses and composition
@pytest.mark.parametrize("deg", [17.0, -65.0, 90.0, 143.0])
def test_rotation_round_trip_inside_the_disk(deg):
    x = smooth_images(3, 40)
    A = rot(deg, b=3)
    back = avae.warp(avae.warp(x, A), avae.invert(A))
    inside = disk(40, 0.9)
    err = (back - x)[..., inside].abs().max()
    assert err < 0.02, f"round trip error {err:.4f} inside the disk"
    wrong = avae.warp(avae.warp(x, A), A)  # the tolerance is tight enough to catch a wrong inverse
    assert (wrong - x)[..., inside].abs().max() > 0.1


def test_affine_round_trip_inside_the_disk():
    x = smooth_images(2, 40)
    params = torch.tensor([[0.4, 0.3, 0.2, -0.15], [-1.2, -0.5, -0.1, 0.1]])
    A = avae.affine(params)
    back = avae.warp(avae.warp(x, A), avae.invert(A))
    assert (back - x)[..., disk(40, 0.5)].abs().max() < 0.03


def test_quarter_turn_round_trip_is_exact():
    x = torch.rand(2, 1, 6, 6)
    A = rot(90, b=2)
    torch.testing.assert_close(avae.warp(avae.warp(x, A), avae.invert(A)), x, atol=1e-5, rtol=0)


def test_invert_is_the_matrix_inverse():
    params = torch.tensor([[0.3, 0.2, 0.1, -0.2, 0.1, -0.05], [2.0, -0.4, -0.3, 0.2, 0.0, 0.2]])
    A = avae.affine(params)
    eye = to_homogeneous(A) @ to_homogeneous(avae.invert(A))
    torch.testing.assert_close(eye, torch.eye(3).expand(2, 3, 3), atol=1e-6, rtol=0)


def test_invert_of_a_singular_matrix_errors():
    A = torch.tensor([[[1.0, 2.0, 0.0], [2.0, 4.0, 0.3]], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    with pytest.raises(ValueError, match=r"singular affine matrix at batch index \[0\]"):
        avae.invert(A)


def test_compose_semantics_warp_then_warp():
    x = torch.rand(2, 1, 8, 8)
    A, B = rot(90, b=2), rot(180, b=2)  # quarter turns: warps are exact, so equality is exact
    torch.testing.assert_close(avae.warp(avae.warp(x, A), B), avae.warp(x, avae.transforms.compose(A, B)), atol=1e-5, rtol=0)
    torch.testing.assert_close(avae.warp(x, avae.transforms.compose(A, B)), torch.rot90(x, 3, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_compose_order_matters_for_general_affines():
    x = smooth_images(1, 40)
    A = avae.affine(torch.tensor([[0.3, 0.0, 0.3, 0.0]]))  # rotate + stretch x
    B = avae.affine(torch.tensor([[0.0, 0.4, 0.0, 0.0]]))  # shear
    two_steps = avae.warp(avae.warp(x, A), B)
    inside = disk(40, 0.5)
    assert (two_steps - avae.warp(x, avae.transforms.compose(A, B)))[..., inside].abs().max() < 0.03
    assert (two_steps - avae.warp(x, avae.transforms.compose(B, A)))[..., inside].abs().max() > 0.05


def test_rotations_add_under_compose():
    a, b = torch.tensor([0.3, -2.0]), torch.tensor([1.1, 0.7])
    torch.testing.assert_close(avae.transforms.compose(avae.rotation(a), avae.rotation(b)), avae.rotation(a + b), atol=1e-6, rtol=0)


def test_affine_parts_mean_what_the_docstring_says():
    # Pure rotation parameters equal rotation(); translation moves the picture right/down.
    angle = torch.tensor([0.7])
    torch.testing.assert_close(avae.affine(torch.tensor([[0.7, 0.0, 0.0, 0.0]])), avae.rotation(angle))
    x = torch.zeros(1, 1, 8, 8)
    x[..., 3:5, 1:3] = 1.0  # a blob left of centre
    moved = avae.warp(x, avae.affine(torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.5, 0.0]])))  # +0.5 = 2 pixels right
    torch.testing.assert_close(moved[..., 3:5, 3:5], torch.ones(1, 1, 2, 2), atol=1e-5, rtol=0)
    c = torch.arange(16.0) - 7.5
    blob = torch.exp(-(c[None, :] ** 2 + c[:, None] ** 2) / 4.0)[None, None]  # smooth, centred
    wider = avae.warp(blob, avae.affine(torch.tensor([[0.0, 0.0, math.log(2.0), 0.0]])))  # twice as wide
    assert 1.9 < float(wider.sum() / blob.sum()) < 2.1

    def spread(img, dim):  # second moment along x (dim=-1) or y (dim=-2)
        w = img.sum(dim=-2 if dim == -1 else -1).flatten()
        return float((w * c**2).sum() / w.sum())

    assert 3.6 < spread(wider, -1) / spread(blob, -1) < 4.4  # along x: twice as wide
    assert 0.95 < spread(wider, -2) / spread(blob, -2) < 1.05  # along y: unchanged


# ---------------------------------------------------------------- angles read back
def test_angle_of_keeps_the_sign():
    angles = torch.tensor([-3.0, -2.0, -0.5, -1e-3, 0.0, 0.5, 2.0, 3.0])
    torch.testing.assert_close(avae.transforms.angle_of(avae.rotation(angles)), angles, atol=1e-6, rtol=0)


def test_angle_of_wraps_to_minus_pi_pi():
    got = avae.transforms.angle_of(avae.rotation(torch.tensor([4.0, -4.0])))
    torch.testing.assert_close(got, torch.tensor([4.0 - 2 * math.pi, -4.0 + 2 * math.pi]), atol=1e-6, rtol=0)
    wrapped = wrap_angle(torch.tensor([math.pi, -math.pi, 7.0]))
    torch.testing.assert_close(wrapped, torch.tensor([-math.pi, -math.pi, 7.0 - 2 * math.pi]))


# ---------------------------------------------------------------- gradients (float64 gradcheck)
def test_gradcheck_warp_wrt_matrix_and_image():
    # Bilinear sampling has kinks where a sample lands on a pixel centre: even size, small shifts avoid them.
    x = smooth_images(2, 8, dtype=torch.float64).requires_grad_(True)
    params = torch.tensor([[0.31, 0.1, 0.05, -0.1, 0.013, -0.021], [-0.77, 0.0, 0.1, 0.0, 0.017, 0.011]])
    A = avae.affine(params.double())
    A = A.detach().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, im: avae.warp(im, a), (A, x), eps=1e-6, atol=1e-5)


def test_gradcheck_rotation_and_affine_parameters():
    angle = torch.tensor([0.3, -1.7, 2.9], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(avae.rotation, (angle,))
    params = torch.tensor([[0.3, 0.2, 0.1, -0.2, 0.1, 0.0], [-1.0, -0.4, 0.0, 0.3, 0.0, -0.1]], dtype=torch.float64)
    assert torch.autograd.gradcheck(avae.affine, (params.requires_grad_(True),))
    assert torch.autograd.gradcheck(avae.affine, (params[:, :4].detach().requires_grad_(True),))


def test_gradcheck_warp_wrt_angle_end_to_end():
    x = smooth_images(1, 8, dtype=torch.float64)
    angle = torch.tensor([0.4], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: avae.warp(x, avae.rotation(a)), (angle,), eps=1e-6, atol=1e-5)


def test_warp_follows_dtype_and_keeps_channels():
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    out = avae.warp(x, rot(30, b=2))  # float32 matrices, float64 images
    assert out.dtype == torch.float64 and out.shape == x.shape


def test_rotate_is_warp_by_rotation_for_one_angle_or_one_per_image():
    x = smooth_images(3)
    torch.testing.assert_close(avae.transforms.rotate(x, math.pi / 2), torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5, rtol=0)
    angle = torch.tensor([0.1, -0.7, 2.0])
    torch.testing.assert_close(avae.transforms.rotate(x, angle), avae.warp(x, avae.rotation(angle)))
