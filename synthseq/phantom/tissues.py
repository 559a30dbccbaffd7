"""Relaxation times and proton densities of the phantom's tissue compartments at 1.5 T and 3 T.

Every voxel is a mixture of *compartments* (pure tissues with one T1, T2 and PD); its signal is the
fraction-weighted sum of the compartments' signals (``sequences.py``), so fat/water mixtures such as
bone marrow are summed with sign before the magnitude is taken, as an MR scanner does.

Values are in-vivo literature values (ms; PD relative to pure water = 1). Where a tissue has no direct
measurement at both fields, the comment says how the value was chosen. The citations were written from
the authors' knowledge of the literature and should be checked before quoting them elsewhere:

* [Stanisz05] Stanisz GJ et al., "T1, T2 relaxation and magnetization transfer in tissue at 3T",
  Magn Reson Med 2005;54:507-512 (1.5 T and 3 T: muscle, white/grey matter, spinal cord, blood).
* [deBaz04] de Bazelaire CMJ et al., "MR imaging relaxation times of abdominal and pelvic tissues
  measured in vivo at 3.0 T", Radiology 2004;230:652-659 (fat, bone marrow at 1.5 T and 3 T).
* [Gold04] Gold GE et al., "Musculoskeletal MRI at 3.0 T: relaxation times and image contrast",
  AJR 2004;183:343-351 (cartilage, fat, muscle, synovial fluid at 1.5 T and 3 T).
* [Rooney07] Rooney WD et al., "Magnetic field and tissue dependencies of human brain longitudinal
  1H2O relaxation in vivo", Magn Reson Med 2007;57:308-318 (CSF T1 ~4.3 s, nearly field independent).
* [Smith08] Smith SA et al., "Measurement of T1 and T2 in the cervical spinal cord at 3 tesla",
  Magn Reson Med 2008 (cord white matter T1 ~880 ms, T2 ~73 ms).
* [Henk92] Henkelman RM et al., "Anomalous J-modulation effects ...", Magn Reson Med 1992 (fat looks
  bright on fast spin echo because the echo train suppresses J-coupling: its apparent T2 lengthens).
* [Delf99] Delfaut EM et al., "Fat suppression in MR imaging: techniques and pitfalls",
  RadioGraphics 1999;19:373-382 (STIR TI ~150-170 ms at 1.5 T nulls fat).
* [Bradley93] Bradley WG, "MR appearance of hemorrhage in the brain", Radiology 1993;189:15-26
  (acute deoxyhaemoglobin: T2 shortening, stronger at higher field).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Relaxation:
    """One compartment at one field: T1 and T2 in ms, proton density relative to water (0..1)."""

    t1: float
    t2: float
    pd: float


FIELDS = (1.5, 3.0)

# compartment -> {field: (T1 ms, T2 ms, PD)}
_TABLE: dict[str, dict[float, tuple[float, float, float]]] = {
    # CSF: T1 ~4.2-4.4 s at both fields [Rooney07]; T2 1.5-2 s, shorter at 3 T (representative).
    "csf": {1.5: (4200.0, 2000.0, 1.00), 3.0: (4400.0, 1600.0, 1.00)},
    # Spinal cord [Stanisz05]: 745/74 ms at 1.5 T, 993/78 ms at 3 T (cf. [Smith08]).
    "cord": {1.5: (745.0, 74.0, 0.72), 3.0: (993.0, 78.0, 0.72)},
    # Cord oedema: T1/T2 move towards free water (representative of vasogenic oedema, T2 150-250 ms).
    "cord_edema": {1.5: (1150.0, 170.0, 0.86), 3.0: (1450.0, 150.0, 0.86)},
    # Acute intramedullary haemorrhage (deoxyHb): apparent T2 shortening, stronger at 3 T [Bradley93].
    "hemorrhage": {1.5: (900.0, 32.0, 0.85), 3.0: (1100.0, 22.0, 0.85)},
    # Brainstem / cerebellum: white-grey mixture of [Stanisz05] (WM 884/72, GM 1124/95 at 1.5 T;
    # WM 1084/69, GM 1820/99 at 3 T).
    "brain": {1.5: (1000.0, 84.0, 0.76), 3.0: (1400.0, 82.0, 0.76)},
    # Skeletal muscle [Stanisz05]: 1008/44 ms at 1.5 T, 1412/50 ms at 3 T.
    "muscle": {1.5: (1008.0, 44.0, 0.75), 3.0: (1412.0, 50.0, 0.75)},
    # Oedematous muscle / soft tissue (representative: T2 roughly doubled).
    "muscle_edema": {1.5: (1300.0, 90.0, 0.85), 3.0: (1700.0, 85.0, 0.85)},
    # Skin (dermis): collagen-rich, short T2 (representative).
    "skin": {1.5: (800.0, 38.0, 0.70), 3.0: (1000.0, 35.0, 0.70)},
    # Fat: T1 chosen so that the STIR null is TI ~173 ms at 1.5 T as used clinically [Delf99] (measured
    # 250-340 ms at 1.5 T, 340-380 ms at 3 T [deBaz04, Gold04]); apparent FSE T2 130/110 ms, longer than
    # the spin-echo T2 because the echo train breaks J-coupling [Henk92] ([Gold04]: 165/133 ms).
    "fat": {1.5: (250.0, 130.0, 0.90), 3.0: (340.0, 110.0, 0.90)},
    # Water of haematopoietic (red) marrow: marrow mixtures measure 549/49 ms at 1.5 T [deBaz04]; the
    # water component has a longer T1 than the mixture (representative).
    "marrow_water": {1.5: (750.0, 52.0, 0.85), 3.0: (950.0, 46.0, 0.85)},
    # Interstitial oedema water in bone marrow (bone bruise, Modic 1): longer T1 and T2 than marrow water
    # (representative; marrow oedema is only moderately T2-prolonged, hence subtle on non-FS T2w).
    "edema_water": {1.5: (1300.0, 72.0, 0.95), 3.0: (1600.0, 66.0, 0.95)},
    # Free fluid / fresh haematoma serum in torn ligaments and the prevertebral space; synovial fluid
    # measures ~3600/770 ms at 1.5 T [Gold04]; blood-tinged fluid is shorter (representative).
    "fluid": {1.5: (2200.0, 260.0, 0.97), 3.0: (2600.0, 220.0, 0.97)},
    # Annulus fibrosus: fibrocartilage, close to cartilage (1024/30 ms 1.5 T, 1168/27 ms 3 T [Stanisz05]).
    "annulus": {1.5: (1000.0, 42.0, 0.72), 3.0: (1150.0, 38.0, 0.72)},
    # Nucleus pulposus of a healthy disc: T2 ~100-130 ms (representative; falls with degeneration).
    "nucleus": {1.5: (1200.0, 120.0, 0.88), 3.0: (1400.0, 105.0, 0.88)},
    # Ligaments (ALL/PLL, flavum, interspinous, nuchal): dense collagen, T2 ~15-25 ms (representative).
    "ligament": {1.5: (650.0, 20.0, 0.45), 3.0: (800.0, 18.0, 0.45)},
    # Cortical bone: T2 < 1 ms, effectively no signal at clinical TEs.
    "cortical_bone": {1.5: (1000.0, 0.8, 0.10), 3.0: (1200.0, 0.7, 0.10)},
    # Prevertebral soft tissue (longus colli, pharyngeal constrictors, mucosa, oesophagus).
    "prevertebral": {1.5: (1000.0, 55.0, 0.78), 3.0: (1350.0, 55.0, 0.78)},
    # Slow-flowing venous blood of a haemangioma's vascular lakes [Stanisz05 blood: 1441/290, 1932/275].
    "blood": {1.5: (1441.0, 290.0, 0.90), 3.0: (1932.0, 275.0, 0.90)},
    # Air: no protons.
    "air": {1.5: (1000.0, 1.0, 0.0), 3.0: (1000.0, 1.0, 0.0)},
}

COMPARTMENTS: tuple[str, ...] = tuple(_TABLE)


def relaxation(compartment: str, field_strength: float) -> Relaxation:
    """T1/T2/PD of a compartment at 1.5 or 3 T (``KeyError``/``ValueError`` otherwise)."""
    field_strength = float(field_strength)
    if field_strength not in FIELDS:
        raise ValueError(f"field strength must be one of {FIELDS} T, got {field_strength}")
    return Relaxation(*_TABLE[compartment][field_strength])


def table(field_strength: float) -> dict[str, Relaxation]:
    """All compartments at one field."""
    return {name: relaxation(name, field_strength) for name in COMPARTMENTS}
