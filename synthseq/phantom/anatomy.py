"""Cervical spine anatomy in 3D: a lordotic spine frame and smooth shapes painted into a class volume.

Coordinates (all millimetres):

* world: RAS+ (x to the right, y anterior, z superior), the frame of the NIfTI affine;
* spine frame: ``s`` runs along the spine from the dens tip (s = 0) downwards, ``t`` is the signed
  distance in front of the posterior vertebral body line (t > 0 anterior: bodies lie in 0 < t < depth,
  the canal behind t < 0), ``x`` is lateral from the subject's midline (which may be slightly off the
  scanner's midline and rolled).

The frame follows a lordotic centre line (the posterior body line, George's line) whose tangent angle is
``tilt + lordosis * cos(pi * (s - s_C2) / (s_T1 - s_C2))``: anterior convexity from C2 to T1, the start of
the thoracic kyphosis below. Each shape is an implicit function (superellipsoids, ellipses swept along s,
rotated plates) evaluated only inside its bounding box on a fine grid (thin sub-slices for partial volume).
Shapes are painted in anatomical order, later shapes win, into *render classes*: tissue compositions that
map to the public label codes (``codes.TISSUES``) through :data:`classes.CLASS_LABEL`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .classes import (  # noqa: F401  (re-exported: the render classes used to live here)
    AIR,
    AIRWAY,
    ANNULUS,
    BRAIN,
    CLASS_LABEL,
    CORD,
    CORTEX,
    CSF,
    EPIFAT,
    FLAVUM,
    IM_FAT,
    ISL,
    LONGLIG,
    MARROW,
    MUSCLE,
    N_CLASSES,
    NUCLEUS,
    POST_CORTEX,
    POST_MARROW,
    PREVERT,
    SKIN,
    SKULL_CORTEX,
    SKULL_MARROW,
    SUBCUT_FAT,
    class_composition,
)
from .injuries import InjuryPlan

# --------------------------------------------------------------------------------------- level geometry
LEVELS = ("C2", "C3", "C4", "C5", "C6", "C7", "T1", "T2", "T3")
DENS_H = 14.0  # dens tip to the top of the C2 body proper
_BODY_H = np.array([20.0, 13.5, 13.5, 13.8, 13.8, 14.5, 16.5, 18.0, 19.0])  # C2: body below the dens base
_DISC_H = np.array([4.5, 5.0, 5.5, 5.5, 5.5, 5.0, 4.5, 4.5])  # disc below each level
_BODY_D = np.array([15.0, 15.5, 16.0, 16.5, 17.0, 17.0, 18.0, 20.0, 22.0])  # antero-posterior depth
_BODY_W = np.array([17.0, 17.0, 18.0, 19.5, 21.0, 24.0, 26.0, 28.0, 29.0])  # transverse width
_SP_LEN = np.array([28.0, 19.0, 20.0, 21.0, 25.0, 34.0, 35.0, 33.0, 32.0])  # spinous process length
_SP_ANG = np.array([12.0, 26.0, 28.0, 28.0, 25.0, 20.0, 30.0, 42.0, 50.0])  # downward slope (deg)
_SP_THK = np.array([15.0, 9.5, 9.5, 10.0, 10.5, 11.5, 11.5, 11.0, 11.0])  # SI thickness at the base


@dataclass
class Anatomy:
    """Per-subject anatomy (mm, degrees). Arrays are per level (:data:`LEVELS`) or per disc below a level."""

    age: float
    scale: float  #: overall size (1 = average adult)
    lordosis_deg: float  #: amplitude of the tangent-angle swing (C2-C7 Cobb angle ~ 2x this)
    tilt_deg: float  #: head-neck inclination in the scanner
    roll_deg: float  #: midline plane rotated about the A-P axis
    x0: float  #: midline offset from the slab centre (mm, +right)
    fov_shift: tuple[float, float]  #: positioning jitter (A-P, S-I) mm
    canal_scale: float
    cord_scale: float
    ff_marrow: float  #: vertebral marrow fat fraction (rises with age)
    fat_post: float  #: posterior subcutaneous fat (mm)
    fat_ant: float
    neck_post: float  #: posterior neck surface behind the body line (mm, >0)
    neck_ant: float  #: anterior neck surface in front of the body line (mm)
    prevert_scale: float
    airway_scale: float
    body_h: np.ndarray = field(repr=False)
    disc_h: np.ndarray = field(repr=False)
    body_d: np.ndarray = field(repr=False)
    body_w: np.ndarray = field(repr=False)
    disc_degen: np.ndarray = field(repr=False)  #: 0 healthy .. 1 severely degenerated
    texture: np.ndarray = field(repr=False)  #: random phases of the marrow texture
    # degenerative changes per disc (mm); None in the classic phantom (:func:`sample_anatomy`)
    osteophyte_ant: np.ndarray | None = field(default=None, repr=False)  #: anterior endplate spurs
    osteophyte_post: np.ndarray | None = field(default=None, repr=False)  #: posterior spurs into the canal
    disc_bulge: np.ndarray | None = field(default=None, repr=False)  #: posterior annulus bulge
    endplate_sclerosis: np.ndarray | None = field(default=None, repr=False)  #: 0..1, dark band under endplates

    # derived: s of the top / bottom endplate of each body
    s_top: np.ndarray = field(init=False, repr=False)
    s_bot: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        s = DENS_H * self.scale
        tops, bots = [], []
        for v in range(len(LEVELS)):
            tops.append(s)
            s += self.body_h[v]
            bots.append(s)
            if v < len(self.disc_h):
                s += self.disc_h[v]
        self.s_top, self.s_bot = np.array(tops), np.array(bots)

    @property
    def s_mid(self) -> np.ndarray:
        return 0.5 * (self.s_top + self.s_bot)

    def disc_mid(self, d: int) -> float:
        return 0.5 * (self.s_bot[d] + self.s_top[d + 1])

    def summary(self) -> dict:
        return {
            "scale": round(self.scale, 4), "lordosis_deg": round(self.lordosis_deg, 2),
            "tilt_deg": round(self.tilt_deg, 2), "marrow_fat_fraction": round(self.ff_marrow, 4),
            "canal_scale": round(self.canal_scale, 4), "cord_scale": round(self.cord_scale, 4),
            "disc_degeneration": [round(float(d), 3) for d in self.disc_degen],
        } | ({} if self.osteophyte_ant is None else {
            "osteophyte_ant_mm": [round(float(d), 2) for d in self.osteophyte_ant],
            "osteophyte_post_mm": [round(float(d), 2) for d in self.osteophyte_post],
            "disc_bulge_mm": [round(float(d), 2) for d in self.disc_bulge],
            "cobb_c2_c7_deg": round(2.0 * self.lordosis_deg, 2), "fat_post_mm": round(self.fat_post, 2),
            "fov_shift_mm": [round(float(v), 2) for v in self.fov_shift],
        })


def sample_anatomy(rng: np.random.Generator, age: float, sex: str) -> Anatomy:
    """Draw one subject's anatomy; size, curvature, marrow fat (age), canal and cord vary between subjects."""
    scale = float(np.clip(rng.normal(1.04 if sex == "M" else 0.96, 0.04), 0.86, 1.14))
    n = len(LEVELS)
    jitter = lambda sd, k: 1.0 + rng.normal(0.0, sd, k)  # noqa: E731
    # Disc degeneration rises with age (most adults over 60 have some at C5-C6 / C6-C7).
    base = np.clip((age - 30.0) / 45.0, 0.0, 1.0)
    level_w = np.array([0.2, 0.5, 0.7, 1.0, 1.0, 0.5, 0.2, 0.2])
    degen = np.clip(base * level_w * rng.uniform(0.3, 1.3, 8) + rng.normal(0, 0.05, 8), 0.0, 1.0)
    # Marrow fat fraction: ~25% at 20 y rising ~0.55%/y (red -> yellow conversion), subject spread.
    ff = float(np.clip(0.22 + 0.0055 * (age - 20.0) + rng.normal(0.0, 0.06), 0.15, 0.75))
    disc_h = _DISC_H * scale * jitter(0.06, 8) * (1.0 - 0.45 * degen)
    return Anatomy(
        age=float(age), scale=scale,
        lordosis_deg=float(rng.uniform(3.0, 15.0)), tilt_deg=float(rng.normal(0.0, 3.0)),
        roll_deg=float(rng.normal(0.0, 1.2)), x0=float(rng.uniform(-1.5, 1.5)),
        fov_shift=(float(rng.normal(0, 5.0)), float(rng.normal(0, 4.0))),
        canal_scale=float(np.clip(rng.normal(1.0, 0.08), 0.78, 1.2)),
        cord_scale=float(np.clip(rng.normal(1.0, 0.06), 0.85, 1.15)),
        ff_marrow=ff,
        fat_post=float(rng.uniform(5.0, 16.0)), fat_ant=float(rng.uniform(3.0, 9.0)),
        neck_post=float(rng.uniform(70.0, 86.0) * scale), neck_ant=float(rng.uniform(40.0, 50.0) * scale),
        prevert_scale=float(rng.uniform(0.85, 1.2)), airway_scale=float(rng.uniform(0.8, 1.2)),
        body_h=_BODY_H * scale * jitter(0.04, n), disc_h=disc_h,
        body_d=_BODY_D * scale * jitter(0.04, n), body_w=_BODY_W * scale * jitter(0.04, n),
        disc_degen=degen, texture=rng.uniform(0, 2 * np.pi, (n, 6)),
    )


