"""Acquisition physics of the realistic phantom modes: protocols, k-space sampling, coil, noise.

The classic phantom blurs a grid-resolution label image with a Gaussian and adds a polynomial bias field.
Here the object is painted on a grid **twice as fine in-plane** (sub-voxel geometry) and acquired as a
scanner does, one slice at a time:

1. **slice profile**: each slice integrates the fine sub-slices with a Gaussian-like excitation profile of
   FWHM ~1-1.2 slice thicknesses (cross-talk into the neighbours), signed (fat and water cancel in STIR);
2. **CSF pulsation ghosts**: the pulsatile CSF signal is replicated along phase-encode (weak, alternating
   sign), the classic artefact of cardiac-gated-less spine FSE;
3. **k-space**: the fine image's spectrum is cut to the reconstruction matrix (band limit), then to the
   *acquired* matrix (fewer phase / readout lines than reconstructed: zero-filled interpolation), with
   **partial Fourier** along phase-encode (one side of k-space missing, zero-filled: blur and ringing),
   an optional k-space apodization (the vendors' ringing filters). Sharp edges ring (**Gibbs**); boundaries
   become smooth partial-volume ramps of the true sub-voxel geometry (no label staircase);
4. **coil sensitivity** (applied to the object before sampling): root-sum-of-squares of a posterior (and weaker anterior) array of loop elements
   near the neck: smooth, positive, brightest next to the coil, normalized to mean 1 in the body;
5. **noise**: complex Gaussian noise on the acquired k-space samples (so it is filtered and zero-filled like
   the signal: band-limited, as on scanners), magnitude -> Rician, at an SNR drawn per subject (higher at 3 T).

Protocols are *vendor-like* (not any vendor's exact product protocol): TR / TE / TI / partial Fourier /
acquired matrix / phase-encode direction ranges typical of clinical sagittal cervical T2w TSE and STIR
[Delf99, Bley10, Kato12]. STIR uses the same signal physics as the classic phantom with its own TI, chosen
as the field's fat null (``sequences.fat_null_ti``: ~170 ms at 1.5 T, ~230 ms at 3 T) plus the protocol's
offset, so the null moves with field strength as on scanners.

Modes (:data:`REALISM`): ``classic`` (the original phantom, untouched), ``faithful`` (the ranges above) and
``randomized`` (domain randomization: wider TR/TE/SNR/k-space/coil/ghost ranges, per-subject field
strength and per-compartment relaxation jitter on both sequences alike, for training models that must
generalize to real scanners; the STIR target keeps its physics).

* [Delf99] Delfaut EM et al., RadioGraphics 1999;19:373-382 (STIR TI 150-170 ms at 1.5 T).
* [Bley10] Bley TA et al., "Fat and water magnetic resonance imaging", JMRI 2010;31:4-18 (fat suppression,
  STIR null vs field strength, TI ~ 200-250 ms at 3 T).
* [Kato12] see ``anatomy.VARIATION`` (sagittal cervical protocols: 3-4 mm slices, 0.6-1 mm pixels).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import fft as sfft

from .presets import Preset
from .sequences import Protocol, SignalBook, fat_null_ti, stir_signal, t1w_signal, t2w_signal
from .tissues import COMPARTMENTS, Relaxation, relaxation

REALISM = ("classic", "faithful", "randomized")
OVERSAMPLE = 2  #: in-plane painting oversampling of the realistic modes (fine grid = 2x the matrix)

#: Vendor-like protocol families: (low, high) ranges. TI offsets are relative to the field's fat null.
VENDOR_PROTOCOLS: dict[str, dict[str, tuple[float, float] | tuple[str, ...]]] = {
    "vendor_a": {  # TSE, phase S-I, 6/8 .. 8/8 partial Fourier, 80-100 % phase resolution
        "t2w_tr": (3000.0, 4200.0), "t2w_te": (90.0, 110.0), "stir_tr": (3500.0, 5000.0), "stir_te": (35.0, 55.0),
        "ti_offset": (-8.0, 4.0), "pf": (0.75, 1.0), "acq_pe": (0.8, 1.0), "acq_ro": (0.9, 1.0),
        "pe_axis": ("SI",), "apod": (0.0, 0.4),
    },
    "vendor_b": {  # FRFSE, longer T2w TE, short STIR TE, fractional NEX, coarser phase resolution
        "t2w_tr": (2500.0, 3600.0), "t2w_te": (100.0, 120.0), "stir_tr": (3000.0, 4200.0), "stir_te": (30.0, 45.0),
        "ti_offset": (-12.0, 2.0), "pf": (0.7, 1.0), "acq_pe": (0.7, 0.9), "acq_ro": (0.85, 1.0),
        "pe_axis": ("SI",), "apod": (0.2, 0.6),
    },
    "vendor_c": {  # TSE, phase S-I, longer STIR TE, little partial Fourier, strong ringing filter
        "t2w_tr": (3000.0, 4000.0), "t2w_te": (100.0, 120.0), "stir_tr": (4000.0, 5500.0), "stir_te": (50.0, 70.0),
        "ti_offset": (-6.0, 6.0), "pf": (0.85, 1.0), "acq_pe": (0.75, 0.95), "acq_ro": (0.9, 1.0),
        "pe_axis": ("SI",), "apod": (0.3, 0.7),
    },
}


@dataclass
class KSpace:
    """How one subject's slices are sampled (shared by T2w, STIR and T1w of one session)."""

    vendor: str
    pe_axis: str  #: phase-encode direction in the slice: "SI" or "AP"
    acq_pe: float  #: acquired / reconstructed matrix along phase-encode (zero-filled interpolation)
    acq_ro: float  #: same along readout
    partial_fourier: float  #: fraction of phase-encode k-space acquired (0.5 .. 1)
    apodization: float  #: 0 = none .. 1 = full Hann taper of the acquired window
    slice_fwhm: float  #: slice profile FWHM / slice thickness
    ghost_amp: float  #: CSF pulsation ghost amplitude (fraction of the CSF signal)
    ghost_shift: float  #: ghost spacing along phase-encode (fraction of the FOV)
    coil_elements: int  #: posterior loop elements along S-I
    coil_radius_mm: float
    coil_anterior: float  #: weight of the anterior elements (0 = posterior coil only)
    coil_exponent: float  #: 1 = raw sensitivity, < 1 = partly normalized (prescan normalize)
    phase_coef: tuple[float, float, float]  #: smooth background phase (rad): constant, A-P, S-I slopes

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (round(v, 4) if isinstance(v, float) else [round(x, 4) for x in v] if isinstance(v, tuple)
                    else v) for k, v in d.items()}


