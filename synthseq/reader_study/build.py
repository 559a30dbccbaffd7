"""Blinded case sets: pair real and synthetic volumes by subject, render the shown slices, shuffle per reader.

Every subject found in both folders gives two cases (its real STIR and its synthetic STIR), each under an
opaque ID. Both are windowed by the same rule (per volume, the 1st and 99th percentile map to 0 and 1) so
brightness does not give the source away, and both show the same slices of the same grid. Everything that
could unblind a reader (subject, source, lesion truth, file paths) goes to ``STUDY/key.csv`` only.

Blinding rests on secrets, not on the seed: case IDs come from :mod:`secrets` (independent of the seed and of
the order cases are built in), and each reader's order is a shuffle drawn from the seed mixed with a fresh
secret salt (:func:`secrets.token_hex`, never stored: the orders themselves are kept in the manifest), so
knowing or guessing the seed (the default 0) tells a reader nothing about the key. The seed still fixes which
subjects a ``cases=`` sample takes, the rendering is deterministic, and ``key.csv`` + ``manifest.json`` record
everything needed to audit the design; a rebuild with the same seed gives the same cases under new IDs. The real and synthetic case of one subject are at least ``min_gap`` positions apart
in every reader's order, so they are never read back to back. Served files carry content-derived ETags only
(see :mod:`synthseq.reader_study.app`) and the display PNGs of a study are padded to one size.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
import secrets
import shutil
import struct
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._version import __version__
from ..data.layout import SUBJECT_RE
from ..data.slicing import SagittalView
from ..errors import ConfigError, InputError
from ..io import Volume, load_volume, save_volume
from ..utils import atomic_write_text
from . import layout

SLICE_MODES = ("mid", "lesion", "all")
MID_HALF_WIDTH = 2  #: ``mid`` shows the middle sagittal slice and this many neighbours on each side
REAL_SUFFIXES = ("_STIR.nii.gz", "_STIR.nii")
SYNTHETIC_SUFFIXES = ("_pseudoSTIR.nii.gz", "_pseudoSTIR.nii", "_STIR.nii.gz", "_STIR.nii")
LESION_SUFFIXES = ("_lesions.nii.gz", "_lesions.nii")
T2W_SUFFIXES = ("_T2w.nii.gz", "_T2w.nii")
DEFAULT_MIN_GAP = 5  #: a subject's two cases are at least this many positions apart (capped to what n allows)
_ORDER_ATTEMPTS = 2000


@dataclass
class BuildSummary:
    """What :func:`build_study` wrote."""

    study: Path
    subjects: list[str]
    cases: int
    readers: list[str]
    unpaired: list[str] = field(default_factory=list)  #: subjects found in only one of the two folders
    resampled: list[str] = field(default_factory=list)  #: volumes resampled onto the synthetic volume's grid


def find_volumes(folder: str | Path, suffixes: tuple[str, ...], what: str) -> dict[str, Path]:
    """Subject ID (leading ``sub-XXXX`` of the file name) -> file, searching ``folder`` recursively.

    The first suffix in ``suffixes`` that a subject has wins (so ``_pseudoSTIR`` beats ``_STIR``);
    two files of one subject with the same suffix raise :class:`InputError`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: {what} folder does not exist")
    found: dict[str, tuple[int, Path]] = {}
    for path in sorted(folder.rglob("*")):
        match = SUBJECT_RE.match(path.name)  # the dataset layout's subject-id rule (synthseq.data.layout)
        rank = next((i for i, s in enumerate(suffixes) if path.name.endswith(s)), None)
        if match is None or rank is None or not path.is_file():
            continue
        subject = match.group(1)
        if subject in found and found[subject][0] == rank:
            raise InputError(f"{path}: second {what} volume for {subject} (also {found[subject][1]})")
        if subject not in found or rank < found[subject][0]:
            found[subject] = (rank, path)
    return {subject: path for subject, (_, path) in sorted(found.items())}


def window(data: np.ndarray, percentiles: tuple[float, float], name: str) -> tuple[np.ndarray, float, float]:
    """Map the volume's low/high percentile to 0/1 (float32, not clipped, so the page can still level).

    Returns ``(windowed, low, high)`` with low/high in the input's units.
    """
    low, high = (float(v) for v in np.percentile(data, percentiles))
    if not high > low:
        raise InputError(f"{name}: constant intensities between the {percentiles} percentiles; cannot window")
    return ((data - low) / (high - low)).astype(np.float32), low, high


