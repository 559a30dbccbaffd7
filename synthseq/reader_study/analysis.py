"""Unblind the answers (join with ``key.csv``) and compute every study statistic as one JSON-ready dict.

Readings are (reader, case) pairs. Per reader and pooled over readers:

* Turing test: accuracy of the real/synthetic call, exact binomial test against 50%, and sensitivity /
  specificity for spotting synthetic (positive = synthetic). Pooled tests treat readings as independent,
  which ignores clustering by reader; the per-reader tests do not have that problem.
* Agreement on the call (and each finding): Fleiss' kappa over cases read by every reader, Cohen's kappa per
  pair of readers.
* Image quality (Likert 1-5), real vs synthetic: median and IQR, Wilcoxon signed-rank test on subject-paired
  scores (per reader: the reader's two scores of a subject; pooled: each subject's mean over readers).
* Findings: sensitivity / specificity against the lesion truth of the shown slices, on real and on synthetic.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import layout, stats
from .build import read_key
from .store import FIELDS, AnswerStore, read_answers_csv

POOLED = "pooled"


def load_readings(study: str | Path, answers_csv: str | Path | None = None) -> tuple[list[dict], dict]:
    """Answers joined with the key: one dict per answered (reader, case), plus reader -> submitted_at.

    Answers come from ``STUDY/answers.sqlite`` or, if given, from an exported CSV.
    """
    study = Path(study)
    manifest = layout.load_manifest(study)
    key = {row["case_id"]: row for row in read_key(study)}
    if answers_csv is not None:
        rows = [r for r in read_answers_csv(answers_csv) if any(r[f] is not None for f in FIELDS)]
        submitted = {r["reader"]: r.get("submitted_at") or None for r in rows}
    else:
        rows, submitted = AnswerStore(study / layout.DATABASE).all_rows()
    source = answers_csv if answers_csv is not None else study / layout.DATABASE
    readings = []
    for row in rows:
        truth = key.get(row["case_id"])
        if truth is None or row["reader"] not in manifest["readers"]:
            raise InputError(f"{source}: answer for a reader/case not in {study}: {row['reader']}/{row['case_id']}")
        readings.append({**{f: row[f] for f in FIELDS}, "reader": row["reader"], "case_id": row["case_id"],
                         "subject": truth["subject"], "source": truth["source"],
                         **{f"truth_{n}": truth[n] for n in layout.FINDING_NAMES}})
    return readings, {r: submitted.get(r) for r in manifest["readers"]}


def _turing(readings: list[dict]) -> dict:
    rs = [r for r in readings if r["call"] is not None]
    truth_synth = np.array([r["source"] == "synthetic" for r in rs], dtype=bool)
    called_synth = np.array([r["call"] == "synthetic" for r in rs], dtype=bool)
    out = stats.turing_test(truth_synth == called_synth)
    out["spotting_synthetic"] = stats.sensitivity_specificity(truth_synth, called_synth)
    by_conf = {}
    for level in range(1, 6):
        sel = [r for r in rs if r["confidence"] == level]
        by_conf[str(level)] = stats.proportion(sum(r["call"] == r["source"] for r in sel), len(sel), method="beta")
    out["accuracy_by_confidence"] = by_conf
    return out


def _agreement(readings: list[dict], readers: list[str], field: str) -> dict:
    table: dict[str, dict[str, object]] = defaultdict(dict)
    for r in readings:
        if r[field] is not None:
            table[r["case_id"]][r["reader"]] = r[field]
    full = sorted(cid for cid, by in table.items() if len(by) == len(readers))
    fleiss = stats.fleiss_kappa(np.array([[table[c][r] for r in readers] for c in full], dtype=object)
                                .astype(str)) if full and len(readers) >= 2 else None
    cohen = []
    for i, a in enumerate(readers):
        for b in readers[i + 1:]:
            both = sorted(c for c, by in table.items() if a in by and b in by)
            kappa = stats.cohen_kappa(np.array([str(table[c][a]) for c in both]),
                                      np.array([str(table[c][b]) for c in both])) if both else None
            cohen.append({"a": a, "b": b, "n": len(both), "kappa": kappa})
    return {"fleiss_kappa": fleiss, "n_cases_all_readers": len(full), "cohen": cohen}


def _likert(readings: list[dict]) -> dict:
    """Quality scores real vs synthetic; pairs are subjects (mean over the given readings of each)."""
    per_subject: dict[str, dict[str, list[int]]] = defaultdict(lambda: {"real": [], "synthetic": []})
    for r in readings:
        if r["quality"] is not None:
            per_subject[r["subject"]][r["source"]].append(r["quality"])
    paired = [s for s, v in sorted(per_subject.items()) if v["real"] and v["synthetic"]]
    real = np.array([np.mean(per_subject[s]["real"]) for s in paired])
    synth = np.array([np.mean(per_subject[s]["synthetic"]) for s in paired])
    all_real = [q for v in per_subject.values() for q in v["real"]]
    all_synth = [q for v in per_subject.values() for q in v["synthetic"]]
    return {"real": stats.describe_scores(all_real), "synthetic": stats.describe_scores(all_synth),
            "n_subjects_paired": len(paired), "wilcoxon_real_vs_synthetic": stats.paired_wilcoxon(real, synth)}


def _findings(readings: list[dict]) -> dict:
    out = {}
    for name in layout.FINDING_NAMES:
        out[name] = {}
        for source in ("real", "synthetic"):
            sel = [r for r in readings if r["source"] == source and r[name] is not None
                   and r[f"truth_{name}"] is not None]
            out[name][source] = stats.sensitivity_specificity(
                np.array([r[f"truth_{name}"] == 1 for r in sel], dtype=bool),
                np.array([r[name] == 1 for r in sel], dtype=bool))
    return out


def analyze_readings(readings: list[dict], readers: list[str], has_truth: bool) -> dict:
    """Every statistic, per reader and pooled (see the module docstring)."""
    groups = {reader: [r for r in readings if r["reader"] == reader] for reader in readers}
    groups[POOLED] = readings
    result = {
        "turing": {g: _turing(rs) for g, rs in groups.items()},
        "agreement": {field: _agreement(readings, readers, field)
                      for field in ("call", *layout.FINDING_NAMES, "quality")},
        "likert_quality": {g: _likert(rs) for g, rs in groups.items()},
        "findings": {g: _findings(rs) for g, rs in groups.items()} if has_truth else None,
    }
    return result


def analyze(study: str | Path, answers_csv: str | Path | None = None) -> dict:
    """Load, join and analyze a study; the dict also records counts and submission status."""
    manifest = layout.load_manifest(study)
    readers = list(manifest["readers"])
    readings, submitted = load_readings(study, answers_csv)
    if not readings:
        raise InputError(f"{study}: no answers yet (nothing to analyze)")
    result = analyze_readings(readings, readers, bool(manifest.get("has_lesion_truth")))
    result["study"] = {
        "readers": readers, "cases": len(manifest["cases"]), "readings": len(readings),
        "complete_readings": sum(all(r[f] is not None for f in FIELDS) for r in readings),
        "submitted": submitted, "slices": manifest["slices"],
        "window_percentiles": manifest["window_percentiles"],
    }
    return result
