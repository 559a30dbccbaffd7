"""Synthesis latency: file-to-file seconds per volume and model throughput in slices/s.

The model is the pix2pix generator of ``configs/pix2pix_t2_stir.yaml`` (U-Net-256), saved as a synthseq
checkpoint with random weights (speed does not depend on the weights) and loaded back with
:meth:`synthseq.Synthesizer.from_checkpoint`. "File to file" is :func:`synthseq.synthesis.synthesize_path`:
load the NIfTI, normalize, infer slice batches on the device (bf16 autocast + channels_last on CUDA), denormalize,
write the pseudo-STIR NIfTI atomically. Cases:

* ``16x256x256`` and ``16x512x512``: synthetic sagittal volumes (16 slices, int16 on disk);
* ``real_384x195x52``: the real cervical T2w in ``../shared/data/real/cervical_t2/`` (skipped with a note when
  absent); its 195 x 384 slices are padded to 256 x 512 for the U-Net.

Model throughput is ``Synthesizer``'s forward pass alone on resident batches at 256x256 and 512x512.

CPU engines (``--engines``, on the CPU by default): the same volume (the real one; the tiny one in ``--quick``) file
to file through each engine, timed round-robin (one repeat of each in turn, so a change of the machine's load hits
all alike): ``torch_nchw`` (eager torch in the default memory layout: synthseq's CPU path before channels_last),
``torch`` (eager, channels_last: the default torch engine), ``onnxruntime`` (the generator exported to ONNX in
memory and run by ONNX Runtime, ``synthesize --engine onnxruntime``). Each engine's output is compared with
``torch_nchw``'s (largest difference in model units, where 1e-3 is the allowed change) and the ratio to it is
stated; the machine's load average before and after is recorded, since other processes share the cores.
Targets: >= 10,000 slices/s at 256x256 on an H100; 16x512x512 < 1 s file to file on a GPU; 16x256x256 < 5 s on 2
CPU cores (``--threads 2``).

    python benchmarks/synthesis_latency.py --device cuda
    python benchmarks/synthesis_latency.py --device cpu --threads 2
    python benchmarks/synthesis_latency.py --device cpu --quick          # seconds: tiny model and volume (tests)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
from _common import (
    ROOT,
    emit,
    environment,
    median_rate,
    median_seconds,
    ratio,
    sagittal_affine,
    synthetic_volume,
)

REAL_T2W = ROOT.parent / "shared" / "data" / "real" / "cervical_t2" / "sct_errsm30_T2w_sag_fullfov.nii.gz"
TARGET_SLICES_PER_S_256 = 10_000.0  # H100
TARGET_GPU_512_S = 1.0  # 16x512x512, file to file, GPU
TARGET_CPU_256_S = 5.0  # 16x256x256, file to file, 2 CPU cores
TARGET_CPU_REAL_S = 8.0  # the real 384x195x52 T2w, file to file, 2 CPU cores, fastest engine
CPU_ENGINES = ("torch_nchw", "torch", "onnxruntime")


def write_checkpoint(path: Path, width: int, num_downs: int) -> Path:
    """A pix2pix checkpoint of the shipped config's networks (random weights) in the documented format."""
    import torch

    from synthseq import __version__
    from synthseq.config import load_config, to_dict
    from synthseq.models import build_gan
    from synthseq.training.checkpoint import FORMAT, in_channels_of, save_checkpoint

    cfg = load_config(ROOT / "configs" / "pix2pix_t2_stir.yaml",
                      [f"model.generator_kwargs.base_channels={width}", f"model.generator_kwargs.num_downs={num_downs}",
                       f"model.discriminator_kwargs.base_channels={width}"])
    torch.manual_seed(0)
    model = build_gan(cfg.model, cfg.loss, in_channels_of(to_dict(cfg)))
    d = cfg.data
    ckpt = {"format": FORMAT, "synthseq_version": __version__, "kind": cfg.model.kind, "config": to_dict(cfg),
            "model": model.state_dict(), "step": 0,
            "normalization": {"method": d.norm, "percentiles": list(d.norm_percentiles)},
            "pixel_spacing_mm": None,  # keep each volume's native in-plane spacing: no resampling
            "image_size": d.image_size, "context_slices": d.context_slices, "input_keys": list(d.input_keys)}
    return save_checkpoint(ckpt, path)


