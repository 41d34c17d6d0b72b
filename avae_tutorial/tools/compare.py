"""Which training search? Recipes compared over seeds (issue 31; ``python -m avae_tutorial compare-training``).

Every recipe trains the shipped model (:func:`~avae_tutorial.training.reproduce.recipes`'
``avae-transopt``: latent 8, 8 epochs, batch 128, the first 12,800 training digits) and differs
only in the search of the epochs after the first (:data:`RECIPES`). Each run is then scored the way
a reader scores it: :func:`~avae_tutorial.align.align` at the ``"default"`` preset without a pose
net (24 grid angles, 6 parabolic steps; the same search for every model), in float32, on
:data:`SCORE_N` MNIST **test** digits from index 1,000 on (the first 1,000 give the training
history's per-epoch test loss), drawn and turned with :data:`SCORE_SEED`, a seed no choice was
tuned on. A recipe's figure is the mean over its seeds with the standard error over seeds (the
independent unit: one training run).

Per run: the scored loss; the search's passes per image per epoch (counted by the search, from the
history), after the first epoch; the seconds per epoch (the training pass, search included) beside
the seconds of a plain epoch (the ``rotated`` regime, no search) measured in the same process; R1
and R2 per class of the last epoch's orientations. Runs are checkpointed per epoch and resumed.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from types import MappingProxyType

import torch

from ..align import AlignConfig, align, preset
from ..lessons.histograms import class_statistics
from ..training.checkpoint import load_checkpoint, model_from_checkpoint
from ..training.measure import conditions, standard_error
from ..training.train import TRAINING_SEARCHES, TrainConfig, fit
from .heldout import draw_digits

__all__ = ["RECIPES", "SCORE_SEED", "SCORE_N", "SCORE_START", "recipe_config", "train_run",
           "plain_epoch_seconds", "time_searches", "time_here", "finished", "score_run", "paired", "summarize", "choose", "format_summary",
           "describe", "table_rows", "recipe_of", "structure_rows"]  # fmt: skip

#: Recipe -> its TrainConfig fields (:data:`~avae_tutorial.training.train.TRAINING_SEARCHES`), in the
#: report's order: ``warm`` (the search ``avae-transopt`` used before this comparison chose ``online``)
#: is the reference every other recipe is paired with.
RECIPES = MappingProxyType({name: TRAINING_SEARCHES[name] for name in ("warm", "cold", "online", "lite")})

SCORE_SEED = 51051
SCORE_N = 1000
SCORE_START = 1000


def recipe_config(name: str, seed: int, epochs: int = 8, train_limit: int = 12_800, latent: int = 8) -> TrainConfig:
    """The :class:`TrainConfig` of recipe ``name`` with ``seed``."""
    if name not in RECIPES:
        raise ValueError(f"recipe: expected one of {', '.join(RECIPES)}, got {name!r}")
    return TrainConfig("aligned", latent, epochs=epochs, train_limit=train_limit, seed=seed, **RECIPES[name])


def train_run(name: str, seed: int, out: Path, train, test, device="cpu", **kw) -> Path:
    """Train (or resume) recipe ``name`` with ``seed`` into ``out/<name>-s<seed>.pt``; returns the path."""
    path = Path(out) / f"{name}-s{seed}.pt"
    fit(recipe_config(name, seed, **kw), train, test, checkpoint=path, device=device)
    return path


def plain_epoch_seconds(train, test, device="cpu", seed: int = 0, train_limit: int = 12_800, latent: int = 8) -> float:
    """Seconds of one plain epoch (the ``rotated`` regime: the same digits and steps, no search)."""
    _, hist = fit(TrainConfig("rotated", latent, epochs=1, train_limit=train_limit, seed=seed), train, test,
                  device=device, progress=False)  # fmt: skip
    return hist["seconds"][0]


def finished(path: Path) -> bool:
    """Whether the run checkpointed at ``path`` has trained all the epochs of its config."""
    ckpt = load_checkpoint(path)
    return ckpt["epoch"] >= ckpt["config"]["epochs"]


def score_run(path: Path, x_test: torch.Tensor, y_test: torch.Tensor, n: int = SCORE_N, seed: int = SCORE_SEED,
              start: int = SCORE_START) -> dict:  # fmt: skip
    """One run's figures: the scored loss (default search, float32) and its history's."""
    ckpt = load_checkpoint(path)
    vae = model_from_checkpoint(ckpt).eval()
    vae.pose_net = None  # the same search for every model
    xs, _, _, _ = draw_digits(x_test, y_test, n, seed, start)
    cfg = replace(preset("rotation", "default"), precision="float32")
    res = align(vae, xs, "rotation", cfg, progress=False)
    hist, config = ckpt["history"], ckpt["config"]
    passes = hist["passes"].double().mean(1)  # (epochs,) mean per image
    labels = torch.as_tensor(hist["labels"])
    stats = class_statistics(hist["orientation"][-1].float(), labels)
    return {
        "run": path.stem, "seed": config["seed"], "epochs": len(hist["seconds"]), "train_limit": config["train_limit"],
        "score_loss": float(res.loss.double().mean()), "score_loss_se": standard_error(res.loss.double()),
        "score_passes": float(res.passes.double().mean()),
        "history_test_loss": hist["test_loss"][-1],
        "passes_first": float(passes[0]), "passes_later": float(passes[1:].mean()),
        "seconds_per_epoch": sum(hist["seconds"]) / len(hist["seconds"]),
        "seconds_later": sum(hist["seconds"][1:]) / max(1, len(hist["seconds"]) - 1),
        "R1": {r["class"]: r["R1"] for r in stats}, "R2": {r["class"]: r["R2"] for r in stats},
    }  # fmt: skip


def _mean_se(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), standard_error(t)


def _recipe(row: dict) -> str:
    return row["run"].rsplit("-s", 1)[0]


def paired(rows: list[dict], a: str, b: str, key: str = "score_loss") -> tuple[float, float, int]:
    """Recipe ``a`` minus recipe ``b`` on ``key``, paired by seed: ``(mean, standard error, seeds)``.

    Runs with the same seed start from the same weights and see the digits in the same order, so
    the per-seed difference removes what the seed does to both; its spread over seeds is the error.
    """
    by = {(_recipe(r), r["seed"]): r[key] for r in rows}
    diffs = [by[a, s] - by[b, s] for (name, s) in by if name == a and (b, s) in by]
    if not diffs:
        return float("nan"), float("nan"), 0
    mean, se = _mean_se(diffs)
    return mean, se, len(diffs)


def choose(rows: list[dict], summary: list[dict]) -> dict:
    """The recipe to ship: the lowest scored loss, where a recipe within one paired standard error
    of the best counts as a tie and a tie goes to the fewest passes after the first epoch (then the
    least time against a plain epoch)."""
    best = min(summary, key=lambda r: r["score_loss"])["recipe"]
    ties = []
    for r in summary:
        mean, se, n = paired(rows, r["recipe"], best)
        if r["recipe"] == best or (n > 1 and mean <= se):
            ties.append(r)
    pick = min(ties, key=lambda r: (round(r["passes_later"], 6), r.get("later_vs_plain", 0.0), r["score_loss"]))
    return {"best": best, "ties": [r["recipe"] for r in ties], "winner": pick["recipe"],
            "rule": "lowest scored loss; within one paired standard error of it is a tie, "
                    "won by the fewest passes per image after the first epoch"}  # fmt: skip


def time_searches(recipes, train, test, n: int = 1280, device="cpu", latent: int = 8) -> dict:
    """Seconds of an epoch after the first for each recipe, and of a plain epoch, on ``n`` training
    digits, one after the other in this process (the same machine and load for all): the second of
    two epochs, so that no start-up cost is counted. ``{"n", "plain", "recipes": {name: seconds}}``."""
    def second_epoch(cfg):
        return fit(replace(cfg, epochs=2, train_limit=n), train, test, device=device, progress=False)[1]["seconds"][1]

    plain = second_epoch(TrainConfig("rotated", latent, seed=0))
    return {"n": n, "plain": plain, "recipes": {name: second_epoch(recipe_config(name, 0, latent=latent))
                                                 for name in recipes}}  # fmt: skip


def summarize(rows: list[dict], plain_seconds: float | None = None, reference: str = "warm",
              timing: dict | None = None) -> list[dict]:  # fmt: skip
    """Per recipe: mean and standard error over its seeds of every figure of :func:`score_run`, and
    its scored loss minus ``reference``'s, paired by seed (:func:`paired`). The time against a plain
    epoch comes from ``timing`` (:func:`time_searches`) where given, else from the runs' own
    seconds against ``plain_seconds``."""
    out = []
    for name in RECIPES:
        runs = [r for r in rows if r["run"].rsplit("-s", 1)[0] == name]
        if not runs:
            continue
        row = {"recipe": name, "seeds": sorted(r["seed"] for r in runs)}
        for key in ("score_loss", "history_test_loss", "passes_first", "passes_later", "seconds_per_epoch",
                    "seconds_later"):  # fmt: skip
            row[key], row[key + "_se"] = _mean_se([r[key] for r in runs])
        if timing and name in timing["recipes"]:
            row["later_vs_plain"] = timing["recipes"][name] / timing["plain"]
        elif plain_seconds:
            row["later_vs_plain"] = row["seconds_later"] / plain_seconds
        row["vs_" + reference], row["vs_" + reference + "_se"], _ = paired(rows, name, reference)
        for stat in ("R1", "R2"):
            row[stat] = {c: _mean_se([r[stat][c] for r in runs]) for c in runs[0][stat]}
        out.append(row)
    return out


def format_summary(summary: list[dict], plain_seconds: float | None = None, choice: dict | None = None) -> str:
    """The table of :func:`summarize`, one line per recipe, and the choice of :func:`choose`."""
    lines = [f"{'recipe':8} {'seeds':>5} {'scored loss':>16} {'minus warm':>15} {'history loss':>16} "
             f"{'passes 1st':>10} {'passes later':>12} {'s/epoch later':>13} {'x plain':>7}"]  # fmt: skip
    for r in summary:
        ratio = f"{r['later_vs_plain']:7.2f}" if "later_vs_plain" in r else f"{'':7}"
        vs = r.get("vs_warm", float("nan"))
        vs = f"{vs:+7.2f} ± {r['vs_warm_se']:5.2f}" if vs == vs and r["recipe"] != "warm" else f"{'':15}"
        lines.append(f"{r['recipe']:8} {len(r['seeds']):5d} {r['score_loss']:9.2f} ± {r['score_loss_se']:4.2f} {vs} "
                     f"{r['history_test_loss']:8.2f} ± {r['history_test_loss_se']:5.2f} {r['passes_first']:10.2f} "
                     f"{r['passes_later']:12.2f} {r['seconds_later']:13.1f} {ratio}")  # fmt: skip
    if plain_seconds:
        lines.append(f"plain epoch (rotated regime, no search): {plain_seconds:.1f} s")
    if choice:
        lines.append(f"chosen: {choice['winner']} (best: {choice['best']}; within one paired standard error of it: "
                     f"{', '.join(choice['ties'])}; a tie goes to the fewest passes)")  # fmt: skip
    return "\n".join(lines)


def compare(out: str | os.PathLike, recipes=tuple(RECIPES), seeds=(0, 1, 2), device="cpu", train_only=False,
            score_only=False, plain=True, score_n: int = SCORE_N, time_n: int = 1280, **kw) -> dict:  # fmt: skip
    """Train every recipe with every seed into ``out`` (resuming), score them, time each recipe's later
    epochs against a plain one on ``time_n`` digits (:func:`time_searches`; 0: keep the report's),
    write ``out/compare.json``."""
    from ..data.mnist import load_mnist

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train, test = load_mnist("train"), load_mnist("test")
    if not score_only:
        for name in recipes:
            for seed in seeds:
                t0 = time.perf_counter()
                train_run(name, seed, out, train, test, device=device, **kw)
                print(f"{name} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    if train_only:
        return {}
    report_path = out / "compare.json"
    old = json.loads(report_path.read_text()) if report_path.exists() else {}
    plain_s = (plain_epoch_seconds(train, test, device=device, train_limit=kw.get("train_limit", 12_800)) if plain 
               else old.get("plain_epoch_seconds"))
    paths = [p for p in sorted(out.glob("*-s*.pt")) if p.stem.rsplit("-s", 1)[0] in RECIPES]
    unfinished = [p.stem for p in paths if not finished(p)]
    if unfinished:
        print(f"not scored (training unfinished): {', '.join(unfinished)}", flush=True)
    rows = [score_run(p, *test, n=score_n) for p in paths if p.stem not in unfinished]
    report = {"conditions": conditions(torch.device(device)), "bfloat16": os.environ.get("AVAE_BFLOAT16", "auto"),
              "score": {"n": score_n, "seed": SCORE_SEED, "start": SCORE_START, "split": "test",
                        "search": "default preset, no pose net, float32"},
              "plain_epoch_seconds": plain_s, "runs": rows}  # fmt: skip
    timing = time_searches(recipes, train, test, time_n, device) if time_n else old.get("timing")
    if timing:
        report["timing"] = timing
    report["summary"] = summarize(rows, plain_s, timing=timing)
    report["choice"] = choose(rows, report["summary"])
    report_path.write_text(json.dumps(report, indent=1))
    print(format_summary(report["summary"], plain_s, report["choice"]))
    return report


def time_here(report_path: str | os.PathLike, recipes=tuple(RECIPES), n: int = 1280, repeats: int = 3,
              device="cpu") -> dict:  # fmt: skip
    """Time each recipe's later epoch against a plain one on this machine (:func:`time_searches`,
    ``repeats`` times, one after the other) and add the result to the report at ``report_path``
    under ``"timing_elsewhere"`` (one entry per machine, its conditions and the median ratio of
    each recipe to the plain epoch); the rest of the report is left as it is. Returns the entry."""
    from ..data.mnist import load_mnist

    report_path = Path(report_path)
    report = json.loads(report_path.read_text())
    train, test = load_mnist("train"), load_mnist("test")
    runs = [time_searches(recipes, train, test, n, device) for _ in range(repeats)]
    ratios = {name: sorted(r["recipes"][name] / r["plain"] for r in runs) for name in recipes}
    entry = {"conditions": conditions(torch.device(device)), "bfloat16": os.environ.get("AVAE_BFLOAT16", "auto"),
             "n": n, "repeats": repeats, "runs": runs,
             "later_vs_plain_median": {k: v[len(v) // 2] for k, v in ratios.items()},
             "later_vs_plain_range": {k: [v[0], v[-1]] for k, v in ratios.items()}}  # fmt: skip
    report.setdefault("timing_elsewhere", []).append(entry)
    report_path.write_text(json.dumps(report, indent=1))
    return entry


def describe(name: str) -> str:
    """Recipe ``name``'s search in the epochs after the first, in words."""
    from ..training.train import search_config

    cfg = recipe_config(name, 0)
    search = search_config(cfg, warm=cfg.warm_start)
    parts = []
    if cfg.warm_start:
        parts.append("last pose" + (f" +- {search.init_span:g} rad" if search.init_span else ""))
    if cfg.pose_online:
        parts.append("pose net's guess")
    if search.restarts:
        parts.append(f"grid of {search.restarts}")
    steps = f"{search.steps} parabolic step{'s' if search.steps != 1 else ''}" if search.steps else "no step"
    return ", ".join(parts) + "; " + steps


