"""The outcome page's app: API == `outcome predict`, SHAP additivity per request, field validation, CSRF,
uploads (features, cleanup, corrupt files, size limit), batch CSV, prediction log, serve CLI errors."""

import csv
import io
import json
import math

import numpy as np
import pytest

from synthseq.cli import main
from synthseq.downstream.dataset import read_cohort
from synthseq.downstream.outcome import OutcomeConfig, OutcomeModel, fit_outcome
from synthseq.downstream.web.app import create_app
from synthseq.downstream.web.fields import CLINICAL_FIELDS, IMAGE_FIELDS

TOKEN = "test-token"
SMALL = {"cv_folds": 3, "n_boot": 20, "n_ensemble": 5, "hgb_max_iter": 30, "hgb_min_samples_leaf": 2,
         "explain_subjects": 0}


def synth(t2w):
    """A stand-in synthesizer: a fixed affine map of the T2w (deterministic, so features can be compared)."""
    return t2w.with_data(t2w.data * 0.5 + 10.0)


@pytest.fixture(scope="module")
def fitted(dataset, tmp_path_factory):
    """Three fitted models: ambulation (hgb, clinical), AIS improvement (logreg, + cohort MRI columns),
    ambulation (logreg, + features measured on pseudo-STIR)."""
    root = tmp_path_factory.mktemp("webapp")
    specs = {"amb": dict(target="ambulation_discharge", model="hgb", image_features="none", compare=["hgb"]),
             "ais": dict(target="ais_improvement", model="logreg", image_features="cohort", compare=["logreg"]),
             "img": dict(target="ambulation_discharge", model="logreg", image_features="pseudostir",
                         compare=["logreg"])}
    out = {}
    for name, spec in specs.items():
        cfg = OutcomeConfig(data=str(dataset), out_dir=str(root / name), **spec, **SMALL)
        fit_outcome(cfg, synthesizer=synth if spec["image_features"] == "pseudostir" else None)
        out[name] = root / name / "model.ssmodel"
    return out


@pytest.fixture(scope="module")
def client(fitted):
    return create_app([str(fitted["amb"]), str(fitted["ais"])], csrf_token=TOKEN).test_client()


def _patients(dataset, fields=CLINICAL_FIELDS):
    cohort = read_cohort(dataset)
    return cohort.subjects, [{k: cohort.columns[k][i] for k in fields} for i in range(len(cohort.subjects))]


def _cli_probs(model, data, out):
    assert main(["outcome", "predict", "--model", str(model), "--data", str(data), "--out", str(out)]) == 0
    return {r["subject"]: float(next(v for k, v in r.items() if k.startswith("prob_"))) for r in csv.DictReader(open(out))}


def test_api_agrees_with_outcome_predict_and_shap_adds_up(client, fitted, dataset, tmp_path):
    cli_amb = _cli_probs(fitted["amb"], dataset, tmp_path / "amb.csv")
    cli_ais = _cli_probs(fitted["ais"], dataset, tmp_path / "ais.csv")
    models = [OutcomeModel.load(fitted["amb"]), OutcomeModel.load(fitted["ais"])]
    subjects, patients = _patients(dataset, {**CLINICAL_FIELDS, **IMAGE_FIELDS})
    for i, (s, patient) in enumerate(zip(subjects, patients)):
        patient = {k: (float(v) if k in ("age", "cord_lesion_length_mm") else v) for k, v in patient.items()}
        r = client.post("/api/predict", json={"patient": patient})
        assert r.status_code == 200, r.json
        amb, ais = r.json["results"]
        assert abs(amb["probability"] - cli_amb[s]) <= 1e-6 and abs(ais["probability"] - cli_ais[s]) <= 1e-6
        for res, model in zip((amb, ais), models):
            shap = res["shap"]
            total = shap["base_value"] + sum(c["shap"] for c in shap["contributions"])
            assert total == pytest.approx(res["log_odds"], abs=1e-6)
            assert res["log_odds"] == pytest.approx(model.decision_function(model.background[i:i + 1])[0], abs=1e-9)
            assert {c["feature"] for c in shap["contributions"]} == set(model.feature_names)
            lo, hi = res["interval"]["low"], res["interval"]["high"]
            assert 0 <= lo <= hi <= 1 and "bootstrap ensemble" in res["interval"]["method"]
        vm = r.json["van_middendorp"]
        assert -10 <= vm["score"] <= 40 and 0 < vm["probability"] < 1
    lems = next(c for c in amb["shap"]["contributions"] if c["feature"] == "lems")
    assert lems["unit"] == "points" and lems["value"] == patients[-1]["lems"]
    r = client.post("/api/predict", json={"patient": patient, "explain": False})
    assert "shap" not in r.json["results"][0]