def _u(rng: np.random.Generator, lo_hi, widen: float = 1.0) -> float:
    lo, hi = lo_hi
    mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo) * widen
    return float(rng.uniform(mid - half, mid + half))


def sample_acquisition(rng: np.random.Generator, field_strength: float, preset: Preset, mode: str,
                       misregistration_mm: float, rng_misreg: np.random.Generator) -> tuple[Protocol, KSpace, str]:
    """One subject's protocol (signal parameters, SNR, gains) and k-space sampling, and the vendor drawn.

    ``randomized`` widens every range (x1.6 around its centre, more for SNR) and draws the field strength
    (1.5 or 3 T) per subject; ``faithful`` keeps ``field_strength``.
    """
    if mode not in REALISM[1:]:
        raise ValueError(f"realism: expected one of {REALISM[1:]}, got {mode!r}")
    rnd = mode == "randomized"
    w = 1.6 if rnd else 1.0
    vendor = str(rng.choice(sorted(VENDOR_PROTOCOLS)))
    vp = VENDOR_PROTOCOLS[vendor]
    fs = float(rng.choice([1.5, 3.0])) if rnd else float(field_strength)
    stir_tr = _u(rng, vp["stir_tr"], w)
    ti = fat_null_ti(fs, stir_tr) + _u(rng, vp["ti_offset"])  # the target's fat null is never randomized away
    t2w_te = _u(rng, vp["t2w_te"], 2.5 if rnd else 1.0)
    field_snr = 1.0 if fs == 1.5 else 1.5  # SNR grows roughly linearly with B0, less after protocol changes
    snr_w = (0.45, 1.8) if rnd else (1.0, 1.0)
    snr = lambda r: float(rng.uniform(r[0] * snr_w[0], r[1] * snr_w[1]) * field_snr)  # noqa: E731
    shift = (0.0, 0.0, 0.0)
    if misregistration_mm > 0:
        v = rng_misreg.normal(size=3)
        v = v / max(np.linalg.norm(v), 1e-9) * rng_misreg.uniform(0.5, 1.0) * misregistration_mm
        shift = tuple(float(a) for a in v)
    prot = Protocol(
        field_strength_T=fs, t2w_tr_ms=_u(rng, vp["t2w_tr"], w), t2w_te_ms=max(t2w_te, 50.0),
        stir_tr_ms=stir_tr, stir_te_ms=_u(rng, vp["stir_te"], w), stir_ti_ms=ti,
        snr_t2w=snr(preset.snr_t2w), snr_stir=snr(preset.snr_stir), bias=(0.0,) * 6,
        gain_t2w=float(rng.uniform(800.0, 1400.0)), gain_stir=float(rng.uniform(800.0, 1400.0)),
        misregistration_mm=shift,
        t1w_tr_ms=_u(rng, (450.0, 700.0), w), t1w_te_ms=_u(rng, (8.0, 15.0)),
        snr_t1w=snr(preset.snr_t1w), gain_t1w=float(rng.uniform(800.0, 1400.0)),
    )
    ks = KSpace(
        # sagittal spine is phase-encoded S-I in clinical practice (CSF and swallowing ghosts then run along the
        # cord, not across it); the randomized mode also draws A-P
        vendor=vendor, pe_axis=str(rng.choice(list(vp["pe_axis"]) + (["AP"] if rnd else []))),
        acq_pe=float(np.clip(_u(rng, vp["acq_pe"], w), 0.5, 1.0)),
        acq_ro=float(np.clip(_u(rng, vp["acq_ro"], w), 0.6, 1.0)),
        partial_fourier=float(np.clip(_u(rng, vp["pf"], w), 0.55, 1.0)),
        apodization=float(np.clip(_u(rng, vp["apod"], w), 0.0, 1.0)),
        slice_fwhm=_u(rng, (1.0, 1.2), w),
        ghost_amp=_u(rng, (0.01, 0.05), 2.0 if rnd else 1.0) if rng.random() < (0.8 if rnd else 0.6) else 0.0,
        ghost_shift=_u(rng, (0.08, 0.3)),
        # most clinical images are intensity-normalized (prescan normalize / CLEAR / PURE): the exponent keeps
        # 15-45 % of the raw element falloff
        coil_elements=int(rng.integers(3, 7)), coil_radius_mm=_u(rng, (60.0, 110.0), w),
        coil_anterior=_u(rng, (0.2, 0.8), w), coil_exponent=_u(rng, (0.15, 0.45), w),
        phase_coef=(float(rng.uniform(-np.pi, np.pi)), float(rng.normal(0, 0.3 * w)), float(rng.normal(0, 0.3 * w))),
    )
    return prot, ks, vendor


