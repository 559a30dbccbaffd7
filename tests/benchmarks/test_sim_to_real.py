"""benchmarks/sim_to_real.py --quick: realism statistics of real and phantom T2w, and the STIR-physics measure."""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
REAL = BENCH.parent.parent / "shared" / "data" / "real"


@pytest.mark.skipif(not REAL.is_dir(), reason="needs ../shared/data/real")
def test_sim_to_real_quick(tmp_path, run_benchmark):
    r = run_benchmark("sim_to_real", tmp_path, "--quick", timeout=600)
    assert r["benchmark"] == "sim_to_real" and r["quick"] is True and r["preset"] == "tiny"
    real = r["real"]["mean"]
    # real T2w (TE ~100-120 ms): the cord is darker than CSF, fat bright
    assert 0.1 < real["cord_csf"] < 0.8 and real["fat_csf"] > 0.4
    for mode in ("classic", "faithful"):
        d = r["distance_to_real"][mode]
        assert math.isfinite(d["mean_distance"]) and d["mean_distance"] >= 0
        assert len(d) >= 8  # most statistics exist on both sides
        # the phantom's own STIR, measured with the estimated masks, has STIR physics: the measure can pass
        ref = r["phantom_stir_reference"][mode]
        assert ref["fat_suppressed"] == 1.0 and ref["csf_brightest"] == 1.0 and ref["fat_csf"] < 0.2
        # the estimated fat / CSF masks agree with the phantom's label truth on the T2w ratio
        est, truth = r["phantom"][mode]["mean"]["fat_csf"], r["label_truth"][mode]["fat_csf"]
        assert abs(math.log(est / truth)) < 0.5
    # texture: the faithful phantom's fat is heterogeneous, the classic one's nearly flat
    assert r["label_truth"]["faithful"]["texture_cv_fat"] > r["label_truth"]["classic"]["texture_cv_fat"]
    assert r["pseudo_stir_on_real"] == {}  # no checkpoint given
    for mode in ("classic", "faithful"):  # item 7 on the quick run's one (cropped) real scan
        check = r["fat_estimator_check"][mode]["sct_prisma_sag_0p8mm"]
        assert check["subjects"] == 1 and check["fat_posterior_share"] > check["fat_share"]


def test_lesion_recovery_scores_an_oracle_at_one_and_the_t2w_like_the_t2w(monkeypatch):
    """Item 6 (lesions kept): a model that returns the real STIR, written in its T2w's scale as synthseq writes
    pseudo-STIR, keeps every lesion's step exactly; one that returns its input scores as the T2w row."""
    import numpy as np

    from synthseq.codes import body_mask_from_labels
    from synthseq.data.preprocess import Preprocessor
    from synthseq.phantom import generate_subject

    monkeypatch.syspath_prepend(str(BENCH))
    s2r = importlib.import_module("sim_to_real")

    class Oracle:
        i = 0

        def __call__(self, t2w):
            rec = generate_subject(f"sub-{self.i + 1:04d}", 2000 + self.i, preset="default", realism="classic")
            self.i += 1
            np.testing.assert_array_equal(rec.t2w.data, t2w.data)  # the subjects the benchmark draws
            pre, body = Preprocessor(), body_mask_from_labels(rec.labels.data)
            stir_n = pre(np.asarray(rec.stir.data, np.float32), mask=body)[0]
            return t2w.with_data(pre.invert(stir_n, pre.fit(np.asarray(t2w.data, np.float32))))

    out = s2r.lesion_recovery({"oracle": Oracle(), "identity": lambda v: v}, 2, "default", "classic", 1.5)
    assert out["subjects"] == 2 and out["oracle"], out
    assert any(math.isfinite(v["step_recovery"]) for v in out["oracle"].values())
    for cls, v in out["oracle"].items():  # NaN where the real STIR has no step / contrast to recover
        for key in ("step_recovery", "contrast_recovery"):
            assert not math.isfinite(v[key]) or abs(v[key] - 1) < 1e-3, (cls, v)
    assert out["identity"] == out["T2w"]


