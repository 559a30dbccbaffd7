"""Outcome page latency: median and 95th percentile of ``POST /api/predict`` with SHAP, over real HTTP.

Setup (in the same run): a cohort of ``--subjects`` patients simulated by the phantom's cohort model
(:func:`synthseq.phantom.cohort.simulate_cohort`, clinical variables only), two outcome models fitted on it with
``synthseq.downstream.outcome.fit_outcome`` (ambulation at discharge and AIS improvement, estimator
``--model``, default settings: 150 boosting iterations, a bootstrap ensemble of 20 refits for the interval), and
the page (:func:`synthseq.downstream.web.app.create_app`) served by its threaded WSGI server on the loopback.
Each request is one patient (rows of the cohort in turn) with ``"explain": true``: validation, both models'
probabilities, their 20-member intervals, per-patient SHAP values and the van Middendorp score; timed from
sending the request to having parsed the JSON answer, a new connection per request (what the page does).
No image. Target: median < 100 ms on 2 CPU cores.

    python benchmarks/outcome_app.py --threads 2
    python benchmarks/outcome_app.py --threads 1 --model catboost
    python benchmarks/outcome_app.py --quick            # seconds: small cohort, 20 requests (tests)
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

TARGET_MEDIAN_MS = 100.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (OpenMP / BLAS) for the estimators")
    ap.add_argument("--model", default="hgb", choices=["hgb", "logreg", "catboost"])
    ap.add_argument("--subjects", type=int, default=600)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.quick:
        args.subjects, args.requests, args.warmup = 120, 20, 3
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy / sklearn start their pools

    import torch
    from _common import emit, environment

    torch.set_num_threads(args.threads)
    from synthseq.downstream.outcome import OutcomeConfig, fit_outcome
    from synthseq.downstream.web.app import OutcomeServerThread, create_app
    from synthseq.downstream.web.fields import CLINICAL_FIELDS
    from synthseq.phantom.cohort import COLUMNS, simulate_cohort

    with tempfile.TemporaryDirectory(prefix="synthseq-bench-outcome-") as tmp:
        tmp = Path(tmp)
        root = tmp / "cohort"
        root.mkdir()
        rows = simulate_cohort(args.subjects, seed=0)
        with open(root / "cohort.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(COLUMNS))
            w.writeheader()
            w.writerows(rows)
        t0 = time.perf_counter()
        models = []
        for target in ("ambulation_discharge", "ais_improvement"):
            cfg = OutcomeConfig(data=str(root), out_dir=str(tmp / target), target=target, model=args.model,
                                n_boot=200, explain_subjects=0, compare=[args.model])
            fit_outcome(cfg)
            models.append(str(tmp / target / "model.ssmodel"))
        fit_s = time.perf_counter() - t0
        app = create_app(models)
        patients = [{k: r[k] for k in CLINICAL_FIELDS} for r in rows]
        times, statuses = [], {}
        with OutcomeServerThread(app) as server:
            host, port = server.server.host, server.server.port
            for i in range(args.warmup + args.requests):
                body = json.dumps({"patient": patients[i % len(patients)], "explain": True})
                t = time.perf_counter()
                conn = http.client.HTTPConnection(host, port, timeout=30)
                conn.request("POST", "/api/predict", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                answer = json.loads(resp.read())
                dt = time.perf_counter() - t
                conn.close()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
                if resp.status != 200 or len(answer["results"]) != 2 or "shap" not in answer["results"][0]:
                    raise SystemExit(f"request {i}: HTTP {resp.status}: {str(answer)[:300]}")
                if i >= args.warmup:
                    times.append(dt * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, int(round(0.95 * len(times))) - 1)]
    result = {
        "benchmark": "outcome_app", "environment": environment("cpu"), "threads": args.threads,
        "estimator": args.model, "models": ["ambulation_discharge", "ais_improvement"], "n_ensemble": 20,
        "cohort_subjects": args.subjects, "requests": len(times), "warmup": args.warmup, "http_status": statuses,
        "fit_s": round(fit_s, 2),
        "predict_ms": {"median": round(statistics.median(times), 2), "p95": round(p95, 2),
                       "mean": round(statistics.fmean(times), 2), "min": round(times[0], 2),
                       "max": round(times[-1], 2)},
        "target_median_ms": TARGET_MEDIAN_MS, "meets_target": statistics.median(times) < TARGET_MEDIAN_MS,
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
