"""Checkpoint -> T2w :class:`~synthseq.io.Volume` -> pseudo-STIR Volume on exactly the same grid.

Pipeline of :meth:`Synthesizer.predict` (one volume, any orientation and voxel size):

1. ``SliceView.to_slices``: ``(S, H, W)`` slices in the checkpoint's plane (``slice_plane``: sagittal slices
   along the volume's own left-right axis by default; axial, coronal or the acquisition plane when the model was
   trained so), a permutation + flips, no interpolation.
2. Normalize with the checkpoint's :class:`~synthseq.data.preprocess.Preprocessor` (the one rule training used:
   percentiles of the voxels inside the body mask estimated from the volume's intensities; values beyond them are
   not clipped) -> model space [-1, 1]; ``stack_context(k)`` if the model is 2.5D.
3. Per batch of slices, on the device: resample in-plane to the checkpoint's ``pixel_spacing_mm`` (bilinear,
   antialiased when shrinking), pad (replicating the border) to a multiple of the generator's ``size_multiple``,
   ``translate`` under ``torch.inference_mode`` (bf16 autocast and channels_last on CUDA), crop, resample back to
   the slice's own size.
4. ``from_slices`` -> denormalize with the **input T2w's own** NormParams -> ``Volume.with_data``: the pseudo-STIR is
   in the T2w's intensity scale (model -1 / +1 map to the T2w's low / high percentile values), float32, with the
   input's affine and shape. No resampling of the volume grid ever happens, only of each slice and back.

Uncertainty (``predict(..., uncertainty=True)``): ``N`` stochastic passes (``infer.uncertainty_samples``, default
8), each with a random in-plane shift of up to ``SHIFT_PX`` pixels (applied inside the padding, undone on the
output, so no anatomy is flipped: the anterior-posterior axis is not symmetric) plus MC dropout where the generator
has dropout layers (the pix2pix U-Net does; batch norm stays in eval mode). The voxel-wise standard deviation of the
passes, in the output's intensity units, is the uncertainty map. The main prediction is always the deterministic
pass (no shift, no dropout), so asking for uncertainty never changes the pseudo-STIR. Passes are seeded: the same
seed gives the same map.

:class:`SynthesizeSequenced` wraps this as a MONAI dictionary transform that fills a missing sequence.

Several input sequences (a model trained with ``data.input_keys=[T1w, T2w]``): the output takes the grid of the
**grid input** (:func:`grid_key`: the T2w when the model reads one, else its first input). Every other input
(``extra={"T1w": volume}``; on the command line ``--extra T1w=FILE``; in folder mode ``<subject>_T1w.nii.gz``
beside each ``<subject>_T2w.nii.gz``) is resampled onto that grid from the affines
(:func:`synthseq.data.registration.align_pair`, optionally refined by rigid NCC registration: ``register``),
normalized with the grid input's body mask (as training normalizes every input with one mask), and stacked as
channels in the model's ``input_keys`` order (key-major, like the training stacks).
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
from collections.abc import Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import MapTransform
from torch import Tensor, nn

from .checkpoint import ModelSpec, build_model_from_checkpoint, load_checkpoint
from .data.layout import grid_key
from .data.normalize import NormParams
from .data.preprocess import Preprocessor
from .data.slicing import SliceView, stack_context
from .errors import InputError, SynthseqError
from .io import Volume, check_volume_data, load_volume
from .models import list_gans
from .utils import progress, resolve_device

#: The built-in GAN kinds (every registered kind synthesizes: each has a generator that translates A -> B;
#: code checks ``synthseq.models.list_gans()`` at call time, so kinds registered later count too).
SYNTHESIS_KINDS = tuple(list_gans())
#: Largest in-plane shift (pixels of the resampled slice) of an uncertainty pass.
SHIFT_PX = 2
#: What ``--engine auto`` runs on the CPU (measured in benchmarks/synthesis_latency.py; see benchmarks/RESULTS.md).
CPU_ENGINE = "torch"
#: The torch engine runs channels_last on the CPU as on CUDA (``Synthesizer.channels_last``; measured faster there).
CPU_CHANNELS_LAST = True
INPUT_PATTERN = "_T2w"


def synthesis_config_problem(cfg: Any) -> str | None:
    """Why ``synthesize`` could not use a model trained with ``cfg`` (a :class:`~synthseq.config.Config`), or None.

    Checked when training starts, so a run that ``synthesize`` cannot use is refused before any step.
    """
    keys = list(cfg.data.input_keys)
    if not keys:
        return "data.input_keys: empty (the model needs at least one input sequence, e.g. [T2w])"
    if len(set(keys)) != len(keys):
        return f"data.input_keys: {keys} names a sequence twice (each input is one file at synthesis)"
    if cfg.data.target_key in keys:
        return f"data.input_keys: {keys} holds the target {cfg.data.target_key} (synthesis has no target to read)"
    bad = [k for k in keys if not re.fullmatch(r"[A-Za-z0-9]+", str(k))]
    if bad:
        return f"data.input_keys: {bad[0]!r} is not a file-name key (letters and digits, e.g. T1w)"
    if cfg.model.kind not in list_gans():
        return f"model.kind: {cfg.model.kind!r} checkpoints cannot synthesize (one of {', '.join(list_gans())})"
    if cfg.model.kind == "cyclegan" and len(keys) * int(cfg.data.context_slices) != 1:
        return (f"data.input_keys: a CycleGAN maps one channel to one (got {len(keys)} input(s) x "
                f"{cfg.data.context_slices} context slices); train pix2pix for several inputs")
    return None
OUTPUT_PATTERN = "_pseudoSTIR"


def uncertainty_path(output: str | Path) -> Path:
    """Where the uncertainty map of ``output`` goes: ``X_pseudoSTIR.nii.gz`` -> ``X_pseudoSTIR_uncertainty.nii.gz``
    (a BIDS derivative ``X_desc-pseudo_STIR.nii.gz`` -> ``X_desc-pseudoUncertainty_STIR.nii.gz``)."""
    from .provenance import sibling_path

    return sibling_path(output, "uncertainty", "uncertainty")


def _dropout_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


@contextlib.contextmanager
def _mc_dropout(modules: list[nn.Module]) -> Iterator[None]:
    """Dropout layers in training mode (sampling), everything else untouched; restored afterwards."""
    for m in modules:
        m.train(True)
    try:
        yield
    finally:
        for m in modules:
            m.train(False)


class Synthesizer:
    """A trained generator ready to turn T2w volumes into pseudo-STIR volumes (see the module docstring).

    >>> # synth = Synthesizer.from_checkpoint("runs/pix2pix/best.pt")
    >>> # stir = synth(load_volume("sub-01_T2w.nii.gz"))        # Volume, same affine and shape, float32
    >>> # stir, sd = synth.predict(t2w, uncertainty=True)      # plus a voxel-wise std Volume

    Args:
        model: a :class:`~synthseq.models.base.GANModel` (its ``translate`` is used).
        normalization: the :class:`~synthseq.data.preprocess.Preprocessor` the model was trained with, or its
            ``to_dict()`` (``{"method", "percentiles", "mask"}``; version-0.1.0 entries are read too).
        pixel_spacing_mm: ``(dh, dw)`` of the training slices; None keeps each volume's native in-plane spacing.
        context_slices: k of the 2.5D input (1 = 2D).
        input_keys: input sequences of the model, in channel order (:func:`grid_key` gives the output grid).
        device: ``"auto" | "cpu" | "cuda[:N]"``.
        batch_size: slices per forward pass.
        uncertainty_samples: stochastic passes for the uncertainty map.
        source: a name for messages (the checkpoint path).
        slice_plane: the plane the model was trained in (``synthseq.data.slicing.PLANE_CHOICES``).
        splits: the training run's subject splits (``{"train": [...], ...}``) when the checkpoint stores them.
        register: refine the affine resampling of extra inputs onto the grid input by rigid NCC registration.
    """

    def __init__(self, model: nn.Module, *, normalization: Mapping[str, Any] | None = None,
                 pixel_spacing_mm: Sequence[float] | None = None, context_slices: int = 1,
                 input_keys: Sequence[str] = ("T2w",), device: str | torch.device = "auto", batch_size: int = 32,
                 uncertainty_samples: int = 8, source: str = "<model>", slice_plane: str = "sagittal",
                 splits: Mapping[str, Sequence[str]] | None = None, register: bool = False) -> None:
        self.source = source
        self.slice_plane = str(slice_plane)
        self.splits = {k: list(v) for k, v in splits.items()} if splits else None
        self.device = device if isinstance(device, torch.device) else resolve_device(str(device))
        self.preprocessor = (normalization if isinstance(normalization, Preprocessor)
                             else Preprocessor.from_dict(normalization))
        self.norm_method = self.preprocessor.method
        self.norm_percentiles = self.preprocessor.percentiles
        self.norm_mask = self.preprocessor.mask
        self.pixel_spacing_mm = None if pixel_spacing_mm is None else tuple(float(s) for s in pixel_spacing_mm)
        self.context_slices = int(context_slices)
        self.input_keys = list(input_keys)
        if batch_size < 1:
            raise SynthseqError(f"batch size must be at least 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.uncertainty_samples = max(2, int(uncertainty_samples))
        if not self.input_keys or len(set(self.input_keys)) != len(self.input_keys):
            raise InputError(f"{source}: unusable input_keys {self.input_keys} (need distinct sequence names)")
        self.grid_key = grid_key(self.input_keys)
        self.extra_keys = [k for k in self.input_keys if k != self.grid_key]
        self.register = bool(register)
        self.model = model.to(self.device).eval()
        # channels_last: oneDNN's fast convolution path on the CPU too (same output within float rounding)
        self.channels_last = self.device.type == "cuda" or CPU_CHANNELS_LAST
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.multiple = max(int(getattr(getattr(model, n), "size_multiple", 1)) for n in model.generator_modules())
        self._dropout = _dropout_modules(self.model)
        self.engine = "torch"  # what runs the deterministic pass: see set_engine
        self._engine_run = None

    # ------------------------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", batch_size: int | None = None) -> Synthesizer:
        """Load a pix2pix / CycleGAN checkpoint written by ``synthseq train`` (the file alone suffices).

        Raises:
            InputError: missing file, not a synthseq checkpoint, or a checkpoint of another kind (e.g. a
                downstream classifier).
        """
        from .engines import is_export

        path = Path(path)
        if is_export(path):
            return cls.from_export(path, batch_size=batch_size)
        ckpt = load_checkpoint(path)
        kind = ckpt.get("kind")
        if kind not in list_gans():
            raise InputError(f"{path}: a {kind!r} checkpoint cannot synthesize images "
                             f"(expected one of {', '.join(list_gans())})")
        try:
            model = build_model_from_checkpoint(ckpt)
        except SynthseqError as exc:
            msg = str(exc).splitlines()[0]
            raise InputError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from exc
        spec = ModelSpec.from_checkpoint(ckpt)
        infer = spec.config.get("infer", {}) or {}
        return cls(
            model,
            normalization=spec.preprocessing,
            pixel_spacing_mm=spec.pixel_spacing_mm,
            context_slices=spec.context_slices,
            input_keys=spec.input_keys,
            device=device,
            batch_size=int(batch_size or infer.get("batch_size", 32)),
            uncertainty_samples=int(infer.get("uncertainty_samples", 8)),
            source=str(path),
            slice_plane=spec.slice_plane,
            splits=spec.splits,
        )

    @classmethod
    def from_export(cls, path: str | Path, batch_size: int | None = None) -> Synthesizer:
        """A Synthesizer driving a generator written by ``synthseq export`` (ONNX Runtime or TorchScript, on the
        CPU) with the preprocessing stored beside it; it has no MC dropout, so no uncertainty maps."""
        from .engines import load_exported

        model, meta = load_exported(path)
        pre = meta["preprocessing"]
        synth = cls(model, normalization=pre["normalization"], pixel_spacing_mm=pre.get("pixel_spacing_mm"),
                    context_slices=int(pre.get("context_slices", 1)), input_keys=pre.get("input_keys", ["T2w"]),
                    device="cpu", batch_size=int(batch_size or 8), source=str(path),
                    slice_plane=str(pre.get("slice_plane", "sagittal")))
        synth.engine = "onnxruntime" if meta.get("model_format") == "onnx" else "torchscript"
        return synth

    def set_engine(self, engine: str = "auto") -> Synthesizer:
        """Choose what runs the deterministic pass: ``"torch"`` (the checkpoint's networks), ``"onnxruntime"``
        (the generator exported to ONNX in memory, run by ONNX Runtime; CPU only) or ``"auto"``
        (:data:`CPU_ENGINE` on the CPU, torch on CUDA). Uncertainty passes always run the torch networks (MC
        dropout). A Synthesizer of an exported file keeps its own engine. Returns ``self``."""
        from .engines import ENGINES, ExportedModel, ort_engine

        if engine not in (*ENGINES, "auto"):
            raise InputError(f"--engine: expected one of auto, {', '.join(ENGINES)}, got {engine!r}")
        if isinstance(self.model, ExportedModel):
            if engine not in ("auto", self.engine):
                raise InputError(f"{self.source}: an exported {self.model.export_format} model runs only as "
                                 f"exported (--engine {engine} needs the checkpoint)")
            return self
        if engine == "auto":
            engine = CPU_ENGINE if self.device.type == "cpu" else "torch"
            if engine == "onnxruntime" and importlib.util.find_spec("onnxruntime") is None:
                engine = "torch"
        if engine == "onnxruntime" and self.device.type != "cpu":
            raise InputError(f"--engine onnxruntime runs on the CPU (got --device {self.device}); use --device cpu")
        self._engine_run = None
        if engine == "onnxruntime":
            self._engine_run = ort_engine(self.model, len(self.input_keys) * self.context_slices)
        self.engine = engine
        return self

    # ---------------------------------------------------------------------------------------- inference
    def __call__(self, volume: Volume, extra: Mapping[str, Volume] | None = None) -> Volume:
        """T2w Volume (+ ``extra`` inputs by key) -> pseudo-STIR Volume (same affine and shape as ``volume``, float32,
        in its intensity scale)."""
        return self.predict(volume, extra=extra)[0]

    def check_extra(self, volume: Volume, extra: Mapping[str, Volume] | None) -> dict[str, Volume]:
        """The extra inputs by key; InputError (one line, naming it) for a missing or an unknown one."""
        extra = dict(extra or {})
        for key in extra:
            if key not in self.extra_keys:
                takes = ", ".join(self.input_keys)
                raise InputError(f"{key}: not an extra input of this model (it reads {takes}; "
                                 f"{self.grid_key} is the main input)")
        for key in self.extra_keys:
            if extra.get(key) is None:
                raise InputError(f"{volume.name}: missing {key} input (the model reads {', '.join(self.input_keys)}; "
                                 f"give it as --extra {key}=FILE)")
        return extra

    def prepare_inputs(self, volume: Volume, extra: Mapping[str, Volume] | None = None
                       ) -> tuple[Tensor, NormParams, SliceView]:
        """Model input ``(S, C_in, H, W)`` (context stacks of every input, key-major), the grid input's NormParams
        and the view of its grid. Extra inputs are put on ``volume``'s grid first (see the module docstring)."""
        from .data.registration import align_pair

        extra = self.check_extra(volume, extra)
        x, params, view = self.normalize_input(volume)
        if not self.extra_keys:
            return stack_context(torch.from_numpy(x), self.context_slices), params, view
        data = np.asarray(volume.data, dtype=np.float32)
        body = self.preprocessor.body_mask(data)
        chans = []
        for key in self.input_keys:
            if key == self.grid_key:
                sl = x
            else:
                ev = extra[key]
                check_volume_data(np.asarray(ev.data), ev.name)
                on_grid, _ = align_pair(volume, ev, register=self.register, mask=body)
                ep = self.preprocessor.fit(on_grid.data, body, ev.name)
                sl = self.preprocessor.apply(np.ascontiguousarray(view.to_slices(on_grid.data), dtype=np.float32), ep)
            chans.append(stack_context(torch.from_numpy(np.ascontiguousarray(sl, dtype=np.float32)),
                                       self.context_slices))
        return torch.cat(chans, dim=1), params, view

    def normalize_input(self, volume: Volume) -> tuple[np.ndarray, NormParams, SliceView]:
        """Canonical ``(S, H, W)`` slices of ``volume`` in model space, its NormParams and the view used."""
        data = np.asarray(volume.data)
        check_volume_data(data, volume.name)
        view = SliceView.from_affine(volume.affine, self.slice_plane)
        slices = np.ascontiguousarray(view.to_slices(data), dtype=np.float32)
        params = self.preprocessor.fit(slices, name=volume.name)
        return self.preprocessor.apply(slices, params), params, view

    def predict(self, volume: Volume, uncertainty: bool = False, seed: int = 0,
                extra: Mapping[str, Volume] | None = None) -> tuple[Volume, Volume | None]:
        """Pseudo-STIR of ``volume`` and, if ``uncertainty``, the voxel-wise std map (both float32 Volumes on the
        input's grid, in the T2w's intensity units). ``extra``: the model's other inputs by key (any grid).

        Raises:
            InputError: a volume is not 3D or holds NaN / inf voxels; an extra input is missing or unknown.
        """
        if uncertainty and not self._dropout and getattr(self.model, "export_format", None):
            raise InputError(f"{self.source}: an exported generator has no MC dropout; --uncertainty needs the "
                             "checkpoint (.pt)")
        inputs, params, view = self.prepare_inputs(volume, extra)  # (S, C_in, H, W)
        s, h, w = inputs.shape[0], inputs.shape[-2], inputs.shape[-1]
        work = self._work_size(volume, view, (h, w))
        pred = np.empty((s, h, w), dtype=np.float32)
        std = np.empty((s, h, w), dtype=np.float32) if uncertainty else None
        gen = torch.Generator().manual_seed(int(seed))
        for i in range(0, s, self.batch_size):
            batch = inputs[i:i + self.batch_size]
            pred[i:i + len(batch)] = self._translate(batch, work, (h, w)).numpy()
            if std is not None:
                std[i:i + len(batch)] = self._sample_std(batch, work, (h, w), gen, seed + i).numpy()
        out = volume.with_data(np.ascontiguousarray(self.preprocessor.invert(view.from_slices(pred), params)))
        _float32_header(out)
        unc = None
        if std is not None:
            unc = volume.with_data(np.ascontiguousarray(view.from_slices(std) * np.float32(params.scale)))
            _float32_header(unc, "uncertainty")
        return out, unc

    def _work_size(self, volume: Volume, view: SliceView, size: tuple[int, int]) -> tuple[int, int]:
        """In-plane size of the slices at the training pixel spacing."""
        if self.pixel_spacing_mm is None:
            return size
        dh, dw = view.inplane_spacing(volume.spacing)
        th, tw = self.pixel_spacing_mm
        return max(1, round(size[0] * dh / th)), max(1, round(size[1] * dw / tw))

    def forward_batch(self, x: Tensor, engine: bool = True) -> Tensor:
        """One generator pass: ``(B, C_in, H, W)`` in [-1, 1] on the device -> ``(B, 1, H, W)`` float32 (bf16 on CUDA).

        ``engine``: run it with the engine chosen by :meth:`set_engine` (False: the torch networks, as the MC-dropout
        uncertainty passes need)."""
        if engine and self._engine_run is not None:
            return self._engine_run(x).float()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return self.model.translate(x).float()
        return self.model.translate(x).float()

    def _run(self, batch: Tensor, work: tuple[int, int], size: tuple[int, int], margin: int,
             shift: tuple[int, int] = (0, 0), engine: bool = False) -> Tensor:
        """Resample -> pad -> (shift) -> translate -> (unshift) -> crop -> resample back: ``(B, H, W)`` on the CPU.
        ``engine``: the deterministic pass, run by the chosen engine (see :meth:`forward_batch`)."""
        x = batch.to(self.device, dtype=torch.float32)
        x = _resize(x, work)
        hh, ww = work
        ph = -(hh + 2 * margin) % self.multiple + margin
        pw = -(ww + 2 * margin) % self.multiple + margin
        x = F.pad(x, (margin, pw, margin, ph), mode="replicate")
        if shift != (0, 0):
            x = torch.roll(x, shifts=shift, dims=(-2, -1))
        y = self.forward_batch(x, engine=engine)
        if shift != (0, 0):
            y = torch.roll(y, shifts=(-shift[0], -shift[1]), dims=(-2, -1))
        y = y[:, :1, margin:margin + hh, margin:margin + ww]
        y = _resize(y, size).clamp_(-1.0, 1.0)
        return y[:, 0].cpu()

    @torch.inference_mode()
    def _translate(self, batch: Tensor, work: tuple[int, int], size: tuple[int, int]) -> Tensor:
        return self._run(batch, work, size, margin=0, engine=True)

    @torch.inference_mode()
    def _sample_std(self, batch: Tensor, work: tuple[int, int], size: tuple[int, int], gen: torch.Generator,
                    seed: int) -> Tensor:
        """Std over ``uncertainty_samples`` shifted / MC-dropout passes (model units): ``(B, H, W)``."""
        total = torch.zeros((batch.shape[0], *size), dtype=torch.float64)
        total_sq = torch.zeros_like(total)
        n = self.uncertainty_samples
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), _mc_dropout(self._dropout):
            torch.manual_seed(seed)  # dropout masks: reproducible and independent of the caller's RNG
            for _ in range(n):
                dy, dx = (int(v) for v in torch.randint(-SHIFT_PX, SHIFT_PX + 1, (2,), generator=gen))
                y = self._run(batch, work, size, margin=SHIFT_PX, shift=(dy, dx)).double()
                total += y
                total_sq += y * y
        var = (total_sq - total * total / n) / (n - 1)
        return var.clamp_min_(0).sqrt_().float()


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def _float32_header(volume: Volume, kind: str = "pseudo") -> None:
    """The output is written as unscaled float32, whatever the input's on-disk type was, and its header is marked
    synthetic (:func:`synthseq.provenance.mark_header`), so even a plain ``save_volume`` of it never carries the
    input's description (a DICOM input, which has no header, gets a fresh NIfTI header)."""
    import nibabel as nib

    from .provenance import mark_header

    if volume.header is None:
        volume.header = nib.Nifti1Header()
    volume.header.set_data_dtype(np.float32)
    volume.header.set_slope_inter(1.0, 0.0)
    mark_header(volume.header, kind)


