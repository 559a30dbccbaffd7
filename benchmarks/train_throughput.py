"""Training throughput: images/s of synthseq's real training step, next to the classic configuration.

For pix2pix (U-Net + 70x70 PatchGAN) and CycleGAN (ResNet-9 + PatchGAN) this builds, in ONE process:

* the synthseq configuration: ``configs/{pix2pix,cyclegan}_t2_stir.yaml`` as shipped (batch 64 / 16 per process,
  bf16 autocast, channels_last, torch.compile on CUDA; on the CPU autocast and channels_last are off, as the
  Trainer does), trained through :class:`synthseq.training.Trainer` with its real data path: subjects on disk ->
  ``build_run_data`` -> the device-resident :class:`~synthseq.data.gpu.GPUSliceBank` with augmentations;
* the classic configuration of the same architectures: batch 1, fp32, eager, no channels_last, same Trainer and
  data path (so the ratio measures the configuration, not different code).

Each is timed as the median images/s over repeated windows of ``Trainer.train_step()`` after untimed warm-up
steps (which also absorb torch.compile). To show the data pipeline is not the bottleneck the synthseq
configuration is also timed with a fixed, already-resident batch (step without data) and the batch source alone.

Targets (H100, 256x256): pix2pix >= 40x its classic configuration and >= 2,800 images/s; CycleGAN >= 10x.

    python benchmarks/train_throughput.py --device cuda                   # the H100 figures (256x256)
    python benchmarks/train_throughput.py --device cpu                    # CPU-sized (64x64, narrower nets)
    python benchmarks/train_throughput.py --device cpu --quick            # seconds: tiny nets (tests)
    python benchmarks/train_throughput.py --data phantom/ --out r.json    # a phantom folder instead of synthetic

Sizes other than 256 keep the U-Net's shape (its innermost map is 1x1): ``num_downs = log2(size)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
from pathlib import Path

from _common import (
    ROOT,
    emit,
    environment,
    interleaved_rates,
    median_rate,
    ratio,
    synchronize,
    write_synthetic_subjects,
)

KINDS = ("pix2pix", "cyclegan")
TARGET_RATIO = {"pix2pix": 40.0, "cyclegan": 10.0}
TARGET_IMAGES_PER_S = {"pix2pix": 2800.0}  # H100, 256x256, data included


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes and timing windows for one device class."""

    size: int
    width: int  #: base channels of generator and discriminator (64 = the published networks)
    batch: dict[str, int] | None  #: per-kind batch of the synthseq configuration (None: the config's own)
    subjects: int
    slices: int
    warmup: int  #: untimed steps (torch.compile happens here)
    windows: int
    calls: dict[str, int]  #: steps per window for the synthseq / classic configuration
    compile: bool | None  #: None: as the config says


def plan_for(device: str, quick: bool) -> Plan:
    if quick:
        return Plan(size=32, width=8, batch={"pix2pix": 4, "cyclegan": 2}, subjects=2, slices=4, warmup=1,
                    windows=1, calls={"synthseq": 2, "classic": 2}, compile=False)
    if device.startswith("cuda"):
        return Plan(size=256, width=64, batch=None, subjects=8, slices=16, warmup=20, windows=5,
                    calls={"synthseq": 20, "classic": 50}, compile=None)
    # 2 CPU cores: small images, narrower nets, no compile (inductor's C++ build takes minutes on the CPU)
    return Plan(size=64, width=32, batch={"pix2pix": 16, "cyclegan": 4}, subjects=4, slices=12, warmup=2,
                windows=3, calls={"synthseq": 3, "classic": 8}, compile=False)


def make_config(kind: str, data_root: Path, run_dir: Path, device: str, plan: Plan, classic: bool,
                batch: int | None, compile_: bool | None):
    """The shipped H100 config of ``kind`` with the benchmark's sizes (and, if ``classic``, batch 1 fp32 eager)."""
    from synthseq.config import load_config

    o = [f"data.root={data_root}", f"data.image_size={plan.size}", "data.val_fraction=0", "data.test_fraction=0",
         "data.gpu_resident=true", f"train.device={device}", f"train.out_dir={run_dir}",
         f"model.generator_kwargs.base_channels={plan.width}", f"model.discriminator_kwargs.base_channels={plan.width}"]
    if kind == "pix2pix":
        o.append(f"model.generator_kwargs.num_downs={int(math.log2(plan.size))}")
    if classic:
        o += ["train.batch_size=1", "train.amp=false", "train.channels_last=false", "train.compile=false"]
    else:
        if batch is not None:
            o.append(f"train.batch_size={batch}")
        if compile_ is not None:
            o.append(f"train.compile={str(compile_).lower()}")
    return load_config(ROOT / "configs" / f"{kind}_t2_stir.yaml", o)