def _pm(mean: float, se: float, fmt: str = ".1f", sign: str = "") -> str:
    return f"{mean:{sign}{fmt}} ± {se:{fmt}}" if se == se else f"{mean:{sign}{fmt}}"


def table_rows(report: dict) -> list[dict]:
    """One row per recipe of a ``compare.json`` report, its figures as text (mean ± standard error
    over seeds; the difference to ``warm`` paired by seed)."""
    rows = []
    for r in report["summary"]:
        rows.append({
            "recipe": r["recipe"], "later epochs search": describe(r["recipe"]), "seeds": len(r["seeds"]),
            "passes, later": r["passes_later"], "x plain": r.get("later_vs_plain", float("nan")),
            "scored loss": _pm(r["score_loss"], r["score_loss_se"]),
            "minus warm": "–" if r["recipe"] == "warm" else _pm(r["vs_warm"], r["vs_warm_se"], ".2f", "+"),
            "history loss": _pm(r["history_test_loss"], r["history_test_loss_se"]),
        })  # fmt: skip
    return rows


def recipe_of(config: dict) -> str | None:
    """The recipe whose later-epoch search a recorded training ``config`` (a manifest's or a
    checkpoint's) used, or ``None``."""
    for name in RECIPES:
        want = recipe_config(name, 0)
        if config.get("warm_start", True) != want.warm_start or config.get("pose_online", False) != want.pose_online:
            continue
        got = config.get("align_warm", {})  # unused without the warm start
        if not want.warm_start or all(got.get(k) == want.align_warm[k] for k in ("restarts", "steps", "init_span")):
            return name
    return None


def structure_rows(report: dict, classes=(1, 6, 9)) -> list[dict]:
    """Per recipe: the median over classes of R1 (concentration on one pose) and R2 (on one
    axis), and R1 and R2 of ``classes``, each a mean over seeds ± its standard error."""
    rows = []
    for r in report["summary"]:
        runs = [x for x in report["runs"] if x["run"].rsplit("-s", 1)[0] == r["recipe"]]
        row = {"recipe": r["recipe"]}
        for stat in ("R1", "R2"):
            medians = [sorted(x[stat].values())[len(x[stat]) // 2] for x in runs]
            row[f"median {stat}"] = _pm(*_mean_se(medians), ".2f")
        for c in classes:
            for stat in ("R1", "R2"):
                row[f'{stat} of "{c}"'] = _pm(*r[stat][str(c)] if str(c) in r[stat] else r[stat][c], ".2f")
        rows.append(row)
    return rows
