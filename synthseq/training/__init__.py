"""Training pix2pix / CycleGAN: the loop, checkpoints (exact resume), TensorBoard logging, DDP.

Usage (the same arguments work for ``synthseq train`` and ``python train.py``)::

    # one process: CPU, or one GPU (bf16 autocast, channels_last, fused Adam; torch.compile with train.compile=true)
    python train.py configs/pix2pix_cpu_tiny.yaml data.root=phantom/
    python train.py configs/pix2pix_t2_stir.yaml data.root=phantom/ train.out_dir=runs/p2p

    # DDP on 4 GPUs of one node (NCCL); train.batch_size is PER PROCESS, so the global batch is 4x
    torchrun --standalone --nproc_per_node 4 train.py configs/pix2pix_t2_stir.yaml data.root=phantom/

    # two nodes of 8 GPUs (run on each node)
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 train.py CONFIG

    # DDP on CPU processes (gloo), e.g. to check a config
    torchrun --standalone --nproc_per_node 2 train.py configs/pix2pix_cpu_tiny.yaml train.device=cpu

    # continue exactly where OUT/last.pt left off (optionally with a larger train.steps)
    python train.py CONFIG train.resume=true

    tensorboard --logdir runs/          # scalars, image grids, the resolved config

A run directory (``train.out_dir``) holds ``config.yaml`` (resolved), ``splits.json`` (subject ids of the train /
val / test split), ``last.pt``, ``best.pt`` (best validation SSIM), ``metrics.jsonl`` (validation results),
``train_log.jsonl`` (loss averages) and ``tb/`` (TensorBoard events). A fresh run refuses a folder that already
holds ``last.pt``.

Python API: :func:`run` (config -> run directory), :func:`~.checkpoint.load_checkpoint`,
:func:`~.checkpoint.build_model_from_checkpoint`.
"""

from __future__ import annotations

from .checkpoint import build_model_from_checkpoint, load_checkpoint, save_checkpoint
from .loop import Trainer, run

__all__ = ["Trainer", "build_model_from_checkpoint", "load_checkpoint", "run", "save_checkpoint"]