#: Ranges of :func:`sample_anatomy_varied` (healthy and degenerating adult necks, supine MRI) and their sources.
#: Citations are written from the authors' knowledge of the literature; check them before quoting elsewhere.
#:
#: * [Panjabi91] Panjabi MM et al., "Cervical human vertebrae: quantitative three-dimensional anatomy of the
#:   middle and lower regions", Spine 1991;16:861-869: C3-C7 body height ~14 mm, depth 15-18 mm, width 15-24 mm,
#:   between-subject SD ~1-1.5 mm (~8%).
#: * [Frobin02] Frobin W et al., "Sagittal plane segmental motion of the cervical spine ...", Clin Biomech
#:   2002;17:21-31: C2-C7 disc heights ~4-6 mm in healthy adults, SD ~0.6-0.8 mm (~13%).
#: * [Hardacker97] Hardacker JW et al., "Radiographic standing cervical segmental alignment in adult volunteers
#:   without neck symptoms", Spine 1997;22:1472-1480: C2-C7 lordosis ~15-17 deg, SD ~10 deg; supine MRI
#:   straightens the neck and about a third of asymptomatic adults show straight or kyphotic alignment
#:   ([Kato12]).
#: * [Matsumoto98] Matsumoto M et al., "MRI of cervical intervertebral discs in asymptomatic subjects", JBJS Br
#:   1998;80:19-24: disc degeneration in ~12-17 % of subjects in their twenties and ~86-89 % over 60, most at
#:   C5-C6 and C6-C7, with posterior protrusion (~8 % -> ~60 %) and disc space narrowing.
#: * [Kato12] Kato F et al., "Normal morphology, age-related changes and abnormal findings of the cervical
#:   spine. Part II: MRI of over 1,200 asymptomatic subjects", Eur Spine J 2012;21:1499-1507: canal A-P
#:   ~13-14 mm (SD ~1.3 mm) at C3-C7, cord A-P ~7-8 mm (SD ~0.7 mm), both falling slightly with age.
#: * [Ulbrich14] Ulbrich EJ et al., "Normative MR cervical spinal canal dimensions", Radiology
#:   2014;271:172-182: cord transverse diameter ~11-13 mm, canal and cord A-P SD ~10 %.
#: * [Gore86] Gore DR et al., "Roentgenographic findings of the cervical spine in asymptomatic people", Spine
#:   1986;11:521-524: anterior osteophytes rising from ~10 % (age 20-25) to ~90 % (60-65), typically 1-4 mm.
#: * [Wholey58] Wholey MH et al., "The lateral roentgenogram of the neck", Radiology 1958;71:350-356:
#:   prevertebral soft tissue <= 7 mm at C2 and <= 22 mm at C6 (the painted profile is 5 / 13 mm, scaled here).
#: * Posterior subcutaneous fat (3-25 mm) and neck depth follow body habitus; no single normative source: the
#:   range is representative of clinical cervical MRI (log-normal, median 9 mm).
#: * FOV / positioning: the technologist centres the FOV on C4-C5 by eye; +-10 mm S-I and +-6 mm A-P (SD),
#:   head roll 2 deg and flexion tilt 5 deg (SD) are representative.
#: * Domain randomization (``randomized`` mode) widens the tilt to 12 deg (SD): the real sagittal crop in
#:   ``../shared/data/real/`` (sct_prisma) holds its cord at 22 deg to the S-I axis, outside what 5 deg covers;
#:   models trained with the wider draw suppress fat better on the real full-neck and axial scans (README).
VARIATION = {
    "body_height_sd": 0.08, "body_depth_sd": 0.07, "body_width_sd": 0.07,  # [Panjabi91]
    "disc_height_sd": 0.13,  # [Frobin02]
    "cobb_mean_deg": 14.0, "cobb_sd_deg": 11.0, "cobb_range_deg": (-15.0, 42.0),  # [Hardacker97], [Kato12]
    "canal_sd": 0.10, "cord_sd": 0.09,  # [Kato12], [Ulbrich14]
    "fat_post_median_mm": 9.0, "fat_post_log_sd": 0.45, "fat_post_range_mm": (3.0, 25.0),
    "fov_shift_sd_mm": (6.0, 10.0), "roll_sd_deg": 2.0, "tilt_sd_deg": 5.0,
    "tilt_sd_deg_randomized": 12.0,
    "osteophyte_max_mm": 4.0,  # [Gore86]
    "bulge_max_mm": 3.0,  # [Matsumoto98]: protrusions of a few mm in asymptomatic subjects
}


def degeneration_probability(age: float) -> float:
    """Chance that a mid-cervical disc of an asymptomatic adult of ``age`` years is degenerated [Matsumoto98]."""
    return float(np.clip(0.15 + 0.75 / (1.0 + np.exp(-(age - 47.0) / 7.0)), 0.0, 0.95))


