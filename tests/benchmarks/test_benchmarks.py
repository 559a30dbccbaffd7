"""The benchmark scripts run in --quick mode on the CPU and write valid JSON with the expected keys.

Each script runs in its own process, exactly as ``make bench`` / ``run_all.py`` runs it (they set thread counts,
which must not leak into the test process). No test asserts a timing: only that the figures exist, are positive
and finite, and are consistent with each other (a ratio is the quotient of the rates it names).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def positive(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


def check_environment(env: dict, device: str) -> None:
    for key in ("torch", "device", "device_name", "cpu_threads", "date", "commit"):
        assert key in env
    assert env["device"] == device
    assert env["torch"].split(".")[0].isdigit()


def test_train_throughput_quick(tmp_path, run_benchmark):
    r = run_benchmark("train_throughput", tmp_path, "--device", "cpu", "--quick", "--threads", "1")
    assert r["benchmark"] == "train_throughput" and r["quick"] is True
    check_environment(r["environment"], "cpu")
    assert r["environment"]["cpu_threads"] == 1  # --threads reached torch
    assert set(r["models"]) == {"pix2pix", "cyclegan"}
    for kind, m in r["models"].items():
        ours, classic = m["synthseq"], m["classic"]
        # the classic reference really is batch 1, fp32, eager, no channels_last
        assert (classic["batch"], classic["dtype"], classic["compile"], classic["channels_last"]) == (
            1, "float32", False, False)
        assert ours["batch"] > 1 and ours["dtype"] == "float32"  # no autocast on the CPU
        for key in ("images_per_s", "step_ms", "images_per_s_without_data", "step_ms_without_data",
                    "data_images_per_s", "data_ms_per_batch"):
            assert positive(ours[key]), (kind, key, ours[key])
        assert positive(classic["images_per_s"]) and positive(classic["step_ms"])
        # images/s and step time describe the same windows: rate = batch / step time
        assert ours["images_per_s"] == pytest.approx(1000 * ours["batch"] / ours["step_ms"], rel=1e-6)
        assert m["ratio"] == pytest.approx(ours["images_per_s"] / classic["images_per_s"])
        assert 0.0 <= ours["data_share_of_step"] < 1.0
        assert m["target_ratio"] == {"pix2pix": 40.0, "cyclegan": 10.0}[kind]
        assert m["meets_target"] is None  # targets are judged on an H100 at 256x256 only


def test_train_throughput_rejects_bad_size(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "train_throughput.py"), "--size", "48", "--quick"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "--size" in proc.stderr


def test_synthesis_latency_quick(tmp_path, run_benchmark):
    r = run_benchmark("synthesis_latency", tmp_path, "--device", "cpu", "--quick", "--threads", "1")
    assert r["benchmark"] == "synthesis_latency"
    check_environment(r["environment"], "cpu")
    assert positive(r["checkpoint_load_s"])
    case = r["file_to_file"]["4x64x64"]
    assert case["shape"] == [4, 64, 64]
    assert positive(case["seconds"])
    assert set(case["stages"]) == {"load_s", "normalize_infer_s", "write_s"}
    assert all(positive(v) for v in case["stages"].values())
    assert "skipped" in r["file_to_file"]["real_384x195x52"]
    (rate,) = r["throughput"].values()
    assert rate["size"] == 64 and positive(rate["slices_per_s"])
    assert rate["slices_per_s"] == pytest.approx(1000 * rate["batch"] / rate["ms_per_batch"], rel=1e-6)
    assert set(r["targets"]) == {"slices_per_s_256_cuda", "file_to_file_16x512x512_gpu_s",
                                 "file_to_file_16x256x256_cpu_s"}
    assert all(t["meets_target"] is None for t in r["targets"].values())  # quick mode judges nothing


def test_phantom_speed_quick(tmp_path, run_benchmark):
    r = run_benchmark("phantom_speed", tmp_path, "--quick")
    assert r["benchmark"] == "phantom_speed"
    assert r["environment"]["cpu_threads"] == 1  # a per-core figure
    rates = r["subjects_per_s_per_core"]
    assert set(rates) == {"tiny", "default", "default_to_disk"} and all(positive(v) for v in rates.values())
    assert r["ratio_default_to_tiny"] == pytest.approx(rates["default"] / rates["tiny"])
    assert r["meets_target"] == (rates["default"] >= r["target_default_subjects_per_s_per_core"])
    assert r["default_shape"] == [256, 256, 16]
    assert set(r["faithful_subjects_per_s_per_core"]) == {"default_faithful"}  # --quick: one realistic case
    assert positive(r["faithful_subjects_per_s_per_core"]["default_faithful"])


def test_ddp_scaling_quick(tmp_path, run_benchmark):
    r = run_benchmark("ddp_scaling", tmp_path, "--quick", "--nprocs", "1,2")
    assert r["benchmark"] == "ddp_scaling" and r["backend"] == "gloo"
    assert set(r["runs"]) == {"1", "2"}
    for n, run in r["runs"].items():
        assert run["nproc"] == int(n)
        assert len(run["windows_images_per_s"]) == r["steps"] // 2  # one logged window per 2 steps (quick)
        assert positive(run["images_per_s"])
    assert r["runs"]["1"]["speedup"] == pytest.approx(1.0)
    assert r["runs"]["2"]["speedup"] == pytest.approx(r["runs"]["2"]["images_per_s"] / r["runs"]["1"]["images_per_s"])
    assert r["runs"]["2"]["efficiency"] == pytest.approx(r["runs"]["2"]["speedup"] / 2)
    assert "torchrun --standalone --nproc_per_node 2 train.py" in r["command"]
    assert r["independent_control"] is None and r["skipped_nprocs"] == []  # no control run in quick mode


def test_run_all_collects_results_and_rejects_unknown_names(tmp_path):
    out = tmp_path / "all.json"
    proc = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--quick", "--only", "phantom_speed",
                           "--out", str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert set(r["results"]) == {"phantom_speed"}
    ps = r["results"]["phantom_speed"]
    assert ps["status"] == "ok" and ps["result"]["benchmark"] == "phantom_speed"
    assert ps["command"] == "python benchmarks/phantom_speed.py --quick"

    bad = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--only", "nope"], capture_output=True,
                         text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "nope" in bad.stderr


def test_synthesis_latency_compares_cpu_engines(tmp_path, run_benchmark):
    r = run_benchmark("synthesis_latency", tmp_path, "--device", "cpu", "--quick", "--threads", "1", "--cases", "x",
                   "--engines", "torch,onnxruntime")
    e = r["engines"]
    assert e["reference"] == "torch_nchw" and e["shape"] == [4, 64, 64] and e["repeats"] == 1
    assert set(e["engines"]) == {"torch_nchw", "torch", "onnxruntime"}  # the reference is always timed
    ref = e["engines"]["torch_nchw"]
    assert ref["max_abs_diff_model_units"] == 0.0 and ref["speedup_vs_torch_nchw"] == pytest.approx(1.0)
    for name, eng in e["engines"].items():
        assert positive(eng["seconds"]) and positive(eng["setup_s"]), name
        assert eng["min"] <= eng["seconds"] <= eng["max"]
        assert eng["within_1e-3"] and 0.0 <= eng["max_abs_diff_model_units"] <= 1e-3, name
        assert eng["speedup_vs_torch_nchw"] == pytest.approx(ref["seconds"] / eng["seconds"])
    assert e["fastest"] in e["engines"]
    assert e["fastest_seconds"] == min(v["seconds"] for v in e["engines"].values())
    load = r["load_average"]
    assert len(load["before"]) == len(load["after"]) == 3 and load["cpu_count"] >= 1


def test_learning_curve_quick(tmp_path, run_benchmark):
    fig = tmp_path / "curve.png"
    r = run_benchmark("learning_curve", tmp_path, "--quick", "--figure", str(fig))
    assert r["benchmark"] == "learning_curve" and r["config"] == "pix2pix_cpu_tiny.yaml"
    check_environment(r["environment"], "cpu")
    assert r["steps"] == 20 and r["snapshot_every"] == 10
    assert [row["step"] for row in r["curve"]] == [10, 20]  # one snapshot per checkpoint write
    assert r["n_test"] >= 1 and r["n_train"] >= 1
    prev = 0.0
    for row in r["curve"]:
        assert -1.0 <= row["ssim"]["mean"] <= 1.0 and positive(row["mae"]["mean"])
        assert row["train_seconds"] > prev and positive(row["train_cpu_seconds"])
        assert row["train_minutes"] == pytest.approx(row["train_seconds"] / 60)
        prev = row["train_seconds"]
        assert row["contrast_recovery"] and all(k.startswith("cr_") for k in row["contrast_recovery"])
    assert r["best"]["ssim"] == max(row["ssim"]["mean"] for row in r["curve"])
    assert set(r["baselines_ssim"]) >= {"histmatch", "linear_pooled"}
    assert r["validation_log"] and r["validation_log"][-1]["step"] == 20
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and r["figure"] == str(fig)


def test_gpu_check_cpu_smoke_writes_json_and_survives_a_broken_part(tmp_path):
    """The whole GPU check at tiny size on the CPU, with one part broken on purpose: that part is reported as
    failed (exit 1) and every other part still runs and writes its JSON."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_BREAK": "synthesis_latency",
           "GPU_CHECK_WORK": str(tmp_path / "work")}
    proc = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), "--cpu-smoke", "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    r = json.loads((out / "gpu_check.json").read_text())
    assert r["benchmark"] == "gpu_check" and r["smoke"] is True and r["ok"] is False
    parts = r["parts"]
    assert set(parts) == {"install", "imports", "env", "pytest_gpu", "train_throughput", "synthesis_latency",
                          "phantom", "train", "synthesize", "evaluate"}
    assert parts["synthesis_latency"]["status"] == "failed" and parts["synthesis_latency"]["returncode"] == 3
    assert "broken on purpose" in "\n".join(parts["synthesis_latency"]["log_tail"])
    for name, p in parts.items():
        if name not in ("synthesis_latency", "install", "pytest_gpu"):
            assert p["status"] == "ok", (name, p)
    assert parts["install"]["status"] == "skipped"
    assert parts["pytest_gpu"]["status"] in ("ok", "no_tests")
    assert r["imports"]["missing"] == {}
    pt = r["pytest_gpu"]
    assert pt["tests"] >= 1 and pt["skipped"] == pt["tests"] and pt["failed"] == []  # CPU: gpu tests skip
    assert r["train_throughput"]["pix2pix"]["ratio"] > 0 and r["synthesis_latency"] is None
    assert r["training"]["steps_done"] == 12 and len(r["training"]["validation"]) == 2
    te = r["test"]
    assert te["n_subjects"] >= 1 and -1 <= te["ssim"]["mean"] <= 1 and positive(te["mae"]["mean"])
    assert set(te["baselines_ssim"]) >= {"histmatch", "linear_pooled"}
    assert "FAILED PARTS: synthesis_latency" in proc.stdout and "held-out test" in proc.stdout
    assert len(proc.stdout.splitlines()) <= 25  # one screen
