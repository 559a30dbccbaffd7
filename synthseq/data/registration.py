"""Paired-grid check and alignment: put the STIR on the T2w's voxel grid and report the residual misalignment.

* :func:`same_grid`: do two volumes share shape and affine (within ``atol`` mm)?
* :func:`resample_to`: resample a volume onto another's grid from the two affines alone (world coordinates, no
  image content used), refusing pairs whose fields of view do not overlap.
* :func:`ncc`: normalized cross-correlation, the residual-misalignment figure reported before/after alignment.
* :func:`rigid_register`: a small 6-parameter rigid registration (rotations about the fixed volume's centre,
  translations in mm) maximizing NCC on a subsampled grid; fast on the volumes this package handles.
* :func:`align_pair`: the dataset's entry point, ``(t2w, stir) -> (stir on the T2w grid, report)``.

All geometry is in world millimetres (RAS+, from the affines), so volumes stored in different orientations
(PSR vs RAS) or voxel sizes are handled the same way.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, optimize

from ..errors import InputError
from ..io import Volume

#: Fewest overlapping voxels (fraction of the reference grid) below which a pair is refused.
MIN_OVERLAP = 1e-6


def same_grid(a: Volume, b: Volume, atol: float = 1e-3) -> bool:
    """True when ``a`` and ``b`` have the same spatial shape and their affines agree within ``atol`` (mm)."""
    return a.shape[:3] == b.shape[:3] and bool(np.allclose(a.affine, b.affine, atol=atol, rtol=0.0))


def _voxel_map(moving: Volume, reference: Volume) -> np.ndarray:
    """``(4, 4)`` map from reference voxel indices to moving voxel indices (through world mm)."""
    return np.linalg.inv(moving.affine) @ reference.affine


def _grid_points(shape: tuple[int, ...], max_points: int) -> np.ndarray:
    """``(3, N)`` voxel indices of a regular subgrid of ``shape`` with at most about ``max_points`` points."""
    stride = max(1, int(np.ceil((np.prod(shape) / max_points) ** (1 / 3))))
    axes = [np.arange(0, n, stride, dtype=np.float64) for n in shape]
    return np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")])


def _inside(coords: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Which ``(3, N)`` voxel coordinates fall inside a grid of ``shape`` (half a voxel of tolerance)."""
    lo = -0.5
    hi = np.asarray(shape, dtype=np.float64)[:, None] - 0.5
    return np.all((coords >= lo) & (coords <= hi), axis=0)


def overlap_fraction(moving: Volume, reference: Volume, max_points: int = 32768) -> float:
    """Fraction of the reference grid that falls inside the moving volume's field of view (0..1)."""
    pts = _grid_points(reference.shape[:3], max_points)
    m = _voxel_map(moving, reference)
    coords = m[:3, :3] @ pts + m[:3, 3:4]
    return float(_inside(coords, moving.shape[:3]).mean())


def resample_to(moving: Volume, reference: Volume, order: int = 1) -> Volume:
    """``moving`` resampled onto ``reference``'s grid (shape and affine), from the affines.

    Args:
        moving: the volume to move (e.g. a STIR, or a label map with ``order=0``).
        reference: the grid to land on (e.g. the T2w).
        order: spline order (0 nearest for labels, 1 linear for images).

    Returns:
        A Volume with ``reference``'s affine and header (float32 for ``order > 0``, ``moving``'s dtype for
        nearest), zero outside ``moving``'s field of
        view, ``path`` None.

    Raises:
        InputError: naming both files when their fields of view do not overlap.
    """
    if same_grid(moving, reference, atol=1e-6):
        return reference.with_data(np.array(moving.data, copy=True))
    if overlap_fraction(moving, reference) <= MIN_OVERLAP:
        raise InputError(f"{moving.name}: field of view does not overlap {reference.name} (cannot pair them)")
    m = _voxel_map(moving, reference)
    src = np.asarray(moving.data, dtype=np.float32) if order > 0 else np.asarray(moving.data)
    shape = reference.shape[:3]
    # values: edge-replicating, so points a hair outside the first / last voxel centre keep the edge value
    data = ndimage.affine_transform(src, m[:3, :3], offset=m[:3, 3], output_shape=shape, order=order,
                                    mode="nearest", prefilter=False)  # linear / nearest: no spline prefilter
    # field of view: within half a voxel of the moving grid (nearest lookup in a ring-padded indicator)
    ring = np.pad(np.ones(src.shape, dtype=np.uint8), 1)
    inside = ndimage.affine_transform(ring, m[:3, :3], offset=m[:3, 3] + 1, output_shape=shape, order=0,
                                      mode="constant", cval=0, prefilter=False)
    data[inside == 0] = 0
    return reference.with_data(data)


def ncc(a, b, mask: np.ndarray | None = None) -> float:
    """Normalized cross-correlation (Pearson r, -1..1) of two same-shape arrays or Volumes, inside ``mask``.

    Returns 0.0 when either image is constant inside the mask.
    """
    x = np.asarray(a.data if isinstance(a, Volume) else a, dtype=np.float64)
    y = np.asarray(b.data if isinstance(b, Volume) else b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"ncc needs same-shape images, got {x.shape} and {y.shape}")
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        x, y = x[m], y[m]
    x = x.ravel() - x.mean() if x.size else x.ravel()
    y = y.ravel() - y.mean() if y.size else y.ravel()
    denom = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denom) if denom > 0 else 0.0


