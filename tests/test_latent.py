import math

import pytest
import torch

from avae_tutorial import VAE, rotation, warp
from avae_tutorial.lessons.latent import class_centroids, codes_at, nearest_class


@pytest.fixture
def vae():
    torch.manual_seed(0)
    return VAE(latent_dim=4, canvas=40).eval()


def test_codes_at_zero_is_the_encoder_mean(vae):
    x = torch.rand(5, 1, 40, 40)
    with torch.no_grad():
        mu, _ = vae.encode(x)
    torch.testing.assert_close(codes_at(vae, x, torch.zeros(5)), mu, atol=1e-5, rtol=1e-5)


def test_codes_at_turns_the_input_first(vae):
    x = torch.rand(3, 1, 40, 40)
    angle = torch.full((3,), math.pi / 2)
    with torch.no_grad():
        mu, _ = vae.encode(warp(x, rotation(angle)))
    torch.testing.assert_close(codes_at(vae, x, angle, chunk=2), mu, atol=1e-5, rtol=1e-5)


def test_codes_at_keeps_train_mode_and_checks_angles(vae):
    vae.train()
    codes_at(vae, torch.rand(2, 1, 40, 40), torch.zeros(2))
    assert vae.training
    with pytest.raises(ValueError, match="one angle per image"):
        codes_at(vae, torch.rand(2, 1, 40, 40), torch.zeros(3))


def test_nearest_class_of_hand_made_codes():
    codes = torch.tensor([[0.0, 0.0], [0.2, 0.0], [5.0, 5.0], [5.2, 5.0]])
    classes, centroids = class_centroids(codes, torch.tensor([3, 3, 7, 7]))
    assert classes == [3, 7]
    torch.testing.assert_close(centroids, torch.tensor([[0.1, 0.0], [5.1, 5.0]]))
    query = torch.tensor([[4.0, 4.0], [0.5, -0.5]])
    assert nearest_class(query, classes, centroids).tolist() == [7, 3]
    with pytest.raises(ValueError, match="one per code"):
        class_centroids(codes, torch.tensor([3, 7]))
