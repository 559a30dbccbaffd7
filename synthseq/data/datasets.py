"""Paired and unpaired 2D (or 2.5D) sagittal slice datasets built from :class:`~synthseq.data.layout.Subject` s.

Preparation of one subject (:func:`prepare_subject`, done once per subject when a dataset is built, then cached
in memory):

1. Load the reference input (:func:`~synthseq.data.layout.grid_key`: the T2w if read, else the first of
   ``input_keys``; the grid synthesis writes on). Every other sequence (extra inputs, the
   STIR target, the labels) is put on that grid with :func:`~synthseq.data.registration.align_pair` /
   :func:`~synthseq.data.registration.resample_to` when its grid differs (optionally rigidly registered).
2. Body mask of the loss and metrics: :func:`synthseq.codes.body_mask_from_labels` when a labels file exists,
   else the intensity estimate :func:`~synthseq.data.preprocess.body_mask_from_intensity` of the reference.
3. Per-volume normalization by the :class:`~synthseq.data.preprocess.Preprocessor` (percentiles or mean/std
   inside its intensity body mask of the reference, exactly as synthesis does); the target is clipped to [-1, 1]
   (percentile method), inputs are not (as at inference, :mod:`synthseq.synthesis`).
4. Canonical sagittal slices (:class:`~synthseq.data.slicing.SagittalView`: S right -> left, H superior ->
   inferior, W anterior -> posterior), 2.5D context stacks for the inputs (channels ordered key-major: the k
   slices of the first input key, then the k of the next), optional in-plane resampling to ``pixel_spacing_mm``.
5. Slices whose body fraction is below ``min_foreground`` are never sampled.

Items (:meth:`PairedSliceDataset.__getitem__`) are crops/pads of one slice to ``image_size``: random crop when
``augment`` (plus the augmentations of :mod:`synthseq.data.transforms`, the same as the GPU bank's), centre crop otherwise; padding uses
each channel's normalized background value (the value scanner intensity 0 maps to, i.e. -1 or a bit below).
Randomness is a pure function of ``(seed, epoch, index)``: call :meth:`set_epoch` once per epoch to vary it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..codes import body_mask_from_labels, reference_masks, tissue_balance_weights
from ..errors import InputError
from ..io import Volume, load_volume
from .layout import Subject, grid_key
from .normalize import NormParams
from .preprocess import Preprocessor, body_mask_from_intensity
from .registration import align_pair, resample_to, same_grid
from .slicing import SagittalView, SliceView, stack_context
from .transforms import AugmentSettings, augment_item

NORM_MASKS = ("auto", "labels", "intensity", "none")


# ------------------------------------------------------------------------------------------------ body masks

# ------------------------------------------------------------------------------------------ prepared slices
@dataclass
class SliceStack:
    """One subject's prepared slices (all of them; ``keep`` says which ones may be sampled).

    Attributes:
        subject: subject id.
        A: ``(S, C_in, H, W)`` float32 normalized inputs (unclipped), or None for a target-only stack.
        B: ``(S, 1, H, W)`` float32 normalized target (clipped to [-1, 1] for the percentile method), or None.
        mask: ``(S, 1, H, W)`` float32 body mask {0, 1} of the reference.
        foreground: ``(S,)`` body fraction of each slice.
        pad_A: ``(C_in,)`` normalized background value of each input channel (padding value).
        pad_B: ``(1,)`` the target's.
        spacing: ``(dh, dw)`` in-plane pixel size (mm) of the slices.
        norm: NormParams per sequence key.
        alignment: :func:`~synthseq.data.registration.align_pair` report per non-reference key.
        view: the SagittalView of the reference grid (slices -> volume with ``view.from_slices``).
        lesion: ``(S, 1, H, W)`` float32 lesion mask {0, 1} (any lesion code > 0) when a lesion map was asked
            for, else None.
        reference: ``(S, 1, H, W)`` float32 {0, 1}: the normal tissue each present lesion class is measured against
            (:func:`synthseq.codes.reference_masks`, in the slices holding that class) when a lesion map and a
            tissue label map were asked for, else None.
        tissue_weight: ``(S, 1, H, W)`` float32 >= 0: :func:`synthseq.codes.tissue_balance_weights` of the tissue
            label map (every tissue class the same total weight, mean 1 over the body, 0 outside) when asked for,
            else None.
    """

    subject: str
    A: np.ndarray | None
    B: np.ndarray | None
    mask: np.ndarray
    foreground: np.ndarray
    pad_A: np.ndarray
    pad_B: np.ndarray
    spacing: tuple[float, float]
    norm: dict[str, NormParams] = field(default_factory=dict)
    alignment: dict[str, dict] = field(default_factory=dict)
    view: SagittalView | None = None
    lesion: np.ndarray | None = None
    reference: np.ndarray | None = None
    tissue_weight: np.ndarray | None = None

    def keep(self, min_foreground: float) -> np.ndarray:
        """Indices of the slices whose body fraction is at least ``min_foreground``."""
        return np.flatnonzero(self.foreground >= min_foreground)


def _resize_slices(x: np.ndarray, size: tuple[int, int], is_mask: bool) -> np.ndarray:
    """``(S, C, H, W)`` -> ``(S, C, h, w)``: bilinear (antialiased when shrinking) or, for masks, bilinear > 0.5."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    shrink = size[0] < x.shape[2] or size[1] < x.shape[3]
    out = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=shrink and not is_mask)
    if is_mask:
        out = (out > 0.5).float()
    return out.numpy()


