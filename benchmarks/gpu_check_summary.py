"""Gather what ``benchmarks/gpu_check.sh`` wrote under OUT into ``OUT/gpu_check.json`` and print a one-screen summary.

Reads ``OUT/parts/*.json`` (status, wall time, log tail of each part) and the parts' own results
(``pytest_gpu.xml``, ``train_throughput.json``, ``synthesis_latency.json``, ``train_log.jsonl``,
``train_metrics.jsonl``, ``eval_summary.json``); a missing or unreadable result is reported as such, never as a
figure. Exit status 0 when every part that ran succeeded.

    python benchmarks/gpu_check_summary.py OUT [--smoke 0|1] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

from _common import ROOT  # noqa: F401 - puts the checkout on sys.path (for synthseq.utils)

PART_ORDER = ("install", "imports", "env", "pytest_gpu", "train_throughput", "synthesis_latency", "phantom", "train",
              "synthesize", "evaluate")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_jsonl(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def pytest_counts(xml_path: Path) -> dict | None:
    """Counts and failing test ids from a junit XML file."""
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    out = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    out["passed"] = out["tests"] - out["failures"] - out["errors"] - out["skipped"]
    out["failed"] = [f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase")
                     if c.find("failure") is not None or c.find("error") is not None][:20]
    return out


def gather(out: Path, smoke: bool, seconds: float | None) -> dict:
    parts = {}
    for p in sorted((out / "parts").glob("*.json")):
        d = _read_json(p)
        if d:
            parts[d.get("part", p.stem)] = d
    parts = {k: parts[k] for k in (*PART_ORDER, *sorted(set(parts) - set(PART_ORDER))) if k in parts}
    if _get(parts, "pytest_gpu", "returncode") == 5:  # pytest: no test was collected / selected
        parts["pytest_gpu"]["status"] = "no_tests"

    tt = _read_json(out / "train_throughput.json")
    sl = _read_json(out / "synthesis_latency.json")
    ev = _read_json(out / "eval_summary.json")
    val = [r for r in _read_jsonl(out / "train_metrics.jsonl") if "ssim" in r]
    log = _read_jsonl(out / "train_log.jsonl")
    ours = _get(ev, "methods", "pseudo_stir") or {}
    if _get(parts, "train", "status") == "timeout" and val:
        # the time box ended training on purpose; validation had written best.pt by then
        parts["train"]["status"] = "time_boxed"
    training = {
        "steps_done": max((int(r["step"]) for r in log if "step" in r), default=None),
        "images_per_s_last": next((r.get("images_per_s") or r.get("img_s") for r in reversed(log)
                                   if (r.get("images_per_s") or r.get("img_s")) is not None), None),
        "stopped_by_time_box": _get(parts, "train", "status") in ("timeout", "time_boxed"),
        "validation": [{k: r.get(k) for k in ("step", "ssim", "mae", "psnr")} for r in val],
        "best_val_ssim": max((r["ssim"] for r in val if r.get("ssim") is not None), default=None),
    }
    test = None
    if ev:
        test = {
            "n_subjects": ev.get("n_subjects"),
            **{m: ours.get(m) for m in ("ssim", "mae", "psnr")},
            "lesion_contrast_recovery": {k: _get(ours, k, "mean") for k in sorted(ours) if k.startswith("cr_")},
            "baselines_ssim": {m: _get(v, "ssim", "mean") for m, v in ev.get("methods", {}).items()
                               if m != "pseudo_stir"},
        }
    result = {
        "benchmark": "gpu_check",
        "smoke": smoke,
        "seconds": seconds,
        "environment": _read_json(out / "env.json"),
        "imports": _read_json(out / "imports.json"),
        "parts": parts,
        "pytest_gpu": pytest_counts(out / "pytest_gpu.xml"),
        "train_throughput": None if tt is None else {
            k: {"ratio": _get(m, "ratio"), "images_per_s": _get(m, "synthseq", "images_per_s"),
                "classic_images_per_s": _get(m, "classic", "images_per_s"),
                "data_share_of_step": _get(m, "synthseq", "data_share_of_step"), "meets_target": m.get("meets_target")}
            for k, m in (tt.get("models") or {}).items()},
        "synthesis_latency": None if sl is None else {
            "slices_per_s": {k: v.get("slices_per_s") for k, v in (sl.get("throughput") or {}).items()},
            "file_to_file_s": {k: v.get("seconds") for k, v in (sl.get("file_to_file") or {}).items()},
            "targets": sl.get("targets")},
        "training": training,
        "test": test,
        "ok": all(p.get("status") in ("ok", "skipped", "time_boxed") for p in parts.values()) and bool(parts),
    }
    return result


def _f(v, fmt="{:.3g}") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return fmt.format(v)


def _ci(d) -> str:
    if not isinstance(d, dict):
        return "n/a"
    return f"{_f(d.get('mean'))} ({_f(d.get('ci_low'))}-{_f(d.get('ci_high'))}, n={d.get('n', '?')})"


def render(r: dict) -> str:
    env = r.get("environment") or {}
    lines = [f"gpu_check {'(CPU smoke) ' if r['smoke'] else ''}on {env.get('device_name', '?')}, torch "
             f"{env.get('torch', '?')}, commit {env.get('commit', '?')}{' (dirty)' if env.get('dirty') else ''}, "
             f"{_f(r.get('seconds'), '{:.0f}')} s"]
    lines.append("parts: " + "  ".join(f"{k}={v.get('status')}({_f(v.get('wall_s'), '{:.0f}')}s)"
                                       for k, v in r["parts"].items()))
    miss = _get(r, "imports", "missing")
    if miss:
        lines.append(f"missing imports: {', '.join(miss)}")
    pt = r.get("pytest_gpu")
    if pt:
        lines.append(f"pytest -m gpu: {pt['passed']} passed, {pt['failures'] + pt['errors']} failed, "
                     f"{pt['skipped']} skipped" + (f"  [{'; '.join(pt['failed'][:3])}]" if pt["failed"] else ""))
    for kind, m in (r.get("train_throughput") or {}).items():
        lines.append(f"train {kind}: {_f(m['images_per_s'], '{:.0f}')} img/s (classic {_f(m['classic_images_per_s'])}),"
                     f" ratio {_f(m['ratio'])}x, data share {_f(m['data_share_of_step'])}, target met: "
                     f"{m['meets_target']}")
    sl = r.get("synthesis_latency")
    if sl:
        rates = ", ".join(f"{k} {_f(v, '{:.0f}')}" for k, v in sl["slices_per_s"].items())
        f2f = ", ".join(f"{k} {_f(v)} s" for k, v in sl["file_to_file_s"].items())
        met = {k: v.get("meets_target") for k, v in (sl.get("targets") or {}).items()}
        lines.append(f"synthesis slices/s: {rates}; file to file: {f2f}")
        lines.append(f"synthesis targets met: {met}")
    t = r["training"]
    lines.append(f"training (pix2pix_t2_stir): {t['steps_done']} steps"
                 f"{' (stopped by the time box)' if t['stopped_by_time_box'] else ''}, best val SSIM "
                 f"{_f(t['best_val_ssim'])}, last {_f(t['images_per_s_last'], '{:.0f}')} img/s")
    te = r.get("test")
    if te:
        lines.append(f"held-out test ({te['n_subjects']} subjects): SSIM {_ci(te['ssim'])}, MAE {_ci(te['mae'])}, "
                     f"PSNR {_ci(te['psnr'])}")
        cr = ", ".join(f"{k[3:]} {_f(v, '{:.2f}')}" for k, v in te["lesion_contrast_recovery"].items())
        lines.append(f"lesion contrast recovery: {cr or 'n/a'}")
        lines.append("baselines SSIM: " + ", ".join(f"{k} {_f(v)}" for k, v in te["baselines_ssim"].items()))
    bad = [k for k, v in r["parts"].items() if v.get("status") not in ("ok", "skipped")]
    lines.append("ALL PARTS OK" if not bad else f"FAILED PARTS: {', '.join(bad)} (see logs/<part>.log)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the OUT folder gpu_check.sh wrote")
    parser.add_argument("--smoke", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=None, help="wall time of the whole check")
    args = parser.parse_args(argv)
    from synthseq.utils import atomic_write_text

    r = gather(args.out, bool(args.smoke), args.seconds)
    atomic_write_text(args.out / "gpu_check.json", json.dumps(r, indent=2) + "\n")
    print(render(r))
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
