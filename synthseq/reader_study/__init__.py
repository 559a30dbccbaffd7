"""Reader studies: blinded case sets, a local reading web page (Flask + SQLite) and the statistics.

>>> from synthseq.reader_study import build_study, create_app, export_answers, analyze_study
>>> # build_study("real/", "synthetic/", "study/", ["R1", "R2"], lesions="phantom/", seed=0)
>>> # with StudyServerThread("study/") as server: print(server.links)
>>> # export_answers("study/"); analyze_study("study/", "report/")

The web app (Flask) is imported lazily so building or analyzing a study does not load it.
"""

from __future__ import annotations

from .build import BuildSummary, build_study, read_key
from .store import AnswerStore, export_answers

__all__ = [
    "AnswerStore", "BuildSummary", "StudyServerThread", "analyze_study", "build_study", "create_app",
    "export_answers", "read_key", "reader_links", "serve_study",
]


def __getattr__(name: str):
    if name in ("create_app", "serve_study", "StudyServerThread", "make_study_server"):
        from . import app

        return getattr(app, name)
    if name == "reader_links":
        from .access import reader_links

        return reader_links
    if name == "analyze_study":
        from .report import analyze_study

        return analyze_study
    raise AttributeError(f"module 'synthseq.reader_study' has no attribute {name!r}")
