"""The test-time search on digits nobody tuned it to (issue 31; ``python -m avae_tutorial bench-heldout``).

The presets (:data:`~avae_tutorial.families.ANGLE_PRESETS`) were chosen on the *tuning* digits:
:data:`TUNING_DIGITS` MNIST training digits drawn from index :data:`TUNING_START` on (digits that
neither the shipped VAEs nor their pose nets, both fitted on the first 12,800, saw), turned
uniformly, all drawn with seed :data:`TUNING_SEED`. They are judged here on
*held-out* digits: ``n`` MNIST **test** digits drawn (without replacement) and turned uniformly
with seed :data:`HELDOUT_SEED`, a seed that no tuning touched. Per preset (``"default"`` and
``"fast"``, with the model's pose net where it has one):

* passes per image, counted (:attr:`AlignResult.passes <avae_tutorial.align.AlignResult>`: images
  through the encoder, the identity and every re-score included): mean, its standard error over
  the digits, spread and the count of digits at each value;
* how many digits go on to the grid (:attr:`AlignResult.grid <avae_tutorial.align.AlignResult>`),
  in all and by class;
* the mean loss, its gap to the 360-angle exhaustive search (:data:`EXHAUSTIVE`: every degree
  scored, the best two basins refined) in percent of the exhaustive loss, on the first
  ``exhaustive_n`` digits, with the paired standard error over those digits;
* the gain over the identity (``loss0 - loss``), and the fast preset's share of the default's;
* with ``gate_bound``, for a model with a pose net: how far any gate could take the default
  (:func:`gate_bound`). Its first stage alone (every guess trusted) and its grid for every digit
  are run on the same digits; a search's answer for a digit depends on that digit alone, so a
  gate that knew in advance which digits the grid helps would spend, digit by digit, one or the
  other. Sending the digits in order of gain per extra pass traces the lowest gap reachable at
  each mean cost: the gap at :data:`TARGETS`'s 8 passes, and the passes the 0.1% target needs.
  The pose net's first guess is compared with the exhaustive answer too (how often it is more
  than 10, 30 and 150 degrees off), and so is the nearest of a bins net's guessed peaks.

:func:`against` compares two runs on the same digits digit by digit (another pose net, another
preset): the change in loss and passes with the paired standard error, far smaller than either
run's own spread. :func:`targets` judges them against :data:`TARGETS` (issue 31, point 3). Every
figure depends only on the model, the digits and the seed: one command reproduces it (the time,
measured alongside with the CPU and its load, does not; judge by passes).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch

from .._checks import check_positive_int
from ..align import PRECISIONS, PRESET_NAMES, AlignConfig, AlignResult, align, for_device, preset
from ..model import VAE, for_inference
from ..training.measure import conditions, passes_summary, standard_error as _se, timed
from ..transforms import _rotation, _warp, wrap_angle

__all__ = ["HeldoutConfig", "heldout", "draw_digits", "targets", "against", "format_heldout", "gate_bound", "stage_configs", "EXHAUSTIVE", "HELDOUT_SEED",
           "TUNING_SEED", "TUNING_START", "TUNING_DIGITS", "TARGETS"]  # fmt: skip

#: The held-out draw's seed (test digits and their angles): never used for tuning.
HELDOUT_SEED = 31031
#: The tuning digits: MNIST *training* digits from this index on (unseen by the shipped models and
#: their pose nets), ``TUNING_DIGITS`` of them drawn and turned with ``TUNING_SEED``
#: (``draw_digits(load_mnist("train"), TUNING_DIGITS, TUNING_SEED, start=TUNING_START)``).
TUNING_SEED = 7031
TUNING_START = 12800
TUNING_DIGITS = 1000

#: The 360-angle exhaustive search: every degree scored, the best two basins refined by parabolic
#: steps, in float32 (the same as the bench's near-exhaustive row).
EXHAUSTIVE = AlignConfig(restarts=360, steps=4, top_k=2)

#: Issue 31, point 3: mean passes per image and quality on held-out digits.
TARGETS = {"default_passes": 8.0, "default_gap": 0.001, "fast_passes": 4.0, "fast_share": 0.95}


@dataclass(frozen=True)
class HeldoutConfig:
    """What :func:`heldout` measures: ``n`` digits drawn from the pool (from index ``start`` on)
    with ``seed``; the exhaustive search on the first ``exhaustive_n`` of them (0: skip it);
    ``chunk``/``precision``: over every search's (``None``: as configured; the exhaustive search is
    float32 whatever ``precision``); ``per_digit``: the figures of every digit too (``out["per_digit"]``)."""

    n: int = 1000
    exhaustive_n: int = 1000
    seed: int = HELDOUT_SEED
    start: int = 0
    chunk: int | None = None
    precision: str | None = None
    per_digit: bool = False  # also each digit's index, angle, class, and per search loss, passes and grid
    gate_bound: bool = False  # also the default's two stages apart and the best any gate could do (gate_bound)

    def __post_init__(self):
        check_positive_int(self.n, "n")
        for name in ("exhaustive_n", "start"):
            check_positive_int(getattr(self, name), name, minimum=0)
        if self.exhaustive_n > self.n:
            raise ValueError(f"exhaustive_n: expected at most n={self.n} digits, got {self.exhaustive_n}")
        if self.chunk is not None:
            check_positive_int(self.chunk, "chunk")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"precision: expected None or one of {PRECISIONS}, got {self.precision!r}")


def draw_digits(x: torch.Tensor, y: torch.Tensor, n: int, seed: int, start: int = 0):
    """``n`` digits of ``x[start:]`` drawn without replacement and each turned by an angle uniform
    in [0, 2pi), all from ``seed``: ``(x_turned (n, C, H, W), y (n,), index (n,), angle (n,))``,
    ``index`` into ``x``. The same pool and seed give the same digits and angles."""
    check_positive_int(n, "n")
    if not 0 <= start < len(x) or len(x) - start < n:
        raise ValueError(f"draw_digits: expected at least n={n} digits from index {start} on, got {len(x) - start}")
    g = torch.Generator().manual_seed(int(seed))
    index = start + torch.randperm(len(x) - start, generator=g)[:n]
    angle = torch.rand(n, generator=g) * (2 * math.pi)
    with torch.no_grad():
        turned = _warp(x[index.to(x.device)], _rotation(angle.to(x.device, x.dtype)))
    return turned, y[index.to(y.device)], index, angle


def heldout(vae: VAE, x: torch.Tensor, y: torch.Tensor, cfg: HeldoutConfig = HeldoutConfig(),
            split: str = "test") -> dict:  # fmt: skip
    """The presets and the exhaustive search on ``cfg.n`` digits drawn from ``(x, y)`` (upright
    digits, labels: MNIST's ``split``) with ``cfg.seed``: a dict of the figures (see the module's
    docstring), the search settings used and the machine's conditions."""
    draw = draw_digits(x, y, cfg.n, cfg.seed, cfg.start)
    xs, ys = draw[0], draw[1].cpu()
    each = {"index": draw[2].tolist(), "angle": draw[3].tolist(), "class": ys.tolist()}
    vae = for_inference(vae, fold=False).to(xs.device)
    has_pose = getattr(vae, "pose_net", None) is not None
    own = {k: v for k, v in (("chunk", cfg.chunk), ("precision", cfg.precision)) if v is not None}
    out = {"config": asdict(cfg), "conditions": conditions(xs.device), "pose_net": has_pose,
           "digits": {"split": split, "n": cfg.n, "seed": cfg.seed, "start": cfg.start, "pool": len(x),
                      "classes": {int(c): int((ys == c).sum()) for c in ys.unique()}},
           "tuning": {"split": "train", "start": TUNING_START, "n": TUNING_DIGITS, "seed": TUNING_SEED}}  # fmt: skip
    results = {}
    for name in PRESET_NAMES:
        conf = for_device(replace(preset("rotation", name, pose=has_pose), **own), xs.device)
        res, sec, _ = timed(lambda conf=conf: align(vae, xs, "rotation", conf, progress=False), xs.device)
        results[name] = res
        out.setdefault("presets", []).append({"preset": name, "search": asdict(conf), **_summary(res, ys, sec)})
        each[name] = {"loss": res.loss.tolist(), "loss0": res.loss0.tolist(), "passes": res.passes.tolist(),
                      "grid": res.grid.tolist(), "angle": res.angle.tolist()}  # fmt: skip
    if cfg.exhaustive_n:
        conf = for_device(replace(EXHAUSTIVE, **({"chunk": cfg.chunk} if cfg.chunk else {})), xs.device)
        res, sec, _ = timed(lambda: align(vae, xs[: cfg.exhaustive_n], "rotation", conf, progress=False), xs.device)
        out["exhaustive"] = {"search": asdict(conf), **_summary(res, ys[: cfg.exhaustive_n], sec)}
        each["exhaustive"] = {"loss": res.loss.tolist(), "angle": res.angle.tolist()}
        for row, name in zip(out["presets"], PRESET_NAMES):
            row.update(_gap(results[name].loss[: cfg.exhaustive_n].cpu().double(), res.loss.cpu().double()))
        if cfg.gate_bound and has_pose:
            out["gate_bound"] = _stages(vae, xs[: cfg.exhaustive_n], res, AlignConfig(**out["presets"][0]["search"]))
    default, fast = (results[name] for name in ("default", "fast"))
    out["fast_share_of_default_gain"] = _share(fast, default)
    out["targets"] = targets(out)
    out["conditions"]["load_avg_1min_end"] = conditions(xs.device)["load_avg_1min"]
    if cfg.per_digit:
        out["per_digit"] = each
    return out