def code_map_on(path, ref: Volume) -> np.ndarray:
    """A label / lesion code map's data on ``ref``'s grid (nearest neighbour, so codes stay codes)."""
    codes = load_volume(path, allow_zero=True)
    return (codes if same_grid(codes, ref) else resample_to(codes, ref, order=0)).data


def prepare_subject(
    subject: Subject,
    input_keys: Sequence[str] = ("T2w",),
    target_key: str | None = "STIR",
    *,
    context_slices: int = 1,
    norm: str = "percentile",
    norm_percentiles: Sequence[float] = (0.5, 99.5),
    pixel_spacing_mm: float | None = None,
    register: bool = False,
    norm_mask: str = "auto",
    with_inputs: bool = True,
    lesion_key: str | None = None,
    label_key: str | None = None,
    tissue_weights: bool = False,
    slice_plane: str = "sagittal",
    preprocessor: Preprocessor | None = None,
) -> SliceStack:
    """Load, align, normalize and slice one subject (see the module docstring).

    Args:
        subject: its files.
        input_keys: input sequences, in channel order; the reference grid is :func:`~synthseq.data.layout.grid_key`'s
            (the T2w if one is read, else the first), the grid synthesis writes its output on.
        target_key: target sequence, or None for an input-only stack.
        context_slices: odd k of the 2.5D stacks (1 = 2D).
        norm: ``"percentile"`` or ``"zscore"``.
        norm_percentiles: low/high percentiles mapped to -1/+1.
        pixel_spacing_mm: resample slices in-plane to this pixel size (mm); None keeps the native spacing.
        register: rigidly register non-reference sequences onto the reference after resampling.
        norm_mask: body mask of the loss and metrics: ``"auto"`` / ``"labels"`` (labels if present, else the
            Preprocessor's intensity mask), ``"intensity"``, or ``"none"`` (all voxels, also for normalization).
        preprocessor: the normalization rule (default: from ``norm`` / ``norm_percentiles``); it is fitted on
            :meth:`Preprocessor.body_mask` of the reference volume, exactly as synthesis fits it.
        with_inputs: False builds a target-only stack (the target is then the reference; unpaired pools).
        lesion_key: sequence key of a lesion map (e.g. ``"lesions"``) to slice as :attr:`SliceStack.lesion`;
            the subject must have it (InputError otherwise: an absent map must not read as "no lesion").
        label_key: sequence key of a tissue label map (phantom codes, e.g. ``"labels"``) from which, with
            ``lesion_key``, :attr:`SliceStack.reference` is made, and with ``tissue_weights``
            :attr:`SliceStack.tissue_weight`; the subject must have it.
        tissue_weights: build :attr:`SliceStack.tissue_weight` from ``label_key``'s map.
        slice_plane: ``"sagittal"`` | ``"axial"`` | ``"coronal"`` | ``"acquisition"``
            (:class:`~synthseq.data.slicing.SliceView`; acquisition resolves on the reference grid).
    """
    if norm_mask not in NORM_MASKS:
        raise ValueError(f"norm_mask must be one of {NORM_MASKS}, got {norm_mask!r}")
    pre = preprocessor or Preprocessor(method=norm, percentiles=tuple(norm_percentiles),
                                       mask="none" if norm_mask == "none" else "intensity")
    if not with_inputs and target_key is None:
        raise ValueError("a stack needs inputs or a target")
    input_keys = list(input_keys) if with_inputs else []
    ref_key = grid_key(input_keys) if input_keys else target_key  # the grid synthesis writes on
    ref = load_volume(subject.path(ref_key))
    view = SliceView.from_affine(ref.affine, slice_plane)

    code_maps: dict[str, np.ndarray] = {}  # each code map read once (label_key may be the body's "labels")

    def code_map(key: str) -> np.ndarray:
        if key not in code_maps:
            code_maps[key] = code_map_on(subject.path(key), ref)
        return code_maps[key]

    # Normalization is fitted exactly as synthesis will fit it (the Preprocessor's mask of the reference volume);
    # tissue labels, where present, give the sharper body mask for the loss and metrics only.
    norm_body = pre.body_mask(ref.data)
    body = None
    if norm_mask in ("auto", "labels") and subject.has("labels"):
        body = body_mask_from_labels(code_map("labels"))
        if not body.any():
            body = None  # empty label map: fall back to the intensity estimate
    if body is None:
        body = norm_body

    norms: dict[str, NormParams] = {}
    alignment: dict[str, dict] = {}

    def prepared(key: str, clip: bool) -> tuple[np.ndarray, float]:
        vol: Volume = ref
        if key != ref_key:
            vol, alignment[key] = align_pair(ref, load_volume(subject.path(key)), register=register, mask=body)
        params = pre.fit(vol.data, norm_body, str(subject.path(key)))
        norms[key] = params
        pad = float(pre.apply(np.zeros(1, np.float32), params, clip=clip)[0])
        return view.to_slices(pre.apply(vol.data, params, clip=clip)), pad

    a = pad_a = None
    if input_keys:
        chans, pads = [], []
        for key in input_keys:
            sl, pad = prepared(key, clip=False)
            chans.append(stack_context(np.ascontiguousarray(sl), context_slices))  # (S, k, H, W)
            pads += [pad] * context_slices
        a, pad_a = np.concatenate(chans, axis=1), np.asarray(pads, np.float32)
    b = pad_b = None
    if target_key is not None:
        sl, pad = prepared(target_key, clip=True)
        b, pad_b = np.ascontiguousarray(sl)[:, None], np.asarray([pad], np.float32)
    mask = np.ascontiguousarray(view.to_slices(body))[:, None].astype(np.float32)
    lesion = None
    if lesion_key is not None:
        if not subject.has(lesion_key):
            raise InputError(f"{subject.id}: no {lesion_key} file for the lesion-weighted loss (train without lesion "
                             f"maps with data.lesion_key=null loss.pix2pix.lambda_lesion=0)")
        lesion_codes = code_map(lesion_key)
        lesion = np.ascontiguousarray(view.to_slices(lesion_codes > 0))[:, None].astype(np.float32)
    reference = tissue_weight = None
    if label_key is not None:
        if lesion_key is None and not tissue_weights:
            raise ValueError("label_key needs lesion_key (lesion reference tissue) or tissue_weights")
        if not subject.has(label_key):
            raise InputError(f"{subject.id}: no {label_key} file for the tissue-label losses (train without it "
                             f"with data.label_key=null loss.pix2pix.lambda_reference=0 loss.pix2pix.lambda_tissue=0)")
        lab_sl = np.ascontiguousarray(view.to_slices(code_map(label_key))).astype(np.int64)
        if lesion_key is not None:
            les_sl = np.ascontiguousarray(view.to_slices(lesion_codes))
            refs = reference_masks(lab_sl, les_sl.astype(np.int64), slice_axis=0)
            union = np.zeros(lab_sl.shape, bool)
            for m in refs.values():
                union |= m
            reference = union[:, None].astype(np.float32)
        if tissue_weights:
            tissue_weight = tissue_balance_weights(lab_sl)[:, None]
    elif tissue_weights:
        raise ValueError("tissue_weights needs label_key (a tissue label map)")

    dh, dw = view.inplane_spacing(ref.spacing)
    if pixel_spacing_mm is not None:
        h, w = mask.shape[2:]
        size = (max(1, int(round(h * dh / pixel_spacing_mm))), max(1, int(round(w * dw / pixel_spacing_mm))))
        if size != (h, w):
            a = _resize_slices(a, size, False) if a is not None else None
            b = _resize_slices(b, size, False) if b is not None else None
            mask = _resize_slices(mask, size, True)
            lesion = _resize_slices(lesion, size, True) if lesion is not None else None
            reference = _resize_slices(reference, size, True) if reference is not None else None
            tissue_weight = _resize_slices(tissue_weight, size, False) if tissue_weight is not None else None
        dh = dw = float(pixel_spacing_mm)
    return SliceStack(
        subject=subject.id, A=None if a is None else np.ascontiguousarray(a, np.float32),
        B=None if b is None else np.ascontiguousarray(b, np.float32), mask=mask,
        foreground=mask.mean(axis=(1, 2, 3)), pad_A=pad_a if pad_a is not None else np.zeros(0, np.float32),
        pad_B=pad_b if pad_b is not None else np.zeros(0, np.float32), spacing=(float(dh), float(dw)),
        norm=norms, alignment=alignment, view=view, lesion=lesion, reference=reference,
        tissue_weight=tissue_weight,
    )


