"""Shared helpers of the benchmark scripts: timing windows, environment facts, synthetic inputs, JSON output.

The scripts are run from a checkout (``python benchmarks/X.py``); importing this module puts the repository root
on ``sys.path`` so they work without installing synthseq.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing


def environment(device: str = "cpu") -> dict:
    """Device name, torch version, thread count, commit: what a reader needs to compare two results."""
    import torch

    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "device_name": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.version.cuda,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        env["device_name"] = props.name
        env["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        env["cudnn"] = torch.backends.cudnn.version()
    env["commit"] = _git("rev-parse", "--short", "HEAD")
    # a figure taken on a tree with uncommitted changes is not reproducible from the commit alone
    env["dirty"] = bool(_git("status", "--porcelain", "--untracked-files=no")) if env["commit"] else None
    return env


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return out.stdout.strip() or None


def synchronize(device: str) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def median_rate(step: Callable[[], object], items_per_call: int, *, device: str, warmup: int, windows: int,
                calls_per_window: int) -> dict:
    """Run ``step`` ``warmup`` times untimed, then time ``windows`` windows of ``calls_per_window`` calls.

    Returns the median items/s over windows (robust to a noisy, shared machine), the spread, and the median time
    of one call in milliseconds (``ms_per_call``).
    """
    for _ in range(warmup):
        step()
    synchronize(device)
    rates, call_ms = [], []
    for _ in range(windows):
        t0 = time.perf_counter()
        for _ in range(calls_per_window):
            step()
        synchronize(device)
        elapsed = time.perf_counter() - t0
        rates.append(items_per_call * calls_per_window / elapsed)
        call_ms.append(1000.0 * elapsed / calls_per_window)
    return {"items_per_s": statistics.median(rates), "min": min(rates), "max": max(rates),
            "ms_per_call": statistics.median(call_ms), "windows": windows, "calls_per_window": calls_per_window,
            "warmup_calls": warmup}


def interleaved_rates(steps: dict[str, tuple[Callable[[], object], int]], *, device: str, warmup: int,
                      windows: int, calls_per_window: int) -> dict[str, dict]:
    """:func:`median_rate` for several ``name -> (step, items_per_call)`` timed round-robin, one window of each
    in turn, so that a change in the machine's load hits all of them alike and their ratios stay meaningful."""
    for fn, _ in steps.values():
        for _ in range(warmup):
            fn()
    synchronize(device)
    parts: dict[str, list[dict]] = {name: [] for name in steps}
    for _ in range(windows):
        for name, (fn, items) in steps.items():
            parts[name].append(median_rate(fn, items, device=device, warmup=0, windows=1,
                                           calls_per_window=calls_per_window))
    out = {}
    for name, ws in parts.items():
        rates = [w["items_per_s"] for w in ws]
        out[name] = {"items_per_s": statistics.median(rates), "min": min(rates), "max": max(rates),
                     "ms_per_call": statistics.median(w["ms_per_call"] for w in ws), "windows": windows,
                     "calls_per_window": calls_per_window, "warmup_calls": warmup}
    return out


def median_seconds(fn: Callable[[], object], *, device: str, warmup: int, repeats: int) -> dict:
    """Median wall time (s) of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls, plus min and max."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return {"seconds": statistics.median(times), "min": min(times), "max": max(times), "repeats": repeats,
            "warmup_calls": warmup}


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing or ``b`` is not positive."""
    if a is None or b is None or not b > 0 or not math.isfinite(a):
        return None
    return a / b


