"""Portable export of a synthesis checkpoint's generator, and the ONNX Runtime engine of :mod:`synthseq.synthesis`.

``synthseq export CKPT --format onnx|torchscript OUT`` writes

* ``OUT``: the generator alone (the network that :meth:`~synthseq.models.base.GANModel.translate` runs: pix2pix's
  ``G``, CycleGAN's ``G_AB``) in eval mode, as an ONNX graph (opset :data:`OPSET`; ONNX Runtime runs it) or a
  TorchScript module (``torch.jit.load`` runs it). Neither needs synthseq. Input ``x``: float32
  ``(B, C_in, H, W)`` in model space [-1, 1], H and W multiples of ``size_multiple``; output ``y``: float32
  ``(B, 1, H, W)`` in [-1, 1] (tanh). Batch, H and W are free.
* ``OUT.json`` (:func:`sidecar_path`): everything else a user needs to get from a T2w volume to the pseudo-STIR
  the same way :class:`~synthseq.synthesis.Synthesizer` does: the preprocessing (the checkpoint's
  :class:`~synthseq.data.preprocess.Preprocessor` plus the body-mask rule, slice plane, pixel spacing, context
  slices, padding), the postprocessing (crop, clamp, denormalize), the checkpoint's path / SHA-256 / kind / step,
  the synthseq version, the model file's SHA-256, and the export check below.

Export checks itself before anything is written: the exported model and the checkpoint's torch generator run on the
same random padded batch and must agree within :data:`TOLERANCE` (the largest difference is recorded in the
sidecar). Both files are written atomically; an existing ``OUT`` is refused unless ``overwrite``.

The ONNX Runtime engine (``synthesize --engine onnxruntime``; :class:`OrtGenerator`) runs such a graph, exported in
memory from a checkpoint or read from an exported file; :class:`ExportedModel` lets a ``Synthesizer`` drive an
exported file without the checkpoint (no MC dropout, so no ``--uncertainty``).
"""

from __future__ import annotations

import datetime
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

from ._version import __version__
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