def test_page_shows_form_and_model_cards(client):
    r = client.get("/")
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and "script-src 'self'" in r.headers["Content-Security-Policy"]
    for f in {**CLINICAL_FIELDS, **IMAGE_FIELDS}.values():
        assert f'id="in-{f.name}"' in page and f'id="err-{f.name}"' in page and f.label in page
    assert "0–50 points" in page and "15–100 years" in page and "0–365 days" in page
    assert page.count("Research use only, not a medical device.") >= 3  # header + both cards
    assert page.count("Trained on the synthetic phantom cohort") == 2
    assert "cross-validated AUC" in page and "Brier score" in page and f'content="{TOKEN}"' in page
    png = client.get("/api/models/0/calibration.png")
    assert png.status_code == 200 and png.data[:4] == b"\x89PNG"
    assert client.get("/api/models/7/calibration.png").status_code == 404
    schema = client.get("/api/schema").json
    assert [f["name"] for f in schema["fields"]][:3] == ["age", "sex", "neuro_level"]
    assert schema["models"][0]["cohort"] == {"name": "phantom", "n": 16, "n_positive": schema["models"][0]["cohort"]
                                             ["n_positive"], "synthetic_phantom": True}
    assert schema["models"][0]["cv"]["auc"] is not None and "POST /api/predict" in schema["schema"]


BAD = [("age", -1, "Age must be between 15 and 100 years, got -1"), ("age", 101, "between 15 and 100"),
       ("age", "old", "Age must be a number, got 'old'"), ("age", True, "Age must be a number"),
       ("age", float("nan"), "Age must be a finite number"), ("age", [3], "Age must be a number"),
       ("sex", "X", "Sex must be one of M, F"), ("neuro_level", "C9", "Neurological level must be one of"),
       ("ais_admission", "F", "AIS grade at admission must be one of A, B, C, D, E"),
       ("uems", 51, "UEMS must be between 0 and 50 points"), ("lems", 10.5, "LEMS must be a whole number"),
       ("lems", -1, "LEMS must be between 0 and 50 points, got -1"), ("l3_motor_l", 6, "between 0 and 5 grade"),
       ("s1_motor_r", -1, "S1 motor, right must be between"), ("l3_lt_r", 3, "L3 light touch, right must be between 0 and 2"),
       ("s1_lt_l", 2.5, "whole number"), ("days_to_rehab", 400, "Days to admission must be between 0 and 365 days"),
       ("cord_lesion_length_mm", -3, "Cord lesion length must be between 0 and 200 mm"), ("fracture", 2, "between 0 and 1"),
       ("age", None, "Age is required"), ("sex", "", "Sex is required")]


@pytest.mark.parametrize(("field", "value", "message"), BAD, ids=[f"{f}={v!r}" for f, v, _ in BAD])
def test_each_bad_value_gives_422_naming_the_field(client, dataset, field, value, message):
    _, patients = _patients(dataset, {**CLINICAL_FIELDS, **IMAGE_FIELDS})
    patient = dict(patients[0], **{field: value})
    r = client.post("/api/predict", data=json.dumps({"patient": patient}, allow_nan=True),
                    content_type="application/json")
    assert r.status_code == 422
    assert list(r.json["errors"]) == [field] and message in r.json["errors"][field]


