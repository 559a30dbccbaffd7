"""Data-parallel scaling: images/s of the real training loop with 1, 2, ... processes (torchrun).

Each run is the documented scale-out path itself, ``torchrun --standalone --nproc_per_node N train.py CONFIG
...``, on a synthetic phantom-layout dataset: ``train.batch_size`` is per process (weak scaling, the global batch
grows with N), every rank keeps its shard of the slices in its own slice bank, gradients are all-reduced by DDP
(gloo on the CPU, NCCL on GPUs). The figure is the loop's own ``images_per_s`` (``train_log.jsonl``: global images
per second over each logging window, validation and checkpoint writing excluded), median over the windows after the
first (warm-up). Efficiency = speedup / N. As a control (``--control``, on by default on the CPU) the same number of
independent single-process runs is timed at once: their summed images/s is the most the machine gives that many
processes, so a shared or hyperthreaded host is not mistaken for communication overhead.

    python benchmarks/ddp_scaling.py --device cpu --nprocs 1,2                  # CPU gloo, 1 thread per process
    python benchmarks/ddp_scaling.py --device cuda --nprocs 1,2,4,8 --config configs/pix2pix_t2_stir.yaml
    python benchmarks/ddp_scaling.py --quick                                    # seconds (tests)

On several nodes run ``torchrun --nnodes M --nproc_per_node G --rdzv-backend c10d --rdzv-endpoint HOST:29500
train.py CONFIG`` on each node; this script covers one node.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import ROOT, emit, environment, ratio, write_synthetic_subjects


def torchrun_command(nproc: int, config: Path, overrides: list[str]) -> list[str]:
    """``torchrun --standalone --nproc_per_node N train.py CONFIG overrides`` with this interpreter."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            str(ROOT / "train.py"), str(config), *overrides]