def stage_configs(config: AlignConfig) -> tuple[AlignConfig, AlignConfig]:
    """An adaptive search's two stages as searches of their own: ``(first, every)``, the first stage
    alone (every guess trusted, no digit on to the grid) and every digit on to the grid; what
    :func:`gate_bound` compares."""
    first = replace(config, confident=0.0, consistent=None, consistent_axis=None)
    every = replace(config, confident=1e9)  # no guess is that sure
    return first, every


def _stages(vae: VAE, xs: torch.Tensor, exhaustive: AlignResult, config: AlignConfig) -> dict:
    """``config``'s two stages (:func:`stage_configs`) on ``xs``, and :func:`gate_bound`."""
    first, every = stage_configs(config)
    a, b = (align(vae, xs, "rotation", c, progress=False) for c in (first, every))
    with torch.no_grad():
        guess = vae.pose_net(xs)
        peaks = vae.pose_net.peaks(xs, config.peaks)[0] if getattr(vae.pose_net, "bins", None) else guess[:, None]
    def off(g):  # noqa: E306 (degrees from the exhaustive answer)
        return torch.rad2deg(wrap_angle(g.double() - exhaustive.angle.double()[:, None])).abs().min(1).values.cpu()
    return {"first_stage": asdict(first), "every_digit_to_grid": asdict(every),
            "guess_off_by_more_than": {d: float((off(guess[:, None]) > d).double().mean()) for d in (10, 30, 150)},
            "nearest_peak_off_by_more_than": {d: float((off(peaks) > d).double().mean()) for d in (10, 30, 150)},
            **gate_bound(a, b, exhaustive.loss)}  # fmt: skip


