"""Pulse-sequence signal equations and the acquisition chain (partial volume, bias field, Rician noise).

Signal equations (per compartment; a voxel sums its compartments *with sign*, then takes the magnitude):

* T2-weighted fast spin echo: ``S = PD (1 - exp(-TR/T1)) exp(-TE/T2)`` (fat bright through its long
  apparent FSE T2, see ``tissues.py``);
* T1-weighted fast spin echo: the same equation with a short TR and TE (TR 450-700 ms, TE 8-15 ms), so the
  T1 term dominates: fat (T1 250 ms at 1.5 T) bright, CSF (T1 ~4.2 s) dark, marrow oedema (water replacing
  fat, longer T1) darker than normal marrow;
* STIR (inversion recovery FSE): ``S = PD (1 - 2 exp(-TI/T1) + exp(-TR/T1)) exp(-TE/T2)``, signed, with
  TI chosen to null fat at the field: ``TI = T1_fat ln(2 / (1 + exp(-TR/T1_fat)))`` (~173 ms at 1.5 T,
  ~236 ms at 3 T), plus a small per-subject deviation (imperfect null, as on real scanners).

Acquisition: each slice is the mean of ``supersample`` thin sub-slices (through-plane partial volume of
the ~3 mm slice; complex averaging before the magnitude, so fat and water cancel in STIR like on a scanner),
an in-plane point-spread function (Gaussian, ~0.45 voxel),
a smooth multiplicative receive-coil bias field (posterior neck coil: brighter posteriorly), an optional
rigid STIR-vs-T2w misregistration, and Rician noise ``|S + n1 + i n2|`` at a per-subject SNR.
The T1w is acquired on the T2w's grid (same anatomy, same bias field, no misregistration) with its own
protocol and noise draws from a separate random stream, so adding it changed no T2w or STIR voxel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from types import SimpleNamespace

import numpy as np
from scipy import ndimage

from .presets import Preset
from .tissues import COMPARTMENTS, Relaxation, relaxation


def t2w_signal(r: Relaxation, tr: float, te: float) -> float:
    """Fast spin-echo T2w signal of one compartment (arbitrary units, PD = 1 water ~ 0..1)."""
    return r.pd * (1.0 - np.exp(-tr / r.t1)) * np.exp(-te / r.t2)


def t1w_signal(r: Relaxation, tr: float, te: float) -> float:
    """Fast spin-echo T1w signal: :func:`t2w_signal` at a short TR/TE (the T1 saturation term dominates)."""
    return t2w_signal(r, tr, te)


def stir_signal(r: Relaxation, tr: float, ti: float, te: float) -> float:
    """Signed STIR signal of one compartment (negative below the null, e.g. all water at TI ~ 170 ms)."""
    return r.pd * (1.0 - 2.0 * np.exp(-ti / r.t1) + np.exp(-tr / r.t1)) * np.exp(-te / r.t2)


def fat_null_ti(field_strength: float, tr: float) -> float:
    """Inversion time (ms) that nulls fat: ``T1_fat * ln(2 / (1 + exp(-TR / T1_fat)))``."""
    t1 = relaxation("fat", field_strength).t1
    return float(t1 * np.log(2.0 / (1.0 + np.exp(-tr / t1))))


@dataclass
class Protocol:
    """One subject's acquisition parameters (ms, dimensionless SNR, bias-field coefficients)."""

    field_strength_T: float
    t2w_tr_ms: float
    t2w_te_ms: float
    stir_tr_ms: float
    stir_te_ms: float
    stir_ti_ms: float
    snr_t2w: float  #: CSF signal / noise sigma on T2w
    snr_stir: float  #: CSF signal / noise sigma on STIR
    bias: tuple[float, ...]  #: log-bias polynomial coefficients (ap, si, ap^2, si^2, ap*si, lr)
    gain_t2w: float  #: scanner-unit scale of T2w
    gain_stir: float
    misregistration_mm: tuple[float, float, float]  #: STIR shift (R, A, S) in world mm
    t1w_tr_ms: float = 550.0  #: T1w FSE repetition time (ms)
    t1w_te_ms: float = 11.0  #: T1w FSE echo time (ms)
    snr_t1w: float = 30.0  #: muscle signal / noise sigma on T1w (CSF is dark there)
    gain_t1w: float = 1000.0  #: scanner-unit scale of T1w (muscle maps to ``gain_t1w / 4``)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (round(v, 4) if isinstance(v, float) else [round(x, 4) for x in v] if isinstance(v, tuple)
                    else v) for k, v in d.items()}


