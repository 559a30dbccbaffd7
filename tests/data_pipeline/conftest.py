"""Fixtures for the io / data tests: tiny synthetic subjects in the phantom layout, oblique affines, real files."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

DATA = Path(__file__).resolve().parents[1] / "data"
PSR_CROP = DATA / "sct_errsm30_T2w_sag_crop.nii.gz"  # 60x55x52, 1 mm, PSR, int16
PSR_08 = DATA / "sct_fslPrisma05_T2w_sag_0p8mm.nii.gz"  # 99x99x29, 0.8 mm, PSR, int16
RAS_FLOAT = DATA / "sub-unf01_T2w.nii.gz"  # 131x141x16, 1 mm, RAS (oblique), float32


def rotation(ax_deg: float, ay_deg: float, az_deg: float) -> np.ndarray:
    ax, ay, az = np.deg2rad([ax_deg, ay_deg, az_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def psr_oblique_affine(spacing=(1.0, 1.2, 0.9), angles=(7.0, -4.0, 5.0), origin=(-10.0, 20.0, -30.0)) -> np.ndarray:
    """Array axes pointing (roughly) to P, S, R, tilted by a few degrees: an oblique sagittal acquisition."""
    base = np.array([[0, 0, 1], [-1, 0, 0], [0, 1, 0]], dtype=np.float64)  # columns: P, S, R directions
    aff = np.eye(4)
    aff[:3, :3] = rotation(*angles) @ base @ np.diag(spacing)
    aff[:3, 3] = origin
    return aff


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, dtype=None) -> Path:
    img = nib.Nifti1Image(np.asarray(data), affine)
    if dtype is not None:
        img.set_data_dtype(dtype)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def synthetic_subject(shape=(24, 30, 20), seed=0):
    """(t2w, stir, labels) float32/float32/uint8 arrays: an ellipsoidal body of smooth texture in air.

    labels: 0 air, 3 "muscle" (body), 5 "airway" (a tube inside the body), 10 "csf" (a bright core). STIR is a
    different but correlated contrast of the same anatomy.
    """
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    r = np.sqrt((grid[0] / 0.8) ** 2 + (grid[1] / 0.9) ** 2 + (grid[2] / 0.75) ** 2)
    body = r < 1
    labels = np.where(body, 3, 0).astype(np.uint8)
    labels[body & (np.hypot(grid[0] + 0.4, grid[2]) < 0.12)] = 5
    labels[body & (np.hypot(grid[0] - 0.1, grid[2]) < 0.2)] = 10
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    texture = (texture - texture.min()) / (np.ptp(texture) + 1e-9)
    t2w = np.where(body, 300 + 400 * texture, 0) + np.where(labels == 10, 900, 0)
    t2w = np.where(labels == 5, 5, t2w) + np.abs(rng.normal(0, 3, shape))
    stir = np.where(body, 150 + 250 * (1 - texture), 0) + np.where(labels == 10, 1200, 0)
    stir = np.where(labels == 5, 4, stir) + np.abs(rng.normal(0, 3, shape))
    return t2w.astype(np.float32), stir.astype(np.float32), labels


def make_layout(root: Path, n_subjects: int = 3, shape=(24, 30, 20), affine=None, labels: bool = True,
                extra: tuple[str, ...] = (), stir_same_as_t2w: bool = False, seed: int = 0) -> Path:
    """A phantom-layout folder ``root/sub-XXXX/sub-XXXX_<key>.nii.gz`` with synthetic subjects."""
    affine = psr_oblique_affine() if affine is None else affine
    for i in range(n_subjects):
        sid = f"sub-{i + 1:04d}"
        t2w, stir, lab = synthetic_subject(shape, seed + i)
        folder = root / sid
        write_nifti(folder / f"{sid}_T2w.nii.gz", t2w, affine)
        write_nifti(folder / f"{sid}_STIR.nii.gz", t2w if stir_same_as_t2w else stir, affine)
        if labels:
            write_nifti(folder / f"{sid}_labels.nii.gz", lab, affine, np.uint8)
        for key in extra:
            write_nifti(folder / f"{sid}_{key}.nii.gz", np.sqrt(t2w + stir), affine)
    return root


def layout_with_lesion_maps(root: Path) -> list:
    """Subjects of a one-subject layout (STIR == T2w) whose lesion map is the bright core (label 10), so that
    lesion pixels are exactly the bright pixels of B."""
    from synthseq.data import load_subjects
    from synthseq.io import load_volume

    subs = load_subjects(make_layout(root, n_subjects=1, stir_same_as_t2w=True))
    labels = load_volume(subs[0].paths["labels"], allow_zero=True)
    write_nifti(root / "sub-0001" / "sub-0001_lesions.nii.gz", (labels.data == 10).astype(np.uint8),
                labels.affine, np.uint8)
    return load_subjects(root)


def core_threshold(stack) -> float:
    """Between the brightest non-core body pixel and the darkest core pixel of a lesion stack's B."""
    body, core = stack.mask.astype(bool), stack.lesion.astype(bool)
    return float((stack.B[body & ~core].max() + stack.B[core].min()) / 2)


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    return make_layout(tmp_path / "phantom")


@pytest.fixture
def h() -> SimpleNamespace:
    """The helpers above, for test modules (conftest modules are not importable under --import-mode=importlib)."""
    return SimpleNamespace(rotation=rotation, psr_oblique_affine=psr_oblique_affine, write_nifti=write_nifti,
                           synthetic_subject=synthetic_subject, make_layout=make_layout, DATA=DATA,
                           layout_with_lesion_maps=layout_with_lesion_maps, core_threshold=core_threshold,
                           PSR_CROP=PSR_CROP, PSR_08=PSR_08, RAS_FLOAT=RAS_FLOAT)
