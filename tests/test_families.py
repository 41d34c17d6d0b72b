"""The family registry: a family is one builder and one entry; align reads nothing else."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.align import preset, search_cost
from avae_tutorial.families import families, get_family, unregister_family

pytestmark = pytest.mark.usefixtures("single_thread")


def shift(p):  # (B, 2) -> (B, 2, 3)
    A = torch.zeros(p.shape[0], 2, 3, dtype=p.dtype, device=p.device)
    A[:, 0, 0] = A[:, 1, 1] = 1
    A[:, :, 2] = p
    return A


@pytest.fixture
def shift_family():
    fam = avae.register_family(avae.Family("shift", n_params=2, build=shift, bounds=[(-0.3, 0.3)] * 2))
    yield fam
    unregister_family("shift")


def shifts(n: int, seed: int = 0, size: float = 0.2) -> torch.Tensor:
    return (torch.rand(n, 2, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * size  # within +-size


def test_the_readme_snippet_recovers_a_translation(shift_family):
    """A family registered from outside the package, default settings, a trained model: most of the
    loss that the shift added is removed."""
    vae = avae.load_pretrained("vae-upright")
    x = avae.data.mnist.synthetic_digits(12, canvas=vae.canvas, seed=0)[0]
    t = shifts(len(x))
    x_shifted = avae.warp(x, shift(t))
    res = avae.align(vae, x_shifted, family="shift")
    upright = avae.training.evaluate.mean_loss(vae, x)
    extra, removed = (res.loss0 - upright).mean(), (res.loss0 - res.loss).mean()
    assert extra > 20, "the shift should cost the plain VAE something"
    assert removed > 0.8 * extra, f"removed {removed:.1f} of {extra:.1f} nats"
    assert res.params.shape == (12, 2) and res.family == "shift"
    assert (res.params.abs() <= 0.3 + 1e-6).all()  # within the family's bounds


def test_a_shift_is_found_exactly_on_a_loss_with_one_minimum(shift_family, seven):
    """On a stub whose loss is minimal exactly where the warp undoes the shift (a smooth blob, so
    that the basin is wide), Adam from the identity lands there."""
    from conftest import TemplateVAE

    blob = torch.nn.functional.avg_pool2d(seven, 7, stride=1, padding=3)
    blob = blob / blob.max()
    t = shifts(6, seed=1)
    x = avae.warp(blob.expand(6, -1, -1, -1), shift(t))
    res = avae.align(TemplateVAE(blob), x, "shift")
    torch.testing.assert_close(res.params, -t, atol=0.02, rtol=0)  # warp samples at p + t: undo with -t


def test_builtin_families_are_three_registry_entries():
    assert {"rotation", "affine", "affine_t"} <= set(families())
    rot, aff, aff_t = (get_family(n) for n in ("rotation", "affine", "affine_t"))
    assert rot.is_angle and not aff.is_angle and aff.angle == 0 and aff_t.n_params == 6
    theta = torch.tensor([0.3, -1.2])
    torch.testing.assert_close(rot.build(theta[:, None]), avae.rotation(theta))
    p = torch.zeros(2, 4)
    p[:, 0] = theta
    torch.testing.assert_close(aff.build(p), avae.rotation(theta), atol=1e-6, rtol=0)


def test_families_without_presets_get_defaults_by_kind(shift_family):
    assert preset("shift").restarts == 1 and preset("shift").steps > 0  # identity start + Adam
    assert search_cost(preset("shift"), "shift") == 1 + 3 * preset("shift").steps + 1
    rot = replace(preset("rotation"), precision="float32")  # a bfloat16 search adds its float32 re-score
    assert search_cost(rot, "rotation") == rot.restarts + rot.steps
    bf = replace(preset("rotation"), precision="bfloat16")
    assert search_cost(bf, "rotation") == rot.restarts + rot.steps + 1
    own = avae.Family("own", 1, lambda p: avae.rotation(p[:, 0]), angle=0, presets={"fast": {"restarts": 5}})
    assert preset(own, "fast").restarts == 5 and preset(own, "default") == preset("rotation")


def test_a_new_angle_family_uses_the_gradient_free_search(template_vae, seven):
    """One angle and nothing else: grid + parabolic steps, whatever the family's name."""
    turn = avae.Family("turn", 1, lambda p: avae.rotation(p[:, 0]), angle=0)
    x = avae.warp(seven.expand(2, -1, -1, -1), avae.rotation(torch.tensor([1.0, -2.0])))
    res = avae.align(template_vae, x, turn)
    assert (avae.transforms.wrap_angle(res.angle + torch.tensor([1.0, -2.0])).abs() < math.radians(3)).all()


@pytest.mark.parametrize("bad, match", [
    (dict(name="x", n_params=0, build=shift), "n_params: "),
    (dict(name="x", n_params=2, build=shift, bounds=[(-1, 1)]), "1 bounds for 2 parameters"),
    (dict(name="x", n_params=2, build=shift, bounds=[(0.1, 1), (-1, 1)]), r"bounds\[0\]"),
    (dict(name="x", n_params=2, build=shift, angle=2), "angle must be a parameter index"),
    (dict(name="x", n_params=2, build="shift"), "build must be a function"),
])  # fmt: skip
def test_bad_family_descriptions_are_refused(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        avae.Family(**bad)


def test_registration_checks_the_builder_and_names(shift_family):
    with pytest.raises(ValueError, match="already registered"):
        avae.register_family(avae.Family("shift", 2, shift))
    with pytest.raises(ValueError, match="zero parameters must build the identity"):
        avae.register_family(avae.Family("off", 2, lambda p: shift(p + 0.1)))
    with pytest.raises(ValueError, match=r"must return \(B, 2, 3\) matrices"):
        avae.register_family(avae.Family("flat", 2, lambda p: p))
    with pytest.raises(ValueError, match="unknown family 'nope'; registered: rotation"):
        avae.align(avae.VAE(2, 28), torch.zeros(1, 1, 28, 28), "nope")


def test_sample_draws_within_bounds_and_seeded(shift_family):
    """``sample``: (n, n_params) within the bounds, the same for the same generator seed; the affine
    families draw as random_affines (the perturbations studied), the rotation as random_rotations."""
    p = shift_family.sample(200, torch.Generator().manual_seed(1))
    assert p.shape == (200, 2) and p.abs().max() <= 0.3 and p.abs().max() > 0.25
    assert torch.equal(p, shift_family.sample(200, torch.Generator().manual_seed(1)))
    angle = families()["rotation"].sample(100, torch.Generator().manual_seed(0))
    assert angle.shape == (100, 1) and 0 <= angle.min() and angle.max() < 2 * math.pi and angle.std() > 1
    aff = families()["affine"].sample(100)
    assert aff[:, 1].abs().max() <= math.radians(55) and aff[:, 2:].abs().max() <= math.log(1.5) + 1e-6
    assert families()["affine_t"].sample(3).shape == (3, 6)
    with pytest.raises(ValueError, match="n"):
        shift_family.sample(0)
    bad = avae.Family("bad", 2, shift, sampler=lambda n, g: torch.zeros(n, 3))
    with pytest.raises(ValueError, match="sampler"):
        bad.sample(4)


def test_builtin_families_carry_their_presets():
    assert families()["rotation"].presets["default"] == dict(restarts=24, top_k=1, steps=6, precision="auto")
    assert set(families()["rotation"].presets) == {"default", "fast", "default+pose", "fast+pose"}
    assert set(families()["affine"].presets) == {"default", "fast"}
    with pytest.raises(ValueError, match="preset"):
        preset("rotation", "default+pose")
