"""Subjects in memory (:func:`generate_subject`) and the dataset on disk (:func:`generate_dataset`).

Layout written (``docs/overview.md``)::

    DIR/dataset.json                      generator, version, seed, code tables, per-subject acquisition,
                                          anatomy and injury plan, true cohort-model coefficients
    DIR/cohort.csv                        one row per subject (cohort.COLUMNS)
    DIR/sub-0001/sub-0001_T2w.nii.gz      float32, sagittal acquisition, real-world affine (storage P-I-R)
    DIR/sub-0001/sub-0001_STIR.nii.gz     float32, same grid
    DIR/sub-0001/sub-0001_T1w.nii.gz      float32, same grid (T1-weighted FSE, own noise)
    DIR/sub-0001/sub-0001_labels.nii.gz   uint8 tissue codes (codes.TISSUES)
    DIR/sub-0001/sub-0001_lesions.nii.gz  uint8 lesion codes (codes.LESIONS)
    DIR/preview.png                       optional: mid-sagittal T2w | STIR | labels of a few subjects

Randomness: subject ``k`` (0-based) uses the seed ``SeedSequence([seed, k])``, split into independent
streams (case, anatomy, protocol, noise, outcome, misregistration, T1w protocol + noise), so subject k is the
same whatever the number of subjects, switching misregistration on changes nothing but the STIR shift, and
the T1w (the seventh stream, added later) left every T2w and STIR voxel as it was.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import ConfigError, InputError
from ..io import Volume, anatomical_axis, save_volume
from ..utils import atomic_path, atomic_write_text
from ..utils import progress as progress_bar
from . import realistic
from .acquisition import REALISM
from .anatomy import (
    CLASS_LABEL,
    Canvas,
    SpineFrame,
    class_composition,
    paint_anatomy,
    sample_anatomy,
    sample_anatomy_varied,
)
from .codes import LESIONS, TISSUES
from .codes import L as LES
from .codes import T as TISSUE
from .cohort import COLUMNS, model_description, sample_clinical, sample_demographics, sample_outcomes
from .injuries import render_marrow, render_soft_lesions, sample_plan
from .presets import Preset, get_preset
from .sequences import (
    SignalBook,
    bias_field,
    inplane_psf,
    rician,
    sample_protocol,
    sample_t1w_protocol,
    shift_volume,
    slab_average,
    take_stir_protocol,
)
from .tissues import FIELDS

GENERATOR = "synthseq.phantom"
GENERATOR_VERSION = "1.0"
SEQUENCES = ("T2w", "STIR", "T1w", "labels", "lesions")


@dataclass
class PhantomSubject:
    """One generated subject, in memory.

    ``t2w``/``stir``/``t1w`` hold float32 ``(AP, SI, LR)`` arrays in scanner units; ``labels``/``lesions`` uint8
    codes on the same grid (affine identical for all five).
    """

    subject_id: str
    t2w: Volume
    stir: Volume
    labels: Volume
    lesions: Volume
    acquisition: dict
    injuries: dict
    anatomy: dict
    cohort: dict  #: the cohort.csv row (clinical variables, imaging flags measured on the mask, outcomes)
    extra: dict = field(default_factory=dict, repr=False)
    t1w: Volume | None = None  #: T1-weighted FSE (always set by generate_subject; last so old call sites work)


def subject_seed(seed: int, index: int) -> int:
    """Per-subject seed from the dataset seed and the 0-based subject index (independent of N)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint32)[0])


def _check_field(field_strength: float) -> float:
    f = float(field_strength)
    if f not in FIELDS:
        raise ConfigError(f"field_strength: must be 1.5 or 3 (tesla), got {field_strength}")
    return f


