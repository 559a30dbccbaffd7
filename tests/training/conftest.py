"""A tiny phantom-layout folder (synthetic NIfTI written here) and tiny training configs for the loop tests."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from synthseq.config import load_config

N_SUBJECTS = 5
SHAPE = (6, 32, 32)  # (L-R slices, A-P, S-I) with a RAS affine: 6 sagittal slices of 32 x 32


def _subject(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    _, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij")
    cy, cz = rng.uniform(-0.1, 0.1, 2)
    body = ((y - cy) / 0.8) ** 2 + ((z - cz) / 0.9) ** 2 < 1
    fat = body & (((y - cy) / 0.8) ** 2 + ((z - cz) / 0.9) ** 2 > 0.7)  # a subcutaneous rim
    lesion = body & ((y - cy - 0.2) ** 2 + (z - cz) ** 2 < rng.uniform(0.02, 0.06))
    labels = np.where(body, 3, 0).astype(np.uint8)
    labels[fat] = 2
    t2w = np.where(body, 300.0, 5.0) + np.where(fat, 500.0, 0.0) + np.where(lesion, 250.0, 0.0)
    stir = np.where(body, 200.0, 5.0) - np.where(fat, 170.0, 0.0) + np.where(lesion, 400.0, 0.0)
    noise = rng.normal(0, 4, (2, *SHAPE))
    return (t2w + noise[0]).astype(np.float32), (stir + noise[1]).astype(np.float32), labels, lesion.astype(np.uint8)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on shared cores OpenMP spin-waits cost a lot."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_phantom")
    rng = np.random.default_rng(0)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    for i in range(1, N_SUBJECTS + 1):
        sid = f"sub-{i:04d}"
        (root / sid).mkdir()
        t2w, stir, labels, lesions = _subject(rng)
        nib.save(nib.Nifti1Image(t2w, affine), root / sid / f"{sid}_T2w.nii.gz")
        nib.save(nib.Nifti1Image(stir, affine), root / sid / f"{sid}_STIR.nii.gz")
        nib.save(nib.Nifti1Image(labels, affine), root / sid / f"{sid}_labels.nii.gz")
        nib.save(nib.Nifti1Image(lesions, affine), root / sid / f"{sid}_lesions.nii.gz")
    return root


def tiny_overrides(kind: str = "pix2pix") -> list[str]:
    """Networks of a few thousand parameters on 16 x 16 crops: each step takes milliseconds."""
    if kind == "pix2pix":
        nets = ["model.generator_kwargs={base_channels: 4, num_downs: 3}",
                "model.discriminator_kwargs={base_channels: 4, n_layers: 2}"]
    else:
        nets = ["model.kind=cyclegan", "model.generator=resnet", "data.paired=false", "loss.cyclegan.pool_size=4",
                "model.generator_kwargs={base_channels: 4, n_blocks: 1}",
                "model.discriminator_kwargs={base_channels: 4, n_layers: 2}"]
    return [*nets, "data.image_size=16", "train.batch_size=2", "train.device=cpu", "train.schedule=constant",
            "train.log_every=1", "train.val_every=2", "train.image_every=2", "train.ckpt_every=2",
            "data.val_fraction=0.2", "data.test_fraction=0.2"]


@pytest.fixture
def tiny_cfg(tiny_root, tmp_path):
    def make(kind: str = "pix2pix", *extra: str, out: str = "run"):
        return load_config(None, [*tiny_overrides(kind), f"data.root={tiny_root}",
                                  f"train.out_dir={tmp_path / out}", *extra])

    return make


@pytest.fixture
def tiny_args(tiny_root):
    """The overrides of :func:`tiny_cfg` as command-line strings (for subprocess runs)."""
    return lambda kind="pix2pix": [*tiny_overrides(kind), f"data.root={tiny_root}"]
