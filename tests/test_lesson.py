"""avae_tutorial.training.timing: timing done right."""
from __future__ import annotations

import time

import pytest

from avae_tutorial.training.timing import time_it

pytestmark = pytest.mark.usefixtures("single_thread")


def test_time_it_warms_up_then_repeats():
    calls = []
    t = time_it(lambda: calls.append(1), "cpu", repeats=3, warmup=2)
    assert len(calls) == 5 and t >= 0


def test_time_it_is_the_median(monkeypatch):
    ticks = iter([0.0, 1.0, 1.0, 11.0, 11.0, 13.0])  # runs of 1 s, 10 s and 2 s
    monkeypatch.setattr(time, "perf_counter", lambda: next(ticks))
    assert time_it(lambda: None, "cpu", repeats=3, warmup=0) == 2.0


def test_time_it_measures_real_time():
    assert time_it(lambda: time.sleep(0.01), "cpu", repeats=2, warmup=0) >= 0.01


@pytest.mark.parametrize("repeats,warmup", [(0, 1), (2, -1), (1.5, 0)])
def test_time_it_rejects_bad_counts(repeats, warmup):
    with pytest.raises(ValueError):
        time_it(lambda: None, "cpu", repeats=repeats, warmup=warmup)
