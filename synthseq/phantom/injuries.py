"""Traumatic injuries and imaging confounders: what each subject has (the plan) and how it looks.

A subject has none, one or several of the injuries (lesion codes in ``codes.LESIONS``):

* **vertebral compression fracture** (1 marrow_edema): anterior wedge (superior endplate depressed
  anteriorly, local kyphosis), bone-marrow oedema under the endplate and a dark impaction line. Oedema
  replaces part of the marrow fat with long-T2 water, so it is subtle on T2w (fat was bright already) and
  conspicuous on STIR (fat nulled, water bright);
* **posterior ligamentous complex injury** (2): fluid in the interspinous / supraspinous ligaments and
  the ligamentum flavum at one level, splayed spinous processes, oedema of the adjacent muscles;
* **cord oedema** (3) of variable length, with or without a **haemorrhagic core** (4, T2-dark deoxyHb);
* **prevertebral oedema / haematoma** (5): thickened, fluid-signal prevertebral soft tissue;
* **traumatic disc injury** (6): fluid signal through the annulus and nucleus of one disc;
* **canal compression** (7): a disc extrusion or a retropulsed fragment narrowing the canal and
  deforming the cord.

Confounders that make T2w -> STIR non-trivial: **Modic 2** fatty endplate marrow (8, bright on T2w, dark on
STIR), typical fatty **haemangioma** (9, bright on T2w, not on STIR, coarse trabeculae) and **Modic 1**
(10, oedema-like: bright on STIR), all next to degenerated discs or at random levels, more with age.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..codes import L as LES
from .classes import ANNULUS, CORD, FLAVUM, IM_FAT, ISL, MARROW, MUSCLE, NUCLEUS, PREVERT

N_LEVELS = 9  # C2 .. T3 (anatomy.LEVELS)


@dataclass
class Fracture:
    level: int  #: vertebra index (0 = C2)
    height_loss_mm: float  #: anterior height loss of the superior endplate
    kyphosis_deg: float  #: local kyphotic angulation
    edema_depth_mm: float  #: marrow oedema extent below the superior endplate


@dataclass
class PLCInjury:
    level: int  #: interspinous space between this vertebra and the next
    widen_deg: float  #: upward rotation of the upper spinous process (fanning)


@dataclass
class CordLesion:
    s_offset_mm: float  #: centre relative to the injury level's disc
    length_mm: float  #: planned rostro-caudal length
    hemorrhage_mm: float  #: length of the haemorrhagic core (0 = none)


@dataclass
class Prevertebral:
    level_from: int
    level_to: int
    extra_mm: float  #: added thickness


@dataclass
class CanalCompression:
    level: int  #: disc below this vertebra (disc kind) or superior corner of vertebra level+1 (bone kind)
    kind: str  #: "disc" | "bone"
    depth_mm: float  #: how far it reaches into the canal behind the posterior body line
    half_height_mm: float
    half_width_mm: float


@dataclass
class InjuryPlan:
    """Everything injured (or confounding) in one subject; None / empty lists when absent."""

    level: int  #: main injury level (vertebra index)
    fracture: Fracture | None = None
    plc: PLCInjury | None = None
    cord: CordLesion | None = None
    prevertebral: Prevertebral | None = None
    disc: int | None = None  #: injured disc index (below vertebra ``disc``)
    canal: CanalCompression | None = None
    modic1: list[int] = field(default_factory=list)  #: disc indices
    modic2: list[tuple[int, int]] = field(default_factory=list)  #: (disc index, side -1 upper / +1 lower / 0 both)
    hemangioma: list[tuple[int, float, float, float, float]] = field(default_factory=list)  #: level, u, w, x, r

    def to_dict(self) -> dict:
        return asdict(self)


def _sig(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def sample_plan(rng: np.random.Generator, age: float, severity: float, injured: bool,
                degen: np.ndarray | None = None) -> InjuryPlan:
    """Draw a subject's injuries from the trauma severity (latent, ~N(0,1)) and age.

    Higher severity -> more fractures, PLC injuries, longer cord lesions and haemorrhage. Confounders
    are independent of trauma and become commoner with age. ``degen`` (per-disc degeneration) places
    Modic changes next to degenerated discs.
    """
    young = age < 45
    # Injury level (vertebra index; 1 = C3 .. 5 = C7): C5-C6 peak of cervical trauma.
    level = int(rng.choice([1, 2, 3, 4, 5], p=[0.10, 0.18, 0.30, 0.28, 0.14]))
    plan = InjuryPlan(level=level)
    z = severity
    if injured:
        if rng.random() < _sig(-0.3 + 0.9 * z + 0.6 * young):
            loss = float(rng.uniform(1.5, 5.0))
            plan.fracture = Fracture(level, loss, float(np.degrees(loss / 17.0) * rng.uniform(0.5, 0.9)),
                                     float(rng.choice([rng.uniform(6, 9), rng.uniform(10, 18)])))
        if rng.random() < _sig(-1.2 + 0.9 * z + 1.0 * (plan.fracture is not None)):
            plan.plc = PLCInjury(max(level - 1, 0) if rng.random() < 0.5 else level, float(rng.uniform(3, 9)))
        if rng.random() < _sig(1.3 + 1.3 * z):
            length = float(np.clip(8.0 + 16.0 * np.exp(0.45 * z + rng.normal(0, 0.35)), 8.0, 75.0))
            hem = rng.random() < _sig(-1.6 + 1.4 * z)
            hl = float(np.clip(length * rng.uniform(0.18, 0.35), 4.5, 16.0)) if hem else 0.0
            plan.cord = CordLesion(float(rng.normal(0, 4.0)), length, hl)
        if rng.random() < _sig(-0.9 + 0.6 * z + 0.9 * (plan.fracture is not None) + 0.6 * (plan.plc is not None)):
            plan.prevertebral = Prevertebral(max(level - 1, 0), min(level + 1, 6), float(rng.uniform(2.5, 6.0)))
        if rng.random() < _sig(-1.1 + 0.5 * z + 0.4 * (not young)):
            plan.disc = level if rng.random() < 0.6 else max(level - 1, 0)
        if rng.random() < _sig(-1.1 + 0.7 * z + 0.6 * (plan.fracture is not None)):
            kind = "bone" if plan.fracture is not None and rng.random() < 0.6 else "disc"
            lv = plan.fracture.level - 1 if kind == "bone" else level
            plan.canal = CanalCompression(lv, kind, float(rng.uniform(3.0, 6.5)), float(rng.uniform(4.5, 7.0)),
                                          float(rng.uniform(5.5, 8.0)))
    # Confounders: Modic changes next to degenerated discs, haemangiomas anywhere (~1 in 4-6 adults).
    if degen is not None:
        used = {plan.disc} | ({plan.fracture.level, plan.fracture.level - 1} if plan.fracture else set())
        for d in np.argsort(-degen)[:3]:
            d = int(d)
            if d in used or d > 6:
                continue
            r = rng.random()
            if r < 0.45 * degen[d]:
                plan.modic2.append((d, int(rng.choice([-1, 0, 1]))))
                used.add(d)
            elif r < 0.45 * degen[d] + 0.25 * degen[d] + 0.04:
                plan.modic1.append(d)
                used.add(d)
    if rng.random() < 0.22 + 0.004 * max(age - 40, 0):
        avoid = {plan.fracture.level} if plan.fracture else set()
        lv = int(rng.choice([v for v in range(1, 8) if v not in avoid]))
        plan.hemangioma.append((lv, float(rng.uniform(-2.5, 2.5)), float(rng.uniform(-2.0, 2.0)),
                                float(rng.uniform(-2.0, 2.0)), float(rng.uniform(3.5, 6.0))))
    return plan


# ------------------------------------------------------------------------------------------- rendering
def _mix(book, weights: dict[str, np.ndarray | float]) -> tuple[np.ndarray, np.ndarray]:
    """T2w and signed STIR signals of a compartment mixture (weights broadcast together)."""
    t2 = sum(w * book.t2w[c] for c, w in weights.items())
    st = sum(w * book.stir[c] for c, w in weights.items())
    return t2, st


def _assign(arr: np.ndarray, idx, mask: np.ndarray, value) -> None:
    view = arr[idx]
    view[mask] = np.broadcast_to(value, mask.shape)[mask]


def render_marrow(cv, painted, anat, plan: InjuryPlan, book, t2: np.ndarray, stir: np.ndarray,
                  lesions: np.ndarray) -> None:
    """Vertebral body marrow, voxel by voxel: fat-fraction texture, oedema, Modic changes, haemangioma.

    Signal of a marrow voxel: ``c * cortex + (1 - c) * [ff * fat + fb * blood + (1 - ff - fb) * water]``
    with ``water = (1 - e) * marrow_water + e * edema_water``; ``e`` the oedema fraction, ``c`` the
    fraction of thickened trabeculae / impacted bone. Lesion codes are written where each lesion
    dominates a marrow voxel.
    """
    for vt in painted.vertebrae:
        b = vt.box
        if b is None:
            continue
        cls = cv.cls[b.index]
        u = np.broadcast_to(b.S - vt.s_c, cls.shape)
        # boxes are padded: keep to this vertebra (C2 also owns the dens and the C1 ring above it)
        u_min = -vt.hh - (60.0 if vt.level == 0 else 1.5)
        m = (cls == MARROW) & (u >= u_min) & (u <= vt.hh + 1.5)
        if not m.any():
            continue
        w = np.broadcast_to(b.T - vt.ha, m.shape)
        x = b.X
        ph = anat.texture[vt.level]
        # Fat texture: smooth +-0.06 variation (trabecular / red-yellow heterogeneity); a little more fat
        # centrally around the basivertebral vein, less under the endplates.
        ff0 = anat.ff_marrow + 0.04 * np.sin(0.45 * u + ph[0]) * np.sin(0.5 * w + ph[1]) \
            + 0.03 * np.sin(0.33 * x + ph[2]) - 0.04 * np.clip(1 - (vt.hh - np.abs(u)) / 3.0, 0, 1)
        ff = ff0.astype(np.float32)
        e = np.zeros(m.shape, np.float32)
        c = np.zeros(m.shape, np.float32)
        fb = np.zeros(m.shape, np.float32)
        code = np.zeros(m.shape, np.uint8)
        top = _top_endplate(w, vt)
        d_top = u - top  # mm below the superior endplate
        d_bot = vt.hh - u  # mm above the inferior endplate
        lat = np.clip(1.2 - np.abs(x) / vt.hw, 0, 1)  # fades laterally
        if plan.fracture is not None and plan.fracture.level == vt.level:
            D = plan.fracture.edema_depth_mm
            ef = np.clip((D - d_top) / 3.0 + 0.5, 0, 1) * np.clip(lat * 1.5, 0, 1)
            e = np.maximum(e, ef)
            if D >= 10:  # impacted trabeculae: a faint dark line a few mm under the endplate
                c = np.maximum(c, 0.35 * np.clip(1 - np.abs(d_top - 3.0) / 0.8, 0, 1) * (ef > 0.5))
            code[m & (ef > 0.5)] = LES["marrow_edema"]
        for d in plan.modic1:
            for dist, adj in ((d_bot, d), (d_top, d + 1)):
                if adj == vt.level:
                    band = np.clip((4.5 - dist) / 2.0 + 0.5, 0, 1) * np.clip(lat * 1.3, 0, 1)
                    e = np.maximum(e, 0.8 * band)
                    code[m & (band > 0.5) & (code == 0)] = LES["modic1"]
        for d, side in plan.modic2:
            for dist, adj, sd in ((d_bot, d, -1), (d_top, d + 1, 1)):
                if adj == vt.level and side in (0, sd):
                    band = np.clip((5.0 - dist) / 2.0 + 0.5, 0, 1) * np.clip(lat * 1.3, 0, 1)
                    ff = ff + (0.9 - ff) * band
                    code[m & (band > 0.5) & (code == 0)] = LES["modic2_fatty"]
        for lv, uc, wc, xc, r in plan.hemangioma:
            if lv != vt.level:
                continue
            q = ((u - uc) ** 2 + (w - wc) ** 2 + (x - xc) ** 2) / (r * r)
            hin = np.clip((1 - q) * 4, 0, 1)
            ff = ff + (0.8 - ff) * hin
            fb = np.maximum(fb, 0.08 * hin)
            # coarse vertical trabeculae ("polka dots" axially -> stripes sagittally)
            trab = (np.cos(2 * np.pi * w / 3.2) * np.cos(2 * np.pi * x / 3.2) > 0.55) * hin
            c = np.maximum(c, 0.45 * trab)
            code[m & (q <= 1) & (code == 0)] = LES["hemangioma"]
        ff = np.clip(ff * (1 - 0.7 * e), 0.02, 0.95)
        water = 1 - ff - fb
        t2v, stv = _mix(book, {"fat": ff, "blood": fb, "marrow_water": water * (1 - e), "edema_water": water * e})
        t2v = c * book.t2w["cortical_bone"] + (1 - c) * t2v
        stv = c * book.stir["cortical_bone"] + (1 - c) * stv
        _assign(t2, b.index, m, t2v)
        _assign(stir, b.index, m, stv)
        lv_view = lesions[b.index]
        lv_view[m & (code > 0)] = code[m & (code > 0)]


def _top_endplate(w: np.ndarray, vt) -> np.ndarray:
    """u of the superior endplate as a function of w (wedge fracture lowers it anteriorly)."""
    if vt.top_drop <= 0:
        return np.full(w.shape, -vt.hh, np.float32)
    frac = np.clip((w + vt.ha) / (2 * vt.ha), 0, 1) ** 1.3
    return -vt.hh + vt.top_drop * frac


def render_soft_lesions(cv, painted, anat, plan: InjuryPlan, book, t2: np.ndarray, stir: np.ndarray,
                        lesions: np.ndarray) -> None:
    """Discs (degeneration, injury), PLC, cord oedema / haemorrhage, prevertebral oedema, canal compression."""
    # discs: degeneration darkens the nucleus (towards annulus signal); injury brings fluid
    for d, b, sm in painted.discs:
        if b is None:
            continue
        cls = cv.cls[b.index]
        dg = float(anat.disc_degen[d])
        near = np.abs(np.broadcast_to(b.S, cls.shape) - sm) < 0.5 * anat.disc_h[d] + 3.0  # boxes are padded
        nuc = (cls == NUCLEUS) & near
        if dg > 0.05 and nuc.any():
            t2v, stv = _mix(book, {"nucleus": 1 - 0.85 * dg, "annulus": 0.85 * dg})
            t2[b.index][nuc] = t2v
            stir[b.index][nuc] = stv
        if plan.disc == d:
            disc = ((cls == ANNULUS) & near) | nuc
            dep = 0.5 * (anat.body_d[d] + anat.body_d[d + 1])
            reg = disc & (np.broadcast_to(b.T, cls.shape) > 0.35 * dep) & (np.abs(b.X) < 0.35 * anat.body_w[d])
            reg &= np.abs(np.broadcast_to(b.S, cls.shape) - sm) < 0.5 * anat.disc_h[d] + 2.5
            t2v, stv = _mix(book, {"fluid": 0.55, "nucleus": 0.45})
            t2[b.index][reg] = t2v
            stir[b.index][reg] = stv
            lesions[b.index][reg] = LES["disc_injury"]

    tips = painted.profiles["tips"]  # (level, [s_base, t_base, s_tip, t_tip])
    if plan.plc is not None:
        v = plan.plc.level
        s0 = 0.5 * (tips[v, 0] + tips[v, 2])
        s1 = 0.5 * (tips[v + 1, 0] + tips[v + 1, 2])
        sc, hs = 0.5 * (s0 + s1), 0.5 * abs(s1 - s0) + 2.0
        t_hi = max(tips[v, 1], tips[v + 1, 1]) + 4.0
        t_lo = min(tips[v, 3], tips[v + 1, 3]) - 4.0
        b = cv.box(sc - hs, sc + hs, t_lo, t_hi, -12, 12)
        if b is not None:
            cls = cv.cls[b.index]
            q = ((b.S - sc) / hs) ** 2 + ((b.T - 0.5 * (t_lo + t_hi)) / (0.5 * (t_hi - t_lo))) ** 2 \
                + (b.X / 10.0) ** 2
            q = np.broadcast_to(q, cls.shape)
            lig = ((cls == ISL) | (cls == FLAVUM)) & (q <= 1)
            t2v, stv = _mix(book, {"fluid": 0.7, "ligament": 0.3})
            t2[b.index][lig] = t2v
            stir[b.index][lig] = stv
            lesions[b.index][lig] = LES["plc_injury"]
            mus = ((cls == MUSCLE) | (cls == IM_FAT)) & (q <= 1.4)
            wgt = np.clip((1.4 - q) / 0.6, 0, 1)[mus] * 0.7
            t2m, stm = _mix(book, {"muscle_edema": wgt, "muscle": 1 - wgt})
            t2[b.index][mus] = t2m
            stir[b.index][mus] = stm

    prof = painted.profiles
    if plan.cord is not None:
        cl = plan.cord
        s_c = anat.disc_mid(plan.level) + cl.s_offset_mm
        half = 0.5 * cl.length_mm
        b = cv.box(s_c - half - 1, s_c + half + 1, -35, 5, -10, 10)
        if b is not None:
            cls = cv.cls[b.index]
            tcd, ca, cb = (prof[k][b.sj, b.sk][None] for k in ("t_cord", "cord_a", "cord_b"))
            rs2 = ((b.T - tcd) / ca) ** 2 + (b.X / cb) ** 2
            q = ((b.S - s_c) / half) ** 2 + rs2 / 1.1
            cord = cls == CORD
            ed = cord & (q <= 1)
            core = np.clip(2.0 * (1 - q), 0, 1)
            f = 0.65 + 0.35 * core
            t2v, stv = _mix(book, {"cord_edema": f, "cord": 1 - f})
            _assign(t2, b.index, ed, t2v)
            _assign(stir, b.index, ed, stv)
            lesions[b.index][ed] = LES["cord_edema"]
            if cl.hemorrhage_mm > 0:
                qh = ((b.S - s_c) / (0.5 * cl.hemorrhage_mm)) ** 2 + rs2 / 0.36
                hm = cord & (qh <= 1)
                t2v, stv = _mix(book, {"hemorrhage": 0.85, "cord_edema": 0.15})
                t2[b.index][hm] = t2v
                stir[b.index][hm] = stv
                lesions[b.index][hm] = LES["cord_hemorrhage"]

    if plan.prevertebral is not None:
        pe = plan.prevertebral
        s0, s1 = anat.s_mid[pe.level_from] - 6, anat.s_mid[pe.level_to] + 6
        b = cv.box(s0 - 8, s1 + 8, 5, 60, -20, 20)
        if b is not None:
            cls = cv.cls[b.index]
            bump = 1.0 / (1.0 + np.exp(-(b.S - s0) / 1.5)) / (1.0 + np.exp((b.S - s1) / 1.5))
            bump = np.broadcast_to(bump, cls.shape)
            # fluid in the retropharyngeal / retro-oesophageal space, in front of the longus colli
            ex = prof["pv_extra"][b.sj, b.sk][None]
            t_in = prof["t_pv0"][b.sj, b.sk][None] + 0.35 * (prof["pv"][b.sj, b.sk][None] - ex)
            tt = np.broadcast_to(b.T, cls.shape)
            reg = (cls == PREVERT) & (bump > 0.5) & (tt > t_in) & (tt < t_in + ex + 1.5)
            e = np.clip(bump * 1.2, 0, 1) * 0.85
            t2v, stv = _mix(book, {"fluid": e, "prevertebral": 1 - e})
            _assign(t2, b.index, reg, t2v)
            _assign(stir, b.index, reg, stv)
            lesions[b.index][reg] = LES["prevertebral_edema"]

    canal = painted.extra.get("canal")
    if canal is not None:
        b, mask = canal
        lesions[b.index][mask] = LES["canal_compression"]
