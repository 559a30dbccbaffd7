"""Dataset quality control: is each subject usable for training, and if not, why.

:func:`check_subject` reads one subject's volumes and reports, per sequence, the shape, voxel size, orientation
code, dtype and intensity range (1st / 99th percentile), and for the pair (grid input, the T2w if read -> target):

* ``overlap``: fraction of the reference (input) grid inside the target's field of view;
* ``ncc_before`` / ``ncc_after``: NCC in the body mask before and after rigid refinement
  (:func:`synthseq.data.registration.rigid_register`) of the two volumes' edge maps (gradient magnitude: tissue
  boundaries line up whatever the contrast, while intensities need not -- fat is bright on T2w, dark on STIR),
  with the refinement's shift (mm) and rotation (degrees);
* contrast heuristics (for the keys ``T2w`` and ``STIR``): the **fat index** is the median intensity of the outer
  body shell (1.5 to 8 mm inside the body outline, where subcutaneous fat lies) over the median of the deep body
  (muscle, spine) -- well above 1 on a T2w (fat bright), well below 1 on a STIR (fat suppressed); the **fluid
  index** is the body's 99.5th percentile over the same deep median (CSF is bright on both). The swap check
  needs the shell's 90th percentile to agree with its median (``fat_p90_index``, :func:`suspected_swap`): on small
  phantoms the median's T2w / STIR ratio fell to 0.7-1.1 (a narrow field of view leaves muscle in much of the
  shell), the 90th percentile's stayed at 1.1-3.6 or more (smallest ratio of 20 tiny subjects per realism mode and
  body mask); where fluid reaches the shell the 90th percentile is the one that misleads. Their body is the
  tissue labels' where the subject has them (a phantom), else the intensity estimate of the reference volume (which
  is always the mask of the rigid refinement: its margin holds the outline's edges).

Flags are ``(level, text)``: ``"error"`` makes the subject unusable for paired training (no input, unreadable
file, grids that hardly overlap, a misregistered pair, a suspected wrong contrast: fat darker on the "T2w" than
on the "STIR", as when a fat-suppressed image is labelled T2w or the two are swapped); ``"warn"`` is reported only
(no target: left out of paired training, still synthesized; a misregistration that ``data.register`` will refine;
a T2w or STIR whose fat index alone looks wrong: a cropped field of view may hold no subcutaneous fat).

:func:`write_report` writes ``QC/qc.json`` and ``QC/index.html`` with a checkerboard overlay of input and target
per subject (``QC/<subject>.png``), atomically (a temporary folder renamed at the end).
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..codes import body_mask_from_labels
from ..errors import InputError, SynthseqError
from ..io import Volume, load_volume
from .datasets import code_map_on
from .layout import Subject, grid_key
from .preprocess import body_mask_from_intensity
from .registration import overlap_fraction, resample_to, rigid_register, same_grid
from .slicing import SliceView

#: Below this fraction of the input grid inside the target's field of view a pair is unusable.
MIN_OVERLAP = 0.5
#: A rigid refinement moving the target more than this (mm or degrees) while raising NCC marks a misregistration.
MAX_SHIFT_MM = 2.0
MAX_ROTATION_DEG = 2.0
MIN_NCC_GAIN = 0.02
#: Fat index limits (warnings): a T2w below FAT_T2W_MIN may be fat-suppressed; a STIR above FAT_STIR_MAX may not be.
FAT_T2W_MIN = 0.7
FAT_STIR_MAX = 1.4
SHELL_MM = (1.5, 8.0)
#: A T2w whose fat indices are both below this fraction of its STIR's is flagged (1 would flag identical images).
SWAP_RATIO = 0.9


@dataclass
class SubjectQC:
    """What :func:`check_subject` found for one subject."""

    subject: str
    sequences: dict[str, dict] = field(default_factory=dict)  #: key -> shape, spacing_mm, orientation, range ...
    pair: dict = field(default_factory=dict)  #: overlap, ncc_before, ncc_after, shift_mm, rotation_deg
    flags: list[tuple[str, str]] = field(default_factory=list)  #: (level, text), level "error" | "warn"
    checkerboard: np.ndarray | None = None  #: (H, W) input / target checkerboard of the middle slice, in [0, 1]

    @property
    def errors(self) -> list[str]:
        return [text for level, text in self.flags if level == "error"]

    @property
    def usable(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("checkerboard")
        d["flags"] = [{"level": lv, "text": t} for lv, t in self.flags]
        d["usable"] = self.usable
        return d


def contrast_indices(volume: Volume, body: np.ndarray) -> dict[str, float]:
    """``fat_index``: median of the outer body shell (:data:`SHELL_MM` inside the outline) over the median of the
    deep body (more than twice as deep; the whole body when nothing is that deep); ``fat_p90_index``: the shell's
    90th percentile over the deep median (the swap check's: it follows the shell's fat where a small field of view
    leaves muscle in much of the shell); ``fluid_index``: the body's 99.5th percentile over the deep median."""
    data = np.asarray(volume.data, dtype=np.float32)
    depth = ndimage.distance_transform_edt(body, sampling=volume.spacing)
    deep = depth > 2 * SHELL_MM[1]
    deep = deep if deep.sum() >= 100 else body
    med = float(np.median(data[deep])) if deep.any() else 0.0
    if not med > 0:
        return {"fat_index": float("nan"), "fat_p90_index": float("nan"), "fluid_index": float("nan")}
    shell = (depth > SHELL_MM[0]) & (depth <= SHELL_MM[1])
    fat, fat90 = ((float(np.percentile(data[shell], q)) / med if shell.any() else float("nan")) for q in (50, 90))
    return {"fat_index": fat, "fat_p90_index": fat90, "fluid_index": float(np.percentile(data[body], 99.5)) / med}