# -------------------------------------------------------------------------------------------- crop / pad
def crop_window(h: int, w: int, size: int, rng: np.random.Generator | None) -> tuple[int, int]:
    """Top-left of a ``size`` x ``size`` window in an ``(h, w)`` image padded (centred) to at least ``size``.

    Returned in the coordinates of the PADDED image: random (uniform over valid positions) with ``rng``,
    centred without.
    """
    ph, pw = max(h, size), max(w, size)
    if rng is None:
        return (ph - size) // 2, (pw - size) // 2
    return int(rng.integers(0, ph - size + 1)), int(rng.integers(0, pw - size + 1))


def crop_window_around(h: int, w: int, size: int, point: tuple[int, int], rng: np.random.Generator,
                       margin: int | None = None) -> tuple[int, int]:
    """A random :func:`crop_window` (padded coordinates) whose crop holds ``point`` (row, col of the unpadded image)
    at least ``margin`` pixels (default ``size // 8``) from its edges, where the image allows; uniform otherwise."""
    margin = size // 8 if margin is None else int(margin)
    out = []
    for n, c in ((h, point[0]), (w, point[1])):
        pn = max(n, size)
        c = c + (pn - n) // 2  # into padded coordinates
        lo, hi = 0, pn - size
        a, b = max(lo, c + margin - size + 1), min(hi, c - margin)
        if a > b:
            a, b = lo, hi
        out.append(int(rng.integers(a, b + 1)))
    return out[0], out[1]