def run_once(nproc: int, config: Path, overrides: list[str], out_dir: Path, threads: int, timeout: float) -> dict:
    """One torchrun launch; the loop's logged images/s (global) per window, and the wall time."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    cmd = torchrun_command(nproc, config, [*overrides, f"train.out_dir={out_dir}"])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        text = (proc.stderr or "") + (proc.stdout or "")
        # synthseq's one-line error first (torchrun's own report follows it and would hide it in a plain tail)
        tail = [ln for ln in text.splitlines() if "error:" in ln][:3] + text.strip().splitlines()[-15:]
        raise RuntimeError(f"torchrun with {nproc} process(es) failed (exit {proc.returncode}):\n" + "\n".join(tail))
    log = out_dir / "train_log.jsonl"
    windows = [json.loads(line)["images_per_s"] for line in log.read_text().splitlines() if line.strip()]
    timed = windows[1:] or windows  # the first window holds start-up (allocations, first kernels)
    return {"nproc": nproc, "images_per_s": statistics.median(timed), "windows_images_per_s": windows,
            "wall_s": wall}


def run_independent(n: int, config: Path, overrides: list[str], out_dir: Path, threads: int,
                    timeout: float) -> dict:
    """The control: ``n`` independent single-process runs at the same time (no communication). Their summed
    images/s is what the machine can give ``n`` processes; DDP's figure divided by it isolates the cost of
    gradient synchronisation from that of sharing cores, memory bandwidth or a busy host."""
    results: dict[int, dict] = {}
    errors: list[BaseException] = []

    def go(i: int) -> None:
        try:
            results[i] = run_once(1, config, overrides, out_dir / f"solo_{i}", threads, timeout)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    workers = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    per = [results[i]["images_per_s"] for i in range(n)]
    return {"nproc": n, "images_per_s": sum(per), "per_process_images_per_s": per}


def _relative(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu (gloo, default) | cuda (NCCL)")
    parser.add_argument("--nprocs", default="1,2", help="comma-separated process counts (default 1,2)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "pix2pix_cpu_tiny.yaml"), help="training config")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process (OMP_NUM_THREADS)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 60; quick 6)")
    parser.add_argument("--batch", type=int, default=None, help="per-process train.batch_size (default: config's)")
    parser.add_argument("--data", default=None, help="phantom-layout folder (default: synthetic)")
    parser.add_argument("--control", action=argparse.BooleanOptionalAction, default=None,
                        help="also time N independent single-process runs at once (default: on for the CPU, "
                             "off with --quick)")
    parser.add_argument("--quick", action="store_true", help="tiny nets, a few steps (seconds; for tests)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)

    nprocs = sorted({int(n) for n in args.nprocs.split(",") if n.strip()})
    if not nprocs or nprocs[0] < 1:
        parser.error(f"--nprocs: expected positive integers, got {args.nprocs!r}")
    skipped = []
    if args.device.startswith("cuda"):  # one process per GPU: counts beyond this node's GPUs cannot run here
        import torch

        gpus = torch.cuda.device_count()
        skipped = [n for n in nprocs if n > gpus]
        nprocs = [n for n in nprocs if n <= gpus]
        if not nprocs:
            parser.error(f"--device {args.device}: no CUDA device available")
    steps = args.steps or (6 if args.quick else 60)
    log_every = 2 if args.quick else 10
    overrides = [f"train.device={args.device}", f"train.steps={steps}", f"train.log_every={log_every}",
                 "train.val_every=1000000000", "train.image_every=1000000000", "train.ckpt_every=1000000000",
                 "data.val_fraction=0",
                 "data.test_fraction=0", "data.gpu_resident=true"]
    if args.quick:
        overrides += ["data.image_size=32", "model.generator_kwargs.base_channels=8",
                      "model.generator_kwargs.num_downs=5", "model.discriminator_kwargs.base_channels=8",
                      "train.batch_size=4"]

    if args.batch is not None:
        overrides.append(f"train.batch_size={args.batch}")

    from synthseq.config import load_config

    cfg = load_config(args.config, overrides)  # checks the overrides before any process starts
    size = cfg.data.image_size
    runs = {}
    with tempfile.TemporaryDirectory(prefix="synthseq_bench_") as tmp:
        tmp = Path(tmp)
        if args.data:
            data_root = Path(args.data)
        else:  # slices a bit larger than the crop, 4 subjects (each rank gets its shard of the slices)
            data_root = write_synthetic_subjects(tmp / "data", 4, (6 if args.quick else 12, size + size // 8,
                                                                   size + size // 4))
        for n in nprocs:
            runs[str(n)] = run_once(n, Path(args.config), [*overrides, f"data.root={data_root}"], tmp / f"run_{n}",
                                    args.threads, timeout=600)
        control = None
        # on GPUs every independent run would land on cuda:0, so the control is a CPU-only default
        default_control = not args.quick and not args.device.startswith("cuda")
        if (default_control if args.control is None else args.control) and nprocs[-1] > 1:
            control = run_independent(nprocs[-1], Path(args.config), [*overrides, f"data.root={data_root}"], tmp,
                                      args.threads, timeout=600)

    base = runs[str(nprocs[0])]["images_per_s"]
    for n in nprocs:
        r = runs[str(n)]
        r["speedup"] = ratio(r["images_per_s"], base)
        r["efficiency"] = ratio(r["speedup"], n / nprocs[0])
    if control is not None:
        control["speedup"] = ratio(control["images_per_s"], base)
        # DDP's images/s relative to what the same number of processes reach without talking to each other
        control["ddp_fraction_of_control"] = ratio(runs[str(control["nproc"])]["images_per_s"],
                                                   control["images_per_s"])
    config_name = _relative(Path(args.config))
    shown = [*overrides, "data.root=DATA", "train.out_dir=OUT"]
    result = {
        "benchmark": "ddp_scaling",
        "environment": environment(args.device),
        "quick": args.quick,
        "backend": "nccl" if args.device.startswith("cuda") else "gloo",
        "config": config_name,
        "kind": cfg.model.kind,
        "image_size": cfg.data.image_size,
        "per_process_batch": cfg.train.batch_size * cfg.train.grad_accum,
        "threads_per_process": args.threads,
        "steps": steps,
        "command": f"OMP_NUM_THREADS={args.threads} torchrun --standalone --nproc_per_node {nprocs[-1]} train.py "
                   f"{config_name} " + " ".join(shown),
        "runs": runs,
        "independent_control": control,
        "skipped_nprocs": skipped,  # more processes than GPUs on this node
    }
    emit(result, args.out)
    return result


if __name__ == "__main__":
    main()