def suspected_swap(t2w: dict[str, float], stir: dict[str, float]) -> bool:
    """Whether :func:`contrast_indices` of a pair say the "T2w" is fat-suppressed and the "STIR" is not: its
    ``fat_index`` and its ``fat_p90_index`` both below :data:`SWAP_RATIO` x the STIR's (STIR suppresses fat: it is
    never brighter there). Either index alone can mislead: the median where a narrow field of view leaves muscle in
    much of the shell, the 90th percentile where fluid (CSF, oedema) reaches the shell."""
    keys = ("fat_index", "fat_p90_index")
    vals = [(t2w.get(k), stir.get(k)) for k in keys]
    if any(a is None or b is None or not (np.isfinite(a) and np.isfinite(b)) for a, b in vals):
        return False
    return all(a < SWAP_RATIO * b for a, b in vals)


def _edges(vol: Volume) -> Volume:
    """Gradient magnitude (1 mm Gaussian) scaled by the volume's 99th percentile: a contrast-independent image."""
    sigma = [1.0 / max(float(s), 1e-3) for s in vol.spacing]
    g = ndimage.gaussian_gradient_magnitude(np.asarray(vol.data, dtype=np.float32), sigma)
    out = Volume(g / max(float(np.percentile(g, 99)), 1e-6), vol.affine, None, vol.path)
    return out


def _describe(vol: Volume) -> dict:
    lo, hi = (float(v) for v in np.percentile(np.asarray(vol.data, dtype=np.float32), (1, 99)))
    dtype = str(vol.header.get_data_dtype()) if vol.header is not None else str(vol.data.dtype)
    return {"path": str(vol.path), "shape": list(vol.shape), "spacing_mm": [round(float(s), 4) for s in vol.spacing],
            "orientation": vol.orientation, "dtype": dtype, "range_p1_p99": [lo, hi]}


def _window(x: np.ndarray, body: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(x[body], (1, 99)) if body.any() else (0.0, 1.0)
    return np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1)


