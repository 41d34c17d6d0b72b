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
    x, _ = avae.data.mnist.synthetic_digits(4, canvas=canvas)
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (4, 3)
    assert vae.decode(mu).shape == (4, 1, canvas, canvas)
    x_hat, mu2, logvar2 = vae(x)
    assert x_hat.shape == x.shape and torch.equal(mu2, mu) and torch.equal(logvar2, logvar)
    assert vae.config == avae.model.VAEConfig(3, canvas) and vae.config_dict() == {"latent_dim": 3, "canvas": canvas,
                                                                               "channels": 1}


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


@pytest.mark.parametrize("canvas", range(28, 129, 4))
@pytest.mark.parametrize("channels", [1, 3])
def test_every_canvas_and_channel_count_round_trips(canvas, channels):
    """Every multiple of 4 from 28 to 128, grey or RGB: the decoder gives back the encoder's size."""
    vae = avae.VAE(latent_dim=2, canvas=canvas, channels=channels).eval()
    with torch.no_grad():
        x_hat, mu, _ = vae(torch.rand(2, channels, canvas, canvas))
    assert x_hat.shape == (2, channels, canvas, canvas) and mu.shape == (2, 2)


def test_the_shipped_architecture_is_unchanged():
    """The 40x40 one-channel VAE has exactly the state-dict keys and shapes of the shipped weights,
    so those files (and their sha256 in the manifest) stay valid and load."""
    from avae_tutorial.training.pretrained import pretrained_dir

    shipped = avae.training.checkpoint.load_checkpoint(pretrained_dir() / "vae-upright.pt")
    want = {k: tuple(v.shape) for k, v in shipped["model"].items() if not k.startswith("pose_net.")}
    got = {k: tuple(v.shape) for k, v in avae.VAE(8, 40).state_dict().items()}
    assert got == want
    vae = avae.load_pretrained("vae-upright")
    assert vae.channels == 1 and vae.canvas == 40 and "channels" not in shipped["model_config"]


def test_a_colour_model_on_another_canvas_warps_aligns_and_scores():
    """warp, avae_loss and align on 3-channel 48x48 images: the loss sums over channels, and a
    turned image is aligned back at least as well as the identity."""
    torch.manual_seed(0)
    vae = avae.VAE(latent_dim=2, canvas=48, channels=3).eval()
    grey, _ = avae.data.mnist.synthetic_digits(4, canvas=48, seed=2)
    x = grey * torch.tensor([1.0, 0.5, 0.25])[:, None, None]  # (4, 3, 48, 48): a tinted digit
    A = avae.rotation(torch.tensor([0.3, -1.0, 2.0, 0.0]))
    assert avae.warp(x, A).shape == x.shape
    torch.testing.assert_close(avae.warp(x, A)[:, 1], avae.warp(grey, A)[:, 0] * 0.5)
    loss = avae.avae_loss(vae, x, A)
    rec, kl, _ = avae.loss_terms(vae, x, A)
    assert loss.shape == (4,) and torch.allclose(loss, rec + kl) and (rec > 3 * 48 * 48 * 0.01).all()
    res = avae.align(vae, x, "rotation", avae.AlignConfig(restarts=4, steps=1))
    assert (res.loss <= res.loss0 + 1e-4).all() and res.A.shape == (4, 2, 3)


@pytest.mark.parametrize("kw, match", [
    ({"canvas": 30}, r"canvas: expected a multiple of 4 from 28 to 128, got 30"),
    ({"canvas": 132}, r"canvas: expected a multiple of 4 from 28 to 128, got 132"),
    ({"canvas": 20}, r"canvas: expected an int >= 28, got 20"),
    ({"channels": 2}, r"channels: expected 1 \(grey\) or 3 \(RGB\), got 2"),
])  # fmt: skip
def test_bad_canvas_or_channels(kw, match):
    with pytest.raises(ValueError, match=match):
        avae.VAE(**kw)


def test_images_with_other_channels_than_the_model_are_refused(tiny_vae):
    with pytest.raises(ValueError, match=r"expected shape \(B, 1, H, W\) with one channel.*RGB"):
        avae.avae_loss(tiny_vae, torch.rand(2, 3, 28, 28))
    rgb = avae.VAE(2, 28, channels=3).eval()
    with pytest.raises(ValueError, match=r"the model takes 3-channel images, got 1-channel ones"):
        avae.align(rgb, torch.rand(2, 1, 28, 28))


# ---------------------------------------------------------------- generate: a code decoded at a pose
def test_generate_is_decode_warped_back(tiny_vae):
    """``generate(vae, z, A) == warp(decode(z), A^-1)``; ``A=None`` is the plain decoder."""
    z = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    A = avae.rotation(torch.tensor([0.0, 1.0, -2.5]))
    with torch.no_grad():
        x = avae.generate(tiny_vae, z, A)
        assert x.shape == (3, 1, 28, 28) and 0 <= float(x.min()) and float(x.max()) <= 1
        torch.testing.assert_close(avae.generate(tiny_vae, z), tiny_vae.decode(z))
        torch.testing.assert_close(x, avae.warp(tiny_vae.decode(z), avae.invert(A)))
        torch.testing.assert_close(x[:1], tiny_vae.decode(z[:1]), atol=1e-6, rtol=0)  # angle 0: identity


def test_generate_round_trip_is_the_losss_reconstruction(tiny_vae, digits):
    """Encode a digit at its pose, generate from the code at that pose: that is the reconstruction
    ``avae_loss`` scores, so the loss recomputed from it matches."""
    x = digits[0][:5]
    A = avae.rotation(torch.tensor([0.3, -1.2, 2.0, 3.1, 0.0]))
    with torch.no_grad():
        mu, _ = tiny_vae.encode(avae.warp(x, A))
        rec, kl, x_hat = avae.loss_terms(tiny_vae, x, A)
        torch.testing.assert_close(avae.generate(tiny_vae, mu, A), x_hat)
        p = avae.loss.EPS + (1 - 2 * avae.loss.EPS) * avae.generate(tiny_vae, mu, A)
        bce = -(x * p.log() + (1 - x) * (-p).log1p()).flatten(1).sum(1)
        torch.testing.assert_close(bce + kl, avae.avae_loss(tiny_vae, x, A))


def test_generate_turns_the_picture_as_the_convention_says(tiny_vae):
    """At a quarter turn the generated picture is the decoded one turned back by a quarter turn:
    ``rotation(pi/2)`` samples the picture turned counter-clockwise, its inverse clockwise."""
    z = torch.randn(2, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x = avae.generate(tiny_vae, z, avae.rotation(torch.full((2,), math.pi / 2)))
        torch.testing.assert_close(x, torch.rot90(tiny_vae.decode(z), -1, dims=(-2, -1)), atol=1e-5, rtol=0)
