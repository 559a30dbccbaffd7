"""benchmarks/protocol_ceiling.py: the same subjects with the STIR at one fixed TE, scored as a prediction."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from synthseq.io import load_volume, save_volume

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_protocol_ceiling_quick(tmp_path, run_benchmark):
    work = tmp_path / "w"
    r = run_benchmark("protocol_ceiling", tmp_path, "--quick", "--work", str(work), timeout=600)
    assert r["benchmark"] == "protocol_ceiling" and len(r["subjects"]) == 3
    assert all(35.0 <= te <= 60.0 for te in r["stir_te_drawn_ms"].values())
    ssim = r["ceiling"]["ssim"]
    assert ssim["n"] == 3 and 0.3 < ssim["mean"] < 1.0  # the same anatomy and noise, another TE: close, not equal
    for sid in r["subjects"]:  # inputs copied unchanged, the STIR re-acquired at the fixed TE
        a, b = work / "phantom" / sid, work / "fixed_te" / sid
        assert (a / f"{sid}_T2w.nii.gz").read_bytes() == (b / f"{sid}_T2w.nii.gz").read_bytes()
        stir_a, stir_b = (load_volume(f / f"{sid}_STIR.nii.gz").data for f in (a, b))
        assert not np.array_equal(stir_a, stir_b)
    assert json.loads((work / "fixed_te" / "dataset.json").read_text())["stir_te_ms"] == 47.5
    # blind ceiling: the mean of 4 re-acquisitions with the STIR's protocol and noise redrawn, in the T2w's scale
    assert r["blind_redraws"] == 4 and r["blind_ceiling"]["ssim"]["n"] == 3
    from scipy import ndimage

    from synthseq.data.preprocess import Preprocessor

    sid, pre = r["subjects"][0], Preprocessor()
    folder = work / "phantom" / sid
    t2w, labels = (load_volume(folder / f"{sid}_{k}.nii.gz", allow_zero=True) for k in ("T2w", "labels"))
    blind = load_volume(work / "blind" / sid / f"{sid}_pseudoSTIR.nii.gz")
    assert blind.shape == t2w.shape and np.allclose(blind.affine, t2w.affine)
    body = labels.data > 0
    mean_n = pre.apply(blind.data, pre.fit(t2w.data))
    target_n = pre(load_volume(folder / f"{sid}_STIR.nii.gz").data, mask=body)[0]
    csf = labels.data == 10
    assert abs(mean_n[csf].mean() - target_n[csf].mean()) < 0.15  # the same physics on average
    air = ndimage.binary_erosion(~body, np.ones((3, 3, 1)), iterations=3)
    assert mean_n[air].std() < 0.75 * target_n[air].std()  # 4 noise draws averaged: about half the noise


def test_protocol_ceiling_refuses_a_dataset_it_cannot_regenerate(tmp_path):
    from synthseq.phantom import generate_dataset

    data = generate_dataset(tmp_path / "ph", subjects=1, preset="tiny", progress=False)
    t2 = data / "sub-0001" / "sub-0001_T2w.nii.gz"
    vol = load_volume(t2)
    save_volume(vol.with_data(vol.data * 1.01), t2, overwrite=True)  # no longer what the generator writes
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"train": [], "val": [], "test": ["sub-0001"]}))
    proc = subprocess.run([sys.executable, str(BENCH / "protocol_ceiling.py"), "--data", str(data), "--splits",
                           str(splits), "--work", str(tmp_path / "w")], capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and str(t2) in proc.stderr and "differs" in proc.stderr