def test_a_t1w_t2w_model_reads_each_subjects_own_t1w(monkeypatch):
    """A T1w + T2w checkpoint gets the phantom subject's T1w in the lesion check and is skipped (None) on a real
    scan without one; a model reading other sequences is refused in one line."""
    import numpy as np

    from synthseq.phantom import generate_subject

    monkeypatch.syspath_prepend(str(BENCH))
    s2r = importlib.import_module("sim_to_real")

    class TwoInputs:
        grid_key, extra_keys, seen = "T2w", ["T1w"], []

        def __call__(self, t2w, extra=None):
            self.seen.append(extra["T1w"])
            return t2w

    model = TwoInputs()
    out = s2r.lesion_recovery({"t1t2": model}, 1, "tiny", "classic", 3.0)
    rec = generate_subject("sub-0001", 2000, preset="tiny", realism="classic", field_strength=3.0)
    assert len(model.seen) == 1 and np.array_equal(model.seen[0].data, rec.t1w.data)
    assert not np.array_equal(rec.t1w.data, rec.t2w.data)
    assert out["t1t2"] == out["T2w"]  # it returned its T2w: scored as the T2w
    assert s2r.predict(model, rec.t2w, None) is None
    assert s2r.predict(lambda v: v, rec.t2w, None) is rec.t2w  # a T2w-only model needs no T1w
    s2r.check_inputs("ok", model)
    model.extra_keys = ["T2star"]
    with pytest.raises(SystemExit, match="checkpoint bad reads"):
        s2r.check_inputs("bad", model)


def test_a_missing_checkpoint_ends_in_one_line_before_any_work(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "s2r.json"
    proc = subprocess.run([sys.executable, str(BENCH / "sim_to_real.py"), "--quick", "--checkpoint",
                           f"a={tmp_path / 'nope.pt'}", "--out", str(out)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "nope.pt: checkpoint not found" in proc.stderr
    assert not out.exists()


def test_the_fat_estimator_fails_on_a_crop_and_the_posterior_one_holds(monkeypatch):
    """Item 7: cropped to a spine-only field of view (the prisma scan's 23 x 79 x 79 mm), the intensity fat mask
    holds mostly other tissue and the phantom's own STIR fails the fat check through it; the posterior mask stays
    fat and the STIR passes. On a full field of view both masks are fat and both pass."""
    import numpy as np

    monkeypatch.syspath_prepend(str(BENCH))
    s2r = importlib.import_module("sim_to_real")
    subjects = s2r.phantom_subjects("classic", 2, "default", 3.0)
    reals = [{"name": "crop", "t1w": None, "t2w": np.zeros((29, 99, 99)), "spacing": np.full(3, 0.8)},
             {"name": "full", "t1w": None, "t2w": np.zeros((52, 384, 195)), "spacing": np.ones(3)},
             {"name": "with_t1w", "t1w": np.zeros((8, 8, 8)), "t2w": np.zeros((8, 8, 8)), "spacing": np.ones(3)}]
    out = s2r.fat_estimator_check(subjects, reals)
    assert set(out) == {"crop", "full"}  # a scan with a T1w uses the T1w fat mask: no check
    crop, full = out["crop"], out["full"]
    assert crop["fov_mm"] == pytest.approx([23.2, 79.2, 79.2]) and crop["subjects"] == 2
    assert crop["fat_share"] < 0.5 and crop["stir_pass"] < 2 and crop["stir_fat_csf"] > 0.2
    assert crop["fat_posterior_share"] > 0.9 and crop["stir_posterior_pass"] == 2
    assert full["fat_share"] > 0.8 and full["stir_pass"] == 2 and full["stir_posterior_pass"] == 2


def test_crop_to_fov_centres_on_the_cord_and_clips(monkeypatch):
    import numpy as np

    monkeypatch.syspath_prepend(str(BENCH))
    s2r = importlib.import_module("sim_to_real")
    cord = np.zeros((10, 20, 30), bool)
    cord[2, 15, :] = True  # centroid (2, 15, 14.5)
    w = s2r.crop_to_fov(cord.shape, (1.0, 2.0, 1.0), cord, (4.0, 8.0, 100.0))
    # 4 voxels L-R from index 0 (clipped at the edge), 4 A-P around 15, the whole S-I (100 mm > 30 voxels)
    assert w == (slice(0, 4), slice(13, 17), slice(0, 30))