def sample_anatomy_varied(rng: np.random.Generator, age: float, sex: str, randomized: bool = False) -> Anatomy:
    """Draw an anatomy with between-patient variation from :data:`VARIATION` (ranges and sources there).

    ``randomized`` draws the head-neck tilt from the wider domain-randomization range (the same random numbers,
    scaled: every other variable is identical to the faithful draw of the same ``rng`` state).

    On top of :func:`sample_anatomy`'s variables: wider body and disc heights, lordosis from kyphotic to
    hyperlordotic, age-driven degeneration (per-disc: height loss, posterior bulge, anterior / posterior
    osteophytes, endplate sclerosis), canal and cord size, posterior fat thickness, FOV position and head roll.
    """
    v = VARIATION
    base = sample_anatomy(rng, age, sex)
    n, nd = len(LEVELS), len(_DISC_H)
    k = base.scale
    p = degeneration_probability(age)
    level_w = np.array([0.3, 0.5, 0.7, 1.0, 1.0, 0.6, 0.3, 0.2])  # C5-C6, C6-C7 most often [Matsumoto98]
    affected = rng.random(nd) < p * level_w
    degen = np.where(affected, np.clip(rng.beta(2.0, 2.5, nd) * (0.6 + age / 150.0), 0.05, 1.0),
                     np.clip(rng.normal(0.02, 0.03, nd), 0.0, 0.1))
    disc_h = _DISC_H * k * np.clip(1.0 + rng.normal(0.0, v["disc_height_sd"], nd), 0.6, 1.4) * (1.0 - 0.5 * degen)
    osteo = v["osteophyte_max_mm"]
    ost_a = np.where(degen > 0.25, rng.uniform(0.0, 1.0, nd) * osteo * degen, 0.0)
    ost_p = np.where(degen > 0.4, rng.uniform(0.0, 0.6, nd) * osteo * degen, 0.0)
    bulge = np.where(degen > 0.2, rng.uniform(0.3, 1.0, nd) * v["bulge_max_mm"] * degen, 0.0)
    scl = np.where(degen > 0.45, rng.uniform(0.3, 1.0, nd) * degen, 0.0)
    cobb = float(np.clip(rng.normal(v["cobb_mean_deg"], v["cobb_sd_deg"]), *v["cobb_range_deg"]))
    fat_post = float(np.clip(v["fat_post_median_mm"] * np.exp(rng.normal(0.0, v["fat_post_log_sd"])),
                             *v["fat_post_range_mm"]))
    jit = lambda sd, m: np.clip(1.0 + rng.normal(0.0, sd, m), 1.0 - 3 * sd, 1.0 + 3 * sd)  # noqa: E731
    age_narrow = 1.0 - 0.001 * max(age - 40.0, 0.0)  # canal and cord slightly smaller with age [Kato12]
    base.lordosis_deg = 0.5 * cobb
    base.tilt_deg = float(rng.normal(0.0, v["tilt_sd_deg_randomized" if randomized else "tilt_sd_deg"]))
    base.roll_deg = float(rng.normal(0.0, v["roll_sd_deg"]))
    base.x0 = float(rng.uniform(-3.0, 3.0))
    base.fov_shift = (float(rng.normal(0, v["fov_shift_sd_mm"][0])), float(rng.normal(0, v["fov_shift_sd_mm"][1])))
    base.canal_scale = float(np.clip(rng.normal(1.0, v["canal_sd"]), 0.7, 1.3) * age_narrow)
    base.cord_scale = float(np.clip(rng.normal(1.0, v["cord_sd"]), 0.75, 1.25) * age_narrow)
    base.fat_post = fat_post
    base.fat_ant = float(np.clip(0.45 * fat_post * np.exp(rng.normal(0.0, 0.25)), 2.0, 14.0))
    base.neck_post = float(base.neck_post + 0.6 * (fat_post - 10.0))
    base.prevert_scale = float(rng.uniform(0.75, 1.3))
    base.body_h = _BODY_H * k * jit(v["body_height_sd"], n)
    base.body_d = _BODY_D * k * jit(v["body_depth_sd"], n)
    base.body_w = _BODY_W * k * jit(v["body_width_sd"], n)
    base.disc_h, base.disc_degen = disc_h, degen
    base.osteophyte_ant, base.osteophyte_post, base.disc_bulge, base.endplate_sclerosis = ost_a, ost_p, bulge, scl
    base.__post_init__()  # endplate positions follow the new heights
    return base


# ---------------------------------------------------------------------------------------------- frame
class SpineFrame:
    """The lordotic centre line (posterior vertebral body line) and the world -> (s, t) map."""

    def __init__(self, anat: Anatomy, plan: InjuryPlan, origin: tuple[float, float]):
        self.ds = 0.5
        s = np.arange(-200.0, 320.0, self.ds)
        sa, sb = anat.s_mid[0], anat.s_mid[6]  # C2 and T1 centres
        arg = np.clip(np.pi * (s - sa) / (sb - sa), 0.0, 1.5 * np.pi)  # straight above C2
        theta = np.radians(anat.tilt_deg) + np.radians(anat.lordosis_deg) * np.cos(arg)
        if plan.fracture is not None:  # anterior wedge -> local kyphosis, spread over ~1 level
            sf = anat.s_mid[plan.fracture.level]
            theta += np.radians(plan.fracture.kyphosis_deg) / (1.0 + np.exp(-(s - sf) / 5.0))
        y = np.cumsum(np.sin(theta)) * self.ds
        z = -np.cumsum(np.cos(theta)) * self.ds
        i0 = int(np.searchsorted(s, 0.0))
        self.s, self.theta = s, theta
        self.y = y - y[i0] + origin[0]
        self.z = z - z[i0] + origin[1]

    def point(self, s: float) -> tuple[float, float]:
        """World (y, z) of the centre line at ``s``."""
        return float(np.interp(s, self.s, self.y)), float(np.interp(s, self.s, self.z))

    def map(self, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(S, T)`` of every in-plane point: ``y (nj,)``, ``z (nk,)`` world mm -> two ``(nj, nk)`` maps.

        First-order projection on the centre line at the same height: exact on the line, smooth and
        monotonic within the neck for the curvatures sampled here.
        """
        sk = np.interp(-z, -self.z, self.s)  # self.z decreases along s
        yc = np.interp(sk, self.s, self.y)
        th = np.interp(sk, self.s, self.theta)
        dy = y[:, None] - yc[None, :]
        S = (sk[None, :] + dy * np.sin(th)[None, :]).astype(np.float32)
        T = (dy * np.cos(th)[None, :]).astype(np.float32)
        return S, T


# --------------------------------------------------------------------------------------------- canvas
class Box:
    """A bounding box of the canvas with its local coordinates: S, T ``(1, nj, nk)``, X ``(ni, nj, nk)``."""

    def __init__(self, canvas: Canvas, si: slice, sj: slice, sk: slice):
        self.canvas, self.si, self.sj, self.sk = canvas, si, sj, sk
        self.S = canvas.S[sj, sk][None]
        self.T = canvas.T[sj, sk][None]
        self.X = canvas.x[si][:, None, None] - canvas.xmid[sj, sk][None]

    @property
    def index(self) -> tuple[slice, slice, slice]:
        return self.si, self.sj, self.sk

    def paint(self, mask: np.ndarray, value: int, only: tuple[int, ...] | None = None) -> None:
        """Set the class of the voxels in ``mask`` (optionally only where the class is in ``only``)."""
        view = self.canvas.cls[self.index]
        mask = np.broadcast_to(mask, view.shape)
        if only is not None:
            mask = mask & np.isin(view, only)
        view[mask] = value


class Canvas:
    """Fine sampling grid (sub-slices x in-plane) in the spine frame, and its class volume ``cls``.

    Arrays are ``(ni, nj, nk)``: ni fine sub-slices left -> right, nj anterior -> posterior,
    nk superior -> inferior.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, frame: SpineFrame, anat: Anatomy):
        self.x, self.y, self.z, self.frame = x.astype(np.float32), y, z, frame
        self.S, self.T = frame.map(y, z)
        roll = np.tan(np.radians(anat.roll_deg))
        self.xmid = (anat.x0 + roll * (self.S - 80.0)).astype(np.float32)
        self.cls = np.zeros((x.size, y.size, z.size), np.uint8)
        self._step = 4
        self._cS, self._cT = self.S[::4, ::4], self.T[::4, ::4]
        self._margin = 1.5 * 4 * max(abs(y[1] - y[0]), abs(z[1] - z[0]))

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.cls.shape

    def box(self, s0: float, s1: float, t0: float, t1: float, x0: float = -1e9, x1: float = 1e9) -> Box | None:
        """Bounding box of the region ``s0<=s<=s1, t0<=t<=t1, x0<=x<=x1`` (None if outside the grid)."""
        m = self._margin
        hit = (self._cS >= s0 - m) & (self._cS <= s1 + m) & (self._cT >= t0 - m) & (self._cT <= t1 + m)
        jj = np.flatnonzero(hit.any(1))
        if jj.size == 0:
            return None
        kk = np.flatnonzero(hit.any(0))
        st = self._step
        sj = slice(max(jj[0] * st - st, 0), min(jj[-1] * st + st + 1, self.cls.shape[1]))
        sk = slice(max(kk[0] * st - st, 0), min(kk[-1] * st + st + 1, self.cls.shape[2]))
        xm = self.xmid[sj, sk]
        i0 = int(np.searchsorted(self.x, x0 + xm.min() - 0.5))
        i1 = int(np.searchsorted(self.x, x1 + xm.max() + 0.5, side="right"))
        if i1 <= i0:
            return None
        return Box(self, slice(i0, i1), sj, sk)

    def full(self) -> Box:
        return Box(self, slice(None), slice(None), slice(None))


