"""The paper's Table 1 next to ours: what can be compared is the ordering of the rows (chapter 3).

The paper's loss (a summed squared error on normalized images plus the KL term) is not ours (a
Bernoulli loss on pixels in [0, 1]); each has its own floor, so neither values nor ratios carry
over. :func:`compare_table1` pairs each of the paper's rows with the model of ours that plays its
part and counts the pairs of rows that the two tables put in the same order.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Mapping

__all__ = ["TABLE1", "Table1Comparison", "compare_table1", "MIN_GAP"]

#: The paper's Table 1 (latent size 8, mean loss over 0-160 degrees in steps of 20), keyed by the
#: shipped model that plays the row's part and whether it is searched:
#: ``(model, searched) -> (the paper's model, its training data, its loss or None)``.
TABLE1: dict[tuple[str, bool], tuple[str, str, float | None]] = {
    ("avae-transopt", True): ("AVAE, optimized during training", "random rotations", 601.2),
    ("vae-upright", True): ("AVAE", "upright", 608.6),
    ("vae-rotated", True): ("AVAE", "random rotations", 609.8),
    ("vae-upright", False): ("VAE", "upright", 684.4),
    ("vae-rotated", False): ("VAE", "random rotations", None),
    ("avae-transopt", False): ("VAE trained with alignment, no search", "random rotations", None),
}

#: Two of the paper's rows count as ordered only when their losses differ by at least this share
#: (its 608.6 against 609.8 is 0.2%: within what another training run could change).
MIN_GAP = 0.01

#: :func:`avae_tutorial.lessons.plotting.markdown_table`'s column formats for :attr:`Table1Comparison.rows`.
COLUMNS = {"model": "", "training data": "", "ours": "", "loss (nats)": ".1f", "paper's loss": ".1f"}


@dataclass(frozen=True)
class Table1Comparison:
    """``rows``: one dict per paper row (:data:`COLUMNS`); ``ordering``: our rows that have a
    loss, best first; ``pairs``: pairs of rows the paper orders (both with a loss on both sides);
    ``agree``: of them, those ours orders the same way; ``ties``: pairs the paper's losses do not
    separate (less than :data:`MIN_GAP` apart), left out of ``pairs``."""

    rows: list[dict]
    ordering: list[str]
    pairs: int
    agree: int
    ties: int = 0

    def summary(self, width: int = 86) -> str:
        """Our ordering (wrapped to ``width``) and the count of agreeing pairs, as printed lines."""
        order = textwrap.fill(" < ".join(self.ordering), width, initial_indent="  ", subsequent_indent="  ",
                              break_on_hyphens=False)  # fmt: skip
        tie = f"\n(and {self.ties} within {MIN_GAP:.0%} of each other in the paper: not an ordering)" if self.ties else ""
        return f"our ordering, best first:\n{order}\npairs of rows the paper orders: {self.pairs}; " \
               f"ours in the same order: {self.agree}{tie}"  # fmt: skip


def compare_table1(ours: Mapping[tuple[str, bool], float]) -> Table1Comparison:
    """Our losses ``ours`` (``(model, searched) -> mean loss over 0-160 degrees``, e.g. the rows of
    ``table1.csv``) next to :data:`TABLE1`: rows the paper has no counterpart for (other models)
    are left out, rows of ours that are missing stay blank."""
    if not all(isinstance(k, tuple) and len(k) == 2 for k in ours):
        raise ValueError(f"ours: expected (model, searched) keys, got {sorted(map(repr, ours))[:3]}")
    rows = [{"model": model, "training data": data, "ours": f"`{key[0]}`" + (" + search" if key[1] else ""),
             "loss (nats)": ours.get(key), "paper's loss": paper}
            for key, (model, data, paper) in TABLE1.items()]  # fmt: skip
    known = sorted((r for r in rows if r["loss (nats)"] is not None), key=lambda r: r["loss (nats)"])
    rated = [k for k in TABLE1 if k in ours and TABLE1[k][2] is not None]
    pairs = [(a, b) for a in rated for b in rated if TABLE1[a][2] < TABLE1[b][2]]
    apart = [(a, b) for a, b in pairs if TABLE1[b][2] - TABLE1[a][2] >= MIN_GAP * TABLE1[a][2]]
    return Table1Comparison(rows, [r["ours"] for r in known], len(apart), sum(ours[a] < ours[b] for a, b in apart),
                            len(pairs) - len(apart))
