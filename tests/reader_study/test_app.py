"""Reading web app: tokens, blinding (the key is never served), path traversal, answers, persistence."""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from synthseq.reader_study import export_answers, read_key
from synthseq.reader_study.access import TokenIndex, load_or_create_tokens
from synthseq.reader_study.app import StudyServerThread, create_app
from synthseq.reader_study.store import read_answers_csv

FULL = {"call": "real", "confidence": 4, "quality": 3, "marrow_edema": 0, "plc_injury": 1, "cord_edema": 0}


def _secrets(study: Path) -> list[str]:
    """Strings that must never appear in anything served to R1 (long enough not to occur in binary data)."""
    key = read_key(study)
    tokens = load_or_create_tokens(study, ["R1", "R2"])
    return [*(r["subject"] for r in key), *(r["file"] for r in key), "slice_start,", "window_low",
            (study / "key.csv").read_text().splitlines()[1], tokens["R2"], str(study)]


def _order(study: Path, reader: str) -> list[str]:
    return json.loads((study / "manifest.json").read_text())["readers"][reader]


def test_tokens_random_private_and_checked(study):
    tokens = load_or_create_tokens(study, ["R1", "R2"])
    assert len(set(tokens.values())) == 2 and all(len(t) >= 32 for t in tokens.values())
    assert (os.stat(study / "tokens.json").st_mode & 0o777) == 0o600
    assert load_or_create_tokens(study, ["R1", "R2"]) == tokens  # stable once created
    index = TokenIndex(tokens)
    assert index.reader_for(tokens["R2"]) == "R2"
    assert index.reader_for(tokens["R2"][:-1]) is None and index.reader_for("") is None


def test_session_never_serves_the_key_and_answers_flow(study):
    app = create_app(study)
    client = app.test_client()
    tokens = load_or_create_tokens(study, ["R1", "R2"])
    t1, t2 = tokens["R1"], tokens["R2"]
    order = _order(study, "R1")
    served = []

    text_served = []  # pages, JSON, JS, CSS: also checked for the other reader's name

    def keep(r):
        served.append(r.get_data())
        if not r.mimetype.startswith(("image/", "application/octet-stream")):
            text_served.append(r.get_data().replace(t1.encode(), b"<token>"))

    def get(url, status=200):
        r = client.get(url)
        assert r.status_code == status, url
        keep(r)
        return r

    def post(url, body, status=200):
        r = client.post(url, json=body)
        assert r.status_code == status, (url, r.get_json())
        keep(r)
        return r.get_json()

    page = get(f"/r/{t1}")
    assert page.headers["Referrer-Policy"] == "no-referrer" and "Content-Security-Policy" in page.headers
    assert b"read.js" in page.data and b"http" not in page.data.replace(b"http-equiv", b"")  # no CDN
    get("/static/read.js"), get("/static/read.css")
    state = get(f"/api/{t1}/state").get_json()
    assert [c["id"] for c in state["cases"]] == order
    assert all(set(c) == {"id", "n_slices", "height", "width", "spacing_mm"} for c in state["cases"])
    assert (state["complete"], state["total"], state["resume_index"], state["answers"]) == (0, len(order), 0, {})
    for cid in order:
        get(f"/api/{t1}/cases/{cid}/stack.nii")
        get(f"/api/{t1}/cases/{cid}/slice_000.png")

    # Partial answers merge; bad values and foreign cases are refused.
    post(f"/api/{t1}/answer/{order[0]}", {"call": "synthetic"})
    out = post(f"/api/{t1}/answer/{order[0]}", {"confidence": 5, "quality": 2})
    assert out["answer"]["call"] == "synthetic" and out["answer"]["quality"] == 2 and out["complete"] == 0
    for bad in ({"confidence": 7}, {"quality": "3"}, {"plc_injury": True}, {"key": 1}, ["call"]):
        post(f"/api/{t1}/answer/{order[0]}", bad, status=400)
    post(f"/api/{t1}/answer/c0000000000", FULL, status=404)
    post(f"/api/{t1}/submit", {}, status=409)  # incomplete
    for cid in order:
        out = post(f"/api/{t1}/answer/{cid}", FULL)
    assert out["complete"] == out["total"] == len(order)
    assert get(f"/api/{t1}/state").get_json()["resume_index"] == len(order) - 1
    post(f"/api/{t1}/answer/{order[0]}", {"call": "synthetic"})  # revising before submission is fine
    assert post(f"/api/{t1}/submit", {})["submitted_at"]
    post(f"/api/{t1}/answer/{order[0]}", {"call": "real"}, status=409)  # locked after submission

    # R2 sees none of R1's answers; R1's responses never contained the key, R2's token or R2's name.
    state2 = app.test_client().get(f"/api/{t2}/state").get_json()
    assert state2["answers"] == {} and state2["submitted_at"] is None and state2["reader"] == "R2"
    blob = b"\n".join(served)
    for secret in _secrets(study):
        assert secret.encode() not in blob, secret
    assert len(text_served) > 10 and b"R2" not in b"\n".join(text_served)

    rows = read_answers_csv(export_answers(study))
    r1 = [r for r in rows if r["reader"] == "R1"]
    assert [r["case_id"] for r in r1] == order and all(r["complete"] == "1" for r in r1)
    assert r1[0]["call"] == "synthetic" and r1[0]["submitted_at"] and int(r1[0]["revisions"]) == 4
    assert all(r["call"] is None and r["submitted_at"] == "" for r in rows if r["reader"] == "R2")