def gate_bound(first: AlignResult, every: AlignResult, exhaustive: torch.Tensor,
               budget: float = TARGETS["default_passes"], target: float = TARGETS["default_gap"]) -> dict:  # fmt: skip
    """The best that any gate could do between a search's first stage (``first``: no digit on to
    the grid) and the same search with every digit on to it (``every``), on the same digits,
    against the ``exhaustive`` losses ``(N,)``: a gate spends, per digit, either ``first``'s
    passes and loss or ``every``'s. Sending the digits in order of loss gained per extra pass
    (a digit whose grid gains nothing is never sent) traces, at each mean cost, the lowest gap
    such a gate reaches (exactly so up to the last digit sent; what an oracle gate does).
    Returns both stages' passes and gaps, the gap at ``budget`` passes, and the passes at which
    the gap first reaches ``target`` (``None``: not even with every digit sent)."""
    la, lb = first.loss.cpu().double(), every.loss.cpu().double()
    pa, pb = first.passes.cpu().double(), every.passes.cpu().double()
    ex = exhaustive.cpu().double()
    n, scale = len(ex), float(ex.mean())
    gain, extra = (la - lb).clamp_min(0), (pb - pa).clamp_min(1)
    order = torch.argsort(gain / extra, descending=True, stable=True)[: int((gain > 0).sum())]
    passes = torch.cat([pa.mean()[None], pa.mean() + torch.cumsum(extra[order], 0) / n])
    gaps = torch.cat([(la - ex).mean()[None], (la - ex).mean() - torch.cumsum(gain[order], 0) / n]) / scale
    within = passes <= budget
    reach = (gaps <= target).nonzero()
    return {"first_passes": float(pa.mean()), "first_gap": float((la - ex).mean() / scale),
            "every_passes": float(pb.mean()), "every_gap": float((lb - ex).mean() / scale),
            "budget": budget, "target": target,
            "gap_at_budget": float(gaps[within][-1]) if within.any() else None, "sent_at_budget": int(within.sum()) - 1,
            "passes_for_target": float(passes[reach[0, 0]]) if len(reach) else None}  # fmt: skip


