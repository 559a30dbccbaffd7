"""Time to quality on the CPU: held-out SSIM and lesion contrast recovery of the demo's pix2pix against training
wall-clock time and steps.

It runs what ``synthseq demo`` runs on a CPU (the tiny-preset phantom, 24 subjects, ``configs/pix2pix_cpu_tiny.yaml``,
the same subject split) and keeps a copy of the run's ``last.pt`` each time the loop writes it
(``train.ckpt_every`` steps), with the training wall-clock time and the process's CPU time at that moment (training
runs on one thread, so CPU time is the wall-clock time an idle core would take; on a shared machine wall-clock
time grows with the load, CPU time much less). After training, every snapshot
synthesizes the held-out TEST subjects and is scored by :func:`synthseq.evaluation.evaluate_paths` exactly as the
demo scores its final model (body mask, normalized space, ``data_range = 2.0``, means over subjects with 95 %
bootstrap CIs; baselines fit on the training subjects). Wall-clock time is that of training alone (validation and
checkpoint writing included, as a user waits for them; the scoring afterwards is not).

Outputs: JSON (``--out``; one row per snapshot: step, seconds, SSIM / MAE / PSNR with CIs, ``cr_<class>`` contrast
recovery means, their mean over classes) and a PNG figure (``--figure``): SSIM and contrast recovery against minutes.

    python benchmarks/learning_curve.py --out /tmp/lc/curve.json --figure docs/learning_curve.png   # ~10 min, 1 core
    python benchmarks/learning_curve.py --quick --out /tmp/lc.json --figure /tmp/lc.png                # seconds
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from _common import ROOT, emit, environment

from synthseq.evaluation.scoring import METHOD  # the summary's name for the model's own rows

CONFIG = ROOT / "configs" / "pix2pix_cpu_tiny.yaml"
#: quick mode: a 4-subject phantom and a very small U-Net (seconds; for tests)
QUICK_OVERRIDES = ["model.generator_kwargs.base_channels=4", "model.generator_kwargs.num_downs=5",
                   "model.discriminator_kwargs.base_channels=4", "data.image_size=32", "train.batch_size=2",
                   "data.val_fraction=0.25", "data.test_fraction=0.25"]


class Snapshots:
    """Wraps the loop's ``save_checkpoint``: every write of ``last.pt`` is also copied to ``DIR/step_NNNNNN.pt``
    and timestamped (seconds since :meth:`start`)."""

    def __init__(self, folder: Path, save) -> None:
        self.folder, self._save, self.rows, self.t0 = folder, save, [], None
        folder.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self.t0, self.c0 = time.perf_counter(), time.process_time()

    def __call__(self, state, path):
        written = self._save(state, path)
        if Path(path).name == "last.pt":
            elapsed = time.perf_counter() - self.t0  # before the copy: the copy is the benchmark's, not training's
            cpu = time.process_time() - self.c0  # CPU seconds of this (one-thread) process: what load cannot inflate
            snap = self.folder / f"step_{int(state['step']):06d}.pt"
            shutil.copyfile(path, snap)
            self.rows.append({"step": int(state["step"]), "train_seconds": elapsed, "train_cpu_seconds": cpu,
                              "checkpoint": str(snap)})
            # kept as it grows, so that --rescore can score a finished run again without training it again
            (self.folder / "snapshots.json").write_text(json.dumps(self.rows, indent=1))
        return written


def train_with_snapshots(cfg, snap_dir: Path) -> tuple[Path, list[dict]]:
    """Run ``cfg`` with the loop's checkpoint writer wrapped by :class:`Snapshots`; return the run directory and the
    snapshot rows (step, training seconds, checkpoint path)."""
    from synthseq.training import loop, run

    snaps = Snapshots(snap_dir, loop.save_checkpoint)
    loop.save_checkpoint = snaps
    try:
        snaps.start()
        run_dir = Path(run(cfg))
    finally:
        loop.save_checkpoint = snaps._save
    return run_dir, snaps.rows


def score_snapshot(ckpt: Path, phantom: Path, test_ids: list[str], train_ids: list[str], work: Path,
                   seed: int) -> dict:
    """Synthesize the test subjects with ``ckpt`` and score them as the demo does; returns the summary's
    ``methods`` block (pix2pix and baselines: metric -> {mean, low, high, n ...})."""
    from synthseq.evaluation import evaluate_paths
    from synthseq.synthesis import Synthesizer, synthesize_path

    pred = work / "pred"
    synth = Synthesizer.from_checkpoint(ckpt, device="cpu")
    for sid in test_ids:
        synthesize_path(ckpt, phantom / sid / f"{sid}_T2w.nii.gz", pred / f"{sid}_pseudoSTIR.nii.gz",
                        synthesizer=synth, overwrite=True)
    evaluate_paths(pred, phantom, work / "eval", inputs=phantom, seed=seed, train_subjects=train_ids,
                   use_lpips=False)
    return json.loads((work / "eval" / "summary.json").read_text())["methods"]


def _mean(block: dict | None) -> float | None:
    return None if not block else block.get("mean")


def curve_row(step: int, seconds: float, methods: dict, cpu_seconds: float | None = None) -> dict:
    """One row of the curve from an evaluation summary's ``methods`` block."""
    ours = methods[METHOD]
    cr = {k: _mean(v) for k, v in sorted(ours.items()) if k.startswith("cr_")}
    finite = [v for v in cr.values() if v is not None]
    return {
        "step": step, "train_seconds": seconds, "train_minutes": seconds / 60.0, "train_cpu_seconds": cpu_seconds,
        "train_cpu_minutes": None if cpu_seconds is None else cpu_seconds / 60.0,
        **{m: {"mean": _mean(ours.get(m)), "low": (ours.get(m) or {}).get("ci_low"),
               "high": (ours.get(m) or {}).get("ci_high"), "n": (ours.get(m) or {}).get("n")}
           for m in ("ssim", "mae", "psnr")},
        "contrast_recovery": cr,
        "contrast_recovery_mean_over_classes": sum(finite) / len(finite) if finite else None,
    }


