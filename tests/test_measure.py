"""avae_tutorial.training.measure: the standard error every report shares."""
from __future__ import annotations

import math

import pytest
import torch

from avae_tutorial.training.measure import standard_error


def test_standard_error_is_the_sample_sd_over_root_n():
    v = torch.tensor([1.0, 2.0, 4.0, 7.0], dtype=torch.float64)
    assert standard_error(v) == pytest.approx(float(v.std()) / 2)  # sample sd (n - 1), over sqrt(4)


def test_standard_error_of_fewer_than_two_values_is_nan():
    assert math.isnan(standard_error(torch.tensor([3.0])))
    assert math.isnan(standard_error(torch.tensor([])))