# ------------------------------------------------------------------------------------------ synthetic inputs
def synthetic_volume(shape: tuple[int, int, int], rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A crude sagittal neck: T2w, STIR (float32, scanner-like units) and tissue labels (uint8) of ``shape``
    ``(L-R slices, A-P, S-I)``.

    A body ellipse with a fat rim, a bright canal and a column of vertebral blocks; only the timing of the
    pipeline depends on it, not what the images show. Labels follow the phantom's codes (2 fat, 3 muscle,
    7 marrow, 10 CSF), so the body mask is taken from them as for phantom subjects.
    """
    s, ny, nz = shape
    y, z = np.meshgrid(np.linspace(-1, 1, ny, dtype=np.float32), np.linspace(-1, 1, nz, dtype=np.float32),
                       indexing="ij")
    cy, cz = rng.uniform(-0.05, 0.05, 2)
    r2 = ((y - cy) / 0.8) ** 2 + ((z - cz) / 0.92) ** 2
    # a fat rim about a third of the radius thick, so the dataset check finds subcutaneous fat where it looks
    # (1.5 to 8 mm inside the body outline) and sees the usual T2w / STIR fat contrast
    body, fat = r2 < 1, (r2 < 1) & (r2 > 0.45)
    canal = body & (np.abs(y - cy - 0.15) < 0.06)
    blocks = body & (np.abs(y - cy + 0.1) < 0.12) & (np.sin((z - cz) * 18) > -0.5)
    labels2d = np.where(body, 3, 0).astype(np.uint8)
    labels2d[fat], labels2d[blocks], labels2d[canal] = 2, 7, 10
    t2_of = np.array([0, 0, 800, 300, 0, 0, 0, 450, 0, 0, 1500], np.float32)
    stir_of = np.array([0, 0, 60, 250, 0, 0, 0, 120, 0, 0, 1300], np.float32)
    # slices differ a little (a lateral fall-off) so that no two slices are identical
    lateral = 1.0 - 0.4 * np.linspace(-1, 1, s, dtype=np.float32) ** 2
    t2w = t2_of[labels2d][None] * lateral[:, None, None] + rng.normal(0, 12, (s, ny, nz)).astype(np.float32)
    stir = stir_of[labels2d][None] * lateral[:, None, None] + rng.normal(0, 10, (s, ny, nz)).astype(np.float32)
    labels = np.repeat(labels2d[None], s, axis=0)
    return np.abs(t2w).astype(np.float32), np.abs(stir).astype(np.float32), labels


def sagittal_affine(slice_mm: float, pixel_mm: float) -> np.ndarray:
    """RAS+ affine of an ``(L-R, A-P, S-I)`` array with the given slice and in-plane spacings."""
    return np.diag([slice_mm, pixel_mm, pixel_mm, 1.0])


def write_synthetic_subjects(root: str | Path, n_subjects: int, shape: tuple[int, int, int], seed: int = 0,
                             pixel_mm: float = 0.9375, slice_mm: float = 3.0) -> Path:
    """Write ``n_subjects`` synthetic subjects in the phantom's folder layout (T2w, STIR, labels, lesions) under
    ``root`` and return it; ``shape`` is ``(L-R slices, A-P, S-I)`` per volume."""
    from synthseq.io import Volume, save_volume

    root = Path(root)
    rng = np.random.default_rng(seed)
    affine = sagittal_affine(slice_mm, pixel_mm)
    for i in range(1, n_subjects + 1):
        sid = f"sub-{i:04d}"
        (root / sid).mkdir(parents=True, exist_ok=True)
        t2w, stir, labels = synthetic_volume(shape, rng)
        for key, data in (("T2w", t2w), ("STIR", stir), ("labels", labels), ("lesions", np.zeros_like(labels))):
            dtype = np.uint8 if data.dtype == np.uint8 else np.float32  # label maps as codes, images as float
            save_volume(Volume(data, affine), root / sid / f"{sid}_{key}.nii.gz", dtype=dtype, overwrite=True)
    return root


def fail(parser: argparse.ArgumentParser, exc: BaseException) -> NoReturn:
    """Exit 2 with one line naming the problem (a missing / corrupt input's ``SynthseqError``), argparse-style,
    instead of a traceback."""
    parser.exit(2, f"{parser.prog}: error: {str(exc).splitlines()[0]}\n")


def emit(result: dict, out: str | None = None) -> None:
    """Print the JSON result (and write it to ``out`` if given)."""
    text = json.dumps(result, indent=2, sort_keys=False)
    print(text, flush=True)
    if out:
        from synthseq.utils import atomic_write_text

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, text + "\n")
