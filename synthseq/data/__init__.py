"""Data: normalization, slicing, dataset layouts, datasets, GPU-resident batches, registration.

The light modules are imported eagerly; the dataset / GPU-bank / augmentation names load their modules on first
access (PEP 562), so ``import synthseq.data.normalize`` stays cheap for inference and metrics code.
"""

from importlib import import_module

from .layout import Subject, load_subjects, read_manifest_csv, scan_phantom_layout, split_subjects
from .normalize import NormParams, denormalize, normalize
from .registration import align_pair, ncc, resample_to, rigid_register, same_grid
from .slicing import SagittalView, SliceView, stack_context, unstack_context

_LAZY = {
    "PairedSliceDataset": "datasets", "UnpairedSliceDataset": "datasets", "SliceStack": "datasets",
    "body_mask_from_intensity": "preprocess", "Preprocessor": "preprocess", "prepare_subject": "datasets",
    "GPUSliceBank": "gpu", "AugmentSettings": "transforms",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AugmentSettings", "GPUSliceBank", "NormParams", "PairedSliceDataset", "SagittalView", "SliceStack", "SliceView",
    "Subject",
    "UnpairedSliceDataset", "align_pair", "body_mask_from_intensity",
    "denormalize", "load_subjects", "ncc", "normalize", "prepare_subject", "read_manifest_csv", "resample_to",
    "rigid_register", "same_grid", "scan_phantom_layout", "split_subjects", "stack_context", "unstack_context",
]