def _summary(res: AlignResult, y: torch.Tensor, seconds: float) -> dict:
    """One search's figures on its digits (labels ``y``)."""
    passes, grid = res.passes.cpu(), res.grid.cpu()
    loss, loss0 = res.loss.cpu().double(), res.loss0.cpu().double()
    n = len(passes)
    values, counts = passes.unique(return_counts=True)
    by_class = {int(c): {"n": int((y == c).sum()), "to_grid": int(grid[y == c].sum()),
                         "passes_per_image": float(passes[y == c].double().mean())} for c in y.unique()}  # fmt: skip
    return {"n": n, **passes_summary(passes), "passes_se": _se(passes.double()),
            "passes_counts": {int(v): int(c) for v, c in zip(values, counts)},
            "to_grid": int(grid.sum()), "to_grid_by_class": by_class,
            "loss": float(loss.mean()), "loss_se": _se(loss), "loss0": float(loss0.mean()),
            "gain": float((loss0 - loss).mean()), "seconds_per_image": seconds / n}  # fmt: skip


def _gap(loss: torch.Tensor, exhaustive: torch.Tensor) -> dict:
    """A search's gap to the exhaustive one on the same digits: the mean excess in percent of the
    exhaustive mean loss, with its paired standard error over the digits, and the worst digits."""
    diff = loss - exhaustive
    return {"loss_exhaustive_subset": float(loss.mean()), "exhaustive_loss": float(exhaustive.mean()),
            "gap_to_exhaustive": float(diff.mean() / exhaustive.mean()),
            "gap_to_exhaustive_se": _se(diff) / float(exhaustive.mean()),
            "digits_above_exhaustive_by_1_nat": int((diff > 1).sum()),
            "digits_below_exhaustive_by_1_nat": int((diff < -1).sum())}  # fmt: skip


def _share(fast: AlignResult, default: AlignResult) -> dict:
    """The fast preset's gain over the identity as a share of the default's, with its standard
    error over the digits (the delta method on the paired gains)."""
    gf, gd = (r.loss0.cpu().double() - r.loss.cpu().double() for r in (fast, default))
    share = float(gf.mean() / gd.mean())
    resid = (gf - share * gd) / gd.mean()  # the share's influence per digit
    return {"share": share, "se": _se(resid), "fast_gain": float(gf.mean()), "default_gain": float(gd.mean())}