# ------------------------------------------------------------------------------------------ shape helpers
def _p4(a: np.ndarray) -> np.ndarray:
    a = a * a
    return a * a


def _p6(a: np.ndarray) -> np.ndarray:
    a2 = a * a
    return a2 * a2 * a2


def _a3(a: np.ndarray) -> np.ndarray:
    return np.abs(a) * a * a


def _smooth(s: np.ndarray, pts: list[tuple[float, float]]) -> np.ndarray:
    """Piecewise-linear profile through ``pts`` (s, value) evaluated at ``s``."""
    xs, ys = zip(*pts)
    return np.interp(s, xs, ys)


def _bone(box: Box, outer: np.ndarray, inner: np.ndarray, cortex: int, marrow: int) -> None:
    box.paint(outer, cortex)
    box.paint(inner, marrow)


@dataclass
class Vertebra:
    """Geometry of one painted vertebral body (for marrow rendering and marrow lesions)."""

    level: int
    s_c: float  #: centre along s (mm)
    hh: float  #: half height
    ha: float  #: half depth (A-P)
    hw: float  #: half width
    top_drop: float  #: anterior superior endplate depression (fracture), mm
    box: Box | None


def body_norm(u, w, x, hh, ha, hw, top_drop):
    """Superellipsoid norm of a vertebral body (<= 1 inside).

    ``u`` along s from the body centre, ``w`` along t from the body centre, ``x`` lateral. Endplates are
    slightly concave (the body is 6% thinner in the middle); ``top_drop`` lowers the superior endplate
    anteriorly (wedge compression fracture).
    """
    if top_drop > 0:
        frac = np.clip((w + ha) / (2 * ha), 0.0, 1.0) ** 1.3
        top = -hh + top_drop * frac
        un = (u - 0.5 * (top + hh)) / (0.5 * (hh - top))
    else:
        un = u / hh
    wn, xn = w / ha, x / hw
    cav = 1.0 - 0.06 * np.clip(1.0 - wn * wn, 0, 1) * np.clip(1.0 - xn * xn, 0, 1)
    un = un / cav
    return _p6(un) + _p4(wn) + _a3(xn)


# ------------------------------------------------------------------------------------------------ paint
@dataclass
class Painted:
    """What painting produced besides the class volume."""

    vertebrae: list[Vertebra]
    profiles: dict[str, np.ndarray]  #: 2D (nj, nk) maps: canal centre, cord centre/radii ...
    discs: list[tuple[int, Box | None, float]]  #: (disc index, box, s centre)
    extra: dict = field(default_factory=dict)  #: "canal": (box, mask) of a canal-compressing protrusion



@dataclass
class Geometry:
    """Profiles shared by the painting stages: 2D ``(nj, nk)`` maps in the spine frame and 1D functions of s."""

    k: float  #: the subject's scale
    canal_ap: np.ndarray  #: canal A-P diameter (mm)
    canal_w: np.ndarray  #: canal transverse width (mm)
    t_cc: np.ndarray  #: canal centre (t, mm)
    t_cp: np.ndarray  #: posterior canal wall (t, mm)
    front: np.ndarray  #: anterior surface of the vertebral column (t, mm)
    canal_scale: float
    skull: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  #: outer table ellipse (s_c, t_c, r_s, r_t)
    post_surface: np.ndarray | None = None  #: posterior skin surface (t, mm)
    skin_t: float = 1.8
    tips: list[tuple[float, float, float, float, float, float]] = field(default_factory=list)
    #: spinous processes: (s_base, t_base, angle, length, s_tip, t_tip) per level

    def canal_ap_f(self, s):
        return _smooth(s, [(-10, 24), (2, 21), (12, 19), (30, 16.5), (45, 14.8), (120, 14.2), (145, 13.8),
                           (300, 13.5)]) * self.canal_scale

    def canal_w_f(self, s):
        return _smooth(s, [(-10, 30), (10, 27), (40, 24), (100, 26), (140, 22), (300, 18)]) * self.canal_scale

    def t_cp_f(self, s):
        return -1.2 - self.canal_ap_f(s)


def geometry(cv: Canvas, an: Anatomy) -> Geometry:
    """Profiles along s (canal size and position, the anterior column surface), evaluated on the S map."""
    k, S = an.scale, cv.S
    s_mid = an.s_mid
    g = Geometry(k, None, None, None, None, None, an.canal_scale)  # type: ignore[arg-type]
    g.canal_ap, g.canal_w = g.canal_ap_f(S), g.canal_w_f(S)
    g.t_cc = -1.2 - 0.5 * g.canal_ap  # canal centre
    g.t_cp = -1.2 - g.canal_ap  # posterior canal wall
    g.front = np.interp(S, np.r_[-50, 8 * k, s_mid[0] + 4, s_mid, 400],
                        np.r_[22 * k, 22 * k, an.body_d[0], an.body_d, an.body_d[-1]])
    return g


def paint_anatomy(cv: Canvas, an: Anatomy, plan: InjuryPlan) -> Painted:
    """Paint the whole neck into ``cv.cls`` (in place) and return the geometry needed later.

    Stages run in anatomical order, later ones overwrite earlier ones (see each stage's docstring).
    """
    g = geometry(cv, an)
    paint_outer(cv, an, g)
    g.tips = spinous_tips(an, plan, g)
    paint_posterior_neck(cv, an, g)
    paint_skull_base(cv, an, g)
    prevert = paint_prevertebral(cv, an, plan, g)
    paint_canal_walls(cv, an, g)
    paint_posterior_elements(cv, an, g)
    paint_atlas_dens(cv, an, g)
    discs, verts = paint_discs_and_bodies(cv, an, plan)
    cord, extra = paint_thecal_sac(cv, an, plan, g)
    if an.osteophyte_ant is not None:
        paint_degeneration(cv, an, g)
    profiles = {**cord, "t_cc": g.t_cc, "t_cp": g.t_cp, "canal_ap": g.canal_ap, "front": g.front, **prevert}
    profiles["tips"] = np.array([[tp[0], tp[1], tp[4], tp[5]] for tp in g.tips])
    return Painted(verts, profiles, discs, extra)



