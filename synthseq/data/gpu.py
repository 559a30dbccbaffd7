"""GPU-resident slice bank: every prepared slice lives on the training device; batches are cut and augmented there.

:class:`GPUSliceBank` holds all sampleable slices of a dataset (uncropped, each centred on a common canvas padded
with its own normalized background value) as three tensors on the device: A ``(N, C_in, Hc, Wc)``, mask
``(N, 1, Hc, Wc)`` and B ``(N_b, 1, Hc, Wc)``. :meth:`GPUSliceBank.sample` makes one batch with a handful of
batched tensor ops (no Python loop over the batch, no host synchronisation):

1. slice indices (paired: B is the same slice as A; unpaired: independent indices for B); uniform, or with
   :meth:`GPUSliceBank.use_lesion_sampling` lesion slices drawn ``weight`` times as often;
2. a crop window per item: random, kept so the crop covers as much of the slice as possible (a slice smaller
   than the crop lies wholly inside it), or centred when ``augment`` is False (an exact integer crop);
3. with ``augment``: one affine per item (flip along W, rotation, isotropic zoom, shift) applied with kornia's
   ``warp_affine`` to A, B and mask together (ONE call on the concatenated channels, so a pair stays aligned;
   unpaired B gets its own draw); the masks are re-binarized (> 0.5; a tissue weight map stays as interpolated).
   Then intensity transforms on A only (multiplicative quadratic bias field, gamma, Gaussian noise). Parameters,
   distributions and operations are those of :mod:`synthseq.data.transforms`, shared with the map-style datasets.

Why draw the parameters ourselves and call kornia's functional warp rather than ``kornia.augmentation`` modules:
those modules draw from the global RNG, so a batch could not be replayed from a given ``torch.Generator``. Here
every random number comes from the generator passed in (on the bank's device), so a batch is an exact function of
the generator state (bit-exact on CPU; on CUDA up to the usual nondeterminism of the interpolation kernels).
The training loop seeds a fresh generator per (seed, rank, step, micro-batch) for exact resume; the bank's own
:attr:`GPUSliceBank.generator` (with :meth:`state_dict` / :meth:`load_state_dict`) serves callers that keep one.

Data parallel: ``rank`` / ``world_size`` restrict a bank to its shard of the slices (every ``world_size``-th
slice starting at ``rank``, on a fixed order), which also divides device memory; the default generator is seeded
from ``(seed, rank)`` so ranks draw different streams even without sharding.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from .datasets import PairedSliceDataset, SliceStack, UnpairedSliceDataset
from .layout import Subject
from .transforms import (
    AugmentSettings,
    Geometry,
    apply_intensity,
    bias_basis,
    pixel_affine,
    sample_geometry,
    sample_intensity,
    warp,
)


def rank_seed(seed: int, rank: int = 0) -> int:
    """A 63-bit generator seed for ``(seed, rank)`` (different ranks get unrelated streams)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(rank)]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFFFFFFFFFFFFFF


def _canvas(stacks: list[SliceStack], index: list[tuple[int, int]], attr: str, pad_attr: str | None,
            hc: int, wc: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Selected slices of ``stack.<attr>`` centred on an ``(N, C, hc, wc)`` canvas, and their boxes ``(N, 4)``
    ``(top, left, h, w)``; the canvas is filled with each channel's padding value."""
    first = getattr(stacks[index[0][0]], attr)
    c = first.shape[1]
    out = torch.empty((len(index), c, hc, wc), dtype=dtype)
    boxes = torch.empty((len(index), 4), dtype=torch.long)
    rows = np.arange(len(index))
    by_stack: dict[int, list[int]] = {}
    for n, (si, _) in enumerate(index):
        by_stack.setdefault(si, []).append(n)
    for si, ns in by_stack.items():
        st = stacks[si]
        arr = getattr(st, attr)
        h, w = arr.shape[2:]
        top, left = (hc - h) // 2, (wc - w) // 2
        sel = torch.as_tensor(rows[ns])
        pad = np.zeros(c, np.float32) if pad_attr is None else getattr(st, pad_attr)
        out[sel] = torch.as_tensor(pad, dtype=dtype).view(1, c, 1, 1).expand(len(ns), c, hc, wc)
        out[sel, :, top: top + h, left: left + w] = torch.as_tensor(arr[[index[n][1] for n in ns]], dtype=dtype)
        boxes[sel] = torch.tensor([top, left, h, w])
    return out, boxes


def _crop_ranges(boxes: Tensor, size: int, hc: int, wc: int) -> tuple[Tensor, Tensor]:
    """Per slice, the lowest and highest crop origin ``(N, 2)`` (rows, cols) keeping the crop on the content."""
    lo, hi = [], []
    for k, extent in ((0, hc), (1, wc)):
        start, length = boxes[:, k], boxes[:, k + 2]
        a = torch.where(length >= size, start, start + length - size)  # small slice: crop contains it
        b = torch.where(length >= size, start + length - size, start)
        lo.append(a.clamp(0, extent - size))
        hi.append(b.clamp(0, extent - size))
    lo_t, hi_t = torch.stack(lo, 1), torch.stack(hi, 1)
    return torch.minimum(lo_t, hi_t), torch.maximum(lo_t, hi_t)


class GPUSliceBank:
    """All sampleable slices of a dataset on one device; batches via :meth:`batches` / :meth:`sample`.

    Build with :meth:`from_dataset` or :meth:`from_subjects`. Batches are dicts ``{"A": (B, C_in, S, S),
    "B": (B, 1, S, S), "mask": (B, 1, S, S)}`` float32 on the bank's device with ``S = image_size``, A and B in
    model space (~[-1, 1]), mask in {0, 1}. A paired bank built from stacks with lesion maps also gives
    ``"lesion": (B, 1, S, S)`` in {0, 1} (stored as a second ``mask`` channel, so it moves with the pair), and
    from stacks with lesion reference maps too ``"reference": (B, 1, S, S)`` (a third channel), and from stacks
    with tissue weight maps ``"tissue_weight": (B, 1, S, S)`` (float >= 0, the last channel, interpolated, never
    binarized). :attr:`mask_names` names the channels of the stored mask tensor in order.
    """

    def __init__(
        self,
        a: Tensor,
        mask: Tensor,
        b: Tensor,
        boxes_a: Tensor,
        boxes_b: Tensor,
        image_size: int,
        paired: bool,
        *,
        augment_settings: AugmentSettings | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str | None = None,
        mask_names: Sequence[str] | None = None,
    ) -> None:
        device = torch.device(device) if device is not None else a.device
        c = a.shape[1]
        names = tuple(mask_names) if mask_names is not None else ("mask", "lesion", "reference")[: mask.shape[1]]
        if len(names) != mask.shape[1] or names[0] != "mask":
            raise ValueError(f"mask_names {names} do not name the {mask.shape[1]} mask channel(s), 'mask' first")
        self.mask_names = names
        # one tensor per pool, so a batch is ONE gather + ONE warp; A / B / mask are views into it
        # (concatenated where the inputs are, e.g. on the host, then moved: one device copy, no 2x peak)
        if paired:
            self._src_a = torch.cat([a, b, mask], 1).to(device)
            self.A, self.B, self.mask = self._src_a[:, :c], self._src_a[:, c: c + 1], self._src_a[:, c + 1:]
        else:
            self._src_a = torch.cat([a, mask], 1).to(device)
            self.A, self.mask, self.B = self._src_a[:, :c], self._src_a[:, c:], b.to(device)
        del a, mask, b
        self.device = self.A.device
        self.paired = paired
        self.image_size = int(image_size)
        self.settings = augment_settings or AugmentSettings()
        self.rank, self.world_size, self.seed = rank, world_size, seed
        hc, wc = self.A.shape[2:]
        if min(hc, wc) < self.image_size:
            raise ValueError(f"canvas {hc}x{wc} is smaller than image_size={image_size}")
        self._lo_a, self._hi_a = (t.to(self.device) for t in _crop_ranges(boxes_a, self.image_size, hc, wc))
        self._lo_b, self._hi_b = (t.to(self.device) for t in _crop_ranges(boxes_b, self.image_size, hc, wc))
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(rank_seed(seed, rank))
        s = self.settings
        # window margin so that the largest rotation / zoom-out / shift stays inside the gathered window
        theta = np.deg2rad(s.rotate_deg)
        half = (self.image_size - 1) / 2
        reach = half * (abs(np.cos(theta)) + abs(np.sin(theta))) / max(1.0 - s.scale, 0.5) + s.translate_px
        self._margin = int(np.ceil(reach - half)) + 2
        self._bias_basis = bias_basis((self.image_size, self.image_size), self.device)  # (5, S, S)

    # ------------------------------------------------------------------------------------------ building
    @classmethod
    def from_dataset(
        cls,
        ds: PairedSliceDataset | UnpairedSliceDataset,
        device: torch.device | str = "cpu",
        *,
        image_size: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        seed: int | None = None,
        dtype: torch.dtype = torch.float32,
        augment_settings: AugmentSettings | None = None,
        lesion_slice_weight: float | None = None,
    ) -> GPUSliceBank:
        """Move the sampleable slices of ``ds`` (its ``min_foreground`` selection) onto ``device``.

        Args:
            ds: a paired or unpaired slice dataset (its prepared stacks are reused, nothing is reloaded).
            device: where the bank lives.
            image_size: crop size (default: the dataset's).
            rank, world_size: keep only this rank's shard (slices ``rank::world_size``).
            seed: seed of the default generator (default: the dataset's seed).
            dtype: storage dtype on the device (batches are float32).
            augment_settings: default: the dataset's.
            lesion_slice_weight: default: the dataset's (``lesion_slice_weight``, 1 = uniform); see
                :meth:`use_lesion_sampling`.
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        size = int(image_size or ds.image_size)
        index_a = list(ds.index_a)[rank::world_size]
        index_b = index_a if ds.paired else list(ds.index_b)[rank::world_size]
        if not index_a or not index_b:
            raise InputError(f"rank {rank} of {world_size}: no slices left in its shard "
                             f"({len(ds.index_a)} slices in the dataset)")
        sizes = [ds.stacks_a[i].mask.shape[2:] for i, _ in index_a]
        sizes += [ds.stacks_b[i].B.shape[2:] for i, _ in index_b]
        hc = max(size, max(h for h, _ in sizes))
        wc = max(size, max(w for _, w in sizes))
        a, boxes_a = _canvas(ds.stacks_a, index_a, "A", "pad_A", hc, wc, dtype)
        first = ds.stacks_a[index_a[0][0]]
        names = ["mask"] + [k for k in ("lesion", "reference", "tissue_weight")
                            if ds.paired and getattr(first, k) is not None]
        mask = torch.cat([_canvas(ds.stacks_a, index_a, k, None, hc, wc, dtype)[0] for k in names], 1)
        b, boxes_b = _canvas(ds.stacks_b, index_b, "B", "pad_B", hc, wc, dtype)
        bank = cls(a, mask, b, boxes_a, boxes_b, size, ds.paired,
                   augment_settings=augment_settings or ds.augment_settings,
                   seed=ds.seed if seed is None else seed, rank=rank, world_size=world_size, device=device,
                   mask_names=names)
        weight = getattr(ds, "lesion_slice_weight", 1.0) if lesion_slice_weight is None else lesion_slice_weight
        if weight != 1.0:
            bank.use_lesion_sampling(weight)
        return bank

    def use_lesion_sampling(self, weight: float) -> None:
        """Draw slices holding a lesion (paired banks with lesion maps) ``weight`` times as often as the others;
        with ``weight > 1`` the random crop of such a slice also keeps the centre of its lesion's bounding box at
        least ``image_size // 8`` pixels inside (where the slice allows), so the lesion is in the crop."""
        if not weight > 0:
            raise ValueError(f"lesion slice weight must be > 0, got {weight}")
        if "lesion" not in self.mask_names:
            raise ValueError("lesion sampling needs a paired bank with lesion maps (data.lesion_key)")
        les = self.mask[:, self.mask_names.index("lesion")] > 0.5  # (N, Hc, Wc)
        has = les.flatten(1).any(1)
        self._weights = torch.where(has, float(weight), 1.0).to(self.device, torch.float32)
        if weight <= 1.0:
            return
        size, m = self.image_size, self.image_size // 8
        span = []
        for axis in (2, 1):  # rows: any over columns; cols: any over rows
            on = les.any(axis)  # (N, L)
            pos = torch.arange(on.shape[1], device=self.device)
            first = torch.where(on, pos, on.shape[1]).amin(1)
            last = torch.where(on, pos, -1).amax(1)
            span.append((first + last) // 2)
        centre = torch.stack(span, 1)  # (N, 2) canvas (row, col)
        lo, hi = centre + m - size + 1, centre - m
        lo, hi = torch.maximum(lo, self._lo_a), torch.minimum(hi, self._hi_a)
        ok = (has[:, None] & (lo <= hi)).all(1, keepdim=True)
        self._lo_a, self._hi_a = torch.where(ok, lo, self._lo_a), torch.where(ok, hi, self._hi_a)

    @classmethod
    def from_subjects(
        cls,
        subjects: Sequence[Subject],
        device: torch.device | str = "cpu",
        *,
        subjects_b: Sequence[Subject] | None = None,
        rank: int = 0,
        world_size: int = 1,
        **dataset_kwargs,
    ) -> GPUSliceBank:
        """Prepare ``subjects`` as a :class:`PairedSliceDataset` (or, with ``subjects_b``, an unpaired one with
        ``subjects`` as the input pool) and bank its slices; ``dataset_kwargs`` go to the dataset."""
        if subjects_b is None:
            ds = PairedSliceDataset(subjects, **dataset_kwargs)
        else:
            ds = UnpairedSliceDataset(subjects, subjects_b, **dataset_kwargs)
        return cls.from_dataset(ds, device, rank=rank, world_size=world_size)

    # -------------------------------------------------------------------------------------------- state
    def __len__(self) -> int:
        return int(self.A.shape[0])

    @property
    def in_channels(self) -> int:
        return int(self.A.shape[1])

    def state_dict(self) -> dict:
        """The default generator's state (plus the seed / rank it was made for)."""
        return {"generator": self.generator.get_state(), "seed": self.seed, "rank": self.rank}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    # ------------------------------------------------------------------------------------------ batches
    def batches(self, batch_size: int, augment: bool = True,
                generator: torch.Generator | None = None) -> Iterator[dict[str, Tensor]]:
        """Infinite iterator of batches drawn with ``generator`` (default: the bank's own :attr:`generator`)."""
        while True:
            yield self.sample(batch_size, augment=augment, generator=generator)

    def sample(self, batch_size: int, augment: bool = True,
               generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One batch (see the class docstring); every random number comes from ``generator``."""
        g = self.generator if generator is None else generator
        if g.device.type != self.device.type:
            raise ValueError(f"generator is on {g.device} but the bank is on {self.device}: "
                             f"use torch.Generator(device={str(self.device)!r})")
        dev, n = self.device, batch_size
        # augmentation parameters first, from the same sampler as the map-style datasets: an item drawn from a
        # generator seeded with s gets exactly the parameters augment_item(..., seed=s) gives it
        geo_a = sample_geometry(self.settings, n, g) if augment else None
        geo_b = sample_geometry(self.settings, n, g) if augment and not self.paired else geo_a
        inten = sample_intensity(self.settings, n, g) if augment else None
        w = getattr(self, "_weights", None)
        ia = (torch.randint(len(self), (n,), generator=g, device=dev) if w is None
              else torch.multinomial(w, n, replacement=True, generator=g))
        ib = ia if self.paired else torch.randint(int(self.B.shape[0]), (n,), generator=g, device=dev)
        off_a = self._origins(ia, self._lo_a, self._hi_a, augment, g)
        off_b = off_a if self.paired else self._origins(ib, self._lo_b, self._hi_b, augment, g)
        c = self.in_channels
        out = self._cut(self._src_a, ia, off_a, geo_a)
        if self.paired:
            a, b, m = out[:, :c], out[:, c: c + 1], out[:, c + 1:]
        else:
            a, m = out[:, :c], out[:, c:]
            b = self._cut(self.B, ib, off_b, geo_b)
        out = {"A": a, "B": b}
        for i, name in enumerate(self.mask_names):
            ch = m[:, i: i + 1]
            out[name] = (ch > 0.5).to(ch.dtype) if augment and name != "tissue_weight" else ch
        if augment:
            out["A"] = apply_intensity(a, inten, self._bias_basis, g)
        return {k: v.float().contiguous() for k, v in out.items()}

    def _origins(self, idx: Tensor, lo: Tensor, hi: Tensor, augment: bool, g: torch.Generator) -> Tensor:
        """Crop origins ``(B, 2)`` (row, col): uniform in ``[lo, hi]`` or its midpoint."""
        lo, hi = lo[idx], hi[idx]
        if not augment:
            return (lo + hi) // 2
        u = torch.rand(lo.shape, generator=g, device=self.device)
        return torch.minimum(lo + (u * (hi - lo + 1).float()).long(), hi)

    def _cut(self, src: Tensor, idx: Tensor, origin: Tensor, geo: Geometry | None) -> Tensor:
        """Gather a window per item (indices clamped: border replication) and warp it to ``S x S`` by ``geo``
        (None: no augmentation, an exact crop)."""
        size, dev = self.image_size, self.device
        augment = geo is not None
        margin = self._margin if augment else 0
        span = torch.arange(size + 2 * margin, device=dev)
        rows = (origin[:, :1] - margin + span).clamp(0, src.shape[2] - 1)  # (B, L)
        cols = (origin[:, 1:] - margin + span).clamp(0, src.shape[3] - 1)
        chans = torch.arange(src.shape[1], device=dev)
        win = src[idx[:, None, None, None], chans[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]
        if not augment:
            return win
        mats = pixel_affine(geo, (size, size), margin)
        return warp(win, mats, (size, size))


__all__ = ["GPUSliceBank", "rank_seed"]