def against(out: dict, earlier: dict) -> dict:
    """``out``'s searches against ``earlier``'s on the same digits (two :func:`heldout` runs with
    ``per_digit``), per preset in both: the mean change in loss (``out`` minus ``earlier``) in
    percent of ``out``'s mean exhaustive loss (or, without it, of the preset's own), and the change
    in mean passes, each with its paired standard error over the digits."""
    a, b = out.get("per_digit"), earlier.get("per_digit")
    if a is None or b is None:
        raise ValueError("against: expected two runs with per-digit figures (bench-heldout --per-digit)")
    if a["index"] != b["index"] or a["angle"] != b["angle"]:
        raise ValueError("against: expected the same digits and turns in both runs (the same --split, --n, "
                         f"--seed and --start); got {len(a['index'])} and {len(b['index'])} digits, drawn differently")
    exhaustive = a.get("exhaustive", {}).get("loss")
    rows = {}
    for name in (n for n in PRESET_NAMES if n in a and n in b):
        new, old = (torch.tensor(r[name]["loss"], dtype=torch.float64) for r in (a, b))
        scale = float(torch.tensor(exhaustive, dtype=torch.float64).mean()) if exhaustive else float(new.mean())
        dp = torch.tensor(a[name]["passes"]).double() - torch.tensor(b[name]["passes"]).double()
        rows[name] = {"loss_change": float((new - old).mean()) / scale, "loss_change_se": _se(new - old) / scale,
                      "passes_change": float(dp.mean()), "passes_change_se": _se(dp)}  # fmt: skip
    return rows


def targets(out: dict) -> list[dict]:
    """Issue 31's targets on the held-out digits, each ``{kind, target, value, met}`` (as
    :func:`~avae_tutorial.tools.bench_report.targets`): the default at most 8 mean passes per image
    within 0.1% of the exhaustive search, the fast preset at most 4 passes keeping at least 95% of
    the default's gain. The gap is judged only where the exhaustive search ran."""
    default, fast = out["presets"][:2]
    t = TARGETS
    rows = [("passes", f"held-out, default: <= {t['default_passes']:g} passes per image on average",
             default["passes_per_image"], default["passes_per_image"] <= t["default_passes"])]
    if "gap_to_exhaustive" in default:
        rows.append(("loss", f"held-out, default: mean loss within {t['default_gap']:.1%} of the exhaustive search's",
                     default["gap_to_exhaustive"], default["gap_to_exhaustive"] <= t["default_gap"]))  # fmt: skip
    rows += [("passes", f"held-out, fast: <= {t['fast_passes']:g} passes per image on average", fast["passes_per_image"],
              fast["passes_per_image"] <= t["fast_passes"]),
             ("loss", f"held-out, fast: >= {t['fast_share']:.0%} of the default's gain over the identity",
              out["fast_share_of_default_gain"]["share"], out["fast_share_of_default_gain"]["share"] >= t["fast_share"])]
    return [{"kind": k, "target": name, "value": float(v), "met": bool(m)} for k, name, v, m in rows]


