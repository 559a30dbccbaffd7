"""The reading web app (Flask): personal links, one case at a time, answers saved at once.

Routes (``TOKEN`` is the reader's secret; an unknown token gets 404, like any unknown page)::

    GET  /r/TOKEN                          the reading page
    GET  /api/TOKEN/state                  the reader's cases (IDs, sizes), answers, submission status
    POST /api/TOKEN/answer/CASE            merge a partial answer (JSON) into the stored one, one transaction
    POST /api/TOKEN/submit                 lock the answers (every case must be complete)
    GET  /api/TOKEN/cases/CASE/FILE        stack.nii or slice_NNN.png of one of the reader's cases
    GET  /static/...                       the page's own JS/CSS (package data)

Nothing else is served: not the key, tokens, database or manifest, and no path outside ``STUDY/cases``
(file names must match :data:`layout.CASE_FILE_RE`, case IDs must be in the reader's list, and the resolved
path must lie under ``STUDY/cases``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from flask import Flask, abort, jsonify, render_template, request, send_file
from werkzeug.serving import BaseWSGIServer, make_server

from ..errors import InputError
from . import layout
from .access import TokenIndex, load_or_create_tokens, reader_links
from .store import AlreadySubmitted, AnswerError, AnswerStore, is_complete

_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def create_app(study_dir: str | Path) -> Flask:
    """The Flask app serving one study folder (built by :func:`synthseq.reader_study.build_study`)."""
    study = Path(study_dir).resolve()
    manifest = layout.load_manifest(study)
    cases_root = (study / layout.CASES).resolve()
    orders: dict[str, list[str]] = {r: list(ids) for r, ids in manifest["readers"].items()}
    tokens = TokenIndex(load_or_create_tokens(study, list(orders)))
    store = AnswerStore(study / layout.DATABASE)
    public_cases = {cid: dict(info) for cid, info in manifest["cases"].items()}
    findings = manifest["findings"]

    here = Path(__file__).parent
    app = Flask(__name__, static_folder=str(here / "static"), template_folder=str(here / "templates"))
    app.config.update(MAX_CONTENT_LENGTH=16 * 1024, JSON_SORT_KEYS=False)
    app.url_map.merge_slashes = False  # no redirects for odd paths: they are simply not found

    def reader_or_404(token: str) -> str:
        reader = tokens.reader_for(token)
        if reader is None:
            abort(404)
        return reader

    def case_or_404(reader: str, case_id: str) -> str:
        if case_id not in orders[reader]:
            abort(404)
        return case_id

    def state(reader: str) -> dict:
        answers = store.answers(reader)
        order = orders[reader]
        complete = [cid for cid in order if is_complete(answers.get(cid))]
        resume = next((i for i, cid in enumerate(order) if not is_complete(answers.get(cid))), len(order) - 1)
        return {
            "reader": reader,
            "cases": [{"id": cid, **public_cases[cid]} for cid in order],
            "answers": {cid: answers[cid] for cid in order if cid in answers},
            "findings": findings,
            "complete": len(complete), "total": len(order), "resume_index": resume,
            "submitted_at": store.submitted_at(reader),
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
        return render_template("read.html", reader=reader, token=token, findings=findings)

    @app.get("/api/<token>/state")
    def get_state(token: str):
        return jsonify(state(reader_or_404(token)))

    @app.post("/api/<token>/answer/<case_id>")
    def post_answer(token: str, case_id: str):
        reader = reader_or_404(token)
        case_or_404(reader, case_id)
        body = request.get_json(silent=True)
        if body is None:
            return jsonify(error="expected a JSON object"), 400
        try:
            answer = store.save_answer(reader, case_id, body)
        except AlreadySubmitted as exc:
            return jsonify(error=str(exc)), 409
        except AnswerError as exc:
            return jsonify(error=str(exc)), 400
        current = state(reader)
        return jsonify(answer=answer, complete=current["complete"], total=current["total"])

    @app.post("/api/<token>/submit")
    def post_submit(token: str):
        reader = reader_or_404(token)
        try:
            when = store.submit(reader, orders[reader])
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
        response = send_file(path, mimetype=mimetype, conditional=True, max_age=0)
        response.headers["Cache-Control"] = "private, no-cache"
        return response

    return app


def make_study_server(study_dir: str | Path, host: str = "127.0.0.1", port: int = 8000) -> BaseWSGIServer:
    """A threaded WSGI server for the study, bound but not yet serving (``port=0`` picks a free port)."""
    app = create_app(study_dir)
    try:
        return make_server(host, port, app, threaded=True)
    except OSError as exc:
        raise InputError(f"{host}:{port}: cannot listen ({exc.strerror or exc})") from exc


def base_url(server: BaseWSGIServer) -> str:
    host = server.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{server.port}"


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
