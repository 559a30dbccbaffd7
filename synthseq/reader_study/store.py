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
CREATE TABLE IF NOT EXISTS session_submissions (
    reader TEXT NOT NULL,
    session INTEGER NOT NULL,
    submitted_at TEXT NOT NULL,
    PRIMARY KEY (reader, session)
);
CREATE TABLE IF NOT EXISTS reading_time (
    reader TEXT NOT NULL,
    case_id TEXT NOT NULL,
    seconds REAL NOT NULL DEFAULT 0,
    visits INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (reader, case_id)
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
        try:
            with self.path.open("rb") as fh:
                magic = fh.read(16)
        except FileNotFoundError:
            magic = None
        if magic and magic != b"SQLite format 3\0":  # SQLite would "open" (and write into) a short non-database
            raise InputError(f"{self.path}: not an SQLite database; restore it from a backup or move it away to "
                             "start empty")
        with self._connect() as conn:
            try:
                conn.executescript(_SCHEMA)
                conn.execute("SELECT reader, case_id, updated_at, revisions FROM answers LIMIT 1").fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc) from None

    def _error(self, exc: sqlite3.Error) -> InputError:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, sqlite3.OperationalError):  # the file may be fine: the system refused to open/write it
            return InputError(f"{self.path}: cannot open or write the answer database ({reason})")
        return InputError(f"{self.path}: not a readable answer database ({reason}); restore it from a backup or "
                          "move it away to start empty")

    def _connect(self) -> _Closing:
        try:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise InputError(f"{self.path}: cannot open the answer database ({exc})") from exc
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:  # e.g. "file is not a database"
            conn.close()
            raise self._error(exc) from None
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
        """Every stored answer (with reader, case_id and ``reading_seconds``) and reader -> submission time."""
        with self._connect() as conn:
            try:
                rows = conn.execute(
                    "SELECT a.*, t.seconds AS reading_seconds FROM answers a LEFT JOIN reading_time t "
                    "ON a.reader = t.reader AND a.case_id = t.case_id ORDER BY a.reader, a.case_id").fetchall()
                subs = conn.execute("SELECT reader, submitted_at FROM submissions").fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc) from None
        return [dict(row) for row in rows], {row["reader"]: row["submitted_at"] for row in subs}

    def reading_seconds(self) -> dict[tuple[str, str], float]:
        """(reader, case ID) -> seconds the case was on the reader's screen (summed over visits)."""
        with self._connect() as conn:
            try:
                rows = conn.execute("SELECT reader, case_id, seconds FROM reading_time").fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc) from None
        return {(row["reader"], row["case_id"]): row["seconds"] for row in rows}

    def add_reading_time(self, reader: str, case_id: str, seconds: float) -> float:
        """Add one visit's ``seconds`` to the case's reading time (also after submission: it is not an answer);
        returns the new total."""
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO reading_time (reader, case_id, seconds, visits) VALUES (?, ?, ?, 1) "
                "ON CONFLICT(reader, case_id) DO UPDATE SET seconds = seconds + excluded.seconds, "
                "visits = visits + 1", (reader, case_id, float(seconds)))
            row = conn.execute("SELECT seconds FROM reading_time WHERE reader = ? AND case_id = ?",
                               (reader, case_id)).fetchone()
        return float(row["seconds"])

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

    def sessions_submitted(self, reader: str) -> dict[int, str]:
        """Session number (1-based, all but the last of a two-session study) -> when the reader submitted it."""
        with self._connect() as conn:
            rows = conn.execute("SELECT session, submitted_at FROM session_submissions WHERE reader = ?",
                                (reader,)).fetchall()
        return {int(r["session"]): r["submitted_at"] for r in rows}

    def submit_session(self, reader: str, session: int, case_ids: list[str]) -> str:
        """Lock one session's answers (every case of it complete); returns when (UTC ISO). Idempotent."""
        return self._submit_once(
            "SELECT submitted_at FROM session_submissions WHERE reader = ? AND session = ?",
            "INSERT INTO session_submissions (reader, session, submitted_at) VALUES (?, ?, ?)",
            (reader, session), case_ids, "case(s) of this session")

    def submit(self, reader: str, case_ids: list[str]) -> str:
        """Lock the reader's answers; every case must be complete. Returns the submission time (UTC ISO)."""
        return self._submit_once("SELECT submitted_at FROM submissions WHERE reader = ?",
                                 "INSERT INTO submissions (reader, submitted_at) VALUES (?, ?)",
                                 (reader,), case_ids, "case(s)")

    def _submit_once(self, select: str, insert: str, key: tuple, case_ids: list[str], what: str) -> str:
        """One locking transaction: the stored time if ``key`` (reader[, session]) was submitted already, else
        check every case of ``key[0]`` is complete, insert ``(*key, now)`` and return now."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(select, key).fetchone()
                if row:
                    conn.execute("ROLLBACK")
                    return row["submitted_at"]
                rows = conn.execute("SELECT * FROM answers WHERE reader = ?", (key[0],)).fetchall()
                answers = {r["case_id"]: _row_to_answer(r) for r in rows}
                missing = [c for c in case_ids if not is_complete(answers.get(c))]
                if missing:
                    raise AnswerError(f"{len(missing)} {what} are not fully answered yet")
                when = _now()
                conn.execute(insert, (*key, when))
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


EXPORT_COLUMNS = ("reader", "position", "case_id", *FIELDS, "complete", "updated_at", "revisions", "submitted_at",
                  "reading_seconds")
EXPORT = "answers.csv"


def check_export_target(study: Path, out: Path, overwrite: bool) -> None:
    """Refuse an export onto the study's own files (manifest, key, tokens, database, cases) or onto an existing
    file the user did not allow to be replaced. ``STUDY/answers.csv`` is the export's own slot."""
    own = {layout.MANIFEST, layout.KEY, layout.TOKENS, layout.DATABASE, f"{layout.DATABASE}-wal",
           f"{layout.DATABASE}-shm"}
    target = out.resolve()
    root = study.resolve()
    if target.parent == root and target.name in own or target.is_relative_to(root / layout.CASES) or target == root:
        raise InputError(f"{out}: is one of the study's own files; export to another file")
    if target.is_dir():
        raise InputError(f"{out}: is a folder; give a CSV file name")
    if target.exists() and not overwrite and target != root / EXPORT:
        raise InputError(f"{out}: already exists (pass --overwrite to replace it)")


