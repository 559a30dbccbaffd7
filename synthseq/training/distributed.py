"""Distributed data parallel (DDP) plumbing: process-group setup from ``torchrun``'s environment, wrapping a
GAN's networks in place, ``no_sync`` over several wrappers, and small collectives.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; when ``RANK`` is present the process joins a
process group (NCCL on CUDA, gloo on CPU) and uses ``cuda:LOCAL_RANK``. Without it, training runs in one process.

Choices, and why:

* no buffer broadcast at each forward (``broadcast_buffers=False`` / ``forward_sync_buffers=False``): discriminators are called twice per step (real and fake) and CycleGAN generators
  more than once; DDP's default re-broadcasts BatchNorm buffers in place at every forward, which corrupts the
  tensors saved for backward. Each rank therefore keeps its own BatchNorm running statistics (estimated on its
  own data shard); rank 0's are the ones saved. Instance/group norm have no buffers, so nothing changes there.
* During the generator step the discriminators are frozen and called inside ``no_sync()``, so their reducers
  never wait for gradients that will not come.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ..utils import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, GPU ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False  #: a process group is initialised

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, validates and writes checkpoints."""
        return self.rank == 0


def setup(device_name: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the process group if launched by ``torchrun`` and pick this process's device."""
    if "RANK" not in os.environ:
        return DistInfo(), resolve_device(device_name)
    rank = int(os.environ["RANK"])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local, enabled=True), device


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


# newer torch renamed the switch (and deprecates the old name); buffers are still synced once at construction,
# which is fine: every rank builds identical networks
_NO_BUFFER_SYNC = ({"forward_sync_buffers": False}
                   if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters
                   else {"broadcast_buffers": False})


def wrap_modules(model: nn.Module, names: list[str], device: torch.device) -> None:
    """Replace each attribute ``model.<name>`` by a DDP wrapper of it (in place; see the module notes)."""
    for name in names:
        net = getattr(model, name)
        if not any(p.requires_grad for p in net.parameters()):
            continue
        ids = [device.index] if device.type == "cuda" else None
        setattr(model, name, DDP(net, device_ids=ids, **_NO_BUFFER_SYNC))


def ddp_of(module: nn.Module) -> DDP | None:
    """The DDP wrapper inside ``module`` (which may also be a ``torch.compile`` wrapper), else None."""
    inner = getattr(module, "_orig_mod", module)
    return inner if isinstance(inner, DDP) else None


@contextlib.contextmanager
def no_sync(modules: list[nn.Module], active: bool = True) -> Iterator[None]:
    """``no_sync()`` of every DDP wrapper among ``modules`` when ``active``; a no-op otherwise."""
    with contextlib.ExitStack() as stack:
        if active:
            for m in modules:
                wrapper = ddp_of(m)
                if wrapper is not None:
                    stack.enter_context(wrapper.no_sync())
        yield


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj`` in rank order (a one-element list without a process group)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