def write_volume(path: Path, shape: tuple[int, int, int]) -> Path:
    """A synthetic sagittal T2w ``(L-R slices, A-P, S-I)`` stored as int16, as scanners write them."""
    from synthseq.io import Volume, save_volume

    t2w, _, _ = synthetic_volume(shape, np.random.default_rng(0))
    return save_volume(Volume(np.round(t2w), sagittal_affine(3.0, 0.5)), path, dtype=np.int16)


def time_file(synth, src: Path, dst: Path, device: str, warmup: int, repeats: int) -> dict:
    """Median file-to-file seconds through ``synthesize_path``, and a per-stage split of the same work."""
    from synthseq.io import load_volume, save_volume
    from synthseq.synthesis import synthesize_path

    def run() -> None:
        synthesize_path(synth.source, src, dst, synthesizer=synth, overwrite=True)

    total = median_seconds(run, device=device, warmup=warmup, repeats=repeats)
    vol = load_volume(src)
    stages = {
        "load_s": median_seconds(lambda: load_volume(src), device=device, warmup=0, repeats=repeats)["seconds"],
        "normalize_infer_s": median_seconds(lambda: synth.predict(vol), device=device, warmup=0,
                                            repeats=repeats)["seconds"],
    }
    pred, _ = synth.predict(vol)
    stages["write_s"] = median_seconds(lambda: save_volume(pred, dst, dtype=np.float32, overwrite=True),
                                       device=device, warmup=0, repeats=repeats)["seconds"]
    return {"shape": list(vol.shape), "orientation": vol.orientation, **total, "stages": stages}


def model_throughput(synth, size: int, batch: int, device: str, windows: int, calls: int) -> dict:
    """Slices/s of the Synthesizer's forward pass (autocast / channels_last as it runs them) on ``size``^2."""
    import torch

    x = torch.rand((batch, 1, size, size), device=device) * 2 - 1

    @torch.inference_mode()
    def step() -> None:
        synth.forward_batch(x)  # the exact call synthesis makes per batch (after resampling and padding)

    r = median_rate(step, batch, device=device, warmup=2, windows=windows, calls_per_window=calls)
    return {"size": size, "batch": batch, "slices_per_s": r["items_per_s"], "ms_per_batch": r["ms_per_call"],
            "detail": r}


def make_engine(ckpt: Path, engine: str, batch: int):
    """A Synthesizer running ``engine`` (see :data:`CPU_ENGINES`) on the CPU."""
    import torch

    from synthseq import Synthesizer

    synth = Synthesizer.from_checkpoint(ckpt, device="cpu", batch_size=batch)
    if engine == "torch_nchw":  # the CPU path before channels_last: eager torch, default memory layout
        synth.channels_last = False
        synth.model = synth.model.to(memory_format=torch.contiguous_format)
        return synth.set_engine("torch")
    return synth.set_engine(engine)


