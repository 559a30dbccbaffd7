"""Two reading sessions with a washout: a subject's real and synthetic case are never read in the same session."""

from __future__ import annotations

import json
import time

import pytest

from synthseq.errors import ConfigError
from synthseq.reader_study import build_study, export_answers, read_key
from synthseq.reader_study.access import load_or_create_tokens
from synthseq.reader_study.app import create_app
from synthseq.reader_study.store import read_answers_csv

FULL = {"call": "real", "confidence": 4, "quality": 3, "marrow_edema": 0, "plc_injury": 1, "cord_edema": 0}


@pytest.fixture
def two_sessions(inputs, tmp_path):
    out = tmp_path / "study"
    build_study(inputs["real"], inputs["synthetic"], out, ["R1", "R2"], seed=0, sessions=2, washout_days=14)
    return out


def test_each_subject_once_per_session(rs, two_sessions):
    manifest = json.loads((two_sessions / "manifest.json").read_text())
    subject = {r["case_id"]: r["subject"] for r in read_key(two_sessions)}
    n = len(rs.SUBJECTS)
    assert manifest["sessions"]["count"] == 2 and manifest["sessions"]["washout_days"] == 14
    for reader, order in manifest["readers"].items():
        assert manifest["sessions"]["first_session_length"][reader] == n
        first, second = order[:n], order[n:]
        assert sorted(subject[c] for c in first) == sorted(subject[c] for c in second) == sorted(rs.SUBJECTS)


def test_session_flow_with_washout(rs, two_sessions):
    now = [time.time()]  # the store stamps submissions with the real clock
    client = create_app(two_sessions, clock=lambda: now[0]).test_client()
    token = load_or_create_tokens(two_sessions, ["R1"])["R1"]
    order = json.loads((two_sessions / "manifest.json").read_text())["readers"]["R1"]
    n = len(rs.SUBJECTS)
    state = client.get(f"/api/{token}/state").get_json()
    assert [c["id"] for c in state["cases"]] == order[:n] and state["session"] == {"index": 1, "count": 2,
                                                                                    "opens_at": None}
    # Session 2's cases are neither listed nor served, nor answerable, during session 1.
    assert client.get(f"/api/{token}/cases/{order[n]}/stack.nii").status_code == 404
    assert client.post(f"/api/{token}/answer/{order[n]}", json=FULL).status_code == 404
    assert client.post(f"/api/{token}/submit").status_code == 409  # session 1 incomplete
    for cid in order[:n]:
        assert client.post(f"/api/{token}/answer/{cid}", json=FULL).status_code == 200
    body = client.post(f"/api/{token}/submit").get_json()
    assert body["session_submitted"] == 1 and body["submitted_at"] is None
    # The washout: nothing to read for 14 days; session 1 is locked.
    now[0] += 13 * 86400
    state = client.get(f"/api/{token}/state").get_json()
    assert state["cases"] == [] and state["session"]["index"] == 2 and state["session"]["opens_at"]
    assert client.post(f"/api/{token}/answer/{order[0]}", json=FULL).status_code == 404
    assert client.post(f"/api/{token}/submit").status_code == 409
    assert client.get(f"/r/{token}").status_code == 200
    now[0] += 2 * 86400
    state = client.get(f"/api/{token}/state").get_json()
    assert [c["id"] for c in state["cases"]] == order[n:] and state["session"]["opens_at"] is None
    for cid in order[n:]:
        assert client.post(f"/api/{token}/answer/{cid}", json=FULL).status_code == 200
    assert client.post(f"/api/{token}/submit").get_json()["submitted_at"]
    rows = [r for r in read_answers_csv(export_answers(two_sessions)) if r["reader"] == "R1"]
    assert len(rows) == 2 * n and all(r["complete"] == "1" and r["submitted_at"] for r in rows)


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"sessions": 3}, "--sessions"), ({"sessions": 2, "washout_days": -1}, "--washout-days"),
    ({"sessions": 2, "washout_days": float("nan")}, "--washout-days"), ({"washout_days": 7}, "--sessions 2"),
])
def test_bad_session_arguments(inputs, tmp_path, kwargs, words):
    with pytest.raises(ConfigError, match=words):
        build_study(inputs["real"], inputs["synthetic"], tmp_path / "s", ["A"], **kwargs)
    assert not (tmp_path / "s").exists()
