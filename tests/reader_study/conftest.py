"""Tiny real/synthetic/lesion NIfTI folders written by the tests themselves, and a built study."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SHAPE = (16, 32, 32)  # storage (X, Y, Z)
# PSR storage: axis 0 runs to posterior, axis 1 to superior, axis 2 to right; 1.0 x 0.8 x 3.0 mm.
AFFINE = np.array([[0.0, 0.0, 3.0, -40.0], [-1.0, 0.0, 0.0, 20.0], [0.0, 0.8, 0.0, -30.0], [0, 0, 0, 1.0]])
N_LR = SHAPE[2]  # sagittal slices (canonical S)
# Planted findings (lesion code, canonical sagittal slice range) per subject.
PLANTED = {
    "sub-0001": [(1, (15, 17))],              # marrow edema at the midline
    "sub-0002": [(3, (16, 17)), (2, (4, 6))],  # cord edema at the midline, PLC far lateral
    "sub-0003": [(4, (14, 18))],              # cord hemorrhage counts as cord edema
}
SUBJECTS = tuple(PLANTED)


def _save(data: np.ndarray, path: Path, dtype=np.float32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data.astype(dtype), AFFINE)
    img.set_qform(AFFINE, code=1)
    nib.save(img, str(path))


def canonical_to_storage(s: slice | int) -> tuple:
    """Index storage arrays at canonical sagittal slices: S runs right -> left, storage axis 2 runs to right."""
    idx = np.arange(N_LR)[::-1][s]
    return (slice(None), slice(None), idx)


def write_inputs(root: Path, seed: int = 0) -> dict[str, Path]:
    """real/sub-X/sub-X_{STIR,T2w,lesions}.nii.gz and synthetic/sub-X_pseudoSTIR.nii.gz (= 3 * real + 7)."""
    rng = np.random.default_rng(seed)
    for i, subject in enumerate(SUBJECTS):
        real = rng.gamma(2.0, 50.0 + 10 * i, size=SHAPE).astype(np.float32)
        real[4:12, 8:24, :] += 400.0  # a bright block so the window matters
        _save(real, root / "real" / subject / f"{subject}_STIR.nii.gz")
        _save(real * 0.5, root / "real" / subject / f"{subject}_T2w.nii.gz")  # must be ignored
        _save(3.0 * real + 7.0, root / "synthetic" / f"{subject}_pseudoSTIR.nii.gz")
        lesions = np.zeros(SHAPE, dtype=np.uint8)
        for code, (lo, hi) in PLANTED[subject]:
            region = lesions[canonical_to_storage(slice(lo, hi))]
            region[6:9, 10:14, :] = code
            lesions[canonical_to_storage(slice(lo, hi))] = region
        _save(lesions, root / "real" / subject / f"{subject}_lesions.nii.gz", dtype=np.uint8)
    return {"real": root / "real", "synthetic": root / "synthetic", "lesions": root / "real"}


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> dict[str, Path]:
    return write_inputs(tmp_path_factory.mktemp("rs_inputs"))


@pytest.fixture(scope="session")
def built_study(inputs, tmp_path_factory) -> Path:
    """A study shared read-only by the tests (copy it before writing answers)."""
    from synthseq.reader_study import build_study

    out = tmp_path_factory.mktemp("rs_built") / "study"
    build_study(inputs["real"], inputs["synthetic"], out, ["R1", "R2"], lesions=inputs["lesions"], seed=3)
    return out


@pytest.fixture
def study(built_study, tmp_path) -> Path:
    """A private copy of the built study, safe to answer into."""
    import shutil

    dest = tmp_path / "study"
    shutil.copytree(built_study, dest)
    return dest


@pytest.fixture(scope="session")
def rs():
    """This module (constants and writers), since test files cannot import a conftest under importlib mode."""
    import sys

    return sys.modules[__name__]


def start_server(study: Path):
    """Serve ``study`` from a separate Python process on a free port (so a test can SIGKILL it).

    Returns ``(process, base_url, links)``; the process prints one line once it listens.
    """
    import json
    import subprocess
    import sys

    code = ("import json, sys; from synthseq.reader_study.app import serve_study\n"
            "serve_study(sys.argv[1], port=0, ready=lambda url, links: print(json.dumps([url, links]), flush=True))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(study)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=10)
        raise RuntimeError(f"study server exited with status {proc.returncode}")
    url, links = json.loads(line)
    return proc, url, links