def export_answers(study: str | Path, out: str | Path | None = None, *, overwrite: bool = False) -> Path:
    """Write every reader's answers as CSV (default ``STUDY/answers.csv``); one row per reader and case.

    Rows follow each reader's reading order (``position`` 1..N); unanswered cases have empty fields;
    ``reading_seconds`` is how long the case was on screen (summed over visits). The export holds no truth:
    join it with ``key.csv`` on ``case_id`` to unblind. An existing ``out`` is refused unless ``overwrite``
    (the default ``STUDY/answers.csv`` is always refreshed), and so is any of the study's own files.
    """
    study = Path(study)
    manifest = layout.load_manifest(study)
    out = Path(out) if out is not None else study / EXPORT
    check_export_target(study, out, overwrite)
    store = AnswerStore(study / layout.DATABASE)
    rows, submitted = store.all_rows()
    seconds = store.reading_seconds()
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
                "reading_seconds": (f"{seconds[(reader, case_id)]:.1f}" if (reader, case_id) in seconds else ""),
            })
    return atomic_write_text(out, buffer.getvalue())


def read_answers_csv(path: str | Path) -> list[dict]:
    """Rows of an export (:func:`export_answers`) with integer fields parsed; empty -> None."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such answers file")
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read as an answers CSV ({type(exc).__name__})") from None
    missing = [c for c in ("reader", "case_id", *FIELDS) if rows and c not in rows[0]]
    if not rows or missing:
        raise InputError(f"{path}: not an answers export (missing column(s) {', '.join(missing) or 'and rows'})")
    for line, row in enumerate(rows, start=2):
        for name in FIELDS:
            value = row.get(name) or ""
            try:
                row[name] = None if value == "" else (value if name == "call" else int(value))
            except ValueError:
                raise InputError(f"{path}: line {line}: {name} is {value!r}, not an integer") from None
            if row[name] is not None and row[name] not in layout.ANSWER_FIELDS[name]:
                raise InputError(f"{path}: line {line}: {name} is {value!r}, expected one of "
                                 f"{list(layout.ANSWER_FIELDS[name])}")
    return rows