# ------------------------------------------------------------------------------------------ files
def output_name(input_name: str) -> str:
    """``sub-01_T2w.nii.gz`` -> ``sub-01_pseudoSTIR.nii.gz``; other names get ``_pseudoSTIR`` appended."""
    from .data.layout import strip_nifti

    stem = strip_nifti(input_name)
    if stem is None:  # e.g. a DICOM folder
        return f"{input_name}{OUTPUT_PATTERN}.nii.gz"
    suffix = input_name[len(stem):]
    if stem.endswith(INPUT_PATTERN):
        return stem[: -len(INPUT_PATTERN)] + OUTPUT_PATTERN + suffix
    return stem + OUTPUT_PATTERN + suffix


def plan_outputs(input: str | Path, output: str | Path, subjects: Sequence[str] | None = None,
                 input_key: str = "T2w") -> list[tuple[Path, Path]]:
    """``(input, output)`` file pairs of a synthesize run (no file is touched).

    * ``input`` a dataset (BIDS folder or CSV manifest, :mod:`synthseq.data.layout`): each subject's
      ``input_key`` file maps to ``output/<its sub-folder>/<name>_pseudoSTIR.nii.gz`` (files outside a BIDS root,
      as a CSV may list: ``output/<subject>/<subject>_pseudoSTIR.nii.gz``).
    * ``input`` a folder holding ``*_T2w.nii(.gz)`` (at any depth, e.g. the phantom layout): each maps to
      ``output/<same sub-folder>/*_pseudoSTIR.nii(.gz)``.
    * ``input`` a file (or a DICOM folder): ``output`` is the file to write, or an existing folder to write
      ``<name>_pseudoSTIR.nii.gz`` into.

    ``subjects`` limits a dataset or folder run to those subject ids (InputError for an id not found).
    """
    from .data.layout import is_bids, load_subjects, select_records, strip_nifti, subject_of

    input, output = Path(input), Path(output)
    if not input.exists():
        raise InputError(f"{input}: no such file or folder")
    from .provenance import is_bids_dataset, plan_bids_outputs

    if is_bids_dataset(input):  # a BIDS derivative dataset with BIDS-derivative names (synthseq.provenance)
        return plan_bids_outputs(input, output, subjects)[1]
    dataset = input.suffix.lower() == ".csv" and input.is_file() or input.is_dir() and is_bids(input, loose=False)
    if dataset or input.is_dir():
        if dataset:
            records = [(s.id, s.paths[input_key]) for s in load_subjects(input) if s.has(input_key)]
        else:
            found = sorted(p for p in input.rglob(f"*{INPUT_PATTERN}.nii*") if strip_nifti(p.name) and p.is_file())
            records = [(subject_of(p) or subject_of(p.parent) or p.name, p) for p in found]
        records = select_records(records, subjects, input, input_key)
        if records:
            if output.exists() and not output.is_dir():
                raise InputError(f"{output}: must be a folder when --input is a dataset or a folder of *_T2w files")
            pairs = []
            for sid, p in records:
                root = input if input.is_dir() else input.parent
                try:
                    rel = p.relative_to(root).parent
                except ValueError:
                    rel, p_name = Path(sid), f"{sid}{INPUT_PATTERN}.nii.gz"
                else:
                    p_name = p.name
                pairs.append((p, output / rel / output_name(p_name)))
            return pairs
        if dataset:
            raise InputError(f"{input}: no subject has a {input_key} file")
    if output.is_dir():
        return [(input, output / output_name(input.name))]
    if strip_nifti(output.name) is None:
        raise InputError(f"{output}: output must end in .nii or .nii.gz (or be an existing folder)")
    return [(input, output)]


