"""The paper's Table 1 next to ours: rows, ordering and the agreement count."""
import pytest

from avae_tutorial.lessons import paper
from avae_tutorial.lessons.plotting import markdown_table


def test_orderings_agree_and_disagree():
    ours = {("avae-transopt", True): 116.0, ("vae-upright", True): 119.0, ("vae-rotated", True): 137.0,
            ("vae-upright", False): 150.0}
    cmp = paper.compare_table1(ours)
    assert (cmp.pairs, cmp.agree, cmp.ties) == (5, 5, 1)  # the paper's 608.6 and 609.8: 0.2% apart, a tie
    assert cmp.ordering == ["`avae-transopt` + search", "`vae-upright` + search", "`vae-rotated` + search",
                            "`vae-upright`"]
    swapped = paper.compare_table1({**ours, ("vae-rotated", True): 118.0})  # before vae-upright + search: a tie
    assert (swapped.pairs, swapped.agree) == (5, 5)
    worse = paper.compare_table1({**ours, ("vae-rotated", True): 115.0})  # now before avae-transopt + search
    assert (worse.pairs, worse.agree) == (5, 4)


def test_missing_rows_are_blank_and_not_counted():
    cmp = paper.compare_table1({("vae-upright", True): 119.0, ("vae-upright", False): 150.0})
    assert (cmp.pairs, cmp.agree) == (1, 1)
    assert len(cmp.rows) == len(paper.TABLE1)
    assert sum(r["loss (nats)"] is None for r in cmp.rows) == len(paper.TABLE1) - 2
    table = markdown_table(cmp.rows, paper.COLUMNS)
    assert "| 119.0 |" in table and "608.6" in table


def test_summary_lines_fit():
    ours = {k: 100.0 + i for i, k in enumerate(paper.TABLE1)}
    lines = paper.compare_table1(ours).summary().splitlines()
    assert lines[0] == "our ordering, best first:" and lines[-2].endswith("ours in the same order: 5")
    assert lines[-1].startswith("(and 1 within 1% of each other")
    assert max(map(len, lines)) <= 88


def test_models_without_a_paper_row_are_left_out():
    ours = {("vae-upright", True): 119.0, ("vae-upright", False): 150.0, ("avae-transopt-warm", True): 1.0}
    cmp = paper.compare_table1(ours)
    assert all("warm" not in r["ours"] for r in cmp.rows) and len(cmp.ordering) == 2
    with pytest.raises(ValueError, match="ours"):
        paper.compare_table1({"vae-upright": 1.0})