def select_slices(n_slices: int, mode: str, lesion_slices: np.ndarray | None) -> tuple[int, int]:
    """Half-open range ``[start, stop)`` of canonical sagittal slices to show.

    ``mid``: the middle slice +/- :data:`MID_HALF_WIDTH`; ``all``: every slice; ``lesion``: from the first to
    the last slice holding any finding, padded by one slice (the ``mid`` block when there is none). The range
    is contiguous so slice scrolling in the page moves through real anatomy.
    """
    mid_start = max(0, n_slices // 2 - MID_HALF_WIDTH)
    mid = (mid_start, min(n_slices, n_slices // 2 + MID_HALF_WIDTH + 1))
    if mode == "all":
        return 0, n_slices
    if mode == "mid" or lesion_slices is None or not lesion_slices.any():
        return mid
    idx = np.flatnonzero(lesion_slices)
    return max(0, int(idx[0]) - 1), min(n_slices, int(idx[-1]) + 2)


def stack_affine(spacing: tuple[float, float, float]) -> np.ndarray:
    """RAS+ affine of a canonical ``(S, H, W)`` stack: S towards left, H towards inferior, W towards posterior.

    The origin is dropped on purpose: the stack only needs voxel size and orientation, and an origin would
    identify the subject.
    """
    ds, dh, dw = spacing
    affine = np.zeros((4, 4))
    affine[0, 0], affine[2, 1], affine[1, 2], affine[3, 3] = -ds, -dh, -dw, 1.0
    return affine


def _write_png(path: Path, image: np.ndarray) -> None:
    """8-bit grey PNG of a windowed slice (values clipped to [0, 1]); display only, never analysed."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import image as mpimg

    buffer = io.BytesIO()
    mpimg.imsave(buffer, np.clip(image, 0.0, 1.0), cmap="gray", vmin=0.0, vmax=1.0, format="png",
                 metadata={"Software": None})
    path.write_bytes(buffer.getvalue())


def _onto(vol: Volume, ref: Volume, order: int, what: str, log: list[str] | None) -> Volume:
    """``vol`` on ``ref``'s grid (as is, or resampled with spline ``order`` and named in ``log``); the source
    path is kept for the key. InputError naming both files when their fields of view do not overlap."""
    from ..data.registration import resample_to, same_grid

    if same_grid(vol, ref):
        return vol
    if log is not None:
        log.append(what)
    out = resample_to(vol, ref, order=order)
    out.path = vol.path
    return out


def build_study(
    real: str | Path,
    synthetic: str | Path,
    out: str | Path,
    readers: list[str],
    *,
    lesions: str | Path | None = None,
    seed: int = 0,
    slices: str = "mid",
    cases: int | None = None,
    percentiles: tuple[float, float] = (1.0, 99.0),
    min_gap: int | None = None,
    t2w: str | Path | None = None,
    sessions: int = 1,
    washout_days: float = 0.0,
) -> BuildSummary:
    """Write a blinded reader study to ``out`` (which must not exist or be empty).

    Args:
        real: folder searched recursively for ``sub-XXXX*_STIR.nii.gz``.
        synthetic: folder searched for ``sub-XXXX*_pseudoSTIR.nii.gz`` (or ``*_STIR.nii.gz``), on the real grid.
        out: the study folder (layout in :mod:`synthseq.reader_study.layout`).
        readers: reader names (letters, digits, ``_.-``); every reader reads every case.
        lesions: optional folder of ``sub-XXXX*_lesions.nii.gz`` (phantom codes) giving the finding truth.
        seed: fixes the subject sample (``cases``); case IDs and reading orders are drawn from :mod:`secrets`.
        slices: ``mid`` | ``lesion`` | ``all`` (see :func:`select_slices`).
        cases: total number of cases (even: two per subject); default every paired subject.
        percentiles: intensity percentiles mapped to 0 and 1, the same rule for real and synthetic.
        min_gap: least distance between a subject's real and synthetic case in every reader's order
            (1 = may be adjacent); default :data:`DEFAULT_MIN_GAP`, capped to ``n_subjects // 2 + 1``.
        t2w: optional folder of ``sub-XXXX*_T2w.nii.gz`` on the real grid: the page then shows the subject's
            T2w beside each case (same slices, its own percentile window). Both cases of a subject show the
            same T2w, so a reader can tell that two cases are one subject (inherent to this design).
        sessions: 1, or 2: each reader reads every subject's real case in one session and its synthetic case in
            the other (which one where is drawn per reader and subject), the second session opening
            ``washout_days`` after the first was submitted.
    """
    out = Path(out)
    readers = _check_readers(readers)
    if slices not in SLICE_MODES:
        raise ConfigError(f"--slices: expected one of {', '.join(SLICE_MODES)}, got {slices!r}")
    if slices == "lesion" and lesions is None:
        raise ConfigError("--slices lesion needs --lesions DIR")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: study folder already exists and is not empty")

    real_files = find_volumes(real, REAL_SUFFIXES, "real")
    synth_files = find_volumes(synthetic, SYNTHETIC_SUFFIXES, "synthetic")
    paired = sorted(set(real_files) & set(synth_files))
    unpaired = sorted(set(real_files) ^ set(synth_files))
    if not paired:
        raise InputError(f"{synthetic}: no subject has both a real ({real}) and a synthetic volume")
    lesion_files = find_volumes(lesions, LESION_SUFFIXES, "lesion") if lesions is not None else {}
    if lesions is not None and (missing := [s for s in paired if s not in lesion_files]):
        raise InputError(f"{lesions}: no lesion mask for {', '.join(missing[:5])}")
    t2w_files = find_volumes(t2w, T2W_SUFFIXES, "T2w") if t2w is not None else {}
    if t2w is not None and (missing := [s for s in paired if s not in t2w_files]):
        raise InputError(f"{t2w}: no T2w volume for {', '.join(missing[:5])}")

    rng = random.Random(seed)
    if cases is not None:
        if cases < 2 or cases % 2:
            raise ConfigError(f"--cases: expected an even number >= 2 (a real and a synthetic case per subject), "
                              f"got {cases}")
        if cases // 2 > len(paired):
            raise ConfigError(f"--cases {cases}: only {len(paired)} subject(s) have both volumes")
        paired = sorted(rng.sample(paired, cases // 2))
    if sessions not in (1, 2) or isinstance(sessions, bool):
        raise ConfigError(f"--sessions: expected 1 or 2 (a subject's two cases in different sessions), got {sessions!r}")
    if not (isinstance(washout_days, int | float) and 0 <= washout_days <= 365):  # also false for nan
        raise ConfigError(f"--washout-days: expected a number of days in [0, 365], got {washout_days!r}")
    if washout_days and sessions == 1:
        raise ConfigError("--washout-days needs --sessions 2")
    gap = _check_min_gap(min_gap, len(paired)) if sessions == 1 else None

    parent = out.parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(parent, out.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", dir=parent))
    try:
        manifest_cases, key_rows, resampled = {}, [], []
        used: set[str] = set()
        for subject in paired:
            for case_id, row, info in _build_subject(tmp, subject, real_files[subject], synth_files[subject],
                                                     lesion_files.get(subject), slices, percentiles, used,
                                                     t2w_files.get(subject), resampled):
                manifest_cases[case_id] = info
                key_rows.append(row)
        ids = sorted(manifest_cases)
        subject_of = {row["case_id"]: row["subject"] for row in key_rows}
        salt = secrets.token_hex(16)  # the seed alone must not let anyone recompute an order
        if sessions == 1:
            order = {reader: reading_order(ids, subject_of, gap, random.Random(f"{seed}:{reader}:{salt}"))
                     for reader in readers}
            session_split = None
        else:
            parts = {reader: session_orders(ids, subject_of, random.Random(f"{seed}:{reader}:{salt}"))
                     for reader in readers}
            order = {reader: first + second for reader, (first, second) in parts.items()}
            session_split = {reader: len(first) for reader, (first, _) in parts.items()}
        _pad_pngs(tmp / layout.CASES)
        manifest = {
            "format": layout.FORMAT, "version": 1, "synthseq_version": __version__, "seed": seed,
            "slices": slices, "window_percentiles": list(percentiles),
            "findings": [{"name": n, "label": label} for n, label, _ in layout.FINDINGS],
            "has_lesion_truth": lesions is not None, "with_t2w": t2w is not None,
            "min_gap": gap, "cases": {cid: manifest_cases[cid] for cid in ids}, "readers": order,
            "sessions": None if session_split is None else {"count": 2, "washout_days": float(washout_days),
                                                            "first_session_length": session_split},
        }
        atomic_write_text(tmp / layout.MANIFEST, json.dumps(manifest, indent=1) + "\n")
        _write_key(tmp / layout.KEY, sorted(key_rows, key=lambda r: r["case_id"]))
        os.chmod(tmp, 0o755)
        if out.exists():
            out.rmdir()  # empty (checked above); replaced by the finished study in one rename
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return BuildSummary(study=out, subjects=paired, cases=2 * len(paired), readers=readers, unpaired=unpaired,
                        resampled=resampled)


def _remove_stale_builds(parent: Path, name: str) -> None:
    """Delete half-built ``.NAME.<pid>.*`` folders of builds that were killed (their process no longer runs)."""
    pattern = re.compile(rf"^\.{re.escape(name)}\.([0-9]+)\.[a-z0-9_]+$")
    for entry in parent.iterdir():
        m = pattern.match(entry.name)
        if m is None or not entry.is_dir():
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except (PermissionError, OverflowError):
            pass


def _check_readers(readers: list[str]) -> list[str]:
    readers = [r.strip() for r in readers if r.strip()]
    if not readers:
        raise ConfigError("--readers: give at least one reader name")
    for reader in readers:
        if not layout.READER_RE.match(reader):
            raise ConfigError(f"--readers: {reader!r} is not a valid name (letters, digits, _ . -; max 64)")
    if len(set(readers)) != len(readers):
        raise ConfigError(f"--readers: duplicate names in {','.join(readers)}")
    return readers


def _new_case_id(used: set[str]) -> str:
    """``c`` + 10 hex digits from the OS's cryptographic source: nothing about seed, subject or order."""
    while True:
        case_id = f"c{secrets.token_hex(5)}"
        if case_id not in used:
            used.add(case_id)
            return case_id


def _check_min_gap(min_gap: int | None, n_subjects: int) -> int:
    """The gap to enforce: the default is capped so that orders stay varied; an explicit one is checked."""
    cap = n_subjects // 2 + 1  # larger gaps make the orders ever more regular (gap n forces i <-> i + n)
    if min_gap is None:
        return max(1, min(DEFAULT_MIN_GAP, cap))
    if isinstance(min_gap, bool) or not isinstance(min_gap, int) or min_gap < 1:
        raise ConfigError(f"--min-gap: expected an integer >= 1, got {min_gap!r}")
    if min_gap > max(1, cap):
        raise ConfigError(f"--min-gap {min_gap}: with {n_subjects} subject(s) at most {max(1, cap)} is possible "
                          "with varied orders")
    return min_gap


def session_orders(ids: list[str], subject_of: dict[str, str], rng: random.Random) -> tuple[list[str], list[str]]:
    """Two sessions holding one case of every subject each (a coin per subject decides which), each shuffled."""
    by_subject: dict[str, list[str]] = {}
    for cid in sorted(ids):
        by_subject.setdefault(subject_of[cid], []).append(cid)
    first, second = [], []
    for subject in sorted(by_subject):
        a, b = by_subject[subject]
        if rng.random() < 0.5:
            a, b = b, a
        first.append(a)
        second.append(b)
    rng.shuffle(first)
    rng.shuffle(second)
    return first, second


def reading_order(ids: list[str], subject_of: dict[str, str], gap: int, rng: random.Random) -> list[str]:
    """A random order of ``ids`` in which two cases of one subject are at least ``gap`` positions apart.

    Drawn position by position, uniformly among the cases still allowed there (restarting on a dead end), so
    every valid order is possible; ``rng`` must hold secret entropy (see the module docstring).
    """
    for _ in range(_ORDER_ATTEMPTS):
        remaining = sorted(ids)
        order: list[str] = []
        while remaining:
            recent = {subject_of[c] for c in order[max(0, len(order) - gap + 1):]}
            allowed = [c for c in remaining if subject_of[c] not in recent]
            if not allowed:
                break
            choice = allowed[rng.randrange(len(allowed))]
            order.append(choice)
            remaining.remove(choice)
        if not remaining:
            return order
    raise ConfigError(f"--min-gap {gap}: found no reading order of {len(ids)} cases with that gap; use a smaller one")


def _pad_pngs(cases_dir: Path) -> None:
    """Pad every display PNG of the study to the size of the largest with an ancillary chunk (ignored by
    decoders), so a compressed file's size (smoother images compress better) cannot tell sources apart."""
    files = sorted(cases_dir.glob("*/slice_*.png"))
    if not files:
        return
    target = max(p.stat().st_size for p in files) + 12  # every file gets a chunk: 12 bytes of chunk framing
    for path in files:
        blob = path.read_bytes()
        fill = target - len(blob) - 12
        chunk_type = b"pdDg"  # lowercase first letter: ancillary, safe for decoders to ignore
        chunk = struct.pack(">I", fill) + chunk_type + bytes(fill)
        chunk += struct.pack(">I", zlib.crc32(chunk[4:]) & 0xFFFFFFFF)
        iend = blob.rindex(b"IEND") - 4
        path.write_bytes(blob[:iend] + chunk + blob[iend:])


def _build_subject(tmp: Path, subject: str, real_path: Path, synth_path: Path, lesion_path: Path | None,
                   mode: str, percentiles: tuple[float, float], used: set[str], t2w_path: Path | None = None,
                   resampled: list[str] | None = None):
    """Yield ``(case_id, key_row, manifest_info)`` for the subject's real and synthetic case."""
    # the synthetic volume's grid (the T2w's) is the reference: real STIR, T2w and lesions on another grid are
    # resampled onto it (linear for images, nearest for lesion codes), so both cases show the same slices
    synth = load_volume(synth_path)
    real = _onto(load_volume(real_path), synth, 1, f"{subject} real STIR", resampled)
    t2w = _onto(load_volume(t2w_path), synth, 1, f"{subject} T2w", resampled) if t2w_path is not None else None
    view = SagittalView.from_affine(real.affine)
    truth: dict[str, str] = {name: "" for name in layout.FINDING_NAMES}
    lesion_slices = None
    if lesion_path is not None:
        lesion = _onto(load_volume(lesion_path, allow_zero=True), synth, 0, f"{subject} lesions", resampled)
        codes = np.rint(np.asarray(view.to_slices(lesion.data))).astype(np.int64)  # (S, H, W)
        finding_codes = [c for _, _, cs in layout.FINDINGS for c in cs]
        lesion_slices = np.isin(codes, finding_codes).any(axis=(1, 2))
    n_slices = view.to_slices(real.data).shape[0]
    start, stop = select_slices(n_slices, mode, lesion_slices)
    if lesion_path is not None:
        shown = codes[start:stop]
        truth = {name: str(int(np.isin(shown, cs).any())) for name, _, cs in layout.FINDINGS}
    spacing = (view.slice_spacing(real.spacing), *view.inplane_spacing(real.spacing))
    for source, volume in (("real", real), ("synthetic", synth)):
        windowed, low, high = window(volume.data, percentiles, str(volume.path))
        stack = np.ascontiguousarray(view.to_slices(windowed)[start:stop])  # (S, H, W)
        case_id = _new_case_id(used)
        case_dir = tmp / layout.CASES / case_id
        case_dir.mkdir(parents=True)
        save_volume(Volume(stack, stack_affine(spacing)), case_dir / layout.STACK, dtype=np.float32)
        if t2w is not None:
            t2w_stack = np.ascontiguousarray(view.to_slices(window(t2w.data, percentiles, str(t2w.path))[0])[start:stop])
            save_volume(Volume(t2w_stack, stack_affine(spacing)), case_dir / layout.T2W_STACK, dtype=np.float32)
        for i, image in enumerate(stack):
            _write_png(case_dir / layout.slice_png_name(i), image)
        row = {"case_id": case_id, "subject": subject, "source": source, "file": str(volume.path),
               "slice_start": start, "slice_stop": stop, "window_low": f"{low:.6g}", "window_high": f"{high:.6g}",
               **truth}
        info = {"n_slices": int(stack.shape[0]), "height": int(stack.shape[1]), "width": int(stack.shape[2]),
                "spacing_mm": [round(float(s), 4) for s in spacing]}
        yield case_id, row, info


KEY_COLUMNS = ("case_id", "subject", "source", "file", "slice_start", "slice_stop", "window_low", "window_high",
               *layout.FINDING_NAMES)


def _write_key(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=KEY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())
    os.chmod(path, 0o600)


def read_key(study: str | Path) -> list[dict]:
    """Rows of ``STUDY/key.csv`` (finding truth as int 0/1, or None without lesion truth)."""
    path = Path(study) / layout.KEY
    if not path.is_file():
        raise InputError(f"{path}: no answer key in this study folder")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for name in layout.FINDING_NAMES:
            row[name] = int(row[name]) if row.get(name, "") != "" else None
    return rows