def _nifti_beside(grid_file: Path, key: str, pattern: str = INPUT_PATTERN) -> Path:
    """``sub-01_T2w.nii.gz`` -> ``sub-01_T1w.nii.gz`` (or ``.nii`` if only that exists) in the same folder."""
    from .data.layout import strip_nifti

    stem = strip_nifti(grid_file.name) or grid_file.name
    base = stem[: -len(pattern)] if stem.endswith(pattern) else stem
    for suffix in (".nii.gz", ".nii"):
        cand = grid_file.with_name(f"{base}_{key}{suffix}")
        if cand.is_file():
            return cand
    return grid_file.with_name(f"{base}_{key}.nii.gz")


def extra_inputs(synth: Synthesizer, pairs: list[tuple[Path, Path]], extra: Mapping[str, str | Path] | None,
                 folder_mode: bool) -> list[dict[str, Path]]:
    """Files of the model's extra inputs for each ``(input, output)`` pair; one-line InputError naming a missing one.

    File mode: ``extra`` maps each extra key to its file. Folder mode: ``<subject>_<key>.nii.gz`` beside each
    ``<subject>_T2w.nii.gz`` (``extra`` must then be empty).
    """
    extra = {str(k): Path(v) for k, v in (extra or {}).items()}
    for key in extra:
        if key not in synth.extra_keys:
            reads = ", ".join(synth.input_keys)
            raise InputError(f"--extra {key}: not an extra input of this model (it reads {reads}; "
                             f"--input is its {synth.grid_key})")
    if folder_mode and extra:
        raise InputError(f"--extra {next(iter(extra))}: not used in folder mode (each <subject>_<key>.nii.gz "
                         f"beside <subject>{INPUT_PATTERN}.nii.gz is read)")
    out = []
    for src, _ in pairs:
        files = {}
        for key in synth.extra_keys:
            f = _nifti_beside(src, key) if folder_mode else extra.get(key)
            if f is None:
                raise InputError(f"{src}: missing {key} input (the model reads {', '.join(synth.input_keys)}; "
                                 f"pass --extra {key}=FILE)")
            if not f.exists():
                raise InputError(f"{f}: missing {key} input for {src.name} (no such file)")
            files[key] = f
        out.append(files)
    return out


