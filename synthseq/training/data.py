"""The data a run trains and validates on, built from ``cfg.data``.

* Subjects come from ``cfg.data.root`` (phantom layout, BIDS or CSV: :mod:`synthseq.data.layout`) and are split
  BY SUBJECT into train / val / test (a splits file, the manifest's ``split`` column, k-fold or seeded fractions;
  ``splits.json`` in the run folder and in the checkpoint; a resumed run reuses the stored split). Subjects that
  lack the target are left out of paired training and validation with one line naming them; the other pairs go
  through the checks of ``synthseq dataset check`` first, and unusable ones stop the run with their reasons.
* Training batches come either from a :class:`~synthseq.data.gpu.GPUSliceBank` (all slices resident on the
  training device, augmented there; the default on CUDA and on CPU alike, where it also beats a DataLoader with
  per-sample MONAI transforms on a few cores), or, with ``data.gpu_resident=false``, from a map-style slice dataset
  through a ``DataLoader`` with a ``DistributedSampler``.
* Every random draw of the training stream is a function of ``(seed, rank, step, micro)``: the bank gets a fresh
  generator seeded from those numbers for each micro-batch, and the DataLoader path replays the sampler's epoch
  order from the step. So a resumed run sees exactly the batches the uninterrupted run would have seen, whatever
  state the iterator had, and each rank draws a different stream (its shard).
* Validation uses whole slices of the VAL subjects (no augmentation), in fixed batches on the CPU.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from ..config import Config
from ..data.layout import Subject
from ..errors import ConfigError, InputError
from ..utils import atomic_write_text
from . import distributed as ddp

_MIX = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


def stream_seed(seed: int, rank: int, step: int, micro: int) -> int:
    """A 63-bit seed that differs for every ``(seed, rank, step, micro)`` (splitmix-style hashing)."""
    x = 0
    for i, v in enumerate((seed, rank, step, micro)):
        x = (x ^ (int(v) + _MIX[i % 3])) * _MIX[(i + 1) % 3] & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


class BatchSource(Protocol):
    def batch(self, step: int, micro: int) -> dict[str, Tensor]:
        """The training batch of optimizer step ``step`` (0-based), micro-batch ``micro``."""


class BankSource:
    """Batches from a :class:`~synthseq.data.gpu.GPUSliceBank`, drawn with a generator (on the bank's device)
    seeded afresh for every micro-batch."""

    def __init__(self, bank: Any, batch_size: int, augment: bool, seed: int, rank: int) -> None:
        self.bank, self.batch_size, self.augment, self.seed, self.rank = bank, batch_size, augment, seed, rank
        self.device = torch.device(getattr(bank, "device", "cpu"))

    def batch(self, step: int, micro: int) -> dict[str, Tensor]:
        g = torch.Generator(device=self.device)
        g.manual_seed(stream_seed(self.seed, self.rank, step, micro))
        return self.bank.sample(self.batch_size, augment=self.augment, generator=g)


class LoaderSource:
    """Batches of a map-style dataset through a ``DataLoader`` + ``DistributedSampler`` (``drop_last``),
    positioned from the step so that resuming replays the same order."""

    def __init__(self, dataset: Any, batch_size: int, grad_accum: int, seed: int, info: ddp.DistInfo,
                 num_workers: int = 0, pin_memory: bool = False) -> None:
        from torch.utils.data import DistributedSampler

        from ..data.datasets import WeightedEpochSampler

        self.dataset, self.batch_size, self.grad_accum, self.seed = dataset, batch_size, grad_accum, seed
        self.info, self.num_workers, self.pin_memory = info, num_workers, pin_memory
        weights = getattr(dataset, "sample_weights", None)  # lesion slices drawn more often (data.lesion_slice_weight)
        self.sampler = (WeightedEpochSampler(weights, info.rank, info.world_size, seed) if weights is not None else
                        DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                           seed=seed, drop_last=True))
        self.per_epoch = len(self.sampler) // batch_size
        if self.per_epoch < 1:
            raise InputError(f"training set has {len(dataset)} slices, fewer than one batch per process "
                             f"(train.batch_size={batch_size}, {info.world_size} process(es))")
        self._iter = None
        self._next = (-1, -1)

    def batch(self, step: int, micro: int) -> dict[str, Tensor]:
        from torch.utils.data import DataLoader

        epoch, i = divmod(step * self.grad_accum + micro, self.per_epoch)
        if (epoch, i) != self._next:
            self.sampler.set_epoch(epoch)
            if hasattr(self.dataset, "set_epoch"):  # crops / augmentations are a function of (seed, epoch, index)
                self.dataset.set_epoch(epoch)
            order = list(self.sampler)
            chunks = [order[j: j + self.batch_size] for j in range(i * self.batch_size,
                                                                  self.per_epoch * self.batch_size, self.batch_size)]
            # the DataLoader's own generator seeds its workers: derive it, never draw from the global RNG
            g = torch.Generator().manual_seed(stream_seed(self.seed, self.info.rank, epoch, -1))
            self._iter = iter(DataLoader(self.dataset, batch_sampler=chunks, num_workers=self.num_workers,
                                         pin_memory=self.pin_memory, generator=g,
                                         persistent_workers=False))
        self._next = (epoch, i + 1)  # after the epoch's last batch this never matches: the next call rebuilds
        return {k: v for k, v in next(self._iter).items() if k in ("A", "B", "mask", "lesion", "reference",
                                                                  "tissue_weight")}


@dataclass
class RunData:
    train: BatchSource
    val: list[dict[str, Tensor]]  #: whole-slice validation batches on the CPU (empty: no validation)
    preview: dict[str, Tensor] | None  #: a few fixed validation slices for TensorBoard image grids
    pixel_spacing_mm: tuple[float, float] | None  #: (dh, dw) of training slices; None: they differ
    splits: dict[str, list[str]]
    slice_plane: str = "sagittal"  #: the plane the training slices were cut in ("acquisition" resolved)
    #: whole training slices (input only) for the batch-norm re-estimate, on the CPU; empty: off
    calibration: list[dict[str, Tensor]] = field(default_factory=list)


def say(message: str) -> None:
    """One plain line on stderr (``synthseq: ...``): what the run decided about its data."""
    print(f"synthseq: {message}", file=sys.stderr, flush=True)


def load_run_subjects(cfg: Config) -> list[Subject]:
    """The subjects of ``cfg.data.root`` (phantom layout, BIDS or CSV; :mod:`synthseq.data.layout`)."""
    from ..data.layout import load_subjects

    return load_subjects(cfg.data.root, bids=cfg.data.bids, sessions=cfg.data.sessions)


def subject_splits(cfg: Config, run_dir: Path, resume: bool) -> tuple[dict[str, list[str]], dict[str, Subject]]:
    """Subjects by split id, and the subject records by id (a resumed run's from its ``splits.json``).

    The split is ``data.splits`` (a file), else the manifest's ``split`` column, else k-fold (``data.folds``,
    ``data.fold``), else the seeded fractions (:func:`synthseq.data.layout.split_subjects`).
    """
    from ..data.layout import split_subjects

    d = cfg.data
    subjects = load_run_subjects(cfg)
    by_id = {s.id: s for s in subjects}
    path = run_dir / "splits.json"
    if resume and path.is_file():
        splits = json.loads(path.read_text())
        missing = [s for part in splits.values() for s in part if s not in by_id]
        if missing:
            raise InputError(f"{path}: subject {missing[0]!r} of the stored split is not in {d.root}")
        return splits, by_id
    parts = split_subjects(subjects, val_fraction=d.val_fraction, test_fraction=d.test_fraction, seed=d.split_seed,
                           folds=d.folds, fold=d.fold, splits_file=d.splits)
    splits = {name: [s.id for s in parts[name]] for name in ("train", "val", "test")}
    if not splits["train"]:
        raise ConfigError(f"data.root={d.root}: no training subjects after the split "
                          f"(val_fraction={d.val_fraction}, test_fraction={d.test_fraction})")
    return splits, by_id


def usable(cfg: Config, subjects: list[Subject], part: str) -> tuple[list[Subject], list[Subject]]:
    """The subjects of split ``part`` that can take part in training, as ``(input pool, target pool)``.

    Paired runs need every input and the target; a subject lacking one is left out with ONE line on stderr
    naming it (it stays in its split, so ``synthesize`` still covers it). Unpaired runs take each pool from the
    subjects that have its sequences.
    """
    d = cfg.data
    lacking_in = [s for s in subjects if not all(s.has(k) for k in d.input_keys)]
    lacking_target = [s for s in subjects if not s.has(d.target_key)]
    if lacking_in:
        say(f"data: {len(lacking_in)} {part} subject(s) without {'/'.join(d.input_keys)} left out: "
            f"{', '.join(s.id for s in lacking_in)}")
    if d.paired:
        left = [s for s in lacking_target if s not in lacking_in]
        if left:
            say(f"data: {len(left)} {part} subject(s) without {d.target_key} left out of paired training: "
                f"{', '.join(s.id for s in left)} (still synthesized with their split)")
        both = [s for s in subjects if s not in lacking_in and s not in lacking_target]
        return both, both
    inputs = [s for s in subjects if s not in lacking_in]
    targets = [s for s in subjects if s not in lacking_target]
    if lacking_target:
        say(f"data: {len(lacking_target)} {part} subject(s) without {d.target_key} left out of the target pool: "
            f"{', '.join(s.id for s in lacking_target)}")
    return inputs, targets


def _datasets_kwargs(cfg: Config) -> dict[str, Any]:
    d = cfg.data
    return dict(input_keys=list(d.input_keys), target_key=d.target_key, image_size=d.image_size,
                pixel_spacing_mm=d.pixel_spacing_mm, context_slices=d.context_slices, norm=d.norm,
                norm_percentiles=list(d.norm_percentiles), min_foreground=d.min_foreground,
                slice_plane=d.slice_plane)


def train_dataset(cfg: Config, subjects: list[Subject], targets: list[Subject] | None = None) -> Any:
    """The training slice dataset: paired (with lesion maps if ``data.lesion_key``), or unpaired with T2w and STIR
    slices picked independently from the TRAIN subjects (``targets``: the target pool, default ``subjects``).
    ``data.unpaired_pools="shared"`` draws both pools from all of them (no pair is ever presented together, but
    each anatomy appears in both domains); ``"disjoint"`` gives the T2w pool the even-indexed subjects and the STIR
    pool the odd ones, as when T2w-only and STIR-only studies come from different patients."""
    if cfg.loss.pix2pix.lambda_lesion > 0 and not (cfg.data.lesion_key and cfg.data.paired):
        raise ConfigError("loss.pix2pix.lambda_lesion > 0 needs paired data and data.lesion_key (e.g. lesions)")
    if cfg.loss.pix2pix.lambda_lesion_gan > 0 and not (cfg.data.lesion_key and cfg.data.paired):
        raise ConfigError("loss.pix2pix.lambda_lesion_gan > 0 needs paired data and data.lesion_key (e.g. lesions)")
    if cfg.loss.pix2pix.lambda_reference > 0 and not (cfg.data.lesion_key and cfg.data.label_key and cfg.data.paired):
        raise ConfigError("loss.pix2pix.lambda_reference > 0 needs paired data, data.lesion_key (e.g. lesions) and "
                          "data.label_key (e.g. labels)")
    tissue = cfg.loss.pix2pix.lambda_tissue > 0
    if tissue and not (cfg.data.label_key and cfg.data.paired):
        raise ConfigError("loss.pix2pix.lambda_tissue > 0 needs paired data and data.label_key (e.g. labels)")
    if cfg.data.label_key and not (cfg.data.lesion_key or tissue):
        raise ConfigError(f"data.label_key={cfg.data.label_key}: the tissue labels are used by the lesion reference "
                          f"(needs data.lesion_key, e.g. lesions) or by loss.pix2pix.lambda_tissue > 0; set one")
    from ..data.datasets import PairedSliceDataset, UnpairedSliceDataset

    if not subjects:
        raise InputError(f"{cfg.data.root}: no training subject has {' and '.join(cfg.data.input_keys)}"
                         + (f" and {cfg.data.target_key}" if cfg.data.paired else ""))
    kw = dict(_datasets_kwargs(cfg), augment=cfg.data.augment, seed=cfg.train.seed)
    w = cfg.data.lesion_slice_weight
    if w != 1.0 and not (cfg.data.lesion_key and cfg.data.paired and w > 0):
        raise ConfigError(f"data.lesion_slice_weight={w}: needs paired data, data.lesion_key (e.g. lesions) and a "
                          f"weight > 0")
    if cfg.data.paired:  # registration refines a pair's alignment: it has no meaning for unpaired pools
        return PairedSliceDataset(subjects, register=cfg.data.register, lesion_key=cfg.data.lesion_key,
                                  label_key=cfg.data.label_key, tissue_weights=tissue, lesion_slice_weight=w, **kw)
    targets = subjects if targets is None else targets
    pools = cfg.data.unpaired_pools
    if pools == "shared":
        return UnpairedSliceDataset(subjects, targets, **kw)
    if pools != "disjoint":
        raise ConfigError(f"data.unpaired_pools: expected shared or disjoint, got {pools!r}")
    if len(subjects) < 2:
        raise ConfigError(f"data.unpaired_pools=disjoint needs >= 2 training subjects, got {len(subjects)}")
    ids_b = {s.id for s in subjects[1::2]}
    return UnpairedSliceDataset(subjects[0::2], [s for s in targets if s.id in ids_b] or targets, **kw)


def validation_batches(cfg: Config, subjects: list[Any], batch_size: int = 16
                       ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor] | None]:
    """Whole prepared slices of the VAL subjects (those with body fraction >= ``data.min_foreground``) in batches
    of one subject each, and a 4-slice preview (middle slices of the first val subject)."""
    from ..data.datasets import PairedSliceDataset

    if not subjects:
        return [], None
    ds = PairedSliceDataset(subjects, **_datasets_kwargs(cfg), augment=False, register=cfg.data.register)
    batches = []
    for st in ds.stacks:
        keep = st.keep(cfg.data.min_foreground)
        for i in range(0, len(keep), batch_size):
            idx = keep[i: i + batch_size]
            batches.append({"A": torch.from_numpy(st.A[idx]), "B": torch.from_numpy(st.B[idx]),
                            "mask": torch.from_numpy(st.mask[idx])})
    first = ds.stacks[0]
    keep = first.keep(cfg.data.min_foreground)
    mid = keep[max(0, len(keep) // 2 - 2): len(keep) // 2 + 2]
    preview = {"A": torch.from_numpy(first.A[mid]), "B": torch.from_numpy(first.B[mid])} if len(mid) else None
    return batches, preview


def common_spacing(dataset: Any) -> tuple[float, float] | None:
    """In-plane pixel size ``(dh, dw)`` mm shared by all training slices (None if they differ by > 1 %), so
    synthesis can resample other inputs to the resolution the model learned."""
    spacings = {tuple(st.spacing) for st in getattr(dataset, "stacks_a", [])}
    if not spacings:
        return None
    first = next(iter(spacings))
    if all(abs(a - b) <= 0.01 * b for s in spacings for a, b in zip(s, first)):
        return (float(first[0]), float(first[1]))
    return None


def check_pairs(cfg: Config, subjects: list[Subject]) -> None:
    """The checks of ``synthseq dataset check`` (:mod:`synthseq.data.qc`) on the pairs a paired run trains and
    validates on; InputError naming every unusable subject and why."""
    from ..data.qc import check_subjects, unusable_line

    d = cfg.data
    line = unusable_line(check_subjects(subjects, d.input_keys, d.target_key, register=d.register,
                                        slice_plane=d.slice_plane))
    if line:
        raise InputError(f"data.root={d.root}: {line} (see synthseq dataset check)")


def slice_plane_of(dataset: Any, cfg: Config) -> str:
    """The one plane every training stack was cut in (ConfigError naming two subjects that differ)."""
    planes = {st.subject: st.view.plane for st in getattr(dataset, "stacks_a", []) if st.view is not None}
    if len(set(planes.values())) > 1:
        (a, pa), (b, pb) = next((x, y) for x in planes.items() for y in planes.items() if x[1] != y[1])
        raise ConfigError(f"data.slice_plane={cfg.data.slice_plane}: training subjects were acquired in different "
                          f"planes ({a}: {pa}, {b}: {pb}); choose sagittal, axial or coronal")
    return next(iter(planes.values()), cfg.data.slice_plane)


def calibration_batches(cfg: Config, subjects: list[Subject], slices: int, batch_size: int = 16
                        ) -> list[dict[str, Tensor]]:
    """About ``slices`` whole prepared training slices (input channels ``"A"`` only), in batches of at most
    ``batch_size``: the same share of evenly spaced kept slices from every subject (so every training anatomy
    counts), loaded one subject at a time, so memory holds those slices and not the training set."""
    import math

    import numpy as np

    from ..data.datasets import PairedSliceDataset

    if not subjects or slices <= 0:
        return []
    share = math.ceil(slices / len(subjects))
    parts: list[Tensor] = []
    for subject in subjects:
        st = PairedSliceDataset([subject], **_datasets_kwargs(cfg), augment=False,
                                register=cfg.data.register).stacks[0]
        keep = st.keep(cfg.data.min_foreground)
        if len(keep) > share:
            keep = keep[np.round(np.linspace(0, len(keep) - 1, share)).astype(int)]
        if len(keep):
            parts.append(torch.from_numpy(np.ascontiguousarray(st.A[keep])))
    if not parts:
        return []
    a = torch.cat(parts)
    return [{"A": a[i: i + batch_size]} for i in range(0, len(a), batch_size)]


def build_run_data(cfg: Config, device: torch.device, info: ddp.DistInfo, run_dir: Path, resume: bool) -> RunData:
    """Subjects -> split -> training batch source + validation batches (see the module docstring)."""
    splits, by_id = subject_splits(cfg, run_dir, resume)
    inputs, targets = usable(cfg, [by_id[s] for s in splits["train"]], "train")
    if cfg.data.paired:
        check_pairs(cfg, inputs + [s for s in (by_id[i] for i in splits["val"]) if s.has(cfg.data.target_key)])
    dataset = train_dataset(cfg, inputs, targets)
    plane = slice_plane_of(dataset, cfg)
    spacing = common_spacing(dataset)
    t = cfg.train
    resident = cfg.data.gpu_resident
    if resident is None or resident:
        from ..data.gpu import GPUSliceBank

        # each rank keeps its shard of the slices (every world_size-th), which also divides device memory
        bank = GPUSliceBank.from_dataset(dataset, device, rank=info.rank, world_size=info.world_size,
                                         seed=t.seed)
        del dataset
        source: BatchSource = BankSource(bank, t.batch_size, cfg.data.augment, t.seed, info.rank)
    else:
        source = LoaderSource(dataset, t.batch_size, t.grad_accum, t.seed, info, cfg.data.num_workers,
                              pin_memory=device.type == "cuda")
    val, preview = ([], None)
    if info.is_main:  # only rank 0 validates
        val_subjects = [s for s in (by_id[i] for i in splits["val"])
                        if s.has(cfg.data.target_key) and all(s.has(k) for k in cfg.data.input_keys)]
        val, preview = validation_batches(cfg, val_subjects)
        # written once every subject has loaded, so bad data or config leaves no run folder behind
        atomic_write_text(run_dir / "splits.json", json.dumps(splits, indent=2) + "\n")
    calibration: list[dict[str, Tensor]] = []
    if info.is_main and t.bn_recalibration_slices:
        paired = [s for s in inputs if s.has(cfg.data.target_key)]
        calibration = calibration_batches(cfg, paired, t.bn_recalibration_slices)
        say(f"batch-norm statistics re-estimated on {sum(len(b['A']) for b in calibration)} whole training "
            f"slices before each validation and checkpoint")
    return RunData(source, val, preview, spacing, splits, plane, calibration)
