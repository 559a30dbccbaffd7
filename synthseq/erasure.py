"""Erasure check: does the pseudo-STIR hide a focus the input shows, or show one no input supports?

A model that hides a visible injury is worse than no model, so ``synthseq synthesize`` compares every pseudo-STIR
with its inputs and writes a flag map beside it (:func:`flags_path`), counting the flags in its log line and in
the output's sidecar (``"ErasureCheck"``). :func:`check` does the work on one volume:

1. Each image (T2w, pseudo-STIR, optional T1w; all on the T2w grid) is put in model space ([-1, 1]: the 0.5 /
   99.5 percentiles inside the T2w's intensity body mask) and cut into canonical sagittal slices.
2. **Focal brightness** per slice: the white top-hat (image minus its grey opening with a ``focus_mm`` square,
   after a light smoothing), so structures narrower than that stand out by how much brighter they are than
   their surroundings, in model units. Computed for the T2w (``T``), the pseudo-STIR (``P``) and, with a T1w, for
   the **water image** ``T2w - T1w`` (``W``): fluid and oedema are bright on T2w and dark on T1w, fat is bright on
   both, so ``W`` shows what a fat-suppressed water image (STIR) should show, marrow oedema included. The
   *evidence* ``E`` of the inputs is ``W`` with a T1w, else ``T``.
3. **Missing** (flag 1): a 3D-connected focus where ``E > bright`` (``min_mm3``..``max_mm3``) whose pseudo-STIR
   focal brightness is below ``keep`` times its evidence (means over the focus). Without a T1w, fat (bright on
   T2w, dark on STIR) cannot be told from fluid by the input, so two more conditions keep fat out: ``T >=
   t2w_only_bright`` (fat-water mixtures such as marrow are less bright) and a pseudo-STIR level in the focus at
   least ``fat_margin`` above the pseudo-STIR's own fat level (its 5th body percentile): a focus the model
   suppresses like fat is read as fat, one it merely flattens as erased.
4. **Unsupported** (flag 2): a focus where ``P > bright`` whose evidence is below ``keep`` times its pseudo-STIR
   brightness. Without a T1w, what is near iso-intense on T2w by physics (marrow oedema; PLC injury, fluid in a
   ligament whose fat is as bright on T2w) cannot be supported by the input.

Flag map: uint8 on the T2w's grid, 0 none, 1 missing (T2w focus the pseudo-STIR hides), 2 unsupported (pseudo-STIR
focus no input supports). :func:`score_against_lesions` measures the check on the phantom (sensitivity for
lesions the pseudo-STIR erased, false alarms per volume); :func:`deletion_trials` measures it by construction,
deleting each lesion in turn (``benchmarks/erasure_sensitivity.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from .data.slicing import SagittalView
from .io import Volume, sagittal_axis

MISSING, UNSUPPORTED = 1, 2
FLAG_NAMES = {0: "none", MISSING: "missing_t2w_focus", UNSUPPORTED: "unsupported_pseudo_focus"}


@dataclass(frozen=True)
class ErasureSettings:
    """Thresholds of the check (model units: those of [-1, 1], 2 wide).

    Calibrated on the default-preset phantom so that the real STIR itself raises no flag with a T1w and no
    *missing* flag without one (``tests/test_erasure.py``); measured against the phantom's lesions by
    ``synthseq evaluate`` (:func:`score_against_lesions`).
    """

    focus_mm: float = 20.0  #: top-hat square side: foci narrower than this stand out
    smooth_px: float = 1.0  #: Gaussian sigma (pixels, in-plane) applied before the top-hat
    bright: float = 0.3  #: focal brightness (model units) of a candidate voxel
    focus_bright: float = 0.6  #: ... and of a focus's mean
    keep: float = 0.6  #: a focus is hidden / unsupported below this fraction of the other side's brightness
    keep_t2w_only: float = 0.3  #: the same without a T1w (the T2w's own brightness is weaker evidence)
    keep_unsupported: float = 0.5  #: unsupported: evidence below this fraction of the pseudo-STIR's brightness
    fat_margin: float = 0.25  #: without T1w: pseudo-STIR level above its fat level for a flattened, not fat, focus
    min_mm3: float = 30.0  #: smallest focus volume
    max_mm3: float = 20000.0  #: largest focus volume (bigger bright regions are anatomy, not foci)


def flags_path(output: str | Path) -> Path:
    """Flag map beside ``output``: ``X_pseudoSTIR.nii.gz`` -> ``X_pseudoSTIR_flags.nii.gz`` (BIDS derivative:
    ``X_desc-pseudo_STIR.nii.gz`` -> ``X_desc-pseudoFlags_dseg.nii.gz``)."""
    from .provenance import sibling_path

    return sibling_path(output, "flags", "flags")


def _model_space(data: np.ndarray, body: np.ndarray) -> np.ndarray:
    vals = data[body] if body.any() else data.ravel()
    lo, hi = np.percentile(vals, (0.5, 99.5))
    return (2.0 * (data - lo) / max(float(hi - lo), 1e-6) - 1.0).astype(np.float32)


def _tophat(x: np.ndarray, size_px: tuple[int, int], smooth_px: float) -> np.ndarray:
    """Per-slice white top-hat of ``(S, H, W)`` slices (rectangular footprint: separable min / max filters), after
    an in-plane Gaussian so single-voxel noise does not connect into foci."""
    x = ndimage.gaussian_filter(x, (0, smooth_px, smooth_px))
    return x - ndimage.grey_opening(x, size=(1, *size_px), mode="nearest")


def _features(t2: np.ndarray, t1: np.ndarray | None) -> list[np.ndarray]:
    f = [np.ones_like(t2), t2, t2 * t2, t2 * t2 * t2]
    if t1 is not None:
        f += [t1, t1 * t1, t1 * t2, t1 * t1 * t1]
    return f


def expected_stir(pseudo: np.ndarray, t2: np.ndarray, t1: np.ndarray | None, body: np.ndarray,
                  max_points: int = 200_000) -> np.ndarray:
    """What the inputs say the STIR should look like: a cubic polynomial of T2w (and T1w) fitted by least squares
    to the pseudo-STIR over the body (every voxel's tissue mapping; the few lesion voxels barely move the fit),
    evaluated everywhere. Model-space arrays of one shape; returns float32."""
    idx = np.flatnonzero(body.ravel())
    if idx.size < 16:
        return np.zeros_like(pseudo)
    idx = idx[:: max(1, idx.size // max_points)]
    feats = _features(t2, t1)
    x = np.stack([f.ravel()[idx] for f in feats], 1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(x, pseudo.ravel()[idx].astype(np.float64), rcond=None)
    return sum(float(c) * f for c, f in zip(coef, feats)).astype(np.float32)


def _components(mask: np.ndarray, voxel_mm3: float, s: ErasureSettings):
    """``(labels, [(index, bounding box)])`` of the 3D-connected components within the size limits."""
    lab, n = ndimage.label(mask)
    if n == 0:
        return lab, []
    sizes = np.bincount(lab.ravel(), minlength=n + 1) * voxel_mm3
    return lab, [(i, box) for i, box in enumerate(ndimage.find_objects(lab), start=1)
                 if box is not None and s.min_mm3 <= sizes[i] <= s.max_mm3]


def check(t2w: Volume, pseudo: Volume, t1w: Volume | None = None, settings: ErasureSettings | None = None,
          body: np.ndarray | None = None) -> tuple[Volume, dict[str, Any]]:
    """Flag map and report of one volume (see the module docstring).

    Args:
        t2w: the input T2w (its grid is the output's).
        pseudo: the pseudo-STIR (same grid as ``t2w``; e.g. :meth:`synthseq.synthesis.Synthesizer.predict`'s).
        t1w: the T1w input on the same grid, if the model read one (resampled onto the T2w grid).
        settings: thresholds (default :class:`ErasureSettings`).
        body: body mask (storage order); default: the T2w's intensity estimate.

    Returns:
        ``(flags, report)``: a uint8 Volume on ``t2w``'s grid (0 none, 1 missing, 2 unsupported) and
        ``{"missing": int, "unsupported": int, "used_t1w": bool, "settings": {...}, "foci": [{"flag", "voxels",
        "centre_slice_hw", "evidence", "pseudo", "t2w"}]}`` (focal brightness means, model units; the centre in
        canonical sagittal (slice, row, column) indices).
    """
    from .data.datasets import body_mask_from_intensity

    s = settings or ErasureSettings()
    for v in (pseudo, t1w):
        if v is not None and tuple(v.shape[:3]) != tuple(t2w.shape[:3]):
            raise ValueError(f"{v.name}: shape {v.shape} differs from the T2w's {t2w.shape} (resample it first)")
    body3 = body_mask_from_intensity(np.asarray(t2w.data)) if body is None else np.asarray(body, bool)
    view = SagittalView.from_affine(t2w.affine)
    sl = lambda a: np.ascontiguousarray(view.to_slices(np.asarray(a, dtype=np.float32)))  # noqa: E731
    b = sl(body3) > 0.5
    t2 = sl(_model_space(np.asarray(t2w.data, np.float32), body3))
    ps = sl(_model_space(np.asarray(pseudo.data, np.float32), body3))
    dh, dw = view.inplane_spacing(t2w.spacing)
    voxel_mm3 = float(dh * dw * view.slice_spacing(t2w.spacing))
    size_px = (max(3, round(s.focus_mm / dh)), max(3, round(s.focus_mm / dw)))
    T = _tophat(t2, size_px, s.smooth_px)
    P = _tophat(ps, size_px, s.smooth_px)
    t1 = sl(_model_space(np.asarray(t1w.data, np.float32), body3)) if t1w is not None else None
    E = _tophat(expected_stir(ps, t2, t1, b), size_px, s.smooth_px)
    fat_level = float(np.percentile(ps[b], 5)) if b.any() else -1.0
    if t1 is None:  # T2w alone cannot predict fluid vs fat (see the module docstring): its own focal brightness
        e_missing, e_unsupported = T, np.maximum(T, E)
    else:
        e_missing = e_unsupported = E

    flags = np.zeros(b.shape, np.uint8)
    foci: list[dict[str, Any]] = []
    # candidate voxels already disagree (bright on one side, below keep x that on the other), so a focus does not
    # merge with neighbouring structures both sides show; its means then decide
    keep_m = s.keep if t1 is not None else s.keep_t2w_only
    for flag, bright, other, keep in ((MISSING, e_missing, P, keep_m), (UNSUPPORTED, P, e_unsupported,
                                                                        min(keep_m, s.keep_unsupported))):
        lab, comps = _components((bright > s.bright) & (other < keep * bright) & b, voxel_mm3, s)
        for i, box in comps:
            focus = lab[box] == i
            e, p, t = float(bright[box][focus].mean()), float(other[box][focus].mean()), float(T[box][focus].mean())
            hit = e >= s.focus_bright and p < keep * e
            if flag == MISSING and t1 is None:  # a focus the model suppresses like fat is read as fat
                hit = hit and float(ps[box][focus].mean()) > fat_level + s.fat_margin
            if flag == UNSUPPORTED:
                e, p = p, e  # report evidence and pseudo-STIR brightness under their own names
            if not hit or flags[box][focus].any():  # one flag per place
                continue
            flags[box][focus] = flag
            zz, yy, xx = np.nonzero(focus)
            foci.append({"flag": FLAG_NAMES[flag], "voxels": int(focus.sum()),
                         "centre_slice_hw": [int(zz.mean()) + box[0].start, int(yy.mean()) + box[1].start,
                                             int(xx.mean()) + box[2].start],
                         "evidence": round(e, 3), "pseudo": round(p, 3), "t2w": round(t, 3)})
    out = t2w.with_data(np.ascontiguousarray(view.from_slices(flags)).astype(np.uint8))
    if out.header is not None:
        out.header.set_data_dtype(np.uint8)
        out.header.set_slope_inter(1.0, 0.0)
    report = {"missing": sum(f["flag"] == FLAG_NAMES[MISSING] for f in foci),
              "unsupported": sum(f["flag"] == FLAG_NAMES[UNSUPPORTED] for f in foci),
              "used_t1w": t1w is not None, "settings": asdict(s), "foci": foci}
    return out, report


def summary_line(name: str, report: Mapping[str, Any]) -> str:
    """``sub-01: erasure check: 1 T2w focus missing in the pseudo-STIR, 0 unsupported pseudo-STIR foci``."""
    m, u = int(report["missing"]), int(report["unsupported"])
    return (f"{name}: erasure check: {m} T2w {'focus' if m == 1 else 'foci'} missing in the pseudo-STIR, "
            f"{u} unsupported pseudo-STIR {'focus' if u == 1 else 'foci'}"
            + ("" if report.get("used_t1w") else " (no T1w: marrow oedema, PLC injury cannot be supported)"))


def sidecar_counts(report: Mapping[str, Any]) -> dict[str, Any]:
    """The counts for the output's JSON sidecar (``"ErasureCheck"``): flag codes, counts and the thresholds."""
    return {"FlagCodes": {str(k): v for k, v in FLAG_NAMES.items()}, "Missing": int(report["missing"]),
            "Unsupported": int(report["unsupported"]), "UsedT1w": bool(report.get("used_t1w")),
            "Settings": dict(report.get("settings", {}))}


# ----------------------------------------------------------------------------------- phantom ground truth
def _shown_lesions(t2w: np.ndarray, image: np.ndarray, lesions: np.ndarray, labels: np.ndarray,
                   visible_cnr: float, slice_axis: int | None):
    """Yield ``(class, mask, reference mask, T2w CNR)`` for every lesion component (>= 3 voxels) that the T2w shows
    (CNR ``>= visible_cnr``) and ``image`` shows brighter than its normal reference tissue by at least
    ``synthseq.metrics.MIN_TARGET_STEP``. Arrays of one shape, model space."""
    from .metrics import LESION_CODES, MIN_TARGET_STEP, lesion_cnr, reference_masks

    for name, ref in reference_masks(labels, lesions, slice_axis).items():
        comp, n = ndimage.label(lesions == LESION_CODES[name])
        for i in range(1, n + 1):
            m = comp == i
            if m.sum() < 3:
                continue
            cnr = lesion_cnr(t2w, m, ref)
            if np.isfinite(cnr) and cnr >= visible_cnr and image[m].mean() - image[ref].mean() >= MIN_TARGET_STEP:
                yield name, m, ref, cnr


def erased_lesions(pred: np.ndarray, target: np.ndarray, t2w: np.ndarray, lesions: np.ndarray,
                   labels: np.ndarray, keep: float = 0.5, visible_cnr: float = 3.0,
                   slice_axis: int | None = None) -> list[dict[str, Any]]:
    """Lesions (connected components of each code) that T2w and the real STIR show and the pseudo-STIR erased.

    "Shows": lesion CNR on the T2w ``>= visible_cnr`` and the lesion brighter than its normal reference tissue on
    the real STIR by at least ``synthseq.metrics.MIN_TARGET_STEP`` (the check looks for hidden *bright* foci, so
    confounders that STIR shows dark, such as a fatty haemangioma, are not erasable lesions). "Erased": its
    lesion-to-reference step in ``pred`` below ``keep`` x the step in ``target`` (step recovery, offset-free).
    The contrast ratio is reported too but does not decide: next to a reference near the dark end of the range (the
    interspinous ligament on STIR) it falls below half while the step, what a reader sees, is kept.
    All arrays are the same shape, images normalized alike (e.g. by the evaluation).

    Returns:
        ``[{"class", "voxels", "mask" (bool array), "step_recovery", "recovery" (contrast ratio), "cnr_t2w",
        "erased" (bool)}]`` for every lesion both show.
    """
    from .metrics import tissue_contrast

    out = []
    for name, m, ref, cnr in _shown_lesions(t2w, target, lesions, labels, visible_cnr, slice_axis):
        sr = float(pred[m].mean() - pred[ref].mean()) / float(target[m].mean() - target[ref].mean())
        ct = tissue_contrast(target, m, ref)
        cr = tissue_contrast(pred, m, ref) / ct if np.isfinite(ct) and abs(ct) >= 0.1 else float("nan")
        out.append({"class": name, "voxels": int(m.sum()), "mask": m, "step_recovery": sr, "recovery": cr,
                    "cnr_t2w": cnr, "erased": bool(np.isfinite(sr) and sr < keep)})
    return out


def deletion_trials(t2w: Volume, pseudo: Volume, lesions: np.ndarray, labels: np.ndarray,
                    t1w: Volume | None = None, settings: ErasureSettings | None = None,
                    visible_cnr: float = 3.0) -> dict[str, Any]:
    """The check's sensitivity by construction: every lesion that the T2w and ``pseudo`` both show is deleted
    from ``pseudo`` in turn and the check is run on the result.

    A trained model rarely erases a lesion outright, so :func:`score_against_lesions` has few cases to score; here
    each trial has one known erased lesion. "Shows": T2w CNR ``>= visible_cnr`` and a step over the normal
    reference tissue ``>= synthseq.metrics.MIN_TARGET_STEP`` in ``pseudo`` (model space of the T2w's intensity
    body, as :func:`check` uses). Deleting sets the lesion's voxels to the mean of its reference tissue in
    ``pseudo``: a flat fill, the plainest erasure (a model that paints texture over a lesion may be harder to see).
    A trial is flagged when a *missing* flag lies on the lesion. ``pseudo`` is typically a model's pseudo-STIR
    (how the check does next to that model's errors) or the real STIR (the check on its own).

    Args:
        t2w, pseudo, t1w: as for :func:`check` (same grid; storage order).
        lesions, labels: phantom lesion codes and tissue labels on that grid.

    Returns:
        ``{"trials": [{"class", "voxels", "cnr_t2w", "flagged", "flag_fraction"}], "baseline": check report of
        the unmodified ``pseudo`` (its *missing* foci are false alarms when ``pseudo`` is the real STIR)}``.
    """
    from .data.datasets import body_mask_from_intensity

    body3 = body_mask_from_intensity(np.asarray(t2w.data))
    t2 = _model_space(np.asarray(t2w.data, np.float32), body3)
    ps = _model_space(np.asarray(pseudo.data, np.float32), body3)
    _, baseline = check(t2w, pseudo, t1w, settings, body3)
    trials = []
    for name, m, ref, cnr in _shown_lesions(t2, ps, np.asarray(lesions), np.asarray(labels), visible_cnr,
                                            sagittal_axis(t2w.affine)):
        data = np.array(pseudo.data, dtype=np.float32)
        data[m] = data[ref].mean()
        flags, _ = check(t2w, pseudo.with_data(data), t1w, settings, body3)
        on = np.asarray(flags.data)[m] == MISSING
        trials.append({"class": name, "voxels": int(m.sum()), "cnr_t2w": round(float(cnr), 2),
                       "flagged": bool(on.any()), "flag_fraction": round(float(on.mean()), 3)})
    return {"trials": trials, "baseline": {k: baseline[k] for k in ("missing", "unsupported", "used_t1w")}}


def score_against_lesions(flags: np.ndarray, lesions_found: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The check against phantom truth: how many erased lesions carry a *missing* flag, and how many *missing*
    flags touch no erased lesion (false alarms). ``flags`` is the flag map (same shape as the lesion masks)."""
    flags = np.asarray(flags)
    missing = flags == MISSING
    erased = [les for les in lesions_found if les["erased"]]
    hit = sum(bool((missing & les["mask"]).any()) for les in erased)
    comp, n = ndimage.label(missing)
    near = np.zeros(flags.shape, bool)
    for les in erased:
        near |= ndimage.binary_dilation(les["mask"], iterations=2)
    false = sum(not (near & (comp == i)).any() for i in range(1, n + 1))
    return {"erased_lesions": len(erased), "erased_flagged": int(hit), "missing_flags": int(n),
            "false_alarms": int(false), "visible_lesions": len(lesions_found),
            "unsupported_flags": int(ndimage.label(flags == UNSUPPORTED)[1])}


__all__ = ["ErasureSettings", "FLAG_NAMES", "MISSING", "UNSUPPORTED", "check", "deletion_trials", "erased_lesions",
           "flags_path", "score_against_lesions", "sidecar_counts", "summary_line"]
