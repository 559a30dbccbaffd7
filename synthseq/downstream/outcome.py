"""Outcome predictors (ambulation at discharge, AIS improvement) with SHAP explanations.

Features are the cohort's clinical variables (:data:`CLINICAL_FEATURES`, encoded as numbers: sex M=1/F=0,
neurological level C1..C8 -> 1..8, T1 -> 9, ..., admission AIS A..E -> 0..4), optionally plus image features:
``"cohort"`` (the cohort's radiology columns), or features measured on the volumes (``"t2w"``, ``"stir"``,
``"pseudostir"``; :mod:`synthseq.downstream.features`).

Models: scikit-learn ``HistGradientBoostingClassifier`` (``"hgb"``), an impute + standardize + logistic
regression pipeline (``"logreg"``), or CatBoost (``"catboost"``, the published registry study's choice; an
optional extra: ``pip install synthseq[catboost]``). Performance is estimated by stratified k-fold
cross-validation (pooled out-of-fold probabilities: AUC with 95% bootstrap CI, Brier score, calibration curve),
next to the van Middendorp rule (:mod:`synthseq.downstream.rules`) on the same subjects, and every estimator of
``compare`` is cross-validated on the same folds (one comparison table). The final model is fitted on all
subjects; ``n_ensemble`` more copies are refitted on bootstrap resamples of the subjects, and the 2.5th-97.5th
percentiles of their probabilities give each prediction's uncertainty interval (the spread due to the finite
training sample; not a calibrated prediction interval for the patient).

The model file (``model.ssmodel``, :mod:`synthseq.downstream.modelfile`) cannot run code when loaded:
scikit-learn estimators are stored with skops and read back trusting only an explicit type allowlist, CatBoost
models in CatBoost's own binary format, the training features as ``.npy``; its SHA-256 is checked on load.

SHAP values are computed in log-odds (the models' ``decision_function``): ``TreeExplainer`` for gradient
boosting, ``LinearExplainer`` (interventional, background = training data) for logistic regression, CatBoost's
own exact tree SHAP for CatBoost, so ``base_value + sum(contributions) == decision_function(x)`` for every
patient (checked by :func:`additivity_error`).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import from_dict, to_dict
from ..errors import ConfigError, InputError
from ..utils import atomic_path, atomic_write_text, read_saved_model
from .dataset import check_labels, read_cohort, read_dataset_json
from .features import FEATURE_NAMES, features_for_subjects
from .rules import RULE_COLUMNS, van_middendorp_from_cohort, van_middendorp_probability
from .sources import PseudoStirSource, Synth
from .stats import auc, binary_report, bootstrap_ci, brier, calibration_bins, json_safe

FORMAT = "synthseq-outcome"
CLINICAL_FEATURES = ("age", "sex", "neuro_level", "ais_admission", "uems", "lems", *RULE_COLUMNS[1:],
                     "days_to_rehab")
COHORT_IMAGE_FEATURES = ("cord_lesion_length_mm", "cord_hemorrhage", "fracture", "plc_injury", "cord_edema",
                         "prevertebral_edema", "disc_injury", "canal_compression")
IMAGE_SOURCES = ("none", "cohort", "t2w", "stir", "pseudostir")
MODELS = ("hgb", "logreg", "catboost")
MODEL_FILE = "model.ssmodel"  #: the model file ``fit`` writes into ``out_dir``
_AIS = {c: i for i, c in enumerate("ABCDE")}


@dataclass
class OutcomeConfig:
    """An outcome model: target, features, estimator and validation settings."""

    data: str = "data/phantom"  #: phantom-layout folder, or a cohort CSV (image_features none/cohort)
    out_dir: str = "runs/outcome"
    target: str = "ambulation_discharge"  #: "ambulation_discharge" | "ais_improvement"
    model: str = "hgb"  #: "hgb" (HistGradientBoosting) | "logreg" | "catboost" (extra: synthseq[catboost])
    image_features: str = "none"  #: "none" | "cohort" | "t2w" | "stir" | "pseudostir"
    synthesis_checkpoint: str | None = None  #: for image_features "pseudostir"
    pseudo_stir_dir: str | None = None
    cv_folds: int = 5
    n_boot: int = 1000
    threshold: float = 0.5
    calibration_bins: int = 5
    hgb_max_iter: int = 150
    hgb_learning_rate: float = 0.05
    hgb_max_depth: int = 3
    hgb_min_samples_leaf: int = 10
    logreg_c: float = 1.0
    catboost_iterations: int = 300
    catboost_depth: int = 4
    catboost_learning_rate: float = 0.05
    n_ensemble: int = 20  #: bootstrap refits saved with the model (uncertainty interval); 0 = none
    #: estimators cross-validated on the same folds for the comparison table (catboost skipped if not installed)
    compare: list[str] = field(default_factory=lambda: list(MODELS))
    explain_subjects: int = 3  #: per-patient SHAP plots written by fit
    device: str = "auto"
    seed: int = 0

    def validate(self) -> OutcomeConfig:
        check_labels([self.target], what="target")
        if self.model not in MODELS:
            raise ConfigError(f"model: unknown model {self.model!r} (use one of {', '.join(MODELS)})")
        if self.image_features not in IMAGE_SOURCES:
            raise ConfigError(f"image_features: unknown source {self.image_features!r} "
                              f"(use one of {', '.join(IMAGE_SOURCES)})")
        if self.cv_folds < 2:
            raise ConfigError(f"cv_folds: must be at least 2, got {self.cv_folds}")
        bad = [m for m in self.compare if m not in MODELS]
        if bad:
            raise ConfigError(f"compare: unknown model(s) {', '.join(map(repr, bad))} (use {', '.join(MODELS)})")
        if self.n_ensemble < 0 or self.n_ensemble == 1:
            raise ConfigError(f"n_ensemble: must be 0 (none) or at least 2, got {self.n_ensemble}")
        if self.model == "catboost":
            catboost_or_error("model")
        return self


# ------------------------------------------------------------------------------------------------ features
def _encode_level(values: list[str], path) -> np.ndarray:
    out = []
    for v in values:
        v = v.upper()
        region, num = v[:1], v[1:]
        offset = {"C": 0, "T": 8, "L": 20, "S": 25}.get(region)
        if offset is None or not num.isdigit():
            raise InputError(f"{path}: neuro_level {v!r} is not a level like C5 or T1")
        out.append(offset + int(num))
    return np.asarray(out, dtype=np.float64)


def clinical_matrix(cohort) -> np.ndarray:
    """``(N, len(CLINICAL_FEATURES))`` numeric clinical features of a cohort."""
    cohort.require(CLINICAL_FEATURES)
    cols = []
    for name in CLINICAL_FEATURES:
        if name == "sex":
            sex = cohort.text("sex")
            if any(s.upper() not in ("M", "F") for s in sex):
                raise InputError(f"{cohort.path}: column 'sex' must hold M or F")
            cols.append(np.array([s.upper() == "M" for s in sex], dtype=np.float64))
        elif name == "neuro_level":
            cols.append(_encode_level(cohort.text(name), cohort.path))
        elif name == "ais_admission":
            ais = cohort.text(name)
            if any(a.upper() not in _AIS for a in ais):
                raise InputError(f"{cohort.path}: column 'ais_admission' must hold A, B, C, D or E")
            cols.append(np.array([_AIS[a.upper()] for a in ais], dtype=np.float64))
        else:
            cols.append(cohort.numeric(name))
    return np.stack(cols, axis=1)


def design_matrix(cohort, image_features: str, root=None, pseudo: PseudoStirSource | None = None
                  ) -> tuple[np.ndarray, list[str]]:
    """Clinical (+ image) features ``(N, F)`` and their names."""
    x = clinical_matrix(cohort)
    names = list(CLINICAL_FEATURES)
    if image_features == "cohort":
        cohort.require(COHORT_IMAGE_FEATURES)
        x = np.concatenate([x, np.stack([cohort.numeric(c) for c in COHORT_IMAGE_FEATURES], axis=1)], axis=1)
        names += list(COHORT_IMAGE_FEATURES)
    elif image_features in ("t2w", "stir", "pseudostir"):
        if root is None or not Path(root).is_dir():
            raise InputError(f"{root}: image features {image_features!r} need a phantom-layout folder with volumes")
        feats = features_for_subjects(root, cohort.subjects, image_features, pseudo)
        x = np.concatenate([x, feats], axis=1)
        names += [f"img_{n}" for n in FEATURE_NAMES]
    return x, names


# -------------------------------------------------------------------------------------------------- models
def catboost_or_error(key: str = "model"):
    """The ``catboost`` module, or a ConfigError saying how to install the extra."""
    try:
        import catboost
    except ImportError:
        raise ConfigError(f"{key}: catboost is not installed (pip install 'synthseq[catboost]')") from None
    return catboost


def catboost_available() -> bool:
    try:
        import catboost  # noqa: F401
    except ImportError:
        return False
    return True


def make_estimator(cfg: OutcomeConfig, kind: str | None = None, seed: int | None = None):
    """An unfitted classifier for ``kind`` (default ``cfg.model``)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    kind = kind or cfg.model
    seed = cfg.seed if seed is None else seed
    if kind == "hgb":
        return HistGradientBoostingClassifier(max_iter=cfg.hgb_max_iter, learning_rate=cfg.hgb_learning_rate,
                                              max_depth=cfg.hgb_max_depth,
                                              min_samples_leaf=cfg.hgb_min_samples_leaf, random_state=seed)
    if kind == "catboost":
        cb = catboost_or_error("model")
        # one thread: fits must be reproducible and fit the 2-core budget; no training files written to cwd
        return cb.CatBoostClassifier(iterations=cfg.catboost_iterations, depth=cfg.catboost_depth,
                                     learning_rate=cfg.catboost_learning_rate, random_seed=seed, verbose=False,
                                     thread_count=1, allow_writing_files=False)
    return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                         LogisticRegression(C=cfg.logreg_c, max_iter=2000))


