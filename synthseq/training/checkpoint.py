"""Training state inside checkpoints: RNG streams and model extras, for an exact resume.

The schema (entries, version, hash, reading and writing) is :mod:`synthseq.checkpoint`; this module adds what only
training needs: :func:`capture_rng` / :func:`restore_rng` (Python, NumPy, torch and CUDA generators per rank) and
the model's extra state (CycleGAN image pools). ``save_checkpoint`` / ``load_checkpoint`` /
``build_model_from_checkpoint`` are re-exported from the schema module.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from ..checkpoint import FORMAT, build_model_from_checkpoint, in_channels_of, load_checkpoint, save_checkpoint


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


__all__ = ["FORMAT", "build_model_from_checkpoint", "capture_rng", "get_extra_state", "in_channels_of",
           "load_checkpoint", "restore_rng", "save_checkpoint", "set_extra_state", "to_cpu"]
