"""The reading web app (Flask): personal links, one case at a time, answers saved at once.

Routes (``TOKEN`` is the reader's secret; an unknown token gets 404, like any unknown page)::

    GET  /r/TOKEN                          the reading page
    GET  /api/TOKEN/state                  the reader's cases (IDs, sizes), answers, submission status
    POST /api/TOKEN/answer/CASE            merge a partial answer (JSON) into the stored one, one transaction
    POST /api/TOKEN/submit                 lock the answers (every case must be complete)
    POST /api/TOKEN/time/CASE              add reading time ``{"seconds": x}`` (0 < x <= 3600) to a case
    GET  /api/TOKEN/cases/CASE/FILE        stack.nii or slice_NNN.png of one of the reader's cases
    GET  /static/...                       the page's own JS/CSS (package data)

Nothing else is served: not the key, tokens, database or manifest, and no path outside ``STUDY/cases``
(file names must match :data:`layout.CASE_FILE_RE`, case IDs must be in the reader's list, and the resolved
path must lie under ``STUDY/cases``).

Nothing served may order or pair the cases: case files carry a strong ETag that is the SHA-256 of their bytes
(so equal content gives equal tags and nothing else) and no ``Last-Modified``; the access log shows
``<token>`` in place of reader tokens. Request bodies that are not a JSON object (including JSON nested too
deeply for the parser) get HTTP 400.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from flask import Flask, Response, abort, jsonify, render_template, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler

from ..web import base_url, check_port, make_server, register_page
from . import layout
from .access import TokenIndex, load_or_create_tokens, reader_links
from .store import AlreadySubmitted, AnswerError, AnswerStore, is_complete

_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


_TOKEN_IN_PATH = re.compile(r"/(r|api)/[^/\s?\"]+")
MAX_READING_SECONDS = 3600.0  #: one report of reading time; the page sends one per case visit


def redact_tokens(text: str) -> str:
    """``text`` (a request line) with every reader token replaced by ``<token>``."""
    return _TOKEN_IN_PATH.sub(lambda m: f"/{m.group(1)}/<token>", text)


class _RedactingHandler(WSGIRequestHandler):
    """Werkzeug's request handler, but the access log never shows a reader's token."""

    def log(self, type: str, message: str, *args) -> None:  # noqa: A002 - the base class' signature
        # every access and error line passes through here (log_request, log_error, tracebacks)
        super().log(type, redact_tokens(message), *(redact_tokens(a) if isinstance(a, str) else a for a in args))


def _json_body() -> object | None:
    """The request's JSON body, or None if it is not JSON (malformed, not UTF-8, or nested too deeply)."""
    try:
        return json.loads(request.get_data(cache=False).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


#: keys the page already uses: r/s (call), n/p (next/previous case), z/x/f (zoom in/out, fit), w (reset window)
_RESERVED_KEYS = set("rsnpzxfw")


def finding_keys(findings: list[dict]) -> list[str]:
    """One shortcut letter per finding (the first free letter of its label): the letter answers Present,
    Shift + the letter answers Absent."""
    used, keys = set(_RESERVED_KEYS), []
    for f in findings:
        letters = [c for c in f["label"].lower() if c.isascii() and c.isalpha()] + list("abcdefghijklmoqtuvy")
        key = next(c for c in letters if c not in used)
        used.add(key)
        keys.append(key)
    return keys


def create_app(study_dir: str | Path, clock: Callable[[], float] | None = None) -> Flask:
    """The Flask app serving one study folder (built by :func:`synthseq.reader_study.build_study`)."""
    study = Path(study_dir).resolve()
    manifest = layout.load_manifest(study)
    cases_root = (study / layout.CASES).resolve()
    orders: dict[str, list[str]] = {r: list(ids) for r, ids in manifest["readers"].items()}
    tokens = TokenIndex(load_or_create_tokens(study, list(orders)))
    store = AnswerStore(study / layout.DATABASE)
    public_cases = {cid: dict(info) for cid, info in manifest["cases"].items()}
    sessions = manifest.get("sessions")
    now = clock or time.time
    findings = [{**f, "key": k} for f, k in zip(manifest["findings"], finding_keys(manifest["findings"]))]
    with_t2w = bool(manifest.get("with_t2w"))

    here = Path(__file__).parent
    app = Flask(__name__, static_folder=str(here / "static"), template_folder=str(here / "templates"))
    app.config.update(MAX_CONTENT_LENGTH=16 * 1024, JSON_SORT_KEYS=False)
    app.url_map.merge_slashes = False  # no redirects for odd paths: they are simply not found

    def reader_or_404(token: str) -> str:
        reader = tokens.reader_for(token)
        if reader is None:
            abort(404)
        return reader

    def current(reader: str) -> tuple[int | None, list[str], str | None]:
        """(session number or None, the cases the reader may see now, when the next session opens or None).

        Two-session studies show session 1 until it is submitted, then nothing until the washout has passed,
        then session 2; the other session's cases are not listed and not served (404)."""
        order = orders[reader]
        if sessions is None:
            return None, order, None
        n1 = sessions["first_session_length"][reader]
        submitted = store.sessions_submitted(reader)
        if 1 not in submitted:
            return 1, order[:n1], None
        opens = datetime.fromisoformat(submitted[1]).timestamp() + 86400.0 * float(sessions["washout_days"])
        if now() < opens:
            return 2, [], datetime.fromtimestamp(opens, timezone.utc).isoformat(timespec="seconds")
        return 2, order[n1:], None

    def case_or_404(reader: str, case_id: str) -> str:
        if case_id not in current(reader)[1]:
            abort(404)
        return case_id

    def state(reader: str) -> dict:
        answers = store.answers(reader)
        session, order, opens_at = current(reader)
        complete = [cid for cid in order if is_complete(answers.get(cid))]
        resume = next((i for i, cid in enumerate(order) if not is_complete(answers.get(cid))), max(0, len(order) - 1))
        return {
            "reader": reader,
            "cases": [{"id": cid, **public_cases[cid]} for cid in order],
            "answers": {cid: answers[cid] for cid in order if cid in answers},
            "findings": findings,
            "complete": len(complete), "total": len(order), "resume_index": resume,
            "submitted_at": store.submitted_at(reader), "with_t2w": with_t2w,
            "session": None if session is None else {"index": session, "count": 2, "opens_at": opens_at},
        }

    @app.after_request
    def headers(response):
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"  # the token is in the URL
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = _CSP
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.get("/")
    def index():
        return "<!doctype html><title>Reader study</title><p>Open the personal link you were given.</p>"

    @app.get("/r/<token>")
    def page(token: str):
        reader = reader_or_404(token)
        return render_template("read.html", reader=reader, token=token, findings=findings, with_t2w=with_t2w)

    @app.get("/api/<token>/state")
    def get_state(token: str):
        return jsonify(state(reader_or_404(token)))

    @app.post("/api/<token>/answer/<case_id>")
    def post_answer(token: str, case_id: str):
        reader = reader_or_404(token)
        case_or_404(reader, case_id)
        body = _json_body()
        if not isinstance(body, dict):
            return jsonify(error="expected a JSON object"), 400
        try:
            answer = store.save_answer(reader, case_id, body)
        except AlreadySubmitted as exc:
            return jsonify(error=str(exc)), 409
        except AnswerError as exc:
            return jsonify(error=str(exc)), 400
        current = state(reader)
        return jsonify(answer=answer, complete=current["complete"], total=current["total"])

    @app.post("/api/<token>/time/<case_id>")
    def post_time(token: str, case_id: str):
        reader = reader_or_404(token)
        case_or_404(reader, case_id)
        body = _json_body()
        seconds = body.get("seconds") if isinstance(body, dict) else None
        if (isinstance(seconds, bool) or not isinstance(seconds, int | float)
                or not 0 < seconds <= MAX_READING_SECONDS):
            return jsonify(error=f"expected {{\"seconds\": x}} with 0 < x <= {MAX_READING_SECONDS:g}"), 400
        return jsonify(seconds=store.add_reading_time(reader, case_id, float(seconds)))

    @app.post("/api/<token>/submit")
    def post_submit(token: str):
        reader = reader_or_404(token)
        session, order, _ = current(reader)
        try:
            if session == 1:  # the first of two sessions: lock it and start the washout
                return jsonify(session_submitted=1, submitted_at=None,
                               session_submitted_at=store.submit_session(reader, 1, order))
            if not order:
                return jsonify(error="the next session has not opened yet"), 409
            when = store.submit(reader, order)
        except AnswerError as exc:
            return jsonify(error=str(exc)), 409
        return jsonify(submitted_at=when)

    @app.get("/api/<token>/cases/<case_id>/<name>")
    def case_file(token: str, case_id: str, name: str):
        reader = reader_or_404(token)
        case_or_404(reader, case_id)
        if not layout.CASE_ID_RE.match(case_id) or not layout.CASE_FILE_RE.match(name):
            abort(404)
        path = (cases_root / case_id / name).resolve()
        if not path.is_relative_to(cases_root) or not path.is_file():
            abort(404)
        mimetype = "image/png" if name.endswith(".png") else "application/octet-stream"
        data = path.read_bytes()
        # A content hash, not werkzeug's mtime-size-name tag: build order must not show through.
        response = Response(data, mimetype=mimetype)
        response.set_etag(hashlib.sha256(data).hexdigest())
        response.headers["Cache-Control"] = "private, no-cache"
        return response.make_conditional(request)

    return app


def make_study_server(study_dir: str | Path, host: str = "127.0.0.1", port: int = 8000) -> BaseWSGIServer:
    """A threaded WSGI server for the study, bound but not yet serving (``port=0`` picks a free port); the port is
    checked before the study is opened, and the access log never prints reader tokens."""
    check_port(port)
    return make_server(create_app(study_dir), host, port, request_handler=_RedactingHandler)


def serve_study(study_dir: str | Path, host: str = "127.0.0.1", port: int = 8000,
                ready: Callable[[str, dict[str, str]], None] | None = None) -> None:
    """Serve until interrupted; ``ready(base_url, reader_links)`` is called once the socket listens."""
    server = make_study_server(study_dir, host, port)
    if ready is not None:
        url = base_url(server)
        ready(url, reader_links(study_dir, url))
    try:
        server.serve_forever()
    finally:
        server.server_close()


class StudyServerThread:
    """The study served from a background thread (tests, notebooks): ``with StudyServerThread(dir) as s: s.url``."""

    def __init__(self, study_dir: str | Path, host: str = "127.0.0.1", port: int = 0):
        self.server = make_study_server(study_dir, host, port)
        self.url = base_url(self.server)
        self.links = reader_links(study_dir, self.url)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> StudyServerThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> StudyServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


#: This page in the web-page registry (:mod:`synthseq.web`).
PAGE = register_page("reader-study", "synthseq reader study", create_app, cli="synthseq reader-study serve")