def paint_outer(cv: Canvas, an: Anatomy, g: Geometry) -> None:
    """Outer contour of head and neck: skin, subcutaneous fat, muscle everywhere inside."""
    k, S, T = g.k, cv.S, cv.T
    sc, tc, rs, rt = -60.0 * k, -22.0 * k, 60.0 * k, 68.0 * k  # outer table of the skull (ellipse in s, t)
    s_line = np.arange(-200.0, 320.0, 1.0)
    head = np.where(np.abs(s_line - sc) < rs + 5,
                    tc - (rt + 5) * np.sqrt(np.clip(1 - ((s_line - sc) / (rs + 5)) ** 2, 0, 1)), 1e3)
    npst = an.neck_post
    neck = _smooth(s_line, [(-20, -npst - 14), (15, -npst - 4), (60, -npst), (105, -npst - 2),
                            (140, -npst - 8), (190, -npst - 16), (320, -npst - 24)])
    post = _movavg(np.minimum(head, neck), 9)
    na = an.neck_ant
    ant = _movavg(_smooth(s_line, [(-200, 140), (10, 140), (28 * k, 122 * k), (42 * k, 98 * k),
                                   (52 * k, 74 * k), (62 * k, na + 8), (75 * k, na + 2), (115 * k, na),
                                   (150 * k, na + 6), (185 * k, na + 18), (320, na + 40)]), 7)
    P = np.interp(S, s_line, post).astype(np.float32)
    A = np.interp(S, s_line, ant).astype(np.float32)
    lat = np.sqrt(np.clip(1.0 - ((cv.x - float(np.mean(cv.xmid))) / (62.0 * k)) ** 2, 0.05, 1))[:, None, None]
    depth = np.minimum(A[None] * lat - T[None], T[None] - P[None] * lat)
    fat = np.where(T > 0, an.fat_ant, np.where(S < 0, 3.5, an.fat_post * (1 + 0.3 * np.clip((S - 90) / 60, 0, 1))))
    skin_t = 1.8
    cls = cv.cls
    cls[depth > 0] = SKIN
    cls[depth > skin_t] = SUBCUT_FAT
    cls[depth > (skin_t + fat)[None]] = MUSCLE
    del depth
    g.skull, g.post_surface, g.skin_t = (sc, tc, rs, rt), P, skin_t


def spinous_tips(an: Anatomy, plan: InjuryPlan, g: Geometry) -> list[tuple[float, float, float, float, float, float]]:
    """Base, angle, length and tip of each spinous process (a PLC injury fans the upper one upwards)."""
    k, s_mid, nlev, t_cp_f = g.k, an.s_mid, len(LEVELS), g.t_cp_f
    tips = []
    for v in range(nlev):
        alpha = np.radians(_SP_ANG[v] - (plan.plc.widen_deg if plan.plc is not None and plan.plc.level == v else 0))
        sb = s_mid[v] + 0.25 * an.body_h[v]
        tb = float(t_cp_f(sb)) - 0.5
        L = _SP_LEN[v] * k
        tips.append((sb, tb, alpha, L, sb + L * np.sin(alpha), tb - L * np.cos(alpha)))
    return tips


def paint_posterior_neck(cv: Canvas, an: Anatomy, g: Geometry) -> None:
    """Posterior neck: intermuscular fat planes, the nuchal ligament and septum, interspinous ligaments."""
    k, S = g.k, cv.S
    tips, t_cp, P, skin_t = g.tips, g.t_cp, g.post_surface, g.skin_t
    tc, rt = g.skull[1], g.skull[3]
    tip_s = np.array([tp[4] for tp in tips])
    tip_t = np.array([tp[5] for tp in tips])
    inion = (-30.0 * k, tc - rt - 4.0)
    muscle_out = P + skin_t + np.where(S < 0, 3.5, an.fat_post)  # muscle surface behind
    deep = t_cp - 10.0
    bx = cv.box(-10, 200, -200, -15)
    if bx is not None:
        Sb, Tb, Xb = bx.S, bx.T, bx.X
        mo, dp = muscle_out[bx.sj, bx.sk][None], deep[bx.sj, bx.sk][None]
        for frac, amp, ph in ((0.36, 1.5, an.texture[0, 0]), (0.66, 2.0, an.texture[0, 1])):
            tf = dp + frac * (mo - dp) + amp * np.sin(Sb / 17.0 + ph) + 0.012 * Xb * Xb
            m = (np.abs(Tb - tf) < 0.75) & (np.abs(Xb) > 2.0) & (Sb > -5) & (Sb < 200)
            bx.paint(m, IM_FAT, only=(MUSCLE,))
        # nuchal ligament: band from the inion to the C7 tip, midline septum down to the spinous processes
        nl_s = np.r_[inion[0], tip_s[5:]]
        nl_t = np.r_[inion[1], tip_t[5:]]
        tl = np.interp(Sb, nl_s, nl_t) if nl_s.size > 1 else Tb * 0
        band = (np.abs(Tb - tl) < 1.8) & (np.abs(Xb) < 2.5) & (Sb > inion[0] + 4) & (Sb < tip_s[-1])
        bx.paint(band, ISL)
        tip_line = np.interp(Sb, tip_s, tip_t)
        septum = (np.abs(Xb) < 1.0) & (Tb > tl) & (Tb < t_cp[bx.sj, bx.sk][None] - 1) & (Sb > inion[0] + 10) \
            & (Sb < tip_s[5])
        bx.paint(septum, ISL, only=(MUSCLE, IM_FAT))
        isl = (np.abs(Xb) < 2.8) & (Tb > tip_line) & (Tb < t_cp[bx.sj, bx.sk][None] - 1) & (Sb > tips[0][0]) \
            & (Sb < tip_s[-1])
        bx.paint(isl, ISL, only=(MUSCLE, IM_FAT))


def paint_skull_base(cv: Canvas, an: Anatomy, g: Geometry) -> None:
    """Skull base, posterior fossa (brain, CSF spaces, tentorium), brainstem, clivus, sphenoid, condyles."""
    k, S, T, cls, t_cp_f = g.k, cv.S, cv.T, cv.cls, g.t_cp_f
    sc, tc, rs, rt = g.skull
    s_b, t_b = -6.0 * k, 3.0
    ca, sa_ = np.cos(np.radians(25)), np.sin(np.radians(25))
    a_cl = (S - s_b) * (-ca) + (T - t_b) * sa_  # along the clivus, upwards
    b_cl = (S - s_b) * sa_ + (T - t_b) * ca  # across it, > 0 anterior
    e_out = ((S - sc) / rs) ** 2 + ((T - tc) / rt) ** 2
    e_in = ((S - sc) / (rs - 7)) ** 2 + ((T - tc) / (rt - 7)) ** 2
    e_dip_o = ((S - sc) / (rs - 2)) ** 2 + ((T - tc) / (rt - 2)) ** 2
    e_dip_i = ((S - sc) / (rs - 5)) ** 2 + ((T - tc) / (rt - 5)) ** 2
    t_op = float(t_cp_f(-4.0 * k)) - 1.5
    fossa = (e_in <= 1) & (b_cl < 0) & (S < -1.0)
    e_rim = ((S - sc) / (rs - 9)) ** 2 + ((T - tc) / (rt - 9)) ** 2
    cls[:, fossa] = BRAIN  # cerebellum and, above the tentorium, the occipital lobes
    # CSF: a thin subarachnoid rim, the cisterna magna above the foramen magnum, the prepontine cistern
    magna = ((S - (-9 * k)) / (9 * k)) ** 2 + ((T - (-28 * k)) / (11 * k)) ** 2 <= 1
    csf = fossa & ((e_rim > 1) | magna | (b_cl > -3.5) | (S > -6 * k))
    cls[:, csf] = CSF
    tent = fossa & (np.abs((S - sc) * 0.55 + (T - tc) * 0.2 + 8 * k) < 0.9) & (T < tc + 10)  # tentorium
    cls[:, tent] = SKULL_CORTEX
    th = 11 + 13 * np.clip((a_cl - 14) / 20, 0, 1)  # medulla -> pons
    bc = -3.5 - 0.5 * th
    bx = cv.box(-90, 5, -60, 20, -20, 20)
    if bx is not None:
        wx = (7.5 + 7.5 * np.clip((a_cl - 14) / 20, 0, 1))[bx.sj, bx.sk][None]
        bn = ((b_cl[bx.sj, bx.sk][None] - bc[bx.sj, bx.sk][None]) / (0.5 * th[bx.sj, bx.sk][None])) ** 2 \
            + (bx.X / wx) ** 2
        stem = (bn <= 1) & (a_cl[bx.sj, bx.sk][None] > -3) & (a_cl[bx.sj, bx.sk][None] < 75)
        bx.paint(stem, BRAIN, only=(CSF, BRAIN, SKULL_CORTEX))
        a4, b4 = a_cl[bx.sj, bx.sk][None], b_cl[bx.sj, bx.sk][None]
        v4 = ((a4 - 24) / 8) ** 2 + ((b4 - (-3.5 - 25 - 3)) / 3.5) ** 2 + (bx.X / 6) ** 2 <= 1
        bx.paint(v4, CSF, only=(BRAIN,))
    shell = (e_out <= 1) & (e_in > 1) & (T < t_op) & (S < 8)
    diploe = shell & (e_dip_o <= 1) & (e_dip_i > 1)
    cls[:, shell] = SKULL_CORTEX
    cls[:, diploe] = SKULL_MARROW
    bx = cv.box(-60, 5, -5, 40, -20, 20)
    if bx is not None:
        an_ = (a_cl[bx.sj, bx.sk][None] - 21) / 21
        bn_ = (b_cl[bx.sj, bx.sk][None] - 5.5) / 5.5
        outer = _p4(an_) + bn_ * bn_ + (bx.X / 13) ** 2 <= 1
        inner = _p4(an_ * 21 / 19) + (bn_ * 5.5 / 3.8) ** 2 + (bx.X / 11) ** 2 <= 1
        _bone(bx, outer, inner, SKULL_CORTEX, SKULL_MARROW)
        sph = ((a_cl[bx.sj, bx.sk][None] - 40) / 13) ** 2 + ((b_cl[bx.sj, bx.sk][None] - 22) / 10) ** 2 \
            + (bx.X / 16) ** 2 <= 1
        bx.paint(sph, AIRWAY)
    for side in (-1, 1):  # occipital condyles
        bx = cv.box(-10 * k, 4 * k, -12, 8, side * 17 - 7, side * 17 + 7)
        if bx is not None:
            q = ((bx.S - (-3 * k)) / 5.5) ** 2 + ((bx.T + 2) / 8) ** 2 + ((bx.X - side * 17) / 6) ** 2
            _bone(bx, q <= 1, q <= 0.55, SKULL_CORTEX, SKULL_MARROW)