def test_missing_unknown_and_malformed_requests(client, dataset):
    _, patients = _patients(dataset, {**CLINICAL_FIELDS, **IMAGE_FIELDS})
    p = dict(patients[0])
    del p["lems"]
    assert client.post("/api/predict", json={"patient": p}).json == {"errors": {"lems": "LEMS is required"}}
    r = client.post("/api/predict", json={"patient": dict(patients[0], walking_speed=1.2)})
    assert r.status_code == 422 and r.json["errors"] == {"walking_speed": "unknown field 'walking_speed'"}
    r = client.post("/api/predict", json={"patient": patients[0], "model_path": "/etc/passwd"})
    assert r.status_code == 422 and list(r.json["errors"]) == ["model_path"]  # no path from a request
    assert client.post("/api/predict", json={"explain": True}).json["errors"] == {"patient": "missing field 'patient'"}
    assert client.post("/api/predict", json={"patient": patients[0], "explain": "yes"}).status_code == 422
    assert list(client.post("/api/predict", json={"patient": [1, 2]}).json["errors"]) == ["patient"]
    r = client.post("/api/predict", data="{not json", content_type="application/json")
    assert r.status_code == 400 and "malformed JSON" in r.json["error"]
    r = client.post("/api/predict", data="[" * 100_000 + "]" * 100_000, content_type="application/json")
    assert r.status_code == 400


