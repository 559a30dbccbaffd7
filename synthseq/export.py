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

Running such a file (and the in-memory ONNX Runtime engine of ``synthesize --engine onnxruntime``) lives in
:mod:`synthseq.engines`, below synthesis: :class:`~synthseq.engines.ExportedModel` lets a ``Synthesizer`` drive an
exported file without the checkpoint (no MC dropout, so no ``--uncertainty``).
"""

from __future__ import annotations

import datetime
import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from ._version import __version__
from .engines import (
    _MODEL_FILE_MAGIC,
    FORMATS,
    OPSET,
    SIDECAR_FORMAT,
    TOLERANCE,
    OrtGenerator,
    TranslateModule,
    _onnx_bytes,
    _sha256,
    example_size,
    sidecar_path,
)
from .errors import InputError


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


__all__ = ["FORMATS", "TOLERANCE", "describe", "export_checkpoint", "load_synthesis_checkpoint", "sidecar_path"]
