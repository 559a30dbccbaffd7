"""Figures: per-subject PNG montages (T2w | pseudo-STIR | STIR | |difference| | uncertainty)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import metrics as M
from ..data.normalize import normalize
from ..data.slicing import SagittalView
from ..utils import atomic_path
from .scoring import SubjectData, input_params, normalized_pair, resolve_pred_norm

DIFF_WINDOW = (0.0, 1.0)
UNCERTAINTY_WINDOW = (0.0, 0.25)
MONTAGE_SLICES = 2


def uncertainty_window(unc: np.ndarray, body: np.ndarray) -> tuple[float, float]:
    """Display window of an uncertainty map (normalized units): 0 to its 99th percentile inside the body."""
    vals = np.asarray(unc)[np.asarray(body, bool)]
    vals = vals[np.isfinite(vals)]
    hi = float(np.percentile(vals, 99)) if vals.size else UNCERTAINTY_WINDOW[1]
    return 0.0, hi if hi > 0 else UNCERTAINTY_WINDOW[1]


def _montage_slices(s: SubjectData, view: SagittalView, body_sl: np.ndarray) -> list[int]:
    """Canonical sagittal slice indices to show: the slices with the most lesion voxels, else the body centre."""
    if s.lesions is not None:
        les = view.to_slices(np.asarray(s.lesions) > 0)
        counts = les.reshape(les.shape[0], -1).sum(1)
        order = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
        if order:
            picked = [order[0]]
            for i in order[1:]:
                if len(picked) >= MONTAGE_SLICES:
                    break
                if all(abs(i - j) > 1 for j in picked):  # a different part of the lesion, not its neighbour
                    picked.append(i)
            return sorted(picked)
    counts = body_sl.reshape(body_sl.shape[0], -1).sum(1)
    idx = np.flatnonzero(counts)
    return [int(idx[len(idx) // 2])] if idx.size else [body_sl.shape[0] // 2]


def write_montage(s: SubjectData, path: Path, pred_norm: str = "auto") -> Path:
    """PNG: rows = lesion slices; columns T2w | pseudo-STIR | STIR | |difference| | uncertainty (where present)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    body, _ = s.body_mask()
    view = SagittalView.from_affine(s.target.affine)
    pred_n, target_n, pred_params = normalized_pair(s.pred, s, body, input_params(s) if resolve_pred_norm(pred_norm, s) == "input" else None)
    panels: list[tuple[str, np.ndarray, tuple[float, float], str]] = []
    if s.t2w is not None:
        t2_n = normalize(s.t2w.data, "percentile", M.METRIC_PERCENTILES, mask=body)[0]
        panels.append(("T2w", view.to_slices(t2_n), (-1, 1), "gray"))
    panels += [("pseudo-STIR", view.to_slices(pred_n), (-1, 1), "gray"),
               ("STIR", view.to_slices(target_n), (-1, 1), "gray"),
               ("|difference|", view.to_slices(np.abs(pred_n - target_n) * body), DIFF_WINDOW, "magma")]
    if s.uncertainty is not None:
        unc = np.asarray(s.uncertainty.data, np.float64) / pred_params.scale  # std in normalized units
        panels.append(("uncertainty (std)", view.to_slices(unc), uncertainty_window(unc, body), "viridis"))
    body_sl = view.to_slices(body)
    rows = _montage_slices(s, view, body_sl)
    lesion_sl = view.to_slices(np.asarray(s.lesions) > 0) if s.lesions is not None else None
    dh, dw = view.inplane_spacing(s.target.spacing)
    h, w = body_sl.shape[1:]
    cell = 2.4
    fig, axes = plt.subplots(len(rows), len(panels), squeeze=False,
                             figsize=(cell * len(panels), cell * len(rows) * (h * dh) / max(w * dw, 1e-6) + 0.4))
    for r, idx in enumerate(rows):
        for c, (title, sl, (vmin, vmax), cmap) in enumerate(panels):
            ax = axes[r][c]
            im = ax.imshow(sl[idx], cmap=cmap, vmin=vmin, vmax=vmax, aspect=dh / dw, interpolation="nearest")
            if r == len(rows) - 1:  # one colour bar per column, under its last row
                fig.colorbar(im, ax=ax, orientation="horizontal", fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
            if title == "STIR" and lesion_sl is not None and lesion_sl[idx].any():
                ax.contour(lesion_sl[idx].astype(float), levels=[0.5], colors="red", linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"slice {idx}", fontsize=8)
    fig.suptitle(s.subject, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path