def jitter_relaxation(book: SignalBook, prot: Protocol, rng: np.random.Generator, amount: float = 0.1) -> dict:
    """Domain randomization of tissue contrast: every compartment's T1, T2 and PD scaled by ~N(1, amount).

    Applied to the T2w, STIR and T1w signals of ``book`` alike (a subject whose tissues differ), so the STIR
    target stays the physics of the same tissue. Fat's T1 is kept (its STIR null is the target's defining
    property); returns the factors (for the record).
    """
    f = prot.field_strength_T
    factors = {}
    for name in COMPARTMENTS:
        r = relaxation(name, f)
        a, b, c = (float(np.clip(rng.normal(1.0, s), 1 - 2.5 * s, 1 + 2.5 * s)) for s in (amount, amount, amount / 2))
        if name == "fat":
            a = 1.0
        rj = Relaxation(r.t1 * a, r.t2 * b, min(r.pd * c, 1.0))
        factors[name] = (round(a, 4), round(b, 4), round(c, 4))
        book.t2w[name] = float(t2w_signal(rj, prot.t2w_tr_ms, prot.t2w_te_ms))
        book.stir[name] = float(stir_signal(rj, prot.stir_tr_ms, prot.stir_ti_ms, prot.stir_te_ms))
        book.t1w[name] = float(t1w_signal(rj, prot.t1w_tr_ms, prot.t1w_te_ms))
    return factors


# --------------------------------------------------------------------------------------------- stages
def slice_profile(fine: np.ndarray, n_slices: int, supersample: int, fwhm: float) -> np.ndarray:
    """``(n * ss, nj, nk)`` sub-slices -> ``(n, nj, nk)`` slices weighted by a Gaussian slice profile.

    ``fwhm`` in slice thicknesses; sub-slices beyond the slab's edge are taken as the edge's (no signal is
    invented outside the painted slab). The weights of each slice sum to 1 (signal is conserved).
    """
    ni = fine.shape[0]
    xi = (np.arange(ni) + 0.5) / supersample  # fine sub-slice centres in slice units
    xc = np.arange(n_slices) + 0.5
    sig = fwhm / 2.3548
    W = np.exp(-0.5 * ((xi[None, :] - xc[:, None]) / sig) ** 2)
    W[W < 1e-3] = 0.0
    W /= W.sum(axis=1, keepdims=True)
    out = np.tensordot(W.astype(np.float32), fine, axes=(1, 0))
    return out.astype(np.float32, copy=False)


