"""Sim-to-real: how close the phantom's T2w is to real T2w, and whether a phantom-trained model gives STIR physics
on real anatomy.

    python benchmarks/sim_to_real.py [--quick] [--subjects 3] [--checkpoint NAME=best.pt ...] [--figures DIR]
                                     [--out result.json]

Method (documented here; the numbers go to the JSON):

1. **Real volumes**: the cervical T2w of ``../shared/data/real/`` (``REAL``): two sagittal 1 / 0.8 mm SCT
   volumes with shipped cord masks and the axial spine-generic subject whose T1w is co-registered on the
   same grid (3 T Prisma per its JSON; the SCT files carry no field strength). The lumbar T2w is left out
   (the phantom is a cervical spine). The phantom is simulated at 3 T by default (``--field``).
2. **Tissue masks**, estimated *with the same estimator on real and phantom volumes* (the phantom's cord mask is
   its cord label, as the real ones are manual cord masks), all volumes in RAS voxel order:

   * cord: the mask;
   * CSF: the ring 0.5-4 mm around the cord whose T2w is above the midpoint between the cord median and the
     ring's 90th percentile (with a T1w: ring voxels darker than the cord on T1w and brighter on T2w);
   * fat: body voxels over the cord's S-I extent and > 20 mm from the cord whose T2w is in the top 15 % of
     those voxels (with a T1w: body voxels in the top 15 % on T1w and above the body median on T2w);
   * posterior fat (``fat_posterior``): as fat, but only behind the cord's centre (posterior neck: interspinous,
     intermuscular, subcutaneous) and the top 5 % (with a T1w: the fat mask behind the cord). Validated where the
     fat estimator is not (item 7): it keeps prevertebral tissue (oedema is bright on STIR) out of the mask of a
     scan cropped to the spine;
   * vertebral column ("marrow"): per S-I row, voxels within 4 mm of the cord centre laterally and 8-20 mm in
     front of it (vertebral bodies and, for ~1/4 of the height, discs), CSF excluded;
   * body: T2w above 8 % of its 99.5th percentile, holes filled; background: > 5 mm outside the body.

   On the phantom the label truth is also measured (``label_truth``), so the estimator's own bias is visible.
3. **Statistics of a T2w** (intensities divided by the CSF median, so scanner scale drops out):
   tissue ratios (cord, fat, column over CSF); in-plane gradient magnitude inside the body eroded by 2 mm
   (median, 90th, 99th percentile, per mm); texture: robust coefficient of variation (IQR / median) inside fat
   and column, and the high-pass residual (image minus its 2 mm Gaussian blur) inside the body: its SD and
   lag-1 autocorrelation; noise: SNR of CSF (background mean / 1.2533 is the Rician sigma) and the background
   noise spectrum's high / low band power ratio (0.3-0.5 over 0.05-0.2 cycles per voxel: 1 for white noise,
   < 1 when the scanner filters and zero-fills k-space). In-plane = the two largest array axes.
4. **Distance** of a phantom mode to real data, per statistic: ``|ln(phantom mean / real mean)|`` (0 = equal,
   0.69 = a factor 2); ``mean_distance`` averages the statistics both sides have.
5. **Physics on real anatomy** (``--checkpoint``): each checkpoint (trained only on a phantom) synthesizes a
   pseudo-STIR of every real T2w; on the same masks: fat / CSF (STIR physics: < 0.2), CSF the brightest of
   CSF / cord / fat / column, cord darker than CSF, column ("marrow") / CSF < 0.5. The phantom's own STIR,
   measured with the same masks, is reported as the reference (``phantom_stir_reference``). A T1w + T2w checkpoint
   (``data.input_keys=[T1w, T2w]``) gets the scan's co-registered T1w and runs only on the scan that has one (the
   axial spine-generic subject; the others are reported as skipped).

6. **Lesions kept** (``--checkpoint``, ``--lesion-subjects N``, default 8): fat suppression bought by erasing the
   injuries STIR is read for would pass item 5, so each checkpoint also synthesizes N held-out phantom subjects
   (``--lesion-mode``, default randomized; rng seeds 2000..; ``synthseq phantom`` hashes 32-bit subject seeds, so a
   collision with a training subject is improbable but not excluded)
   and reports per lesion class the step recovery and contrast recovery (``synthseq.metrics.lesion_metrics``:
   prediction in its T2w's normalization, the STIR by its own percentiles in the labels' body, as ``synthseq
   evaluate`` scores them), averaged over the subjects with that class; the T2w itself is scored the same way.
   A T1w + T2w checkpoint reads each phantom subject's own T1w.

7. **Does the fat estimator hold on this field of view?** (``fat_estimator_check``): a fat mask from T2w
   intensity alone picks the brightest tissue far from the cord; on a full neck that is subcutaneous fat, on a
   scan cropped to the spine (``sct_prisma``: 79 x 79 mm, no skin) it can be muscle, ligament or prevertebral
   oedema. So every phantom subject is cropped to each T2w-only real scan's field of view (in mm, centred on the
   cord, clipped to the phantom's) and both fat masks are estimated on the crop: ``fat_share`` = the share of
   fat-labelled voxels (subcutaneous, epidural, intermuscular) in the mask, ``stir_fat_csf`` = the phantom's own
   STIR through it (< 0.2 where the measure can pass) and ``stir_pass`` = how many subjects pass. Where the real
   STIR fails the check, a pseudo-STIR that fails it says nothing.

``--quick`` (the test suite): tiny preset, one phantom subject per mode, one real volume, no checkpoint needed.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import math  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from _common import ROOT, emit, environment, fail  # noqa: E402
from scipy import ndimage  # noqa: E402

REAL_DIR = ROOT.parent / "shared" / "data" / "real"
#: name -> (T2w, cord mask, T1w on the same grid or None)
REAL = {
    "sct_errsm30_sag_1mm": ("cervical_t2/sct_errsm30_T2w_sag_fullfov.nii.gz", "crop:cervical_t2/"
                            "sct_errsm30_T2w_sag_crop_seg-manual.nii.gz", None),
    "sct_prisma_sag_0p8mm": ("cervical_t2/sct_fslPrisma05_T2w_sag_0p8mm.nii.gz",
                             "cervical_t2/sct_fslPrisma05_T2w_sag_0p8mm_FAKE-lesion_sc-seg.nii.gz", None),
    "spine_generic_unf01_ax_1mm": ("cervical_paired_t1_t2_t2star/sub-unf01_T2w.nii.gz",
                                   "cervical_paired_t1_t2_t2star/sub-unf01_seg-manual_shared.nii.gz",
                                   "cervical_paired_t1_t2_t2star/sub-unf01_T1w.nii.gz"),
}
QUICK_REAL = ("sct_prisma_sag_0p8mm",)
MODES = ("classic", "faithful")
CSF_L, CORD_L, FAT_L, MARROW_L = 10, 11, 2, 7  # phantom label codes (synthseq.codes.TISSUES)


# ------------------------------------------------------------------------------------------------ loading
def canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Array and zooms in the closest RAS voxel order."""
    import nibabel as nib

    img = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(data, np.float32), affine))
    return np.asarray(img.dataobj, np.float32), np.asarray(img.header.get_zooms()[:3], float)


