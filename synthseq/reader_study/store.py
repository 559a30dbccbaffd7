"""Answers in SQLite (``STUDY/answers.sqlite``): one transaction per answer, durable across restarts.

WAL journal with ``synchronous=FULL``: an answer acknowledged to the browser survives the server being
killed. Every request opens its own connection (SQLite connections are not shared across threads), and
writes take the write lock up front (``BEGIN IMMEDIATE``) so a check-then-write cannot interleave with
another request of the same reader.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from ..errors import InputError
from ..utils import atomic_write_text
from . import layout

FIELDS = tuple(layout.ANSWER_FIELDS)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS answers (
    reader TEXT NOT NULL,
    case_id TEXT NOT NULL,
    {", ".join(f"{name} {'TEXT' if name == 'call' else 'INTEGER'}" for name in FIELDS)},
    updated_at TEXT NOT NULL,
    revisions INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (reader, case_id)
);
CREATE TABLE IF NOT EXISTS submissions (
    reader TEXT PRIMARY KEY,
    submitted_at TEXT NOT NULL
);
"""


class AnswerError(ValueError):
    """An answer the store refuses (bad value, unknown field, already submitted, incomplete submission)."""


class AlreadySubmitted(AnswerError):
    pass


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def validate_answer(update: dict) -> dict:
    """Check a (partial) answer: known fields, allowed values; ``None`` clears a field. Returns a clean copy."""
    if not isinstance(update, dict):
        raise AnswerError("answer must be a JSON object")
    clean = {}
    for name, value in update.items():
        if name not in layout.ANSWER_FIELDS:
            raise AnswerError(f"unknown answer field {name!r}")
        allowed = layout.ANSWER_FIELDS[name]
        if value is not None and (isinstance(value, bool) or value not in allowed):
            raise AnswerError(f"{name}: expected one of {list(allowed)} or null, got {value!r}")
        clean[name] = value
    return clean


def is_complete(answer: dict | None) -> bool:
    return answer is not None and all(answer.get(name) is not None for name in FIELDS)


class AnswerStore:
    """The answers of one study."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    def _connect(self) -> _Closing:
        try:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise InputError(f"{self.path}: cannot open the answer database ({exc})") from exc
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return _Closing(conn)

    # ------------------------------------------------------------------------------------------- reads
    def answers(self, reader: str) -> dict[str, dict]:
        """Case ID -> answer (every field, ``None`` where unanswered) of one reader."""
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM answers WHERE reader = ?", (reader,)).fetchall()
        return {row["case_id"]: _row_to_answer(row) for row in rows}

    def submitted_at(self, reader: str) -> str | None:
        with self._connect() as conn:
            row = conn.execute("SELECT submitted_at FROM submissions WHERE reader = ?", (reader,)).fetchone()
        return row["submitted_at"] if row else None

    def all_rows(self) -> tuple[list[dict], dict[str, str]]:
        """Every stored answer (with reader and case_id) and reader -> submission time."""
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM answers ORDER BY reader, case_id").fetchall()
            subs = conn.execute("SELECT reader, submitted_at FROM submissions").fetchall()
        return [dict(row) for row in rows], {row["reader"]: row["submitted_at"] for row in subs}

    # ------------------------------------------------------------------------------------------ writes
    def save_answer(self, reader: str, case_id: str, update: dict) -> dict:
        """Merge a partial answer into the stored one, in one transaction; returns the stored answer.

        Raises :class:`AlreadySubmitted` after the reader submitted, :class:`AnswerError` for bad values.
        """
        update = validate_answer(update)
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute("SELECT 1 FROM submissions WHERE reader = ?", (reader,)).fetchone():
                    raise AlreadySubmitted("answers were submitted and can no longer be changed")
                row = conn.execute("SELECT * FROM answers WHERE reader = ? AND case_id = ?",
                                   (reader, case_id)).fetchone()
                answer = _row_to_answer(row) if row else dict.fromkeys(FIELDS)
                answer.update(update)
                values = [answer[name] for name in FIELDS]
                conn.execute(
                    f"INSERT INTO answers (reader, case_id, {', '.join(FIELDS)}, updated_at) "
                    f"VALUES (?, ?, {', '.join('?' for _ in FIELDS)}, ?) "
                    f"ON CONFLICT(reader, case_id) DO UPDATE SET "
                    f"{', '.join(f'{n} = excluded.{n}' for n in FIELDS)}, updated_at = excluded.updated_at, "
                    f"revisions = revisions + 1",
                    (reader, case_id, *values, _now()),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return answer

    def submit(self, reader: str, case_ids: list[str]) -> str:
        """Lock the reader's answers; every case must be complete. Returns the submission time (UTC ISO)."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT submitted_at FROM submissions WHERE reader = ?", (reader,)).fetchone()
                if row:
                    conn.execute("ROLLBACK")
                    return row["submitted_at"]
                rows = conn.execute("SELECT * FROM answers WHERE reader = ?", (reader,)).fetchall()
                answers = {r["case_id"]: _row_to_answer(r) for r in rows}
                missing = [c for c in case_ids if not is_complete(answers.get(c))]
                if missing:
                    raise AnswerError(f"{len(missing)} case(s) are not fully answered yet")
                when = _now()
                conn.execute("INSERT INTO submissions (reader, submitted_at) VALUES (?, ?)", (reader, when))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return when


class _Closing:
    """``with`` on a sqlite3 connection commits but does not close; this closes."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc) -> None:
        self.conn.close()


def _row_to_answer(row: sqlite3.Row) -> dict:
    return {name: row[name] for name in FIELDS}


EXPORT_COLUMNS = ("reader", "position", "case_id", *FIELDS, "complete", "updated_at", "revisions", "submitted_at")


def export_answers(study: str | Path, out: str | Path | None = None) -> Path:
    """Write every reader's answers as CSV (default ``STUDY/answers.csv``); one row per reader and case.

    Rows follow each reader's reading order (``position`` 1..N); unanswered cases have empty fields. The
    export holds no truth: join it with ``key.csv`` on ``case_id`` to unblind.
    """
    study = Path(study)
    manifest = layout.load_manifest(study)
    out = Path(out) if out is not None else study / "answers.csv"
    rows, submitted = AnswerStore(study / layout.DATABASE).all_rows()
    by_key = {(r["reader"], r["case_id"]): r for r in rows}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for reader, order in manifest["readers"].items():
        for position, case_id in enumerate(order, start=1):
            row = by_key.get((reader, case_id), {})
            writer.writerow({
                "reader": reader, "position": position, "case_id": case_id,
                **{name: row.get(name) for name in FIELDS},
                "complete": int(is_complete(row or None)), "updated_at": row.get("updated_at"),
                "revisions": row.get("revisions", 0), "submitted_at": submitted.get(reader),
            })
    return atomic_write_text(out, buffer.getvalue())


def read_answers_csv(path: str | Path) -> list[dict]:
    """Rows of an export (:func:`export_answers`) with integer fields parsed; empty -> None."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such answers file")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for name in FIELDS:
            value = row.get(name, "")
            row[name] = None if value == "" else (value if name == "call" else int(value))
    return rows