def _grid(pr: Preset) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """World coordinates of the fine sub-slices (x), rows (y) and columns (z), and the storage affine."""
    nj, nk = pr.matrix
    d = pr.pixel_mm
    y = (nj - 1) / 2 * d - np.arange(nj) * d  # j = 0 most anterior
    z = (nk - 1) / 2 * d - np.arange(nk) * d  # k = 0 most superior
    n, ss = pr.n_slices, pr.supersample
    xc = (np.arange(n) - (n - 1) / 2) * pr.slice_mm  # slice centres, left -> right
    xf = (xc[:, None] + ((np.arange(ss) - (ss - 1) / 2) * pr.slice_mm / ss)[None, :]).ravel()
    # storage (j, k, slice): j -> posterior, k -> inferior, slice -> right  ("PIR", like a DICOM sagittal)
    affine = np.array([[0.0, 0.0, pr.slice_mm, xc[0]],
                       [-d, 0.0, 0.0, y[0]],
                       [0.0, -d, 0.0, z[0]],
                       [0.0, 0.0, 0.0, 1.0]])
    return xf, y, z, affine


def _header(description: str, dtype) -> nib.Nifti1Header:
    h = nib.Nifti1Header()
    h.set_data_dtype(dtype)
    h.set_xyzt_units("mm", "sec")
    h.set_dim_info(freq=0, phase=1, slice=2)
    h["descrip"] = description[:79].encode()
    return h


def measure_imaging(lesions: np.ndarray, affine: np.ndarray) -> dict:
    """Imaging variables of the cohort, measured on a lesion-code volume.

    ``cord_lesion_length_mm``: span of the voxel centres of cord oedema or haemorrhage (codes 3, 4) along
    the superior-inferior world axis plus one voxel (0 if none); flags: 1 iff the code is present.
    """
    codes = set(np.unique(lesions).tolist())
    axis, _ = anatomical_axis(affine, "SI")
    cord = np.isin(lesions, (LES["cord_edema"], LES["cord_hemorrhage"]))
    length = 0.0
    if cord.any():
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(cord.any(axis=other))
        length = float((idx[-1] - idx[0] + 1) * np.linalg.norm(affine[:3, axis]))
    return {
        "cord_lesion_length_mm": round(length, 3),
        "cord_hemorrhage": int(LES["cord_hemorrhage"] in codes), "fracture": int(LES["marrow_edema"] in codes),
        "plc_injury": int(LES["plc_injury"] in codes), "cord_edema": int(LES["cord_edema"] in codes),
        "prevertebral_edema": int(LES["prevertebral_edema"] in codes),
        "disc_injury": int(LES["disc_injury"] in codes), "canal_compression": int(LES["canal_compression"] in codes),
    }