def synthesize_path(checkpoint: str | Path, input: str | Path, output: str | Path, *, device: str = "auto",
                    batch_size: int | None = None, uncertainty: bool = False, overwrite: bool = False,
                    seed: int = 0, synthesizer: Synthesizer | None = None, split: str | None = None,
                    subjects: Sequence[str] | None = None, extra: Mapping[str, str | Path] | None = None,
                    register: bool = False, dicom_out: str | Path | None = None,
                    engine: str | None = None, erasure_check: bool = False) -> list[Path]:
    """Synthesize pseudo-STIR for a file or a folder (see :func:`plan_outputs` for the naming).

    A model with several inputs reads the others from ``extra`` (``{"T1w": path}``) for a file, or from
    ``<subject>_<key>.nii.gz`` beside each ``<subject>_T2w.nii.gz`` in folder mode; they are resampled onto the
    ``input``'s grid (``register``: plus rigid NCC refinement). Every input is checked before any work starts.

    ``erasure_check`` (on in the CLI): compare each pseudo-STIR with its inputs (:mod:`synthseq.erasure`), write
    the flag map beside it (:func:`synthseq.erasure.flags_path`; listed after the volume's other outputs), put the
    counts in the sidecars (``"ErasureCheck"``) and print one line per volume on stderr.

    Every output is checked before any work starts: an output equal to its input is refused, and existing outputs
    are refused unless ``overwrite``. Files are written atomically as float32 with the input's affine; with
    ``uncertainty`` a ``*_uncertainty.nii.gz`` std map goes beside each output. Every image is marked synthetic
    and has a JSON sidecar with its provenance (:mod:`synthseq.provenance`). A BIDS dataset ``input`` gives a BIDS
    derivative dataset (``output`` None: ``<input>/derivatives/synthseq``). ``dicom_out`` (a DICOM series
    ``input``): also write the pseudo-STIR as a new DICOM series in that folder (:mod:`synthseq.dicom_out`).

    ``split`` (``train`` / ``val`` / ``test``: the subjects of the checkpoint's stored split) and ``subjects``
    (ids) limit a dataset or folder run.

    Returns:
        The written paths (pseudo-STIR files, then each one's uncertainty map where asked for), in input order.
    """
    synth = synthesizer
    if split is not None:
        from .data.layout import SPLITS

        if split not in SPLITS:
            raise InputError(f"--split: expected one of {', '.join(SPLITS)}, got {split!r}")
        synth = synth or Synthesizer.from_checkpoint(checkpoint, device=device, batch_size=batch_size)
        if synth.splits is None:
            raise InputError(f"{checkpoint}: the checkpoint stores no subject splits; pass --subjects instead")
        wanted = list(synth.splits.get(split, []))
        subjects = [s for s in wanted if subjects is None or s in subjects]
        if not subjects:
            raise InputError(f"{checkpoint}: the {split} split of the checkpoint is empty")
    from . import provenance

    bids_root = Path(input) if provenance.is_bids_dataset(input) else None
    if output is None:
        if bids_root is None:
            raise InputError(f"{input}: --output is required (it may be left out only for a BIDS dataset)")
        output = provenance.default_derivatives_dir(bids_root)
    pairs = plan_outputs(input, output, subjects)
    if dicom_out is not None:
        from .dicom_out import check_output_folder, check_source_series

        if len(pairs) != 1 or not pairs[0][0].is_dir():
            raise InputError(f"{input}: --dicom-out needs a DICOM series folder as --input")
        check_source_series(pairs[0][0])
        check_output_folder(dicom_out, pairs[0][0], overwrite)
    planned: list[Path] = []
    for src, dst in pairs:
        targets = [dst, uncertainty_path(dst)] if uncertainty else [dst]
        if erasure_check:
            from .erasure import flags_path

            targets.append(flags_path(dst))
        targets += [provenance.sidecar_path(t) for t in targets]
        for t in targets:
            if t.resolve() == src.resolve():
                raise InputError(f"{t}: refusing to overwrite the input file")
            if t.exists() and not overwrite:
                more = f" (and {len(pairs) - 1} other planned output(s))" if len(pairs) > 1 else ""
                raise InputError(f"{t}: already exists (use --overwrite to replace it){more}")
        planned += targets
    if len(set(planned)) != len(planned):
        raise InputError(f"{output}: two inputs map onto the same output name")
    synth = synth or Synthesizer.from_checkpoint(checkpoint, device=device, batch_size=batch_size)
    if engine is not None:  # "auto" | "torch" | "onnxruntime" (Synthesizer.set_engine)
        synth.set_engine(engine)
    if register:
        synth.register = True
    extras = extra_inputs(synth, pairs, extra, folder_mode=bool(pairs) and pairs[0][0] != Path(input))
    info = provenance.run_info(synth, checkpoint)
    if len(pairs) > 1:  # folder mode: every input must read cleanly before the first output is written
        for (src, _), files in zip(pairs, extras):
            for f in (src, *files.values()):
                load_volume(f)
    written: list[Path] = []
    for (src, dst), files in progress(list(zip(pairs, extras)), desc="synthesize", total=len(pairs), unit="vol"):
        volume = load_volume(src)
        pred, unc = synth.predict(volume, uncertainty=uncertainty, seed=seed,
                                  extra={k: load_volume(f) for k, f in files.items()})
        # provenance of this volume's outputs; "extra" takes more sidecar keys (e.g. "ErasureCheck" counts)
        prov = {"inputs": [provenance.describe_input(src, synth.grid_key),
                           *(provenance.describe_input(f, k) for k, f in files.items())],
                "sources": [provenance.bids_uri(bids_root, src)] if bids_root is not None else None, "extra": {}}
        flags = None
        if erasure_check:
            flags, counts = _erasure(volume, pred, files, synth.register, src)
            prov["extra"] = {"ErasureCheck": counts}
        written.append(provenance.write_output(pred, dst, "pseudo", info, **prov, overwrite=overwrite))
        if unc is not None:
            written.append(provenance.write_output(unc, uncertainty_path(dst), "uncertainty", info, **prov,
                                                   overwrite=overwrite))
        if flags is not None:
            from .erasure import flags_path

            written.append(provenance.write_output(flags, flags_path(dst), "flags", info, **prov,
                                                   overwrite=overwrite, dtype=np.uint8))
        if dicom_out is not None:
            from .dicom_out import write_dicom_series

            written.append(write_dicom_series(pred, src, dicom_out, checkpoint=info["Checkpoint"]["Path"],
                                              checkpoint_sha256=info["Checkpoint"]["SHA256"],
                                              input_key=synth.grid_key, overwrite=overwrite))
    if bids_root is not None and written:
        provenance.write_dataset_description(bids_root, output)
    return written