def _raw_score(est, x: np.ndarray) -> np.ndarray:
    """Log-odds ``(N,)`` of a fitted estimator (CatBoost has no decision_function)."""
    if type(est).__module__.startswith("catboost"):
        return np.asarray(est.predict(x, prediction_type="RawFormulaVal"), dtype=np.float64)
    return np.asarray(est.decision_function(x), dtype=np.float64)


def _encode_estimator(est) -> bytes:
    if type(est).__module__.startswith("catboost"):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:  # CatBoost writes its binary format to a file only
            est.save_model(str(Path(tmp) / "m.cbm"), format="cbm")
            return (Path(tmp) / "m.cbm").read_bytes()
    from .modelfile import dump_sklearn

    return dump_sklearn(est)


def _decode_estimator(kind: str, data: bytes, path):
    if kind == "catboost":
        cb = catboost_or_error("model")
        try:
            return cb.CatBoostClassifier().load_model(blob=data)
        except Exception as exc:  # noqa: BLE001 - a damaged blob is a user error here
            raise InputError(f"{path}: unreadable CatBoost estimator ({type(exc).__name__})") from None
    from .modelfile import load_sklearn

    return load_sklearn(data, path, "outcome model")


def fit_ensemble(cfg: OutcomeConfig, x: np.ndarray, y: np.ndarray) -> list:
    """``cfg.n_ensemble`` estimators refitted on bootstrap resamples of the subjects (each with both classes)."""
    rng = np.random.default_rng(cfg.seed + 7919)
    members = []
    while len(members) < cfg.n_ensemble:
        idx = rng.integers(0, len(y), len(y))
        if y[idx].min() == y[idx].max():
            continue  # a resample with one class cannot be fitted; draw again
        members.append(make_estimator(cfg, seed=cfg.seed + 1 + len(members)).fit(x[idx], y[idx]))
    return members


