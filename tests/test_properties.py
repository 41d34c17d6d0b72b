"""Property-based tests (hypothesis): geometry identities, the search's guarantees, the loss's range.

Every test states ``max_examples`` and ``deadline=None`` (timings on a shared CPU vary too much
for a deadline to mean anything).
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_transforms import disk, smooth_images

import avae_tutorial as avae

pytestmark = pytest.mark.usefixtures("single_thread")

SETTINGS = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
angles = st.floats(-4 * math.pi, 4 * math.pi, allow_nan=False, allow_infinity=False)
shears = st.floats(-0.3, 0.3)
log_scales = st.floats(-0.2, 0.2)
shifts = st.floats(-0.1, 0.1)
seeds = st.integers(0, 2**16)


def affine_params(angle, shear, log_sx, log_sy, tx=0.0, ty=0.0) -> torch.Tensor:
    return torch.tensor([[angle, shear, log_sx, log_sy, tx, ty]])


@settings(max_examples=60, **SETTINGS)
@given(angle=angles, shear=shears, log_sx=log_scales, log_sy=log_scales, seed=seeds)
def test_warp_then_inverse_warp_restores_the_central_disk(angle, shear, log_sx, log_sy, seed):
    x = smooth_images(1, 32, seed=seed)
    A = avae.affine(affine_params(angle, shear, log_sx, log_sy)[:, :4])
    back = avae.warp(avae.warp(x, A), avae.invert(A))
    assert (back - x)[..., disk(32, 0.6)].abs().max() < 0.01


@settings(max_examples=100, **SETTINGS)
@given(angle=angles, shear=shears, log_sx=log_scales, log_sy=log_scales, tx=shifts, ty=shifts)
def test_compose_with_the_inverse_is_the_identity(angle, shear, log_sx, log_sy, tx, ty):
    A = avae.affine(affine_params(angle, shear, log_sx, log_sy, tx, ty).double())
    eye = avae.transforms.identity(1, dtype=torch.float64)
    torch.testing.assert_close(avae.transforms.compose(A, avae.invert(A)), eye, atol=1e-9, rtol=0)
    torch.testing.assert_close(avae.transforms.compose(avae.invert(A), A), eye, atol=1e-9, rtol=0)


@settings(max_examples=100, **SETTINGS)
@given(angle=angles, turns=st.integers(-3, 3))
def test_rotation_by_whole_turns_is_the_identity(angle, turns):
    a = torch.tensor([angle], dtype=torch.float64)
    full = avae.rotation(torch.tensor([2 * math.pi * turns], dtype=torch.float64))
    torch.testing.assert_close(full, avae.transforms.identity(1, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(avae.rotation(a + 2 * math.pi * turns), avae.rotation(a), atol=1e-12, rtol=0)
    torch.testing.assert_close(avae.transforms.compose(avae.rotation(a), full), avae.rotation(a), atol=1e-12, rtol=0)


_VAE = None


def untrained_vae() -> avae.VAE:
    global _VAE
    if _VAE is None:
        torch.manual_seed(0)
        _VAE = avae.VAE(latent_dim=2, canvas=28).eval()
    return _VAE


TINY_SEARCH = avae.AlignConfig(restarts=3, top_k=1, steps=2, lr=0.1)


@settings(max_examples=12, **SETTINGS)
@given(seed=seeds, order=st.permutations(range(5)), family=st.sampled_from(["rotation", "affine"]))
def test_align_never_worse_than_identity_and_invariant_to_batch_order(seed, order, family):
    vae = untrained_vae()
    x = avae.data.mnist.random_rotations(avae.data.mnist.synthetic_digits(5, canvas=28, seed=seed)[0], seed=seed)[0]
    res = avae.align(vae, x, family, TINY_SEARCH)
    assert (res.loss <= res.loss0).all()
    perm = torch.tensor(order)
    res_perm = avae.align(vae, x[perm], family, TINY_SEARCH)
    torch.testing.assert_close(res_perm.loss, res.loss[perm], rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(res_perm.A, res.A[perm], rtol=0, atol=1e-4)


@settings(max_examples=40, **SETTINGS)
@given(seed=seeds, kind=st.sampled_from(["binary", "uniform", "zeros", "ones", "digits"]),
       warp=st.booleans(), angle=angles, shear=shears, log_sx=log_scales, log_sy=log_scales)  # fmt: skip
def test_loss_is_finite_and_non_negative_on_valid_inputs(seed, kind, warp, angle, shear, log_sx, log_sy):
    g = torch.Generator().manual_seed(seed)
    x = {
        "binary": lambda: (torch.rand(3, 1, 28, 28, generator=g) > 0.5).float(),
        "uniform": lambda: torch.rand(3, 1, 28, 28, generator=g),
        "zeros": lambda: torch.zeros(3, 1, 28, 28),
        "ones": lambda: torch.ones(3, 1, 28, 28),
        "digits": lambda: avae.data.mnist.synthetic_digits(3, canvas=28, seed=seed)[0],
    }[kind]()
    A = avae.affine(affine_params(angle, shear, log_sx, log_sy)[:, :4].expand(3, 4)) if warp else None
    rec, kl, x_hat = avae.loss_terms(untrained_vae(), x, A)
    loss = rec + kl
    assert loss.shape == (3,) and torch.isfinite(loss).all()
    assert (rec >= 0).all() and (kl >= -1e-5).all() and (loss >= 0).all()
    assert x_hat.min() >= 0 and x_hat.max() <= 1
