"""Small shared helpers: seeding, atomic writes, reading saved models, device choice, progress bars."""

from __future__ import annotations

import contextlib
import os
import random
import sys
import tempfile
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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Readers never see a half-written file and a crash leaves the previous file intact. The
    temporary name keeps ``path``'s suffixes (``.nii.gz``, ``.pt``) so writers that infer the
    format from the name still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; outputs get the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


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