class _TreeStack:
    """All trees of several fitted binary HistGradientBoosting models as flat arrays, evaluated together.

    scikit-learn walks each tree in a separate call (about 30 us per tree and row), so 20 refits of 150 trees
    cost ~100 ms for one patient; here every tree advances one level per numpy step. :meth:`build` checks the
    result against ``predict_proba`` on sample rows and gives None (use scikit-learn) if it differs or the
    models use features this walk does not handle (categorical splits).
    """

    def __init__(self, feature, threshold, nan_left, left, right, leaf, value, baseline, n_models, depth):
        self.feature, self.threshold, self.nan_left = feature, threshold, nan_left
        self.left, self.right, self.leaf, self.value = left, right, leaf, value
        self.baseline, self.n_models, self.depth = baseline, n_models, depth

    @classmethod
    def build(cls, models: list, check_x: np.ndarray) -> _TreeStack | None:
        try:
            trees, baselines = [], []
            for m in models:
                baselines.append(float(np.ravel(m._baseline_prediction)[0]))
                preds = [it[0] for it in m._predictors]
                if any(len(it) != 1 for it in m._predictors):
                    return None
                trees.append(preds)
            n_trees = {len(t) for t in trees}
            if len(n_trees) != 1:
                return None
            nodes = [p.nodes for t in trees for p in t]
            if any(n["is_categorical"].any() for n in nodes):
                return None
            width = max(len(n) for n in nodes)

            def pad(key, dtype, fill):
                out = np.full((len(nodes), width), fill, dtype=dtype)
                for i, n in enumerate(nodes):
                    out[i, :len(n)] = n[key]
                return out

            leaf = pad("is_leaf", bool, True)
            stack = cls(pad("feature_idx", np.int64, 0), pad("num_threshold", np.float64, 0.0),
                        pad("missing_go_to_left", bool, True), pad("left", np.int64, 0), pad("right", np.int64, 0),
                        leaf, pad("value", np.float64, 0.0), np.asarray(baselines), len(models), width)
            ref = np.stack([np.asarray(m.predict_proba(check_x), dtype=np.float64)[:, 1] for m in models])
            if not np.allclose(stack.proba(check_x), ref, rtol=0, atol=1e-9):
                return None
            return stack
        except (AttributeError, KeyError, IndexError, TypeError, ValueError):
            return None

    def proba(self, x: np.ndarray) -> np.ndarray:
        """``(M, N)`` probabilities for rows ``x`` ``(N, F)``."""
        rows = np.arange(len(self.feature))[:, None]
        out = np.empty((self.n_models, len(x)))
        for j, xi in enumerate(x):
            node = np.zeros(len(self.feature), dtype=np.int64)
            for _ in range(self.depth):
                leaf = self.leaf[rows[:, 0], node]
                if leaf.all():
                    break
                v = xi[self.feature[rows[:, 0], node]]
                go_left = np.where(np.isnan(v), self.nan_left[rows[:, 0], node],
                                   v <= self.threshold[rows[:, 0], node])
                nxt = np.where(go_left, self.left[rows[:, 0], node], self.right[rows[:, 0], node])
                node = np.where(leaf, node, nxt)
            raw = self.value[rows[:, 0], node].reshape(self.n_models, -1).sum(axis=1) + self.baseline
            out[:, j] = 1.0 / (1.0 + np.exp(-raw))
        return out


