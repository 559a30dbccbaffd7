"""`synthseq dataset check`: per-subject QC, flags for a shifted pair and a swapped contrast, the report, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from synthseq.cli import main
from synthseq.data.layout import load_subjects
from synthseq.data.qc import check_subject, checkerboard


def _neck(shape=(10, 100, 96), seed=0):
    """(t2w, stir): a textured body with a subcutaneous fat rim (bright on T2w, suppressed on STIR) and a bright
    fluid core (bright on both)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    r = np.sqrt((grid[0] / 1.5) ** 2 + (grid[1] / 0.8) ** 2 + (grid[2] / 0.85) ** 2)
    body, fat, core = r < 1, (r < 1) & (r > 0.85), np.hypot(grid[1], grid[2]) < 0.1
    tex = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    tex = (tex - tex.min()) / np.ptp(tex)
    t2w = np.where(body, 250 + 200 * tex, 3) + np.where(fat, 600, 0) + np.where(core & body, 900, 0)
    stir = np.where(body, 200 + 150 * tex, 3) - np.where(fat, 170, 0) + np.where(core & body, 1000, 0)
    noise = np.abs(rng.normal(0, 3, (2, *shape)))
    return (t2w + noise[0]).astype(np.float32), (stir + noise[1]).astype(np.float32)


def _layout(h, root, n=3):
    affine = np.diag([1.2, 1.0, 1.0, 1.0])
    for i in range(n):
        sid = f"sub-{i + 1:02d}"
        t2w, stir = _neck(seed=i)
        if sid == "sub-02":  # the STIR is shifted by 4 voxels (4 mm) anterior-posterior against its T2w
            stir = np.roll(stir, 4, axis=1)
        if sid == "sub-03":  # the two files were swapped
            t2w, stir = stir, t2w
        h.write_nifti(root / sid / f"{sid}_T2w.nii.gz", t2w, affine)
        h.write_nifti(root / sid / f"{sid}_STIR.nii.gz", stir, affine)
    h.write_nifti(root / "sub-04" / "sub-04_T2w.nii.gz", _neck(seed=4)[0], affine)  # no target
    return root


def test_check_flags_shifted_pair_and_swapped_contrast(h, tmp_path):
    subjects = {s.id: s for s in load_subjects(_layout(h, tmp_path / "d"))}
    good = check_subject(subjects["sub-01"])
    assert good.usable and good.flags == []
    assert good.sequences["T2w"]["fat_index"] > 1.5 and good.sequences["STIR"]["fat_index"] < 0.8
    assert good.sequences["T2w"]["shape"] == [10, 100, 96] and good.sequences["T2w"]["spacing_mm"] == [1.2, 1.0, 1.0]
    assert good.sequences["T2w"]["orientation"] == "RAS" and good.pair["overlap"] == 1.0
    assert good.pair["shift_mm"] < 1.0 and good.checkerboard.shape == (96, 100)  # sagittal: (S-I, A-P)

    shifted = check_subject(subjects["sub-02"])
    assert not shifted.usable and len(shifted.errors) == 1
    assert shifted.errors[0].startswith("misregistered pair: rigid refinement moves the STIR")
    assert 3.0 < shifted.pair["shift_mm"] < 5.0 and shifted.pair["ncc_after"] > shifted.pair["ncc_before"] + 0.05
    relaxed = check_subject(subjects["sub-02"], register=True)  # the run will refine it: a warning only
    assert relaxed.usable and "data.register=true refines it" in relaxed.flags[0][1]

    swapped = check_subject(subjects["sub-03"])
    assert not swapped.usable
    assert swapped.errors == [e for e in swapped.errors if "suspected wrong contrast: fat is darker on the T2w" in e]
    assert len(swapped.errors) == 1 and "swapped or mislabelled?" in swapped.errors[0]
    assert swapped.sequences["T2w"]["fat_index"] < 0.8 < 1.5 < swapped.sequences["STIR"]["fat_index"]

    no_target = check_subject(subjects["sub-04"])
    assert no_target.usable and no_target.flags[0][0] == "warn" and "no STIR (no target)" in no_target.flags[0][1]