def kspace_window(shape: tuple[int, int], ks: KSpace) -> np.ndarray:
    """``(nj, nk)`` weights of the reconstructed k-space (centred): acquired window, partial Fourier, taper.

    Axis 0 of a slice runs A-P, axis 1 S-I; ``ks.pe_axis`` says which is phase-encode.
    """
    nj, nk = shape
    pe = 1 if ks.pe_axis == "SI" else 0
    frac = [ks.acq_ro, ks.acq_ro]
    frac[pe] = ks.acq_pe
    axes = []
    for ax, n in enumerate((nj, nk)):
        kk = (np.arange(n) - n // 2) / (n / 2.0)  # -1 .. 1
        a = frac[ax]
        win = (np.abs(kk) <= a).astype(np.float64)
        if ks.apodization > 0:  # Tukey taper over the outer `apodization` part of the acquired window
            edge = np.clip((np.abs(kk) / a - (1 - ks.apodization)) / max(ks.apodization, 1e-6), 0, 1)
            win *= 0.5 * (1 + np.cos(np.pi * edge))
        if ax == pe and ks.partial_fourier < 1.0:  # lines beyond (2 pf - 1) on the negative side are missing
            win *= kk >= -(2 * ks.partial_fourier - 1) * a - 1e-9
        axes.append(win)
    return (axes[0][:, None] * axes[1][None, :]).astype(np.float32)


def kspace_sample(slices: np.ndarray, out_shape: tuple[int, int], ks: KSpace, sigma: float = 0.0,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """Fine ``(n, oj, ok)`` real slices -> complex ``(n, nj, nk)`` images on the reconstruction matrix.

    The fine grid's sample ``(o * j, o * k)`` is the reconstructed voxel ``(j, k)``: cutting the centred
    spectrum to ``out_shape`` keeps that sampling. A smooth background phase (B0 / coil phase) is applied
    first, so partial-Fourier zero filling behaves as on real data. With ``sigma > 0`` complex Gaussian noise
    is added to the *acquired* k-space samples (then filtered and zero-filled like the signal, as on a
    scanner: the image noise is band-limited), scaled so that its image-domain SD is ``sigma`` per channel.
    """
    n, oj, ok = slices.shape
    nj, nk = out_shape
    ja = np.linspace(-1, 1, oj, dtype=np.float32)[:, None]
    ka = np.linspace(-1, 1, ok, dtype=np.float32)[None, :]
    c0, c1, c2 = ks.phase_coef
    phase = np.exp(1j * (c0 + c1 * ja + c2 * ka)).astype(np.complex64)
    spec = np.fft.fftshift(sfft.fft2(slices * phase[None], axes=(1, 2), workers=1), axes=(1, 2))
    j0, k0 = oj // 2 - nj // 2, ok // 2 - nk // 2
    scale = (nj * nk) / (oj * ok)
    win = kspace_window((nj, nk), ks)
    spec = spec[:, j0:j0 + nj, k0:k0 + nk]
    if sigma > 0:
        if rng is None:
            raise ValueError("kspace_sample: noise needs an rng")
        # image = ifft(spec) * scale; ifft of white k-space noise of SD a has SD a / sqrt(nj nk) per voxel;
        # the window keeps mean(win^2) of its power, compensated so the image SD is sigma
        a = sigma * np.sqrt(nj * nk / max(float(np.mean(win * win)), 1e-6)) / scale
        noise = rng.standard_normal((2, n, nj, nk), dtype=np.float32)
        spec = spec + (a * (noise[0] + 1j * noise[1])).astype(np.complex64)
    img = sfft.ifft2(np.fft.ifftshift(spec * win[None], axes=(1, 2)), axes=(1, 2), workers=1) * scale
    return img.astype(np.complex64)


def csf_ghosts(csf: np.ndarray, ks: KSpace, rng: np.random.Generator) -> np.ndarray:
    """Pulsation ghosts of the CSF signal ``(n, oj, ok)``: +-1 and +-2 replicas along phase-encode."""
    if ks.ghost_amp <= 0:
        return np.zeros_like(csf)
    ax = 2 if ks.pe_axis == "SI" else 1
    n_pe = csf.shape[ax]
    d = max(1, int(round(ks.ghost_shift * n_pe)))
    out = np.zeros_like(csf)
    for m, amp in ((1, 1.0), (2, 0.4)):
        for sgn in (-1, 1):
            out += (sgn * amp * ks.ghost_amp * float(rng.uniform(0.6, 1.0))) * np.roll(csf, sgn * m * d, axis=ax)
    return out


def coil_sensitivity(body: np.ndarray, spacing: tuple[float, float, float], ks: KSpace) -> np.ndarray:
    """Combined receive sensitivity on the ``(n, nj, nk)`` grid: smooth, positive, mean 1 inside ``body``.

    Loop elements (radius ``R``) sit 12 mm behind the body's posterior surface (median over slices, per S-I
    row), spread evenly along S-I, and (weighted by ``coil_anterior``) 20 mm in front of its anterior surface;
    each element's magnitude falls as ``(1 + (d / R)^2)^-1.5`` (on-axis field of a loop); root sum of squares.
    """
    n, nj, nk = body.shape
    dx, dy, dz = spacing
    col = body.any(axis=0)  # (nj, nk)
    j_idx = np.arange(nj)[:, None]
    has = col.any(axis=0)
    post = np.where(has, np.max(np.where(col, j_idx, -1), axis=0), nj - 1).astype(np.float64)
    ant = np.where(has, np.min(np.where(col, j_idx, nj), axis=0), 0).astype(np.float64)
    if has.any():
        kk = np.arange(nk)
        post = np.interp(kk, kk[has], post[has])
        ant = np.interp(kk, kk[has], ant[has])
    y = (np.arange(nj, dtype=np.float32) * dy)[None, :, None]
    z = (np.arange(nk, dtype=np.float32) * dz)[None, None, :]
    x = ((np.arange(n, dtype=np.float32) - (n - 1) / 2) * dx)[:, None, None]
    R = ks.coil_radius_mm
    zs = (np.arange(ks.coil_elements) + 0.5) / ks.coil_elements * nk
    total = np.zeros((n, nj, nk), np.float32)
    for weight, surf, off in ((1.0, post, 12.0), (ks.coil_anterior, ant, -20.0)):
        if weight <= 0:
            continue
        for zk in zs:
            ki = int(np.clip(zk, 0, nk - 1))
            yc, zc = surf[ki] * dy + off, zk * dz
            for xc in (-25.0, 25.0):
                d2 = ((y - np.float32(yc)) ** 2 + (z - np.float32(zc)) ** 2) + (x - np.float32(xc)) ** 2
                total += np.float32(weight * weight) * (1.0 + d2 * np.float32(1.0 / (R * R))) ** -3
    sens = np.sqrt(total) ** ks.coil_exponent
    inside = sens[body] if body.any() else sens
    return (sens / max(float(inside.mean()), 1e-12)).astype(np.float32)


def noisy_magnitude(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``|img + n1 + i n2|`` with ``n1, n2 ~ N(0, sigma^2)``: Rician magnitude of a complex image, float32."""
    re = img.real + sigma * rng.standard_normal(img.shape, dtype=np.float32)
    im = img.imag + sigma * rng.standard_normal(img.shape, dtype=np.float32)
    return np.sqrt(re * re + im * im, dtype=np.float32)


def acquire(fine: np.ndarray, csf_fine: np.ndarray, preset: Preset, ks: KSpace, coil: np.ndarray, sigma: float,
            rng: np.random.Generator) -> np.ndarray:
    """One sequence: fine signed signal ``(n * ss, o nj, o nk)`` -> noisy magnitude ``(n, nj, nk)`` (float32).

    ``csf_fine`` is the CSF part of ``fine`` (for its pulsation ghosts); ``coil`` from :func:`coil_sensitivity`
    on the reconstruction grid (smooth: expanded to the fine grid by repetition); ``sigma`` the image noise SD
    in signal units, added in k-space (Rician magnitude, band-limited like the signal); ``rng`` this
    sequence's noise stream.
    """
    n, ss = preset.n_slices, preset.supersample
    slices = slice_profile(fine, n, ss, ks.slice_fwhm)
    if ks.ghost_amp > 0:
        slices = slices + csf_ghosts(slice_profile(csf_fine, n, ss, ks.slice_fwhm), ks, rng)
    o = slices.shape[1] // coil.shape[1]
    coil_fine = np.repeat(np.repeat(coil, o, axis=1), o, axis=2)
    img = kspace_sample(slices * coil_fine, tuple(preset.matrix), ks, sigma, rng)
    return np.abs(img).astype(np.float32)