def build_trainer(cfg):
    """A single-process :class:`Trainer` for ``cfg``, set up the way ``synthseq.training.run`` sets it up."""
    from synthseq.training import Trainer
    from synthseq.training.distributed import DistInfo
    from synthseq.utils import resolve_device

    run_dir = Path(cfg.train.out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return Trainer.from_config(cfg, resolve_device(cfg.train.device), DistInfo(), run_dir)


class FixedBatch:
    """A batch source that returns one already-resident batch: the training step with the data path removed."""

    def __init__(self, batch: dict) -> None:
        self.fixed = batch

    def batch(self, step: int, micro: int) -> dict:
        return self.fixed


def describe(trainer) -> dict:
    t = trainer.cfg.train
    return {"batch": t.batch_size * t.grad_accum, "dtype": str(trainer.amp_dtype).replace("torch.", "")
            if trainer.amp else "float32", "channels_last": trainer.channels_last, "compile": bool(t.compile)}


def time_synthseq(trainer, per_step: int, device: str, plan: Plan) -> dict:
    """The full step, the step fed one fixed resident batch, and the batch source alone, timed round-robin."""
    real = trainer.data
    fixed = dataclasses.replace(real, train=FixedBatch(trainer.to_device(real.train.batch(0, 0))))
    step = [0]

    def with_data() -> None:
        trainer.data = real
        trainer.train_step()

    def without_data() -> None:
        trainer.data = fixed
        trainer.train_step()

    def data_only() -> None:  # the batch source as the Trainer calls it (draw, then move / memory format)
        trainer.to_device(real.train.batch(step[0], 0))
        step[0] += 1

    r = interleaved_rates({"full": (with_data, per_step), "bare": (without_data, per_step),
                           "data": (data_only, per_step)}, device=device, warmup=plan.warmup,
                          windows=plan.windows, calls_per_window=plan.calls["synthseq"])
    full, bare, data = r["full"], r["bare"], r["data"]
    trainer.data = real
    return {
        "images_per_s": full["items_per_s"], "step_ms": full["ms_per_call"],
        "images_per_s_without_data": bare["items_per_s"], "step_ms_without_data": bare["ms_per_call"],
        "data_images_per_s": data["items_per_s"], "data_ms_per_batch": data["ms_per_call"],
        # share of a step spent making its batch (the pipeline is not the bottleneck when this is small)
        "data_share_of_step": max(0.0, 1.0 - bare["ms_per_call"] / full["ms_per_call"]),
        "detail": r,
    }


def time_kind(kind: str, data_root: Path, work: Path, device: str, plan: Plan) -> dict:
    """Both configurations of ``kind``: images/s, step times with and without data, and their ratio."""
    import torch

    out: dict = {}
    batch = plan.batch[kind] if plan.batch else None
    for name in ("synthseq", "classic"):
        cfg = make_config(kind, data_root, work / f"{kind}_{name}", device, plan, classic=name == "classic",
                          batch=batch, compile_=plan.compile)
        trainer = build_trainer(cfg)
        per_step = cfg.train.batch_size * cfg.train.grad_accum
        if name == "synthseq":
            rec = {**describe(trainer), **time_synthseq(trainer, per_step, device, plan)}
        else:
            full = median_rate(trainer.train_step, per_step, device=device, warmup=plan.warmup,
                               windows=plan.windows, calls_per_window=plan.calls[name])
            rec = {**describe(trainer), "images_per_s": full["items_per_s"], "step_ms": full["ms_per_call"],
                   "detail": full}
        out[name] = rec
        del trainer
        synchronize(device)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    out["ratio"] = ratio(out["synthseq"]["images_per_s"], out["classic"]["images_per_s"])
    out["target_ratio"] = TARGET_RATIO[kind]
    out["target_images_per_s"] = TARGET_IMAGES_PER_S.get(kind)
    # the targets are stated for an H100 at 256x256; elsewhere they are shown but not judged
    if device.startswith("cuda") and plan.size == 256 and plan.width == 64:
        ok = out["ratio"] is not None and out["ratio"] >= TARGET_RATIO[kind]
        if kind in TARGET_IMAGES_PER_S:
            ok = ok and out["synthseq"]["images_per_s"] >= TARGET_IMAGES_PER_S[kind]
        out["meets_target"] = ok
    else:
        out["meets_target"] = None
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cuda | cpu | auto (default)")
    parser.add_argument("--size", type=int, default=None, help="crop size (default: 256 on CUDA, 64 on CPU)")
    parser.add_argument("--width", type=int, default=None, help="base channels (default: 64 on CUDA, 32 on CPU)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated: pix2pix,cyclegan")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--data", default=None, help="phantom-layout folder to train on (default: synthetic)")
    parser.add_argument("--quick", action="store_true", help="tiny nets, one short window (seconds; for tests)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)

    import torch

    from synthseq.utils import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = str(resolve_device(args.device))
    plan = plan_for(device, args.quick)
    if args.size is not None:
        if args.size < 16 or args.size & (args.size - 1):
            parser.error(f"--size must be a power of two >= 16, got {args.size}")
        plan = dataclasses.replace(plan, size=args.size)
    if args.width is not None:
        plan = dataclasses.replace(plan, width=args.width)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    for k in kinds:
        if k not in KINDS:
            parser.error(f"--kinds: unknown {k!r} (choose from {', '.join(KINDS)})")

    with tempfile.TemporaryDirectory(prefix="synthseq_bench_") as tmp:
        work = Path(tmp)
        if args.data:
            data_root = Path(args.data)
        else:
            # in-plane a bit larger than the crop, so random crops move; the canvas pads smaller slices anyway
            shape = (plan.slices, plan.size + plan.size // 8, plan.size + plan.size // 4)
            data_root = write_synthetic_subjects(work / "data", plan.subjects, shape, seed=0)
        results = {k: time_kind(k, data_root, work, device, plan) for k in kinds}

    result = {
        "benchmark": "train_throughput",
        "environment": environment(device),
        "quick": args.quick,
        "size": plan.size,
        "width": plan.width,
        "data": str(args.data) if args.data else f"synthetic: {plan.subjects} subjects x {plan.slices} slices",
        "models": results,
    }
    emit(result, args.out)
    return result


if __name__ == "__main__":
    main()
