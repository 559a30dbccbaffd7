"""Does pseudo-STIR help? One held-out benchmark of T2w-only vs T2w + pseudo-STIR vs T2w + real STIR.

Protocol (one subject-level split, stratified on the labels and outcome, shared by every model):

* **Injury classifiers**: for each input mode a classifier (:mod:`synthseq.downstream.classifier`) is trained
  on the training subjects and scored on the held-out ones: per-label AUC with 95% bootstrap CI. With
  ``classifier_seeds = k`` each mode is an ensemble of k classifiers (seeds ``seed .. seed + k - 1``) whose
  probabilities are averaged: on small cohorts a single network's initialization moves the AUC by as much as
  the input does, and the ensemble keeps that noise out of the comparison.
* **Findings read from measured image features** (no training): for each classifier label with a feature in
  :data:`FINDING_FEATURES` (fracture <- marrow-edema volume, PLC injury <- PLC signal ratio, cord edema <- cord
  edema volume), the held-out AUC of that feature measured on T2w, pseudo-STIR or real STIR. It asks whether the
  finding is *visible* in the image, free of classifier training noise.
* **Outcome model with image features**: clinical variables plus features measured on the T2w, the
  pseudo-STIR or the real STIR (:mod:`synthseq.downstream.features`); held-out AUC with CI. The clinical-only
  model and the van Middendorp rule are reported alongside as references.
* For every task: ``delta_vs_t2w`` (paired bootstrap CI over held-out subjects) and the fraction of the gap
  to real STIR that pseudo-STIR closes, ``(AUC_pseudo - AUC_t2w) / (AUC_real - AUC_t2w)``. It is reported only
  where real STIR beats T2w beyond chance (the paired CI of ``AUC_real - AUC_t2w`` excludes 0,
  ``real_beats_t2w``): a ratio over a gap that is noise says nothing and can take any value.

Outputs in ``out``: ``utility.json``, ``utility.csv``, ``utility.md`` (the table), ``utility.png`` and the
pseudo-STIR volumes it synthesized (``pseudo_stir/``).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..data.layout import split_subjects
from ..errors import ConfigError
from ..utils import atomic_path, atomic_write_text
from .classifier import ClassifierConfig, fit_network, load_inputs
from .dataset import check_labels, read_cohort
from .features import FEATURE_NAMES, features_for_subjects
from .outcome import OutcomeConfig, clinical_matrix, make_estimator
from .rules import van_middendorp_from_cohort
from .sources import PseudoStirSource, Synth
from .stats import auc, bootstrap_ci, json_safe
from .tasks import finding_features

FEATURE_SOURCE = {"t2w": "t2w", "t2w+pseudostir": "pseudostir", "t2w+stir": "stir"}
#: The measured feature that reads out each finding (a detection score for the feature-level rows).
FINDING_FEATURES = finding_features()  #: the built-in ones; registered tasks are looked up at run time
MODES = tuple(FEATURE_SOURCE)  #: table / plot order: T2w, + pseudo-STIR, + real STIR


@dataclass
class UtilityConfig:
    """Settings of the benchmark; ``classifier`` / ``outcome`` hold the model settings (data, input ignored)."""

    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    outcome: OutcomeConfig = field(default_factory=lambda: OutcomeConfig(image_features="stir"))
    outcome_targets: list[str] = field(default_factory=lambda: ["ambulation_discharge"])
    test_fraction: float = 0.3
    split_seed: int = 0
    n_boot: int = 1000
    classifier_seeds: int = 5  #: classifiers per input mode (different seeds), probabilities averaged
    seed: int = 0


def paired_delta_ci(y, p_a, p_b, n_boot: int, seed: int) -> tuple[float, float, float]:
    """``AUC(p_b) - AUC(p_a)`` on the same subjects, with a paired percentile bootstrap 95% CI."""
    y, p_a, p_b = np.asarray(y), np.asarray(p_a), np.asarray(p_b)
    delta = auc(y, p_b) - auc(y, p_a)
    stacked = np.stack([p_a, p_b], axis=1)

    def stat(yy, idx):
        idx = idx.astype(np.int64)
        return auc(yy, stacked[idx, 1]) - auc(yy, stacked[idx, 0])

    lo, hi = bootstrap_ci(stat, y, np.arange(len(y)), n_boot, seed)
    return float(delta), lo, hi


def gap_closed(auc_t2w: float, auc_pseudo: float, auc_real: float) -> float:
    """``(AUC_pseudo - AUC_t2w) / (AUC_real - AUC_t2w)``; NaN when real STIR does not beat T2w."""
    gap = auc_real - auc_t2w
    if not gap > 0 or any(math.isnan(v) for v in (auc_t2w, auc_pseudo, auc_real)):
        return math.nan
    return float((auc_pseudo - auc_t2w) / gap)


def run_utility(data: str | Path, out: str | Path, checkpoint: str | Path | None = None,
                synthesizer: Synth | None = None, cfg: UtilityConfig | None = None,
                pseudo_stir_dir: str | Path | None = None, device: str = "auto") -> dict:
    """Run the benchmark on a phantom-layout folder ``data``; see the module docstring. Returns the JSON dict."""
    cfg = cfg or UtilityConfig()
    if cfg.classifier_seeds < 1:
        raise ConfigError(f"classifier_seeds: expected >= 1, got {cfg.classifier_seeds}")
    out = Path(out)
    labels = check_labels(cfg.classifier.labels)
    targets = check_labels(cfg.outcome_targets, what="target")
    pseudo = PseudoStirSource.create(checkpoint, pseudo_stir_dir, synthesizer, cache_dir=out / "pseudo_stir",
                                     device=device)
    if pseudo is None:
        raise ConfigError("utility needs --checkpoint (or a synthesizer / pseudo-STIR folder) for pseudo-STIR")
    cohort = read_cohort(data)
    cohort.require([*labels, *targets])
    y_cls = np.stack([cohort.flag(lab) for lab in labels], axis=1)
    y_out = np.stack([cohort.flag(t) for t in targets], axis=1)
    parts = split_subjects(cohort.subjects, 0.0, cfg.test_fraction, cfg.split_seed,
                           stratify=np.concatenate([y_cls, y_out], 1))
    train, test = parts["train"], parts["test"]
    idx = {s: i for i, s in enumerate(cohort.subjects)}
    tr, te = [idx[s] for s in train], [idx[s] for s in test]

    probs: dict[tuple[str, str], np.ndarray] = {}
    truth: dict[str, np.ndarray] = {}
    for mode in MODES:
        ccfg = replace(cfg.classifier, data=str(data), input=mode, device=device, seed=cfg.seed)
        x_tr, x_te = load_inputs(data, train, ccfg, pseudo), load_inputs(data, test, ccfg, pseudo)
        p = np.mean([fit_network(replace(ccfg, seed=cfg.seed + k), x_tr, y_cls[tr]).predict(x_te)
                     for k in range(cfg.classifier_seeds)], axis=0)
        for j, lab in enumerate(labels):
            probs[(lab, mode)] = p[:, j]
            truth[lab] = y_cls[te, j]

    readers = finding_features()
    feature_tasks = {f"{lab} ({readers[lab]})": (j, FEATURE_NAMES.index(readers[lab]))
                     for j, lab in enumerate(labels) if lab in readers}
    clinical = clinical_matrix(cohort)
    for mode in MODES:
        feats = features_for_subjects(data, cohort.subjects, FEATURE_SOURCE[mode], pseudo)
        for name, (j, col) in feature_tasks.items():
            probs[(name, mode)] = feats[te, col]
            truth[name] = y_cls[te, j]
        x = np.concatenate([clinical, feats], axis=1)
        for k, t in enumerate(targets):
            est = make_estimator(replace(cfg.outcome, seed=cfg.seed)).fit(x[tr], y_out[tr, k])
            probs[(t, mode)] = est.predict_proba(x[te])[:, 1]
            truth[t] = y_out[te, k]
    references: dict[tuple[str, str], np.ndarray] = {}
    score = van_middendorp_from_cohort(cohort)
    for k, t in enumerate(targets):
        est = make_estimator(replace(cfg.outcome, seed=cfg.seed)).fit(clinical[tr], y_out[tr, k])
        references[(t, "clinical only")] = est.predict_proba(clinical[te])[:, 1]
        references[(t, "van Middendorp rule")] = score[te].astype(np.float64)

    rows, summary = [], {}
    for task in [*labels, *feature_tasks, *targets]:
        y = truth[task]
        kind = "classifier" if task in labels else "feature" if task in feature_tasks else "outcome"
        for mode in MODES:
            p = probs[(task, mode)]
            lo, hi = bootstrap_ci(auc, y, p, cfg.n_boot, cfg.seed)
            row = {"task": task, "kind": kind, "input": mode,
                   "auc": auc(y, p), "auc_ci_low": lo, "auc_ci_high": hi}
            if mode != "t2w":
                d, dlo, dhi = paired_delta_ci(y, probs[(task, "t2w")], p, cfg.n_boot, cfg.seed)
                row.update(delta_vs_t2w=d, delta_ci_low=dlo, delta_ci_high=dhi)
            rows.append(row)
        by_mode = {row["input"]: row for row in rows if row["task"] == task}
        a = {m: by_mode[m]["auc"] for m in MODES}
        real_beats = bool(by_mode["t2w+stir"]["delta_ci_low"] > 0)  # False for NaN too
        gap = gap_closed(a["t2w"], a["t2w+pseudostir"], a["t2w+stir"]) if real_beats else math.nan
        summary[task] = {"kind": kind, "auc_t2w": a["t2w"], "auc_pseudo": a["t2w+pseudostir"],
                         "auc_real": a["t2w+stir"], "real_beats_t2w": real_beats, "gap_closed": gap,
                         "n_test": int(len(y)), "n_positive": int(y.sum())}
    for (task, name), p in references.items():
        lo, hi = bootstrap_ci(auc, truth[task], p, cfg.n_boot, cfg.seed)
        rows.append({"task": task, "kind": "reference", "input": name, "auc": auc(truth[task], p),
                     "auc_ci_low": lo, "auc_ci_high": hi})

    result = {"data": str(data), "checkpoint": str(checkpoint) if checkpoint else None,
              "classifier_seeds": cfg.classifier_seeds, "train_subjects": train, "test_subjects": test,
              "image_features": list(FEATURE_NAMES),
              "rows": rows, "summary": summary}
    _write_outputs(result, out)
    return result


def _fmt(v, nd=3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def _write_outputs(result: dict, out: Path) -> None:
    from .plots import utility_plot

    out.mkdir(parents=True, exist_ok=True)
    rows = result["rows"]
    keys = ["task", "kind", "input", "auc", "auc_ci_low", "auc_ci_high", "delta_vs_t2w", "delta_ci_low",
            "delta_ci_high"]
    with atomic_path(out / "utility.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in keys})
    lines = ["| task | input | AUC (95% CI) | delta vs T2w (95% CI) |", "|---|---|---|---|"]
    for r in rows:
        delta = (f"{_fmt(r['delta_vs_t2w'])} ({_fmt(r['delta_ci_low'])}, {_fmt(r['delta_ci_high'])})"
                 if "delta_vs_t2w" in r else "")
        lines.append(f"| {r['task']} | {r['input']} | {_fmt(r['auc'])} ({_fmt(r['auc_ci_low'])}, "
                     f"{_fmt(r['auc_ci_high'])}) | {delta} |")
    lines += ["", "| task | real STIR beats T2w (paired CI > 0) | gap to real STIR closed by pseudo-STIR |",
              "|---|---|---|"]
    lines += [f"| {t} | {'yes' if s['real_beats_t2w'] else 'no'} | {_fmt(s['gap_closed'], 2)} |"
              for t, s in result["summary"].items()]
    atomic_write_text(out / "utility.md", "\n".join(lines) + "\n")
    atomic_write_text(out / "utility.json", json.dumps(json_safe(result), indent=2))
    utility_plot([r for r in rows if r["kind"] != "reference"], out / "utility.png")
