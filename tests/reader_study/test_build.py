"""Case-set builder: pairing, windowing, slice choice, blinding, lesion truth, determinism per seed."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from synthseq.data.slicing import SagittalView
from synthseq.errors import ConfigError, InputError
from synthseq.reader_study import build_study, layout, read_key
from synthseq.reader_study.build import MID_HALF_WIDTH, select_slices


def _by_case(study: Path) -> dict[tuple[str, str], dict[str, bytes]]:
    """(subject, source) -> the case folder's files, so two builds can be compared whatever the IDs."""
    return {(r["subject"], r["source"]): {p.name: p.read_bytes() for p in (study / "cases" / r["case_id"]).iterdir()}
            for r in read_key(study)}


def test_same_seed_same_cases_but_fresh_secret_ids_and_orders(inputs, built_study, tmp_path):
    again = tmp_path / "again"
    build_study(inputs["real"], inputs["synthetic"], again, ["R1", "R2"], lesions=inputs["lesions"], seed=3)
    # The rendering is deterministic: every case's files are byte-identical to the first build's ...
    assert _by_case(again) == _by_case(built_study)
    # ... but case IDs and reading orders come from the OS's secret source, not from the seed.
    m1 = json.loads((built_study / "manifest.json").read_text())
    m2 = json.loads((again / "manifest.json").read_text())
    assert set(m1["cases"]).isdisjoint(m2["cases"])
    assert all(layout.CASE_ID_RE.match(c) for c in m2["cases"])
    key = {r["case_id"]: (r["subject"], r["source"]) for build in (built_study, again) for r in read_key(build)}
    orders = [[key[c] for r in ("R1", "R2") for c in m["readers"][r]] for m in (m1, m2)]
    assert orders[0] != orders[1]  # equal by chance with probability < 1e-4 (two readers, 6 cases each)


def test_layout_key_and_orders(rs, built_study):
    manifest = json.loads((built_study / "manifest.json").read_text())
    key = read_key(built_study)
    assert len(key) == 2 * len(rs.SUBJECTS) == len(manifest["cases"])
    assert sorted((r["subject"], r["source"]) for r in key) == sorted(
        (s, src) for s in rs.SUBJECTS for src in ("real", "synthetic"))
    # Each reader reads every case once, in their own order.
    orders = manifest["readers"]
    assert set(orders) == {"R1", "R2"}
    for order in orders.values():
        assert sorted(order) == sorted(manifest["cases"])
    assert orders["R1"] != orders["R2"]
    # The manifest (what readers may see) says nothing about subjects, sources or truth.
    text = (built_study / "manifest.json").read_text()
    for word in ("sub-", "real", "synthetic", "STIR", "lesion_truth_", str(built_study.parent)):
        assert word not in text.replace('"has_lesion_truth"', "")
    for case_id, info in manifest["cases"].items():
        files = sorted(p.name for p in (built_study / "cases" / case_id).iterdir())
        assert files == [f"slice_{i:03d}.png" for i in range(info["n_slices"])] + ["stack.nii"]


def test_same_window_rule_hides_intensity_scale(rs, built_study, inputs):
    """synthetic = 3 * real + 7: a percentile window per volume makes both cases' pixels identical."""
    key = read_key(built_study)
    by_subject = {}
    for row in key:
        stack = nib.load(str(built_study / "cases" / row["case_id"] / "stack.nii"))
        by_subject.setdefault(row["subject"], {})[row["source"]] = np.asarray(stack.dataobj)
    for subject, pair in by_subject.items():
        np.testing.assert_allclose(pair["real"], pair["synthetic"], atol=1e-5)
        # and the values are the real volume windowed at its own 1st/99th percentile, canonical slices
        real = np.asarray(nib.load(str(inputs["real"] / subject / f"{subject}_STIR.nii.gz")).dataobj)
        lo, hi = np.percentile(real, [1, 99])
        expected = SagittalView.from_affine(rs.AFFINE).to_slices((real - lo) / (hi - lo))
        row = next(r for r in key if r["subject"] == subject and r["source"] == "real")
        np.testing.assert_allclose(pair["real"], expected[int(row["slice_start"]):int(row["slice_stop"])],
                                   rtol=1e-5, atol=1e-5)
    # Stack geometry: (S, H, W) = (LR, SI, AP) with spacing (3.0, 0.8, 1.0) mm, same size for both sources.
    img = nib.load(str(built_study / "cases" / key[0]["case_id"] / "stack.nii"))
    assert img.shape == (2 * MID_HALF_WIDTH + 1, rs.SHAPE[1], rs.SHAPE[0])
    np.testing.assert_allclose(img.header.get_zooms(), (3.0, 0.8, 1.0), rtol=1e-5)
    assert "".join(nib.aff2axcodes(img.affine)) == "LIP"
    sizes = {(built_study / "cases" / r["case_id"] / "stack.nii").stat().st_size for r in key}
    assert len(sizes) == 1  # equal sizes: file size cannot give the source away


