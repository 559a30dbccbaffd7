"""Phantom generation speed: default-preset subjects per second per CPU core.

Target (issues 4 and 9): >= 1 default-size subject (256x256x16 T2w + STIR + labels + lesions) per second per
core. Timed single-threaded, so the figure is per core:

* ``in_memory``: :func:`synthseq.phantom.generate_subject` for the ``tiny`` and ``default`` presets (the
  simulation alone; the tiny preset is the reference configuration timed in the same run), classic and, as
  ``default_faithful`` / ``tiny_faithful``, the realistic mode (2x in-plane painting, texture, k-space);
* ``to_disk``: :func:`synthseq.phantom.generate_dataset` writing a default-preset dataset (simulation plus the
  gzipped NIfTI files, ``dataset.json`` and ``cohort.csv``), per subject.

    python benchmarks/phantom_speed.py [--quick] [--out results.json]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # per-core figure: keep BLAS / torch single-threaded

import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from _common import emit, environment, median_rate, ratio  # noqa: E402

TARGET_DEFAULT_PER_S = 1.0


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one short window per preset (for tests)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from synthseq.phantom import generate_dataset, generate_subject, get_preset

    counter = iter(range(10**6))
    in_memory = {}
    cases = [("tiny", "tiny", "classic"), ("default", "default", "classic"), ("default_faithful", "default", "faithful")]
    if not args.quick:
        cases.append(("tiny_faithful", "tiny", "faithful"))
    for key, preset, realism in cases:
        def step(preset: str = preset, realism: str = realism) -> None:
            i = next(counter)
            generate_subject(f"sub-{i:04d}", rng_seed=i, preset=preset, realism=realism)

        slow = preset == "default"
        windows, calls = (1, 1) if args.quick else (3, (1 if realism != "classic" else 3) if slow else 10)
        in_memory[key] = median_rate(step, 1, device="cpu", warmup=1, windows=windows, calls_per_window=calls)

    n_disk = 1 if args.quick else 4
    with tempfile.TemporaryDirectory(prefix="synthseq_bench_") as tmp:
        t0 = time.perf_counter()
        generate_dataset(Path(tmp) / "phantom", subjects=n_disk, seed=0, preset="default", progress=False)
        disk_s = time.perf_counter() - t0
    to_disk = {"subjects": n_disk, "seconds": disk_s, "items_per_s": n_disk / disk_s}

    default_rate = in_memory["default"]["items_per_s"]
    pr = get_preset("default")
    result = {
        "benchmark": "phantom_speed",
        "environment": environment("cpu"),
        "quick": args.quick,
        "default_shape": [pr.matrix[0], pr.matrix[1], pr.n_slices],
        "subjects_per_s_per_core": {**{k: v["items_per_s"] for k, v in in_memory.items() if "_" not in k},
                                    "default_to_disk": to_disk["items_per_s"]},
        # the realistic mode (``--realism faithful``): same presets, 2x in-plane painting, texture and k-space
        "faithful_subjects_per_s_per_core": {k: v["items_per_s"] for k, v in in_memory.items() if "_" in k},
        "detail": {"in_memory": in_memory, "to_disk": to_disk},
        "target_default_subjects_per_s_per_core": TARGET_DEFAULT_PER_S,
        "ratio_default_to_target": ratio(default_rate, TARGET_DEFAULT_PER_S),
        "ratio_default_to_tiny": ratio(default_rate, in_memory["tiny"]["items_per_s"]),
        "meets_target": default_rate >= TARGET_DEFAULT_PER_S,
    }
    emit(result, args.out)
    return result


if __name__ == "__main__":
    main()