def plot(result: dict, path: Path) -> Path:
    """Two panels against training minutes: held-out SSIM (with CI band and the baselines' SSIM) and each lesion
    class's contrast recovery; a top axis gives steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from synthseq.utils import atomic_path

    rows = result["curve"]
    cpu = all(r.get("train_cpu_minutes") is not None for r in rows)
    x = [r["train_cpu_minutes"] if cpu else r["train_minutes"] for r in rows]
    xlabel = ("training time (CPU minutes of its one thread)" if cpu
              else "training wall-clock (min, 1 CPU thread)")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ssim = [r["ssim"]["mean"] for r in rows]
    a1.plot(x, ssim, "o-", color="C0", label="pix2pix (held-out test)")
    lo, hi = [r["ssim"]["low"] for r in rows], [r["ssim"]["high"] for r in rows]
    if all(v is not None for v in lo + hi):
        a1.fill_between(x, lo, hi, color="C0", alpha=0.2, label="95 % bootstrap CI")
    for i, (name, v) in enumerate(sorted(result.get("baselines_ssim", {}).items())):
        if v is not None:
            a1.axhline(v, ls="--", lw=1, color=f"C{i + 2}", label=name)
    a1.set_xlabel(xlabel)
    a1.set_ylabel("SSIM vs real STIR")
    a1.legend(fontsize=7, loc="lower right")
    a1.grid(alpha=0.3)
    classes = sorted({k for r in rows for k in r["contrast_recovery"]})
    for i, c in enumerate(classes):
        ys = [r["contrast_recovery"].get(c) for r in rows]
        pts = [(xx, y) for xx, y in zip(x, ys) if y is not None]
        if pts:
            a2.plot(*zip(*pts), "o-", ms=3, color=f"C{i}", label=c[3:])
    a2.axhline(1.0, color="k", lw=0.8, ls=":")
    a2.set_xlabel(xlabel)
    a2.set_ylabel("lesion contrast recovery (1 = real STIR)")
    a2.legend(fontsize=7, loc="best")
    a2.grid(alpha=0.3)
    steps = [r["step"] for r in rows]
    for ax in (a1, a2):
        top = ax.secondary_xaxis("top", functions=(lambda m: m, lambda m: m))
        top.set_xticks(x[:: max(1, len(x) // 5)], [str(s) for s in steps[:: max(1, len(x) // 5)]])
        top.set_xlabel("steps", fontsize=8)
    fig.suptitle(f"pix2pix demo config ({result['config']}), {result['n_test']} held-out subjects", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the config's, 3000)")
    parser.add_argument("--every", type=int, default=None, help="snapshot every N steps (default 250; quick 10)")
    parser.add_argument("--subjects", type=int, default=None, help="phantom subjects (default 24 as the demo)")
    parser.add_argument("--seed", type=int, default=0, help="phantom, split and training seed (default 0)")
    parser.add_argument("--work", default=None, help="keep the phantom, run and snapshots here (default: temp)")
    parser.add_argument("--quick", action="store_true", help="tiny phantom and model, 20 steps (seconds; tests)")
    parser.add_argument("--rescore", action="store_true",
                        help="score the snapshots already in --work again (no training)")
    parser.add_argument("--figure", default=None, help="write the PNG figure here")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)

    import torch

    # everything the run needs is imported before training starts: a later edit of the tree cannot break scoring
    import synthseq.evaluation  # noqa: F401
    import synthseq.synthesis  # noqa: F401
    from synthseq.config import load_config
    from synthseq.demo import plan_for
    from synthseq.phantom import generate_dataset

    if args.rescore and not args.work:
        parser.error("--rescore needs --work (the folder of an earlier run)")

    plan = plan_for("cpu")
    subjects = args.subjects or (4 if args.quick else plan.subjects)
    every = args.every or (10 if args.quick else 250)
    torch.set_num_threads(1)  # the config trains on one thread; scoring does too, so nothing competes
    with tempfile.TemporaryDirectory(prefix="synthseq_lc_") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        phantom = work / "phantom"
        if not (phantom / "dataset.json").is_file():
            generate_dataset(phantom, subjects=subjects, seed=args.seed, preset=plan.preset, progress=False)
        overrides = [f"data.root={phantom}", f"train.out_dir={work / 'run'}", "train.device=cpu",
                     f"train.seed={args.seed}", f"train.ckpt_every={every}", "train.cpu_threads=1",
                     *(QUICK_OVERRIDES if args.quick else [])]
        if args.steps or args.quick:
            overrides.append(f"train.steps={args.steps or 20}")
        if args.quick:
            overrides += [f"train.val_every={every}", "train.log_every=5", "train.image_every=1000000"]
        cfg = load_config(plan.config, overrides)
        snap_dir = work / "snapshots"
        if args.rescore:
            run_dir, snaps, train_wall = work / "run", json.loads((snap_dir / "snapshots.json").read_text()), None
        else:
            if (work / "run").exists():
                shutil.rmtree(work / "run")
            if snap_dir.exists():
                shutil.rmtree(snap_dir)
            t0 = time.perf_counter()
            run_dir, snaps = train_with_snapshots(cfg, snap_dir)
            train_wall = time.perf_counter() - t0
        splits = json.loads((run_dir / "splits.json").read_text())
        rows, baselines, t1 = [], {}, time.perf_counter()
        for s in snaps:
            methods = score_snapshot(s["checkpoint"], phantom, list(splits["test"]), list(splits["train"]),
                                     work / "score", args.seed)
            rows.append(curve_row(s["step"], s["train_seconds"], methods, s.get("train_cpu_seconds")))
            baselines = {m: _mean(v.get("ssim")) for m, v in methods.items() if m != METHOD}
        score_wall = time.perf_counter() - t1
        val_log = run_dir / "metrics.jsonl"
        validation = [json.loads(line) for line in val_log.read_text().splitlines() if line.strip()] \
            if val_log.is_file() else []

    best = max(rows, key=lambda r: r["ssim"]["mean"] or -1.0) if rows else None
    final = rows[-1] if rows else None
    # the first snapshot whose SSIM is within 0.02 of the final one: "how long until more training stops paying"
    near = next((r for r in rows if final and r["ssim"]["mean"] is not None
                 and r["ssim"]["mean"] >= final["ssim"]["mean"] - 0.02), None)
    result = {
        "benchmark": "learning_curve",
        "environment": environment("cpu"),
        "quick": args.quick,
        "config": plan.config.name,
        "overrides": [o for o in overrides if not o.startswith(("data.root=", "train.out_dir="))],
        "phantom": {"preset": plan.preset, "subjects": subjects, "seed": args.seed},
        "steps": cfg.train.steps,
        "snapshot_every": every,
        "n_train": len(splits["train"]), "n_val": len(splits["val"]), "n_test": len(splits["test"]),
        "train_wall_s": train_wall,
        "score_wall_s": score_wall,
        "curve": rows,
        "baselines_ssim": baselines,
        "best": None if best is None else {"step": best["step"], "train_minutes": best["train_minutes"],
                                           "train_cpu_minutes": best["train_cpu_minutes"],
                                           "ssim": best["ssim"]["mean"]},
        "within_0.02_ssim_of_final": None if near is None else {"step": near["step"],
                                                                 "train_minutes": near["train_minutes"],
                                                                 "train_cpu_minutes": near["train_cpu_minutes"]},
        "validation_log": validation,
    }
    if args.figure:
        result["figure"] = str(plot(result, Path(args.figure)))
    emit(result, args.out)
    return result


if __name__ == "__main__":
    main()
