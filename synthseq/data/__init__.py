"""Data: normalization, slicing, subject manifests, datasets, GPU-resident batches, registration."""

from .normalize import NormParams, denormalize, normalize
from .slicing import SagittalView, stack_context, unstack_context

__all__ = ["NormParams", "SagittalView", "denormalize", "normalize", "stack_context", "unstack_context"]