def test_lesion_truth_follows_shown_slices(rs, built_study):
    for row in read_key(built_study):
        start, stop = int(row["slice_start"]), int(row["slice_stop"])
        assert (start, stop) == (rs.N_LR // 2 - MID_HALF_WIDTH, rs.N_LR // 2 + MID_HALF_WIDTH + 1)
        shown = set(range(start, stop))
        codes = {code for code, (lo, hi) in rs.PLANTED[row["subject"]] if shown & set(range(lo, hi))}
        assert row["marrow_edema"] == int(1 in codes)
        assert row["plc_injury"] == int(2 in codes)
        assert row["cord_edema"] == int(bool(codes & {3, 4}))
    # sub-0002's PLC injury lies outside the middle block, so it is absent from what readers see.
    row = next(r for r in read_key(built_study) if r["subject"] == "sub-0002")
    assert (row["plc_injury"], row["cord_edema"]) == (0, 1)


def test_lesion_mode_spans_findings_and_all_mode(rs, inputs, tmp_path):
    out = tmp_path / "lesion"
    build_study(inputs["real"], inputs["synthetic"], out, ["A"], lesions=inputs["lesions"], seed=0,
                slices="lesion", cases=2)
    (row, _) = read_key(out)
    planted = [r for _, r in rs.PLANTED[row["subject"]]]
    lo, hi = min(a for a, _ in planted), max(b for _, b in planted)
    assert (int(row["slice_start"]), int(row["slice_stop"])) == (max(0, lo - 1), min(rs.N_LR, hi + 1))
    assert select_slices(10, "all", None) == (0, 10)
    assert select_slices(10, "lesion", np.zeros(10, bool)) == select_slices(10, "mid", None) == (3, 8)


def test_cases_sample_subjects_by_seed(inputs, tmp_path):
    a = build_study(inputs["real"], inputs["synthetic"], tmp_path / "a", ["A"], seed=1, cases=4)
    b = build_study(inputs["real"], inputs["synthetic"], tmp_path / "b", ["A"], seed=1, cases=4)
    assert a.subjects == b.subjects and len(a.subjects) == 2 and a.cases == 4
    assert all(r["marrow_edema"] is None for r in read_key(tmp_path / "a"))  # built without lesion truth


def test_unpaired_subjects_are_skipped_and_stir_accepted_as_synthetic(rs, inputs, tmp_path):
    synth = tmp_path / "synth"
    data = np.asarray(nib.load(str(inputs["synthetic"] / "sub-0001_pseudoSTIR.nii.gz")).dataobj)
    rs._save(data, synth / "sub-0001_STIR.nii.gz")
    rs._save(data, synth / "sub-0099_pseudoSTIR.nii.gz")
    summary = build_study(inputs["real"], synth, tmp_path / "s", ["A"], seed=0)
    assert summary.subjects == ["sub-0001"]
    assert summary.unpaired == ["sub-0002", "sub-0003", "sub-0099"]


@pytest.mark.parametrize(("kwargs", "error", "words"), [
    ({"readers": ["ok", "bad name"]}, ConfigError, "bad name"),
    ({"readers": ["A", "A"]}, ConfigError, "duplicate"),
    ({"cases": 3}, ConfigError, "--cases"),
    ({"cases": 8}, ConfigError, "only 3"),
    ({"slices": "lesion"}, ConfigError, "--lesions"),
    ({"slices": "middle"}, ConfigError, "--slices"),
])
def test_bad_arguments(inputs, tmp_path, kwargs, error, words):
    args = {"readers": ["A"], **kwargs}
    readers = args.pop("readers")
    with pytest.raises(error, match=words) as exc:
        build_study(inputs["real"], inputs["synthetic"], tmp_path / "s", readers, **args)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "s").exists()


def test_bad_inputs(rs, inputs, tmp_path, built_study):
    with pytest.raises(InputError, match="not empty"):
        build_study(inputs["real"], inputs["synthetic"], built_study, ["A"])
    with pytest.raises(InputError, match="does not exist"):
        build_study(tmp_path / "nope", inputs["synthetic"], tmp_path / "s", ["A"])
    odd = tmp_path / "odd"  # a synthetic volume whose field of view does not meet the real STIR's
    far = rs.AFFINE.copy()
    far[:3, 3] += 5000.0
    img = nib.Nifti1Image(np.ones((16, 32, 30), np.float32) + np.arange(30), far)
    (odd / "sub-0001_pseudoSTIR.nii.gz").parent.mkdir(parents=True)
    nib.save(img, str(odd / "sub-0001_pseudoSTIR.nii.gz"))
    with pytest.raises(InputError, match="sub-0001_STIR.nii.gz: field of view does not overlap"):
        build_study(inputs["real"], odd, tmp_path / "s", ["A"])
    assert not (tmp_path / "s").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".s.")]  # no half-built leftovers


def test_t2w_beside_the_case_when_asked(rs, inputs, tmp_path):
    from synthseq.reader_study.access import load_or_create_tokens
    from synthseq.reader_study.app import create_app

    out = tmp_path / "with_t2w"
    build_study(inputs["real"], inputs["synthetic"], out, ["A"], seed=0, t2w=inputs["real"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["with_t2w"] is True
    for row in read_key(out):
        t2w = np.asarray(nib.load(str(out / "cases" / row["case_id"] / "t2w.nii")).dataobj)
        stack = np.asarray(nib.load(str(out / "cases" / row["case_id"] / "stack.nii")).dataobj)
        assert t2w.shape == stack.shape
        np.testing.assert_allclose(t2w, stack, atol=1e-4)  # the fixture's T2w is 0.5 * real: same after windowing
    token = load_or_create_tokens(out, ["A"])["A"]
    client = create_app(out).test_client()
    assert b'id="t2w"' in client.get(f"/r/{token}").data
    assert client.get(f"/api/{token}/state").get_json()["with_t2w"] is True
    assert client.get(f"/api/{token}/cases/{manifest['readers']['A'][0]}/t2w.nii").status_code == 200
    with pytest.raises(InputError, match="no T2w volume"):
        build_study(inputs["real"], inputs["synthetic"], tmp_path / "x", ["A"], t2w=inputs["synthetic"])
