"""The spinal-cord-injury outcome web page (Flask): a prediction a clinician can read, with its reasons.

``create_app(models, ...)`` serves the outcome models given at start (never a path from a request)::

    GET  /                          the page: one form of the models' inputs, model cards, batch upload
    GET  /api/schema                fields (unit, range), models (cards), request / response schema
    POST /api/predict               one patient -> per model: probability, 95% interval, SHAP waterfall data;
                                    van Middendorp score and probability; optional T2w (+ label map) upload
    POST /api/batch                 a cohort CSV -> CSV of probabilities and each patient's top SHAP features
    GET  /api/models/N/calibration.png  the model card's calibration plot

Request to ``/api/predict``: ``application/json`` ``{"patient": {FIELD: value, ...}, "explain": true}``, or
``multipart/form-data`` with ``patient`` (that JSON object as text), optional files ``t2w`` and ``labels``
(NIfTI) and ``csrf_token``. Every field is required; an unknown, missing or out-of-range field gives HTTP 422
``{"errors": {FIELD: message}}``. See :data:`API_SCHEMA` (also in ``synthseq outcome serve --help``).

Safety: loopback by default, and the Host header must then name the loopback (no DNS rebinding); form-style
posts (multipart, urlencoded, text/plain: what another site can send) need the page's CSRF token, JSON and
CSV bodies need a same-origin ``Origin`` when one is sent (cross-site pages cannot send them without a CORS
preflight, which is never granted); request size is limited; uploads live in a temporary folder removed
before the answer is sent; nothing about a patient is stored or logged unless ``log_predictions`` is given.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from flask import Flask, Response, abort, jsonify, render_template, request
from werkzeug.exceptions import RequestEntityTooLarge

from ...errors import InputError
from ...web import ServerThread, make_server, register_page, serve_forever
from ..dataset import Cohort, read_cohort
from ..features import FEATURE_NAMES, extract_features, hyperintense_masks
from ..outcome import Explainer, OutcomeModel, design_matrix
from ..rules import RULE_COLUMNS, van_middendorp_probability, van_middendorp_score
from .fields import CLINICAL_FIELDS, IMAGE_FIELDS, Field, validate
from .schema import API_SCHEMA

TITLE = "Spinal cord injury outcome"
TARGETS = {
    "ambulation_discharge": ("Ambulation at discharge", "walks independently", "does not walk independently"),
    "ais_improvement": ("AIS improvement", "improves by at least one AIS grade", "no AIS grade improvement"),
}
ESTIMATORS = {"hgb": "gradient boosting (HistGradientBoosting)", "logreg": "logistic regression",
              "catboost": "CatBoost"}
VOLUME_SOURCES = ("t2w", "pseudostir")  #: image-feature sources the page measures on an uploaded T2w
DISCLAIMER = "Research use only, not a medical device."
MAX_BATCH_ROWS = 10_000
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")



class PageModel:
    """One served model: the model, its SHAP explainer (built once), the fields it reads and its card."""

    def __init__(self, index: int, model: OutcomeModel, path: str | None, key: str) -> None:
        self.index, self.model, self.path, self.key = index, model, path, key
        self.source = model.cfg.image_features
        if self.source == "stir":
            raise InputError(f"{path or key}: the model measures image features on acquired STIR, which the page "
                             "cannot take (serve a model fitted with image_features none, cohort, t2w or pseudostir)")
        self.explainer = Explainer(model)
        self.fields = dict(CLINICAL_FIELDS) | (dict(IMAGE_FIELDS) if self.source == "cohort" else {})
        self.card = model_card(model, path)
        self.calibration_png = _calibration_png(model)

    @property
    def needs_volume(self) -> bool:
        return self.source in VOLUME_SOURCES

    def design(self, cohort: Cohort, image_row: np.ndarray | None) -> np.ndarray:
        """``(N, F)`` features of ``cohort`` (+ measured image features ``(F_img,)``) in the model's order."""
        x, names = design_matrix(cohort, "cohort" if self.source == "cohort" else "none")
        if self.needs_volume:
            x = np.concatenate([x, np.broadcast_to(image_row, (len(x), len(image_row)))], axis=1)
            names = names + [f"img_{n}" for n in FEATURE_NAMES]
        if names != self.model.feature_names:
            raise InputError(f"{self.key}: features {names} do not match the model's {self.model.feature_names}")
        return x

    def explain(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        return self.explainer(x)

    def outside_range(self, row: np.ndarray, texts: dict) -> list[str]:
        """Messages for the patient's features that lie outside the training cohort's range (extrapolation)."""
        bg = np.asarray(self.model.background, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            lo, hi = np.nanmin(bg, axis=0), np.nanmax(bg, axis=0)
        out = []
        for j, name in enumerate(self.model.feature_names):
            v = row[j]
            if np.isfinite(v) and np.isfinite(lo[j]) and not lo[j] <= v <= hi[j]:
                field = self.fields.get(name)
                label = field.label if field else name
                shown = texts.get(name, f"{v:.3g}")
                if name in ("neuro_level", "ais_admission", "sex"):
                    rng = "outside the levels/grades seen in training"
                else:
                    rng = f"outside the training cohort's range {lo[j]:.4g}–{hi[j]:.4g}"
                out.append(f"{label} = {shown} is {rng}: the model extrapolates")
        return out


def model_card(model: OutcomeModel, path: str | None) -> dict:
    """What the page states about a model: cohort, size, cross-validated performance, uncertainty, caveats."""
    m, cfg = model.metrics or {}, model.cfg
    cv, vm = m.get("cv", {}), m.get("van_middendorp", {})
    cohort = m.get("cohort") or {}
    title, _, _ = TARGETS.get(cfg.target, (cfg.target, "", ""))
    return {
        "target": cfg.target, "title": title, "estimator": cfg.model, "estimator_name": ESTIMATORS.get(cfg.model),
        "image_features": cfg.image_features, "file": Path(path).name if path else None,
        "cohort": {"name": Path(cohort["data"]).name if cohort.get("data") else None,
                   "n": m.get("n", len(model.background)), "n_positive": m.get("n_positive"),
                   "synthetic_phantom": cohort.get("synthetic_phantom")},
        "cv": {"folds": cfg.cv_folds, "auc": cv.get("auc"), "auc_ci_low": cv.get("auc_ci_low"),
               "auc_ci_high": cv.get("auc_ci_high"), "brier": cv.get("brier")},
        "van_middendorp": {"auc": vm.get("auc"), "auc_ci_low": vm.get("auc_ci_low"),
                           "auc_ci_high": vm.get("auc_ci_high"), "brier": vm.get("brier")},
        "comparison": m.get("comparison", []),
        "uncertainty": m.get("uncertainty") or ({"method": "bootstrap ensemble", "n_members": len(model.ensemble),
                                                 "level": 0.95} if model.ensemble else None),
        "threshold": cfg.threshold, "disclaimer": DISCLAIMER,
    }


def _calibration_png(model: OutcomeModel) -> bytes | None:
    curves = (model.metrics or {}).get("calibration")
    if not curves:
        return None
    from ..plots import calibration_plot

    with tempfile.TemporaryDirectory(prefix="synthseq-outcome-card-") as tmp:
        path = calibration_plot(curves, Path(tmp) / "c.png", f"{model.cfg.target}: cross-validated")
        return path.read_bytes()


def _keys(models: list[OutcomeModel]) -> list[str]:
    """Column-safe names: the target, plus the estimator when two models share a target."""
    targets = [m.cfg.target for m in models]
    keys = [t if targets.count(t) == 1 else f"{t}_{m.cfg.model}" for t, m in zip(targets, models)]
    return [k if keys.count(k) == 1 else f"{k}_{i}" for i, k in enumerate(keys)]


def _display(name: str, field: Field | None, text: str | None, value: float) -> tuple[str, str]:
    """A feature value as the clinician entered it (``("C5", "")``, ``("45", "years")``)."""
    if field is not None and text is not None:
        return text, field.unit
    return (f"{value:.3g}" if np.isfinite(value) else "n/a"), unit_of(name)


def unit_of(name: str) -> str:
    """Unit of a measured image feature from its name (``img_cord_lesion_length_mm`` -> ``mm``)."""
    return "mm" if name.endswith("_mm") else "mL" if name.endswith("_ml") else ""


class Predictor:
    """Everything the routes compute, without Flask: validation, image measurement, predictions, batch CSV."""

    def __init__(self, models: list, paths: list[str | None], synthesizer: Callable | None = None,
                 upload_root: str | Path | None = None) -> None:
        if not models:
            raise InputError("outcome serve: give at least one model file")
        keys = _keys(models)
        self.models = [PageModel(i, m, p, k) for i, (m, p, k) in enumerate(zip(models, paths, keys))]
        self.synthesizer = synthesizer
        self.upload_root = str(upload_root) if upload_root is not None else None
        for pm in self.models:
            if pm.source == "pseudostir" and synthesizer is None:
                raise InputError(f"{pm.path or pm.key}: the model uses pseudo-STIR image features: start the page "
                                 "with --checkpoint (a synthesis checkpoint)")
        self.fields: dict[str, Field] = {}
        for pm in self.models:
            self.fields.update(pm.fields)

    # ------------------------------------------------------------------------------------------ one patient
    def predict(self, patient, explain: bool = True, files: dict | None = None) -> tuple[dict | None, dict]:
        """``(response, errors)`` for one patient (dict of field values) and optional uploads
        (``{"t2w": FileStorage, "labels": FileStorage}``)."""
        if not isinstance(patient, dict):
            return None, {"patient": "expected a JSON object of field values"}
        texts, errors = validate(patient, self.fields)
        image, image_rows = None, {}
        if files:
            image, image_rows, file_errors = self._measure(files)
            errors.update(file_errors)
        if errors:
            return None, errors
        cohort = Cohort(Path("request"), ["patient"], {k: [v] for k, v in texts.items()})
        results = []
        for pm in self.models:
            if pm.needs_volume and pm.source not in image_rows:
                need = "a T2w and its tissue label map" if pm.source == "t2w" else \
                    "a T2w and its tissue label map (pseudo-STIR is synthesized from the T2w)"
                results.append({"model": pm.index, "key": pm.key, "target": pm.model.cfg.target,
                                "title": pm.card["title"], "unavailable": f"this model uses image features: upload "
                                f"{need}"})
                continue
            x = pm.design(cohort, image_rows.get(pm.source))
            results.append(self._result(pm, x, texts, explain))
        return {"results": results, "van_middendorp": _van_middendorp(texts), "image": image}, {}

    def _result(self, pm: PageModel, x: np.ndarray, texts: dict, explain: bool) -> dict:
        model, cfg = pm.model, pm.model.cfg
        p = float(model.predict_proba(x)[0])
        title, yes, no = TARGETS.get(cfg.target, (cfg.target, "positive", "negative"))
        out = {"model": pm.index, "key": pm.key, "target": cfg.target, "title": title, "estimator": cfg.model,
               "probability": p, "threshold": cfg.threshold, "positive": p >= cfg.threshold,
               "answer": yes if p >= cfg.threshold else no, "log_odds": float(model.decision_function(x)[0])}
        out["outside_training_range"] = pm.outside_range(x[0], texts)
        iv = model.interval(x)
        u = pm.card["uncertainty"] or {}
        out["interval"] = None if iv is None else {
            "low": float(iv[0][0]), "high": float(iv[1][0]), "level": 0.95,
            "method": f"bootstrap ensemble: 2.5th-97.5th percentile of {u.get('n_members', len(model.ensemble))} "
                      "refits on resamples of the training cohort"}
        if explain:
            values, base = pm.explain(x)
            contrib = []
            for j, name in enumerate(model.feature_names):
                field = pm.fields.get(name)
                value, unit = _display(name, field, texts.get(name), float(x[0, j]))
                contrib.append({"feature": name, "label": field.label if field else name.replace("_", " "),
                                "value": value, "unit": unit, "shap": float(values[0, j])})
            contrib.sort(key=lambda c: -abs(c["shap"]))
            out["shap"] = {"base_value": base, "units": "log-odds", "contributions": contrib,
                           "additivity_error": float(abs(base + values[0].sum() - out["log_odds"]))}
        return out

    def _measure(self, files: dict) -> tuple[dict | None, dict, dict]:
        """Measure image features on uploads; ``(image panel, {source: (F_img,)}, errors)``. The uploads are
        written to a temporary folder that is removed before this returns."""
        from ...io import load_volume

        t2w_file, labels_file = files.get("t2w"), files.get("labels")
        if t2w_file is None or not t2w_file.filename:
            return None, {}, ({"t2w": "a label map was given without its T2w"} if labels_file else {})
        errors: dict[str, str] = {}
        with tempfile.TemporaryDirectory(prefix="synthseq-outcome-upload-", dir=self.upload_root) as tmp:
            vols = {}
            for name, f, what in (("t2w", t2w_file, "uploaded T2w"), ("labels", labels_file, "uploaded label map")):
                if f is None or not f.filename:
                    continue
                fname = f.filename.lower()
                suffix = ".nii.gz" if fname.endswith(".nii.gz") else ".nii" if fname.endswith(".nii") else None
                if suffix is None:
                    errors[name] = f"{what}: expected a NIfTI file (.nii or .nii.gz), got {f.filename[:60]!r}"
                    continue
                dest = Path(tmp) / f"{name}{suffix}"
                f.save(dest)
                try:
                    vols[name] = load_volume(dest, allow_zero=name == "labels")
                except InputError as exc:
                    errors[name] = str(exc).replace(str(dest), what)
                except MemoryError:
                    errors[name] = f"{what}: too large to load"
            if errors:
                return None, {}, errors
            t2w, labels = vols["t2w"], vols.get("labels")
            if labels is not None and labels.shape != t2w.shape:
                return None, {}, {"labels": f"uploaded label map: grid {labels.shape} differs from the T2w's "
                                            f"{t2w.shape}"}
            pseudo = None
            if self.synthesizer is not None:
                try:
                    pseudo = self.synthesizer(t2w)
                except Exception as exc:  # noqa: BLE001 - any failure on this upload is the upload's answer
                    msg = (str(exc).splitlines() or [type(exc).__name__])[0].replace(str(t2w.path), "uploaded T2w")
                    return None, {}, {"t2w": f"pseudo-STIR synthesis failed on the uploaded T2w: {msg}"[:300]}
            rows: dict[str, np.ndarray] = {}
            need = {pm.source for pm in self.models if pm.needs_volume}
            if need and labels is None:
                return None, {}, {"labels": "image features need the tissue label map on the T2w grid (synthseq "
                                            "has no T2w segmentation yet): upload it beside the T2w"}
            for source in need:
                img = t2w if source == "t2w" else pseudo
                if img is None:
                    continue
                try:
                    feats = extract_features(img, labels)
                except InputError as exc:
                    return None, {}, {"labels": str(exc).replace(str(Path(tmp) / "labels"), "uploaded label map")}
                rows[source] = np.array([feats[n] for n in FEATURE_NAMES], dtype=np.float64)
            panel = _image_panel(t2w, pseudo, labels)
            panel["features"] = {s: dict(zip(FEATURE_NAMES, r.round(4).tolist())) for s, r in rows.items()}
        return panel, rows, {}

    # ------------------------------------------------------------------------------------------------ batch
    def batch(self, data: bytes) -> tuple[str | None, dict]:
        """``(CSV text, errors)`` for a cohort CSV (``subject`` + the fields; other columns are ignored)."""
        models = [pm for pm in self.models if not pm.needs_volume]
        if not models:
            return None, {"file": "every served model needs image features; the batch CSV takes clinical inputs"}
        with tempfile.TemporaryDirectory(prefix="synthseq-outcome-batch-", dir=self.upload_root) as tmp:
            path = Path(tmp) / "cohort.csv"
            path.write_bytes(data)
            try:
                cohort = read_cohort(path)
            except (InputError, UnicodeDecodeError, csv.Error) as exc:
                msg = str(exc).replace(str(path), "uploaded CSV") if isinstance(exc, InputError) else \
                    f"uploaded CSV: not a readable CSV ({type(exc).__name__})"
                return None, {"file": msg}
        if len(cohort.subjects) > MAX_BATCH_ROWS:
            return None, {"file": f"uploaded CSV: {len(cohort.subjects)} rows, at most {MAX_BATCH_ROWS}"}
        fields = {}
        for pm in models:
            fields.update(pm.fields)
        missing = [n for n in fields if n not in cohort.columns]
        if missing:
            return None, {n: "missing column" for n in missing}
        texts: dict[str, list[str]] = {n: [] for n in fields}
        errors: dict[str, str] = {}
        for i in range(len(cohort.subjects)):
            row, err = validate({n: cohort.columns[n][i] for n in fields}, fields)
            for n, msg in err.items():
                if len(errors) < 50:
                    errors[f"row {i + 2}: {n}"] = msg
            for n in fields:
                texts[n].append(row.get(n, ""))
        if errors:
            return None, errors
        clean = Cohort(Path("upload"), cohort.subjects, texts)
        cols, header = [], ["subject"]
        for pm in models:
            x = pm.design(clean, None)
            p = pm.model.predict_proba(x)
            iv = pm.model.interval(x)
            values, _ = pm.explain(x)
            top = []
            for i in range(len(x)):
                order = np.argsort(-np.abs(values[i]))[:3]
                top.append("; ".join(f"{pm.model.feature_names[j]} {values[i, j]:+.3f}" for j in order))
            cols += [[f"{v:.6f}" for v in p]]
            cols += [[f"{v:.6f}" for v in iv[0]], [f"{v:.6f}" for v in iv[1]]] if iv is not None else [[""] * len(x)] * 2
            cols += [top]
            header += [f"prob_{pm.key}", f"low_{pm.key}", f"high_{pm.key}", f"top_shap_{pm.key}"]
        score = van_middendorp_score(*(np.array([float(v) for v in texts[c]]) for c in RULE_COLUMNS))
        cols += [[str(int(s)) for s in np.atleast_1d(score)],
                 [f"{v:.6f}" for v in np.atleast_1d(van_middendorp_probability(score))]]
        header += ["van_middendorp_score", "van_middendorp_probability"]
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(header)
        for i, s in enumerate(cohort.subjects):
            w.writerow([s] + [c[i] for c in cols])
        return out.getvalue(), {}


def _van_middendorp(texts: dict) -> dict:
    score = int(van_middendorp_score(*(float(texts[c]) for c in RULE_COLUMNS)))
    return {"score": score, "probability": float(van_middendorp_probability(score)), "range": [-10, 40],
            "predicts": "independent walking (van Middendorp et al., Lancet 2011)"}


def _image_panel(t2w, pseudo, labels) -> dict:
    """T2w | pseudo-STIR at the sagittal slice with the most hyperintense lesion voxels, as a PNG data URI."""
    from ...data.slicing import SagittalView

    view = SagittalView.from_affine(t2w.affine)
    a = view.to_slices(t2w.data)
    b = view.to_slices(pseudo.data) if pseudo is not None else None
    s, how = a.shape[0] // 2, "middle slice"
    if labels is not None:
        lab = np.rint(labels.data).astype(np.int64)
        try:
            masks = hyperintense_masks(np.asarray((pseudo if pseudo is not None else t2w).data, np.float64), lab,
                                       t2w.affine)
            count = view.to_slices((masks["cord"] | masks["marrow"]).astype(np.uint8)).sum(axis=(1, 2))
        except (InputError, ValueError, IndexError):  # labels without the regions the masks need
            count = np.zeros(1)
        if count.max() > 0:
            s, how = int(np.argmax(count)), f"slice with the most hyperintense lesion voxels ({int(count.max())})"
    from matplotlib.figure import Figure  # not pyplot: requests are served from several threads

    panels = [("T2w", a)] + ([("pseudo-STIR", b)] if b is not None else [])
    fig = Figure(figsize=(3.2 * len(panels), 4.2))
    axes = fig.subplots(1, len(panels))
    for ax, (name, arr) in zip(np.atleast_1d(axes), panels):
        lo, hi = np.percentile(arr, [0.5, 99.5])
        ax.imshow(arr[s], cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, aspect="auto")
        ax.set_title(f"{name}, sagittal slice {s + 1}/{arr.shape[0]}", fontsize=8)
        ax.axis("off")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return {"png": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(), "slice": s,
            "slice_choice": how, "pseudo_stir": pseudo is not None}


# ---------------------------------------------------------------------------------------------------- Flask
def create_app(models, *, paths: list[str | None] | None = None, synthesizer: Callable | None = None,
               log_predictions: str | Path | None = None, max_upload_mb: float = 64.0, host: str = "127.0.0.1",
               upload_root: str | Path | None = None, csrf_token: str | None = None) -> Flask:
    """The outcome page for ``models`` (:class:`OutcomeModel` objects or model file paths, loaded here once).

    Args:
        paths: the files the models came from (shown on the cards), when ``models`` are objects.
        synthesizer: ``Volume (T2w) -> Volume (pseudo-STIR)`` for uploads (``--checkpoint``), or None.
        log_predictions: a JSON-lines file that each answer is appended to; None (default) logs nothing.
        max_upload_mb: request size limit (HTTP 413 beyond it).
        host: the address served; on a loopback address the Host header must name the loopback too.
        upload_root: where the temporary upload folders are made (default: the system's).
        csrf_token: fixed token (tests); default a fresh random one per start.
    """
    loaded, names = [], []
    for i, m in enumerate(models):
        if isinstance(m, OutcomeModel):
            loaded.append(m)
            names.append(paths[i] if paths else None)
        else:
            loaded.append(OutcomeModel.load(m))
            names.append(str(m))
    predictor = Predictor(loaded, names, synthesizer, upload_root)
    token = csrf_token or secrets.token_urlsafe(32)
    log_lock = threading.Lock()
    loopback = host in _LOOPBACK or host.startswith("127.")

    here = Path(__file__).parent
    app = Flask(__name__, static_folder=str(here / "static"), template_folder=str(here / "templates"))
    app.jinja_env.filters["f3"] = lambda v: "n/a" if v is None or not np.isfinite(v) else f"{v:.3f}"
    app.config.update(MAX_CONTENT_LENGTH=int(max_upload_mb * 1024 * 1024), JSON_SORT_KEYS=False)
    app.url_map.merge_slashes = False
    app.extensions["synthseq_outcome"] = predictor

    def fail(errors: dict, status: int = 422):
        return jsonify(errors=errors), status

    @app.before_request
    def guard():
        h = request.host or ""
        hostname = h[1:h.index("]")] if h.startswith("[") and "]" in h else h.split(":")[0]
        if loopback and hostname not in _LOOPBACK and not hostname.startswith("127."):
            return jsonify(error=f"unexpected Host {request.host[:80]!r}: this page answers on the loopback only"), 400
        if request.method != "POST":
            return None
        ctype = (request.mimetype or "").lower()
        origin = request.headers.get("Origin")
        if origin is not None and origin.rstrip("/") != request.host_url.rstrip("/"):
            return jsonify(error="cross-origin request refused"), 403
        sent = request.headers.get("X-CSRF-Token")
        if sent is not None and not secrets.compare_digest(sent, token):
            return jsonify(error="CSRF token mismatch"), 403
        if ctype in ("application/json", "text/csv"):
            return None  # not sendable cross-site without a CORS preflight, which is never granted
        if ctype in ("multipart/form-data", "application/x-www-form-urlencoded", "text/plain", ""):
            form_token = request.form.get("csrf_token")
            if not secrets.compare_digest(str(sent or form_token or ""), token):
                return jsonify(error="missing or wrong CSRF token (reload the page)"), 403
            return None
        return jsonify(error=f"unsupported content type {ctype!r} (use application/json)"), 415

    @app.after_request
    def headers(response):
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = _CSP
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc):
        return fail({"upload": f"request larger than the {max_upload_mb:g} MB limit (--max-upload-mb)"}, 413)

    @app.get("/")
    def page():
        return render_template("outcome.html", title=TITLE, fields=list(predictor.fields.values()),
                               image_fields=[f for f in predictor.fields.values() if f.name in IMAGE_FIELDS],
                               models=predictor.models, csrf_token=token, disclaimer=DISCLAIMER,
                               uses_volume=any(pm.needs_volume for pm in predictor.models),
                               synthesizer=synthesizer is not None, max_upload_mb=max_upload_mb)

    @app.get("/api/schema")
    def schema():
        return jsonify(fields=[f.to_dict() for f in predictor.fields.values()],
                       models=[pm.card for pm in predictor.models], schema=API_SCHEMA,
                       image_upload={"synthesizes_pseudo_stir": synthesizer is not None,
                                     "max_upload_mb": max_upload_mb})

    @app.get("/api/models/<int:index>/calibration.png")
    def calibration(index: int):
        if not 0 <= index < len(predictor.models) or predictor.models[index].calibration_png is None:
            abort(404)
        return Response(predictor.models[index].calibration_png, mimetype="image/png")

    @app.post("/api/predict")
    def predict():
        files = None
        if request.mimetype == "application/json":
            body, err = _json_body(request.get_data(cache=False))
            if err:
                return jsonify(error=err), 400
        else:
            raw = request.form.get("patient")
            if raw is None:
                return fail({"patient": "missing form field 'patient' (a JSON object of field values)"})
            patient, err = _json_body(raw.encode())
            if err:
                return fail({"patient": err})
            body = {"patient": patient, "explain": request.form.get("explain", "true") != "false"}
            files = {k: request.files.get(k) for k in ("t2w", "labels")}
        if not isinstance(body, dict):
            return fail({"body": "expected a JSON object {\"patient\": {...}}"})
        unknown = [k for k in body if k not in ("patient", "explain")]
        if unknown:
            return fail({str(k)[:64]: f"unknown field {str(k)[:64]!r}" for k in unknown})
        if "patient" not in body:
            return fail({"patient": "missing field 'patient'"})
        explain = body.get("explain", True)
        if not isinstance(explain, bool):
            return fail({"explain": "must be true or false"})
        answer, errors = predictor.predict(body["patient"], explain, files)
        if errors:
            return fail(errors)
        if log_predictions is not None:
            _log(log_predictions, log_lock, body["patient"], answer)
        return jsonify(answer)

    @app.post("/api/batch")
    def batch():
        if request.mimetype == "text/csv":
            data = request.get_data(cache=False)
        else:
            f = request.files.get("file")
            if f is None:
                return fail({"file": "missing CSV file field 'file'"})
            data = f.read()
        text, errors = predictor.batch(data)
        if errors:
            return fail(errors)
        return Response(text, mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=outcome_predictions.csv"})

    return app


def _json_body(raw: bytes):
    """``(object, None)`` or ``(None, message)`` for malformed or absurdly nested JSON."""
    try:
        return json.loads(raw), None
    except (ValueError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        return None, f"malformed JSON ({reason})"


def _log(path, lock, patient: dict, answer: dict) -> None:
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "patient": patient,
              "results": [{k: r.get(k) for k in ("key", "probability", "interval", "unavailable")}
                          for r in answer["results"]], "van_middendorp": answer["van_middendorp"],
              "image": answer["image"] is not None}
    with lock, open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


# --------------------------------------------------------------------------------------------------- server
def make_outcome_server(app: Flask, host: str = "127.0.0.1", port: int = 8050):
    """A threaded WSGI server for the page, bound but not yet serving (``port=0`` picks a free port); the one
    serving path of :mod:`synthseq.web` (port checked, a busy port named in one line)."""
    return make_server(app, host, port)


def serve_outcome(app: Flask, host: str = "127.0.0.1", port: int = 8050,
                  ready: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted; ``ready(base_url)`` is called once the socket listens."""
    serve_forever(make_outcome_server(app, host, port), ready)


class OutcomeServerThread(ServerThread):
    """The page served from a background thread (tests, notebooks): ``with OutcomeServerThread(app) as s: s.url``."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(make_outcome_server(app, host, port))


#: This page in the web-page registry (:mod:`synthseq.web`).
PAGE = register_page("outcome", TITLE, create_app, cli="synthseq outcome serve")