def _load(rel: str, mask: bool = False):
    """The file ``REAL_DIR / rel`` as a :class:`synthseq.io.Volume` (float32, scaled); a mask may be all zero."""
    from synthseq.io import load_volume

    return load_volume(REAL_DIR / rel, allow_zero=mask)


def load_real(name: str) -> dict:
    """The real volume ``name``: canonical T2w, cord mask, optional T1w, spacing, and the scans as read (``Volume``:
    what a model is run on)."""
    t2_rel, cord_rel, t1_rel = REAL[name]
    t2_vol = _load(t2_rel)
    t1_vol = _load(t1_rel) if t1_rel else None
    t2, aff = t2_vol.data, t2_vol.affine
    if cord_rel.startswith("crop:"):  # the cord mask was drawn on a voxel-identical crop: place it by affine
        crop = _load(cord_rel[5:], mask=True)
        off = np.rint(np.linalg.solve(aff, crop.affine[:, 3])[:3]).astype(int)
        cord = np.zeros_like(t2)
        cord[tuple(slice(o, o + n) for o, n in zip(off, crop.data.shape))] = crop.data
    else:
        cord = _load(cord_rel, mask=True).data
    out = {"name": name, "affine": aff, "t2w_volume": t2_vol, "t1w_volume": t1_vol}
    out["t2w"], out["spacing"] = canonical(t2, aff)
    out["cord"] = canonical(cord, aff)[0] > 0.5
    out["t1w"] = canonical(t1_vol.data, aff)[0] if t1_vol is not None else None
    return out


