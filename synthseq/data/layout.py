"""Dataset layouts: where a subject's files are, and which subjects train, validate and test.

This is the one module that knows how datasets are laid out on disk. Training, evaluation, folder synthesis,
the reader-study builder and the downstream models all read subjects through :func:`load_subjects` and split
them with :func:`split_subjects`.

Sources (:func:`load_subjects` picks by what ``source`` is):

* **phantom layout**: ``ROOT/sub-0001/sub-0001_<key>.nii.gz`` (``T2w``, ``STIR``, ``labels``, ``lesions``; any
  ``<subject>_<key>.nii[.gz]`` file directly inside a subject folder is picked up under ``key``);
* **CSV manifest**: a ``subject`` column, an optional ``split`` column (``train`` / ``val`` / ``test``), an optional
  ``group`` column (subjects of one group always land in the same split, e.g. two sessions of one patient), and
  one column per sequence key holding file paths relative to the CSV (absolute paths are kept; an empty cell
  means that subject has no such file)::

      subject,split,T2w,STIR
      p01,train,p01/t2.nii.gz,p01/stir.nii.gz
      p02,test,p02/t2.nii.gz,

* **BIDS**: ``ROOT/sub-<label>/[ses-<label>/]anat/sub-<label>[_ses-<label>]_<entities>_<suffix>.nii[.gz]`` (a
  ``dataset_description.json`` or an ``anat`` folder marks it; BIDS-named files lying directly in ``ROOT`` are read
  too). A file's key is what follows the subject / session entities (``T2w``, ``acq-MToff_MTS``, ...), then renamed
  by the key map: :data:`BIDS_KEYS` by default (the STIR may be named ``_STIR`` or ``_acq-stir_T2w``), extended or
  overridden by ``data.bids`` (sequence key -> entity pattern or list of them, e.g.
  ``{"STIR": ["acq-tirm_T2w"]}``). A pattern matches a file whose suffix equals the pattern's and whose entities
  include the pattern's; a file goes to the most specific pattern it matches. Sessions: ``sessions="separate"``
  makes each session its own subject (``sub-01_ses-2``) for splitting; ``"grouped"`` keeps one record per session
  but splits by participant (``group = sub-01``), so a patient's sessions never straddle train and test.

Splits (:func:`split_subjects`) are made on subject groups, never on slices, so no anatomy leaks between train,
val and test. In order of precedence: a splits file (``data.splits``: JSON ``{"train": [...], "val": [...],
"test": [...]}`` or a CSV with ``subject,split``), the manifest's ``split`` column, k-fold (``data.folds=K``,
``data.fold=i``: fold i of K is the test set) and seeded random fractions.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from ..io import NIFTI_SUFFIXES

#: Sequence keys the package knows about (other keys are carried along untouched).
SEQUENCE_KEYS = ("T2w", "STIR", "T1w", "labels", "lesions")
SPLITS = ("train", "val", "test")
#: ``sub-XXXX`` at the start of a file or folder name: the subject a file belongs to.
SUBJECT_RE = re.compile(r"^(sub-[A-Za-z0-9]+)")
#: Columns of a CSV manifest that are not sequence files.
RESERVED_COLUMNS = ("subject", "split", "group")
#: Default BIDS key map: sequence key -> entity patterns (see the module docstring).
BIDS_KEYS: dict[str, tuple[str, ...]] = {"T2w": ("T2w",), "STIR": ("STIR", "acq-stir_T2w"), "T1w": ("T1w",),
                                         "labels": ("dseg",), "lesions": ("lesions",)}
SESSION_MODES = ("separate", "grouped")


@dataclass
class Subject:
    """One subject: ``id`` (e.g. ``"sub-0001"``) and its files keyed by sequence (``"T2w"``, ``"STIR"`` ...).

    ``split`` is the manifest's split for it (None: not given); ``group`` the unit that splits keep together
    (defaults to ``id``; the participant for BIDS sessions in ``grouped`` mode).
    """

    id: str
    paths: dict[str, Path] = field(default_factory=dict)
    split: str | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        if self.group is None:
            self.group = self.id

    def has(self, key: str) -> bool:
        return key in self.paths

    def path(self, key: str) -> Path:
        """The file of sequence ``key``; :class:`InputError` naming the subject if it has none."""
        if key not in self.paths:
            have = ", ".join(sorted(self.paths)) or "no files"
            raise InputError(f"{self.id}: no {key} file (has {have})")
        return self.paths[key]


def grid_key(input_keys: Sequence[str]) -> str:
    """The input whose grid (affine, shape) every other sequence is put on, in training, QC and synthesis alike, and
    whose intensity scale the pseudo-STIR takes: the T2w if the model reads one, else its first input."""
    keys = list(input_keys)
    if not keys:
        raise ValueError("input_keys is empty")
    return "T2w" if "T2w" in keys else keys[0]


# ------------------------------------------------------------------------------------------- file names
def strip_nifti(name: str) -> str | None:
    """``"sub-01_T2w.nii.gz"`` -> ``"sub-01_T2w"``; None for a name that is not NIfTI."""
    for suffix in sorted(NIFTI_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def subject_of(path: str | Path, *, anywhere: bool = False) -> str | None:
    """The ``sub-XXXX`` id a file name starts with (``anywhere``: the first one anywhere in the name; None if
    there is none)."""
    name = Path(path).name
    match = SUBJECT_RE.match(name) if not anywhere else re.search(SUBJECT_RE.pattern[1:], name)
    return match.group(1) if match else None


# --------------------------------------------------------------------------------------------- phantom
def scan_phantom_layout(root: str | Path) -> list[Subject]:
    """Subjects of a phantom-layout folder (``sub-XXXX/sub-XXXX_<key>.nii.gz``), sorted by id.

    Raises :class:`InputError` naming ``root`` if it does not exist or holds no subject folder with NIfTI files.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such dataset folder")
    subjects = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        prefix = folder.name + "_"
        paths: dict[str, Path] = {}
        for f in sorted(folder.iterdir()):
            stem = strip_nifti(f.name)
            if stem is not None and stem.startswith(prefix) and len(stem) > len(prefix) and f.is_file():
                paths[stem[len(prefix):]] = f
        if paths:
            subjects.append(Subject(folder.name, paths))
    if not subjects:
        raise InputError(f"{root}: dataset folder holds no subjects (expected sub-XXXX/sub-XXXX_T2w.nii.gz ...)")
    return subjects