def generate_subject(subject_id: str, rng_seed: int, preset: str = "default", field_strength: float = 1.5,
                     misregistration_mm: float = 0.0, realism: str = "classic",
                     stir_te_ms: float | None = None, stir_redraw_seed: int | None = None) -> PhantomSubject:
    """Simulate one subject: anatomy, injuries, T2w, STIR and T1w acquisitions, labels and the cohort row.

    Args:
        subject_id: e.g. ``"sub-0001"`` (goes into the cohort row).
        rng_seed: non-negative integer; the same seed gives bit-identical arrays.
        preset: ``"default"`` (256x256x16, 0.94x0.94x3 mm) or ``"tiny"`` (64x64x10, 2.75x2.75x4 mm).
        field_strength: 1.5 or 3 (T): relaxation times and the STIR fat-null TI follow it.
        misregistration_mm: up to this rigid shift of STIR against T2w (labels follow the T2w).
        realism: ``"classic"`` (the original phantom), ``"faithful"`` (patient-like anatomy, tissue texture and
            acquisition physics: ``realistic.py``) or ``"randomized"`` (faithful with widened contrast and
            artefact ranges and a per-subject field strength: domain randomization for training).
        stir_te_ms: the STIR echo time (ms) instead of the drawn one (None: drawn). The draw still happens, so
            every other parameter, the T2w, the T1w, the labels and the noise stay bit-identical: the same subject
            with its STIR acquired at another TE (the inputs carry no trace of the target's TE).
        stir_redraw_seed: redraw the STIR's own protocol (``sequences.STIR_FIELDS``: TR, TE, the TI's offset from
            the fat null, SNR, gain) from the same ranges, and its noise, with this seed (None: as drawn); the
            T2w, T1w, labels, lesions and every other parameter stay bit-identical (faithful and randomized modes
            keep the drawn vendor family and field strength). Averaging such redraws estimates what a model that
            knows the subject exactly, but not the STIR's protocol, should predict
            (``benchmarks/protocol_ceiling.py``). ``stir_te_ms``, when given too, wins over the redrawn TE.
    """
    pr = get_preset(preset)
    fs = _check_field(field_strength)
    if misregistration_mm < 0:
        raise ConfigError(f"misregistration_mm: must be >= 0, got {misregistration_mm}")
    if realism not in REALISM:
        raise ConfigError(f"realism: must be one of {', '.join(REALISM)}, got {realism!r}")
    te = check_stir_te(stir_te_ms)
    # spawn(n)'s first children do not depend on n: the T1w (7th) and texture (8th, realistic modes only)
    # streams leave the other streams unchanged
    streams = np.random.SeedSequence(int(rng_seed)).spawn(8)
    r_case, r_anat, r_prot, r_noise, r_out, r_mis, r_t1, r_tex = (np.random.default_rng(s) for s in streams)
    if stir_redraw_seed is not None and (isinstance(stir_redraw_seed, bool) or int(stir_redraw_seed) < 0):
        raise ConfigError(f"stir_redraw_seed: expected a non-negative integer, got {stir_redraw_seed!r}")
    r_redraw = None if stir_redraw_seed is None else np.random.default_rng([int(rng_seed), int(stir_redraw_seed)])

    demo = sample_demographics(r_case)
    anat = (sample_anatomy(r_anat, demo.age, demo.sex) if realism == "classic"
            else sample_anatomy_varied(r_anat, demo.age, demo.sex, randomized=realism == "randomized"))
    plan = sample_plan(r_case, demo.age, demo.severity, demo.injured, anat.disc_degen)
    clinical = sample_clinical(r_case, demo, plan)

    xf, y, z, affine = _grid(pr)
    if realism != "classic":
        y, z = realistic.fine_grid(y, z, pr)  # sub-voxel geometry: painted 2x finer in-plane
    frame = SpineFrame(anat, plan, (0.0, 0.0))
    # place the subject: the posterior body line at mid-neck ~10 mm behind the FOV centre, the dens tip
    # dens_from_top_mm below the top edge (plus positioning jitter)
    y80, _ = frame.point(80.0 * anat.scale)
    frame.y += anat.fov_shift[0] - (y80 - 12.0)
    frame.z += (z[0] - pr.dens_from_top_mm + anat.fov_shift[1]) - frame.point(0.0)[1]
    cv = Canvas(xf, y, z, frame, anat)
    painted = paint_anatomy(cv, anat, plan)

    if realism == "classic":
        prot, arr, acq_extra = _render_classic(cv, painted, anat, plan, pr, fs, float(misregistration_mm), r_prot,
                                               r_mis, r_noise, r_t1, stir_te_ms=te, r_redraw=r_redraw)
    else:
        prot, arr, acq_extra = realistic.render(cv, painted, anat, plan, pr, fs, float(misregistration_mm), r_prot,
                                                r_mis, r_noise, r_t1, mode=realism, r_tex=r_tex, stir_te_ms=te,
                                                r_redraw=r_redraw)
    t2, st, t1, labels, lesions = (arr[k] for k in ("t2w", "stir", "t1w", "labels", "lesions"))

    # (slice, AP, SI) -> storage (AP, SI, LR)
    def store(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a.transpose(1, 2, 0))

    t2, st, t1, labels, lesions = store(t2), store(st), store(t1), store(labels), store(lesions)
    imaging = measure_imaging(lesions, affine)
    outcomes = sample_outcomes(r_out, clinical, imaging)
    row = {"subject": subject_id, **clinical, **imaging, **outcomes}

    desc = f"synthseq phantom {GENERATOR_VERSION} {fs:g}T"
    vol = lambda a, what, dt: Volume(a, affine, _header(f"{desc} {what}", dt))  # noqa: E731
    acq = {"preset": pr.name, "field_strength_T": fs, "matrix": list(t2.shape),
           "voxel_mm": [pr.pixel_mm, pr.pixel_mm, pr.slice_mm], "orientation": "PIR",
           "supersample": pr.supersample, "rng_seed": int(rng_seed), **prot.to_dict(), **acq_extra}
    return PhantomSubject(
        subject_id=subject_id,
        t2w=vol(t2, f"T2w TR={prot.t2w_tr_ms:.0f} TE={prot.t2w_te_ms:.0f}", np.float32),
        stir=vol(st, f"STIR TR={prot.stir_tr_ms:.0f} TI={prot.stir_ti_ms:.0f} TE={prot.stir_te_ms:.0f}", np.float32),
        labels=vol(labels, "tissue labels", np.uint8), lesions=vol(lesions, "lesion labels", np.uint8),
        acquisition=acq, injuries=plan.to_dict(), anatomy={"age": demo.age, **anat.summary()}, cohort=row,
        extra={"severity": demo.severity, "injured": demo.injured},
        t1w=vol(t1, f"T1w TR={prot.t1w_tr_ms:.0f} TE={prot.t1w_te_ms:.0f}", np.float32),
    )


