"""Affine Variational Autoencoders: a VAE wrapped in an affine warp, and the search that chooses it.

Public API (see the book's chapters for the story)::

    import avae_tutorial as avae
    x, y = avae.load_mnist("test", canvas=40)    # float32 (N,1,40,40) in [0,1], int64 (N,)
    A = avae.rotation(angles)                    # angles (B,) in radians -> (B,2,3)
    xw = avae.warp(x, A); A_inv = avae.invert(A)
    vae = avae.VAE(latent_dim=8, canvas=40)      # .encode(x) -> (mu, logvar); .decode(z) -> probabilities
    loss = avae.avae_loss(vae, x, A)             # (B,) nats; A=None means identity
    res = avae.align(vae, x, family="rotation")  # res.A (B,2,3), res.loss (B,); never worse than identity
    vae = avae.load_pretrained("vae-upright")    # also "vae-rotated", "avae-transopt"; hash-checked
    avae.register_family(avae.Family("shift", n_params=2, build=shift, bounds=[(-0.3, 0.3)] * 2))
    res = avae.align(vae, x, family="shift")     # a family is a builder (B,P) -> (B,2,3) + one entry
    x, names = avae.load_images("my_folder/", canvas=64)  # a user's images: (N,C,64,64) in [0,1], names
"""
from .align import AlignConfig, AlignResult, align, preset
from .checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from .data import load_mnist, pad_to_canvas, random_affines, random_rotations, synthetic_digits
from .distributed import align_sharded
from .families import FAMILIES, Family, register_family
from .images import load_images
from .loss import avae_loss, loss_terms
from .model import VAE, AffineVAE, VAEConfig
from .pretrained import load_pretrained
from .train import REGIMES, TrainConfig, fit
from .transforms import affine, angle_of, compose, identity, invert, rotation, warp, wrap_angle

__version__ = "0.1.0"

__all__ = [
    "load_mnist", "load_images", "pad_to_canvas", "random_rotations", "random_affines", "synthetic_digits",
    "rotation", "affine", "warp", "invert", "compose", "identity", "angle_of", "wrap_angle",
    "VAE", "VAEConfig", "AffineVAE", "avae_loss", "loss_terms",
    "align", "AlignConfig", "AlignResult", "preset", "Family", "register_family", "FAMILIES", "align_sharded",
    "fit", "TrainConfig", "REGIMES",
    "save_checkpoint", "load_checkpoint", "model_from_checkpoint", "load_pretrained",
]  # fmt: skip
