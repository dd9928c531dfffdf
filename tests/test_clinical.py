import numpy as np
import pytest

from autoseg.evaluation.clinical import agreement, short_axis_indices, simpson_biplane_ml, volume_ml


def _ellipse(shape, center, a, b, spacing, angle=0.0):
    yy, xx = np.meshgrid(np.arange(shape[0]) * spacing[0], np.arange(shape[1]) * spacing[1], indexing="ij")
    y, x = yy - center[0], xx - center[1]
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * y + s * x, -s * y + c * x
    return (u / a) ** 2 + (v / b) ** 2 <= 1


@pytest.mark.parametrize("a,c,angle", [(20.0, 45.0, 0.0), (25.0, 40.0, 0.4), (15.0, 50.0, -0.8)])
def test_simpson_biplane_on_prolate_ellipsoid(a, c, angle):
    """Both apical views of a prolate ellipsoid (semi-axes a, a, c) are ellipses with semi-axes (c, a):
    the volume must be 4/3 pi a^2 c."""
    sp = (0.3, 0.3)
    m2 = _ellipse((400, 400), (60, 60), c, a, sp, angle)
    m4 = _ellipse((400, 400), (60, 60), c, a, sp, -angle)
    truth = 4 / 3 * np.pi * a * a * c / 1000
    assert simpson_biplane_ml(m2, sp, m4, sp) == pytest.approx(truth, rel=0.02)


def test_simpson_biplane_oblate_two_views_differ():
    """Ellipsoid with semi-axes (a, b, c): 2CH shows (c, a), 4CH (c, b)."""
    sp = (0.25, 0.25)
    a, b, c = 18.0, 26.0, 45.0
    v = simpson_biplane_ml(_ellipse((480, 480), (60, 60), c, a, sp), sp, _ellipse((480, 480), (60, 60), c, b, sp), sp)
    assert v == pytest.approx(4 / 3 * np.pi * a * b * c / 1000, rel=0.02)


def test_short_axis_indices_and_volume():
    m = np.zeros((10, 20, 20), bool)
    m[:, :10, :10] = True
    assert volume_ml(m, (10.0, 1.0, 1.0)) == pytest.approx(10.0)  # 1000 voxels x 10 mm^3
    idx = short_axis_indices({"LV": 150.0, "RV": 160.0, "MYO": 100.0}, {"LV": 60.0, "RV": 80.0, "MYO": 98.0})
    assert idx["LV_EF_pct"] == pytest.approx(60.0) and idx["LV_SV_ml"] == pytest.approx(90.0)
    assert idx["RV_EF_pct"] == pytest.approx(50.0) and idx["MYO_mass_g"] == pytest.approx(105.0)


def test_agreement_statistics():
    ref = [50.0, 60.0, 70.0, 40.0]
    pred = [52.0, 61.0, 73.0, 40.0]
    ag = agreement(pred, ref)
    d = np.array([2, 1, 3, 0.0])
    assert ag["bias"] == pytest.approx(1.5) and ag["mae"] == pytest.approx(1.5)
    assert ag["loa_high"] == pytest.approx(1.5 + 1.96 * d.std(ddof=1))
    assert ag["pearson_r"] == pytest.approx(np.corrcoef(pred, ref)[0, 1])
    assert agreement([None], [1.0])["n"] == 0