def test_csrf_origin_and_host_checks(client, dataset):
    _, patients = _patients(dataset, {**CLINICAL_FIELDS, **IMAGE_FIELDS})
    form = {"patient": json.dumps(patients[0])}
    assert client.post("/api/predict", data=form).status_code == 403  # multipart / urlencoded without token
    assert client.post("/api/predict", data=dict(form, csrf_token="wrong")).status_code == 403
    assert client.post("/api/predict", data=json.dumps({"patient": patients[0]}),
                       content_type="text/plain").status_code == 403
    ok = client.post("/api/predict", data=dict(form, csrf_token=TOKEN))
    assert ok.status_code == 200 and len(ok.json["results"]) == 2
    r = client.post("/api/predict", json={"patient": patients[0]}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    r = client.post("/api/predict", json={"patient": patients[0]}, headers={"X-CSRF-Token": "wrong"})
    assert r.status_code == 403
    assert client.post("/api/predict", json={"patient": patients[0]},
                       headers={"Origin": "http://localhost"}).status_code == 200
    assert client.get("/", headers={"Host": "evil.example:8050"}).status_code == 400  # DNS rebinding
    assert client.post("/api/predict", data=b"x", content_type="application/octet-stream").status_code == 415


def _upload(dataset, subject, t2w=None, labels=True):
    d = dataset / subject
    files = {"t2w": (io.BytesIO(t2w if t2w is not None else (d / f"{subject}_T2w.nii.gz").read_bytes()),
                     "scan.nii.gz")}
    if labels:
        files["labels"] = (io.BytesIO((d / f"{subject}_labels.nii.gz").read_bytes()), "labels.nii.gz")
    return files


def test_upload_measures_features_then_is_removed(fitted, dataset, tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    app = create_app([str(fitted["amb"]), str(fitted["img"])], synthesizer=synth, csrf_token=TOKEN,
                     upload_root=uploads)
    c = app.test_client()
    subjects, patients = _patients(dataset)
    img_model = OutcomeModel.load(fitted["img"])
    i = 2
    form = {"patient": json.dumps(patients[i]), "csrf_token": TOKEN, **_upload(dataset, subjects[i])}
    r = c.post("/api/predict", data=form, content_type="multipart/form-data")
    assert r.status_code == 200, r.json
    amb, img = r.json["results"]
    assert img["probability"] == pytest.approx(img_model.predict_proba(img_model.background[i:i + 1])[0], abs=1e-9)
    values = {c_["feature"]: c_ for c_ in img["shap"]["contributions"]}
    assert values["img_cord_lesion_length_mm"]["unit"] == "mm"
    assert img["shap"]["base_value"] + sum(v["shap"] for v in values.values()) == pytest.approx(img["log_odds"],
                                                                                                abs=1e-6)
    image = r.json["image"]
    assert image["png"].startswith("data:image/png;base64,") and image["pseudo_stir"] is True
    assert set(image["features"]["pseudostir"]) >= {"cord_lesion_length_mm", "marrow_edema_ml"}
    assert list(uploads.iterdir()) == []  # the upload folder is gone once the answer is out

    r = c.post("/api/predict", json={"patient": patients[i]})  # no image: that model says what it needs
    assert r.status_code == 200 and "upload a T2w and its tissue label map" in r.json["results"][1]["unavailable"]
    assert "probability" in r.json["results"][0]
    form = {"patient": json.dumps(patients[i]), "csrf_token": TOKEN, **_upload(dataset, subjects[i], labels=False)}
    r = c.post("/api/predict", data=form, content_type="multipart/form-data")
    assert r.status_code == 422 and "tissue label map" in r.json["errors"]["labels"]
    form = {"patient": json.dumps(patients[i]), "csrf_token": TOKEN,
            **_upload(dataset, subjects[i], t2w=b"\x1f\x8b\x08\x00garbage" * 50)}
    r = c.post("/api/predict", data=form, content_type="multipart/form-data")
    assert r.status_code == 422
    assert r.json["errors"]["t2w"].startswith("uploaded T2w: cannot read as NIfTI") and str(uploads) not in r.text
    form = {"patient": json.dumps(patients[i]), "csrf_token": TOKEN, "t2w": (io.BytesIO(b"x"), "scan.dcm")}
    r = c.post("/api/predict", data=form, content_type="multipart/form-data")
    assert r.status_code == 422 and "expected a NIfTI file" in r.json["errors"]["t2w"]
    assert list(uploads.iterdir()) == []

    small = create_app([str(fitted["amb"])], csrf_token=TOKEN, max_upload_mb=0.01).test_client()
    form = {"patient": json.dumps(patients[i]), "csrf_token": TOKEN, **_upload(dataset, subjects[i])}
    r = small.post("/api/predict", data=form, content_type="multipart/form-data")
    assert r.status_code == 413 and "0.01 MB limit" in r.json["errors"]["upload"]


def test_batch_csv_matches_cli(client, fitted, dataset, tmp_path):
    cli_amb = _cli_probs(fitted["amb"], dataset, tmp_path / "amb.csv")
    body = (dataset / "cohort.csv").read_bytes()
    r = client.post("/api/batch", data=body, content_type="text/csv")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert [row["subject"] for row in rows] == list(cli_amb)
    for row in rows:
        assert float(row["prob_ambulation_discharge"]) == pytest.approx(cli_amb[row["subject"]], abs=1e-6)
        assert float(row["low_ambulation_discharge"]) <= float(row["high_ambulation_discharge"])
        top = row["top_shap_ais_improvement"].split("; ")
        assert len(top) == 3 and all(t.split(" ")[-1][0] in "+-" for t in top)
        assert -10 <= int(row["van_middendorp_score"]) <= 40
    assert client.post("/api/batch", data={"file": (io.BytesIO(body), "c.csv")}).status_code == 403
    r = client.post("/api/batch", data={"file": (io.BytesIO(body), "c.csv"), "csrf_token": TOKEN})
    assert r.status_code == 200
    lines = body.decode().splitlines()
    header = lines[0].split(",")
    cells = lines[2].split(",")
    cells[header.index("lems")] = "77"
    bad = "\n".join([lines[0], lines[1], ",".join(cells)]).encode()
    r = client.post("/api/batch", data=bad, content_type="text/csv")
    assert r.status_code == 422 and r.json["errors"] == {"row 3: lems": "LEMS must be between 0 and 50 points, got 77"}
    r = client.post("/api/batch", data=b"subject,age\ns1,40\n", content_type="text/csv")
    assert r.status_code == 422 and r.json["errors"]["lems"] == "missing column"
    r = client.post("/api/batch", data=b"\xff\xfe\x00garbage", content_type="text/csv")
    assert r.status_code == 422 and r.json["errors"]["file"].startswith("uploaded CSV")


def test_predictions_logged_only_when_asked(fitted, dataset, tmp_path):
    _, patients = _patients(dataset)
    log = tmp_path / "log.jsonl"
    c = create_app([str(fitted["amb"])], log_predictions=log).test_client()
    r = c.post("/api/predict", json={"patient": patients[0]})
    record = json.loads(log.read_text().splitlines()[0])
    assert record["patient"] == patients[0]
    assert record["results"][0]["probability"] == r.json["results"][0]["probability"]
    before = sorted(p.name for p in tmp_path.iterdir())
    quiet = create_app([str(fitted["amb"])]).test_client()
    assert quiet.post("/api/predict", json={"patient": patients[0]}).status_code == 200
    assert sorted(p.name for p in tmp_path.iterdir()) == before and len(log.read_text().splitlines()) == 1


def test_serve_cli_refuses_bad_starts(fitted, tmp_path, capsys):
    assert main(["outcome", "serve", str(tmp_path / "none.ssmodel")]) == 2
    assert "none.ssmodel: no such model file" in capsys.readouterr().err
    assert main(["outcome", "serve", str(fitted["amb"]), "--port", "99999"]) == 2
    err = capsys.readouterr().err
    assert "--port: expected an integer from 0 to 65535, got 99999" in err and err.count("\n") == 1
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["outcome", "serve", str(fitted["amb"]), "--port", str(port)]) == 2
        assert f"127.0.0.1:{port}: cannot listen" in capsys.readouterr().err
    assert main(["outcome", "serve", str(fitted["img"]), "--port", "0"]) == 2  # pseudo-STIR model, no checkpoint
    assert "start the page with --checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main(["outcome", "serve", "--help"])
    assert done.value.code == 0
    assert "POST /api/predict" in capsys.readouterr().out
    assert not math.isnan(OutcomeModel.load(fitted["amb"]).metrics["cv"]["auc"])
    assert np.isfinite(OutcomeModel.load(fitted["amb"]).background).all()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, checkpoint_writer):
    """A real synthseq checkpoint around a tiny, randomly initialised pix2pix at the tiny preset's 2.75 mm."""
    return checkpoint_writer(tmp_path_factory.mktemp("ckpt") / "tiny.pt", spacing=(2.75, 2.75))