# -------------------------------------------------------------------------------------------------- masks
def inplane_axes(shape) -> tuple[int, int]:
    a = sorted(np.argsort(shape)[-2:].tolist())
    return a[0], a[1]


def body_mask(t2: np.ndarray) -> np.ndarray:
    pos = t2[t2 > 0]
    thr = 0.08 * float(np.percentile(pos, 99.5)) if pos.size else 0.0
    m = ndimage.binary_opening(t2 > thr, iterations=1)
    lab, n = ndimage.label(m)
    if n > 1:
        m = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    return ndimage.binary_fill_holes(m)


def _brightest(img: np.ndarray, mask: np.ndarray, percent: float) -> np.ndarray:
    """The voxels of ``mask`` in the top ``percent`` % of ``img`` inside it (an empty mask stays empty)."""
    return mask & (img > np.percentile(img[mask], 100 - percent)) if mask.any() else mask


def estimate_masks(t2: np.ndarray, cord: np.ndarray, spacing, t1: np.ndarray | None = None) -> dict:
    """Tissue masks of a T2w from its cord mask (and a co-registered T1w if given); method in the module doc."""
    spacing = np.asarray(spacing, float)
    body = body_mask(t2)
    valid = t2 > 0  # zero = outside a narrower field of view
    dist = ndimage.distance_transform_edt(~cord, sampling=spacing)
    ring = (dist > 0.5) & (dist <= 4.0) & body & valid
    cmed = float(np.median(t2[cord]))
    if t1 is not None:
        csf = ring & (t1 < np.median(t1[cord])) & (t2 > cmed)
    else:
        thr = cmed + 0.5 * (float(np.percentile(t2[ring], 90)) - cmed)
        csf = ring & (t2 > thr)
    zs = np.flatnonzero(cord.any(axis=(0, 1)))
    zrange = np.zeros(t2.shape, bool)
    zrange[:, :, zs.min():zs.max() + 1] = True
    behind = np.arange(t2.shape[1])[None, :, None] < np.argwhere(cord)[:, 1].mean()  # RAS: +y anterior
    if t1 is not None:
        b = body & valid
        fat = b & (t1 > np.percentile(t1[b], 85)) & (t2 > np.median(t2[b]))
        fat_posterior = fat & behind
    else:
        far = body & valid & zrange & (dist > 20.0)
        fat = _brightest(t2, far, 15)
        fat_posterior = _brightest(t2, far & behind, 5)
    # column: per S-I index, in front of the cord centre (RAS: +y anterior)
    column = np.zeros(t2.shape, bool)
    xi = np.arange(t2.shape[0])[:, None] * spacing[0]
    yi = np.arange(t2.shape[1])[None, :] * spacing[1]
    for z in zs:
        cx, cy = np.nonzero(cord[:, :, z])
        xc, yc = cx.mean() * spacing[0], cy.mean() * spacing[1]
        column[:, :, z] = (np.abs(xi - xc) <= 4.0) & (yi - yc >= 8.0) & (yi - yc <= 20.0)
    column &= body & valid & ~csf
    background = ~ndimage.binary_dilation(body, iterations=max(1, int(round(5.0 / spacing.min())))) & valid
    return {"cord": cord, "csf": csf, "fat": fat, "fat_posterior": fat_posterior, "column": column,
            "body": body & valid, "background": background}