#: The STIR's own acquisition parameters: nothing in the T2w or T1w carries them (see ``take_stir_protocol``).
STIR_FIELDS = ("stir_tr_ms", "stir_te_ms", "stir_ti_ms", "snr_stir", "gain_stir")


def take_stir_protocol(prot: Protocol, other: Protocol) -> Protocol:
    """Copy the STIR's own fields (:data:`STIR_FIELDS`) of ``other`` into ``prot``, in place; returns ``prot``."""
    for name in STIR_FIELDS:
        setattr(prot, name, getattr(other, name))
    return prot


def sample_protocol(rng: np.random.Generator, field_strength: float, preset: Preset,
                    misregistration_mm: float, rng_misreg: np.random.Generator) -> Protocol:
    """Per-subject protocol variation within clinical ranges (TR 2500-4000, TE 85-115 ms for T2w)."""
    stir_tr = float(rng.uniform(3000.0, 4500.0))
    ti = fat_null_ti(field_strength, stir_tr) + float(rng.uniform(-6.0, 6.0))
    bias = (float(rng.uniform(0.10, 0.35)), float(rng.normal(0, 0.10)), float(rng.normal(-0.05, 0.08)),
            float(rng.normal(-0.05, 0.08)), float(rng.normal(0, 0.06)), float(rng.normal(0, 0.05)))
    shift = (0.0, 0.0, 0.0)
    if misregistration_mm > 0:
        v = rng_misreg.normal(size=3)
        v = v / max(np.linalg.norm(v), 1e-9) * rng_misreg.uniform(0.5, 1.0) * misregistration_mm
        shift = tuple(float(a) for a in v)
    return Protocol(
        field_strength_T=float(field_strength),
        t2w_tr_ms=float(rng.uniform(2500.0, 4000.0)), t2w_te_ms=float(rng.uniform(85.0, 115.0)),
        stir_tr_ms=stir_tr, stir_te_ms=float(rng.uniform(35.0, 60.0)), stir_ti_ms=ti,
        snr_t2w=float(rng.uniform(*preset.snr_t2w)), snr_stir=float(rng.uniform(*preset.snr_stir)),
        bias=bias, gain_t2w=float(rng.uniform(800.0, 1400.0)), gain_stir=float(rng.uniform(800.0, 1400.0)),
        misregistration_mm=shift,
    )


def sample_t1w_protocol(rng: np.random.Generator, prot: Protocol, preset: Preset) -> Protocol:
    """Fill the T1w fields of ``prot`` (TR 450-700 ms, TE 8-15 ms, SNR from the preset) from their own stream."""
    prot.t1w_tr_ms = float(rng.uniform(450.0, 700.0))
    prot.t1w_te_ms = float(rng.uniform(8.0, 15.0))
    prot.snr_t1w = float(rng.uniform(*preset.snr_t1w))
    prot.gain_t1w = float(rng.uniform(800.0, 1400.0))
    return prot


