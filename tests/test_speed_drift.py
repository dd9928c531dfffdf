"""benchmarks/speed_drift.py: how far windows of consecutive step timings part from the run's mean (issue 25)."""
import statistics

import pytest

from benchmarks.speed_drift import cpu_ticks, spread

pytestmark = pytest.mark.timeout(30)


def test_longer_windows_average_out_a_machine_that_alternates_between_two_speeds():
    steps = [1.0, 1.0, 1.3, 1.3]  # mean 1.15: every single window is 13% off it
    n, sd, beyond = spread(steps, 1)
    assert (n, beyond) == (4, 1.0) and sd == pytest.approx(statistics.stdev(steps) / 1.15)
    n, sd, beyond = spread(steps, 2)  # means 1.0, 1.15, 1.3: the middle one is on the mean
    assert (n, beyond) == (3, pytest.approx(2 / 3)) and sd == pytest.approx(0.15 / 1.15)
    assert spread(steps, 4)[1:] == (0.0, 0.0)
    assert spread(steps, 5) is None  # too few windows for that length


def test_stolen_ticks_are_part_of_all_ticks():
    total, steal = cpu_ticks()
    assert 0 <= steal <= total
