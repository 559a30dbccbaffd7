"""PNG figures of the downstream models: Grad-CAM overlays, calibration, SHAP, utility comparison.

Every function writes one PNG atomically and returns its path. Matplotlib runs headless (Agg backend).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..utils import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    plt = _plt()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def gradcam_overlay(image: np.ndarray, cams: dict[str, np.ndarray], probs: dict[str, float], title: str,
                    path: str | Path) -> Path:
    """Sagittal ``image`` ``(H, W)`` (rows superior -> inferior) with one Grad-CAM heat map ``(H, W)`` in [0, 1]
    per label overlaid, titled with the label's predicted probability."""
    plt = _plt()
    n = len(cams) + 1
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.9))
    axes = np.atleast_1d(axes)
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title(title, fontsize=8)
    for ax, (label, cam) in zip(axes[1:], cams.items()):
        ax.imshow(image, cmap="gray")
        ax.imshow(cam, cmap="jet", alpha=0.4, vmin=0, vmax=1)
        ax.set_title(f"{label} p={probs[label]:.2f}", fontsize=8)
    for ax in axes:
        ax.axis("off")
    return _save(fig, path)


def calibration_plot(curves: dict[str, dict[str, list[float]]], path: str | Path, title: str = "") -> Path:
    """Reliability diagram: one line per model from :func:`~synthseq.downstream.stats.calibration_bins`."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    for name, c in curves.items():
        ax.plot(c["predicted"], c["observed"], "o-", label=name)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def shap_summary_plot(values: np.ndarray, X: np.ndarray, names: list[str], path: str | Path) -> Path:
    """SHAP beeswarm summary: ``values`` and ``X`` are ``(N, F)``; contributions in log-odds."""
    import shap

    plt = _plt()
    shap.summary_plot(values, X, feature_names=names, show=False, max_display=min(15, len(names)),
                      rng=np.random.default_rng(0))
    fig = plt.gcf()
    return _save(fig, path)


def shap_patient_plot(values: np.ndarray, base: float, x: np.ndarray, names: list[str], title: str,
                      path: str | Path) -> Path:
    """One patient's explanation: a waterfall of contributions ``(F,)`` from ``base`` to the model output."""
    import shap

    plt = _plt()
    exp = shap.Explanation(values=values, base_values=base, data=x, feature_names=names)
    shap.plots.waterfall(exp, show=False, max_display=min(12, len(names)))
    fig = plt.gcf()
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def utility_plot(rows: list[dict], path: str | Path) -> Path:
    """Grouped bars: AUC with 95% CI per task (rows with keys task, input, auc, auc_ci_low, auc_ci_high)."""
    plt = _plt()
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    inputs = list(dict.fromkeys(r["input"] for r in rows))
    width = 0.8 / max(len(inputs), 1)
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(tasks), 3.4))
    for j, inp in enumerate(inputs):
        xs, ys, lo, hi = [], [], [], []
        for i, task in enumerate(tasks):
            r = next((r for r in rows if r["task"] == task and r["input"] == inp), None)
            if r is None or math.isnan(r["auc"]):
                continue
            xs.append(i + (j - (len(inputs) - 1) / 2) * width)
            ys.append(r["auc"])
            lo.append(r["auc"] - r["auc_ci_low"] if not math.isnan(r["auc_ci_low"]) else 0.0)
            hi.append(r["auc_ci_high"] - r["auc"] if not math.isnan(r["auc_ci_high"]) else 0.0)
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=inp)
    ax.axhline(0.5, color="k", lw=0.8, ls=":")
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks, rotation=20, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("held-out AUC (95% CI)")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)
