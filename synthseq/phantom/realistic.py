"""The realistic phantom modes (``faithful``, ``randomized``): painting grid, texture and acquisition chain.

:func:`synthseq.phantom.generate_subject` calls :func:`fine_grid` before painting and :func:`render` after it
when ``realism`` is not ``classic``; the classic chain (``generate._render_classic``) is untouched, so classic
subjects stay bit-identical. What differs (see ``anatomy.sample_anatomy_varied``, ``texture.py`` and
``acquisition.py`` for the ranges and their sources):

* anatomy drawn with between-patient variation and degeneration (osteophytes, bulges, endplate sclerosis);
* painting on a grid 2x finer in-plane, so partial volume comes from sub-voxel geometry;
* compartment-level textures, vessels with flow voids, CSF flow voids;
* ``randomized`` only: the interspinous fat fraction drawn from 20-80 % (faithful and classic: 65 %), and a per-class
  log-normal gain (SD 0.15, within x0.74..1.35; fat x0.61..1.22, mostly darker) on the T2w input (contrast
  randomization as in SynthSeg / SynthSR), on top of the widened protocol ranges and relaxation jitter of
  ``acquisition.py``;
* slice profile, CSF ghosts, k-space truncation (Gibbs), zero-filled acquired matrix, partial Fourier,
  apodization, coil sensitivity and Rician noise on the complex image, with vendor-like protocols.
"""

from __future__ import annotations

import numpy as np

from ..codes import body_mask
from .acquisition import OVERSAMPLE, acquire, coil_sensitivity, jitter_relaxation, sample_acquisition
from .classes import CLASS_LABEL, CSF, EPIFAT, IM_FAT, ISL, SUBCUT_FAT, class_composition
from .injuries import render_marrow, render_soft_lesions
from .presets import Preset
from .sequences import Protocol, SignalBook, shift_volume, take_stir_protocol
from .texture import Channels, apply_textures, sample_texture


def fine_grid(y: np.ndarray, z: np.ndarray, preset: Preset) -> tuple[np.ndarray, np.ndarray]:
    """In-plane world coordinates ``OVERSAMPLE`` x finer, fine sample ``o * j`` at the coarse voxel ``j``."""
    d = preset.pixel_mm / OVERSAMPLE
    nj, nk = preset.matrix
    return y[0] - np.arange(OVERSAMPLE * nj) * d, z[0] - np.arange(OVERSAMPLE * nk) * d