@dataclass
class OutcomeModel:
    """A fitted outcome model with its config, feature names, training data (SHAP background) and metrics.

    ``ensemble`` holds the bootstrap refits (possibly empty) that give :meth:`interval`.
    """

    cfg: OutcomeConfig
    feature_names: list[str]
    estimator: object
    background: np.ndarray  #: ``(N, F)`` training features
    metrics: dict
    ensemble: list = field(default_factory=list)
    _stack: object = field(default=None, init=False, repr=False, compare=False)  #: fast path of the refits

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probability of the positive outcome ``(N,)``."""
        return np.asarray(self.estimator.predict_proba(x), dtype=np.float64)[:, 1]

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """Log-odds ``(N,)``: the space SHAP contributions add up in."""
        return _raw_score(self.estimator, x)

    def ensemble_proba(self, x: np.ndarray) -> np.ndarray:
        """Probabilities ``(M, N)`` of the ``M`` bootstrap refits."""
        x = np.asarray(x, dtype=np.float64)
        if self._stack is None and self.ensemble and self.cfg.model == "hgb":
            self._stack = _TreeStack.build(self.ensemble, self.background[:50]) or False
        if self._stack:
            return self._stack.proba(x)
        return np.stack([np.asarray(m.predict_proba(x), dtype=np.float64)[:, 1] for m in self.ensemble])

    def interval(self, x: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray] | None:
        """``(low, high)`` ``(N,)`` percentiles of the bootstrap refits' probabilities, or None without refits."""
        if not self.ensemble:
            return None
        p = self.ensemble_proba(x)
        q = (1 - level) / 2 * 100
        return np.percentile(p, q, axis=0), np.percentile(p, 100 - q, axis=0)

    def save(self, path: str | Path) -> Path:
        """Write the model file (no pickle; see the module docstring)."""
        from .._version import __version__
        from .modelfile import write_model_file

        meta = {"synthseq_version": __version__, "config": to_dict(self.cfg), "feature_names": self.feature_names,
                "metrics": json.loads(json.dumps(json_safe(self.metrics))), "n_ensemble": len(self.ensemble)}
        blobs = {"estimator": _encode_estimator(self.estimator)}
        blobs.update({f"ensemble_{i:03d}": _encode_estimator(m) for i, m in enumerate(self.ensemble)})
        return write_model_file(path, FORMAT, meta, {"background": np.asarray(self.background, np.float64)}, blobs)

    @classmethod
    def load(cls, path: str | Path) -> OutcomeModel:
        from .modelfile import read_model_file

        blob = read_saved_model(path, lambda p: vars(read_model_file(p, FORMAT, "outcome model")), FORMAT,
                                "outcome model")
        meta, arrays, blobs = blob["meta"], blob["arrays"], blob["blobs"]
        try:
            cfg = from_dict(OutcomeConfig, meta["config"])
            names, n_members = list(meta["feature_names"]), int(meta["n_ensemble"])
            background = arrays["background"]
            est = _decode_estimator(cfg.model, blobs["estimator"], path)
            members = [_decode_estimator(cfg.model, blobs[f"ensemble_{i:03d}"], path) for i in range(n_members)]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: incomplete outcome model ({type(exc).__name__}: {exc})") from None
        return cls(cfg, names, est, background, meta.get("metrics", {}), members)


