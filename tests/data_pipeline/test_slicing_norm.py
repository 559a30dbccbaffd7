"""Canonical sagittal slicing across storage orientations, 2.5D stacks, and exact normalization inverses."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from synthseq.data import SagittalView, denormalize, normalize, stack_context, unstack_context
from synthseq.data.preprocess import body_mask_from_intensity
from synthseq.io import load_volume


def _reoriented(src, dst, codes: str):
    img = nib.load(str(src))
    ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(img.affine),
                                           nib.orientations.axcodes2ornt(tuple(codes)))
    nib.save(img.as_reoriented(ornt), str(dst))
    return dst


@pytest.mark.parametrize("codes", ["RAS", "LAS", "ASL", "IPR"])
def test_psr_and_other_storage_orders_give_identical_slices(h, tmp_path, codes):
    psr = load_volume(h.PSR_CROP)
    other = load_volume(_reoriented(h.PSR_CROP, tmp_path / f"{codes}.nii.gz", codes))
    assert psr.orientation == "PSR" and other.orientation == codes
    assert not np.array_equal(other.data, psr.data)  # really a different storage layout
    a = SagittalView.from_affine(psr.affine).to_slices(psr.data)
    b = SagittalView.from_affine(other.affine).to_slices(other.data)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (52, 55, 60)  # (S: R->L, H: S->I, W: A->P) of the 60(P) x 55(S) x 52(R) crop


def test_canonical_axes_point_left_inferior_posterior(h):
    """Whatever the storage, +1 along S / H / W moves towards L / I / P in world space (oblique affine too)."""
    for affine in (h.psr_oblique_affine(angles=(8.0, -6.0, 10.0)), np.diag([-1.0, 2.0, 0.5, 1.0]),
                   load_volume(h.RAS_FLOAT).affine):
        shape = (5, 6, 7)
        index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)  # (X, Y, Z, 3)
        view = SagittalView.from_affine(affine)
        canon = np.stack([view.to_slices(index[..., i]) for i in range(3)], -1)  # storage index of each pixel

        def world(ijk, affine=affine):
            return (affine @ np.append(ijk, 1.0))[:3]

        d_s = world(canon[1, 1, 1]) - world(canon[0, 1, 1])
        d_h = world(canon[1, 1, 1]) - world(canon[1, 0, 1])
        d_w = world(canon[1, 1, 1]) - world(canon[1, 1, 0])
        assert np.argmax(np.abs(d_s)) == 0 and d_s[0] < 0  # towards L (RAS x decreasing)
        assert np.argmax(np.abs(d_h)) == 2 and d_h[2] < 0  # towards I
        assert np.argmax(np.abs(d_w)) == 1 and d_w[1] < 0  # towards P


def test_slices_back_to_volume_is_exact(h):
    for path in (h.PSR_CROP, h.RAS_FLOAT):
        vol = load_volume(path, allow_zero=True)
        view = SagittalView.from_affine(vol.affine)
        np.testing.assert_array_equal(view.from_slices(view.to_slices(vol.data)), vol.data)
        t = torch.from_numpy(vol.data)
        assert torch.equal(view.from_slices(view.to_slices(t)), t)


def test_context_stack_round_trip_and_edge_replication():
    rng = np.random.default_rng(0)
    slices = rng.standard_normal((6, 4, 5)).astype(np.float32)
    for k in (1, 3, 5):
        st = stack_context(slices, k)
        assert st.shape == (6, k, 4, 5)
        np.testing.assert_array_equal(unstack_context(st), slices)
        for s in range(6):
            for c in range(k):
                np.testing.assert_array_equal(st[s, c], slices[min(max(s + c - k // 2, 0), 5)])
    t = torch.from_numpy(slices)
    assert torch.equal(unstack_context(stack_context(t, 3)), t)
    with pytest.raises(ValueError):
        stack_context(slices, 2)


@pytest.mark.parametrize("method", ["percentile", "zscore"])
def test_normalization_inverse_is_exact_on_real_data(h, method):
    vol = load_volume(h.PSR_08)
    mask = body_mask_from_intensity(vol.data)
    y, params = normalize(vol.data, method, (0.5, 99.5), mask=mask)
    back = denormalize(y, params)
    np.testing.assert_allclose(back, vol.data, rtol=0, atol=1e-3)  # int16 scanner units: far below 1 unit
    if method == "percentile":
        inside = y[mask]
        eps = 1e-5  # the percentiles themselves land on -1 / +1 (integer data: ties)
        assert np.mean(inside < -1 - eps) <= 0.005 <= np.mean(inside <= -1 + eps)
        assert np.mean(inside > 1 + eps) <= 0.005 <= np.mean(inside >= 1 - eps)
        assert np.abs(inside - -1).min() < eps and np.abs(inside - 1).min() < eps
    else:
        assert float(y[mask].mean()) == pytest.approx(0.0, abs=1e-4)
        assert float(y[mask].std()) == pytest.approx(1.0, abs=1e-4)
    params2 = type(params).from_dict(params.to_dict())
    np.testing.assert_array_equal(denormalize(y, params2), back)


# ------------------------------------------------------------------------------------- other planes
@pytest.mark.parametrize("plane, axes", [("axial", ("SI", "AP", "LR")), ("coronal", ("AP", "SI", "LR")),
                                         ("sagittal", ("LR", "SI", "AP"))])
@pytest.mark.parametrize("codes", ["RAS", "LAS", "PSR"])
def test_every_plane_points_left_posterior_inferior(plane, axes, codes):
    """Axial RAS / LAS (and PSR) storage: +1 along S / H / W moves towards the negative end of the plane's axes."""
    from synthseq.data.slicing import SliceView

    world_axis = {"LR": 0, "AP": 1, "SI": 2}
    affine = {"RAS": np.diag([0.9, 0.9, 5.0, 1.0]), "LAS": np.diag([-0.9, 0.9, 5.0, 1.0]),
              "PSR": np.array([[0, 0, 1.0, 0], [-1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])}[codes]
    assert nib.aff2axcodes(affine) == tuple(codes)
    shape = (5, 6, 7)
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    view = SliceView.from_affine(affine, plane)
    assert view.plane == plane
    canon = np.stack([view.to_slices(index[..., i]) for i in range(3)], -1)

    def world(ijk):
        return (affine @ np.append(ijk, 1.0))[:3]

    for d, name in zip((world(canon[1, 1, 1]) - world(canon[0, 1, 1]), world(canon[1, 1, 1]) - world(canon[1, 0, 1]),
                        world(canon[1, 1, 1]) - world(canon[1, 1, 0])), axes):
        assert np.argmax(np.abs(d)) == world_axis[name] and d[world_axis[name]] < 0, (plane, codes, name, d)
    data = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(view.from_slices(view.to_slices(data)), data)


def test_axial_ras_and_las_give_identical_axial_slices_and_acquisition_resolves(tmp_path):
    """The same anatomy stored RAS and LAS (axial 0.9 x 0.9 x 5 mm) gives the same axial slices; "acquisition"
    picks the axial plane (across the 5 mm axis), whose slices are 0.9 x 0.9 mm."""
    from synthseq.data.slicing import SliceView, resolve_plane

    rng = np.random.default_rng(0)
    data = rng.standard_normal((8, 10, 4)).astype(np.float32)
    ras = np.diag([0.9, 0.9, 5.0, 1.0])
    las = ras.copy()
    las[0, 0], las[0, 3] = -0.9, 0.9 * 7  # x flipped: same world positions for the flipped array
    a = SliceView.from_affine(ras, "axial").to_slices(data)
    b = SliceView.from_affine(las, "axial").to_slices(data[::-1])
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4, 10, 8)  # (S: S->I, H: A->P, W: R->L)
    # slice 0 is the most superior (highest z); rows run A -> P (y reversed), columns R -> L (x reversed)
    np.testing.assert_array_equal(a[0], data[::-1, ::-1, 3].T)
    assert resolve_plane("acquisition", ras) == "axial" and resolve_plane("acquisition", las) == "axial"
    view = SliceView.from_affine(las, "acquisition")
    assert view.plane == "axial" and view.inplane_spacing((0.9, 0.9, 5.0)) == (0.9, 0.9)
    assert view.slice_spacing((0.9, 0.9, 5.0)) == 5.0
    sag = np.diag([3.0, 1.0, 1.0, 1.0])
    assert resolve_plane("acquisition", sag) == "sagittal"


def test_unknown_plane_is_a_config_error():
    from synthseq.data.slicing import SliceView
    from synthseq.errors import ConfigError

    with pytest.raises(ConfigError, match="data.slice_plane: expected one of sagittal, axial, coronal, acquisition"):
        SliceView.from_affine(np.eye(4), "oblique")