def load_synthesis_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict of a pix2pix / CycleGAN checkpoint; InputError (one line) for anything else."""
    from .synthesis import SYNTHESIS_KINDS
    from .training.checkpoint import load_checkpoint

    path = Path(path)
    if path.is_file():
        with open(path, "rb") as f:
            head = f.read(len(_MODEL_FILE_MAGIC))
        if head == _MODEL_FILE_MAGIC:
            raise InputError(f"{path}: a downstream classifier / outcome model file, not a synthesis checkpoint "
                             f"(export needs a pix2pix or CycleGAN checkpoint written by synthseq train)")
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") not in SYNTHESIS_KINDS:
        raise InputError(f"{path}: a {ckpt.get('kind')!r} checkpoint has no generator to export "
                         f"(expected one of {', '.join(SYNTHESIS_KINDS)})")
    return ckpt


def export_checkpoint(checkpoint: str | Path, out: str | Path, fmt: str = "onnx", overwrite: bool = False,
                      seed: int = 0) -> tuple[Path, Path]:
    """Export ``checkpoint``'s generator to ``out`` (``fmt``: ``"onnx"`` | ``"torchscript"``) with its sidecar JSON.

    Returns:
        ``(model file, sidecar)``.

    Raises:
        InputError: not a synthesis checkpoint (a classifier / outcome model file, another kind, not a checkpoint),
            ``out`` exists (without ``overwrite``) or is the checkpoint itself, or the export check fails.
    """
    from .synthesis import Synthesizer
    from .training.checkpoint import in_channels_of
    from .utils import atomic_path, atomic_write_text

    checkpoint, out = Path(checkpoint), Path(out)
    if fmt not in FORMATS:
        raise InputError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    side = sidecar_path(out)
    for target in (out, side):
        if checkpoint.exists() and target.resolve() == checkpoint.resolve():
            raise InputError(f"{target}: refusing to overwrite the checkpoint")
        if target.exists() and not overwrite:
            raise InputError(f"{target}: already exists (use --overwrite to replace it)")
    if out.is_dir():
        raise InputError(f"{out}: is a folder; give the file to write (e.g. {out / 'generator.onnx'})")
    ckpt = load_synthesis_checkpoint(checkpoint)
    synth = Synthesizer.from_checkpoint(checkpoint, device="cpu")
    module = TranslateModule(synth.model)
    c_in = in_channels_of(ckpt["config"])
    m = module.size_multiple

    # the export check: a random padded batch (2 x C_in x 2s x s), exported model against the torch generator
    gen = torch.Generator().manual_seed(int(seed))
    edge = example_size(m)
    probe = torch.rand((2, c_in, 2 * edge, edge), generator=gen) * 2 - 1
    with torch.inference_mode():
        expected = module(probe).float()
    if fmt == "onnx":
        blob = _onnx_bytes(module, c_in, edge)
        got = OrtGenerator(blob)(probe)
    else:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, (probe[:1],), check_trace=False)
            buf = io.BytesIO()
            torch.jit.save(traced, buf)
            blob = buf.getvalue()
            with torch.inference_mode():
                got = torch.jit.load(io.BytesIO(blob))(probe).float()
    diff = float((got - expected).abs().max())
    if not diff <= TOLERANCE:
        raise InputError(f"{checkpoint}: the exported {fmt} model differs from the torch generator by {diff:.2e} "
                         f"(> {TOLERANCE:g}); nothing written")

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        Path(tmp).write_bytes(blob)
    atomic_write_text(side, json.dumps(describe(ckpt, synth, checkpoint, out, fmt, c_in, m, diff, probe.shape),
                                       indent=2) + "\n")
    return out, side


def describe(ckpt: dict[str, Any], synth, checkpoint: Path, out: Path, fmt: str, c_in: int, multiple: int,
             diff: float, probe_shape) -> dict[str, Any]:
    """The sidecar JSON of an export (see the module docstring)."""
    cfg_model = (ckpt.get("config") or {}).get("model", {})
    pre = synth.preprocessor.to_dict()
    return {
        "format": SIDECAR_FORMAT,
        "format_version": 1,
        "synthseq_version": __version__,
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model_format": fmt,
        "model_file": out.name,
        "model_sha256": _sha256(out),
        "runtime": ({"onnxruntime": "onnxruntime.InferenceSession(file).run(None, {'x': x})", "opset": OPSET}
                    if fmt == "onnx" else {"torch": "torch.jit.load(file)(x)", "torch_version": torch.__version__}),
        "checkpoint": {"path": str(checkpoint.resolve()), "sha256": _sha256(checkpoint), "kind": ckpt.get("kind"),
                       "step": ckpt.get("step"), "generator": cfg_model.get("generator"),
                       "generator_kwargs": cfg_model.get("generator_kwargs")},
        "input": {"name": "x", "shape": ["batch", c_in, "height", "width"], "dtype": "float32",
                  "range": [-1.0, 1.0], "size_multiple": multiple,
                  "channels": "context slices of each input sequence, key-major (sequence 0's k slices, then "
                              "sequence 1's, ...); the middle one of each k is the slice being translated"},
        "output": {"name": "y", "shape": ["batch", 1, "height", "width"], "dtype": "float32", "range": [-1.0, 1.0]},
        "preprocessing": {
            "input_keys": list(synth.input_keys),
            "slice_plane": synth.slice_plane,
            "normalization": pre,
            "body_mask": ("intensity: threshold at half of Otsu's threshold of log(1 + intensity) over the positive "
                          "voxels, binary opening, largest connected component, closing (2 iterations, edge-padded), "
                          "hole filling in 3D and in every 2D slice of each axis "
                          "(synthseq.data.preprocess.body_mask_from_intensity)" if pre.get("mask") == "intensity"
                          else "none: all voxels"),
            "normalize": ("percentile: the low / high percentiles of the masked voxels map linearly to -1 / +1, no "
                          "clipping" if pre.get("method") == "percentile"
                          else "zscore: the masked voxels' mean / std map to 0 / 1"),
            "pixel_spacing_mm": None if synth.pixel_spacing_mm is None else list(synth.pixel_spacing_mm),
            "resample": "bilinear in-plane to pixel_spacing_mm (antialiased when shrinking); none when null",
            "context_slices": synth.context_slices,
            "context_edges": "edge slices replicated",
            "pad": {"mode": "replicate", "multiple": multiple, "where": "bottom and right"},
        },
        "postprocessing": {
            "steps": ["crop the padding", "resample back to the slice's own size when resampled",
                      "clamp to [-1, 1]", "denormalize with the input's own fitted parameters: value = y * scale + "
                      "center (percentile: center = (low + high) / 2, scale = (high - low) / 2; zscore: mean, std)",
                      "slices back to the volume's storage order: the output has the input's grid"],
        },
        "export_check": {"max_abs_diff_vs_torch": diff, "tolerance": TOLERANCE, "probe_shape": list(probe_shape)},
    }


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


__all__ = ["ENGINES", "FORMATS", "ExportedModel", "OrtGenerator", "TranslateModule", "export_checkpoint",
           "is_export", "load_exported", "ort_engine", "read_sidecar", "sidecar_path"]
