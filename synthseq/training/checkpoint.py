"""Checkpoints: everything needed to continue a run exactly, or to rebuild the model from the file alone.

A checkpoint is a plain dict saved with ``torch.save`` (written atomically) holding only tensors and Python
builtins, so :func:`load_checkpoint` can read it with ``weights_only=True`` (no arbitrary code runs on load):

==================  =====================================================================================
``format``          ``"synthseq-checkpoint"``
``synthseq_version``  package version that wrote it
``kind``            ``"pix2pix"`` | ``"cyclegan"``
``config``          resolved :class:`~synthseq.config.Config` as a plain dict
``model``           ``GANModel.state_dict()`` of the unwrapped networks (no DDP / compile prefixes)
``optimizers``      ``{"G": ..., "D": ...}`` Adam state dicts
``schedulers``      ``{"G": ..., "D": ...}`` scheduler positions
``scaler``          ``GradScaler.state_dict()`` (only used with fp16 autocast; ``{}`` for bf16 / fp32)
``step``            optimizer steps done
``rng``             per rank: python / numpy / torch (+ CUDA) generator states; ``world_size`` that saved them
``extra``           per rank: model state outside parameters (CycleGAN image pools; rank 0's is also in ``model``)
``normalization``   ``{"method", "percentiles"}`` used for every training volume
``pixel_spacing_mm``  ``(dh, dw)`` of the training slices in mm (None: native spacing of each volume)
``image_size``, ``context_slices``, ``input_keys``
``best``            ``{"metric": "ssim", "value": float | None, "step": int | None}``
==================  =====================================================================================
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..utils import atomic_path

FORMAT = "synthseq-checkpoint"


# ------------------------------------------------------------------------------------------------ RNG states
def capture_rng() -> dict[str, Any]:
    """States of Python's, NumPy's and torch's global generators as tensors / builtins."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state({
        "bit_generator": npst["bit_generator"],
        "state": {"key": npst["key"].numpy().astype(np.uint32), "pos": npst["pos"]},
        "has_gauss": npst["has_gauss"], "gauss": npst["gauss"],
    })
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------------ save / load
def save_checkpoint(ckpt: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` onto a temporary name beside ``path``, then rename (readers never see half a file)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        InputError: the file is missing, unreadable / truncated, or not a synthseq checkpoint.
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
    for key in ("config", "model", "kind"):
        if key not in ckpt:
            raise InputError(f"{path}: synthseq checkpoint lacks the {key!r} entry")
    return ckpt


def in_channels_of(config: dict[str, Any]) -> int:
    """Generator input channels: context slices x input sequences."""
    data = config.get("data", {})
    return int(data.get("context_slices", 1)) * len(data.get("input_keys", ["T2w"]))


def build_model_from_checkpoint(ckpt: dict[str, Any]):
    """Rebuild the :class:`~synthseq.models.base.GANModel` from the config inside ``ckpt``, load its weights and
    put it in eval mode (on the CPU; move it where you need it)."""
    from ..config import Config, from_dict
    from ..models import build_gan

    try:
        cfg = from_dict(Config, ckpt["config"])
    except Exception as exc:
        raise InputError(f"checkpoint config is not valid for this synthseq version: {exc}") from exc
    model = build_gan(cfg.model, cfg.loss, in_channels_of(ckpt["config"]))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:160]
        raise InputError(f"checkpoint weights do not fit the model its config describes ({first})") from exc
    return model.eval()


# -------------------------------------------------------------------------------------------- model extras
def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor inside (nested dicts / lists / tuples) moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def get_extra_state(model: torch.nn.Module) -> Any:
    """The model's own state outside its parameters and buffers (CycleGAN: image pools), via the
    ``nn.Module.get_extra_state`` hook; None when the model defines none."""
    if type(model).get_extra_state is torch.nn.Module.get_extra_state:
        return None
    return to_cpu(model.get_extra_state())


def set_extra_state(model: torch.nn.Module, state: Any) -> None:
    if state is not None and type(model).set_extra_state is not torch.nn.Module.set_extra_state:
        model.set_extra_state(state)
