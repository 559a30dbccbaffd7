"""Model files that cannot run code when loaded, with a content hash checked on every load.

Outcome and classifier models used to be pickles (joblib / ``torch.save``): unpickling a file runs whatever
code its author put in it. A model file is now::

    SYNTHSEQ-MODEL 1\\n                                       magic line
    {"format": "synthseq-outcome", "sha256": "...", "bytes": N}\\n   header (one JSON line)
    <N bytes of payload>                                     a zip archive

and the payload's zip holds only data that loads without code execution:

* ``meta.json`` - config, feature names, metrics (JSON);
* ``arrays/<name>.npy`` - numeric arrays, read with ``numpy.load(allow_pickle=False)``;
* ``blobs/<name>`` - opaque bytes for an estimator, decoded by the caller with a loader that is itself safe
  (skops with an explicit trusted-types allowlist for scikit-learn, CatBoost's own binary format).

``sha256`` is the SHA-256 of the payload bytes; :func:`read_model_file` checks it before looking inside, so a
flipped bit or a truncated copy is one line (:class:`~synthseq.errors.InputError`). Files that start like a
pickle, a joblib dump or a ``torch.save`` zip are refused before anything in them is read.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..utils import atomic_path

MAGIC = b"SYNTHSEQ-MODEL 1\n"
SUFFIX = ".ssmodel"  #: file name ending of model files (``model.ssmodel``)
MAX_BYTES = 2 * 1024**3  #: larger files are refused before being read


@dataclass
class ModelFile:
    """The decoded contents of a model file."""

    format: str
    meta: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)


def write_model_file(path: str | Path, fmt: str, meta: dict, arrays: dict[str, np.ndarray] | None = None,
                     blobs: dict[str, bytes] | None = None) -> Path:
    """Write a model file atomically (see the module docstring); ``meta`` must be JSON-serializable."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.json", json.dumps(meta, allow_nan=True))
        for name, arr in (arrays or {}).items():
            a = np.asarray(arr)
            if a.dtype.hasobject:
                raise ValueError(f"array {name!r} holds Python objects; model files store numbers only")
            out = io.BytesIO()
            np.save(out, a, allow_pickle=False)
            zf.writestr(f"arrays/{name}.npy", out.getvalue())
        for name, data in (blobs or {}).items():
            zf.writestr(f"blobs/{name}", bytes(data))
    payload = buf.getvalue()
    header = {"format": fmt, "sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload)}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(MAGIC)
        fh.write(json.dumps(header).encode() + b"\n")
        fh.write(payload)
    return Path(path)


def _legacy_kind(head: bytes) -> str | None:
    """Name of the pickle-based format a file starts like, or None."""
    if head[:1] == b"\x80" and head[1:2] in bytes(range(2, 6)):
        return "a pickle / joblib file"
    if head[:2] in (b"x\x01", b"x\x5e", b"x\x9c", b"x\xda") or head[:3] == b"\x1f\x8b\x08":
        return "a compressed joblib file"
    if head[:4] == b"PK\x03\x04":
        return "a torch.save file"
    return None


def read_model_file(path: str | Path, fmt: str, what: str) -> ModelFile:
    """Read and verify a model file written by :func:`write_model_file` with format ``fmt``.

    Nothing in the file is executed: an old pickle-based file is refused from its first bytes, the payload's
    hash is checked before it is opened, and arrays are read with ``allow_pickle=False``.

    Raises:
        InputError: one line naming ``path``: missing, too large, an old pickle-based model, another kind of
            file, a corrupt payload (hash mismatch, truncated), or a model of another kind (``what``).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise InputError(f"{path}: {size} bytes is larger than the {MAX_BYTES} bytes a model file may have")
    with open(path, "rb") as fh:
        head = fh.read(len(MAGIC))
        if head != MAGIC:
            legacy = _legacy_kind(head)
            if legacy:
                raise InputError(f"{path}: not a synthseq {what} of this version but {legacy} (old pickle-based "
                                 f"format), refused unread because loading it could run code; refit it with "
                                 f"this version to get a {SUFFIX} file")
            raise InputError(f"{path}: not a synthseq {what} (no synthseq model header)")
        line = fh.readline(4096)
        payload = fh.read()
    try:
        header = json.loads(line)
        digest, n = str(header["sha256"]), int(header["bytes"])
        kind = str(header["format"])
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{path}: corrupt model header (the file is damaged)") from None
    if len(payload) != n:
        raise InputError(f"{path}: corrupt model file: payload is {len(payload)} bytes, header says {n} "
                         "(truncated or damaged copy)")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise InputError(f"{path}: corrupt model file: content hash (sha256) does not match the one stored in it")
    if kind != fmt:
        raise InputError(f"{path}: not a synthseq {what} (it is a {kind!r} file)")
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as zf:
            meta = json.loads(zf.read("meta.json"))
            arrays, blobs = {}, {}
            for name in zf.namelist():
                if name.startswith("arrays/") and name.endswith(".npy"):
                    arrays[name[7:-4]] = np.load(io.BytesIO(zf.read(name)), allow_pickle=False)
                elif name.startswith("blobs/"):
                    blobs[name[6:]] = zf.read(name)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise InputError(f"{path}: unreadable {what} payload ({type(exc).__name__})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: unreadable {what} payload (meta.json is not an object)")
    return ModelFile(kind, meta, arrays, blobs)


# ----------------------------------------------------------------------------- scikit-learn through skops
#: Types beyond skops' default trusted set (scikit-learn estimators, numpy arrays) that our estimators hold.
#: Anything else found in a file is refused: loading it would need a type we did not vet.
SKOPS_TRUSTED = ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor", "numpy.dtype")


def dump_sklearn(estimator) -> bytes:
    """A fitted scikit-learn estimator -> skops bytes."""
    import skops.io as sio

    return sio.dumps(estimator)


def load_sklearn(data: bytes, path, what: str):
    """skops bytes -> estimator, trusting only skops' defaults plus :data:`SKOPS_TRUSTED`."""
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # noqa: BLE001 - a damaged estimator blob is a user error here
        raise InputError(f"{path}: unreadable {what} estimator ({type(exc).__name__})") from None
    extra = sorted(set(untrusted) - set(SKOPS_TRUSTED))
    if extra:
        raise InputError(f"{path}: {what} holds types outside the allowlist ({', '.join(extra)}); refused")
    try:
        return sio.loads(data, trusted=list(untrusted))
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: unreadable {what} estimator ({type(exc).__name__}: {exc})".replace("\n", " ")
                         ) from None