# ---------------------------------------------------------------------------------------------------- SHAP
class Explainer:
    """A reusable SHAP explainer of one model (building one costs far more than using it: the web page keeps
    one per model). ``explainer(x)`` gives contributions ``(N, F)`` (log-odds) and the base value."""

    def __init__(self, model: OutcomeModel) -> None:
        self.model = model
        est = model.estimator
        self.kind = model.cfg.model
        if self.kind == "catboost":
            self._explainer = None
        elif self.kind == "hgb":
            import shap

            self._explainer = shap.TreeExplainer(est)
        else:
            import shap

            self._prep, lr = est[:-1], est[-1]
            self._explainer = shap.LinearExplainer(lr, shap.maskers.Independent(
                self._prep.transform(model.background)))

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        x = np.asarray(x, dtype=np.float64)
        if self.kind == "catboost":
            from catboost import Pool

            out = np.asarray(self.model.estimator.get_feature_importance(Pool(x), type="ShapValues"),
                             dtype=np.float64)
            return out[:, :-1], float(out[0, -1])
        if self.kind == "hgb":
            values = np.asarray(self._explainer.shap_values(x), dtype=np.float64)
        else:
            values = np.asarray(self._explainer.shap_values(self._prep.transform(x)), dtype=np.float64)
        if values.ndim == 3:  # some shap versions return one array per class
            values = values[..., -1]
        return values, float(np.ravel(self._explainer.expected_value)[-1])


def shap_values(model: OutcomeModel, x: np.ndarray) -> tuple[np.ndarray, float]:
    """SHAP contributions ``(N, F)`` (log-odds) and the base value, for features ``x`` ``(N, F)``."""
    return Explainer(model)(x)


def additivity_error(model: OutcomeModel, x: np.ndarray) -> float:
    """``max |base + sum(contributions) - decision_function(x)|`` over patients (should be ~1e-6 or less)."""
    values, base = shap_values(model, x)
    return float(np.max(np.abs(base + values.sum(axis=1) - model.decision_function(x))))


def compare_with_truth(names: list[str], importance: np.ndarray, cohort, cohort_model: dict,
                       target: str) -> dict | None:
    """Rank agreement of fitted importances with the phantom generator's true outcome model.

    The true importance of a cohort column is the standard deviation over subjects of its contribution to the
    true log-odds, ``sum_terms beta_term * term(column)``: terms are the column itself or indicators derived
    from it (``age_ge_65`` -> age; ``ais_B`` -> ais_admission). The fitted importance is ``importance``
    (e.g. mean |SHAP|). Only features present in both (``img_`` prefix stripped) are compared.

    Returns:
        ``{"spearman", "top_k_overlap", "k", "features": [{name, fitted, true}]}`` (sorted by true importance),
        or None when ``cohort_model`` has no coefficients for ``target`` or fewer than 3 features match.
    """
    from scipy.stats import spearmanr

    coefs = true_coefficients(cohort_model, target)
    if not coefs:
        return None
    contrib = _true_contributions(cohort, coefs)
    rows = []
    for j, name in enumerate(names):
        key = name[4:] if name.startswith("img_") else name
        if key in contrib:
            rows.append({"name": name, "fitted": float(importance[j]), "true": float(np.std(contrib[key]))})
    if len(rows) < 3:
        return None
    fitted = np.array([r["fitted"] for r in rows])
    true = np.array([r["true"] for r in rows])
    k = min(5, int((true > 0).sum()))
    top_f = {rows[i]["name"] for i in np.argsort(-fitted)[:k]}
    top_t = {rows[i]["name"] for i in np.argsort(-true)[:k]}
    return {"spearman": float(spearmanr(fitted, true).statistic), "top_k_overlap": len(top_f & top_t) / max(k, 1),
            "k": k, "features": sorted(rows, key=lambda r: -r["true"])}