def _rotation(angles_deg: np.ndarray) -> np.ndarray:
    """``(3, 3)`` rotation about the world x, then y, then z axes (degrees)."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def rigid_matrix(params: np.ndarray, center: np.ndarray) -> np.ndarray:
    """``(4, 4)`` world transform of ``params = (rx, ry, rz [deg], tx, ty, tz [mm])`` rotating about ``center``.

    It maps a point of the FIXED image's world to where the moving image is sampled.
    """
    r = _rotation(np.asarray(params[:3], dtype=np.float64))
    t = np.eye(4)
    t[:3, :3] = r
    t[:3, 3] = center - r @ center + np.asarray(params[3:6], dtype=np.float64)
    return t


def _sample(moving: Volume, fixed: Volume, world_tf: np.ndarray, points: np.ndarray, order: int = 1):
    """Moving intensities at fixed voxel ``points`` ``(3, N)`` after ``world_tf``; also which fell inside."""
    m = np.linalg.inv(moving.affine) @ world_tf @ fixed.affine
    coords = m[:3, :3] @ points + m[:3, 3:4]
    values = ndimage.map_coordinates(np.asarray(moving.data, dtype=np.float32), coords, order=order,
                                     mode="constant", cval=0.0, prefilter=False)
    return values, _inside(coords, moving.shape[:3])


def rigid_register(
    moving: Volume,
    fixed: Volume,
    mask: np.ndarray | None = None,
    *,
    max_points: int = 20000,
    max_rotation_deg: float = 10.0,
    max_translation_mm: float = 20.0,
    maxiter: int = 4,
) -> tuple[Volume, dict]:
    """Rigidly align ``moving`` to ``fixed`` by maximizing NCC, and resample it onto ``fixed``'s grid.

    NCC is evaluated on a regular subgrid of at most ``max_points`` fixed voxels (inside ``mask`` if given, and
    inside the moving field of view); Powell's method searches the 6 parameters within the given bounds.
    NCC suits T2w vs STIR reasonably (both bright in fluid, dark in cortex) but fat has opposite contrast, so
    the result is a refinement of the affine-based alignment, not a replacement for it: if the optimum is not
    better than the identity, the identity is kept.

    Returns:
        ``(moving on fixed's grid, report)`` with report keys ``ncc_before``, ``ncc_after`` (full grid, inside
        ``mask``), ``params`` (``rotation_deg`` [3], ``translation_mm`` [3]) and ``improved`` (bool).
    """
    if overlap_fraction(moving, fixed) <= MIN_OVERLAP:
        raise InputError(f"{moving.name}: field of view does not overlap {fixed.name} (cannot pair them)")
    center = (fixed.affine @ np.append((np.asarray(fixed.shape[:3]) - 1) / 2.0, 1.0))[:3]
    pts = _grid_points(fixed.shape[:3], max_points * 4)
    if mask is not None:
        keep = np.asarray(mask, dtype=bool)[tuple(pts.astype(int))]
        pts = pts[:, keep] if keep.any() else pts
    if pts.shape[1] > max_points:  # thin out evenly to the budget
        pts = pts[:, np.linspace(0, pts.shape[1] - 1, max_points).astype(int)]
    ref = ndimage.map_coordinates(np.asarray(fixed.data, dtype=np.float32), pts, order=0)

    def cost(p: np.ndarray) -> float:
        values, inside = _sample(moving, fixed, rigid_matrix(p, center), pts)
        if inside.sum() < 0.1 * inside.size:  # mostly outside: a bad, not a good, alignment
            return 1.0
        return -ncc(values[inside], ref[inside])

    x0 = np.zeros(6)
    bounds = [(-max_rotation_deg, max_rotation_deg)] * 3 + [(-max_translation_mm, max_translation_mm)] * 3
    res = optimize.minimize(cost, x0, method="Powell", bounds=bounds,
                            options={"maxiter": maxiter, "xtol": 1e-2, "ftol": 1e-4})
    params = np.asarray(res.x, dtype=np.float64)
    improved = bool(cost(params) < cost(x0) - 1e-6)
    if not improved:
        params = x0

    before = resample_to(moving, fixed, order=1)
    after = before
    if improved:
        grid = np.indices(fixed.shape[:3], dtype=np.float64).reshape(3, -1)
        values, _ = _sample(moving, fixed, rigid_matrix(params, center), grid)
        after = fixed.with_data(values.reshape(fixed.shape[:3]).astype(np.float32, copy=False))
    report = {
        "ncc_before": ncc(before, fixed, mask),
        "ncc_after": ncc(after, fixed, mask),
        "params": {"rotation_deg": [float(v) for v in params[:3]], "translation_mm": [float(v) for v in params[3:]]},
        "improved": improved,
    }
    return after, report


def align_pair(t2w: Volume, stir: Volume, register: bool = False, mask: np.ndarray | None = None) -> tuple[Volume, dict]:
    """Put ``stir`` on ``t2w``'s grid: resample from the affines if the grids differ, optionally register.

    Returns:
        ``(stir on the T2w grid, report)``; report keys: ``same_grid`` (bool), ``resampled`` (bool),
        ``overlap`` (fraction of the T2w grid covered by the STIR), ``ncc_before`` / ``ncc_after`` (NCC with the
        T2w inside ``mask`` before / after the optional rigid registration; equal when ``register`` is False),
        and ``params`` when registered.

    Raises:
        InputError: naming both files when the fields of view do not overlap.
    """
    same = same_grid(stir, t2w)
    report: dict = {"same_grid": same, "resampled": not same}
    report["overlap"] = 1.0 if same else overlap_fraction(stir, t2w)
    if register:
        out, reg = rigid_register(stir, t2w, mask)
        report.update(reg, registered=True)
        return out, report
    out = stir if same else resample_to(stir, t2w, order=1)
    value = ncc(out, t2w, mask)
    report.update(ncc_before=value, ncc_after=value, registered=False)
    return out, report


__all__ = ["align_pair", "ncc", "overlap_fraction", "resample_to", "rigid_matrix", "rigid_register", "same_grid"]