def label_masks(labels: np.ndarray, est: dict) -> dict:
    return {"cord": labels == CORD_L, "csf": labels == CSF_L, "fat": labels == FAT_L, "column": labels == MARROW_L,
            "body": est["body"], "background": est["background"]}


# ------------------------------------------------------------------------------------------------ stats
def _med(a: np.ndarray, m: np.ndarray) -> float:
    return float(np.median(a[m])) if m.any() else math.nan


def noise_spectrum_ratio(img: np.ndarray, bg: np.ndarray, axes: tuple[int, int], patch: int = 16) -> float:
    """Background noise power in 0.3-0.5 over 0.05-0.2 cycles/voxel (in-plane patches fully in background)."""
    a0, a1 = axes
    other = [a for a in range(3) if a not in axes][0]
    x = np.moveaxis(img, (other, a0, a1), (0, 1, 2))
    m = np.moveaxis(bg, (other, a0, a1), (0, 1, 2))
    f = np.fft.fftfreq(patch)
    fr = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    hi_b, lo_b = (fr >= 0.3) & (fr <= 0.5), (fr >= 0.05) & (fr <= 0.2)
    hi, lo, n = 0.0, 0.0, 0
    for s in range(0, x.shape[0], max(1, x.shape[0] // 8)):
        for i in range(0, x.shape[1] - patch + 1, patch):
            for j in range(0, x.shape[2] - patch + 1, patch):
                if m[s, i:i + patch, j:j + patch].all():
                    p = x[s, i:i + patch, j:j + patch]
                    P = np.abs(np.fft.fft2(p - p.mean())) ** 2
                    hi += float(P[hi_b].mean())
                    lo += float(P[lo_b].mean())
                    n += 1
    return hi / lo if n >= 3 and lo > 0 else math.nan


def t2w_stats(t2: np.ndarray, masks: dict, spacing) -> dict:
    """Statistics of one T2w (module doc, point 3); NaN where a mask is empty."""
    spacing = np.asarray(spacing, float)
    csf = _med(t2, masks["csf"])
    x = t2 / csf
    axes = inplane_axes(t2.shape)
    g = np.gradient(x, *[spacing[a] for a in axes], axis=axes)
    gm = np.sqrt(g[0] ** 2 + g[1] ** 2)
    inner = ndimage.binary_erosion(masks["body"], iterations=max(1, int(round(2.0 / spacing[list(axes)].min()))))
    sig = [0.0, 0.0, 0.0]
    for a in axes:
        sig[a] = 2.0 / spacing[a]
    res = x - ndimage.gaussian_filter(x, sig)
    r_in = res[inner]
    shifted = np.roll(res, 1, axis=axes[0])[inner]
    bg = masks["background"]
    sigma = float(t2[bg].mean()) / 1.2533 if bg.sum() > 200 else math.nan

    def cv(m):
        if m.sum() < 20:
            return math.nan
        q1, q2, q3 = np.percentile(x[m], (25, 50, 75))
        return float((q3 - q1) / q2)

    return {
        "cord_csf": _med(x, masks["cord"]), "fat_csf": _med(x, masks["fat"]), "column_csf": _med(x, masks["column"]),
        "grad_median_per_mm": float(np.median(gm[inner])), "grad_p90_per_mm": float(np.percentile(gm[inner], 90)),
        "grad_p99_per_mm": float(np.percentile(gm[inner], 99)),
        "texture_cv_fat": cv(masks["fat"]), "texture_cv_column": cv(masks["column"]),
        "highpass_sd": float(r_in.std()), "highpass_lag1_corr": float(np.corrcoef(r_in, shifted)[0, 1]),
        "snr_csf": csf / sigma if sigma > 0 else math.nan,
        "noise_hi_lo_ratio": noise_spectrum_ratio(t2, bg, axes),
    }


def stir_physics(stir: np.ndarray, masks: dict) -> dict:
    """STIR physics of a (pseudo-)STIR on the masks (module doc, point 5)."""
    med = {k: _med(stir, masks[k]) for k in ("csf", "cord", "fat", "fat_posterior", "column")}
    csf = med["csf"]
    out = {f"{k}_csf": med[k] / csf for k in ("cord", "fat", "fat_posterior", "column")}
    out["fat_suppressed"] = bool(out["fat_csf"] < 0.2)
    out["csf_brightest"] = bool(csf > max(med["cord"], med["fat"], med["column"]))
    out["cord_darker_than_csf"] = bool(med["cord"] < csf)
    out["marrow_dark"] = bool(out["column_csf"] < 0.5)
    out["all_pass"] = all(out[k] for k in ("fat_suppressed", "csf_brightest", "cord_darker_than_csf", "marrow_dark"))
    return out


# ------------------------------------------------------------------------------------------------ phantom
def phantom_subjects(mode: str, n: int, preset: str, field: float = 3.0) -> list[dict]:
    from synthseq.phantom import generate_subject

    out = []
    for i in range(n):
        rec = generate_subject(f"sub-{i + 1:04d}", 1000 + i, preset=preset, realism=mode, field_strength=field)
        aff = rec.t2w.affine
        t2, sp = canonical(rec.t2w.data, aff)
        stir = canonical(rec.stir.data, aff)[0]
        labels = np.rint(canonical(rec.labels.data.astype(np.float32), aff)[0]).astype(np.uint8)
        out.append({"name": rec.subject_id, "t2w": t2, "stir": stir, "labels": labels, "spacing": sp})
    return out


def lesion_recovery(models: dict, n: int, preset: str, mode: str, field: float) -> dict:
    """Item 6 of the module doc: ``{"subjects", "T2w": {class: {...}}, <model>: {class: {"subjects",
    "step_recovery", "contrast_recovery"}}}`` over ``n`` held-out phantom subjects."""
    from synthseq import metrics as M
    from synthseq.codes import body_mask_from_labels
    from synthseq.data.preprocess import Preprocessor
    from synthseq.io import sagittal_axis
    from synthseq.phantom import generate_subject

    rows: dict[str, dict[str, list[tuple[float, float]]]] = {"T2w": {}, **{k: {} for k in models}}
    for i in range(n):
        rec = generate_subject(f"sub-{i + 1:04d}", 2000 + i, preset=preset, realism=mode, field_strength=field)
        labels, lesions = np.asarray(rec.labels.data), np.asarray(rec.lesions.data)
        body = body_mask_from_labels(labels)
        pre = Preprocessor()
        params = pre.fit(np.asarray(rec.t2w.data, np.float32))
        target = pre(np.asarray(rec.stir.data, np.float32), mask=body)[0]
        preds = {"T2w": rec.t2w.data, **{k: predict(syn, rec.t2w, rec.t1w).data for k, syn in models.items()}}
        for key, pred in preds.items():
            got = M.lesion_metrics(pre.apply(np.asarray(pred, np.float32), params), target, labels, lesions,
                                   sagittal_axis(rec.t2w.affine))
            for cls, v in got.items():
                rows[key].setdefault(cls, []).append((v["step_recovery"], v["recovery"]))
    out: dict = {"subjects": n, "mode": mode}
    for key, per in rows.items():
        out[key] = {cls: {"subjects": len(v), "step_recovery": _finite_mean([a for a, _ in v]),
                          "contrast_recovery": _finite_mean([b for _, b in v])} for cls, v in sorted(per.items())}
    return out


def extra_keys(syn) -> list[str]:
    """The inputs a model reads besides the T2w (``Synthesizer.extra_keys``; none for a plain callable)."""
    return list(getattr(syn, "extra_keys", []))


def check_inputs(name: str, syn) -> None:
    """Only T2w and T2w + T1w models can run here: the real scans hold no other co-registered sequence."""
    if getattr(syn, "grid_key", "T2w") != "T2w" or set(extra_keys(syn)) - {"T1w"}:
        raise SystemExit(f"sim_to_real.py: error: checkpoint {name} reads {getattr(syn, 'input_keys', '?')}; "
                         "only [T2w] and [T1w, T2w] models can run on these scans")


def load_models(specs: list[str]) -> dict:
    """``["NAME=PATH", ...]`` -> ``{NAME: Synthesizer}`` on the CPU, each checked by :func:`check_inputs`."""
    from synthseq.synthesis import Synthesizer

    models = {}
    for spec in specs:
        key, _, path = spec.partition("=")
        models[key] = Synthesizer.from_checkpoint(path, device="cpu")
        check_inputs(key, models[key])
    return models


def predict(syn, t2w, t1w):
    """Pseudo-STIR Volume of ``t2w`` (a Volume); ``t1w`` is passed to T1w + T2w models (None: such a model is
    skipped, returns None)."""
    if not extra_keys(syn):
        return syn(t2w)
    return None if t1w is None else syn(t2w, extra={"T1w": t1w})


def _finite_mean(vals: list[float]) -> float:
    v = [x for x in vals if isinstance(x, float) and math.isfinite(x)]
    return float(np.mean(v)) if v else math.nan


def summarize(per: dict[str, dict]) -> dict:
    keys = next(iter(per.values())).keys()
    return {k: _finite_mean([p[k] for p in per.values()]) for k in keys}


def distance(phantom: dict, real: dict) -> dict:
    d = {}
    for k, r in real.items():
        p = phantom.get(k, math.nan)
        if math.isfinite(p) and math.isfinite(r) and p > 0 and r > 0:
            d[k] = abs(math.log(p / r))
    d["mean_distance"] = float(np.mean(list(d.values()))) if d else math.nan
    return d


# ------------------------------------------------------------------------------------------------ figures
def _mid(vol: np.ndarray, cord: np.ndarray) -> np.ndarray:
    """The display slice: through the cord, in the acquisition plane, superior / anterior up or left."""
    a0, a1 = inplane_axes(vol.shape)
    other = [a for a in range(3) if a not in (a0, a1)][0]
    counts = cord.sum(axis=tuple(a for a in range(3) if a != other))
    s = int(np.argmax(counts)) if counts.any() else vol.shape[other] // 2
    sl = np.take(vol, s, axis=other)
    if other == 0:  # sagittal (y, z): superior up, anterior left
        return sl.T[::-1, ::-1]
    return sl.T[::-1]  # axial (x, y): anterior up


def write_figure(path: Path, name: str, t2: np.ndarray, cord: np.ndarray, preds: dict[str, np.ndarray],
                 physics: dict[str, dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from synthseq.utils import atomic_path

    panels = [("real T2w", t2)] + [(f"pseudo-STIR ({k})", v) for k, v in preds.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False, facecolor="black")
    for ax, (title, vol) in zip(axes[0], panels):
        img = _mid(vol, cord)
        ax.imshow(img, cmap="gray", vmin=0, vmax=float(np.percentile(img[img > 0], 99.5)) if (img > 0).any() else 1)
        key = title[len("pseudo-STIR ("):-1] if title.startswith("pseudo") else None
        if key:
            ph = physics[key]
            title += f"\nfat/CSF {ph['fat_csf']:.2f} {'ok' if ph['all_pass'] else 'FAIL'}"
        ax.set_title(title, color="white", fontsize=8)
        ax.set_axis_off()
    fig.suptitle(name, color="white", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, facecolor="black", format="png")
    plt.close(fig)


def write_phantom_figure(path: Path, real: dict, firsts: dict[str, dict]) -> None:
    """Real T2w beside the first phantom subject of every mode (T2w and STIR), mid-sagittal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from synthseq.utils import atomic_path

    panels = [(f"real T2w ({real['name']})", _mid(real["t2w"], real["cord"]))]
    for mode, s in firsts.items():
        cord = s["labels"] == CORD_L
        panels += [(f"{mode} T2w", _mid(s["t2w"], cord)), (f"{mode} STIR", _mid(s["stir"], cord))]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 3.6), squeeze=False, facecolor="black")
    for ax, (title, img) in zip(axes[0], panels):
        ax.imshow(img, cmap="gray", vmin=0, vmax=float(np.percentile(img[img > 0], 99.5)))
        ax.set_title(title, color="white", fontsize=8)
        ax.set_axis_off()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, facecolor="black", format="png")
    plt.close(fig)


FAT_LABELS = (2, 12, 19)  # subcutaneous, epidural, intermuscular fat (synthseq.codes.TISSUES)


def crop_to_fov(shape, spacing, cord: np.ndarray, fov_mm) -> tuple[slice, ...]:
    """Index window of ``fov_mm`` (L-R, A-P, S-I; RAS order) centred on the cord's centroid, clipped to ``shape``."""
    centre = np.argwhere(cord).mean(0)
    out = []
    for c, n, sp, f in zip(centre, shape, spacing, fov_mm):
        w = min(n, max(1, int(round(f / sp))))
        lo = int(min(max(round(c - w / 2), 0), n - w))
        out.append(slice(lo, lo + w))
    return tuple(out)


def fat_estimator_check(subjects: list[dict], reals: list[dict]) -> dict:
    """Item 7 of the module doc: ``{real name: {"fov_mm", "subjects", "fat_share", "stir_fat_csf", "stir_pass",
    "fat_posterior_share", "stir_fat_posterior_csf", "stir_posterior_pass"}}`` for every real T2w without a T1w."""
    out = {}
    for r in reals:
        if r["t1w"] is not None:
            continue
        fov = [n * sp for n, sp in zip(r["t2w"].shape, r["spacing"])]
        rows = []
        for s in subjects:
            cord = s["labels"] == CORD_L
            w = crop_to_fov(s["t2w"].shape, s["spacing"], cord, fov)
            m = estimate_masks(s["t2w"][w], cord[w], s["spacing"])
            ph = stir_physics(s["stir"][w], m)
            lab = s["labels"][w]
            share = {k: float(np.isin(lab[m[k]], FAT_LABELS).mean()) if m[k].any() else math.nan
                     for k in ("fat", "fat_posterior")}
            rows.append((share["fat"], ph["fat_csf"], share["fat_posterior"], ph["fat_posterior_csf"]))
        a = np.array(rows, float)
        out[r["name"]] = {"fov_mm": [round(f, 1) for f in fov], "subjects": len(rows),
                          "fat_share": _finite_mean(a[:, 0].tolist()), "stir_fat_csf": _finite_mean(a[:, 1].tolist()),
                          "stir_pass": int((a[:, 1] < 0.2).sum()),
                          "fat_posterior_share": _finite_mean(a[:, 2].tolist()),
                          "stir_fat_posterior_csf": _finite_mean(a[:, 3].tolist()),
                          "stir_posterior_pass": int((a[:, 3] < 0.2).sum())}
    return out


# --------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny preset, 1 phantom subject per mode, 1 real volume")
    parser.add_argument("--subjects", type=int, default=3, help="phantom subjects per mode (default 3)")
    parser.add_argument("--preset", default=None, help="phantom preset (default: default; tiny with --quick)")
    parser.add_argument("--modes", default=",".join(MODES), help="phantom realism modes (comma-separated)")
    parser.add_argument("--field", type=float, default=3.0, choices=[1.5, 3.0],
                        help="phantom field strength (default 3: the spine-generic reference is a 3 T Prisma)")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                        help="a phantom-trained checkpoint to apply to every real T2w (repeatable)")
    parser.add_argument("--lesion-subjects", type=int, default=8,
                        help="held-out phantom subjects whose lesions each checkpoint must keep (default 8; 0: skip)")
    parser.add_argument("--lesion-mode", default="randomized", choices=["classic", "faithful", "randomized"],
                        help="realism mode of those subjects (default randomized)")
    parser.add_argument("--figures", default=None, help="write real T2w | pseudo-STIR PNGs here")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    import torch

    from synthseq.errors import SynthseqError

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    try:  # before the minutes of phantom work: a missing or corrupt checkpoint ends in one line naming it
        models = load_models(args.checkpoint)
    except SynthseqError as exc:
        fail(parser, exc)
    preset = args.preset or ("tiny" if args.quick else "default")
    n_sub = 1 if args.quick else args.subjects
    names = QUICK_REAL if args.quick else tuple(REAL)
    modes = [m for m in args.modes.split(",") if m]

    reals = [load_real(n) for n in names]
    real_stats = {}
    for r in reals:
        r["masks"] = estimate_masks(r["t2w"], r["cord"], r["spacing"], r["t1w"])
        real_stats[r["name"]] = t2w_stats(r["t2w"], r["masks"], r["spacing"])
    real_mean = summarize(real_stats)

    phantom, truth, stir_ref, dist, firsts, fat_check = {}, {}, {}, {}, {}, {}
    for mode in modes:
        subs = phantom_subjects(mode, n_sub, preset, args.field)
        firsts[mode] = subs[0]
        per, per_truth, per_stir = {}, {}, {}
        for s in subs:
            est = estimate_masks(s["t2w"], s["labels"] == CORD_L, s["spacing"])
            per[s["name"]] = t2w_stats(s["t2w"], est, s["spacing"])
            per_truth[s["name"]] = t2w_stats(s["t2w"], label_masks(s["labels"], est), s["spacing"])
            per_stir[s["name"]] = stir_physics(s["stir"], est)
        phantom[mode] = {"per_subject": per, "mean": summarize(per)}
        truth[mode] = summarize(per_truth)
        stir_ref[mode] = {k: _finite_mean([float(p[k]) for p in per_stir.values()]) for k in next(iter(per_stir.values()))}
        dist[mode] = distance(phantom[mode]["mean"], real_mean)
        fat_check[mode] = fat_estimator_check(subs, reals)

    if args.figures:
        write_phantom_figure(Path(args.figures) / "sim_to_real_phantom.png", reals[0], firsts)
    physics, lesions_kept = {}, {}
    if models:
        for r in reals:
            preds, phys = {}, {}
            for key, syn in models.items():
                pred = predict(syn, r["t2w_volume"], r["t1w_volume"])
                if pred is None:
                    phys[key] = {"skipped": "the model reads a T1w; this scan has none"}
                    continue
                preds[key] = canonical(pred.data, pred.affine)[0]
                phys[key] = stir_physics(preds[key], r["masks"])
            physics[r["name"]] = phys
            if args.figures and preds:
                write_figure(Path(args.figures) / f"sim_to_real_{r['name']}.png", r["name"], r["t2w"], r["cord"],
                             preds, phys)
        physics["summary"] = {}
        for key in models:
            ran = [physics[r["name"]][key] for r in reals if "skipped" not in physics[r["name"]][key]]
            physics["summary"][key] = {"volumes_all_pass": sum(p["all_pass"] for p in ran), "volumes": len(ran),
                                       "fat_csf_mean": _finite_mean([p["fat_csf"] for p in ran]),
                                       "fat_posterior_csf_mean": _finite_mean([p["fat_posterior_csf"] for p in ran])}
        if args.lesion_subjects > 0:
            lesions_kept = lesion_recovery(models, args.lesion_subjects, preset, args.lesion_mode, args.field)

    result = {
        "benchmark": "sim_to_real", "environment": environment("cpu"), "quick": args.quick, "preset": preset,
        "field_strength_T": args.field,
        "phantom_subjects_per_mode": n_sub, "real_volumes": list(names),
        "real": {"per_volume": real_stats, "mean": real_mean},
        "phantom": phantom, "label_truth": truth, "distance_to_real": dist,
        "phantom_stir_reference": stir_ref, "fat_estimator_check": fat_check, "pseudo_stir_on_real": physics,
        "phantom_lesions_kept": lesions_kept,
        "seconds": time.perf_counter() - t0,
    }
    result = _clean(result)
    emit(result, args.out)
    return result


def _clean(x):
    """NaN -> None, numpy scalars -> Python (strict JSON)."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


if __name__ == "__main__":
    main()
