"""The VAE: shapes per canvas, probabilities out, log-variance semantics, the affine wrapper."""
from __future__ import annotations

import copy
import math

import pytest
import torch

import avae_tutorial as avae

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("canvas", [28, 40, 48])
def test_shapes_per_canvas(canvas):
    torch.manual_seed(0)
    vae = avae.VAE(latent_dim=3, canvas=canvas).eval()
    x, _ = avae.synthetic_digits(4, canvas=canvas)
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (4, 3)
    assert vae.decode(mu).shape == (4, 1, canvas, canvas)
    x_hat, mu2, logvar2 = vae(x)
    assert x_hat.shape == x.shape and torch.equal(mu2, mu) and torch.equal(logvar2, logvar)
    assert vae.config == avae.VAEConfig(3, canvas) and vae.config_dict() == {"latent_dim": 3, "canvas": canvas}


def test_decode_gives_probabilities(tiny_vae):
    z = torch.tensor([[0.0, 0.0], [60.0, -60.0], [-60.0, 60.0], [1e3, 1e3]])
    p = tiny_vae.decode(z)
    assert torch.isfinite(p).all() and p.min() >= 0 and p.max() <= 1


def test_forward_is_deterministic_unless_sampling(tiny_vae, digits):
    x = digits[0][:4]
    torch.testing.assert_close(tiny_vae(x)[0], tiny_vae(x)[0], rtol=0, atol=0)
    torch.manual_seed(1)
    a = tiny_vae(x, sample=True)[0]
    torch.manual_seed(2)
    assert not torch.allclose(a, tiny_vae(x, sample=True)[0])


def test_encode_returns_log_variance(tiny_vae, digits, monkeypatch):
    """Sampling draws z with variance exp(logvar): with logvar = log 4 the spread of z is 2 (not 4 or e^4)."""
    n = 20000
    x = digits[0][:1].expand(n, -1, -1, -1)
    monkeypatch.setattr(tiny_vae, "encode", lambda x: (torch.zeros(len(x), 2), torch.full((len(x), 2), math.log(4.0))))
    seen = {}

    def spy(z):  # records z, decodes nothing (fast)
        seen["z"] = z
        return torch.zeros(len(z), 1, 28, 28)

    monkeypatch.setattr(tiny_vae, "decode", spy)
    torch.manual_seed(0)
    tiny_vae(x, sample=True)
    assert abs(float(seen["z"].std()) - 2.0) < 0.05
    assert abs(float(seen["z"].mean())) < 0.05


def test_affine_wrapper_identity_and_explicit_transform(tiny_vae, digits):
    x = digits[0][:3]
    wrapper = avae.AffineVAE(tiny_vae)
    torch.testing.assert_close(wrapper(x)[0], tiny_vae(x)[0])
    A = avae.rotation(torch.tensor([0.5, -1.0, 2.0]))
    x_hat, mu, logvar = wrapper(x, A)
    mu_ref, _ = tiny_vae.encode(avae.warp(x, A))
    torch.testing.assert_close(mu, mu_ref)
    torch.testing.assert_close(x_hat, avae.warp(tiny_vae.decode(mu_ref), avae.invert(A)))


def test_model_computes_in_the_dtype_it_is_given(tiny_vae, digits):
    """A float64 copy computes in float64 and agrees with float32 to float32 precision."""
    x = digits[0][:4]
    double = copy.deepcopy(tiny_vae).double()
    with torch.no_grad():
        x_hat64, mu64, _ = double(x.double())
        x_hat32, mu32, _ = tiny_vae(x)
    assert x_hat64.dtype == mu64.dtype == torch.float64
    torch.testing.assert_close(x_hat64.float(), x_hat32, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mu64.float(), mu32, rtol=1e-4, atol=1e-4)


def test_the_class_is_plain_and_the_fast_copy_holds_the_speed_tricks(tiny_vae, digits):
    """VAE is the paper's architecture (plain layers, default memory layout); for_inference's copy
    has no BatchNorm left and channels-last weights, and gives the same output."""
    from avae_tutorial.model import for_inference

    assert type(tiny_vae.decoder[-1]) is torch.nn.ConvTranspose2d
    assert tiny_vae.encoder[0][0].weight.is_contiguous()
    fast = for_inference(tiny_vae)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert fast.encoder[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    x = digits[0]
    with torch.no_grad():
        for u, v in zip(tiny_vae(x), fast(x)):
            torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-5)


def test_for_inference_folds_batchnorm_and_leaves_the_model_alone(digits):
    from avae_tutorial.model import for_inference

    torch.manual_seed(1)
    vae = avae.VAE(2, 28)
    with torch.no_grad():  # non-trivial running statistics, as after training
        for m in vae.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    vae.train()
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    fast = for_inference(vae)
    assert vae.training and all(p.requires_grad for p in vae.parameters())
    assert all(torch.equal(v, before[k]) for k, v in vae.state_dict().items())
    assert not fast.training and not any(p.requires_grad for p in fast.parameters())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    x = digits[0]
    with torch.no_grad():
        want, got = vae.eval()(x), fast(x)
    for u, v in zip(want, got):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-5)
