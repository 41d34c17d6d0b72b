"""Draw ``docs/wrapper.png``, the introduction's diagram of the AVAE: ``python docs/make_wrapper.py``.

A turned test digit passes through the warp that ``align`` finds for the shipped upright VAE,
the encoder and decoder, and the inverse warp (``avae_tutorial.lessons.plotting.wrapper_diagram``).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

import avae_tutorial as avae  # noqa: E402
from avae_tutorial.lessons.plotting import wrapper_diagram  # noqa: E402
from avae_tutorial.training.pretrained import load_pretrained  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--index", type=int, default=0, help="test digit to show (default 0, a 7)")
    p.add_argument("--angle", type=float, default=120.0, help="how far to turn it (degrees)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "wrapper.png")
    p.add_argument("--dpi", type=int, default=90)
    args = p.parse_args(argv)
    vae = load_pretrained("vae-upright").eval()
    x = avae.load_mnist("test", limit=args.index + 1)[0][args.index : args.index + 1]
    x = avae.warp(x, avae.rotation(torch.tensor([math.radians(args.angle)])))
    res = avae.align(vae, x, "rotation")
    x_warped = avae.warp(x, res.A)
    with torch.no_grad():
        x_rec = vae.decode(vae.encode(x_warped)[0])
    x_hat = avae.warp(x_rec, avae.invert(res.A))
    fig = wrapper_diagram(x[0], x_warped[0], x_rec[0], x_hat[0])
    fig.savefig(args.out, dpi=args.dpi)
    print(f"wrote {args.out}; search turned the digit by {math.degrees(float(res.angle[0])):.0f} degrees")
    return args.out


if __name__ == "__main__":
    main()
