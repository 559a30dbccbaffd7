"""Shared by the benchmark tests (test files cannot import each other under importlib mode)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def run_script(name: str, tmp_path: Path, *args: str, timeout: float = 300) -> dict:
    """Run ``benchmarks/<name>.py *args --out tmp_path/<name>.json`` in its own process (it sets thread counts,
    which must not leak into the test process); assert exit 0 and that the JSON printed is the JSON written."""
    out = tmp_path / f"{name}.json"
    proc = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), *args, "--out", str(out)],
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = json.loads(out.read_text())
    assert json.loads(proc.stdout) == written
    return written


@pytest.fixture(scope="session")
def run_benchmark() -> Callable[..., dict]:
    """``run_benchmark(name, tmp_path, *args, timeout=300) -> dict`` (:func:`run_script`)."""
    return run_script