def true_coefficients(cohort_model: dict, target: str) -> dict[str, float]:
    """``{term: coefficient}`` of ``target`` from dataset.json's ``cohort_model``
    (``{"coefficients": {target: {...}}}``, or ``{target: {"coefficients": {...}}}``); {} if absent."""
    if not isinstance(cohort_model, dict):
        return {}
    node = cohort_model.get("coefficients", {})
    node = node.get(target) if isinstance(node, dict) else None
    if node is None and isinstance(cohort_model.get(target), dict):
        node = cohort_model[target].get("coefficients", cohort_model[target])
    if not isinstance(node, dict):
        return {}
    return {k: float(v) for k, v in node.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k not in ("intercept", "bias")}


def _true_contributions(cohort, coefs: dict[str, float]) -> dict[str, np.ndarray]:
    """Per cohort column, its summed contribution ``(N,)`` to the true log-odds (unknown terms are skipped)."""
    out: dict[str, np.ndarray] = {}
    for term, beta in coefs.items():
        ge = re.fullmatch(r"(\w+)_ge_([\d.]+)", term)
        ais = re.fullmatch(r"ais_([A-E])", term)
        if ge and ge.group(1) in cohort.columns:
            col, value = ge.group(1), (cohort.numeric(ge.group(1)) >= float(ge.group(2))).astype(float)
        elif ais and "ais_admission" in cohort.columns:
            col = "ais_admission"
            value = np.array([a.upper() == ais.group(1) for a in cohort.text(col)], dtype=float)
        elif term in cohort.columns:
            try:
                col, value = term, cohort.numeric(term)
            except InputError:  # a text column the record uses through derived indicators only
                continue
        else:
            continue
        out[col] = out.get(col, 0.0) + beta * np.nan_to_num(value)
    return out


# ----------------------------------------------------------------------------------------------- fit / CV
def cross_validated_probabilities(cfg: OutcomeConfig, x: np.ndarray, y: np.ndarray,
                                  kind: str | None = None) -> np.ndarray:
    """Out-of-fold probabilities ``(N,)`` of estimator ``kind`` (default ``cfg.model``) from stratified k-fold
    CV (k reduced to the minority count if needed); the folds depend only on ``cfg.seed``, so every estimator
    is scored on the same folds."""
    from sklearn.model_selection import StratifiedKFold

    minority = int(min(y.sum(), len(y) - y.sum()))
    if minority < 2:
        raise InputError(f"{cfg.data}: target {cfg.target!r} needs at least 2 subjects of each class, "
                         f"got {int(y.sum())} positive of {len(y)}")
    folds = StratifiedKFold(n_splits=min(cfg.cv_folds, minority), shuffle=True, random_state=cfg.seed)
    oof = np.zeros(len(y))
    for tr, te in folds.split(x, y):
        est = make_estimator(cfg, kind).fit(x[tr], y[tr])
        oof[te] = np.asarray(est.predict_proba(x[te]), dtype=np.float64)[:, 1]
    return oof


def compare_estimators(cfg: OutcomeConfig, x: np.ndarray, y: np.ndarray, done: dict[str, np.ndarray]) -> list[dict]:
    """One row per estimator of ``cfg.compare`` (and ``cfg.model``), cross-validated on the same folds:
    ``{"model", "auc", "auc_ci_low", "auc_ci_high", "brier", ...}``, or ``{"model", "skipped": reason}``.
    ``done`` maps estimators already cross-validated to their out-of-fold probabilities."""
    rows = []
    for kind in dict.fromkeys([cfg.model, *cfg.compare]):
        if kind == "catboost" and not catboost_available():
            rows.append({"model": kind, "skipped": "not installed (pip install 'synthseq[catboost]')"})
            continue
        oof = done[kind] if kind in done else cross_validated_probabilities(cfg, x, y, kind)
        rows.append({"model": kind, **binary_report(y, oof, cfg.threshold, cfg.n_boot, cfg.seed)})
    return rows


