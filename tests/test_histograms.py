"""Circular statistics (avae_tutorial/histograms.py) on synthetic von Mises, uniform and bimodal samples."""
import math

import numpy as np
import pytest
import torch

from avae_tutorial.lessons import histograms as h


def von_mises(mu: float, kappa: float, n: int = 2000, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.distributions.VonMises(torch.tensor(mu), torch.tensor(kappa)).sample((n,)).double()


def uniform(n: int = 2000, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 * math.pi - math.pi


def deg(a: float) -> float:
    return math.degrees(a)


def test_resultant_matches_complex_mean_reference():
    a = von_mises(0.7, 2.0, n=500, seed=3)
    for k in (1, 2, 3):
        m = np.exp(1j * k * a.numpy()).mean()
        R, mean = h.resultant(a, harmonic=k)
        assert R == pytest.approx(abs(m), abs=1e-12)
        assert mean == pytest.approx(np.angle(m) / k, abs=1e-12)


def test_concentrated_sample_has_R_near_one_and_its_mean():
    a = von_mises(1.0, 20.0)
    assert h.resultant_length(a) > 0.95
    assert deg(h.circular_mean(a)) == pytest.approx(deg(1.0), abs=2.0)
    assert h.rayleigh_pvalue(a) < 1e-100


def test_uniform_sample_has_R_near_zero():
    a = uniform()
    R = h.resultant_length(a)
    assert R < 4 * math.sqrt(math.pi / (4 * len(a)))  # a few times the expected value under uniformity
    assert h.resultant_length(a, harmonic=2) < 0.1
    assert h.rayleigh_pvalue(a) > 1e-3


def test_bimodal_180_apart_is_seen_by_doubled_angles_only():
    one = von_mises(0.5, 15.0, n=1000, seed=1)
    a = torch.cat([one, one + math.pi])  # two equal peaks 180 degrees apart
    assert h.resultant_length(a) < 0.05
    assert h.resultant_length(a, harmonic=2) > 0.8
    assert deg(h.circular_mean(a, harmonic=2)) % 180 == pytest.approx(deg(0.5), abs=2.0)
    modes, heights = h.find_modes(a)
    assert len(modes) == 2
    assert heights[1] / heights[0] > 0.8
    assert deg(float(h.angular_difference(modes[:1], modes[1:]))) == pytest.approx(180, abs=3)


def test_circular_mean_wraps_across_pi():
    a = torch.tensor([math.pi - 0.1, -math.pi + 0.1, math.pi - 0.05, -math.pi + 0.05])
    assert abs(abs(h.circular_mean(a)) - math.pi) < 1e-9  # an arithmetic mean would say 0
    assert h.resultant_length(a) > 0.99


def test_statistics_are_invariant_to_a_common_rotation():
    a = von_mises(0.3, 3.0, n=300, seed=2)
    for shift in (0.5, 2.0, -3.0):
        assert h.resultant_length(a + shift) == pytest.approx(h.resultant_length(a), abs=1e-9)
        moved = h.circular_mean(a + shift)
        assert float(h.angular_difference([moved], [h.circular_mean(a) + shift])[0]) < 1e-9


def test_angular_difference_wraps_and_is_symmetric():
    got = h.angular_difference(torch.tensor([math.radians(350), 0.0, 1.0]), torch.tensor([math.radians(10), math.pi, -1.0]))
    assert [round(deg(v)) for v in got.tolist()] == [20, 180, 115]
    assert torch.allclose(h.angular_difference([0.3, 2.0], [2.9, -2.5]), h.angular_difference([2.9, -2.5], [0.3, 2.0]))


@pytest.mark.parametrize("shift_deg", [60.0, 170.0, 180.0])
def test_mode_difference_recovers_the_shift_between_two_samples(shift_deg):
    a = von_mises(math.radians(150), 10.0, seed=4)  # near the wrap-around point
    b = von_mises(math.radians(150 + shift_deg), 10.0, seed=5)
    assert deg(h.mode_difference(a, b)) == pytest.approx(shift_deg, abs=4.0)


def test_density_integrates_to_one_and_peaks_at_the_mode():
    a = von_mises(-2.0, 8.0)
    grid, d = h.circular_density(a, bins=720, bandwidth_deg=5.0)
    assert float(d.sum() * (2 * math.pi / 720)) == pytest.approx(1.0, abs=1e-6)
    assert deg(float(grid[d.argmax()])) == pytest.approx(deg(-2.0), abs=3.0)


def test_uniform_sample_has_no_dominant_modes_but_a_single_spike_has_one():
    modes, _ = h.find_modes(torch.full((50,), 0.25))
    assert len(modes) == 1 and deg(float(modes[0])) == pytest.approx(deg(0.25), abs=1.0)
    _, heights = h.find_modes(uniform(), bandwidth_deg=20.0, min_height=0.0)
    assert float(heights.max()) < 1.5 / (2 * math.pi)  # a flat density stays close to 1 / (2 pi)


def test_class_statistics_rows_per_class():
    a = torch.cat([von_mises(0.0, 20.0, 400, seed=6), uniform(400, seed=7)])
    y = torch.cat([torch.zeros(400, dtype=torch.long), torch.ones(400, dtype=torch.long)])
    rows = h.class_statistics(a, y)
    assert [r["class"] for r in rows] == [0, 1] and [r["n"] for r in rows] == [400, 400]
    assert rows[0]["R1"] > 0.9 > 0.2 > rows[1]["R1"]
    assert abs(rows[0]["mean_deg"]) < 3 and abs(rows[0]["modes_deg"][0]) < 3
    with pytest.raises(ValueError, match="one label per angle"):
        h.class_statistics(a, y[:10])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="empty"):
        h.resultant_length([])
    with pytest.raises(ValueError, match="NaN"):
        h.circular_mean([0.0, float("nan")])
    with pytest.raises(ValueError, match="harmonic"):
        h.resultant([0.0], harmonic=0)
    with pytest.raises(ValueError, match="bins"):
        h.circular_density([0.0], bins=2)
    with pytest.raises(ValueError, match="min_height"):
        h.find_modes([0.0], min_height=2.0)


def test_circular_std_matches_the_linear_std_of_a_narrow_peak_and_grows_with_spread():
    a = von_mises(2.5, 400.0, n=4000, seed=8)  # narrow: close to a normal with sigma 1/sqrt(kappa) = 0.05 rad
    assert h.circular_std(a) == pytest.approx(float(a.std()), rel=0.05)
    assert h.circular_std(torch.full((5,), 1.0)) == 0.0
    assert h.circular_std(von_mises(0.0, 2.0)) > h.circular_std(von_mises(0.0, 20.0))
    assert h.circular_std([0.0, math.pi]) == math.inf
    two = torch.cat([a, a + math.pi])
    assert h.circular_std(two, harmonic=2) == pytest.approx(float(a.std()), rel=0.05)


def test_perturbation_angles_are_the_training_loops_draw():
    from avae_tutorial.lessons.histograms import perturbation_angles
    from avae_tutorial.training.train import epoch_angles
    from avae_tutorial.transforms import wrap_angle

    a = perturbation_angles(500, seed=3)
    assert a.shape == (500,) and float(a.min()) >= -math.pi and float(a.max()) < math.pi
    torch.testing.assert_close(a, wrap_angle(epoch_angles(500, 3, 0)))
    assert not torch.equal(a, perturbation_angles(500, seed=3, epoch=1))
    assert h.resultant_length(a) < 0.15  # uniform: no preferred direction


def test_statistics_by_epoch_rows():
    from avae_tutorial.lessons.histograms import statistics_by_epoch

    labels = torch.tensor([0, 0, 1, 1])
    orientation = torch.tensor([[0.0, math.pi / 2, 0.0, math.pi], [0.3, 0.3, 1.0, 1.0]])
    rows = statistics_by_epoch(orientation, labels, first_epoch=0)
    assert [(r["epoch"], r["class"], r["n"]) for r in rows] == [(0, 0, 2), (0, 1, 2), (1, 0, 2), (1, 1, 2)]
    r = {(x["epoch"], x["class"]): x for x in rows}
    assert r[0, 0]["R1"] == pytest.approx(math.sqrt(2) / 2)
    assert r[0, 1]["R1"] == pytest.approx(0, abs=1e-6) and r[0, 1]["R2"] == pytest.approx(1)
    assert r[1, 0]["R1"] == pytest.approx(1) and r[1, 1]["R2"] == pytest.approx(1)
    with pytest.raises(ValueError, match="expected shape"):
        statistics_by_epoch(orientation, torch.tensor([0, 1]))
