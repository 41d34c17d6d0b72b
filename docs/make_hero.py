"""Draw ``docs/hero.png``, the README's picture: ``python docs/make_hero.py``.

One test digit turned by several angles, what the shipped upright VAE reconstructs from each,
and what the AVAE (the same VAE inside the warp that ``align`` finds) reconstructs, with losses.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import avae_tutorial as avae  # noqa: E402
from avae_tutorial.lessons.plotting import hero_figure  # noqa: E402
from avae_tutorial.training.pretrained import load_pretrained  # noqa: E402
from avae_tutorial.lessons.widgets import rotation_frames  # noqa: E402

ANGLES_DEG = (0, 45, 90, 135, 180, 225, 270, 315)


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--index", type=int, default=0, help="test digit to show (default 0, a 7)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "hero.png")
    p.add_argument("--dpi", type=int, default=120)  # about 740 px wide: a page column, unscaled
    args = p.parse_args(argv)
    vae = load_pretrained("vae-upright")
    x, _ = avae.load_mnist("test", limit=args.index + 1)
    f = rotation_frames(vae, x[args.index], ANGLES_DEG)
    fig = hero_figure(f.angles_deg, f.inputs, f.vae_rec, f.avae_rec, f.vae_loss, f.avae_loss, f.found_deg)
    fig.savefig(args.out, dpi=args.dpi)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB); "
          f"mean loss over {len(f)} angles: VAE {f.vae_loss.mean():.1f} nats, AVAE {f.avae_loss.mean():.1f} nats")  # fmt: skip
    return args.out


if __name__ == "__main__":
    main()
