"""The checkpoint schema: one definition that training writes, every reader validates, and synthesis uses.

A checkpoint is a plain dict saved with ``torch.save`` (written atomically) holding only tensors and Python
builtins, so :func:`load_checkpoint` reads it with ``weights_only=True`` (no code runs on load). Its entries:

==================  =====================================================================================
``format``          ``"synthseq-checkpoint"``
``schema_version``  :data:`SCHEMA_VERSION` (files of synthseq 0.1.0 have none and are read as version 1)
``synthseq_version``  package version that wrote it
``kind``            GAN kind (``"pix2pix"`` | ``"cyclegan"`` | any registered kind)
``config``          resolved :class:`~synthseq.config.Config` as a plain dict
``model``           ``GANModel.state_dict()`` of the unwrapped networks (no DDP / compile prefixes)
``weights_sha256``  SHA-256 over ``model``'s tensors (names, dtypes, shapes, bytes), checked on load
``preprocessing``   :meth:`synthseq.data.preprocess.Preprocessor.to_dict` used for every training volume
``pixel_spacing_mm``  ``(dh, dw)`` of the training slices in mm (None: native spacing of each volume)
``image_size``, ``context_slices``, ``input_keys``, ``in_channels``, ``slice_plane``
``splits``          ``{"train": [...], "val": [...], "test": [...]}`` subject ids of the run
``best``            ``{"metric": "ssim", "value": float | None, "step": int | None}``
training state      ``optimizers``, ``schedulers``, ``scaler``, ``rng``, ``extra`` (:mod:`synthseq.training.checkpoint`):
                    in ``last.pt`` only (resuming); ``best.pt`` holds what synthesis needs; ``step`` in both
==================  =====================================================================================

:class:`ModelSpec` is everything a reader needs besides the weights; :meth:`ModelSpec.from_checkpoint` is the only
place that knows how older files stored it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ._version import __version__
from .config import Config, from_dict, migrate_config
from .data.preprocess import DEFAULT_PERCENTILES, Preprocessor
from .errors import InputError
from .utils import atomic_path

FORMAT = "synthseq-checkpoint"
SCHEMA_VERSION = 2
#: Entries every checkpoint holds, whatever its version.
REQUIRED = ("config", "model", "kind")


def in_channels_of(config: Mapping[str, Any]) -> int:
    """Generator input channels of a config dict: context slices x input sequences."""
    data = config.get("data", {}) or {}
    return int(data.get("context_slices", 1)) * len(data.get("input_keys", ["T2w"]))


def weights_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's tensors (sorted names, dtype, shape and raw bytes): any flipped bit changes it."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, torch.Tensor):
            h.update(f"{name}={t!r};".encode())
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass
class ModelSpec:
    """What a checkpoint says about its model besides the weights (see the module docstring)."""

    kind: str
    config: dict[str, Any]
    preprocessing: Preprocessor = field(default_factory=Preprocessor)
    pixel_spacing_mm: tuple[float, float] | None = None
    image_size: int = 256
    context_slices: int = 1
    input_keys: list[str] = field(default_factory=lambda: ["T2w"])
    slice_plane: str = "sagittal"
    splits: dict[str, list[str]] | None = None
    synthseq_version: str = __version__
    schema_version: int = SCHEMA_VERSION

    @property
    def in_channels(self) -> int:
        return self.context_slices * len(self.input_keys)

    def entries(self) -> dict[str, Any]:
        """The checkpoint entries this spec owns (merged into the dict training saves)."""
        return {
            "format": FORMAT, "schema_version": SCHEMA_VERSION, "synthseq_version": self.synthseq_version,
            "kind": self.kind, "config": self.config, "preprocessing": self.preprocessing.to_dict(),
            "pixel_spacing_mm": None if self.pixel_spacing_mm is None else [float(s) for s in self.pixel_spacing_mm],
            "image_size": int(self.image_size), "context_slices": int(self.context_slices),
            "input_keys": list(self.input_keys), "in_channels": self.in_channels, "slice_plane": self.slice_plane,
            "splits": None if self.splits is None else {k: list(v) for k, v in self.splits.items()},
        }

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any]) -> ModelSpec:
        """Read the spec of a loaded checkpoint of any schema version (version 1 = synthseq 0.1.0: preprocessing
        under ``normalization``, no slice plane or splits)."""
        config = migrate_config(dict(ckpt["config"]), warn=False)
        data = config.get("data", {}) or {}
        pre = ckpt.get("preprocessing") or ckpt.get("normalization") or {
            "method": data.get("norm", "percentile"), "percentiles": data.get("norm_percentiles", DEFAULT_PERCENTILES)}
        spacing = ckpt.get("pixel_spacing_mm")
        return cls(
            kind=str(ckpt["kind"]), config=config, preprocessing=Preprocessor.from_dict(pre),
            pixel_spacing_mm=None if spacing is None else (float(spacing[0]), float(spacing[1])),
            image_size=int(ckpt.get("image_size", data.get("image_size", 256))),
            context_slices=int(ckpt.get("context_slices", data.get("context_slices", 1))),
            input_keys=[str(k) for k in ckpt.get("input_keys", data.get("input_keys", ["T2w"]))],
            slice_plane=str(ckpt.get("slice_plane", data.get("slice_plane", "sagittal"))),
            splits=ckpt.get("splits"),
            synthseq_version=str(ckpt.get("synthseq_version", "unknown")),
            schema_version=int(ckpt.get("schema_version", 1)),
        )


# ------------------------------------------------------------------------------------------------ save / load
def save_checkpoint(ckpt: dict[str, Any], path: str | Path) -> Path:
    """Add the weights' hash, ``torch.save`` onto a temporary name beside ``path``, then rename (readers never see
    half a file)."""
    path = Path(path)
    ckpt = dict(ckpt)
    if "model" in ckpt:
        ckpt["weights_sha256"] = weights_sha256(ckpt["model"])
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint written by :func:`save_checkpoint` (any schema version up to this one).

    Raises:
        InputError: the file is missing, unreadable / truncated, not a synthseq checkpoint, of a newer schema, or
            its weights do not match their stored hash (a corrupted file).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated / foreign files
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not a readable checkpoint ({reason})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise InputError(f"{path}: not a synthseq checkpoint (no format={FORMAT!r} entry)")
    for key in REQUIRED:
        if key not in ckpt:
            raise InputError(f"{path}: synthseq checkpoint lacks the {key!r} entry")
    version = ckpt.get("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise InputError(f"{path}: checkpoint schema version {version!r} is newer than this synthseq reads "
                         f"({SCHEMA_VERSION}); upgrade synthseq")
    stored = ckpt.get("weights_sha256")
    if stored is not None and weights_sha256(ckpt["model"]) != stored:
        raise InputError(f"{path}: the weights do not match their stored SHA-256 (the file is corrupted)")
    return ckpt


def build_model_from_checkpoint(ckpt: Mapping[str, Any]):
    """Rebuild the :class:`~synthseq.models.base.GANModel` from the config inside ``ckpt``, load its weights and
    put it in eval mode (on the CPU; move it where you need it)."""
    from .models import build_gan

    try:
        cfg = from_dict(Config, migrate_config(dict(ckpt["config"]), warn=False))
    except Exception as exc:
        raise InputError(f"checkpoint config is not valid for this synthseq version: {exc}") from exc
    model = build_gan(cfg.model, cfg.loss, in_channels_of(ckpt["config"]))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:160]
        raise InputError(f"checkpoint weights do not fit the model its config describes ({first})") from exc
    return model.eval()


__all__ = ["FORMAT", "SCHEMA_VERSION", "ModelSpec", "build_model_from_checkpoint", "in_channels_of",
           "load_checkpoint", "save_checkpoint", "weights_sha256"]