def paint_prevertebral(cv: Canvas, an: Anatomy, plan: InjuryPlan, g: Geometry) -> dict[str, np.ndarray]:
    """Prevertebral soft tissue (thickened by prevertebral oedema) and the airway; returns their profiles."""
    k, S, front, s_mid = g.k, cv.S, g.front, an.s_mid
    pv = _smooth(S, [(-30, 6), (15, 5), (45, 4), (70, 5), (95, 9), (112, 13), (135, 14), (300, 14)]) \
        * an.prevert_scale
    pv_extra = np.zeros_like(pv)
    if plan.prevertebral is not None:
        pe = plan.prevertebral
        s0, s1 = s_mid[pe.level_from] - 6, s_mid[pe.level_to] + 6
        pv_extra = pe.extra_mm * _bump(S, s0, s1, 6.0)
        pv = pv + pv_extra
    t_pv0 = front + 1.2
    t_aw0 = t_pv0 + pv
    aw_ap = _smooth(S, [(-24, 0), (-12, 11), (20, 13), (55, 14), (85, 12), (95, 8), (105, 13), (140, 15),
                        (300, 15)]) * an.airway_scale
    aw_w = _smooth(S, [(-20, 12), (20, 16), (80, 15), (110, 9), (300, 9)])
    bx = cv.box(-40, 300, 5, 90, -30, 30)
    if bx is not None:
        Tb, Xb, Sb = bx.T, bx.X, bx.S
        t0 = t_pv0[bx.sj, bx.sk][None]
        t1 = t_aw0[bx.sj, bx.sk][None]
        pvm = (Tb >= t0) & (Tb < t1 + 0.5) & (np.abs(Xb) < 16 * k) & (Sb > -20)
        bx.paint(pvm, PREVERT, only=(MUSCLE, SUBCUT_FAT, IM_FAT))
        ap = aw_ap[bx.sj, bx.sk][None]
        tcw = t1 + 0.5 * ap
        awm = ((Tb - tcw) / np.maximum(0.5 * ap, 0.1)) ** 2 + (Xb / aw_w[bx.sj, bx.sk][None]) ** 2 <= 1
        bx.paint(awm & (ap > 0.5), AIRWAY, only=(MUSCLE, PREVERT, SUBCUT_FAT))
    return {"t_pv0": t_pv0, "t_aw0": t_aw0, "pv": pv, "pv_extra": pv_extra}


def paint_canal_walls(cv: Canvas, an: Anatomy, g: Geometry) -> None:
    """Canal: foraminal fat, ligamentum flavum, laminae, epidural fat, posterior / anterior longitudinal ligaments."""
    k, nlev = g.k, len(LEVELS)
    canal_w, canal_ap, t_cc, front = g.canal_w, g.canal_ap, g.t_cc, g.front
    bx = cv.box(-4, 300, -45, 2, -40, 40)
    assert bx is not None
    Sb, Tb, Xb = bx.S, bx.T, bx.X
    cw2 = 0.5 * canal_w[bx.sj, bx.sk][None]
    ap2 = 0.5 * canal_ap[bx.sj, bx.sk][None]
    tcc = t_cc[bx.sj, bx.sk][None]
    dt = (Tb - tcc) / ap2
    ring = np.abs(dt) ** 2.5 + (Xb / cw2) ** 2  # canal superellipse norm (flat anterior wall)
    posterior = Tb < tcc
    forfat = (np.abs(Xb) > cw2 - 1.5) & (np.abs(Xb) < cw2 + 4.5) & (Tb > -1.5 * ap2) & (Tb < 1.0) & (Sb > 12 * k)
    bx.paint(forfat, EPIFAT, only=(MUSCLE, IM_FAT))
    fl = posterior & (ring <= (1 + 2.8 / ap2) ** 2) & (Sb > 12 * k)
    bx.paint(fl, FLAVUM)
    for v in range(nlev):
        s0, s1 = an.s_top[v] + 0.5, an.s_bot[v] + 4.5 * k
        if v == 0:
            s0 = an.s_top[0] + 2
        mid, half = 0.5 * (s0 + s1), 0.5 * (s1 - s0)
        su = ((Sb - mid) / half) ** 4
        lam_o = posterior & (ring <= (1 + 4.8 / ap2) ** 2) & (su + 0.0 <= 1)
        lam_i = posterior & (ring > (1 + 1.3 / ap2) ** 2) & (ring <= (1 + 3.5 / ap2) ** 2) \
            & (((Sb - mid) / (half - 1.2)) ** 4 <= 1)
        bx.paint(lam_o, POST_CORTEX)
        bx.paint(lam_i, POST_MARROW)
    canal = (ring <= 1) & (Sb > -3)
    bx.paint(canal, EPIFAT)
    pll = (Tb > -1.2) & (Tb < 0.3) & (np.abs(Xb) < 7) & (Sb > 10 * k)
    bx.paint(pll, LONGLIG)
    del ring, dt
    bx2 = cv.box(5, 300, 10, 40, -12, 12)
    if bx2 is not None:
        fr = front[bx2.sj, bx2.sk][None]
        all_ = (bx2.T > fr - 0.5) & (bx2.T < fr + 1.2) & (np.abs(bx2.X) < 9) & (bx2.S > 14 * k)
        bx2.paint(all_, LONGLIG)


