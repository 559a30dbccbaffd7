"""The clinical cohort: a documented generative model from trauma severity to clinical scores and outcomes.

Generative model (per subject; all draws from the subject's own random stream):

1. **Demographics.** Age from a two-peaked mixture (45%: young, high-energy trauma, N(32, 10) y;
   55%: older, falls, N(66, 11) y; clipped to 18-90); sex male with probability 0.80 (young) / 0.68 (older).
2. **Severity.** A latent trauma severity ``z ~ N(0, 1)``; 12% of subjects are imaged after trauma
   without a structural injury (``injured = False``).
3. **Injuries** (``injuries.sample_plan``): presence of each injury is logistic in ``z`` (fracture also in
   youth, PLC injury also in fracture, ...); cord lesion length ``8 + 16 exp(0.45 z + e)`` mm; haemorrhage
   more likely at higher ``z``.
4. **Neurology.** A latent impairment ``I = z + 1.0 haemorrhage + 0.25 (length_cm - 2.5) + 0.6 canal
   - 1.2 (no cord lesion) + N(0, 0.5)`` is cut at (1.3, 0.8, 0.2, -1.4) into AIS A/B/C/D/E (E for
   subjects without injury). The neurological level lies at or just below the injured vertebra's cord
   segment. ISNCSCI key-muscle grades (0-5; C5-T1 and L2-S1 on both sides) and light-touch scores (0-2)
   at L3 and S1 are drawn from AIS-specific distributions (A/B: no motor function below the level,
   A: no sensation; C: mean grade ~1.3; D: ~3.6; E: all normal), so UEMS/LEMS are the sums of the grades.
   Days from injury to rehabilitation admission: log-normal, longer after more severe injuries and surgery.
5. **Outcomes** (logistic; true coefficients in :data:`COEFFICIENTS`, stored in ``dataset.json``):
   ambulation at discharge follows the clinical prediction rule of van Middendorp et al. (Lancet 2011:
   age >= 65, L3/S1 motor and light-touch scores) plus imaging terms; AIS improvement (>= 1 grade) depends
   on the admission grade plus imaging terms and is 0 for AIS E (cannot improve). Imaging variables
   (cord lesion length, haemorrhage, fracture, PLC injury) enter both outcomes directly, so they carry
   information beyond the clinical variables. When images are generated, the imaging variables are
   *measured on the lesion masks* before the outcomes are drawn, so cohort and images agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .injuries import InjuryPlan, sample_plan

COLUMNS = (
    "subject", "age", "sex", "neuro_level", "ais_admission", "uems", "lems",
    "l3_motor_l", "l3_motor_r", "s1_motor_l", "s1_motor_r", "l3_lt_l", "l3_lt_r", "s1_lt_l", "s1_lt_r",
    "days_to_rehab", "cord_lesion_length_mm", "cord_hemorrhage", "fracture", "plc_injury", "cord_edema",
    "prevertebral_edema", "disc_injury", "canal_compression", "ambulation_discharge", "ais_improvement",
)
IMAGING_FLAGS = ("cord_hemorrhage", "fracture", "plc_injury", "cord_edema", "prevertebral_edema", "disc_injury",
                 "canal_compression")
NEURO_LEVELS = ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "T1")
AIS_GRADES = ("A", "B", "C", "D", "E")
AIS_CUTS = (1.3, 0.8, 0.2, -1.4)  # latent impairment thresholds A | B | C | D | E

#: True logistic coefficients of the outcomes. Keys are cohort.csv column names (per unit of the column:
#: per motor grade, per day, per mm ...) or the derived indicators of :data:`FEATURES`.
COEFFICIENTS: dict[str, dict[str, float]] = {
    "ambulation_discharge": {
        "intercept": -5.0, "age_ge_65": -1.2,
        "l3_motor_l": 0.32, "l3_motor_r": 0.32, "s1_motor_l": 0.32, "s1_motor_r": 0.32,
        "l3_lt_l": 0.45, "l3_lt_r": 0.45, "s1_lt_l": 0.45, "s1_lt_r": 0.45,
        "days_to_rehab": -0.01,
        "cord_lesion_length_mm": -0.035, "cord_hemorrhage": -1.3, "fracture": -0.3, "plc_injury": -0.5,
    },
    "ais_improvement": {
        "intercept": 0.6, "age": -0.015, "ais_B": 1.3, "ais_C": 1.5, "ais_D": -0.2,
        "days_to_rehab": -0.0067,
        "cord_lesion_length_mm": -0.025, "cord_hemorrhage": -1.0, "fracture": 0.0, "plc_injury": -0.3,
    },
}
#: Derived features (everything else is the cohort column of the same name, cord_lesion_length_mm and the
#: imaging flags as measured on the lesion mask).
FEATURES = {
    "age_ge_65": "1 if age >= 65 years else 0",
    "ais_B": "1 if ais_admission == B", "ais_C": "1 if ais_admission == C", "ais_D": "1 if ais_admission == D",
}
IMAGING_TERMS = ("cord_lesion_length_mm", "cord_hemorrhage", "fracture", "plc_injury")


def model_description() -> dict:
    """The cohort model as stored in ``dataset.json["cohort_model"]``."""
    out: dict = {}
    for target, coef in COEFFICIENTS.items():
        out[target] = {"link": "logit", "intercept": coef["intercept"],
                       "coefficients": {k: v for k, v in coef.items() if k != "intercept"}}
    out["ais_improvement"]["rule"] = "0 when ais_admission == E (cannot improve)"
    out["features"] = FEATURES
    out["latent"] = {
        "severity": "z ~ N(0,1); 12% of subjects without structural injury",
        "impairment": "I = z + 1.0 hemorrhage + 0.25 (length_cm - 2.5) + 0.6 canal - 1.2 (no cord lesion)"
                      " + N(0, 0.5); E for subjects without injury",
        "ais_cutpoints": dict(zip("ABCD", AIS_CUTS)),
    }
    out["doc"] = "synthseq.phantom.cohort module docstring"
    return out


@dataclass
class Demographics:
    age: float
    sex: str
    severity: float
    injured: bool


def sample_demographics(rng: np.random.Generator) -> Demographics:
    young = rng.random() < 0.45
    age = float(np.clip(rng.normal(32, 10) if young else rng.normal(66, 11), 18, 90))
    sex = "M" if rng.random() < (0.80 if young else 0.68) else "F"
    return Demographics(round(age, 1), sex, float(rng.normal()), bool(rng.random() >= 0.12))


def sample_case(rng: np.random.Generator, degen: np.ndarray | None = None) -> tuple[Demographics, InjuryPlan]:
    demo = sample_demographics(rng)
    plan = sample_plan(rng, demo.age, demo.severity, demo.injured, degen)
    return demo, plan


def planned_imaging(plan: InjuryPlan) -> dict[str, float]:
    """Imaging variables as planned (used by the image-free cohort simulation)."""
    return {
        "cord_lesion_length_mm": round(plan.cord.length_mm, 1) if plan.cord else 0.0,
        "cord_hemorrhage": int(bool(plan.cord and plan.cord.hemorrhage_mm > 0)),
        "fracture": int(plan.fracture is not None), "plc_injury": int(plan.plc is not None),
        "cord_edema": int(plan.cord is not None), "prevertebral_edema": int(plan.prevertebral is not None),
        "disc_injury": int(plan.disc is not None), "canal_compression": int(plan.canal is not None),
    }


def sample_clinical(rng: np.random.Generator, demo: Demographics, plan: InjuryPlan) -> dict:
    """Neurological level, AIS grade, motor and light-touch scores, days to rehabilitation."""
    im = planned_imaging(plan)
    if not demo.injured:
        ais = "E"
    else:
        impair = (demo.severity + 1.0 * im["cord_hemorrhage"] + 0.25 * (im["cord_lesion_length_mm"] / 10 - 2.5)
                  * im["cord_edema"] + 0.6 * im["canal_compression"] - 1.2 * (1 - im["cord_edema"])
                  + rng.normal(0, 0.5))
        ais = AIS_GRADES[int(np.sum(impair <= np.array(AIS_CUTS)))]
    # neurological level: the injured vertebra's cord segment (vertebra index 1 = C3 -> segment C3) or a bit lower
    lvl = int(np.clip(plan.level + 2 + round(rng.normal(0.3, 0.7)), 3, 8))  # index into NEURO_LEVELS
    upper = np.full((2, 5), 5, np.int64)  # sides x (C5, C6, C7, C8, T1)
    lower = np.full((2, 5), 5, np.int64)  # sides x (L2, L3, L4, L5, S1)
    if ais != "E":
        side = rng.normal(0, 0.5, 2)
        for m in range(5):
            seg = 4 + m  # index of C5 .. T1 in NEURO_LEVELS
            if seg <= lvl:
                if seg == lvl:
                    upper[:, m] = np.clip(np.rint(rng.normal(4.2, 0.6, 2)), 3, 5)
                continue
            below = seg - lvl
            mu = {"A": 2.0 - 1.2 * below, "B": 2.2 - 1.1 * below, "C": 2.4, "D": 3.9}[ais]
            upper[:, m] = np.clip(np.rint(mu + side + rng.normal(0, 0.9, 2)), 0, 5)
        if ais in ("A", "B"):
            lower[:] = 0
        else:
            mu = {"C": 1.3, "D": 3.6}[ais]
            lower = np.clip(np.rint(mu + side[:, None] + rng.normal(0, 0.9, (2, 5))), 0, 5).astype(np.int64)
    lt_p = {"A": (1.0, 0.0, 0.0), "B": (0.15, 0.55, 0.30), "C": (0.10, 0.50, 0.40), "D": (0.0, 0.30, 0.70),
            "E": (0.0, 0.0, 1.0)}[ais]
    lt = rng.choice(3, size=4, p=lt_p)
    median = 14.0 + 10.0 * (ais in "AB") + 5.0 * (ais == "C") + 4.0 * im["fracture"]
    days = int(np.clip(np.rint(median * np.exp(rng.normal(0, 0.4))), 2, 180))
    return {
        "age": demo.age, "sex": demo.sex, "neuro_level": NEURO_LEVELS[lvl], "ais_admission": ais,
        "uems": int(upper.sum()), "lems": int(lower.sum()),
        "l3_motor_l": int(lower[0, 1]), "l3_motor_r": int(lower[1, 1]),
        "s1_motor_l": int(lower[0, 4]), "s1_motor_r": int(lower[1, 4]),
        "l3_lt_l": int(lt[0]), "l3_lt_r": int(lt[1]), "s1_lt_l": int(lt[2]), "s1_lt_r": int(lt[3]),
        "days_to_rehab": days,
    }


def outcome_features(clinical: dict, imaging: dict) -> dict[str, float]:
    """The values the outcome coefficients multiply: numeric columns plus :data:`FEATURES`."""
    ais = clinical["ais_admission"]
    f = {k: float(v) for k, v in {**clinical, **imaging}.items() if isinstance(v, int | float)}
    f.update({"intercept": 1.0, "age_ge_65": float(clinical["age"] >= 65), "ais_B": float(ais == "B"),
              "ais_C": float(ais == "C"), "ais_D": float(ais == "D")})
    return f


def outcome_probabilities(clinical: dict, imaging: dict) -> dict[str, float]:
    """P(ambulation at discharge), P(AIS improvement) under the true model."""
    f = outcome_features(clinical, imaging)
    out = {}
    for name, coef in COEFFICIENTS.items():
        eta = sum(c * f[k] for k, c in coef.items())
        out[name] = float(1.0 / (1.0 + np.exp(-eta)))
    if clinical["ais_admission"] == "E":
        out["ais_improvement"] = 0.0
    return out


def sample_outcomes(rng: np.random.Generator, clinical: dict, imaging: dict) -> dict[str, int]:
    p = outcome_probabilities(clinical, imaging)
    u = rng.random(2)
    return {"ambulation_discharge": int(u[0] < p["ambulation_discharge"]),
            "ais_improvement": int(u[1] < p["ais_improvement"])}


def simulate_cohort(n: int, seed: int = 0) -> list[dict]:
    """``n`` cohort rows without images (planned imaging variables): for studying the model itself."""
    rows = []
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([seed, i, 7]))
        demo, plan = sample_case(rng)
        clinical = sample_clinical(rng, demo, plan)
        imaging = planned_imaging(plan)
        rows.append({"subject": f"sim-{i:05d}", **clinical, **imaging, **sample_outcomes(rng, clinical, imaging)})
    return rows