# ------------------------------------------------------------------------------------------------- CSV
def read_manifest_csv(path: str | Path) -> list[Subject]:
    """Subjects listed in a CSV (``subject``, optional ``split`` / ``group``, then one column per key; paths
    relative to the CSV).

    Every listed file must exist; a missing column, duplicate subject, unknown split name or missing file raises
    :class:`InputError` naming the CSV (and the line).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such manifest file")
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
            fieldnames = rows and list(rows[0].keys())
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read as a CSV manifest ({exc})") from exc
    if not rows:
        raise InputError(f"{path}: manifest lists no subjects")
    if "subject" not in fieldnames:
        raise InputError(f"{path}: manifest has no 'subject' column (columns: {', '.join(map(str, fieldnames))})")
    subjects, seen = [], set()
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        sid = (row.get("subject") or "").strip()
        if not sid:
            raise InputError(f"{path}: line {line} has an empty subject id")
        if sid in seen:
            raise InputError(f"{path}: subject {sid!r} is listed twice (line {line})")
        seen.add(sid)
        split = (row.get("split") or "").strip() or None
        if split is not None and split not in SPLITS:
            raise InputError(f"{path}: line {line} ({sid}) split {split!r} is not one of {', '.join(SPLITS)}")
        group = (row.get("group") or "").strip() or None
        paths: dict[str, Path] = {}
        for key, value in row.items():
            if key is None or key.strip() in RESERVED_COLUMNS or value is None or not value.strip():
                continue
            f = Path(value.strip())
            f = f if f.is_absolute() else path.parent / f
            if not f.exists():
                raise InputError(f"{path}: line {line} ({sid}) {key} file {f} does not exist")
            paths[key.strip()] = f
        subjects.append(Subject(sid, paths, split=split, group=group))
    given = [s for s in subjects if s.split is not None]
    if given and len(given) != len(subjects):
        lacking = next(s.id for s in subjects if s.split is None)
        raise InputError(f"{path}: the split column is empty for {lacking} (fill it for every subject or none)")
    return subjects


# ------------------------------------------------------------------------------------------------ BIDS
def _entities(remainder: str) -> tuple[dict[str, str], str]:
    """``"acq-stir_T2w"`` -> ``({"acq": "stir"}, "T2w")`` (the last ``_`` part is the suffix)."""
    parts = remainder.split("_")
    ents = {}
    for p in parts[:-1]:
        k, sep, v = p.partition("-")
        ents[k] = v if sep else ""
    return ents, parts[-1]


def bids_key_map(overrides: Mapping[str, Any] | None = None) -> dict[str, tuple[str, ...]]:
    """:data:`BIDS_KEYS` with ``overrides`` (key -> pattern or list of patterns) replacing / adding entries.

    Raises :class:`ConfigError` naming ``data.bids`` for a value that is not a pattern string or a list of them.
    """
    keys = dict(BIDS_KEYS)
    for key, value in (overrides or {}).items():
        patterns = [value] if isinstance(value, str) else value
        if not isinstance(patterns, (list, tuple)) or not patterns or not all(
                isinstance(p, str) and p.strip() and "/" not in p for p in patterns):
            raise ConfigError(f"data.bids.{key}: expected an entity pattern such as 'acq-stir_T2w' or a list of "
                              f"them, got {value!r}")
        keys[str(key)] = tuple(p.strip() for p in patterns)
    return keys


def _bids_files(root: Path) -> list[Path]:
    files = [p for p in root.glob("sub-*/anat/*") if p.is_file()]
    files += [p for p in root.glob("sub-*/ses-*/anat/*") if p.is_file()]
    files += [p for p in root.glob("sub-*") if p.is_file()]  # BIDS-named files lying in one folder
    return sorted(p for p in files if strip_nifti(p.name) is not None and not p.name.startswith("."))


def is_bids(root: str | Path, *, loose: bool = True) -> bool:
    """True if ``root`` looks like a BIDS folder (``dataset_description.json``, ``sub-*/[ses-*/]anat``, or, when
    ``loose``, BIDS-named NIfTI files directly inside it)."""
    root = Path(root)
    if (root / "dataset_description.json").is_file():
        return True
    if any(root.glob("sub-*/anat")) or any(root.glob("sub-*/ses-*/anat")):
        return True
    return loose and any(p.is_file() and strip_nifti(p.name) for p in root.glob("sub-*_*"))


def scan_bids(root: str | Path, keys: Mapping[str, Any] | None = None, sessions: str = "separate"
              ) -> list[Subject]:
    """Subjects of a BIDS folder (see the module docstring), sorted by id.

    Args:
        root: the BIDS root.
        keys: ``data.bids`` overrides of the key map (sequence key -> entity pattern(s)).
        sessions: ``"separate"`` (each session its own subject and group) or ``"grouped"`` (one record per
            session, grouped by participant for splitting).

    Raises:
        InputError: no such folder, no BIDS image in it, or two files claiming one key of one subject (both named).
        ConfigError: a bad ``data.bids`` entry or ``data.sessions`` value.
    """
    root = Path(root)
    if sessions not in SESSION_MODES:
        raise ConfigError(f"data.sessions: expected one of {', '.join(SESSION_MODES)}, got {sessions!r}")
    if not root.is_dir():
        raise InputError(f"{root}: no such dataset folder")
    key_map = bids_key_map(keys)
    patterns = [(key, *_entities(p)) for key, pats in key_map.items() for p in pats]
    records: dict[str, Subject] = {}
    candidates: dict[tuple[str, str], list[tuple[tuple[int, int], str, Path]]] = {}
    for f in _bids_files(root):
        parts = strip_nifti(f.name).split("_")
        if not parts[0].startswith("sub-") or len(parts) < 2:
            continue
        participant = parts[0]
        ses = parts[1] if parts[1].startswith("ses-") else None
        rest = "_".join(parts[2:] if ses else parts[1:])
        if not rest:
            continue
        ents, suffix = _entities(rest)
        key, rank = rest, (-1, -1)
        for name, p_ents, p_suffix in patterns:
            if p_suffix == suffix and all(ents.get(k) == v for k, v in p_ents.items()):
                r = (int(p_ents == ents), len(p_ents))  # an exact match beats a subset match
                if r > rank:
                    key, rank = name, r
        sid = f"{participant}_{ses}" if ses else participant
        records.setdefault(sid, Subject(sid, {}, group=participant if sessions == "grouped" else sid))
        candidates.setdefault((sid, key), []).append((rank, rest, f))
    for (sid, key), found in sorted(candidates.items()):
        found.sort(key=lambda c: c[0], reverse=True)
        if len(found) > 1 and found[0][0] == found[1][0]:
            raise InputError(f"{found[1][2]}: a second {key} file for {sid} (also {found[0][2]}); set data.bids to "
                             f"tell them apart")
        records[sid].paths[key] = found[0][2]
        for _, rest, f in found[1:]:  # a weaker match keeps its own name as key (e.g. acq-tirm_T2w)
            if rest in records[sid].paths:
                raise InputError(f"{f}: a second {rest} file for {sid} (also {records[sid].paths[rest]})")
            records[sid].paths[rest] = f
    if not records:
        raise InputError(f"{root}: BIDS folder holds no images (expected sub-*/[ses-*/]anat/sub-*_T2w.nii.gz ...)")
    return [records[k] for k in sorted(records)]


# ---------------------------------------------------------------------------------------------- public
def load_subjects(source: str | Path, *, bids: Mapping[str, Any] | None = None, sessions: str = "separate"
                  ) -> list[Subject]:
    """Subjects from a phantom-layout folder, a BIDS folder or a ``.csv`` manifest (module docstring).

    ``bids`` and ``sessions`` apply to BIDS folders (``data.bids``, ``data.sessions``); they are checked for any
    source (ConfigError naming the key), so a typo never waits for the first BIDS dataset.
    """
    if sessions not in SESSION_MODES:
        raise ConfigError(f"data.sessions: expected one of {', '.join(SESSION_MODES)}, got {sessions!r}")
    bids_key_map(bids)
    source = Path(source)
    if source.is_dir():
        if is_bids(source):
            return scan_bids(source, bids, sessions)
        return scan_phantom_layout(source)
    if source.suffix.lower() == ".csv":
        return read_manifest_csv(source)
    if not source.exists():
        raise InputError(f"{source}: no such dataset folder or manifest CSV")
    raise InputError(f"{source}: expected a dataset folder (phantom layout or BIDS) or a .csv manifest")


def read_splits_file(path: str | Path) -> dict[str, list[str]]:
    """A splits file: JSON ``{"train": [ids], "val": [...], "test": [...]}`` (a run's ``splits.json``) or a CSV
    with ``subject`` and ``split`` columns. Missing parts are empty; unknown parts or a subject listed twice raise
    :class:`InputError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such splits file")
    parts: dict[str, list[str]] = {name: [] for name in SPLITS}
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="") as fh:
                reader = csv.DictReader(fh)
                if not reader.fieldnames or not {"subject", "split"} <= set(reader.fieldnames):
                    raise InputError(f"{path}: a splits CSV needs 'subject' and 'split' columns")
                for row in reader:
                    name = (row["split"] or "").strip()
                    if name not in SPLITS:
                        raise InputError(f"{path}: split {name!r} of {row['subject']!r} is not one of "
                                         f"{', '.join(SPLITS)}")
                    parts[name].append((row["subject"] or "").strip())
        else:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
                raise InputError(f"{path}: expected a JSON object of lists (train / val / test)")
            unknown = sorted(set(data) - set(SPLITS))
            if unknown:
                raise InputError(f"{path}: unknown split {unknown[0]!r} (expected {', '.join(SPLITS)})")
            for name, ids in data.items():
                parts[name] = [str(i) for i in ids]
    except (OSError, UnicodeDecodeError, csv.Error, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read the splits file ({str(exc).splitlines()[0]})") from None
    seen: set[str] = set()
    for ids in parts.values():
        for sid in ids:
            if sid in seen:
                raise InputError(f"{path}: subject {sid!r} is in more than one split")
            seen.add(sid)
    return parts


def _fixed_split(subjects: Sequence[Any], assigned: Mapping[str, str], what: str) -> dict[str, list[Any]]:
    ids = {_id(s) for s in subjects}
    unknown = sorted(set(assigned) - ids)
    if unknown:
        raise InputError(f"{what}: subject {unknown[0]!r} is not in the dataset")
    unassigned = sorted(ids - set(assigned))
    if unassigned:
        raise InputError(f"{what}: subject {unassigned[0]!r} of the dataset is in no split "
                         f"({len(unassigned)} unassigned)")
    groups: dict[str, set[str]] = {}
    for s in subjects:
        groups.setdefault(_group(s), set()).add(assigned[_id(s)])
    mixed = next((g for g, names in sorted(groups.items()) if len(names) > 1), None)
    if mixed is not None:
        raise InputError(f"{what}: group {mixed!r} is in more than one split ({', '.join(sorted(groups[mixed]))})")
    return {name: sorted((s for s in subjects if assigned[_id(s)] == name), key=_id) for name in SPLITS}


def _id(s: Any) -> str:
    return s if isinstance(s, str) else s.id


def _group(s: Any) -> str:
    return s if isinstance(s, str) else (s.group or s.id)


def split_subjects(
    subjects: Sequence[Any],
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    *,
    folds: int = 0,
    fold: int = 0,
    splits_file: str | Path | None = None,
    stratify: np.ndarray | None = None,
) -> dict[str, list[Any]]:
    """Subject-level split into ``{"train", "val", "test"}``, deterministic for a given ``seed``.

    ``subjects`` are :class:`Subject` records or plain id strings; the parts hold the same objects, sorted by id.
    Groups (:attr:`Subject.group`) are never divided. In order of precedence:

    * ``splits_file`` (:func:`read_splits_file`): every subject must be in it, and nothing else;
    * the subjects' own ``split`` (a manifest's ``split`` column), when every subject has one;
    * ``folds=K > 1``: groups are shuffled with ``seed`` and dealt into K nearly equal folds; fold ``fold`` is the
      test set, and ``round(val_fraction * n_rest)`` of the remaining groups (drawn with the same seed) validate;
    * else seeded random fractions: val and test sizes are ``round(fraction * n_groups)``, reduced where needed so
      at least one group trains.

    The result does not depend on the order of ``subjects`` (ids are sorted before shuffling).

    ``stratify`` ``(N,)`` / ``(N, L)`` 0/1 labels (for the downstream classifiers, no val part): seeded
    permutations are tried in turn and the first whose test and training parts each hold both classes of every
    column wins (the first permutation if none does within 500 tries); at least one subject is held out.
    """
    for key, frac in (("data.val_fraction", val_fraction), ("data.test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise ConfigError(f"{key}: must be in [0, 1), got {frac}")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(f"data.val_fraction + data.test_fraction must be < 1, got {val_fraction + test_fraction}")
    ids = [_id(s) for s in subjects]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"{dup}: subject id appears more than once")
    ordered = sorted(subjects, key=_id)
    if not ordered:
        return {name: [] for name in SPLITS}
    if splits_file is not None:
        parts = read_splits_file(splits_file)
        return _fixed_split(ordered, {sid: name for name, part in parts.items() for sid in part}, str(splits_file))
    own = [s.split if isinstance(s, Subject) else None for s in ordered]  # (str has a .split method)
    if all(x is not None for x in own):
        return _fixed_split(ordered, {_id(s): s.split for s in ordered}, "manifest split column")
    if stratify is not None:
        return _stratified(ordered, ids, stratify, test_fraction, seed)

    group_ids = sorted({_group(s) for s in ordered})
    n = len(group_ids)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    picked = [group_ids[i] for i in order]
    if folds and folds > 1:
        if not 0 <= fold < folds:
            raise ConfigError(f"data.fold: must be in [0, {folds - 1}] for data.folds={folds}, got {fold}")
        if folds > n:
            raise ConfigError(f"data.folds={folds}: more folds than subject groups ({n})")
        bounds = np.linspace(0, n, folds + 1).round().astype(int)
        test_g = picked[bounds[fold]: bounds[fold + 1]]
        rest = [g for g in picked if g not in test_g]
        n_val = min(int(round(val_fraction * len(rest))), len(rest) - 1)
        val_g = rest[:n_val]
        train_g = rest[n_val:]
    elif folds not in (0, 1):
        raise ConfigError(f"data.folds: expected 0 (no k-fold) or >= 2, got {folds}")
    else:
        n_test = int(round(test_fraction * n))
        n_val = int(round(val_fraction * n))
        while n_test + n_val > n - 1:  # keep one training group: shrink the larger held-out part first
            if n_test >= n_val and n_test > 0:
                n_test -= 1
            else:
                n_val -= 1
        test_g, val_g, train_g = picked[:n_test], picked[n_test: n_test + n_val], picked[n_test + n_val:]
    where = {**{g: "test" for g in test_g}, **{g: "val" for g in val_g}, **{g: "train" for g in train_g}}
    return {name: [s for s in ordered if where[_group(s)] == name] for name in SPLITS}


def _stratified(ordered: list[Any], ids: list[str], y: np.ndarray, test_fraction: float, seed: int
                ) -> dict[str, list[Any]]:
    # y rows follow the caller's order; re-order them to the sorted subjects
    rows = {sid: i for i, sid in enumerate(ids)}
    y = np.asarray(y).reshape(len(ids), -1)[[rows[_id(s)] for s in ordered]]
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n = len(ordered)
    n_test = max(1, int(round(test_fraction * n)))
    if n - n_test < 1:
        raise InputError(f"{n} subject(s) are too few to hold out a test set")
    rng = np.random.default_rng(seed)
    first = None
    for _ in range(500):
        order = rng.permutation(n)
        te, tr = order[:n_test], order[n_test:]
        first = first if first is not None else (tr, te)
        if all(len(np.unique(y[part, j])) == 2 for part in (tr, te) for j in range(y.shape[1])):
            break
    else:
        tr, te = first
    return {"train": sorted((ordered[i] for i in tr), key=_id), "val": [],
            "test": sorted((ordered[i] for i in te), key=_id)}


def select_subjects(subjects: Sequence[Subject], *, split: str | None = None,
                    splits: Mapping[str, Sequence[str]] | None = None, ids: Sequence[str] | None = None,
                    what: str = "--subjects") -> list[Subject]:
    """Subjects limited to one split (of ``splits``, e.g. a checkpoint's) and / or a list of ids.

    Raises :class:`InputError` for an unknown split name, a missing ``splits`` or an id not in ``subjects``.
    """
    out = list(subjects)
    if split is not None:
        if split not in SPLITS:
            raise InputError(f"--split: expected one of {', '.join(SPLITS)}, got {split!r}")
        if splits is None:
            raise InputError(f"--split {split}: needs the run's splits (a checkpoint that stores them)")
        keep = set(splits.get(split, []))
        out = [s for s in out if s.id in keep]
    if ids is not None:
        known = {s.id for s in subjects}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise InputError(f"{what}: subject {unknown[0]!r} is not in the dataset")
        wanted = set(ids)
        out = [s for s in out if s.id in wanted]
    return out


def select_records(records: Sequence[tuple[str, Path]], subjects: Sequence[str] | None, where: str | Path,
                   what: str = "T2w") -> list[tuple[str, Path]]:
    """``(subject, file)`` records limited to ``subjects`` (None: all); a named subject without a record is an
    InputError naming ``where`` and the file kind ``what``."""
    if subjects is None:
        return list(records)
    known = {sid for sid, _ in records}
    unknown = [sid for sid in subjects if sid not in known]
    if unknown:
        raise InputError(f"{where}: subject {unknown[0]!r} has no {what} file here")
    wanted = set(subjects)
    return [(sid, p) for sid, p in records if sid in wanted]


__all__ = ["BIDS_KEYS", "SEQUENCE_KEYS", "SPLITS", "Subject", "bids_key_map", "is_bids", "load_subjects",
           "read_manifest_csv", "read_splits_file", "scan_bids", "scan_phantom_layout", "select_records",
           "select_subjects",
           "split_subjects", "strip_nifti", "subject_of"]