def paint_posterior_elements(cv: Canvas, an: Anatomy, g: Geometry) -> None:
    """Spinous processes, articular pillars and pedicles."""
    k, nlev, tips, s_mid = g.k, len(LEVELS), g.tips, an.s_mid
    canal_ap_f, canal_w_f = g.canal_ap_f, g.canal_w_f
    for v in range(nlev):
        sb, tb, alpha, L, se, te = tips[v]
        h0 = 0.5 * _SP_THK[v] * k
        b = cv.box(min(sb, se) - h0 - 3, max(sb, se) + h0 + 3, te - h0 - 3, tb + 3, -9, 9)
        if b is None:
            continue
        d_s, d_t = np.sin(alpha), -np.cos(alpha)
        a = (b.S - sb) * d_s + (b.T - tb) * d_t
        bb = (b.S - sb) * np.cos(alpha) + (b.T - tb) * np.sin(alpha)
        fa = np.clip(a / L, 0, 1)
        h = h0 * (1 - 0.4 * fa) + (1.5 if v in (0, 5) else 0.5) * fa ** 4  # bulbous tips at C2, C7
        w = 4.5 * (1 - 0.35 * fa)
        an_ = (a - 0.5 * L) / (0.5 * L)
        outer = _p4(an_) + (bb / h) ** 2 + (b.X / w) ** 2 <= 1
        inner = _p4((a - 0.5 * L) / (0.5 * L - 1.5)) + (bb / (h - 1.3)) ** 2 + (b.X / (w - 1.3)) ** 2 <= 1
        _bone(b, outer, inner, POST_CORTEX, POST_MARROW)
    for v in range(nlev):
        s0 = s_mid[v] + 1.5
        hs = 0.46 * (an.body_h[v] + (an.disc_h[min(v, 7)]))
        cb, sbeta = np.cos(np.radians(40)), np.sin(np.radians(40))
        for side in (-1, 1):
            apc = float(canal_ap_f(s0))
            cwc = float(canal_w_f(s0))
            t0 = -1.2 - 0.45 * apc
            xc = side * (0.5 * cwc + 4.5)
            b = cv.box(s0 - hs - 6, s0 + hs + 6, t0 - 12, t0 + 12, xc - 6, xc + 6)
            if b is None:
                continue
            u = ((b.S - s0) * cb + (b.T - t0) * sbeta) / hs
            ww = (-(b.S - s0) * sbeta + (b.T - t0) * cb) / 6.0
            xx = (b.X - xc) / 4.8
            q = _p4(u) + _p4(ww) + xx * xx
            qi = _p4(u * hs / (hs - 1.3)) + _p4(ww * 6 / 4.7) + (xx * 4.8 / 3.5) ** 2
            _bone(b, q <= 1, qi <= 1, POST_CORTEX, POST_MARROW)
            # pedicle
            sp = an.s_top[v] + 0.35 * an.body_h[v]
            xp = side * (0.5 * cwc + 1.0)
            b = cv.box(sp - 6, sp + 6, -9, 3, xp - 4, xp + 4)
            if b is not None:
                q = _p4((b.S - sp) / (0.3 * an.body_h[v])) + _p4((b.T + 3.0) / 4.5) + ((b.X - xp) / 2.8) ** 2
                _bone(b, q <= 1, q <= 0.35, POST_CORTEX, POST_MARROW)


def paint_atlas_dens(cv: Canvas, an: Anatomy, g: Geometry) -> None:
    """The C1 ring (anterior arch, posterior arch, lateral masses) and the dens."""
    k, t_cp_f = g.k, g.t_cp_f
    s1c = 8.5 * k
    t_cp1 = float(t_cp_f(s1c))
    b = cv.box(0, 20 * k, 8, 30, -14, 14)
    if b is not None:
        q = ((b.S - s1c) / (5.8 * k)) ** 2 + ((b.T + 0.035 * b.X ** 2 - 17.5 * k) / 4.2) ** 2 + (b.X / 12) ** 2
        _bone(b, q <= 1, q <= 0.45, CORTEX, MARROW)
    b = cv.box(0, 20 * k, t_cp1 - 12, t_cp1 + 6, -18, 18)
    if b is not None:
        q = ((b.S - s1c) / (4.6 * k)) ** 2 + ((b.T - 0.03 * b.X ** 2 - (t_cp1 - 4.2)) / 4.0) ** 2 + (b.X / 17) ** 2
        _bone(b, q <= 1, q <= 0.4, POST_CORTEX, POST_MARROW)
    for side in (-1, 1):
        b = cv.box(0, 20 * k, -12, 14, side * 18 - 8, side * 18 + 8)
        if b is not None:
            q = ((b.S - 9.5 * k) / (7.0 * k)) ** 2 + ((b.T - 1.0) / 9.5) ** 2 + ((b.X - side * 18.5) / 6.5) ** 2
            _bone(b, q <= 1, q <= 0.6, CORTEX, MARROW)
    hs = 0.5 * (DENS_H * k + 4)
    b = cv.box(-1, DENS_H * k + 6, 0, 14, -7, 7)
    if b is not None:
        q = ((b.S - hs) / (hs + 0.5)) ** 2 + ((b.T - 6.3 * k) / (5.0 * k)) ** 2 + (b.X / (5.0 * k)) ** 2
        qi = ((b.S - hs) / (hs - 0.8)) ** 2 + ((b.T - 6.3 * k) / (4.0 * k)) ** 2 + (b.X / (4.0 * k)) ** 2
        _bone(b, q <= 1, qi <= 1, CORTEX, MARROW)


def paint_discs_and_bodies(cv: Canvas, an: Anatomy, plan: InjuryPlan) -> tuple[list, list[Vertebra]]:
    """Discs and vertebral bodies: annulus first, bodies overwrite it, nucleus last."""
    nlev, s_mid = len(LEVELS), an.s_mid
    discs: list[tuple[int, Box | None, float]] = []
    for d in range(nlev - 1):
        s0, s1 = s_mid[d], s_mid[d + 1]
        dep = 0.5 * (an.body_d[d] + an.body_d[d + 1])
        hw = 0.5 * 0.5 * (an.body_w[d] + an.body_w[d + 1])
        b = cv.box(s0, s1, -2, dep + 2, -hw - 2, hw + 2)
        if b is None:
            discs.append((d, None, an.disc_mid(d)))
            continue
        q = _p4((b.T - 0.5 * dep) / (0.5 * dep + 0.7)) + _a3(b.X / (hw + 0.4))
        b.paint((q <= 1) & (b.S >= s0) & (b.S <= s1), ANNULUS)
        discs.append((d, b, an.disc_mid(d)))
    verts: list[Vertebra] = []
    for v in range(nlev):
        hh, ha, hw = 0.5 * an.body_h[v], 0.5 * an.body_d[v], 0.5 * an.body_w[v]
        drop = plan.fracture.height_loss_mm if plan.fracture is not None and plan.fracture.level == v else 0.0
        t_lo = -1.0
        if plan.canal is not None and plan.canal.kind == "bone" and plan.canal.level + 1 == v:
            t_lo = -3.0 - plan.canal.depth_mm  # the retropulsed fragment is rendered with its vertebra
        b = cv.box(s_mid[v] - hh - 1, s_mid[v] + hh + 1, t_lo, 2 * ha + 1, -hw - 1, hw + 1)
        if b is None:
            verts.append(Vertebra(v, s_mid[v], hh, ha, hw, drop, None))
            continue
        u, w = b.S - s_mid[v], b.T - ha
        c = 1.1
        outer = body_norm(u, w, b.X, hh, ha, hw, drop) <= 1
        inner = body_norm(u, w, b.X, hh - c, ha - c, hw - c, drop) <= 1
        _bone(b, outer, inner, CORTEX, MARROW)
        verts.append(Vertebra(v, s_mid[v], hh, ha, hw, drop, b))
    for d, b, sm in discs:
        if b is None:
            continue
        gap = an.disc_h[d]
        dep = 0.5 * (an.body_d[d] + an.body_d[d + 1])
        hw = 0.25 * (an.body_w[d] + an.body_w[d + 1])
        q = ((b.S - sm) / (0.36 * gap + 0.5)) ** 2 + ((b.T - 0.44 * dep) / (0.28 * dep)) ** 2 + (b.X / (0.5 * hw)) ** 2
        b.paint(q <= 1, NUCLEUS, only=(ANNULUS,))
    return discs, verts