def compare_engines(ckpt: Path, src: Path, tmp: Path, engines: list[str], batch: int, repeats: int,
                    warmup: int) -> dict:
    """File-to-file seconds of each engine on ``src``, timed round-robin; output differences and ratios against
    ``torch_nchw`` (the reference; timed too even when not asked for, as ratios need it)."""
    import time

    from synthseq.io import load_volume
    from synthseq.synthesis import synthesize_path

    names = ["torch_nchw", *[e for e in engines if e != "torch_nchw"]]
    built, setup_s = {}, {}
    for name in names:
        t0 = time.perf_counter()
        built[name] = make_engine(ckpt, name, batch)
        setup_s[name] = time.perf_counter() - t0  # checkpoint load (+ the in-memory ONNX export and session)
    outs = {name: tmp / f"engine_{name}_pseudoSTIR.nii.gz" for name in names}

    def run(name: str) -> float:
        t0 = time.perf_counter()
        synthesize_path(ckpt, src, outs[name], synthesizer=built[name], overwrite=True)
        return time.perf_counter() - t0

    for name in names:
        for _ in range(warmup):
            run(name)
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(repeats):
        for name in names:
            times[name].append(run(name))
    vol = load_volume(src)
    scale = built["torch_nchw"].prepare_inputs(vol)[1].scale  # scanner units per model unit
    ref = load_volume(outs["torch_nchw"]).data
    result = {"volume": str(src), "shape": list(vol.shape), "batch": batch, "repeats": repeats,
              "reference": "torch_nchw", "engines": {}}
    for name in names:
        t = sorted(times[name])
        diff = float(abs(load_volume(outs[name]).data - ref).max() / scale)
        result["engines"][name] = {"seconds": statistics.median(t), "min": t[0], "max": t[-1], "times": times[name],
                                   "setup_s": setup_s[name], "max_abs_diff_model_units": diff,
                                   "within_1e-3": diff <= 1e-3}
    base = result["engines"]["torch_nchw"]["seconds"]
    for r in result["engines"].values():
        r["speedup_vs_torch_nchw"] = ratio(base, r["seconds"])
    ok = {n: r for n, r in result["engines"].items() if r["within_1e-3"]}
    fastest = min(ok, key=lambda n: ok[n]["seconds"])
    result["fastest"] = fastest
    result["fastest_seconds"] = ok[fastest]["seconds"]
    result["ratio_fastest_vs_torch_nchw"] = ok[fastest]["speedup_vs_torch_nchw"]
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cuda | cpu | auto (default)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--real", default=str(REAL_T2W), help="the real 384x195x52 T2w (skipped if absent)")
    parser.add_argument("--cases", default=None,
                        help="comma-separated subset of 16x256x256,16x512x512,real (default: all)")
    parser.add_argument("--quick", action="store_true", help="tiny model and volume (seconds; for tests)")
    parser.add_argument("--engines", default=None,
                        help=f"comma-separated CPU engines to compare, of {','.join(CPU_ENGINES)} (default: all on "
                        "the CPU, none on CUDA; 'none' skips the comparison)")
    parser.add_argument("--engine-repeats", type=int, default=None, help="file-to-file repeats per engine (default 3)")
    parser.add_argument("--skip-throughput", action="store_true", help="leave out the forward-pass throughput")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()

    import torch

    from synthseq import Synthesizer
    from synthseq.utils import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = str(resolve_device(args.device))
    cuda = device.startswith("cuda")
    if args.quick:
        width, num_downs, infer_batch, repeats, warmup = 8, 5, 8, 1, 0
        cases = {"4x64x64": (4, 64, 64)}
        throughput = [(64, 8, 1, 1)]  # (size, batch, windows, calls)
    else:
        width, num_downs, infer_batch = 64, 8, 32 if cuda else 16  # CPU: 16 measured faster than 8
        repeats, warmup = (5, 1) if cuda else (2, 0)
        cases = {"16x256x256": (16, 256, 256), "16x512x512": (16, 512, 512)}
        throughput = [(256, 256, 5, 10), (512, 64, 5, 10)] if cuda else [(256, 4, 3, 2), (512, 2, 3, 1)]

    wanted = None if args.cases is None else {c.strip() for c in args.cases.split(",") if c.strip()}
    if wanted is not None and not args.quick:
        unknown = wanted - {*cases, "real"}
        if unknown:
            parser.error(f"--cases: unknown {sorted(unknown)[0]!r} (choose from {', '.join([*cases, 'real'])})")
        cases = {k: v for k, v in cases.items() if k in wanted}
    result_cases: dict = {}
    with tempfile.TemporaryDirectory(prefix="synthseq_bench_") as tmp:
        tmp = Path(tmp)
        ckpt = write_checkpoint(tmp / "model.pt", width, num_downs)
        load = median_seconds(lambda: Synthesizer.from_checkpoint(ckpt, device=device, batch_size=infer_batch),
                              device=device, warmup=0, repeats=1)
        synth = Synthesizer.from_checkpoint(ckpt, device=device, batch_size=infer_batch)
        for name, shape in cases.items():
            src = write_volume(tmp / f"vol_{name}_T2w.nii.gz", shape)
            result_cases[name] = time_file(synth, src, tmp / f"vol_{name}_pseudoSTIR.nii.gz", device, warmup,
                                           repeats)
        real = Path(args.real)
        if args.quick:
            result_cases["real_384x195x52"] = {"skipped": "quick mode"}
        elif wanted is not None and "real" not in wanted:
            result_cases["real_384x195x52"] = {"skipped": "not in --cases"}
        elif not real.is_file():
            result_cases["real_384x195x52"] = {"skipped": f"{real} not found"}
        else:
            result_cases["real_384x195x52"] = {"path": str(real), **time_file(
                synth, real, tmp / "real_pseudoSTIR.nii.gz", device, warmup, repeats)}
        rates = {} if args.skip_throughput else {
            f"{s}x{s}": model_throughput(synth, s, b, device, w, c) for s, b, w, c in throughput}
        engines_wanted = ([] if cuda else list(CPU_ENGINES)) if args.engines is None else [
            e.strip() for e in args.engines.split(",") if e.strip() and e.strip() != "none"]
        for e in engines_wanted:
            if e not in CPU_ENGINES:
                parser.error(f"--engines: unknown {e!r} (choose from {', '.join(CPU_ENGINES)})")
        engines = None
        if engines_wanted:
            if cuda:
                parser.error("--engines compares CPU engines: use --device cpu")
            src = real if (real.is_file() and not args.quick and (wanted is None or "real" in wanted)) else \
                write_volume(tmp / "engines_T2w.nii.gz", next(iter(cases.values())) if cases else (4, 64, 64))
            repeats_e = args.engine_repeats or (1 if args.quick else 3)
            engines = compare_engines(ckpt, src, tmp, engines_wanted, infer_batch, repeats_e, warmup)

    full = not args.quick and width == 64 and num_downs == 8
    targets = {
        "slices_per_s_256_cuda": {"target": TARGET_SLICES_PER_S_256, "value": rates.get("256x256", {}).get(
            "slices_per_s"), "judged": full and cuda},
        "file_to_file_16x512x512_gpu_s": {"target": TARGET_GPU_512_S, "value": result_cases.get(
            "16x512x512", {}).get("seconds"), "judged": full and cuda},
        "file_to_file_16x256x256_cpu_s": {"target": TARGET_CPU_256_S, "value": result_cases.get(
            "16x256x256", {}).get("seconds"), "judged": full and not cuda and torch.get_num_threads() <= 2},
    }
    for name, t in targets.items():
        higher_is_better = name.startswith("slices")
        v = t["value"]
        t["meets_target"] = (None if not t["judged"] or v is None
                             else (v >= t["target"] if higher_is_better else v <= t["target"]))
    result = {
        "benchmark": "synthesis_latency",
        "environment": environment(device),
        "quick": args.quick,
        "model": {"generator": "unet", "base_channels": width, "num_downs": num_downs,
                  "size_multiple": 2**num_downs, "dtype": "bfloat16" if cuda else "float32",
                  "infer_batch": infer_batch, "parameters_M": round(sum(
                      p.numel() for n in synth.model.generator_modules()
                      for p in getattr(synth.model, n).parameters()) / 1e6, 2)},
        "checkpoint_load_s": load["seconds"],
        "file_to_file": result_cases,
        "throughput": rates,
        "targets": targets,
        "engines": engines,
        "load_average": {"before": list(load_before), "after": list(os.getloadavg()), "cpu_count": os.cpu_count(),
                         "note": "1-, 5- and 15-minute load averages: above cpu_count, other processes were "
                                 "competing for the cores during the run"},
    }
    emit(result, args.out)
    return result


if __name__ == "__main__":
    main()