def test_wrong_tokens_are_refused(study):
    client = create_app(study).test_client()
    cid = _order(study, "R1")[0]
    real = load_or_create_tokens(study, ["R1"])["R1"]
    for token in ("nope", real[:-1], real + "x", real.upper(), "%00"):
        for url in (f"/r/{token}", f"/api/{token}/state", f"/api/{token}/cases/{cid}/stack.nii"):
            assert client.get(url).status_code == 404, url
        assert client.post(f"/api/{token}/answer/{cid}", json=FULL).status_code == 404
        assert client.post(f"/api/{token}/submit").status_code == 404


def test_path_traversal_refused_on_a_live_server(study):
    """Raw requests (no client-side normalisation) for files outside STUDY/cases all get 404."""
    key_text = (study / "key.csv").read_text()
    with StudyServerThread(study) as server:
        token = server.links["R1"].rsplit("/", 1)[1]
        cid = _order(study, "R1")[0]
        host, port = server.server.server_address[:2]
        attacks = [
            "/key.csv", "/manifest.json", "/answers.sqlite", "/tokens.json", "/cases/" + cid + "/stack.nii",
            f"/api/{token}/cases/{cid}/..%2F..%2Fkey.csv", f"/api/{token}/cases/{cid}/%2e%2e%2f%2e%2e%2fkey.csv",
            f"/api/{token}/cases/{cid}/../../key.csv", f"/api/{token}/cases/..%2F..%2Fkey.csv",
            f"/api/{token}/cases/{cid}/%2Fetc%2Fpasswd", f"/api/{token}/cases/{cid}//etc/passwd",
            f"/api/{token}/cases/..%2F/key.csv", f"/api/{token}/cases/{cid}/..%5C..%5Ckey.csv",
            f"/api/{token}/cases/{cid}/manifest.json", f"/api/{token}/cases/{cid}/%2e%2e",
            "/static/..%2F..%2F..%2Fkey.csv", "/static/%2Fetc%2Fpasswd", "/static//etc/passwd",
            "/static/../build.py", "/r/..%2F..%2Fkey.csv", f"/r/{token}/..%2F..%2Fkey.csv",
            f"/api/{token}/cases/{cid}/" + "%2e%2e%2f" * 8 + "etc%2fpasswd",
        ]
        for path in attacks:
            conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read().decode("latin-1")
            conn.close()
            assert response.status in (400, 404), (path, response.status)
            assert key_text.splitlines()[1] not in body and "root:" not in body, path
        with urllib.request.urlopen(f"{server.url}/api/{token}/cases/{cid}/stack.nii") as r:
            assert r.status == 200  # the legitimate file still works


def test_answers_survive_a_killed_server(rs, study):
    """Answer over HTTP, SIGKILL the server process, start a new one: the answer is there."""
    def start():
        proc, url, links = rs.start_server(study)
        return proc, url, links["R1"].rsplit("/", 1)[1]

    cid = _order(study, "R1")[1]
    proc, url, token = start()
    try:
        req = urllib.request.Request(f"{url}/api/{token}/answer/{cid}", data=json.dumps(FULL).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.load(r)["complete"] == 1
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    proc, url2, token2 = start()
    try:
        assert token2 == token  # same personal link after a restart
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"{url2}/api/{token}/state", timeout=10) as r:
                    state = json.load(r)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert state["answers"][cid] == FULL and state["complete"] == 1 and state["resume_index"] == 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_missing_study_is_an_input_error(tmp_path):
    from synthseq.errors import InputError

    with pytest.raises(InputError, match="manifest"):
        create_app(tmp_path)
