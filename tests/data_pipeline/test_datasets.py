"""Paired / unpaired slice datasets: item contents, foreground selection, resampling, augmentation, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from synthseq.codes import T
from synthseq.data import SagittalView, load_subjects
from synthseq.data.datasets import (
    PairedSliceDataset,
    UnpairedSliceDataset,
    body_mask_from_intensity,
    prepare_subject,
)
from synthseq.data.transforms import AugmentSettings
from synthseq.errors import InputError
from synthseq.io import load_volume

GEOMETRY_ONLY = AugmentSettings(flip_prob=0.5, affine_prob=1.0, rotate_deg=10.0, scale=0.1, translate_px=3.0,
                                bias_prob=0.0, gamma_prob=0.0, noise_prob=0.0)


def _expected_slices(subject, key: str, ref: str = "T2w") -> tuple[np.ndarray, np.ndarray]:
    """Independent reference: canonical slices of ``key`` normalized by its percentiles inside the intensity body
    mask of ``ref`` (the reference volume: T2w, or the STIR itself in a target-only pool), as synthesis normalizes,
    and the label body fraction."""
    vol = load_volume(subject.paths[key])
    labels = load_volume(subject.paths["labels"], allow_zero=True).data
    body = (labels > 0) & (labels != T["airway"])
    norm_body = body_mask_from_intensity(load_volume(subject.paths[ref]).data)
    lo, hi = np.percentile(vol.data[norm_body].astype(np.float64), (0.5, 99.5))
    norm = (vol.data - (hi + lo) / 2) / ((hi - lo) / 2)
    view = SagittalView.from_affine(vol.affine)
    return view.to_slices(norm), view.to_slices(body).mean(axis=(1, 2))


@pytest.fixture
def subjects(h, tmp_path):
    return load_subjects(h.make_layout(tmp_path / "ph", n_subjects=2, extra=("T1w",)))


def test_item_shapes_ranges_and_channel_order(subjects):
    ds = PairedSliceDataset(subjects, ("T2w", "T1w"), "STIR", image_size=16, context_slices=3)
    t2, frac = _expected_slices(subjects[0], "T2w")
    t1, _ = _expected_slices(subjects[0], "T1w")
    stir, _ = _expected_slices(subjects[0], "STIR")
    kept = [int(j) for j in np.flatnonzero(frac >= 0.05)]
    assert [j for (i, j) in ds.index if i == 0] == kept
    n = next(k for k, (i, _) in enumerate(ds.index) if i == 0)  # first item of subject 0
    item = ds[n + 2]
    j = kept[2]
    assert item["subject"] == "sub-0001" and item["slice"] == j
    assert item["A"].shape == (6, 16, 16) and item["A"].dtype == torch.float32
    assert item["B"].shape == (1, 16, 16) and item["mask"].shape == (1, 16, 16)
    crop = (slice(7, 23), slice(4, 20))  # centre 16x16 of the (30, 24) slices
    for c, (arr, s) in enumerate([(t2, j - 1), (t2, j), (t2, j + 1), (t1, j - 1), (t1, j), (t1, j + 1)]):
        np.testing.assert_allclose(item["A"][c].numpy(), arr[s][crop], atol=1e-5)
    np.testing.assert_allclose(item["B"][0].numpy(), np.clip(stir[j][crop], -1, 1), atol=1e-5)
    assert float(item["B"].min()) >= -1 and float(item["B"].max()) <= 1
    assert set(np.unique(item["mask"].numpy())) <= {0.0, 1.0}


def test_padding_uses_normalized_background(subjects):
    ds = PairedSliceDataset(subjects, image_size=40)
    item = ds[len(ds) // 2]
    st = ds.stacks[ds.index[len(ds) // 2][0]]
    assert item["A"].shape == (1, 40, 40)
    # slices are 30 x 24: rows 0-4 and columns 0-7 are padding
    assert torch.all(item["A"][:, :5] == float(st.pad_A[0])) and float(st.pad_A[0]) < -1
    p = st.norm["T2w"]
    assert float(st.pad_A[0]) == pytest.approx((0 - p.center) / p.scale, rel=1e-5)
    assert torch.all(item["B"][:, :, :8] == -1.0)
    assert torch.all(item["mask"][:, :5] == 0)


def test_foreground_aware_slice_selection(subjects):
    _, frac0 = _expected_slices(subjects[0], "T2w")
    _, frac1 = _expected_slices(subjects[1], "T2w")
    ds = PairedSliceDataset(subjects, image_size=16, min_foreground=0.4)
    assert len(ds) == int((frac0 >= 0.4).sum() + (frac1 >= 0.4).sum())
    assert len(ds) < len(PairedSliceDataset(subjects, image_size=16, min_foreground=0.0))
    for i, j in ds.index:
        assert (frac0, frac1)[i][j] >= 0.4
    with pytest.raises(InputError) as exc:
        PairedSliceDataset(subjects, image_size=16, min_foreground=1.0)
    assert "sub-0001" in str(exc.value) and "min_foreground" in str(exc.value)
    with pytest.raises(InputError, match="no subjects"):
        PairedSliceDataset([], image_size=16)


def test_subject_without_target_names_it(h, tmp_path):
    root = h.make_layout(tmp_path / "ph", n_subjects=2)
    (root / "sub-0002" / "sub-0002_STIR.nii.gz").unlink()
    with pytest.raises(InputError) as exc:
        PairedSliceDataset(load_subjects(root), image_size=16)
    assert str(exc.value) == "sub-0002: no STIR file (has T2w, labels)"


def test_inplane_resampling_to_pixel_spacing(subjects):
    st = prepare_subject(subjects[0], pixel_spacing_mm=0.6)
    # oblique PSR grid with voxel (1.0 P, 1.2 S, 0.9 R) mm: H (S) 30 * 1.2 / 0.6, W (P) 24 * 1.0 / 0.6
    assert st.A.shape[2:] == (60, 40) and st.spacing == (0.6, 0.6)
    assert st.mask.shape[2:] == (60, 40) and set(np.unique(st.mask)) <= {0.0, 1.0}
    native = prepare_subject(subjects[0])
    assert native.spacing == pytest.approx((1.2, 1.0))
    assert native.foreground == pytest.approx(st.foreground, abs=0.03)  # same anatomy, finer pixels


def test_stir_on_another_grid_is_resampled_onto_t2w(h, tmp_path):
    root = h.make_layout(tmp_path / "ph", n_subjects=1)
    sub = load_subjects(root)[0]
    same = prepare_subject(sub)
    stir = load_volume(sub.paths["STIR"])
    finer = stir.affine.copy()
    finer[:3, :3] *= 0.5
    finer[:3, 3] -= 0.25 * stir.affine[:3, :3].sum(axis=1)  # keep voxel centres of the coarse grid aligned
    zoomed = ndimage.zoom(stir.data, 2.0, order=1, grid_mode=True, mode="grid-constant")
    h.write_nifti(sub.paths["STIR"], zoomed.astype(np.float32), finer)
    moved = prepare_subject(sub)
    assert moved.alignment["STIR"]["resampled"] and not same.alignment["STIR"]["resampled"]
    assert moved.B.shape == same.B.shape
    body = same.mask.astype(bool)
    assert np.corrcoef(moved.B[body], same.B[body])[0, 1] > 0.95


def test_a_t1w_first_on_another_grid_still_trains_on_the_t2w_grid(h, tmp_path):
    """data.input_keys=[T1w, T2w] with the T1w on a finer grid: the stack takes the T2w's grid (the grid synthesize
    writes on, whatever the channel order), the T1w is resampled onto it, and the T2w channel is untouched."""
    root = h.make_layout(tmp_path / "ph", n_subjects=1, extra=("T1w",))
    sub = load_subjects(root)[0]
    t2_only = prepare_subject(sub)
    t1 = load_volume(sub.paths["T1w"])
    finer = t1.affine.copy()
    finer[:3, :3] *= 0.5
    finer[:3, 3] -= 0.25 * t1.affine[:3, :3].sum(axis=1)
    h.write_nifti(sub.paths["T1w"], ndimage.zoom(t1.data, 2.0, order=1, grid_mode=True,
                                                  mode="grid-constant").astype(np.float32), finer)
    both = prepare_subject(sub, input_keys=["T1w", "T2w"])
    assert both.A.shape == (t2_only.A.shape[0], 2, *t2_only.A.shape[2:])
    assert both.alignment["T1w"]["resampled"] and "T2w" not in both.alignment
    np.testing.assert_array_equal(both.A[:, 1], t2_only.A[:, 0])  # T2w channel: the T2w-only model's input
    np.testing.assert_array_equal(both.B, t2_only.B)


def test_deterministic_given_seed_and_epoch(subjects):
    kw = dict(image_size=16, augment=True, augment_settings=GEOMETRY_ONLY)
    a, b = PairedSliceDataset(subjects, seed=5, **kw), PairedSliceDataset(subjects, seed=5, **kw)
    for i in (0, 3):
        assert torch.equal(a[i]["A"], b[i]["A"]) and torch.equal(a[i]["B"], b[i]["B"])
        assert torch.equal(a[i]["A"], a[i]["A"])
    other = PairedSliceDataset(subjects, seed=6, **kw)
    assert any(not torch.equal(a[i]["A"], other[i]["A"]) for i in range(4))
    first = a[2]["A"]
    a.set_epoch(1)
    assert not torch.equal(a[2]["A"], first)


def test_geometric_augmentation_is_identical_for_a_and_b(h, tmp_path):
    subs = load_subjects(h.make_layout(tmp_path / "ph", n_subjects=1, stir_same_as_t2w=True))
    kw = dict(image_size=24, min_foreground=0.2, norm="zscore")  # z-score: the target is not clipped, B == A
    plain = PairedSliceDataset(subs, **kw)
    aug = PairedSliceDataset(subs, augment=True, augment_settings=GEOMETRY_ONLY, **kw)
    st = plain.stacks[0]
    thr = (st.pad_A[0] + st.A[st.mask.astype(bool)].min()) / 2  # between air and the darkest body pixel
    changed = 0
    for i in range(len(aug)):
        item, ref = aug[i], plain[i]
        torch.testing.assert_close(item["A"], item["B"], atol=1e-5, rtol=0)
        changed += not torch.allclose(item["A"], ref["A"])
        # the mask moved with the images: body pixels are the bright ones
        bright = (item["B"] > float(thr)).float()
        assert (bright == item["mask"]).float().mean() > 0.9
    assert changed >= len(aug) // 2


def test_lesion_map_moves_with_the_pair(h, tmp_path):
    subs = h.layout_with_lesion_maps(tmp_path / "ph")
    kw = dict(image_size=24, min_foreground=0.2, norm="zscore", lesion_key="lesions")
    aug = PairedSliceDataset(subs, augment=True, augment_settings=GEOMETRY_ONLY, **kw)
    st = aug.stacks[0]
    assert set(np.unique(st.lesion)) == {0.0, 1.0}
    thr = h.core_threshold(st)
    assert np.array_equal(st.B > thr, st.lesion.astype(bool))  # before augmentation: exactly the core
    for i in range(len(aug)):
        item = aug[i]
        assert set(item["lesion"].unique().tolist()) <= {0.0, 1.0}
        assert ((item["B"] > thr).float() == item["lesion"]).float().mean() > 0.95


def test_missing_lesion_map_names_the_subject(h, tmp_path):
    subs = load_subjects(h.make_layout(tmp_path / "ph", n_subjects=1))
    with pytest.raises(InputError, match="sub-0001: no lesions file .*data.lesion_key=null"):
        PairedSliceDataset(subs, image_size=24, lesion_key="lesions")


def test_intensity_augmentation_touches_the_input_only(h, tmp_path):
    subs = load_subjects(h.make_layout(tmp_path / "ph", n_subjects=1, stir_same_as_t2w=True))
    s = AugmentSettings(flip_prob=0, affine_prob=0, bias_prob=1, gamma_prob=1, noise_prob=1)
    plain = PairedSliceDataset(subs, image_size=24, min_foreground=0.2)
    aug = PairedSliceDataset(subs, image_size=24, min_foreground=0.2, augment=True, augment_settings=s)
    item, ref = aug[1], plain[1]
    assert not torch.allclose(item["A"], ref["A"], atol=1e-3)
    # B and mask: a plain random crop of their (30 x 24) slice, no intensity change
    st = plain.stacks[0]
    _, j = plain.index[1]
    tops = [t for t in range(30 - 24 + 1) if np.array_equal(st.B[j][:, t: t + 24], item["B"].numpy())]
    assert tops and np.array_equal(st.mask[j][:, tops[0]: tops[0] + 24], item["mask"].numpy())


def test_unpaired_items(subjects):
    ds = UnpairedSliceDataset(subjects[:1], subjects[1:], image_size=16, seed=2)
    assert len(ds) == len(ds.index_a)
    item = ds[0]
    assert set(item) == {"A", "B", "mask", "subject", "slice", "subject_b", "slice_b"}
    assert item["subject"] == "sub-0001" and item["subject_b"] == "sub-0002"
    stir, _ = _expected_slices(subjects[1], "STIR", ref="STIR")
    np.testing.assert_allclose(item["B"][0].numpy(), np.clip(stir[item["slice_b"]][7:23, 4:20], -1, 1), atol=1e-5)
    picks = {ds[i]["slice_b"] for i in range(len(ds))}
    assert len(picks) > 3  # B drawn from across the pool, not tied to A's slice
    again = UnpairedSliceDataset(subjects[:1], subjects[1:], image_size=16, seed=2)
    assert [again[i]["slice_b"] for i in range(5)] == [ds[i]["slice_b"] for i in range(5)]
    aug = UnpairedSliceDataset(subjects[:1], subjects[1:], image_size=16, seed=2, augment=True)
    assert aug[0]["A"].shape == (1, 16, 16) and aug[0]["B"].shape == (1, 16, 16)


def test_body_mask_from_intensity(h):
    t2w, _, labels = h.synthetic_subject((24, 30, 20), seed=1)
    truth = labels > 0
    est = body_mask_from_intensity(t2w)
    dice = 2 * (est & truth).sum() / (est.sum() + truth.sum())
    assert dice > 0.95
    crop = load_volume(h.PSR_CROP).data  # a tight crop inside the neck: nearly all body
    assert body_mask_from_intensity(crop).mean() > 0.7


def test_phantom_dataset_end_to_end(tmp_path):
    """The embedded phantom's layout feeds the datasets directly (runs once synthseq.phantom is available)."""
    phantom = pytest.importorskip("synthseq.phantom")
    if not hasattr(phantom, "generate_dataset"):
        pytest.skip("synthseq.phantom.generate_dataset not available yet")
    root = tmp_path / "phantom"
    phantom.generate_dataset(root, subjects=2, seed=0, preset="tiny")
    subjects = load_subjects(root)
    assert len(subjects) == 2 and {"T2w", "STIR", "labels"} <= set(subjects[0].paths)
    ds = PairedSliceDataset(subjects, image_size=32)
    item = ds[len(ds) // 2]
    assert item["A"].shape == (1, 32, 32) and float(item["mask"].sum()) > 0
    assert not ds.stacks[0].alignment["STIR"]["resampled"]  # the phantom writes both on one grid