def test_pair_checks_use_the_t2w_when_a_t1w_comes_first(h, tmp_path):
    """With data.input_keys=[T1w, T2w] the contrast and registration checks still read the T2w (the grid synthesize
    writes on): a swapped T2w / STIR pair is still caught, a good pair still passes."""
    root = _layout(h, tmp_path / "d")
    affine = np.diag([1.2, 1.0, 1.0, 1.0])
    for i, sid in enumerate(("sub-01", "sub-02", "sub-03")):
        t2w, _ = _neck(seed=i)
        h.write_nifti(root / sid / f"{sid}_T1w.nii.gz", (t2w.max() + 10 - t2w).astype(np.float32), affine)
    subjects = {s.id: s for s in load_subjects(root)}
    keys = ("T1w", "T2w")
    good = check_subject(subjects["sub-01"], keys)
    assert good.usable and good.sequences["T2w"]["fat_index"] > 1.5 and good.pair["shift_mm"] < 1.0
    assert not check_subject(subjects["sub-02"], keys).usable  # the STIR shifted against its T2w
    swapped = check_subject(subjects["sub-03"], keys)
    assert not swapped.usable and "fat is darker on the T2w" in swapped.errors[0]


def test_tissue_labels_give_the_body_of_the_contrast_indices(h, tmp_path, monkeypatch):
    from synthseq.data import qc

    t2w, stir = _neck()
    body = qc.body_mask_from_intensity(t2w)  # right on this image: the labels' body
    affine = np.diag([1.2, 1.0, 1.0, 1.0])
    for sid, labels in (("sub-01", True), ("sub-02", False)):
        h.write_nifti(tmp_path / sid / f"{sid}_T2w.nii.gz", t2w, affine)
        h.write_nifti(tmp_path / sid / f"{sid}_STIR.nii.gz", stir, affine)
        if labels:  # muscle (3) wherever the body is
            h.write_nifti(tmp_path / sid / f"{sid}_labels.nii.gz", np.where(body, 3, 0).astype(np.uint8), affine,
                          np.uint8)
    # an intensity estimate that misses the outer body (as on a randomized-contrast phantom): its shell is muscle
    monkeypatch.setattr(qc, "body_mask_from_intensity", lambda data: ndimage.binary_erosion(body, np.ones((1, 3, 3)), iterations=10))
    subjects = {s.id: s for s in load_subjects(tmp_path)}
    with_labels, estimated = check_subject(subjects["sub-01"]), check_subject(subjects["sub-02"])
    assert with_labels.sequences["T2w"]["fat_index"] > 1.5 and with_labels.sequences["STIR"]["fat_index"] < 0.8
    assert estimated.sequences["T2w"]["fat_index"] < 1.2  # the shell missed the fat rim


def test_checkerboard_alternates_tiles():
    a, b = np.zeros((8, 8)), np.ones((8, 8))
    board = checkerboard(a, b, tiles=2)
    assert board[0, 0] == 0 and board[0, 7] == 1 and board[7, 0] == 1 and board[7, 7] == 0


def test_dataset_check_command_writes_report_and_exits_1_naming_unusable(h, tmp_path, capsys):
    data = _layout(h, tmp_path / "d")
    out = tmp_path / "qc"
    assert main(["dataset", "check", str(data), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert [ln.split(":")[2].strip() for ln in lines] == ["sub-02", "sub-03"]
    assert all(ln.startswith("synthseq: unusable: ") for ln in lines)
    assert "4 subject(s) checked, 2 unusable" in captured.out
    report = json.loads((out / "qc.json").read_text())
    assert report["unusable"] == ["sub-02", "sub-03"] and len(report["subjects"]) == 4
    page = (out / "index.html").read_text()
    assert "sub-02.png" in page and "misregistered pair" in page and (out / "sub-01.png").is_file()
    assert not (out / "sub-04.png").exists()  # no pair, no overlay
    # the same folder again: refused (exit 2, one line, nothing changed)
    before = (out / "qc.json").read_text()
    assert main(["dataset", "check", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("synthseq: error: ") and "already exists" in err and err.count("\n") == 1
    assert (out / "qc.json").read_text() == before


@pytest.mark.parametrize("extra, phrase", [
    (["--bids", "STIR"], "--bids STIR: expected KEY=PATTERN"),
    (["--slice-plane", "oblique"], "--slice-plane: expected one of"),
])
def test_dataset_check_bad_arguments(h, tmp_path, capsys, extra, phrase):
    data = _layout(h, tmp_path / "d", n=1)
    assert main(["dataset", "check", str(data), "--out", str(tmp_path / "qc"), *extra]) == 2
    err = capsys.readouterr().err
    assert phrase in err and err.count("\n") == 1 and not (tmp_path / "qc").exists()
    assert main(["dataset", "check", str(tmp_path / "missing"), "--out", str(tmp_path / "qc")]) == 2
    assert "no such dataset folder" in capsys.readouterr().err and not (tmp_path / "qc").exists()
