"""Small shared helpers: seeding, atomic writes, reading saved models, device choice, progress bars."""

from __future__ import annotations

import contextlib
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .errors import InputError, SynthseqError

T = TypeVar("T")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (CPU and every CUDA device)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


#: ``.<stem>.<pid>.<random>.tmp<suffixes>``: the writer's pid tells a live writer's file from a killed one's
TEMP_RE = re.compile(r"^\.[^/]*?\.(?P<pid>[0-9]+)\.[a-z0-9_]{6,}\.tmp(\.[^/]*)?$")
#: temporaries named before the pid was part of the name: removed once this old (seconds)
LEGACY_TEMP_RE = re.compile(r"^\.[^/.]*\.[a-z0-9_]{8}\.tmp(\.[^/]*)?$")
LEGACY_TEMP_AGE_S = 3600.0
_SWEPT: set[Path] = set()  #: folders this process already cleaned of stale temporaries


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's live process (or an odd number): leave its file alone
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporaries that :func:`atomic_path` writers killed mid-write left in ``folder``.

    A temporary is stale when the process named in it no longer runs (or, for the older name without a pid,
    when it is over an hour old). Returns what was removed; unreadable folders are skipped silently.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = TEMP_RE.match(entry.name)
        try:
            stale = (m is not None and not _pid_alive(int(m.group("pid")))) or (
                m is None and LEGACY_TEMP_RE.match(entry.name) is not None
                and now - entry.stat(follow_symlinks=False).st_mtime > LEGACY_TEMP_AGE_S)
            if stale and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Readers never see a half-written file and a crash leaves the previous file intact. The
    temporary name keeps ``path``'s suffixes (``.nii.gz``, ``.pt``) so writers that infer the
    format from the name still work, and holds the writer's pid so that the next writer into the
    folder removes what a killed one left (:func:`remove_stale_temporaries`).

    Raises:
        InputError: ``path`` is an existing folder.
        OSError: the folder cannot be made or written (full disk, read-only, under a file); its
            ``filename`` is ``path`` (not the temporary), so the CLI can name it in one line.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent not in _SWEPT:  # once per folder and process: a folder of 10k outputs is not rescanned
            remove_stale_temporaries(path.parent)
            _SWEPT.add(path.parent)
        suffix = "".join(path.suffixes)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.{os.getpid()}.", suffix=".tmp" + suffix,
                                   dir=path.parent)
    except OSError as exc:
        raise _naming(exc, path) from None
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; outputs get the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        raise _naming(exc, path) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` as the same OSError type whose ``filename`` is the file the user asked for."""
    temporary = exc.filename is not None and str(exc.filename).startswith(os.path.join(str(path.parent), "."))
    if exc.filename is not None and not temporary:
        return exc  # names something the user can act on (e.g. the file that blocks a folder)
    return type(exc)(exc.errno, exc.strerror or str(exc), str(path))


@contextlib.contextmanager
def directory_lock(folder: str | os.PathLike, what: str = "run") -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (created if missing) while the block runs.

    A second holder fails at once with :class:`InputError` naming the folder and the pid holding it; the lock
    (``folder/.lock``, ``fcntl.flock``) is released by the kernel when its process dies, so a killed run never
    leaves the folder locked. A folder this call created is removed again if it is still empty at the end
    (a refused run leaves nothing behind). Stale temporaries of killed writers are removed once locked.
    """
    import fcntl

    folder = Path(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / ".lock", "a+")  # noqa: SIM115 - held for the whole block
    except OSError as exc:
        raise _naming(exc, folder) from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise InputError(f"{folder}: another {what} is writing into this folder ({holder}); wait for it to "
                             "finish or choose another folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        remove_stale_temporaries(folder)
        yield folder
    finally:
        handle.close()
        with contextlib.suppress(OSError):
            if created and [p.name for p in folder.iterdir()] == [".lock"]:
                (folder / ".lock").unlink()
                folder.rmdir()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temporary name, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def read_saved_model(path: str | os.PathLike, reader: Callable[[Path], Any], fmt: str, what: str) -> dict:
    """The dict a model's ``save`` wrote to ``path`` (with ``"format": fmt``), read by ``reader(path)``.

    Raises:
        InputError: one line naming the file when it is missing, unreadable, or another kind of file;
            ``what`` names the kind (e.g. ``"classifier model"``).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    try:
        blob = reader(path)
    except SynthseqError:  # the reader's own one-line message (e.g. a content-hash mismatch) stands
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error here
        article = "an" if what[:1] in "aeiou" else "a"
        raise InputError(f"{path}: cannot read as {article} {what} ({type(exc).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise InputError(f"{path}: not a synthseq {what}")
    return blob


def resolve_device(name: str = "auto"):
    """Map ``"auto" | "cpu" | "cuda" | "cuda:N"`` to a ``torch.device``; ``auto`` prefers CUDA."""
    import torch

    from .errors import SynthseqError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SynthseqError(f"device {name!r} requested but no CUDA device is available (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise SynthseqError(f"unknown device {name!r} (use auto, cpu or cuda)") from exc


def progress(iterable: Iterable[T], *, desc: str = "", total: int | None = None, disable: bool | None = None, **kw):
    """A tqdm progress bar on stderr; hidden when stderr is not a terminal unless forced on."""
    from tqdm.auto import tqdm

    if disable is None:
        disable = not sys.stderr.isatty()
    return tqdm(iterable, desc=desc, total=total, disable=disable, dynamic_ncols=True, **kw)
