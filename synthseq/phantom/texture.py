"""Tissue texture, vessels and CSF flow on the fine painting grid (the realistic phantom modes only).

The classic phantom paints piecewise-constant compartments; real tissue is not. Every change here is a change
of *compartment fractions* inside a voxel (more fat, a fibrous septum, a trabecula, moving blood), applied to
every sequence with that sequence's compartment signals, so T2w, STIR and T1w stay physically consistent
(e.g. a fatty marrow island is brighter on T2w and darker on STIR):

* **trabecular marrow**: bone-marrow fat fraction varies on two scales: ~1 mm (trabeculae and the marrow
  between them) and ~5 mm (red / yellow marrow islands); a little signal goes to trabecular bone;
* **fat lobules**: subcutaneous, epidural and intermuscular fat is split into lobules of a few mm by fibrous
  septa (the zero-level set of a smooth random field: a connected cellular network);
* **muscle striation**: fibres run superior-inferior; intramuscular fat streaks follow them (a random field
  stretched along s) and water content varies a little between fascicles;
* **endplate sclerosis** next to degenerated discs (``anatomy.sample_anatomy_varied``): thickened trabeculae,
  a dark band under the endplate on every sequence;
* **heterogeneous discs**: the adult intranuclear cleft (a fibrous band at mid-disc height, a normal finding
  after the third decade), lamellar annulus striation and nucleus heterogeneity;
* **vessels with flow voids**: vertebral arteries in the transverse foramina and the common carotid arteries:
  fast arterial flow leaves the slice between the spin-echo 90 and 180 degree pulses, so the lumen is black
  on T2w, STIR and T1w FSE. Labels are not changed (no vessel code): the void lies inside the surrounding tissue;
* **CSF flow voids**: pulsatile CSF in the canal dephases in patches (dark spots and streaks in the dorsal and
  ventral subarachnoid space on T2w FSE); ghosting along phase-encode is added by ``acquisition.py``.

Amplitudes come from ``TextureParams`` (faithful values, widened by the randomized mode).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from .classes import (
    ANNULUS,
    CORD,
    CSF,
    EPIFAT,
    IM_FAT,
    MARROW,
    MUSCLE,
    NUCLEUS,
    POST_MARROW,
    SKULL_MARROW,
    SUBCUT_FAT,
)


@dataclass
class TextureParams:
    """Per-subject texture amplitudes (fractions of a voxel's composition moved, 0..1)."""

    marrow_fine: float = 0.07  #: SD of the ~1 mm marrow fat-fraction variation
    marrow_coarse: float = 0.06  #: SD of the ~5 mm red / yellow marrow islands
    trabecular_bone: float = 0.06  #: mean fraction of trabecular bone in a marrow voxel
    septa: float = 0.55  #: fibrous fraction on a fat septum
    lobule_mm: float = 4.0  #: fat lobule size (septa spacing ~2x this)
    muscle_fat: float = 0.25  #: fat fraction of an intramuscular streak
    muscle_water: float = 0.04  #: SD of the fascicle water content
    cleft: float = 0.55  #: fibrous fraction on the intranuclear cleft (0 in young subjects)
    disc_het: float = 0.08  #: SD of the nucleus / annulus composition
    vessel_void: float = 0.92  #: signal removed in an arterial lumen
    csf_void: float = 0.45  #: largest CSF signal loss in a flow patch

    def to_dict(self) -> dict:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def sample_texture(rng: np.random.Generator, age: float, randomized: bool = False) -> TextureParams:
    """Draw one subject's texture amplitudes; ``randomized`` widens every range (domain randomization)."""
    w = 1.8 if randomized else 1.0
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    return TextureParams(
        marrow_fine=u(0.04, 0.08) * w, marrow_coarse=u(0.03, 0.07) * w, trabecular_bone=u(0.04, 0.08),
        septa=u(0.4, 0.7), lobule_mm=u(3.0, 5.5), muscle_fat=u(0.15, 0.35) * min(w, 1.4),
        muscle_water=u(0.02, 0.05) * w,
        cleft=u(0.35, 0.7) * float(np.clip((age - 25.0) / 15.0, 0.0, 1.0)),  # cleft appears from ~30 y
        disc_het=u(0.04, 0.10) * w, vessel_void=u(0.85, 0.97), csf_void=u(0.25, 0.6) * min(w, 1.5),
    )


# --------------------------------------------------------------------------------------------- fields
def smooth_field(shape: tuple[int, ...], sigma_vox: tuple[float, ...], rng: np.random.Generator,
                 min_factor: tuple[int, ...] | None = None) -> np.ndarray:
    """Zero-mean, unit-SD Gaussian random field of correlation length ``sigma_vox`` (per axis), float32.

    Computed on a grid coarsened by ``max(min_factor, sigma / 2)`` per axis and expanded back by repetition
    (cheap for long correlation lengths; with ``min_factor`` = the painting oversampling, the blocks are the
    acquisition voxels, whose band limit smooths them).
    """
    mf = min_factor or (1,) * len(shape)
    f = [max(int(m), int(s / 2.0), 1) for s, m in zip(sigma_vox, mf)]
    small = tuple(-(-n // k) for n, k in zip(shape, f))
    white = rng.standard_normal(small, dtype=np.float32)
    field = ndimage.gaussian_filter(white, [s / k for s, k in zip(sigma_vox, f)], mode="wrap")
    field = (field - field.mean()) / max(float(field.std()), 1e-12)
    for ax, k in enumerate(f):
        if k > 1:
            field = np.repeat(field, k, axis=ax)
    return np.ascontiguousarray(field[tuple(slice(0, n) for n in shape)], dtype=np.float32)


def _bbox(mask: np.ndarray, pad: int = 2) -> tuple[slice, ...] | None:
    """Bounding box of ``mask`` (padded), None if empty."""
    out = []
    for ax in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != ax)
        idx = np.flatnonzero(mask.any(axis=other))
        if idx.size == 0:
            return None
        out.append(slice(max(idx[0] - pad, 0), min(idx[-1] + pad + 1, mask.shape[ax])))
    return tuple(out)


class Channels:
    """The fine signal arrays of every sequence with their compartment signals: ``[(array, {name: signal})]``."""

    def __init__(self, pairs: list[tuple[np.ndarray, dict[str, float]]]):
        self.pairs = pairs

    def mix(self, index, mask: np.ndarray, amount: np.ndarray, to: str, frm: str | dict[str, float]) -> None:
        """Move ``amount`` (0..1 per masked voxel) of the voxel's composition from ``frm`` to ``to``.

        ``frm`` is a compartment name, or a composition (the class's compartments, fractions summing to 1).
        """
        for arr, sig in self.pairs:
            if isinstance(frm, str):
                base = sig[frm]
            else:
                base = sum(w * sig[c] for c, w in frm.items())
            view = arr[index]
            view[mask] += (amount * (sig[to] - base)).astype(np.float32)

    def scale(self, index, mask: np.ndarray, factor: np.ndarray | list[np.ndarray]) -> None:
        """Multiply the masked voxels by ``factor`` (one array for all sequences, or one per sequence)."""
        for i, (arr, _) in enumerate(self.pairs):
            f = factor[i] if isinstance(factor, list) else factor
            view = arr[index]
            view[mask] *= f.astype(np.float32)


# ------------------------------------------------------------------------------------------- textures
def apply_textures(cv, painted, anat, comps: list[dict[str, float]], ch: Channels, tp: TextureParams,
                   rng: np.random.Generator, spacing: tuple[float, float, float], oversample: int = 1) -> None:
    """All textures, vessels and CSF flow voids, in place on the channels' fine arrays.

    Args:
        cv: the painted ``anatomy.Canvas`` (classes ``cv.cls`` of shape ``(ni, nj, nk)``).
        painted: ``anatomy.Painted`` (discs, vertebrae, profiles).
        anat: ``anatomy.Anatomy``.
        comps: per-class compositions (``classes.class_composition``).
        ch: the sequences' fine arrays, same shape as ``cv.cls``.
        tp: amplitudes; ``rng``: the texture stream.
        spacing: fine grid spacing (x, y, z) in mm.
        oversample: in-plane painting oversampling (fields are drawn on the acquisition grid, no finer).
    """
    cls = cv.cls

    def field(shape: tuple[int, ...], *sigma_mm: float) -> np.ndarray:
        """A unit random field on ``shape`` with correlation lengths in mm, from the texture stream."""
        return smooth_field(shape, tuple(v / d for v, d in zip(sigma_mm, spacing)), rng, (1, oversample, oversample))

    _marrow(cls, comps, ch, tp, rng, field)
    _fat_lobules(cls, ch, tp, rng, field)
    _muscle(cls, ch, tp, rng, field)
    _discs(cv, painted, anat, ch, tp, rng, field)
    _endplates(cv, painted, anat, comps, ch)
    _vessels(cv, painted, anat, ch, tp, rng)
    _csf_flow(cv, ch, tp, rng, field)


def _marrow(cls, comps, ch: Channels, tp: TextureParams, rng, field) -> None:
    m_all = (cls == MARROW) | (cls == POST_MARROW) | (cls == SKULL_MARROW)
    box = _bbox(m_all)
    if box is None:
        return
    m = m_all[box]
    shape = m.shape
    fine = field(shape, 0.9, 0.7, 0.7)
    coarse = field(shape, 4.0, 5.0, 5.0)
    dff = tp.marrow_fine * fine[m] + tp.marrow_coarse * coarse[m]
    # fat gains at the expense of marrow water (fractions stay in range for ff within 0.15..0.85)
    ch.mix(box, m, dff, to="fat", frm="marrow_water")
    # trabecular bone: more where the fine field is high (plates and rods), none below zero
    bone = tp.trabecular_bone * np.clip(1.0 + fine[m], 0.0, 3.0)
    mw = comps[MARROW]
    ch.mix(box, m, bone, to="cortical_bone", frm=mw)


def _fat_lobules(cls, ch: Channels, tp: TextureParams, rng, field) -> None:
    m_all = (cls == SUBCUT_FAT) | (cls == EPIFAT) | (cls == IM_FAT)
    box = _bbox(m_all)
    if box is None:
        return
    m = m_all[box]
    f = field(m.shape, tp.lobule_mm, tp.lobule_mm, tp.lobule_mm)
    # septa: within ~0.5 mm of the field's zero-level set (|f| / |grad f| small); |f| < 0.15 is a good proxy
    septum = np.clip(1.0 - np.abs(f[m]) / 0.15, 0.0, 1.0) * tp.septa
    ch.mix(box, m, septum, to="skin", frm="fat")  # fibrous septa: dermis-like collagen
    lob = field(m.shape, 8.0, 8.0, 8.0)
    ch.mix(box, m, 0.03 * lob[m], to="skin", frm="fat")  # lobule-to-lobule fat content


def _muscle(cls, ch: Channels, tp: TextureParams, rng, field) -> None:
    m_all = cls == MUSCLE
    box = _bbox(m_all)
    if box is None:
        return
    m = m_all[box]
    fib = field(m.shape, 1.0, 0.7, 9.0)  # long along S-I: fibre direction
    streak = np.clip(fib[m] - 1.4, 0.0, 1.0) * tp.muscle_fat
    ch.mix(box, m, streak, to="fat", frm="muscle")
    fasc = field(m.shape, 2.5, 2.0, 12.0)
    ch.mix(box, m, tp.muscle_water * fasc[m], to="muscle_edema", frm="muscle")


def _discs(cv, painted, anat, ch: Channels, tp: TextureParams, rng, field) -> None:
    cls = cv.cls
    for d, b, sm in painted.discs:
        if b is None:
            continue
        c = cls[b.index]
        S = np.broadcast_to(b.S, c.shape)
        near = np.abs(S - sm) < 0.5 * anat.disc_h[d] + 3.0
        nuc = (c == NUCLEUS) & near
        ann = (c == ANNULUS) & near
        if not (nuc.any() or ann.any()):
            continue
        het = field(c.shape, 1.5, 1.5, 0.8)
        if nuc.any():
            # intranuclear cleft: fibrous band ~1 mm thick at mid height
            cleft = tp.cleft * np.clip(1.0 - np.abs(S[nuc] - sm) / 0.6, 0.0, 1.0)
            ch.mix(b.index, nuc, np.clip(cleft + tp.disc_het * het[nuc], -0.3, 0.9), to="annulus", frm="nucleus")
        if ann.any():
            # lamellae: concentric layers ~1 mm apart, seen as faint bands
            T = np.broadcast_to(b.T, c.shape)
            lam = 0.5 * tp.disc_het * (np.sin(2 * np.pi * T[ann] / 1.2) + het[ann])
            ch.mix(b.index, ann, np.clip(lam, -0.3, 0.3), to="nucleus", frm="annulus")


def _endplates(cv, painted, anat, comps, ch: Channels) -> None:
    """Endplate sclerosis next to degenerated discs: a dark band of thickened trabeculae under the endplate."""
    scl = getattr(anat, "endplate_sclerosis", None)
    if scl is None or not np.any(scl > 0):
        return
    for vt in painted.vertebrae:
        b = vt.box
        if b is None:
            continue
        c = cv.cls[b.index]
        u = np.broadcast_to(b.S - vt.s_c, c.shape)
        m = (c == MARROW) & (np.abs(u) <= vt.hh + 0.5)
        amount = np.zeros(c.shape, np.float32)
        for d, dist in ((vt.level - 1, u + vt.hh), (vt.level, vt.hh - u)):  # disc above, disc below
            if 0 <= d < len(scl) and scl[d] > 0:
                amount = np.maximum(amount, 0.5 * scl[d] * np.clip(1.0 - dist / 2.5, 0.0, 1.0))
        m &= amount > 0.01
        if m.any():
            ch.mix(b.index, m, amount[m], to="cortical_bone", frm=comps[MARROW])


def _vessels(cv, painted, anat, ch: Channels, tp: TextureParams, rng) -> None:
    """Vertebral arteries (C6 to C1, in the transverse foramina) and common carotid arteries (C3 to T1)."""
    k = anat.scale
    s_mid = anat.s_mid
    vessels = []
    for side in (-1, 1):
        x_va = side * float(rng.uniform(14.0, 17.0)) * k
        vessels.append((s_mid[0] - 8.0, s_mid[4] + 8.0, 0.3 * float(np.mean(anat.body_d[:5])), x_va,
                        float(rng.uniform(1.5, 2.1))))
        x_cc = side * float(rng.uniform(20.0, 26.0)) * k
        vessels.append((s_mid[1], s_mid[6] + 10.0, float(np.mean(anat.body_d[1:7])) + float(rng.uniform(6, 12)),
                        x_cc, float(rng.uniform(3.0, 4.0))))
    for s0, s1, t_v, x_v, r in vessels:
        b = cv.box(s0, s1, t_v - r - 1, t_v + r + 1, x_v - r - 1, x_v + r + 1)
        if b is None:
            continue
        c = cv.cls[b.index]
        ends = np.clip(np.minimum(b.S - s0, s1 - b.S) / 3.0, 0.0, 1.0)
        rr = ((b.T - t_v) ** 2 + (b.X - x_v) ** 2) / (r * r)
        lumen = np.broadcast_to((rr <= 1.0) & (ends > 0), c.shape) & (c != CSF) & (c != CORD)
        if not lumen.any():
            continue
        keep = 1.0 - tp.vessel_void * np.broadcast_to(ends * np.clip((1.0 - rr) * 4.0, 0.0, 1.0), c.shape)[lumen]
        ch.scale(b.index, lumen, keep)


def _csf_flow(cv, ch: Channels, tp: TextureParams, rng, field) -> None:
    m_all = (cv.cls == CSF) & (cv.S[None] > 0.0)  # the spinal subarachnoid space, not the cisterns
    box = _bbox(m_all)
    if box is None:
        return
    m = m_all[box]
    f = field(m.shape, 2.0, 1.5, 7.0)
    loss = np.clip(f[m] - 0.8, 0.0, 1.0)
    factors = [1.0 - tp.csf_void * float(rng.uniform(0.6, 1.0)) * loss for _ in ch.pairs]
    ch.scale(box, m, factors)
