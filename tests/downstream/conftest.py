"""Fixtures for the downstream tests: the real phantom (tiny preset) and a small synthetic dataset in its layout.

``write_fixture_dataset`` writes a few subjects (docs/overview.md layout: cohort.csv, dataset.json,
sub-XXXX/sub-XXXX_{T2w,STIR,labels,lesions}.nii.gz) with random storage orientation and voxel sizes: a block
of muscle holding vertebral marrow blocks separated by discs, a CSF tube around the cord and an interspinous
ligament band, plus marrow / PLC / cord-edema lesions painted per the cohort's flags. STIR suppresses marrow fat
(edema is conspicuous); on T2w marrow is bright so marrow edema barely shows. Outcomes follow a known
logistic model written to dataset.json's "cohort_model".
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

MUSCLE, MARROW, DISC, CSF, CORD, PLC = 3, 7, 9, 10, 11, 15
STIR = {MUSCLE: 100, MARROW: 40, DISC: 200, CSF: 400, CORD: 150, PLC: 60}
T2W = {MUSCLE: 100, MARROW: 300, DISC: 250, CSF: 450, CORD: 180, PLC: 60}
LESION_STIR = {1: 300, 2: 300, 3: 360}
LESION_T2W = {1: 320, 2: 130, 3: 320}
TRUE_COEF = {"lems": 0.15, "age": -0.06, "cord_lesion_length_mm": -0.08, "ais_admission": 0.5}
COLUMNS = ["subject", "age", "sex", "neuro_level", "ais_admission", "uems", "lems", "l3_motor_l", "l3_motor_r",
           "s1_motor_l", "s1_motor_r", "l3_lt_l", "l3_lt_r", "s1_lt_l", "s1_lt_r", "days_to_rehab",
           "cord_lesion_length_mm", "cord_hemorrhage", "fracture", "plc_injury", "cord_edema",
           "prevertebral_edema", "disc_injury", "canal_compression", "ambulation_discharge", "ais_improvement"]


def _canonical_anatomy(rng, i: int, S=12, H=40, W=24):
    """Label and lesion maps in canonical (LR, SI, AP) index order, plus lesion flags and cord extent."""
    lab = np.full((S, H, W), MUSCLE, np.uint8)
    c = S // 2
    lr = np.abs(np.arange(S) - c)[:, None, None]
    ap = np.arange(W)[None, None, :]
    si = np.arange(H)[None, :, None]
    body_blocks = (si % 8) < 6
    lab[np.broadcast_to((lr <= 4) & (ap >= 3) & (ap <= 9) & body_blocks, lab.shape)] = MARROW
    lab[np.broadcast_to((lr <= 4) & (ap >= 3) & (ap <= 9) & ~body_blocks, lab.shape)] = DISC
    lab[np.broadcast_to((lr <= 2) & (ap >= 11) & (ap <= 15), lab.shape)] = CSF
    lab[np.broadcast_to((lr <= 1) & (ap >= 12) & (ap <= 14), lab.shape)] = CORD
    lab[np.broadcast_to((lr <= 1) & (ap >= 17) & (ap <= 19), lab.shape)] = PLC
    les = np.zeros_like(lab)
    # balanced, decorrelated flags so every label has both classes in small cohorts
    flags = {"fracture": i % 2, "plc_injury": (i // 2) % 2, "cord_edema": ((i + 1) // 3) % 2}
    if flags["fracture"]:
        b = int(rng.integers(1, H // 8 - 1)) * 8
        les[(lab == MARROW) & (si >= b) & (si < b + 6)] = 1
    if flags["plc_injury"]:
        s0 = int(rng.integers(5, H - 15))
        les[(lab == PLC) & (si >= s0) & (si < s0 + 10)] = 2
    length_vox = 0
    if flags["cord_edema"]:
        length_vox = int(rng.integers(4, 13))
        s0 = int(rng.integers(5, H - 5 - length_vox))
        les[(lab == CORD) & (si >= s0) & (si < s0 + length_vox)] = 3
    return lab, les, flags, length_vox


def _storage(canon: np.ndarray, perm, flips):
    """Canonical (LR->L, SI->I, AP->P) array -> storage array for a random axis order / flips."""
    arr = canon
    for ax, f in enumerate(flips):
        if f:
            arr = np.flip(arr, axis=ax)
    return np.ascontiguousarray(np.transpose(arr, np.argsort(perm)))


def _affine(perm, flips, spacing, shape_storage):
    """Affine whose storage axes map to world per ``perm`` (storage axis of LR, SI, AP) and ``flips``."""
    aff = np.zeros((4, 4))
    aff[3, 3] = 1.0
    world = {0: 0, 1: 2, 2: 1}  # canonical axis -> RAS world axis (LR->x, SI->z, AP->y)
    for canon_ax, store_ax in enumerate(perm):
        # canonical direction points to L / I / P (negative world); a flip reverses it
        sign = 1.0 if flips[canon_ax] else -1.0
        aff[world[canon_ax], store_ax] = sign * spacing[canon_ax]
    aff[:3, 3] = np.array([10.0, -20.0, 30.0])
    return aff


def write_fixture_dataset(out: Path, n: int = 12, seed: int = 0, noise: float = 6.0) -> Path:
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    rows, subjects = [], {}
    for i in range(n):
        sid = f"sub-{i + 1:04d}"
        lab, les, flags, length_vox = _canonical_anatomy(rng, i)
        perm = tuple(int(v) for v in rng.permutation(3))
        flips = tuple(bool(v) for v in rng.integers(0, 2, 3))
        spacing = (float(rng.choice([2.0, 2.5])), float(rng.choice([1.0, 1.25])), float(rng.choice([1.0, 1.25])))
        maps = {}
        for name, tissue, lesion in (("STIR", STIR, LESION_STIR), ("T2w", T2W, LESION_T2W)):
            img = np.zeros(lab.shape, np.float32)
            for code, v in tissue.items():
                img[lab == code] = v
            for code, v in lesion.items():
                img[les == code] = v
            maps[name] = img + rng.normal(0, noise, img.shape).astype(np.float32)
        maps["labels"], maps["lesions"] = lab, les
        shape = _storage(lab, perm, flips).shape
        aff = _affine(perm, flips, spacing, shape)
        d = out / sid
        d.mkdir(exist_ok=True)
        for name, arr in maps.items():
            dtype = np.uint8 if name in ("labels", "lesions") else np.float32
            nib.save(nib.Nifti1Image(_storage(arr, perm, flips).astype(dtype), aff), str(d / f"{sid}_{name}.nii.gz"))
        ais = int(rng.integers(0, 5))
        age = float(rng.integers(18, 85))
        lems = int(np.clip(ais * 10 + rng.integers(-5, 6), 0, 50))
        motor = [int(np.clip(ais + rng.integers(-1, 2), 0, 5)) for _ in range(4)]
        lt = [int(np.clip(ais // 2 + rng.integers(0, 2), 0, 2)) for _ in range(4)]
        length_mm = length_vox * spacing[1]
        z = (TRUE_COEF["lems"] * (lems - 25) + TRUE_COEF["age"] * (age - 50)
             + TRUE_COEF["cord_lesion_length_mm"] * (length_mm - 5) + TRUE_COEF["ais_admission"] * (ais - 2))
        amb = int(rng.random() < 1 / (1 + np.exp(-z)))
        improve = int(rng.random() < 1 / (1 + np.exp(-(0.5 - 0.05 * length_mm))))
        rows.append([sid, age, rng.choice(["M", "F"]), f"C{int(rng.integers(3, 8))}", "ABCDE"[ais],
                     int(rng.integers(0, 51)), lems, *motor, *lt, int(rng.integers(3, 40)), round(length_mm, 2),
                     0, flags["fracture"], flags["plc_injury"], flags["cord_edema"], 0, 0,
                     int(rng.random() < 0.3), amb, improve])
        subjects[sid] = {"spacing_mm": spacing}
    # make sure both outcome classes occur
    for col in (-2, -1):
        vals = [r[col] for r in rows]
        if len(set(vals)) < 2:
            rows[0][col], rows[1][col] = 0, 1
    with open(out / "cohort.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        w.writerows(rows)
    (out / "dataset.json").write_text(json.dumps({
        "generator": "tests.downstream.conftest", "seed": seed, "preset": "fixture", "subjects": subjects,
        "labels": {str(k): v for k, v in {3: "muscle", 7: "vertebral_marrow", 9: "disc_nucleus", 10: "csf",
                                           11: "cord", 15: "interspinous_ligament"}.items()},
        # same record format as synthseq.phantom (ais_admission enters ordinally here, so it is left out)
        "cohort_model": {"coefficients": {"ambulation_discharge": {
            "intercept": 0.0, **{k: v for k, v in TRUE_COEF.items() if k != "ais_admission"}}}}}))
    return out


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> Path:
    """The 12-subject block-anatomy fixture above (exact, high-contrast lesions); read-only for tests."""
    return write_fixture_dataset(tmp_path_factory.mktemp("downstream") / "synthetic", n=12, seed=3)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """The real phantom, tiny preset (16 subjects, 64 x 64 x 10 voxels); read-only for tests."""
    from synthseq.phantom import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("downstream") / "phantom", subjects=16, seed=1, preset="tiny",
                            progress=False)


@pytest.fixture(scope="session")
def stir_plus_noise():
    """A stand-in synthesizer: the subject's real STIR plus noise (what a decent GAN would give)."""
    from synthseq.io import load_volume

    def make(root: Path, sigma: float = 10.0, seed: int = 0):
        rng = np.random.default_rng(seed)

        def synth(t2w):
            sid = Path(t2w.path).name.split("_")[0]
            stir = load_volume(Path(root) / sid / f"{sid}_STIR.nii.gz")
            return t2w.with_data(stir.data + rng.normal(0, sigma, stir.shape).astype(np.float32))

        return synth

    return make


@pytest.fixture(scope="session")
def cohort_spec():
    """The fixture's cohort columns and true outcome coefficients (conftest cannot be imported directly)."""
    return {"columns": COLUMNS, "true_coef": TRUE_COEF}
