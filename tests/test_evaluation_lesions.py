"""synthseq.evaluation.lesions: the report by lesion class, identical rows once, the erasure check's score."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from synthseq.evaluation import evaluate_paths
from synthseq.evaluation.figures import uncertainty_window
from synthseq.evaluation.lesions import MIN_CONCLUSIVE, class_summary, class_table_html, count_lesions
from synthseq.io import Volume, save_volume
from synthseq.metrics import LESION_CODES, reference_masks
from synthseq.phantom import generate_subject


def _table(n: int) -> pd.DataFrame:
    rows = []
    for i in range(n):
        for m, rec in (("pseudo_stir", 0.5 + 0.01 * i), ("histmatch", 0.9 - 0.01 * i), ("linear_oracle", 1.0)):
            rows.append({"subject": f"sub-{i}", "method": m, "cr_cord_edema": rec, "cnr_cord_edema": 3.0 * rec,
                         "cnr_target_cord_edema": 6.0 + i, "cnr_input_cord_edema": 4.0 + i})
    return pd.DataFrame(rows)


def test_class_summary_names_the_best_marks_small_n_and_shows_identical_rows_once():
    few = class_summary(_table(3), {"cord_edema": {"lesions": 3, "subjects": 3}})
    e = few["cord_edema"]
    assert e["lesions"] == 3 and e["best"] == "histmatch" and not e["conclusive"]  # the oracle is not ranked
    assert abs(e["cnr_target"]["mean"] - 7.0) < 1e-9 and abs(e["cnr_input"]["mean"] - 5.0) < 1e-9
    assert abs(e["methods"]["pseudo_stir"]["recovery"]["mean"] - 0.51) < 1e-9
    html = class_table_html(few)
    assert "n &lt; 5: not conclusive" in html and html.count("CNR real STIR") == 1 and "&#9733;" in html
    many = class_summary(_table(MIN_CONCLUSIVE), {"cord_edema": {"lesions": 6, "subjects": MIN_CONCLUSIVE}})
    assert many["cord_edema"]["conclusive"] and "not conclusive" not in class_table_html(many)


def test_count_lesions_counts_components_and_subjects():
    class S:
        def __init__(self, les):
            self.lesions = les

    a = np.zeros((8, 8, 2), np.int16)
    a[1:3, 1:3, 0] = 3
    a[5:7, 5:7, 0] = 3  # a second cord-edema component
    b = np.zeros_like(a)
    b[2, 2, 1] = 3
    assert count_lesions([S(a), S(b)])["cord_edema"] == {"lesions": 3, "subjects": 2}


def test_uncertainty_window_comes_from_the_data():
    unc = np.linspace(0, 1, 1000).reshape(10, 10, 10)
    body = np.ones(unc.shape, bool)
    lo, hi = uncertainty_window(unc, body)
    assert lo == 0 and abs(hi - 0.99) < 1e-3


def test_evaluate_reports_by_class_and_scores_the_erasure_check(tmp_path):
    """A known phantom subject whose 'prediction' is the real STIR with its PLC injury and prevertebral oedema
    deleted: the report has the class table, and the erasure check (with the T1w found beside the T2w) flags the
    erased lesion the T2w shows (prevertebral oedema; the PLC injury is faint on T2w, so not counted as erasable)."""
    rec = generate_subject("sub-0001", rng_seed=2, preset="default")
    ph = tmp_path / "ph" / "sub-0001"
    for key, vol, dt in (("T2w", rec.t2w, np.float32), ("STIR", rec.stir, np.float32), ("T1w", rec.t1w, np.float32),
                         ("labels", rec.labels, np.uint8), ("lesions", rec.lesions, np.uint8)):
        save_volume(vol, ph / f"sub-0001_{key}.nii.gz", dtype=dt)
    st = rec.stir.data.copy()
    les = rec.lesions.data
    plc = les == LESION_CODES["plc_injury"]
    ring = (rec.labels.data == 15) & (les == 0)  # normal interspinous ligament
    st[plc] = st[ring].mean()
    prev = les == LESION_CODES["prevertebral_edema"]
    st[prev] = st[reference_masks(rec.labels.data, les, slice_axis=2)["prevertebral_edema"]].mean()
    save_volume(Volume(st, rec.stir.affine), tmp_path / "pred" / "sub-0001_pseudoSTIR.nii.gz", dtype=np.float32)
    out = tmp_path / "out"
    evaluate_paths(tmp_path / "pred", tmp_path / "ph", out, inputs=tmp_path / "ph", use_lpips=False,
                   pred_norm="own")
    summary = json.loads((out / "summary.json").read_text())
    classes = summary["lesion_classes"]
    assert classes["plc_injury"]["methods"]["pseudo_stir"]["recovery"]["mean"] < 0.3
    assert classes["cord_edema"]["methods"]["pseudo_stir"]["recovery"]["mean"] > 0.95
    steps = {c: classes[c]["methods"]["pseudo_stir"]["step_recovery"]["mean"] for c in ("plc_injury", "cord_edema")}
    assert steps["plc_injury"] < 0.1 and abs(steps["cord_edema"] - 1) < 0.05, steps  # the deleted lesion has no step
    # the deletion left the ligament around it alone: no reference bias, so the lost contrast is the lesion's own
    bias = classes["plc_injury"]["methods"]["pseudo_stir"]["reference_bias"]["mean"]
    assert abs(bias) < 0.02, bias
    er = summary["erasure"]
    assert er["volumes"] == 1 and er["per_volume"][0]["erasure_used_t1w"] is True
    erased = er["per_volume"][0]["erased_classes"]
    assert er["erased_lesions"] >= 1 and er["erased_flagged"] >= 1
    assert "prevertebral_edema" in erased and "plc_injury" not in erased, erased
    text = (out / "report.html").read_text()
    assert "By lesion class" in text and "Erasure check" in text and "sensitivity" in text and "ref. bias" in text
    assert "<tr><th>cnr_target_cord_edema" not in text  # identical for all methods: only in the class table