def paint_thecal_sac(cv: Canvas, an: Anatomy, plan: InjuryPlan, g: Geometry) -> tuple[dict, dict]:
    """Thecal sac, cord (deformed by canal compression) and the compressing protrusion; cord profiles, extras."""
    k, S = g.k, cv.S
    t_cc, canal_ap, canal_w = g.t_cc, g.canal_ap, g.canal_w
    cord_a = _smooth(S, [(-10, 4.6), (8, 4.2), (40, 4.0), (70, 3.85), (95, 3.65), (118, 3.4), (140, 3.15),
                         (175, 3.0), (300, 2.9)]) * an.cord_scale
    cord_b = _smooth(S, [(-10, 6.3), (10, 5.6), (40, 5.9), (70, 6.5), (92, 6.8), (115, 6.1), (140, 5.0),
                         (170, 4.3), (300, 4.1)]) * an.cord_scale
    epi_post = _smooth(S, [(-10, 0.3), (110, 0.6), (135, 2.0), (170, 3.0), (300, 3.5)])
    t_cord = t_cc + 0.4 + 3.5 * np.clip((20 * k - S) / (18 * k), 0, 1)
    if plan.canal is not None:
        cc = plan.canal
        s_c = an.disc_mid(cc.level) if cc.kind == "disc" else an.s_top[cc.level + 1] + 3.0
        gs = np.exp(-0.5 * ((S - s_c) / (0.8 * cc.half_height_mm)) ** 2)
        cord_front = t_cord + cord_a
        tip = -1.2 - cc.depth_mm
        push = np.clip(cord_front - tip + 0.4, 0, None) * gs
        push = np.minimum(push, 0.75 * cord_a)
        t_cord = t_cord - 0.5 * push
        cord_a = cord_a - 0.5 * push
        cord_b = cord_b * (1 + 0.25 * push / np.maximum(cord_a, 1.0))
    bx = cv.box(-6, 300, -40, 2, -20, 20)
    if bx is not None:
        Tb, Xb, Sb = bx.T, bx.X, bx.S
        ap2 = 0.5 * canal_ap[bx.sj, bx.sk][None]
        ep = epi_post[bx.sj, bx.sk][None]
        tsc = t_cc[bx.sj, bx.sk][None] + 0.5 * ep
        sac = (((Tb - tsc) / (ap2 - 0.3 - 0.5 * ep)) ** 2 + (Xb / (0.5 * canal_w[bx.sj, bx.sk][None] - 1.6)) ** 2
               <= 1) & (Sb > -4)
        bx.paint(sac, CSF)
        cd = ((Tb - t_cord[bx.sj, bx.sk][None]) / cord_a[bx.sj, bx.sk][None]) ** 2 \
            + (Xb / cord_b[bx.sj, bx.sk][None]) ** 2 <= 1
        bx.paint(cd & (Sb > -2.5), CORD)
        bx.paint(cd & (Sb <= -2.5), BRAIN, only=(CSF, BRAIN))
    painted_extra = {}
    if plan.canal is not None:
        cc = plan.canal
        s_c = an.disc_mid(cc.level) if cc.kind == "disc" else an.s_top[cc.level + 1] + 3.0
        hd = 0.5 * cc.depth_mm + 1.5
        b = cv.box(s_c - cc.half_height_mm, s_c + cc.half_height_mm, -1.2 - cc.depth_mm, 2.0,
                   -cc.half_width_mm, cc.half_width_mm)
        if b is not None:
            q = ((b.S - s_c) / cc.half_height_mm) ** 2 + ((b.T - (1.8 - hd)) / hd) ** 2 \
                + (b.X / cc.half_width_mm) ** 2
            prot = (q <= 1) & (b.T < -0.3)
            if cc.kind == "disc":
                b.paint(prot, ANNULUS)
            else:
                _bone(b, prot, prot & (q <= 0.5), CORTEX, MARROW)
            painted_extra["canal"] = (b, np.broadcast_to(prot, b.canvas.cls[b.index].shape).copy())
    return {"t_cord": t_cord, "cord_a": cord_a, "cord_b": cord_b}, painted_extra



def paint_degeneration(cv: Canvas, an: Anatomy, g: Geometry) -> None:
    """Degenerative changes at each disc: anterior osteophytes, posterior spurs and annulus bulge into the canal.

    Painted last: spurs are bone (cortex shell, marrow core) growing from the endplate corners into the soft
    tissue in front and the epidural space / thecal sac behind; the bulge is annulus displacing epidural fat
    and CSF (the cord is not deformed: asymptomatic protrusions of a few mm leave it free).
    """
    k = g.k
    soft_front = (PREVERT, LONGLIG, MUSCLE, SUBCUT_FAT, IM_FAT)
    canal = (EPIFAT, CSF, LONGLIG)
    for d in range(len(an.disc_h)):
        dep = 0.5 * (an.body_d[d] + an.body_d[d + 1])
        hw = 0.25 * (an.body_w[d] + an.body_w[d + 1])
        sm = an.disc_mid(d)
        oa, op, bu = float(an.osteophyte_ant[d]), float(an.osteophyte_post[d]), float(an.disc_bulge[d])
        for s_e in (an.s_bot[d], an.s_top[d + 1]):  # the two endplates facing the disc
            if oa > 0.6:
                b = cv.box(s_e - oa - 2, s_e + oa + 2, dep - 3, dep + oa + 3, -hw, hw)
                if b is not None:
                    q = ((b.S - s_e) / (0.55 * oa + 0.6)) ** 2 + ((b.T - (dep + 0.35 * oa)) / (0.6 * oa + 0.5)) ** 2 \
                        + (b.X / (0.7 * hw)) ** 2
                    b.paint(q <= 1, CORTEX, only=soft_front)
                    b.paint(q <= 0.35, MARROW, only=(CORTEX,))
            if op > 0.6:
                b = cv.box(s_e - op - 2, s_e + op + 2, -op - 3, 2, -hw, hw)
                if b is not None:
                    q = ((b.S - s_e) / (0.5 * op + 0.6)) ** 2 + ((b.T + 0.3 * op) / (0.6 * op + 0.4)) ** 2 \
                        + (b.X / (0.55 * hw)) ** 2
                    b.paint(q <= 1, CORTEX, only=canal)
        if bu > 0.4:
            hh = 0.5 * an.disc_h[d] + 0.8 * k
            b = cv.box(sm - hh - 2, sm + hh + 2, -bu - 3, 2, -hw, hw)
            if b is not None:
                q = ((b.S - sm) / hh) ** 2 + ((b.T + 0.5 * bu - 0.3) / (0.5 * bu + 0.5)) ** 2 + (b.X / (0.6 * hw)) ** 2
                b.paint(q <= 1, ANNULUS, only=canal)


def _movavg(v: np.ndarray, n: int) -> np.ndarray:
    k = np.ones(2 * n + 1) / (2 * n + 1)
    return np.convolve(np.pad(v, n, mode="edge"), k, mode="valid")


def _bump(s: np.ndarray, s0: float, s1: float, soft: float) -> np.ndarray:
    """Smooth plateau: ~1 for s0 < s < s1, falling off over ``soft`` mm."""
    return 1.0 / (1.0 + np.exp(-(s - s0) / (0.25 * soft))) / (1.0 + np.exp((s - s1) / (0.25 * soft)))
