"""Run every benchmark (``make bench``: the CPU-sized versions) and print one JSON document.

Each benchmark runs in its own process (they set thread counts and allocate a lot; one must not colour the next),
writes its JSON to a temporary file, and the results are gathered under their names with the exit status and wall
time of each. A benchmark that fails is reported (``"error"``, stderr tail) and the others still run; the exit
status is 1 if any failed.

    python benchmarks/run_all.py --device cpu                  # make bench
    python benchmarks/run_all.py --device cuda --out results_gpu.json
    python benchmarks/run_all.py --quick --only phantom_speed,train_throughput
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import emit, environment

HERE = Path(__file__).resolve().parent
#: name -> (script, arguments besides --quick / --out); ``{device}`` and ``{threads}`` are filled in
BENCHMARKS: dict[str, tuple[str, list[str]]] = {
    "phantom_speed": ("phantom_speed.py", []),
    "train_throughput": ("train_throughput.py", ["--device", "{device}", "{threads}"]),
    "synthesis_latency": ("synthesis_latency.py", ["--device", "{device}", "{threads}"]),
    "ddp_scaling": ("ddp_scaling.py", ["--device", "{device}"]),
}


def run_one(name: str, device: str, quick: bool, tmp: Path, timeout: float, threads: int | None = None) -> dict:
    script, extra = BENCHMARKS[name]
    out = tmp / f"{name}.json"
    args = [a.format(device=device, threads=f"--threads={threads}" if threads else "") for a in extra]
    cmd = [sys.executable, str(HERE / script), *(a for a in args if a), "--out", str(out)]
    if quick:
        cmd.append("--quick")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "wall_s": time.perf_counter() - t0, "command": _shown(cmd)}
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not out.is_file():
        return {"status": "error", "returncode": proc.returncode, "wall_s": wall, "command": _shown(cmd),
                "error": "\n".join(proc.stderr.strip().splitlines()[-10:])}
    return {"status": "ok", "wall_s": wall, "command": _shown(cmd), "result": json.loads(out.read_text())}


def _shown(cmd: list[str]) -> str:
    """The command as a reader would type it (``python benchmarks/X.py ...``, no temporary paths)."""
    shown, skip = ["python"], False
    for a in cmd[1:]:
        if skip:
            skip = False
            continue
        if a == "--out":
            skip = True
            continue
        shown.append(str(Path(a).relative_to(HERE.parent)) if a.startswith(str(HERE)) else a)
    return " ".join(shown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu (default) | cuda")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="each benchmark's --quick mode")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for train_throughput and synthesis_latency (default: torch's)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark (default 1800)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)

    names = list(BENCHMARKS) if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"--only: unknown benchmark {unknown[0]!r} (choose from {', '.join(BENCHMARKS)})")
    with tempfile.TemporaryDirectory(prefix="synthseq_bench_") as tmp:
        results = {}
        for n in names:
            print(f"[run_all] {n} ...", file=sys.stderr, flush=True)
            results[n] = run_one(n, args.device, args.quick, Path(tmp), args.timeout, args.threads)
            print(f"[run_all] {n}: {results[n]['status']} in {results[n]['wall_s']:.1f} s", file=sys.stderr,
                  flush=True)
    emit({"benchmark": "run_all", "environment": environment(args.device), "quick": args.quick,
          "results": results}, args.out)
    return 0 if all(r["status"] == "ok" for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