def load_design(cfg: OutcomeConfig, cohort, synthesizer: Synth | None = None, cache_dir=None):
    """Design matrix of ``cohort`` for ``cfg`` (builds the pseudo-STIR source when needed)."""
    pseudo = None
    if cfg.image_features == "pseudostir":
        pseudo = PseudoStirSource.create(cfg.synthesis_checkpoint, cfg.pseudo_stir_dir, synthesizer,
                                         cache_dir=cache_dir, device=cfg.device)
        if pseudo is None:
            raise ConfigError("image_features 'pseudostir' needs synthesis_checkpoint or pseudo_stir_dir")
    root = Path(cfg.data) if Path(cfg.data).is_dir() else None
    return design_matrix(cohort, cfg.image_features, root, pseudo)


def fit_outcome(cfg: OutcomeConfig, synthesizer: Synth | None = None) -> dict:
    """Cross-validate, fit on all subjects, explain, and write ``cfg.out_dir``.

    Writes ``model.ssmodel`` (loads alone, with its bootstrap ensemble), ``metrics.json`` (CV AUC with CI, Brier,
    calibration, van Middendorp baseline, the estimators' comparison, SHAP additivity error, agreement with the
    generator's true coefficients when known), ``comparison.csv``,
    ``calibration.png``, ``shap_summary.png``, ``shap_values.csv`` and ``shap_<subject>.png``.
    """
    from .plots import calibration_plot

    cfg.validate()
    out = Path(cfg.out_dir)
    cohort = read_cohort(cfg.data)
    cohort.require([cfg.target])
    y = cohort.flag(cfg.target)
    x, names = load_design(cfg, cohort, synthesizer, cache_dir=out / "pseudo_stir")
    oof = cross_validated_probabilities(cfg, x, y)
    report = binary_report(y, oof, cfg.threshold, cfg.n_boot, cfg.seed)
    comparison = compare_estimators(cfg, x, y, {cfg.model: oof})
    curves = {f"{cfg.model} ({cfg.image_features})": calibration_bins(y, oof, cfg.calibration_bins)}
    metrics: dict = {"target": cfg.target, "model": cfg.model, "image_features": cfg.image_features,
                     "n": len(y), "n_positive": int(y.sum()), "cv": report, "calibration": curves}
    score = van_middendorp_from_cohort(cohort)
    vm_p = van_middendorp_probability(score)
    lo, hi = bootstrap_ci(auc, y, score, cfg.n_boot, cfg.seed)
    metrics["van_middendorp"] = {"auc": auc(y, score), "auc_ci_low": lo, "auc_ci_high": hi, "brier": brier(y, vm_p)}
    curves["van Middendorp"] = calibration_bins(y, vm_p, cfg.calibration_bins)
    metrics["comparison"] = comparison
    metrics["cohort"] = _cohort_description(cfg.data)
    metrics["uncertainty"] = {"method": "bootstrap ensemble", "n_members": cfg.n_ensemble, "level": 0.95,
                              "description": f"2.5th-97.5th percentile of the probabilities of {cfg.n_ensemble} "
                                             "refits on bootstrap resamples of the training subjects"}

    model = OutcomeModel(cfg, names, make_estimator(cfg).fit(x, y), x, {}, fit_ensemble(cfg, x, y))
    values, base = shap_values(model, x)
    metrics["shap"] = {"base_value": base,
                       "additivity_max_error": float(np.max(np.abs(base + values.sum(1) - model.decision_function(x)))),
                       "mean_abs": dict(zip(names, np.abs(values).mean(0).round(6).tolist()))}
    record = read_dataset_json(cfg.data).get("cohort_model", {}) if Path(cfg.data).is_dir() else {}
    truth = compare_with_truth(names, np.abs(values).mean(0), cohort, record, cfg.target)
    if truth is not None:
        metrics["truth_comparison"] = truth
    model.metrics = metrics
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL_FILE)
    _write_comparison(comparison, out / "comparison.csv")
    from ..config import save_config

    save_config(cfg, out / "config.yaml")
    calibration_plot(curves, out / "calibration.png", f"{cfg.target}: {len(y)} subjects, {cfg.cv_folds}-fold CV")
    _write_explanations(model, x, cohort.subjects, values, base, out, cfg.explain_subjects)
    atomic_write_text(out / "metrics.json", json.dumps(json_safe(metrics), indent=2))
    return metrics


