"""benchmarks/interspinous_space.py: the interspinous space on real sagittal T2w and on the phantom."""

from __future__ import annotations

from pathlib import Path

import pytest

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"


@pytest.mark.skipif(not REAL.is_dir(), reason="needs ../shared/data/real")
def test_phantom_interspinous_space_as_bright_as_the_real_ones(tmp_path, run_benchmark):
    r = run_benchmark("interspinous_space", tmp_path, "--subjects", "1", "--modes", "classic",
                      "--figure", str(tmp_path), timeout=300)
    real = r["real"]
    for scan in real.values():  # between bone and the brightest fat, and the boxes agree with each other
        assert 0.3 < scan["isl_fat"] < 0.9
        assert max(scan["boxes_over_csf"]) < 1.2 * min(scan["boxes_over_csf"])
    ph = r["phantom"]["classic"]
    assert ph["isl_csf"] > 1.5 * ph["muscle_csf"]  # not muscle-dark: 25 % fat drew it at muscle's level
    assert abs(ph["isl_fat"] - min(s["isl_fat"] for s in real.values())) < 0.1
    assert (tmp_path / "interspinous_boxes.png").stat().st_size > 10_000
