"""Every synthesized file says what it is: marked as synthetic, with provenance, and named BIDS-style.

A pseudo-STIR must never pass for an acquired image. Each image :func:`save_marked` writes (pseudo-STIR,
uncertainty map, erasure-flag map) gets

* NIfTI ``descrip`` (80 bytes) starting with ``SYNTHETIC pseudo-STIR`` and naming ``synthseq <version>``, so every
  viewer that shows the description shows a synthetic image (the input T2w's ``"... T2w TR=... TE=..."`` is
  replaced, never copied), an ``intent_name`` (16 bytes: ``pseudoSTIR``, ``pseudoSTIR_SD``, ``pseudoSTIR_flags``)
  and an intent code (``estimate``; ``label`` for flag maps);
* a JSON sidecar beside it (``X.nii.gz`` -> ``X.json``, BIDS style: CamelCase keys) with the synthseq version, the
  checkpoint path and SHA-256, every input file with its SHA-256 (a DICOM folder: one digest over its sorted files),
  the model's inputs, slice plane and preprocessing, the UTC date, and whatever the caller adds through ``extra``
  (the erasure check's counts go there as ``"ErasureCheck"``).

Image and sidecar are written atomically (temporary names, renamed only when both were written) and refused when
either exists unless ``overwrite``.

BIDS derivatives (:func:`plan_bids_outputs`): a BIDS dataset (a folder with ``dataset_description.json`` and
``sub-*/[ses-*/]anat/*_T2w.nii[.gz]``) is synthesized into ``<bids>/derivatives/synthseq/`` (or the folder the
user names) with the raw dataset's sub-/ses-/anat layout, ``dataset_description.json`` (``DatasetType:
derivative``, ``GeneratedBy``, ``DatasetLinks.raw``) and file names following the BIDS derivatives template
``<source_entities>[_space-<space>][_desc-<label>]_<suffix>.<ext>`` (bids-specification,
``src/derivatives/common-data-types.md``): the source entities (``sub``, ``ses``, ``acq``, ``run``, ...) are kept,
``desc-`` distinguishes the derivative (the spec requires ``space`` or ``desc`` so no name clashes with raw data)
and the suffix names the contrast:

==============  ============================================
pseudo-STIR     ``sub-01_desc-pseudo_STIR.nii.gz``
uncertainty     ``sub-01_desc-pseudoUncertainty_STIR.nii.gz``
erasure flags   ``sub-01_desc-pseudoFlags_dseg.nii.gz``
==============  ============================================

``STIR`` is not one of BIDS's raw anatomical suffixes; it is used because the file *is* a (pseudo-)STIR, and
keeping ``_T2w`` (the "preprocessed data" convention) would label a synthetic STIR as a T2w. No ``space-`` entity:
every output lies on its source's own grid. Each sidecar's ``Sources`` holds the BIDS URI of its input
(``bids:raw:sub-01/anat/sub-01_T2w.nii.gz``). Nothing is ever written inside the raw dataset outside
``derivatives/``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ._version import __version__
from .data.layout import select_records
from .errors import InputError
from .io import NIFTI_SUFFIXES, Volume, save_volume
from .stats import dumps
from .utils import atomic_path

#: Output kinds: (descrip text after "SYNTHETIC ", intent_name, intent code, BIDS desc label, BIDS suffix).
KINDS: dict[str, tuple[str, str, str, str, str]] = {
    "pseudo": ("pseudo-STIR", "pseudoSTIR", "estimate", "pseudo", "STIR"),
    "uncertainty": ("pseudo-STIR uncertainty (SD)", "pseudoSTIR_SD", "estimate", "pseudoUncertainty", "STIR"),
    "flags": ("pseudo-STIR erasure flags", "pseudoSTIR_flags", "label", "pseudoFlags", "dseg"),
}
DESCRIP_BYTES = 80  # NIfTI-1 descrip field
INTENT_NAME_BYTES = 16
BIDS_VERSION = "1.9.0"
DERIVATIVE_NAME = "synthseq"
INTENDED_USE = "research only, not for diagnosis"
_BIDS_INPUT = re.compile(r"^(sub-[A-Za-z0-9]+(?:_[a-z]+-[A-Za-z0-9]+)*)_T2w(\.nii(?:\.gz)?)$")


def _kind(kind: str) -> tuple[str, str, str, str, str]:
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r} (expected one of {', '.join(KINDS)})")
    return KINDS[kind]


# ------------------------------------------------------------------------------------------- header marks
def descrip(kind: str = "pseudo", version: str = __version__) -> str:
    """The NIfTI ``descrip`` of an output, e.g. ``"SYNTHETIC pseudo-STIR by synthseq 0.1.0, not acquired"``
    (at most 80 ASCII bytes; a long version string is cut, the word SYNTHETIC never)."""
    text = f"SYNTHETIC {_kind(kind)[0]} by synthseq {version}, not acquired"
    if len(text) > DESCRIP_BYTES:
        text = f"SYNTHETIC {_kind(kind)[0]} by synthseq {version}"
    return text.encode("ascii", "replace")[:DESCRIP_BYTES].decode("ascii")


def mark_header(header: nib.Nifti1Header, kind: str = "pseudo", version: str = __version__) -> nib.Nifti1Header:
    """Set ``descrip``, ``intent_code`` / ``intent_name`` of ``header`` in place (and clear the input's
    ``aux_file`` / ``db_name``, which described the acquired image); returns it."""
    _, name, intent, _, _ = _kind(kind)
    header["descrip"] = descrip(kind, version).encode("ascii")
    header.set_intent(intent, (), name=name[:INTENT_NAME_BYTES])
    header["aux_file"] = b""
    if "db_name" in header:
        header["db_name"] = b""
    return header


# ---------------------------------------------------------------------------------------------- digests
def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_folder(path: str | Path) -> tuple[str, int]:
    """One hex SHA-256 over a folder's regular files (sorted relative names and contents, not recursive: a DICOM
    series folder) and the number of files hashed."""
    h = hashlib.sha256()
    files = sorted(p for p in Path(path).iterdir() if p.is_file())
    for p in files:
        h.update(p.name.encode() + b"\0")
        h.update(bytes.fromhex(sha256_file(p)))
    return h.hexdigest(), len(files)


def describe_input(path: str | Path, role: str | None = None) -> dict[str, Any]:
    """``{"Path", "SHA256"[, "Files"][, "Role"]}`` of an input file or DICOM folder."""
    path = Path(path)
    entry: dict[str, Any] = {"Path": str(path.resolve())}
    if path.is_dir():
        entry["SHA256"], entry["Files"] = sha256_folder(path)
        entry["SHA256Of"] = "sorted file names and the SHA-256 of each file"
    elif path.is_file():
        entry["SHA256"] = sha256_file(path)
    else:
        entry["SHA256"] = None
    if role:
        entry["Role"] = role
    return entry


# --------------------------------------------------------------------------------------------- sidecars
def sidecar_path(image: str | Path) -> Path:
    """``X.nii.gz`` / ``X.nii`` -> ``X.json`` (BIDS sidecar beside the image)."""
    image = Path(image)
    for suffix in sorted(NIFTI_SUFFIXES, key=len, reverse=True):
        if image.name.endswith(suffix):
            return image.with_name(image.name[: -len(suffix)] + ".json")
    return image.with_name(image.name + ".json")


def run_info(synthesizer: Any, checkpoint: str | Path | None) -> dict[str, Any]:
    """What every sidecar of one synthesize run shares: version, checkpoint (path, SHA-256, kind), the model's
    inputs, slice plane and preprocessing. ``synthesizer`` is a :class:`~synthseq.synthesis.Synthesizer` (read
    through its public attributes only); computed once per run (the checkpoint is hashed here)."""
    ckpt: dict[str, Any] = {"Path": None, "SHA256": None}
    if checkpoint is not None:
        p = Path(checkpoint)
        ckpt = {"Path": str(p.resolve()), "SHA256": sha256_file(p) if p.is_file() else None}
    model = getattr(synthesizer, "model", None)
    kind = getattr(model, "kind", None)
    if kind is not None:
        ckpt["Kind"] = str(kind)
    spacing = getattr(synthesizer, "pixel_spacing_mm", None)
    return {
        "SynthseqVersion": __version__,
        "Checkpoint": ckpt,
        "ModelInputs": list(getattr(synthesizer, "input_keys", ["T2w"])),
        "SlicePlane": str(getattr(synthesizer, "slice_plane", "sagittal")),
        "Preprocessing": {
            "Normalization": str(getattr(synthesizer, "norm_method", "percentile")),
            "NormalizationPercentiles": [float(p) for p in getattr(synthesizer, "norm_percentiles", (0.5, 99.5))],
            "NormalizationMask": str(getattr(synthesizer, "norm_mask", "foreground")),
            "PixelSpacingMM": None if spacing is None else [float(s) for s in spacing],
            "ContextSlices": int(getattr(synthesizer, "context_slices", 1)),
            "OutputScale": "the input T2w's scale: model -1 / +1 map to its low / high normalization percentile",
        },
        "UncertaintySamples": int(getattr(synthesizer, "uncertainty_samples", 0)) or None,
    }


def build_sidecar(info: Mapping[str, Any], inputs: Sequence[Mapping[str, Any]], kind: str = "pseudo", *,
                  sources: Sequence[str] | None = None, extra: Mapping[str, Any] | None = None,
                  date: _dt.datetime | None = None) -> dict[str, Any]:
    """The JSON sidecar of one output.

    Args:
        info: :func:`run_info` of the run.
        inputs: :func:`describe_input` entries of the files this output was made from.
        kind: ``"pseudo" | "uncertainty" | "flags"``.
        sources: BIDS URIs of the inputs (derivatives mode), stored as ``Sources``.
        extra: more keys (e.g. ``{"ErasureCheck": {"erased": 0, "unsupported": 1}}``, ``{"Uncertainty": ...}``);
            they may not replace the provenance keys.
        date: creation time (default: now, UTC).
    """
    what = _kind(kind)[0]
    side: dict[str, Any] = {
        "Synthetic": True,
        "Description": f"SYNTHETIC {what} computed by synthseq from {', '.join(info.get('ModelInputs', []))}; not "
                       f"an acquired image; {INTENDED_USE}.",
        "ImageKind": kind,
        "GeneratedBy": [{"Name": "synthseq", "Version": info.get("SynthseqVersion", __version__)}],
        **{k: v for k, v in info.items()},
        "InputFiles": [dict(e) for e in inputs],
        "DateCreated": (date or _dt.datetime.now(_dt.timezone.utc)).isoformat(timespec="seconds"),
        "IntendedUse": INTENDED_USE,
    }
    if kind == "uncertainty":
        side["UncertaintyMethod"] = (
            f"voxel-wise standard deviation over {info.get('UncertaintySamples')} stochastic passes (random in-plane "
            "shifts of up to 2 pixels, MC dropout where the generator has dropout), in the input's intensity units")
    if sources:
        side["Sources"] = list(sources)
    for key, value in (extra or {}).items():
        if key in side:
            raise ValueError(f"sidecar key {key!r} is set by synthseq.provenance; use another name")
        side[key] = value
    return side


def output_paths(image: str | Path) -> list[Path]:
    """The files :func:`save_marked` writes for ``image``: the image and its sidecar."""
    return [Path(image), sidecar_path(image)]


def check_writable(image: str | Path, overwrite: bool, more: str = "") -> None:
    """Refuse (InputError) when the image or its sidecar exists and not ``overwrite``."""
    for p in output_paths(image):
        if p.exists() and not overwrite:
            raise InputError(f"{p}: already exists (use --overwrite to replace it){more}")


def save_marked(volume: Volume, path: str | Path, sidecar: Mapping[str, Any], kind: str = "pseudo", *,
                overwrite: bool = False, dtype: Any = np.float32) -> Path:
    """Write ``volume`` as NIfTI marked synthetic (:func:`mark_header`) plus its JSON sidecar, atomically.

    The sidecar goes to a temporary name first, then the image is written (itself atomically), then the sidecar is
    renamed: a failure anywhere leaves neither new file behind.

    Raises:
        InputError: the image or sidecar exists and not ``overwrite``, or the image path is the volume's source.
    """
    path = Path(path)
    check_writable(path, overwrite)
    header = volume.header.copy() if volume.header is not None else nib.Nifti1Header()
    mark_header(header, kind)
    marked = Volume(volume.data, volume.affine, header=header, path=volume.path)
    with atomic_path(sidecar_path(path)) as tmp:
        tmp.write_text(dumps(sidecar))
        save_volume(marked, path, dtype=dtype, overwrite=overwrite)
    return path


def write_output(volume: Volume, path: str | Path, kind: str, info: Mapping[str, Any],
                 inputs: Sequence[Mapping[str, Any]], *, sources: Sequence[str] | None = None,
                 extra: Mapping[str, Any] | None = None, overwrite: bool = False, dtype: Any = np.float32) -> Path:
    """:func:`build_sidecar` + :func:`save_marked`: one synthesized image with its marks and sidecar."""
    side = build_sidecar(info, inputs, kind, sources=sources, extra=extra)
    return save_marked(volume, path, side, kind, overwrite=overwrite, dtype=dtype)


# ------------------------------------------------------------------------------------------ BIDS layout
def is_bids_dataset(path: str | Path) -> bool:
    """A folder with ``dataset_description.json`` and at least one ``sub-*`` folder."""
    path = Path(path)
    return path.is_dir() and (path / "dataset_description.json").is_file() and any(
        p.is_dir() for p in path.glob("sub-*"))


def bids_t2w_records(root: str | Path) -> list[tuple[str, Path]]:
    """``(subject id, raw T2w file)`` of a BIDS dataset, one per subject / session, sorted: read by the
    dataset-layout module (:func:`synthseq.data.layout.scan_bids`: ``sub-*/[ses-*/]anat``, so ``derivatives/`` is
    never looked into, and ``_acq-stir_T2w`` counts as a STIR, not as an input)."""
    from .data.layout import scan_bids

    recs = [(s.id, Path(s.paths["T2w"])) for s in scan_bids(root) if s.has("T2w")]
    return sorted(((sid, p) for sid, p in recs if _BIDS_INPUT.match(p.name)), key=lambda r: str(r[1]))


def derivative_name(source_name: str, kind: str = "pseudo") -> str:
    """BIDS-derivative file name of an output made from raw ``source_name`` (see the module docstring):
    ``sub-01_ses-1_acq-sag_T2w.nii.gz`` -> ``sub-01_ses-1_acq-sag_desc-pseudo_STIR.nii.gz``."""
    m = _BIDS_INPUT.match(source_name)
    if m is None:
        raise InputError(f"{source_name}: not a BIDS T2w file name (sub-<label>[_<entity>-<label>...]_T2w.nii.gz)")
    entities, ext = m.groups()
    entities = re.sub(r"_desc-[A-Za-z0-9]+", "", entities)  # a source's own desc would give two
    _, _, _, desc, suffix = _kind(kind)
    return f"{entities}_desc-{desc}_{suffix}{ext}"


def bids_uri(root: str | Path, path: str | Path) -> str:
    """``bids:raw:<path relative to the raw dataset root>`` (BIDS URI; ``raw`` is in ``DatasetLinks``)."""
    return "bids:raw:" + Path(path).resolve().relative_to(Path(root).resolve()).as_posix()


def default_derivatives_dir(root: str | Path) -> Path:
    """``<bids>/derivatives/synthseq``."""
    return Path(root) / "derivatives" / DERIVATIVE_NAME


def plan_bids_outputs(root: str | Path, output: str | Path | None, subjects: Sequence[str] | None = None
                      ) -> tuple[Path, list[tuple[Path, Path]]]:
    """The derivative dataset folder and ``(raw T2w, pseudo-STIR)`` pairs of a BIDS dataset (nothing written).

    ``output`` None means ``<root>/derivatives/synthseq``; ``subjects`` limits the run to those ids (``sub-01``, or
    ``sub-01_ses-1`` for sessions, as :func:`synthseq.data.layout.scan_bids` names them).

    Raises:
        InputError: no T2w file found; an unknown subject; ``output`` is a file, or lies inside the raw dataset but
            outside its ``derivatives/`` folder (the raw dataset is never written into); ``output`` holds a
            ``dataset_description.json`` of another dataset (not a synthseq derivative).
    """
    root = Path(root)
    out = default_derivatives_dir(root) if output is None else Path(output)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: must be a folder (the BIDS derivative dataset) when --input is a BIDS dataset")
    r, o = root.resolve(), out.resolve()
    if o == r or (r in o.parents and (r / "derivatives") not in o.parents):
        raise InputError(f"{out}: inside the raw BIDS dataset {root}; write under {root / 'derivatives'}/<name> or "
                         f"elsewhere (the raw dataset is never modified)")
    desc = out / "dataset_description.json"
    if desc.is_file():
        try:
            existing = json.loads(desc.read_text())
        except (OSError, ValueError):
            existing = {}
        names = [g.get("Name") for g in existing.get("GeneratedBy", []) if isinstance(g, Mapping)] \
            if isinstance(existing, Mapping) else []
        if not isinstance(existing, Mapping) or existing.get("DatasetType") != "derivative" or "synthseq" not in names:
            raise InputError(f"{desc}: belongs to another dataset (not a synthseq derivative); choose another "
                             f"--output")
    records = select_records(bids_t2w_records(root), subjects, root, "T2w")
    if not records:
        raise InputError(f"{root}: BIDS dataset without any sub-*/[ses-*/]anat/sub-*_T2w.nii[.gz] file")
    return out, [(f, out / f.parent.relative_to(root) / derivative_name(f.name)) for _, f in records]


def derivative_kind_name(pseudo_path: str | Path, kind: str) -> Path:
    """Sibling of a BIDS pseudo-STIR output for another kind: ``..._desc-pseudo_STIR.nii.gz`` ->
    ``..._desc-pseudoUncertainty_STIR.nii.gz`` (``kind="uncertainty"``)."""
    p = Path(pseudo_path)
    _, _, _, desc0, suffix0 = KINDS["pseudo"]
    _, _, _, desc, suffix = _kind(kind)
    return p.with_name(p.name.replace(f"_desc-{desc0}_{suffix0}", f"_desc-{desc}_{suffix}", 1))


def sibling_path(output: str | Path, kind: str, tag: str) -> Path:
    """Where the ``kind`` map of a pseudo-STIR ``output`` goes: a BIDS derivative's sibling
    (:func:`derivative_kind_name`), else ``X_pseudoSTIR.nii.gz`` -> ``X_pseudoSTIR_<tag>.nii.gz``."""
    output = Path(output)
    if "_desc-pseudo_STIR." in output.name:
        return derivative_kind_name(output, kind)
    for suffix in sorted(NIFTI_SUFFIXES, key=len, reverse=True):
        if output.name.endswith(suffix):
            return output.with_name(output.name[: -len(suffix)] + f"_{tag}" + suffix)
    return output.with_name(output.name + f"_{tag}.nii.gz")


def dataset_description(raw_root: str | Path, out: str | Path) -> dict[str, Any]:
    """``dataset_description.json`` of the derivative dataset ``out`` made from ``raw_root``."""
    raw, o = Path(raw_root).resolve(), Path(out).resolve()
    link = os.path.relpath(raw, o) if (raw / "derivatives") in [o, *o.parents] else raw.as_uri()
    name = "synthseq pseudo-STIR (SYNTHETIC images)"
    try:
        raw_name = json.loads((raw / "dataset_description.json").read_text()).get("Name")
        if raw_name:
            name = f"{name} of {raw_name}"
    except (OSError, ValueError, AttributeError):
        pass
    return {
        "Name": name,
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{
            "Name": "synthseq",
            "Version": __version__,
            "Description": f"GAN-synthesized pseudo-STIR from T2w; SYNTHETIC images, not acquired; {INTENDED_USE}",
        }],
        "SourceDatasets": [{"URL": link}],
        "DatasetLinks": {"raw": link},
    }


def write_dataset_description(raw_root: str | Path, out: str | Path, overwrite: bool = True) -> Path:
    """Write ``out/dataset_description.json`` atomically (replacing an earlier synthseq one)."""
    path = Path(out) / "dataset_description.json"
    if path.exists() and not overwrite:
        return path
    with atomic_path(path) as tmp:
        tmp.write_text(dumps(dataset_description(raw_root, out)))
    return path


__all__ = [
    "KINDS", "bids_t2w_records", "bids_uri", "build_sidecar", "check_writable", "dataset_description",
    "derivative_kind_name", "derivative_name", "describe_input", "descrip", "is_bids_dataset", "mark_header",
    "plan_bids_outputs", "run_info", "save_marked", "sha256_file", "sidecar_path", "write_dataset_description", "write_output",
]
