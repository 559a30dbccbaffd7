"""benchmarks/erasure_sensitivity.py --quick: each lesion deleted in turn from the real STIR, the check scored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_erasure_sensitivity_quick(tmp_path, run_benchmark):
    r = run_benchmark("erasure_sensitivity", tmp_path, "--quick", timeout=600)
    assert r["benchmark"] == "erasure_sensitivity" and r["image_under_test"] == "real STIR"
    t1, t2 = r["modes"]["t1w"], r["modes"]["t2w"]
    # the known case: PLC, cord, prevertebral and disc injury are T2w-visible; with the T1w every deletion is found
    assert t1["pooled"]["n"] >= 3 and t1["pooled"]["k"] == t1["pooled"]["n"]
    assert t1["missing_flags_per_volume_unmodified"] == 0  # quiet on the real STIR itself
    assert t1["pooled"]["ci_low"] < 1.0 and set(t1["per_class"]) == {t["class"] for t in t1["trials"]}
    assert t2["per_class"]["prevertebral_edema"]["k"] == 1  # T2w alone still finds the deleted prevertebral edema
    assert len(t2["trials"]) == len(t1["trials"])


def test_erasure_sensitivity_refuses_unknown_modes():
    proc = subprocess.run([sys.executable, str(BENCH / "erasure_sensitivity.py"), "--quick", "--modes", "t3w"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "--modes" in proc.stderr


def test_erasure_sensitivity_names_a_missing_data_folder_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "erasure_sensitivity.py"), "--data", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "nope" in proc.stderr and "no such dataset" in proc.stderr