def _erasure(volume: Volume, pred: Volume, files: Mapping[str, Path], register: bool, src: Path
             ) -> tuple[Volume, dict[str, Any]]:
    """The erasure check of one synthesized volume (T1w, if the model read one, on the T2w grid), its log line."""
    import sys

    from . import erasure
    from .data.registration import align_pair

    t1 = align_pair(volume, load_volume(files["T1w"]), register=register)[0] if "T1w" in files else None
    flags, report = erasure.check(volume, pred, t1)
    print(f"synthseq: {erasure.summary_line(str(src), report)}", file=sys.stderr, flush=True)
    return flags, erasure.sidecar_counts(report)


# -------------------------------------------------------------------------------------- MONAI transform
def _affine_of(value: Any, data: Mapping[Hashable, Any], key: Hashable) -> np.ndarray:
    affine = getattr(value, "affine", None)
    if affine is None:
        meta = data.get(f"{key}_meta_dict") or {}
        affine = meta.get("affine") if isinstance(meta, Mapping) else None
    if affine is None:
        raise InputError(f"{key}: needs an affine (a Volume, a MONAI MetaTensor, or '{key}_meta_dict' with "
                         f"'affine')")
    affine = np.asarray(affine.detach().cpu() if isinstance(affine, Tensor) else affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise InputError(f"{key}: affine must be 4x4, got shape {affine.shape}")
    return affine


class SynthesizeSequenced(MapTransform):
    """MONAI dictionary transform: fill ``key_out`` with pseudo-STIR synthesized from ``keys_in``.

    Values may be :class:`~synthseq.io.Volume` objects, MONAI ``MetaTensor`` s (with ``.affine``; channel-first
    ``(1, X, Y, Z)`` or ``(X, Y, Z)``), or arrays / tensors accompanied by ``"<key>_meta_dict"["affine"]``. The
    output has the input's type, shape and affine (a MetaTensor keeps a copy of the input's metadata). Slices are
    batched on the synthesizer's device (the GPU when present).

    Args:
        keys_in: input key(s): the model's input sequences in its ``input_keys`` order (one for a T2w -> STIR
            model; e.g. ``["t1w", "t2w"]`` for a T1w + T2w model). The output takes the grid of the key in the
            model's grid-input position (:func:`grid_key`); the others are resampled onto it.
        key_out: key to fill.
        checkpoint: checkpoint path (ignored if ``synthesizer`` is given).
        synthesizer: a ready :class:`Synthesizer` (shared between transforms, no reloading).
        only_if_missing: leave a present (non-None) ``key_out`` untouched; False always synthesizes.
        device, batch_size: for loading from ``checkpoint``.
        allow_missing_keys: skip samples lacking an input key instead of raising.
    """

    def __init__(self, keys_in: Sequence[str] | str = ("t2w",), key_out: str = "stir",
                 checkpoint: str | Path | None = None, synthesizer: Synthesizer | None = None,
                 only_if_missing: bool = True, device: str = "auto", batch_size: int | None = None,
                 allow_missing_keys: bool = False) -> None:
        keys = [keys_in] if isinstance(keys_in, str) else list(keys_in)
        super().__init__(keys, allow_missing_keys)
        if synthesizer is None:
            if checkpoint is None:
                raise SynthseqError("SynthesizeSequenced needs checkpoint= or synthesizer=")
            synthesizer = Synthesizer.from_checkpoint(checkpoint, device=device, batch_size=batch_size)
        if len(keys) != len(synthesizer.input_keys):
            raise InputError(f"SynthesizeSequenced: {len(keys)} input key(s) given, the model takes "
                             f"{len(synthesizer.input_keys)} ({', '.join(synthesizer.input_keys)})")
        self.key_out = key_out
        self.synthesizer = synthesizer
        self.only_if_missing = only_if_missing

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.only_if_missing and d.get(self.key_out) is not None:
            return d
        present = [k for k in self.keys if k in d and d[k] is not None]
        if len(present) < len(self.keys):
            if self.allow_missing_keys:
                return d
            missing = [k for k in self.keys if k not in present]
            raise InputError(f"{missing[0]}: input key missing from the sample (keys: {sorted(map(str, d))})")
        model_keys = self.synthesizer.input_keys
        key = self.keys[model_keys.index(self.synthesizer.grid_key)]
        extra = {mk: _as_volume(d[k], d, k) for k, mk in zip(self.keys, model_keys) if k != key}
        value = d[key]
        if isinstance(value, Volume):
            d[self.key_out] = self.synthesizer(value, extra=extra)
            return d
        d[self.key_out] = self._synthesize_array(value, d, key, extra)
        if f"{key}_meta_dict" in d and not hasattr(value, "affine"):
            d[f"{self.key_out}_meta_dict"] = dict(d[f"{key}_meta_dict"])
        return d

    def _synthesize_array(self, value: Any, data: Mapping[Hashable, Any], key: Hashable,
                          extra: Mapping[str, Volume] | None = None) -> Any:
        is_tensor = isinstance(value, Tensor)
        channel = np.ndim(value) == 4 and value.shape[0] == 1
        pred = self.synthesizer(_as_volume(value, data, key), extra=extra).data
        pred = pred[None] if channel else pred
        if not is_tensor:
            return pred
        out = torch.as_tensor(pred, device=value.device)
        if hasattr(value, "affine") and hasattr(value, "meta"):
            from monai.data import MetaTensor

            meta = dict(value.meta)
            meta["affine"] = value.affine.clone()
            return MetaTensor(out, meta=meta)
        return out


def _as_volume(value: Any, data: Mapping[Hashable, Any], key: Hashable) -> Volume:
    """A sample's value (Volume, MetaTensor, array + meta dict; ``(1, X, Y, Z)`` or ``(X, Y, Z)``) as a Volume."""
    if isinstance(value, Volume):
        return value
    affine = _affine_of(value, data, key)
    arr = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
    channel = arr.ndim == 4 and arr.shape[0] == 1
    return Volume(np.asarray(arr[0] if channel else arr, dtype=np.float32), affine, header=None, path=name_path(key))


def name_path(key: Hashable) -> Path:
    """A pseudo path naming the dictionary key in messages (e.g. NaN voxels in 't2w')."""
    return Path(re.sub(r"[^\w.-]", "_", str(key)))


__all__ = ["SynthesizeSequenced", "Synthesizer", "extra_inputs", "grid_key", "output_name", "plan_outputs",
           "synthesis_config_problem", "synthesize_path", "uncertainty_path"]
