"""synthseq.metrics: known pairs, masks, explicit data_range, volume pooling, lesion-level metrics, LPIPS flag."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from synthseq import metrics as M
from synthseq.errors import SynthseqError


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    target = torch.rand(3, 1, 32, 32, generator=g) * 2 - 1
    pred = (target + 0.2 * torch.randn(3, 1, 32, 32, generator=g)).clamp(-1, 1)
    return pred, target


def test_identical_images_are_perfect(pair):
    _, target = pair
    assert torch.allclose(M.ssim(target, target, data_range=2.0), torch.ones(3), atol=1e-6)
    assert torch.equal(M.mae(target, target), torch.zeros(3))
    assert torch.isinf(M.psnr(target, target, data_range=2.0)).all()


@pytest.mark.parametrize("d, data_range", [(0.1, 2.0), (0.25, 2.0), (0.05, 1.0)])
def test_constant_shift_gives_the_closed_form_psnr(pair, d, data_range):
    _, target = pair
    got = M.psnr(target + d, target, data_range=data_range)
    expected = 10 * math.log10(data_range**2 / d**2)
    assert torch.allclose(got.double(), torch.full((3,), expected, dtype=torch.float64), atol=1e-3)
    assert torch.allclose(M.mae(target + d, target), torch.full((3,), d), atol=1e-6)


def test_data_range_is_required_and_positive(pair):
    pred, target = pair
    with pytest.raises(TypeError):
        M.psnr(pred, target)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        M.ssim(pred, target)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="data_range"):
        M.psnr(pred, target, data_range=0)
    # the peak is the caller's, not the image's own maximum: scaling both images changes PSNR predictably
    base = M.psnr(pred, target, data_range=2.0)
    assert torch.allclose(M.psnr(pred / 2, target / 2, data_range=2.0), base + 20 * math.log10(2), atol=1e-3)


def test_ssim_matches_an_independent_implementation(pair):
    kornia = pytest.importorskip("kornia")
    pred, target = pair
    ours = M.ssim_map(pred, target, data_range=2.0)
    ref = kornia.metrics.ssim(pred, target, 11, max_val=2.0, padding="same")
    assert torch.allclose(ours, ref, atol=1e-4)
    assert torch.allclose(M.ssim(pred, target, data_range=2.0), ref.flatten(1).mean(1), atol=1e-4)


def test_ssim_decreases_with_noise_and_is_symmetric(pair):
    pred, target = pair
    noisier = (target + 0.5 * (pred - target) * 3).clamp(-1, 1)
    s1, s2 = M.ssim(pred, target, data_range=2.0), M.ssim(noisier, target, data_range=2.0)
    assert (s2 < s1).all() and (s1 < 1).all()
    assert torch.allclose(s1, M.ssim(target, pred, data_range=2.0), atol=1e-6)


def test_masked_metrics_ignore_changes_outside_the_mask(pair):
    pred, target = pair
    mask = torch.zeros(3, 1, 32, 32)
    mask[..., 4:12, 4:12] = 1
    changed = pred.clone()
    changed[..., 24:, 24:] = 1.0  # more than half a window (5 px) away from the mask
    for fn in (lambda p: M.mae(p, target, mask), lambda p: M.psnr(p, target, 2.0, mask),
               lambda p: M.ssim(p, target, 2.0, mask)):
        assert torch.allclose(fn(pred), fn(changed))
    # ...while the unmasked metrics see the change
    assert not torch.allclose(M.mae(pred, target), M.mae(changed, target))
    # masked MAE is the mean over mask pixels only
    expected = (pred - target).abs()[..., 4:12, 4:12].flatten(1).mean(1)
    assert torch.allclose(M.mae(pred, target, mask), expected, atol=1e-6)


def test_empty_mask_gives_nan_and_reduction_mean_skips_it(pair):
    pred, target = pair
    mask = torch.ones(3, 1, 32, 32)
    mask[1] = 0
    values = M.mae(pred, target, mask)
    assert torch.isnan(values[1]) and torch.isfinite(values[[0, 2]]).all()
    assert torch.isclose(M.mae(pred, target, mask, reduction="mean"), values[[0, 2]].mean())
    # the training loop calls every metric with the same keywords
    for name in ("mae", "psnr", "ssim"):
        assert getattr(M, name)(pred, target, data_range=2.0, mask=mask, reduction="none").shape == (3,)


def test_numpy_2d_and_3d_inputs_are_accepted(pair):
    pred, target = pair
    p3, t3 = pred[:, 0].numpy(), target[:, 0].numpy()
    assert torch.allclose(M.ssim(p3, t3, data_range=2.0), M.ssim(pred, target, data_range=2.0))
    assert M.mae(p3[0], t3[0]).shape == (1,)


def test_volume_metrics_pool_voxels_over_slices(pair):
    pred, target = pair
    mask = torch.zeros(3, 1, 32, 32)
    mask[0, :, 2:30, 2:30] = 1
    mask[2, :, 10:14, 10:14] = 1  # slice 1 has no body: skipped
    vm = M.volume_metrics(pred[:, 0].numpy(), target[:, 0].numpy(), mask[:, 0].numpy(), data_range=2.0)
    weights = mask.flatten(1).sum(1)
    per_slice_ssim = M.ssim(pred, target, 2.0, mask)
    assert vm["voxels"] == int(weights.sum())
    assert vm["ssim"] == pytest.approx(M.weighted_volume_mean(per_slice_ssim, weights), abs=1e-5)
    d = (pred - target)[mask > 0]
    assert vm["mae"] == pytest.approx(float(d.abs().mean()), abs=1e-6)
    assert vm["psnr"] == pytest.approx(10 * math.log10(4 / float((d**2).mean())), abs=1e-4)


def test_normalize_pair_maps_each_volume_by_its_own_percentiles():
    rng = np.random.default_rng(0)
    target = rng.random((4, 8, 8)).astype(np.float32) * 1000
    pred = 3 * target + 50  # same image in another scale: identical after normalization
    pn, tn, pp, tp = M.normalize_pair(pred, target)
    assert np.allclose(pn, tn, atol=1e-5)
    assert pp.low == pytest.approx(3 * tp.low + 50, rel=1e-5)
    assert np.percentile(tn, 0.5) == pytest.approx(-1, abs=1e-5)
    assert np.percentile(tn, 99.5) == pytest.approx(1, abs=1e-5)


# ----------------------------------------------------------------------------------------------- lesions
def _lesion_scene():
    """Two sagittal slices (axis 0) of marrow with an edema lesion, muscle elsewhere."""
    T, L = M.TISSUE_CODES, M.LESION_CODES
    labels = np.full((4, 16, 16), T["muscle"], dtype=np.int16)
    labels[:, 4:12, 4:12] = T["vertebral_marrow"]
    lesions = np.zeros_like(labels)
    lesions[1:3, 6:9, 6:9] = L["marrow_edema"]
    image = np.where(labels == T["vertebral_marrow"], -0.2, 0.1).astype(np.float32)
    image[lesions > 0] = 0.6
    return labels, lesions, image


def test_reference_masks_use_normal_tissue_of_the_lesion_slices():
    labels, lesions, _ = _lesion_scene()
    refs = M.reference_masks(labels, lesions, slice_axis=0)
    assert set(refs) == {"marrow_edema"}
    ref = refs["marrow_edema"]
    assert not (ref & (lesions > 0)).any()
    assert (labels[ref] == M.TISSUE_CODES["vertebral_marrow"]).all()
    assert not ref[0].any() and not ref[3].any() and ref[1].any()  # only the slices holding the lesion


def test_plc_reference_falls_back_to_muscle_without_ligament():
    labels, _, _ = _lesion_scene()
    lesions = np.zeros_like(labels)
    lesions[1, 0:2, 0:2] = M.LESION_CODES["plc_injury"]
    refs = M.reference_masks(labels, lesions, slice_axis=0)
    assert (labels[refs["plc_injury"]] == M.TISSUE_CODES["muscle"]).all()


def test_contrast_recovery_is_one_for_real_vs_itself_and_scales_with_contrast():
    labels, lesions, image = _lesion_scene()
    refs = M.reference_masks(labels, lesions, slice_axis=0)
    assert M.contrast_recovery(image, image, lesions, refs) == {"marrow_edema": pytest.approx(1.0)}
    # halve the lesion's excess over the reference (on the [0, 2]-shifted scale): recovery 0.5
    half = image.copy()
    half[lesions > 0] = (0.6 + -0.2) / 2
    assert M.contrast_recovery(half, image, lesions, refs)["marrow_edema"] == pytest.approx(0.5)
    # contrast is defined on image + 1: (1.6 - 0.8) / 0.8
    assert M.tissue_contrast(image, lesions > 0, refs["marrow_edema"]) == pytest.approx(1.0)


def test_step_recovery_is_offset_free_where_contrast_recovery_is_steep():
    labels, lesions, image = _lesion_scene()
    lm = lesions > 0
    ref = M.reference_masks(labels, lesions, slice_axis=0)["marrow_edema"]
    # real STIR: reference near the dark end (-0.92), lesion at +0.3; pseudo-STIR: the same lesion, the reference
    # 0.25 brighter (the PLC failure of issue 14)
    target, pred = image.copy(), image.copy()
    target[ref], target[lm] = -0.92, 0.3
    pred[ref], pred[lm] = -0.67, 0.3
    m = M.lesion_metrics(pred, target, labels, lesions, slice_axis=0)["marrow_edema"]
    assert m["step_target"] == pytest.approx(1.22) and m["step_pred"] == pytest.approx(0.97)
    assert m["step_recovery"] == pytest.approx(0.97 / 1.22)
    assert m["recovery"] == pytest.approx((0.97 / 0.33) / (1.22 / 0.08))  # about 0.19: the ratio is steep
    assert m["reference_bias"] == pytest.approx(0.25)  # what flattened it: the reference, not the lesion
    # shifting the whole prediction changes contrast recovery, not step recovery
    shifted = M.lesion_metrics(pred + 0.1, target, labels, lesions, slice_axis=0)["marrow_edema"]
    assert shifted["step_recovery"] == pytest.approx(m["step_recovery"])
    assert shifted["recovery"] < 0.9 * m["recovery"]
    assert shifted["reference_bias"] == pytest.approx(0.35)
    # no step worth recovering in the target: NaN, not a ratio over ~0
    flat = target.copy()
    flat[lm] = -0.92 + 0.01
    assert np.isnan(M.lesion_metrics(pred, flat, labels, lesions, slice_axis=0)["marrow_edema"]["step_recovery"])


def test_lesion_cnr_uses_reference_std_or_the_noise_mask():
    labels, lesions, image = _lesion_scene()
    rng = np.random.default_rng(1)
    noisy = image + rng.normal(0, 0.05, image.shape).astype(np.float32)
    ref = M.reference_masks(labels, lesions, slice_axis=0)["marrow_edema"]
    lm = lesions > 0
    expected = (noisy[lm].mean() - noisy[ref].mean()) / noisy[ref].std(ddof=1)
    assert M.lesion_cnr(noisy, lm, ref) == pytest.approx(expected)
    noise = labels == M.TISSUE_CODES["muscle"]
    assert M.lesion_cnr(noisy, lm, ref, noise) == pytest.approx(
        (noisy[lm].mean() - noisy[ref].mean()) / noisy[noise].std(ddof=1))
    per_class = M.lesion_metrics(noisy, noisy, labels, lesions, slice_axis=0)["marrow_edema"]
    assert per_class["recovery"] == pytest.approx(1.0) and per_class["cnr_pred"] == per_class["cnr_target"]


# ------------------------------------------------------------------------------------------------- LPIPS
def test_lpips_is_reported_unavailable_not_random(monkeypatch, pair):
    def missing(net: str):
        raise SynthseqError("LPIPS backbone weights not in the torch cache")

    monkeypatch.setattr(M, "_lpips_model", missing)
    res = M.lpips_distance(*pair)
    assert not res.available and "torch cache" in res.reason
    assert torch.isnan(res.values).all() and res.values.shape == (3,)


def test_lpips_masks_outside_and_repeats_channels(monkeypatch, pair):
    seen = {}

    class Fake(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, a, b):
            seen["a"], seen["b"] = a, b
            return (a - b).abs().mean(dim=(1, 2, 3), keepdim=True)

    monkeypatch.setattr(M, "_lpips_model", lambda net: Fake())
    pred, target = pair
    mask = torch.zeros(3, 1, 32, 32)
    mask[..., :16, :] = 1
    res = M.lpips_distance(pred, target, mask)
    assert res.available and res.values.shape == (3,)
    assert seen["a"].shape == (3, 3, M.LPIPS_MIN_SIZE, M.LPIPS_MIN_SIZE)  # small slices padded with background
    inside = torch.zeros(M.LPIPS_MIN_SIZE, M.LPIPS_MIN_SIZE, dtype=torch.bool)
    inside[16:32, 16:48] = True  # the masked upper half of the 32 x 32 image, centred in the padding
    for img in (seen["a"], seen["b"]):
        assert (img[..., ~inside] == -1).all()
    assert torch.equal(seen["a"][0, 0][inside].view(16, 32), pred[0, 0, :16])


def test_contrast_recovery_is_nan_without_real_contrast():
    """A lesion iso-intense on the real STIR (e.g. a hemangioma) has no contrast to recover: NaN, not a huge ratio."""
    target = np.zeros((4, 8, 8), np.float32)
    lesions = np.zeros((4, 8, 8), np.uint8)
    lesions[:, 2:4, 2:4] = M.LESION_CODES["hemangioma"]
    ref = np.zeros((4, 8, 8), bool)
    ref[:, 5:7, 5:7] = True
    target[lesions > 0] = 0.02  # 2 % relative contrast after the +1 offset: below MIN_TARGET_CONTRAST
    pred = target.copy()
    pred[lesions > 0] = 0.5
    assert np.isnan(M.contrast_recovery(pred, target, lesions, {"hemangioma": ref})["hemangioma"])
    target[lesions > 0] = 0.5  # 50 % contrast: a ratio is meaningful again
    assert M.contrast_recovery(pred, target, lesions, {"hemangioma": ref})["hemangioma"] == pytest.approx(1.0)