def format_heldout(out: dict) -> str:
    """:func:`heldout`'s figures as plain text: one line per search, the passes' distribution and
    the digits that went on to the grid by class, and the targets."""
    c, d = out["conditions"], out["digits"]
    load_end = c.get("load_avg_1min_end")
    t = out["tuning"]
    held = d["split"] == "test" and d["seed"] != t["seed"]
    tuning = d["split"] == "train" and d["seed"] == t["seed"] and d["start"] == t["start"] and d["n"] == t["n"]
    what = "held out: a seed never used for tuning" if held else "the tuning digits" if tuning else "not the held-out draw"
    lines = [f"{d['n']} MNIST {d['split']} digits from index {d['start']} on, drawn and turned uniformly with seed "
             f"{d['seed']} ({what}; the presets were tuned on {t['n']} training digits from index {t['start']} on, "
             f"seed {t['seed']}); pose net: {'yes' if out['pose_net'] else 'no'}",
             f"on {c['device_name']}, {c['threads']} threads, the presets scoring in "
             f"{out['presets'][0]['search']['precision']} (auto picks {c['auto_precision']} here, "
             f"AVAE_BFLOAT16={c['bfloat16_switch']}); load average "
             f"{c['load_avg_1min']:.1f} at start" + (f", {load_end:.1f} at end" if load_end is not None else ""),
             f"{'search':12s} {'images':>6s} {'passes':>7s} {'se':>5s} {'max':>4s} {'to grid':>7s} {'ms/image':>9s} "
             f"{'loss':>9s} {'gain':>7s} {'gap to exhaustive':>18s}"]  # fmt: skip
    rows = [(r["preset"], r) for r in out["presets"]] + ([("exhaustive", out["exhaustive"])] if "exhaustive" in out else [])
    for name, r in rows:
        gap = (f"{100 * r['gap_to_exhaustive']:.3f}% +- {100 * r['gap_to_exhaustive_se']:.3f}"
               if "gap_to_exhaustive" in r else "-")
        lines.append(f"{name:12s} {r['n']:6d} {r['passes_per_image']:7.2f} {r['passes_se']:5.2f} {r['passes_max']:4d} "
                     f"{r['to_grid']:7d} {1e3 * r['seconds_per_image']:9.2f} {r['loss']:9.3f} {r['gain']:7.3f} "
                     f"{gap:>18s}")  # fmt: skip
    share = out["fast_share_of_default_gain"]
    lines.append(f"fast keeps {share['share']:.2%} +- {share['se']:.2%} of the default's gain over the identity "
                 f"({share['fast_gain']:.3f} of {share['default_gain']:.3f} nats); gap: the mean excess over the "
                 f"exhaustive search on its {out.get('exhaustive', {}).get('n', 0)} digits, in percent of its loss, "
                 "+- the paired standard error over those digits")  # fmt: skip
    for r in out["presets"]:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(r["passes_counts"].items()))
        by_class = " ".join(f"{k}:{v['to_grid']}/{v['n']}" for k, v in sorted(r["to_grid_by_class"].items()))
        lines += [f"{r['preset']}: digits per pass count {{{counts}}}",
                  f"{r['preset']}: to the grid by class (went/digits) {by_class}"]
    lines += [f"  [{'met' if t['met'] else 'NOT met'}] {t['target']}: {t['value']:.4g}" for t in out["targets"]]
    for name, r in out.get("against", {}).get("presets", {}).items():
        lines.append(f"{name} against {out['against']['file']} (same digits): loss {r['loss_change']:+.3%} "
                     f"+- {r['loss_change_se']:.3%} of the exhaustive loss, passes {r['passes_change']:+.2f} "
                     f"+- {r['passes_change_se']:.2f} (paired standard errors over the digits)")  # fmt: skip
    if "gate_bound" in out:
        g = out["gate_bound"]
        at = "-" if g["gap_at_budget"] is None else f"{g['gap_at_budget']:.3%}"
        need = "not even with every digit sent" if g["passes_for_target"] is None else f"{g['passes_for_target']:.2f} passes"
        off = ", ".join(f"{d}: {v:.1%}" for d, v in g["guess_off_by_more_than"].items())
        lines += [f"gate bound (default, on the exhaustive search's digits): first stage alone {g['first_passes']:.2f} "
                  f"passes, gap {g['first_gap']:.3%}; every digit to the grid {g['every_passes']:.2f} passes, gap "
                  f"{g['every_gap']:.3%}; a gate that knew which digits the grid helps: gap {at} "
                  f"at {g['budget']:g} passes ({g['sent_at_budget']} digits sent), {g['target']:.1%} needs {need}",
                  f"the pose net's first guess off the exhaustive answer by more than (degrees) {off}",
                  "the nearest of its guesses (a bins net's peaks) off by more than (degrees) "
                  + ", ".join(f"{d}: {v:.1%}" for d, v in g["nearest_peak_off_by_more_than"].items())]  # fmt: skip
    return "\n".join(lines)
