"""Exported generators at run time: reading a ``synthseq export`` file and the ONNX Runtime engine.

Below :mod:`synthseq.synthesis` (which uses it) and :mod:`synthseq.export` (which writes the files): an exported
model file (ONNX graph or TorchScript module) with its ``OUT.json`` sidecar (:func:`sidecar_path`,
:func:`read_sidecar`) is loaded by :func:`load_exported` as an :class:`ExportedModel` that a
:class:`~synthseq.synthesis.Synthesizer` drives without the checkpoint; :class:`OrtGenerator` /
:func:`ort_engine` run a generator through ONNX Runtime (``synthesize --engine onnxruntime``), exported in memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .errors import InputError

FORMATS = ("onnx", "torchscript")
ENGINES = ("torch", "onnxruntime")
SIDECAR_FORMAT = "synthseq-export"
OPSET = 17
#: largest |exported - torch| allowed by the export check (model units, on [-1, 1])
TOLERANCE = 1e-3
_MODEL_FILE_MAGIC = b"SYNTHSEQ-MODEL"  # downstream classifier / outcome model files (synthseq.downstream.modelfile)


def sidecar_path(out: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``: the preprocessing and provenance written beside an export."""
    out = Path(out)
    return out.with_name(out.name + ".json")


def is_export(path: str | Path) -> bool:
    """True when ``path`` is an exported generator (an ``.onnx`` file, or any file with an export sidecar)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return True
    side = sidecar_path(path)
    if not side.is_file():
        return False
    try:
        return json.loads(side.read_text()).get("format") == SIDECAR_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


class TranslateModule(nn.Module):
    """The network a GAN model's ``translate`` runs, as a plain module (what gets exported)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        name = "G" if "G" in model.generator_modules() else model.generator_modules()[0]
        if hasattr(model, "G_AB"):  # CycleGAN: translate runs A -> B
            name = "G_AB"
        self.net = getattr(model, name).eval()
        self.size_multiple = int(getattr(self.net, "size_multiple", 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


# ------------------------------------------------------------------------------------------ ONNX Runtime
def example_size(multiple: int, at_least: int = 32) -> int:
    """A side length for tracing / checking: a multiple of ``multiple`` and at least ``at_least`` (a ResNet's
    reflection padding needs more pixels than its ``size_multiple`` of 4)."""
    return multiple * max(1, -(-at_least // multiple))


def _onnx_bytes(module: nn.Module, in_channels: int, size: int) -> bytes:
    """The module as an ONNX graph (bytes) with free batch / height / width."""
    buf = io.BytesIO()
    example = torch.zeros((1, in_channels, size, size))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        torch.onnx.export(module.eval(), (example,), buf, input_names=["x"], output_names=["y"], opset_version=OPSET,
                          dynamic_axes={"x": {0: "batch", 2: "height", 3: "width"},
                                        "y": {0: "batch", 2: "height", 3: "width"}},
                          do_constant_folding=True, dynamo=False)
    return buf.getvalue()


class OrtGenerator:
    """An ONNX graph run by ONNX Runtime on the CPU: ``(B, C_in, H, W)`` float32 tensor -> ``(B, 1, H, W)``.

    ``threads``: intra-op threads (default: torch's current count, so ``torch.set_num_threads`` and the benchmarks'
    ``--threads`` govern both engines alike).
    """

    def __init__(self, model: bytes | str | Path, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise InputError("onnxruntime: not installed (pip install onnxruntime)") from exc
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads or torch.get_num_threads())
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        src = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: Tensor) -> Tensor:
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        (y,) = self.session.run(None, {self.input_name: arr})[:1]
        return torch.from_numpy(y)


def ort_engine(model: nn.Module, in_channels: int) -> OrtGenerator:
    """ONNX Runtime engine of a GAN model's translating generator (exported in memory; nothing is written)."""
    mod = TranslateModule(model)
    return OrtGenerator(_onnx_bytes(mod, in_channels, example_size(mod.size_multiple)))


class _Multiple(nn.Module):
    def __init__(self, size_multiple: int) -> None:
        super().__init__()
        self.size_multiple = int(size_multiple)


class ExportedModel(nn.Module):
    """Stands in for a GAN model inside a :class:`~synthseq.synthesis.Synthesizer` built from an exported file:
    ``translate`` runs the exported generator (ONNX Runtime or TorchScript); it holds no dropout layers."""

    def __init__(self, run: Callable[[Tensor], Tensor], size_multiple: int, kind: str | None, fmt: str) -> None:
        super().__init__()
        self._run_fn = run
        self.G = _Multiple(size_multiple)
        self.kind = kind
        self.export_format = fmt

    def generator_modules(self) -> list[str]:
        return ["G"]

    def translate(self, a: Tensor) -> Tensor:
        return self._run_fn(a)


# ------------------------------------------------------------------------------------------------ export
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The sidecar of an exported model file; InputError when it is missing or not an export sidecar."""
    path = Path(path)
    side = sidecar_path(path)
    if not path.is_file():
        raise InputError(f"{path}: exported model not found")
    try:
        meta = json.loads(side.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no {side.name} beside it (the preprocessing written by synthseq export)") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{side}: not readable JSON ({type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        raise InputError(f"{side}: not a synthseq export sidecar (no format={SIDECAR_FORMAT!r})")
    return meta


def load_exported(path: str | Path) -> tuple[ExportedModel, dict[str, Any]]:
    """An exported file as an :class:`ExportedModel` plus its sidecar (the model file's SHA-256 is checked)."""
    path = Path(path)
    meta = read_sidecar(path)
    if meta.get("model_sha256") and _sha256(path) != meta["model_sha256"]:
        raise InputError(f"{path}: SHA-256 differs from the one in {sidecar_path(path).name} (file changed)")
    fmt = meta.get("model_format")
    if fmt == "onnx":
        run: Callable[[Tensor], Tensor] = OrtGenerator(path)
    elif fmt == "torchscript":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
                mod = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as exc:  # noqa: BLE001 - a damaged file is a user error
            raise InputError(f"{path}: not a loadable TorchScript file ({type(exc).__name__})") from None

        def run(x: Tensor) -> Tensor:
            return mod(x.to("cpu", torch.float32)).float()
    else:
        raise InputError(f"{sidecar_path(path)}: unknown model_format {fmt!r} (expected one of {', '.join(FORMATS)})")
    model = ExportedModel(run, int(meta["input"]["size_multiple"]), meta.get("checkpoint", {}).get("kind"), fmt)
    return model, meta


__all__ = ["ENGINES", "FORMATS", "OPSET", "SIDECAR_FORMAT", "TOLERANCE", "ExportedModel", "OrtGenerator",
           "TranslateModule", "example_size", "is_export", "load_exported", "ort_engine", "read_sidecar",
           "sidecar_path"]