def _cohort_description(data) -> dict:
    """What the model card says about the training cohort: its source and whether it is the synthetic phantom."""
    data = Path(data)
    record = read_dataset_json(data) if data.is_dir() else {}
    generator = str(record.get("generator", "")) if isinstance(record, dict) else ""
    return {"data": str(data), "generator": generator or None, "preset": record.get("preset"),
            "synthetic_phantom": generator.startswith("synthseq.phantom")}


def _write_comparison(rows: list[dict], path: Path) -> Path:
    keys = ["model", "auc", "auc_ci_low", "auc_ci_high", "brier", "sensitivity", "specificity", "n", "skipped"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(keys)
        for r in rows:
            w.writerow(["" if r.get(k) is None else (f"{r[k]:.6f}" if isinstance(r.get(k), float) else r[k])
                        for k in keys])
    return path


def _write_explanations(model: OutcomeModel, x, subjects, values, base, out: Path, n_patients: int,
                        only=None) -> list[Path]:
    from .plots import shap_patient_plot, shap_summary_plot

    paths = [shap_summary_plot(values, x, model.feature_names, out / "shap_summary.png")]
    with atomic_path(out / "shap_values.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["subject", "base_value", "log_odds", *model.feature_names])
        logit = model.decision_function(x)
        for i, s in enumerate(subjects):
            w.writerow([s, f"{base:.6f}", f"{logit[i]:.6f}", *(f"{v:.6f}" for v in values[i])])
    chosen = list(only) if only else list(subjects[:n_patients])
    index = {s: i for i, s in enumerate(subjects)}
    for s in chosen:
        i = index[s]
        p = model.predict_proba(x[i: i + 1])[0]
        paths.append(shap_patient_plot(values[i], base, x[i], model.feature_names,
                                       f"{s}: P({model.cfg.target}) = {p:.2f}", out / f"shap_{s}.png"))
        contributions = dict(zip(model.feature_names, values[i].round(6).tolist()))
        atomic_write_text(out / f"shap_{s}.json", json.dumps(
            {"subject": s, "target": model.cfg.target, "probability": float(p), "base_value": base,
             "log_odds": float(model.decision_function(x[i: i + 1])[0]), "contributions": contributions}, indent=2))
    return paths


def _model_design(model: OutcomeModel, data, checkpoint=None, synthesizer: Synth | None = None,
                  subjects=None):
    cohort = read_cohort(data)
    if subjects:
        cohort = cohort.subset(subjects)
    cfg = model.cfg
    pseudo_cfg = OutcomeConfig(**{**to_dict(cfg), "data": str(data),
                                  "synthesis_checkpoint": str(checkpoint) if checkpoint else cfg.synthesis_checkpoint})
    x, names = load_design(pseudo_cfg, cohort, synthesizer)
    if names != model.feature_names:
        raise InputError(f"{data}: features {names} do not match the model's {model.feature_names}")
    return cohort, x


def predict_outcome(model_path, data, out, checkpoint=None, synthesizer: Synth | None = None) -> Path:
    """Probabilities of the model's target for every cohort subject of ``data`` -> CSV ``out``."""
    model = OutcomeModel.load(model_path)
    cohort, x = _model_design(model, data, checkpoint, synthesizer)
    p = model.predict_proba(x)
    with atomic_path(out) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["subject", f"prob_{model.cfg.target}", f"pred_{model.cfg.target}"])
        for s, pi in zip(cohort.subjects, p):
            w.writerow([s, f"{pi:.6f}", int(pi >= model.cfg.threshold)])
    return Path(out)


def explain_outcome(model_path, data, out_dir, subjects=None, checkpoint=None,
                    synthesizer: Synth | None = None) -> dict:
    """SHAP summary plot + values for all cohort subjects of ``data``, and a per-patient plot/JSON for ``subjects``
    (default: the first three). Returns ``{"additivity_max_error", "files"}``."""
    model = OutcomeModel.load(model_path)
    cohort, x = _model_design(model, data, checkpoint, synthesizer)
    if subjects:
        cohort.subset(subjects)  # raises for unknown subjects
    values, base = shap_values(model, x)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = _write_explanations(model, x, cohort.subjects, values, base, out, 3, only=subjects)
    err = float(np.max(np.abs(base + values.sum(1) - model.decision_function(x))))
    return {"additivity_max_error": err, "files": [str(f) for f in files]}