def _render_classic(cv, painted, anat, plan, pr: Preset, fs: float, misregistration_mm: float, r_prot, r_mis, r_noise,
                    r_t1, stir_te_ms: float | None = None, r_redraw: np.random.Generator | None = None) -> tuple:
    """The classic acquisition chain (grid-resolution painting, Gaussian PSF, polynomial bias, Rician noise).
    ``r_redraw``: the stream the STIR's own protocol and noise are redrawn from (``generate_subject``).

    Returns ``(protocol, arrays, {})`` with arrays ``t2w, stir, t1w, labels, lesions`` of shape ``(n, nj, nk)``.
    """
    prot = sample_protocol(r_prot, fs, pr, misregistration_mm, r_mis)
    if r_redraw is not None:
        take_stir_protocol(prot, sample_protocol(r_redraw, fs, pr, 0.0, r_redraw))
    if stir_te_ms is not None:
        prot.stir_te_ms = stir_te_ms
    sample_t1w_protocol(r_t1, prot, pr)
    book = SignalBook(prot)
    comps = class_composition(anat.ff_marrow)
    lut_t2, lut_st = book.lut(comps)
    t2f = lut_t2[cv.cls]
    stf = lut_st[cv.cls]
    lesf = np.zeros_like(cv.cls)
    render_marrow(cv, painted, anat, plan, book, t2f, stf, lesf)
    render_soft_lesions(cv, painted, anat, plan, book, t2f, stf, lesf)
    # T1w: the same renderers with the T1w signals (one array for both of their outputs; the lesion
    # codes they write are the same as above, so they go to a scratch array)
    t1f = book.lut_t1w(comps)[cv.cls]
    scratch = np.zeros_like(lesf)
    render_marrow(cv, painted, anat, plan, book.t1w_view(), t1f, t1f, scratch)
    render_soft_lesions(cv, painted, anat, plan, book.t1w_view(), t1f, t1f, scratch)
    del scratch

    ss = pr.supersample
    t2 = inplane_psf(slab_average(t2f, ss))
    t1 = inplane_psf(slab_average(t1f, ss))  # T1w signals are all positive (no inversion)
    st = np.abs(inplane_psf(slab_average(stf, ss)))  # complex (signed) sum within the voxel, then magnitude
    labels = CLASS_LABEL[cv.cls[ss // 2::ss]]
    lesions = lesf[ss // 2::ss]
    del t2f, stf, lesf, t1f
    if any(prot.misregistration_mm):
        sx, sy, sz = prot.misregistration_mm
        st = shift_volume(st, (sx / pr.slice_mm, -sy / pr.pixel_mm, -sz / pr.pixel_mm))
    bias = bias_field(t2.shape, prot.bias)
    csf_t2, csf_st = book.t2w["csf"], abs(book.stir["csf"])
    t2 = rician(t2 * bias, csf_t2 / prot.snr_t2w, r_noise) * np.float32(prot.gain_t2w / csf_t2)
    st = rician(st * bias, csf_st / prot.snr_stir, r_noise if r_redraw is None else r_redraw) \
        * np.float32(prot.gain_stir / csf_st)
    mus_t1 = book.t1w["muscle"]
    t1 = rician(t1 * bias, mus_t1 / prot.snr_t1w, r_t1) * np.float32(prot.gain_t1w / mus_t1)
    return prot, {"t2w": t2, "stir": st, "t1w": t1, "labels": labels, "lesions": lesions}, {}


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise InputError(f"{out}: output folder is not empty (pass --overwrite to replace its contents)")
        # remove subject folders of a previous phantom run so the folder holds exactly this dataset
        try:
            old = json.loads((out / "dataset.json").read_text())
        except (OSError, ValueError):
            old = {}
        if isinstance(old, dict) and old.get("generator") == GENERATOR:
            for p in out.iterdir():
                if p.is_dir() and re.fullmatch(r"sub-\d{4,}", p.name):
                    shutil.rmtree(p)
    out.mkdir(parents=True, exist_ok=True)


#: STIR echo times a fixed-TE phantom accepts (ms): the clinical range with margin (the draws span 30-70 ms)
STIR_TE_RANGE_MS = (10.0, 150.0)


def check_stir_te(stir_te_ms: float | None, name: str = "stir_te_ms") -> float | None:
    """``stir_te_ms`` as a float (None passes through); ConfigError naming ``name`` (the argument or option the
    value came from) unless it lies in :data:`STIR_TE_RANGE_MS` (NaN never does)."""
    if stir_te_ms is None:
        return None
    te = float(stir_te_ms)
    lo, hi = STIR_TE_RANGE_MS
    if not lo <= te <= hi:  # also false for nan
        raise ConfigError(f"{name}: expected a STIR echo time in [{lo:g}, {hi:g}] ms, got {stir_te_ms}")
    return te


def generate_dataset(out_dir: str | Path, subjects: int = 8, seed: int = 0, preset: str = "default",
                     field_strength: float = 1.5, preview: bool = False, overwrite: bool = False,
                     misregistration_mm: float = 0.0, progress: bool = True, realism: str = "classic",
                     stir_te_ms: float | None = None) -> Path:
    """Write a phantom dataset (layout in the module docstring) and return its folder.

    Refuses a non-empty ``out_dir`` unless ``overwrite``. Same arguments -> byte-identical NIfTI files.
    ``stir_te_ms`` fixes every subject's STIR echo time (:func:`generate_subject`; recorded in dataset.json).
    """
    out = Path(out_dir)
    if int(subjects) < 1:
        raise ConfigError(f"subjects: must be at least 1, got {subjects}")
    if int(seed) < 0:
        raise ConfigError(f"seed: must be a non-negative integer, got {seed}")
    if realism not in REALISM:
        raise ConfigError(f"realism: must be one of {', '.join(REALISM)}, got {realism!r}")
    pr = get_preset(preset)
    fs = _check_field(field_strength)
    if misregistration_mm < 0:
        raise ConfigError(f"misregistration_mm: must be >= 0, got {misregistration_mm}")
    te = check_stir_te(stir_te_ms)
    _prepare_out(out, overwrite)

    rows, records, shown = [], {}, []
    ids = [f"sub-{i + 1:04d}" for i in range(int(subjects))]
    for i, sid in enumerate(progress_bar(ids, desc="phantom", disable=None if progress else True)):
        rs = subject_seed(seed, i)
        rec = generate_subject(sid, rs, preset=pr.name, field_strength=fs, misregistration_mm=misregistration_mm,
                               realism=realism, stir_te_ms=te)
        folder = out / sid
        folder.mkdir(exist_ok=True)
        for name, v, dt in (("T2w", rec.t2w, np.float32), ("STIR", rec.stir, np.float32), ("T1w", rec.t1w, np.float32),
                            ("labels", rec.labels, np.uint8), ("lesions", rec.lesions, np.uint8)):
            save_volume(v, folder / f"{sid}_{name}.nii.gz", dtype=dt, overwrite=True)
        rows.append(rec.cohort)
        records[sid] = {"seed": rs, "acquisition": rec.acquisition, "anatomy": rec.anatomy, "injuries": rec.injuries}
        if preview and len(shown) < 4:
            shown.append(_preview_panels(rec))

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r[k] for k in COLUMNS})
    atomic_write_text(out / "cohort.csv", buf.getvalue())
    from .._version import __version__

    meta = {
        "generator": GENERATOR, "version": GENERATOR_VERSION, "synthseq_version": __version__,
        "seed": int(seed), "preset": pr.name, "preset_params": pr.to_dict(), "field_strength_T": fs,
        "misregistration_mm": float(misregistration_mm), "n_subjects": int(subjects),
        **({} if realism == "classic" else {"realism": realism}),
        **({} if te is None else {"stir_te_ms": te}),
        "labels": {str(k): v for k, v in TISSUES.items()}, "lesions": {str(k): v for k, v in LESIONS.items()},
        "files": {s: f"{{subject}}/{{subject}}_{s}.nii.gz" for s in SEQUENCES},
        "subjects": records, "cohort_model": model_description(),
    }
    atomic_write_text(out / "dataset.json", json.dumps(meta, indent=1) + "\n")
    if preview:
        write_preview(shown, out / "preview.png")
    return out


# -------------------------------------------------------------------------------------------------- preview
def _midline_slice(labels: np.ndarray) -> int:
    """Sagittal slice (last storage axis) holding the most cord + CSF: the subject's midline."""
    return int(np.argmax(np.isin(labels, (TISSUE["csf"], TISSUE["cord"])).sum(axis=(0, 1))))


def _preview_panels(rec: PhantomSubject) -> dict:
    sl = _midline_slice(rec.labels.data)
    # (AP, SI) -> display (SI, AP): superior at the top, anterior on the left (radiological sagittal)
    pick = lambda v: np.asarray(v.data[:, :, sl]).T  # noqa: E731
    return {"id": rec.subject_id, "t2w": pick(rec.t2w), "stir": pick(rec.stir), "labels": pick(rec.labels),
            "lesions": pick(rec.lesions), "info": _injury_text(rec.cohort)}


def _injury_text(row: dict) -> str:
    keys = ("fracture", "plc_injury", "cord_edema", "cord_hemorrhage", "prevertebral_edema", "disc_injury",
            "canal_compression")
    found = [k.replace("_", " ") for k in keys if row[k]]
    return ", ".join(found) if found else "no injury"


def write_preview(panels: list[dict], path: Path) -> Path:
    """PNG montage: one row per subject, columns T2w | STIR | labels (lesions outlined)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    n = max(len(panels), 1)
    fig, axes = plt.subplots(n, 3, figsize=(9.6, 3.4 * n), squeeze=False, facecolor="black")
    cmap = ListedColormap(plt.get_cmap("tab20")(np.linspace(0, 1, 20)))
    cmap.colors[0] = (0, 0, 0, 1)
    for r, p in enumerate(panels):
        for c, key in enumerate(("t2w", "stir", "labels")):
            ax = axes[r, c]
            ax.set_axis_off()
            img = p[key]
            if key == "labels":
                ax.imshow(img, cmap=cmap, vmin=0, vmax=19, interpolation="nearest")
                les = p["lesions"]
                if les.any():
                    ax.imshow(np.ma.masked_where(les == 0, les), cmap="autumn", vmin=1, vmax=10, alpha=0.9,
                              interpolation="nearest")
            else:
                body = img[img > 0]
                lo, hi = np.percentile(body, (1, 99.5)) if body.size else (0, 1)
                ax.imshow(img, cmap="gray", vmin=0, vmax=hi, interpolation="nearest")
            title = {"t2w": f"{p['id']} T2w", "stir": "STIR", "labels": p["info"]}[key]
            ax.set_title(title, color="white", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, facecolor="black")
    plt.close(fig)
    return path