class SignalBook:
    """Signals of every compartment for one protocol: ``t2w[name]``, signed ``stir[name]``, ``t1w[name]`` (floats)."""

    def __init__(self, prot: Protocol):
        f = prot.field_strength_T
        self.t2w: dict[str, float] = {}
        self.stir: dict[str, float] = {}
        self.t1w: dict[str, float] = {}
        for name in COMPARTMENTS:
            r = relaxation(name, f)
            self.t2w[name] = float(t2w_signal(r, prot.t2w_tr_ms, prot.t2w_te_ms))
            self.stir[name] = float(stir_signal(r, prot.stir_tr_ms, prot.stir_ti_ms, prot.stir_te_ms))
            self.t1w[name] = float(t1w_signal(r, prot.t1w_tr_ms, prot.t1w_te_ms))

    def t1w_view(self) -> SimpleNamespace:
        """A book whose ``t2w`` and ``stir`` both hold the T1w signals.

        The lesion renderers (``injuries.py``) mix compartments linearly into a ``(t2w, stir)`` pair; handing
        them this view with one array for both renders the T1w with exactly the same anatomy and injuries.
        """
        return SimpleNamespace(t2w=self.t1w, stir=self.t1w)

    def lut(self, compositions: list[dict[str, float]]) -> tuple[np.ndarray, np.ndarray]:
        """Per-class T2w and signed STIR signal tables from compartment fractions."""
        t2 = np.array([sum(w * self.t2w[c] for c, w in comp.items()) for comp in compositions], np.float32)
        st = np.array([sum(w * self.stir[c] for c, w in comp.items()) for comp in compositions], np.float32)
        return t2, st

    def lut_t1w(self, compositions: list[dict[str, float]]) -> np.ndarray:
        """Per-class T1w signal table from compartment fractions."""
        return np.array([sum(w * self.t1w[c] for c, w in comp.items()) for comp in compositions], np.float32)


def slab_average(fine: np.ndarray, supersample: int) -> np.ndarray:
    """``(n * ss, nj, nk)`` sub-slices -> ``(n, nj, nk)`` slices by averaging (through-plane partial volume)."""
    n = fine.shape[0] // supersample
    return fine.reshape(n, supersample, *fine.shape[1:]).mean(axis=1, dtype=np.float32)


def bias_field(shape: tuple[int, int, int], coef: tuple[float, ...]) -> np.ndarray:
    """Smooth multiplicative field on a ``(n_slices, nj, nk)`` grid: ``exp(polynomial)`` in [-1, 1] coords.

    ``nj`` runs anterior -> posterior, so a positive first coefficient brightens the posterior neck
    (the posterior surface coil).
    """
    n, nj, nk = shape
    a = np.linspace(-1, 1, nj, dtype=np.float32)[None, :, None]
    s = np.linspace(-1, 1, nk, dtype=np.float32)[None, None, :]
    x = np.linspace(-1, 1, n, dtype=np.float32)[:, None, None] if n > 1 else np.zeros((1, 1, 1), np.float32)
    c = coef
    return np.exp(c[0] * a + c[1] * s + c[2] * a * a + c[3] * s * s + c[4] * a * s + c[5] * x).astype(np.float32)


def inplane_psf(vol: np.ndarray, sigma_vox: float = 0.45) -> np.ndarray:
    """Blur each ``(n, nj, nk)`` slice in-plane: the finite k-space sampling's point-spread function."""
    return ndimage.gaussian_filter(vol, (0.0, sigma_vox, sigma_vox), mode="nearest", truncate=3.0)


def shift_volume(vol: np.ndarray, shift_vox: tuple[float, float, float]) -> np.ndarray:
    """Rigid sub-voxel translation (linear interpolation, edge values repeated)."""
    if not any(shift_vox):
        return vol
    return ndimage.shift(vol, shift_vox, order=1, mode="nearest").astype(np.float32)


def rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise of std ``sigma`` per channel."""
    n1 = rng.standard_normal(signal.shape, dtype=np.float32)
    n2 = rng.standard_normal(signal.shape, dtype=np.float32)
    re = signal + sigma * n1
    n2 *= sigma
    return np.sqrt(re * re + n2 * n2, dtype=np.float32)
