"""Affine Variational Autoencoders: a VAE wrapped in an affine warp, and the search that chooses it.

Public API (see the book's chapters for the story)::

    import avae_tutorial as avae
    x, y = avae.load_mnist("test", canvas=40)    # float32 (N,1,40,40) in [0,1], int64 (N,)
    A = avae.rotation(angles)                    # angles (B,) in radians -> (B,2,3)
    xw = avae.warp(x, A); A_inv = avae.invert(A)
    vae = avae.VAE(latent_dim=8, canvas=40)      # .encode(x) -> (mu, logvar); .decode(z) -> probabilities
    x_hat = avae.generate(vae, z, A)             # codes z (B,L) decoded at poses A (B,2,3): warp(decode(z), A^-1)
    loss = avae.avae_loss(vae, x, A)             # (B,) nats; A=None means identity
    res = avae.align(vae, x, family="rotation")  # res.A (B,2,3), res.loss (B,); never worse than identity
    vae = avae.load_pretrained("vae-upright")    # also "vae-rotated", "avae-transopt"; hash-checked
    avae.register_family(avae.Family("shift", n_params=2, build=shift, bounds=[(-0.3, 0.3)] * 2))
    res = avae.align(vae, x, family="shift")     # a family is a builder (B,P) -> (B,2,3) + one entry
    x, names = avae.load_images("my_folder/", canvas=64)  # a user's images: (N,C,64,64) in [0,1], names
    vae, history = avae.fit(avae.TrainConfig(regime="aligned", epochs=8), (x, y), progress=False)

Each name:

* Data: ``load_mnist`` (MNIST on a padded canvas), ``load_images`` (a reader's folder or array file).
* Geometry: ``rotation`` (angles to matrices), ``affine`` (rotation, shear, scale and shift to
  matrices), ``warp`` (the one function that resamples images), ``invert`` (the inverse transform).
* Model: ``VAE`` (the seed's conv VAE), ``AffineVAE`` (a VAE between a warp and its inverse),
  ``avae_loss`` (the loss per image, in nats), ``loss_terms`` (its reconstruction and KL terms),
  ``generate`` (codes decoded at a chosen pose: ``warp(decode(z), A^-1)``).
* Search: ``align`` (the transform per image that minimizes the loss), ``AlignConfig`` (its
  settings), ``AlignResult`` (what it returns), ``preset`` (a family's named settings),
  ``Family`` (a transform family), ``register_family`` (add one), ``families`` (the registered
  ones, read-only), ``align_sharded`` (``align`` over several processes).
* Training: ``fit`` (train in one of three regimes), ``TrainConfig`` (its settings),
  ``load_pretrained`` (the shipped models).

The method itself is the modules at the top of this package, in reading order: ``transforms``,
``families``, ``model``, ``loss``, ``align``, ``refine``, ``pose``. Everything else lives in a room
named for what it serves: ``data`` (datasets in), ``training`` (fit, several processes,
checkpoints, the shipped models and their recipes), ``lessons`` (the chapters' figures and
widgets) and ``tools`` (the command line, benchmarks, export).
"""
from .align import AlignConfig, AlignResult, align, preset
from .data.images import load_images
from .data.mnist import load_mnist
from .families import Family, families, register_family
from .loss import avae_loss, loss_terms
from .model import VAE, AffineVAE, generate
from .training.distributed import align_sharded
from .training.pretrained import load_pretrained
from .training.train import TrainConfig, fit
from .transforms import affine, invert, rotation, warp

__version__ = "0.1.0"

__all__ = [
    "load_mnist", "load_images",
    "rotation", "affine", "warp", "invert",
    "VAE", "AffineVAE", "avae_loss", "loss_terms", "generate",
    "align", "AlignConfig", "AlignResult", "preset", "Family", "register_family", "families", "align_sharded",
    "fit", "TrainConfig", "load_pretrained",
]  # fmt: skip
