"""The outcome page's input fields: names, units, allowed ranges, and one validator shared by page, API and CSV.

Every value a request gives is checked here and turned into the cohort table's text form (the same strings a
``cohort.csv`` holds), so the web page, the JSON API, the batch CSV and ``synthseq outcome predict`` encode a
patient through one code path (:func:`synthseq.downstream.outcome.design_matrix`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..outcome import CLINICAL_FEATURES, COHORT_IMAGE_FEATURES

LEVELS = tuple([f"C{i}" for i in range(1, 9)] + [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)]
               + [f"S{i}" for i in range(1, 6)])


@dataclass(frozen=True)
class Field:
    """One input: a number in ``[lo, hi]`` (``integer`` when only whole values are allowed) or a choice."""

    name: str
    label: str
    unit: str = ""
    lo: float | None = None
    hi: float | None = None
    integer: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""

    @property
    def kind(self) -> str:
        return "choice" if self.choices else "number"

    def _bounds(self) -> tuple:
        return tuple(int(v) if float(v).is_integer() else v for v in (self.lo, self.hi))

    def range_text(self) -> str:
        if self.choices:
            return ", ".join(self.choices)
        lo, hi = self._bounds()
        return f"{lo}–{hi}" + (f" {self.unit}" if self.unit else "")

    def to_dict(self) -> dict:
        d = {"name": self.name, "label": self.label, "type": self.kind, "unit": self.unit, "help": self.help}
        if self.choices:
            d["choices"] = list(self.choices)
        else:
            d.update({"min": self.lo, "max": self.hi, "integer": self.integer})
        return d

    def check(self, value) -> tuple[str | None, str | None]:
        """``(cohort text, None)`` for a valid value, else ``(None, message)``."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None, f"{self.label} is required"
        if self.choices:
            text = str(value).strip().upper()
            if isinstance(value, bool) or text not in self.choices:
                return None, f"{self.label} must be one of {', '.join(self.choices)}"
            return text, None
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return None, f"{self.label} must be a number"
        try:
            x = float(value)
        except ValueError:
            return None, f"{self.label} must be a number, got {str(value)[:40]!r}"
        if not math.isfinite(x):
            return None, f"{self.label} must be a finite number"
        if self.integer and not x.is_integer():
            return None, f"{self.label} must be a whole number"
        if not self.lo <= x <= self.hi:
            lo, hi = self._bounds()
            return None, f"{self.label} must be between {lo} and {hi}{' ' + self.unit if self.unit else ''}, got {value}"
        return (str(int(x)) if self.integer else repr(x)), None


_MOTOR = "MRC grade (0 = no contraction … 5 = normal)"
_TOUCH = "0 = absent, 1 = impaired, 2 = normal"
CLINICAL_FIELDS: dict[str, Field] = {f.name: f for f in (
    Field("age", "Age", "years", 15, 100, help="age at injury"),
    Field("sex", "Sex", choices=("M", "F")),
    Field("neuro_level", "Neurological level", choices=LEVELS, help="ISNCSCI neurological level of injury"),
    Field("ais_admission", "AIS grade at admission", choices=tuple("ABCDE"), help="ASIA Impairment Scale"),
    Field("uems", "UEMS", "points", 0, 50, True, help="upper-extremity motor score"),
    Field("lems", "LEMS", "points", 0, 50, True, help="lower-extremity motor score"),
    Field("l3_motor_l", "L3 motor, left", "grade", 0, 5, True, help=f"quadriceps, {_MOTOR}"),
    Field("l3_motor_r", "L3 motor, right", "grade", 0, 5, True, help=f"quadriceps, {_MOTOR}"),
    Field("s1_motor_l", "S1 motor, left", "grade", 0, 5, True, help=f"gastrocsoleus, {_MOTOR}"),
    Field("s1_motor_r", "S1 motor, right", "grade", 0, 5, True, help=f"gastrocsoleus, {_MOTOR}"),
    Field("l3_lt_l", "L3 light touch, left", "grade", 0, 2, True, help=_TOUCH),
    Field("l3_lt_r", "L3 light touch, right", "grade", 0, 2, True, help=_TOUCH),
    Field("s1_lt_l", "S1 light touch, left", "grade", 0, 2, True, help=_TOUCH),
    Field("s1_lt_r", "S1 light touch, right", "grade", 0, 2, True, help=_TOUCH),
    Field("days_to_rehab", "Days to admission", "days", 0, 365, help="days from injury to rehabilitation admission"),
)}
IMAGE_FIELDS: dict[str, Field] = {f.name: f for f in (
    Field("cord_lesion_length_mm", "Cord lesion length", "mm", 0, 200, help="rostro-caudal extent on MRI"),
    *(Field(n, n.replace("_", " ").capitalize(), "0/1", 0, 1, True, help="1 = present on MRI")
      for n in COHORT_IMAGE_FEATURES[1:]),
)}
assert tuple(CLINICAL_FIELDS) == CLINICAL_FEATURES and tuple(IMAGE_FIELDS) == COHORT_IMAGE_FEATURES


def validate(values: dict, fields: dict[str, Field], *, allow_extra: bool = False) -> tuple[dict, dict]:
    """``(cohort texts, errors)``: errors maps each bad, missing or unknown field name to one message."""
    errors: dict[str, str] = {}
    texts: dict[str, str] = {}
    if not allow_extra:
        for key in values:
            if key not in fields:
                errors[str(key)[:64]] = f"unknown field {str(key)[:64]!r}"
    for name, f in fields.items():
        text, err = f.check(values.get(name))
        if err:
            errors[name] = err
        else:
            texts[name] = text
    return texts, errors