def render(cv, painted, anat, plan, pr: Preset, fs: float, misregistration_mm: float, r_prot, r_mis, r_noise,
           r_t1, *, mode: str, r_tex: np.random.Generator, stir_te_ms: float | None = None,
           r_redraw: np.random.Generator | None = None):
    """Signals, textures and acquisition of one painted subject.

    Returns ``(protocol, arrays, extra)``: arrays ``t2w, stir, t1w`` float32 and ``labels, lesions`` uint8, all
    ``(n_slices, nj, nk)``; ``extra`` the k-space, texture and relaxation-jitter parameters (for dataset.json).
    ``stir_te_ms`` replaces the drawn STIR echo time (after the draw: the other draws are unchanged). ``r_redraw``
    redraws the STIR's own protocol fields and noise (``generate.generate_subject``'s ``stir_redraw_seed``) from
    an acquisition of the same vendor family and field strength.
    """
    prot, ks, _ = sample_acquisition(r_prot, fs, pr, mode, misregistration_mm, r_mis)
    if r_redraw is not None:
        while True:  # rejection: the same scanner (vendor family, field); at most 6 combinations, a few draws
            alt, _, vendor = sample_acquisition(r_redraw, fs, pr, mode, 0.0, r_redraw)
            if vendor == ks.vendor and alt.field_strength_T == prot.field_strength_T:
                break
        take_stir_protocol(prot, alt)
    if stir_te_ms is not None:
        prot.stir_te_ms = stir_te_ms
    book = SignalBook(prot)
    extra = {"realism": mode, "kspace": ks.to_dict()}
    if mode == "randomized":
        extra["relaxation_jitter"] = jitter_relaxation(book, prot, r_tex, 0.12)
    comps = class_composition(anat.ff_marrow)
    if mode == "randomized":
        # Interspinous spaces hold thin ligaments with fat pads between them; how much fat varies between patients.
        # The faithful phantom draws 65 % (classes.py); on the Prisma reference scan the brightest of them are as bright
        # as CSF; STIR nulls that fat. 20-80 % fat. Measured (README, sim-to-real): it moved a phantom-trained
        # model's fat / CSF on that scan only from 0.99 to 0.90.
        f_isl = float(r_tex.uniform(0.2, 0.8))
        comps[ISL] = {"ligament": 1.0 - f_isl, "fat": f_isl}
        extra["interspinous_fat_fraction"] = round(f_isl, 4)
    lut_t2, lut_st = book.lut(comps)
    t2f, stf, t1f = lut_t2[cv.cls], lut_st[cv.cls], book.lut_t1w(comps)[cv.cls]
    lesf = np.zeros_like(cv.cls)
    render_marrow(cv, painted, anat, plan, book, t2f, stf, lesf)
    render_soft_lesions(cv, painted, anat, plan, book, t2f, stf, lesf)
    scratch = np.zeros_like(lesf)
    render_marrow(cv, painted, anat, plan, book.t1w_view(), t1f, t1f, scratch)
    render_soft_lesions(cv, painted, anat, plan, book.t1w_view(), t1f, t1f, scratch)
    del scratch
    tp = sample_texture(r_tex, anat.age, randomized=mode == "randomized")
    extra["texture"] = tp.to_dict()
    d = pr.pixel_mm / OVERSAMPLE
    spacing = (pr.slice_mm / pr.supersample, d, d)
    apply_textures(cv, painted, anat, comps, Channels([(t2f, book.t2w), (stf, book.stir), (t1f, book.t1w)]), tp,
                   r_tex, spacing, OVERSAMPLE)
    if mode == "randomized":
        # SynthSeg-style input contrast randomization: every render class's T2w (the model's input) gets its own
        # log-normal gain, so a model cannot rely on exact tissue intensities; the STIR target keeps its physics.
        # Fat gets the widest range, mostly darker (x0.61..x1.22): real T2w fat / CSF is 0.36, 0.47 and 0.99 on the
        # three reference scans (mean 0.61) against 0.87 on the faithful phantom (benchmarks/sim_to_real.py), and a
        # model that knows fat only as "nearly as bright as CSF" leaves real fat bright. Even x0.61 keeps fat far
        # brighter than on STIR.
        z = r_tex.normal(0.0, 0.15, len(comps))
        logg = np.clip(z, -0.3, 0.3)
        fat = [SUBCUT_FAT, EPIFAT, IM_FAT]
        logg[fat] = np.clip(-0.15 + 2.0 * z[fat], -0.5, 0.2)
        gain = np.exp(logg).astype(np.float32)
        t2f *= gain[cv.cls]
        extra["t2w_class_gain"] = [round(float(v), 4) for v in gain]

    ss, o = pr.supersample, OVERSAMPLE
    labels = CLASS_LABEL[cv.cls[ss // 2::ss, ::o, ::o]]
    lesions = np.ascontiguousarray(lesf[ss // 2::ss, ::o, ::o])
    del lesf
    coil = coil_sensitivity(body_mask(labels), (pr.slice_mm, pr.pixel_mm, pr.pixel_mm), ks)
    csf = cv.cls == CSF
    out = {}
    for key, fine, ref, snr, gain, rng in (
            ("t2w", t2f, book.t2w["csf"], prot.snr_t2w, prot.gain_t2w, r_noise),
            ("stir", stf, abs(book.stir["csf"]), prot.snr_stir, prot.gain_stir, r_noise if r_redraw is None
             else r_redraw),
            ("t1w", t1f, book.t1w["muscle"], prot.snr_t1w, prot.gain_t1w, r_t1)):
        img = acquire(fine, fine * csf, pr, ks, coil, ref / snr, rng)
        out[key] = img * np.float32(gain / ref)
    if any(prot.misregistration_mm):
        sx, sy, sz = prot.misregistration_mm
        out["stir"] = shift_volume(out["stir"], (sx / pr.slice_mm, -sy / pr.pixel_mm, -sz / pr.pixel_mm))
    out["labels"], out["lesions"] = labels, lesions
    return prot, out, extra


__all__ = ["Protocol", "fine_grid", "render"]