def test_upload_with_a_real_checkpoint_shows_pseudo_stir(fitted, dataset, tiny_checkpoint, tmp_path):
    from synthseq.downstream.sources import synthesizer_from_checkpoint

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    app = create_app([str(fitted["amb"])], synthesizer=synthesizer_from_checkpoint(tiny_checkpoint, "cpu"),
                     csrf_token=TOKEN, upload_root=uploads)
    subjects, patients = _patients(dataset)
    form = {"patient": json.dumps(patients[0]), "csrf_token": TOKEN, **_upload(dataset, subjects[0])}
    r = app.test_client().post("/api/predict", data=form, content_type="multipart/form-data")
    assert r.status_code == 200, r.json
    assert r.json["image"]["pseudo_stir"] is True and r.json["image"]["png"].startswith("data:image/png;base64,")
    assert "T2w" in app.test_client().get("/").get_data(as_text=True)
    assert list(uploads.iterdir()) == []


def test_card_without_records_and_a_failing_synthesizer(fitted, dataset):
    """A model whose metrics lack the cohort record and hold missing values still renders; a synthesizer that
    fails on an upload gives 422 naming the T2w, not HTTP 500."""
    model = OutcomeModel.load(fitted["amb"])
    model.metrics = {"cv": {"auc": 0.7, "auc_ci_low": None, "auc_ci_high": None, "brier": None}}

    def broken(t2w):
        raise RuntimeError(f"{t2w.path}: kernel size can't be greater than actual input size")

    c = create_app([model], paths=["in-memory"], synthesizer=broken, csrf_token=TOKEN).test_client()
    page = c.get("/").get_data(as_text=True)
    assert "AUC <strong>0.700</strong>" in page and "n/a" in page and "is not recorded in this model file" in page
    subjects, patients = _patients(dataset)
    form = {"patient": json.dumps(patients[0]), "csrf_token": TOKEN, **_upload(dataset, subjects[0])}
    r = c.post("/api/predict", data=form, content_type="multipart/form-data")
    assert r.status_code == 422
    assert r.json["errors"]["t2w"] == ("pseudo-STIR synthesis failed on the uploaded T2w: uploaded T2w: kernel "
                                       "size can't be greater than actual input size")


def test_values_outside_the_training_range_are_flagged(client, fitted, dataset):
    _, patients = _patients(dataset, {**CLINICAL_FIELDS, **IMAGE_FIELDS})
    ages = OutcomeModel.load(fitted["amb"]).background[:, 0]
    r = client.post("/api/predict", json={"patient": patients[0]})
    assert [res["outside_training_range"] for res in r.json["results"]] == [[], []]  # a training patient
    r = client.post("/api/predict", json={"patient": dict(patients[0], age=100)})
    assert r.status_code == 200 and ages.max() < 100
    assert r.json["results"][0]["outside_training_range"] == [
        f"Age = 100.0 is outside the training cohort's range {ages.min():.4g}–{ages.max():.4g}: the model "
        "extrapolates"]
