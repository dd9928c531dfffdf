"""benchmarks/speed_drift.py: how far windows of consecutive step timings part from the run's mean (issue 25)."""
import statistics

import pytest

from benchmarks.speed_drift import cpu_ticks, forecast, spread

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


def test_a_window_forecasts_the_minutes_after_it_not_the_whole_run():
    """A machine that runs 1.0 s steps, then 1.3 s ones: a window on the fast part just before the change forecasts
    the slow minutes after it 23% off, one further back 13% off, and a window inside the slow part is exact."""
    steps = [1.0, 1.0, 1.3, 1.3, 1.3]
    n, beyond, med, worst = forecast(steps, 1, 2)  # 1.0 vs (1.0, 1.3); 1.0 vs (1.3, 1.3); 1.3 vs (1.3, 1.3)
    assert n == 3 and beyond == pytest.approx(2 / 3)
    assert worst == pytest.approx(1 - 1.0 / 1.3) and med == pytest.approx(1 - 1.0 / 1.15)
    assert forecast(steps, 2, 4) is None  # too short for a 2-window forecast of 4 windows
    off = pytest.approx(1 - 1 / 1.225)  # 1.0 against (1.0, 1.3, 1.3, 1.3)
    assert forecast(steps, 1, 4) == (1, 1.0, off, off)