def checkerboard(a: np.ndarray, b: np.ndarray, tiles: int = 8) -> np.ndarray:
    """``(H, W)`` image alternating ``a`` and ``b`` in a ``tiles`` x ``tiles`` board (edges show misalignment)."""
    h, w = a.shape
    yy, xx = np.meshgrid(np.arange(h) * tiles // max(h, 1), np.arange(w) * tiles // max(w, 1), indexing="ij")
    return np.where((yy + xx) % 2 == 0, a, b)


def _labels_body(subject: Subject, ref: Volume) -> np.ndarray | None:
    """The body mask from the subject's tissue labels (a phantom's) on ``ref``'s grid, or None without usable labels.
    The intensity estimate can miss part of a body whose contrast is unusual (the randomized phantom), and the
    fat index's shell then lies in muscle."""
    if not subject.has("labels"):
        return None
    try:
        body = body_mask_from_labels(code_map_on(subject.path("labels"), ref))
    except SynthseqError:
        return None
    return body if body.any() else None


def check_subject(subject: Subject, input_keys: Sequence[str] = ("T2w",), target_key: str = "STIR", *,
                  register: bool = False, slice_plane: str = "sagittal", max_points: int = 8000) -> SubjectQC:
    """Check one subject (see the module docstring). Never raises for a bad file: it becomes an error flag.

    Args:
        subject: its files.
        input_keys: input sequences; the pair checks use :func:`~synthseq.data.layout.grid_key`'s (the T2w when
            it is one of them: the contrast closest to STIR, and the grid ``synthesize`` writes on).
        target_key: the target sequence.
        register: the run refines pairs rigidly (``data.register``): a misregistration is then a warning.
        slice_plane: plane of the checkerboard slice.
        max_points: voxels sampled by the rigid refinement.
    """
    qc = SubjectQC(subject.id)
    vols: dict[str, Volume] = {}
    for key in [*input_keys, target_key]:
        if key in vols:
            continue
        if not subject.has(key):
            if key == target_key:
                qc.flags.append(("warn", f"no {key} (no target): left out of paired training, still synthesized"))
            else:
                qc.flags.append(("error", f"no {key} file (an input)"))
            continue
        try:
            vols[key] = load_volume(subject.path(key))
        except SynthseqError as exc:
            qc.flags.append(("error", str(exc).splitlines()[0]))
            continue
        qc.sequences[key] = _describe(vols[key])
    # edges of a T1w line up poorly with the STIR's (fat bright on one, dark on the other), so registering the STIR
    # to it flagged well-aligned randomized-phantom pairs as misregistered
    ref_key = grid_key(input_keys)
    if ref_key not in vols:
        return qc
    ref = vols[ref_key]
    body = body_mask_from_intensity(ref.data)  # also the mask of the rigid refinement below
    contrast_body = _labels_body(subject, ref)
    contrast_body = body if contrast_body is None else contrast_body
    for key in (k for k in (ref_key, target_key) if k in vols and k in ("T2w", "STIR")):
        vol = vols[key] if same_grid(vols[key], ref) else None
        if vol is None:
            try:
                vol = resample_to(vols[key], ref, order=1)
            except SynthseqError:
                continue
        qc.sequences[key].update(contrast_indices(vol, contrast_body))
    fat = {k: qc.sequences[k].get("fat_index") for k in ("T2w", "STIR") if k in qc.sequences}
    fat = {k: v for k, v in fat.items() if v is not None and np.isfinite(v)}
    if "T2w" in qc.sequences and "STIR" in qc.sequences and suspected_swap(qc.sequences["T2w"], qc.sequences["STIR"]):
        qc.flags.append(("error", f"suspected wrong contrast: fat is darker on the T2w than on the STIR (fat index "
                                  f"{fat['T2w']:.2f} vs {fat['STIR']:.2f}); swapped or mislabelled?"))
    else:  # alone these only warn: a cropped field of view may hold no subcutaneous fat
        if fat.get("T2w", FAT_T2W_MIN) < FAT_T2W_MIN:
            qc.flags.append(("warn", f"the T2w may be fat-suppressed (fat index {fat['T2w']:.2f} < {FAT_T2W_MIN})"))
        if fat.get("STIR", FAT_STIR_MAX) > FAT_STIR_MAX:
            qc.flags.append(("warn", f"the STIR may not be fat-suppressed (fat index {fat['STIR']:.2f} > "
                                     f"{FAT_STIR_MAX})"))
    if target_key not in vols or target_key == ref_key:
        return qc
    target = vols[target_key]
    overlap = 1.0 if same_grid(target, ref) else overlap_fraction(target, ref)
    qc.pair["overlap"] = overlap
    if overlap < MIN_OVERLAP:
        qc.flags.append(("error", f"grids hardly overlap: {overlap:.0%} of the {ref_key} grid inside the "
                                  f"{target_key} field of view"))
        return qc
    try:  # on edge maps: boundaries line up across contrasts, while intensities may not (fat is dark on STIR)
        moved, reg = rigid_register(_edges(target), _edges(ref), body, max_points=max_points)
    except SynthseqError as exc:
        qc.flags.append(("error", str(exc).splitlines()[0]))
        return qc
    shift = float(np.linalg.norm(reg["params"]["translation_mm"]))
    rot = float(np.max(np.abs(reg["params"]["rotation_deg"])))
    qc.pair.update(ncc_before=reg["ncc_before"], ncc_after=reg["ncc_after"], shift_mm=shift, rotation_deg=rot)
    if reg["improved"] and (shift > MAX_SHIFT_MM or rot > MAX_ROTATION_DEG) and \
            reg["ncc_after"] - reg["ncc_before"] > MIN_NCC_GAIN:
        text = (f"misregistered pair: rigid refinement moves the {target_key} {shift:.1f} mm / {rot:.1f} deg "
                f"(NCC {reg['ncc_before']:.2f} -> {reg['ncc_after']:.2f})")
        qc.flags.append(("warn", text + "; data.register=true refines it") if register else
                        ("error", text + "; re-register it or train with data.register=true"))
    on_ref = target if same_grid(target, ref) else resample_to(target, ref, order=1)
    view = SliceView.from_affine(ref.affine, slice_plane)
    a, b, m = (np.asarray(view.to_slices(x)) for x in (ref.data, on_ref.data, body))
    mid = a.shape[0] // 2
    qc.checkerboard = checkerboard(_window(a[mid], m[mid]), _window(b[mid], m[mid]))
    del moved
    return qc


def check_subjects(subjects: Sequence[Subject], input_keys: Sequence[str] = ("T2w",), target_key: str = "STIR",
                   **kw) -> list[SubjectQC]:
    """:func:`check_subject` for each subject, in order."""
    return [check_subject(s, input_keys, target_key, **kw) for s in subjects]


def unusable_line(reports: Sequence[SubjectQC]) -> str | None:
    """One line naming every unusable subject and why (None when all are usable)."""
    bad = [r for r in reports if not r.usable]
    if not bad:
        return None
    return f"{len(bad)} unusable subject(s): " + "; ".join(f"{r.subject}: {', '.join(r.errors)}" for r in bad)


def _png(path: Path, image: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import image as mpimg

    mpimg.imsave(str(path), np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1)


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else html.escape(str(v))


def write_report(reports: Sequence[SubjectQC], out: str | Path, source: str = "", overwrite: bool = False) -> Path:
    """``out/qc.json`` + ``out/index.html`` (+ one checkerboard PNG per pair), written into a temporary folder
    that replaces ``out`` at the end. An existing non-empty ``out`` is refused unless ``overwrite``."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise InputError(f"{out}: already exists and is not empty (use --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        rows = []
        for r in reports:
            img = ""
            if r.checkerboard is not None:
                _png(tmp / f"{r.subject}.png", r.checkerboard)
                img = f'<img src="{html.escape(r.subject)}.png" width="256">'
            seqs = "<br>".join(
                f"<b>{html.escape(k)}</b> {tuple(v['shape'])} {' x '.join(map(str, v['spacing_mm']))} mm "
                f"{html.escape(v['orientation'])} {html.escape(v['dtype'])} range {_fmt(v['range_p1_p99'][0])}.."
                f"{_fmt(v['range_p1_p99'][1])}" + (f" fat {_fmt(v['fat_index'])} fluid {_fmt(v['fluid_index'])}"
                                                   if "fat_index" in v else "")
                for k, v in r.sequences.items())
            pair = ", ".join(f"{k} {_fmt(v)}" for k, v in r.pair.items())
            flags = "<br>".join(f'<span class="{lv}">{lv}: {html.escape(t)}</span>' for lv, t in r.flags) or "ok"
            rows.append(f"<tr><td>{html.escape(r.subject)}</td><td>{seqs}</td><td>{pair}</td><td>{flags}</td>"
                        f"<td>{img}</td></tr>")
        bad = sum(not r.usable for r in reports)
        page = f"""<!doctype html><html><head><meta charset="utf-8"><title>synthseq dataset check</title>
<style>body{{font-family:sans-serif}} td{{vertical-align:top;padding:4px;border-bottom:1px solid #ccc}}
.error{{color:#b00}} .warn{{color:#a60}}</style></head><body>
<h1>Dataset check: {html.escape(source)}</h1>
<p>{len(reports)} subject(s), {bad} unusable. Checkerboard: input and target tiles alternate on the middle slice
(edges that do not line up show misregistration). Fat index: outer body shell / body median (T2w &gt; 1, STIR &lt; 1);
fluid index: body 99.5th percentile / median.</p>
<table><tr><th>subject</th><th>sequences</th><th>pair</th><th>flags</th><th>checkerboard</th></tr>
{''.join(rows)}</table></body></html>
"""
        (tmp / "index.html").write_text(page)
        (tmp / "qc.json").write_text(json.dumps({"source": source, "subjects": [r.to_dict() for r in reports],
                                                 "unusable": [r.subject for r in reports if not r.usable]},
                                                indent=1, default=float) + "\n")
        os.chmod(tmp, 0o755)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out / "index.html"


__all__ = ["SubjectQC", "check_subject", "check_subjects", "checkerboard", "contrast_indices", "unusable_line",
           "write_report"]
