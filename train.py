"""Train pix2pix or CycleGAN from a YAML config: a thin entry point over ``synthseq.training.run``.

Usage:
    python train.py configs/pix2pix_cpu_tiny.yaml                       # one process (CPU or one GPU)
    python train.py configs/pix2pix_t2_stir.yaml train.steps=5000 data.root=phantom/
    torchrun --nproc_per_node 4 train.py configs/pix2pix_t2_stir.yaml   # DDP on 4 GPUs (NCCL)
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv-endpoint HOST:29500 train.py CONFIG   # multi-node
    python train.py CONFIG train.resume=true                            # continue from OUT/last.pt exactly

Same as ``synthseq train CONFIG [overrides]``.
"""

import sys

from synthseq.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