def lesion_centres(stacks: list[SliceStack], index: list[tuple[int, int]]) -> list[tuple[int, int] | None]:
    """Per indexed slice, the (row, col) centre of its lesion pixels' bounding box, or None without a lesion."""
    out: list[tuple[int, int] | None] = []
    for si, sj in index:
        les = stacks[si].lesion
        if les is None or not les[sj, 0].any():
            out.append(None)
            continue
        rows, cols = np.flatnonzero(les[sj, 0].any(1)), np.flatnonzero(les[sj, 0].any(0))
        out.append((int(rows[0] + rows[-1]) // 2, int(cols[0] + cols[-1]) // 2))
    return out


class WeightedEpochSampler(torch.utils.data.Sampler):
    """Per epoch, ``len(weights)`` indices drawn with replacement in proportion to ``weights``, then this rank's
    shard (every ``world_size``-th); an exact function of ``(seed, epoch)`` like ``DistributedSampler``."""

    def __init__(self, weights: np.ndarray, rank: int = 0, world_size: int = 1, seed: int = 0) -> None:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or not len(w) or (w < 0).any() or w.sum() <= 0:
            raise ValueError("weights must be a non-empty 1D array of non-negative numbers, not all 0")
        self.p, self.rank, self.world_size, self.seed, self.epoch = w / w.sum(), rank, world_size, seed, 0
        self.total = len(w) - len(w) % world_size  # drop_last, as the DistributedSampler it replaces

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.total // self.world_size

    def __iter__(self):
        rng = np.random.default_rng([int(self.seed) & 0xFFFFFFFF, self.epoch, 0x1E5])
        idx = rng.choice(len(self.p), size=self.total, replace=True, p=self.p)
        return iter(int(i) for i in idx[self.rank::self.world_size])


def crop_pad(x: np.ndarray, size: int, top: int, left: int, pad_values: np.ndarray | float) -> np.ndarray:
    """``(C, H, W)`` -> ``(C, size, size)``: pad centred to at least ``size`` with ``pad_values`` (per channel),
    then cut the window at ``(top, left)`` (see :func:`crop_window`)."""
    c, h, w = x.shape
    ph, pw = max(h, size), max(w, size)
    if (ph, pw) != (h, w):
        out = np.empty((c, ph, pw), dtype=np.float32)
        out[:] = np.broadcast_to(np.asarray(pad_values, np.float32).reshape(-1, 1, 1), (c, 1, 1))
        oh, ow = (ph - h) // 2, (pw - w) // 2
        out[:, oh: oh + h, ow: ow + w] = x
        x = out
    return np.ascontiguousarray(x[:, top: top + size, left: left + size], dtype=np.float32)


# ------------------------------------------------------------------------------------------------ datasets
class _SliceDatasetBase(torch.utils.data.Dataset):
    """Shared construction: prepare every subject once, index the sampleable slices."""

    def __init__(self, image_size: int, min_foreground: float, augment: bool, seed: int,
                 augment_settings: AugmentSettings | None) -> None:
        if image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.image_size, self.min_foreground, self.augment, self.seed = int(image_size), min_foreground, augment, seed
        self.augment_settings = augment_settings or AugmentSettings()
        self.epoch = 0

    @staticmethod
    def _index(stacks: list[SliceStack], min_foreground: float) -> list[tuple[int, int]]:
        return [(i, int(j)) for i, st in enumerate(stacks) for j in st.keep(min_foreground)]

    @staticmethod
    def _check(index: list, stacks: list[SliceStack], what: str, min_foreground: float) -> None:
        if not stacks:
            raise InputError(f"{what}: no subjects given")
        if not index:
            names = ", ".join(st.subject for st in stacks[:3]) + (" ..." if len(stacks) > 3 else "")
            raise InputError(f"{names}: no slice has a body fraction >= min_foreground={min_foreground} ({what})")

    def set_epoch(self, epoch: int) -> None:
        """Vary the random crops and augmentations per epoch (items stay a function of (seed, epoch, index))."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator | None:
        return np.random.default_rng([int(self.seed) & 0xFFFFFFFF, self.epoch, int(index)])

    def _crop(self, arrays: list[tuple[np.ndarray, np.ndarray | float]], rng,
              around: tuple[int, int] | None = None) -> list[torch.Tensor]:
        h, w = arrays[0][0].shape[1:]
        top, left = crop_window(h, w, self.image_size, rng if self.augment else None)
        if around is not None and self.augment:  # keep the crop on this point (a lesion), still at random
            top, left = crop_window_around(h, w, self.image_size, around, rng)
        return [torch.from_numpy(crop_pad(x, self.image_size, top, left, pad)) for x, pad in arrays]


class PairedSliceDataset(_SliceDatasetBase):
    """Paired sagittal slices: T2w (plus optional extra inputs) and STIR of the SAME subject and slice.

    Items: ``{"A": (C_in, H, W) float32 ~[-1, 1], "B": (1, H, W) float32 [-1, 1], "mask": (1, H, W) float {0, 1},
    "subject": str, "slice": int}`` with ``H = W = image_size``, ``C_in = context_slices * len(input_keys)`` and
    ``slice`` the canonical sagittal index (right -> left); with ``lesion_key`` also ``"lesion": (1, H, W)``
    float {0, 1}, and with ``label_key`` too ``"reference": (1, H, W)`` float {0, 1} (each lesion's normal
    reference tissue, :attr:`SliceStack.reference`); with ``label_key`` and ``tissue_weights``
    ``"tissue_weight": (1, H, W)`` float >= 0 (:attr:`SliceStack.tissue_weight`, interpolated like an image under
    augmentation); all moved with A, B and mask. See the module docstring for the preparation.

    Raises:
        InputError: no subjects, or no slice with enough body (naming the subjects); file problems name the file.
    """

    paired = True

    def __init__(
        self,
        subjects: Sequence[Subject],
        input_keys: Sequence[str] = ("T2w",),
        target_key: str = "STIR",
        image_size: int = 256,
        pixel_spacing_mm: float | None = None,
        context_slices: int = 1,
        norm: str = "percentile",
        norm_percentiles: Sequence[float] = (0.5, 99.5),
        min_foreground: float = 0.05,
        augment: bool = False,
        seed: int = 0,
        *,
        register: bool = False,
        norm_mask: str = "auto",
        augment_settings: AugmentSettings | None = None,
        lesion_key: str | None = None,
        label_key: str | None = None,
        tissue_weights: bool = False,
        slice_plane: str = "sagittal",
        lesion_slice_weight: float = 1.0,
    ) -> None:
        super().__init__(image_size, min_foreground, augment, seed, augment_settings)
        self.input_keys, self.target_key, self.context_slices = list(input_keys), target_key, context_slices
        kw = dict(context_slices=context_slices, norm=norm, norm_percentiles=norm_percentiles,
                  pixel_spacing_mm=pixel_spacing_mm, register=register, norm_mask=norm_mask, lesion_key=lesion_key,
                  label_key=label_key, tissue_weights=tissue_weights, slice_plane=slice_plane)
        self.stacks = [prepare_subject(s, self.input_keys, target_key, **kw) for s in subjects]
        self.index = self._index(self.stacks, min_foreground)
        self._check(self.index, self.stacks, "paired dataset", min_foreground)
        if lesion_slice_weight != 1.0 and lesion_key is None:
            raise ValueError("lesion_slice_weight != 1 needs lesion maps (lesion_key)")
        if not lesion_slice_weight > 0:
            raise ValueError(f"lesion_slice_weight must be > 0, got {lesion_slice_weight}")
        self.lesion_slice_weight = float(lesion_slice_weight)
        self._centres = lesion_centres(self.stacks, self.index) if lesion_key is not None else None

    @property
    def sample_weights(self) -> np.ndarray | None:
        """Relative draw probability of each indexed slice (lesion slices ``lesion_slice_weight``, others 1), or
        None when sampling is uniform. With a weight > 1 the random crop of a lesion slice also keeps its lesion."""
        if self.lesion_slice_weight == 1.0 or self._centres is None:
            return None
        return np.array([self.lesion_slice_weight if c is not None else 1.0 for c in self._centres])

    # the GPU bank reads pools A and B through these (paired: the same stacks and slices)
    @property
    def stacks_a(self) -> list[SliceStack]:
        return self.stacks

    @property
    def index_a(self) -> list[tuple[int, int]]:
        return self.index

    stacks_b, index_b = stacks_a, index_a

    @property
    def in_channels(self) -> int:
        return self.context_slices * len(self.input_keys)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        si, sj = self.index[i]
        st = self.stacks[si]
        rng = self._rng(i)
        arrays = [(st.A[sj], st.pad_A), (st.B[sj], st.pad_B), (st.mask[sj], 0.0)]
        keys = ["A", "B", "mask"]
        if st.lesion is not None:
            arrays.append((st.lesion[sj], 0.0))
            keys.append("lesion")
        if st.reference is not None:
            arrays.append((st.reference[sj], 0.0))
            keys.append("reference")
        if st.tissue_weight is not None:
            arrays.append((st.tissue_weight[sj], 0.0))
            keys.append("tissue_weight")
        around = self._centres[i] if self._centres is not None and self.lesion_slice_weight > 1 else None
        item = dict(zip(keys, self._crop(arrays, rng, around)), subject=st.subject, slice=sj)
        if self.augment:
            item = augment_item(self.augment_settings, item, int(rng.integers(2**32)), tuple(keys), ("A",))
        return item


class UnpairedSliceDataset(_SliceDatasetBase):
    """Unpaired slices: A from the input pool (``subjects_a``), B from an independent target pool (``subjects_b``).

    The index runs over the A pool's slices; item ``i``'s B slice is drawn uniformly from the B pool with a
    generator seeded by ``(seed, epoch, i)``. Items have the keys of :class:`PairedSliceDataset` (``"mask"`` is
    A's body mask) plus ``"subject_b"`` and ``"slice_b"``. Augmentation draws are independent for A (with its
    mask) and for B; intensity augmentation touches A only.
    """

    paired = False

    def __init__(
        self,
        subjects_a: Sequence[Subject],
        subjects_b: Sequence[Subject],
        input_keys: Sequence[str] = ("T2w",),
        target_key: str = "STIR",
        image_size: int = 256,
        pixel_spacing_mm: float | None = None,
        context_slices: int = 1,
        norm: str = "percentile",
        norm_percentiles: Sequence[float] = (0.5, 99.5),
        min_foreground: float = 0.05,
        augment: bool = False,
        seed: int = 0,
        *,
        norm_mask: str = "auto",
        augment_settings: AugmentSettings | None = None,
        slice_plane: str = "sagittal",
    ) -> None:
        super().__init__(image_size, min_foreground, augment, seed, augment_settings)
        self.input_keys, self.target_key, self.context_slices = list(input_keys), target_key, context_slices
        kw = dict(context_slices=context_slices, norm=norm, norm_percentiles=norm_percentiles,
                  pixel_spacing_mm=pixel_spacing_mm, norm_mask=norm_mask, slice_plane=slice_plane)
        self.stacks_a = [prepare_subject(s, self.input_keys, None, **kw) for s in subjects_a]
        self.stacks_b = [prepare_subject(s, self.input_keys, target_key, with_inputs=False, **kw)
                         for s in subjects_b]
        self.index_a = self._index(self.stacks_a, min_foreground)
        self.index_b = self._index(self.stacks_b, min_foreground)
        self._check(self.index_a, self.stacks_a, "unpaired dataset, input pool", min_foreground)
        self._check(self.index_b, self.stacks_b, "unpaired dataset, target pool", min_foreground)

    @property
    def in_channels(self) -> int:
        return self.context_slices * len(self.input_keys)

    def __len__(self) -> int:
        return len(self.index_a)

    def __getitem__(self, i: int) -> dict:
        rng = self._rng(i)
        si, sj = self.index_a[i]
        ti, tj = self.index_b[int(rng.integers(len(self.index_b)))]
        sa, sb = self.stacks_a[si], self.stacks_b[ti]
        a, m = self._crop([(sa.A[sj], sa.pad_A), (sa.mask[sj], 0.0)], rng)
        (b,) = self._crop([(sb.B[tj], sb.pad_B)], rng)
        item = {"A": a, "B": b, "mask": m, "subject": sa.subject, "slice": sj, "subject_b": sb.subject,
                "slice_b": tj}
        if self.augment:
            item = augment_item(self.augment_settings, item, int(rng.integers(2**32)), ("A", "mask"), ("A",))
            item = augment_item(self.augment_settings, item, int(rng.integers(2**32)), ("B",), ())
        return item


__all__ = ["PairedSliceDataset", "SliceStack", "UnpairedSliceDataset", "WeightedEpochSampler",
           "body_mask_from_intensity", "code_map_on", "crop_pad", "crop_window", "crop_window_around", "lesion_centres",
           "prepare_subject"]
