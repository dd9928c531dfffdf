"""Surface distances against an independent implementation (MedPy) and known answers."""
import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from autoseg.evaluation.surface import boundary, surface_metrics


def test_known_answer_shifted_square():
    a = np.zeros((1, 20, 20), bool)
    b = np.zeros((1, 20, 20), bool)
    a[0, 5:10, 5:10] = True
    b[0, 5:10, 7:12] = True  # shifted 2 voxels along x, spacing 0.5 mm -> 1 mm
    m = surface_metrics(a, b, (10.0, 1.0, 0.5))
    assert m["hd95_mm"] == pytest.approx(1.0)
    assert 0 < m["assd_mm"] < 1.0


def test_empty_cases_are_defined():
    z = np.zeros((3, 4, 5), bool)
    one = z.copy()
    one[1, 2, 2] = True
    assert surface_metrics(z, z, (1, 1, 1)) == {"hd95_mm": None, "assd_mm": None, "flag": "both empty"}
    m = surface_metrics(z, one, (2.0, 1.0, 1.0))
    assert m["flag"] == "prediction empty" and m["hd95_mm"] == pytest.approx(np.sqrt(36 + 16 + 25))
    assert surface_metrics(one, one, (1, 1, 1))["hd95_mm"] == 0.0


def test_boundary_is_face_connected_shell():
    m = np.zeros((5, 5, 5), bool)
    m[1:4, 1:4, 1:4] = True
    assert boundary(m).sum() == 26  # 27 voxels minus the one with all six face neighbours inside


@pytest.mark.parametrize("seed", range(6))
def test_against_medpy_on_random_anisotropic_shapes(seed):
    medpy = pytest.importorskip("medpy.metric.binary", reason="MedPy is a test-only dependency")
    surface_distances = getattr(medpy, "__surface_distances")
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(6, 12)), 40, 36)
    spacing = (float(rng.uniform(3, 10)), float(rng.uniform(0.5, 2)), float(rng.uniform(0.5, 2)))

    def blob():
        m = np.zeros(shape, bool)
        for _ in range(3):
            c = [rng.integers(2, s - 2) for s in shape]
            m[tuple(c)] = True
        return binary_dilation(m, iterations=int(rng.integers(2, 6)))

    a, b = blob(), blob()
    ours = surface_metrics(a, b, spacing)
    d_ab = surface_distances(a, b, spacing, 1)
    d_ba = surface_distances(b, a, spacing, 1)
    assert ours["hd95_mm"] == pytest.approx(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)), rel=1e-6)
    assert ours["assd_mm"] == pytest.approx(np.concatenate([d_ab, d_ba]).mean(), rel=1e-6)
    assert max(d_ab.max(), d_ba.max()) == pytest.approx(medpy.hd(a, b, spacing, 1), rel=1e-6)
