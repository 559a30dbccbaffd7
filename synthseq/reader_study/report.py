"""The analysis report: ``results.json``, ``figures.json`` (the numbers behind every plot), PNG plots,
``readings.csv`` (unblinded answers) and ``report.html``, all written atomically into ``OUT``.
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

import numpy as np

from ..utils import atomic_path, atomic_write_text
from . import layout
from .analysis import POOLED, analyze, load_readings

SOURCES = ("real", "synthetic")
COLORS = {"real": "#2e86de", "synthetic": "#e67e22"}


def _fmt(x, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _fmt_prop(p: dict) -> str:
    if p["estimate"] is None:
        return "–"
    return f"{p['estimate']:.2f} [{p['ci_low']:.2f}, {p['ci_high']:.2f}] ({p['k']}/{p['n']})"


def _err(p: dict) -> tuple[float, float]:
    if p["estimate"] is None:
        return 0.0, 0.0
    # max(0, .): a CI end can sit a rounding error inside the estimate at 0% or 100%
    return max(0.0, p["estimate"] - p["ci_low"]), max(0.0, p["ci_high"] - p["estimate"])


def _save_fig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def _figures(result: dict, readings: list[dict], out: Path) -> dict:
    """Draw every plot; return name -> {file, title, data} where data are the plotted numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = {}
    groups = list(result["turing"])

    # Turing-test accuracy with exact CIs against chance.
    acc = {g: result["turing"][g] for g in groups}
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(groups), 3.2))
    est = [acc[g]["estimate"] or 0.0 for g in groups]
    ax.bar(groups, est, yerr=np.array([_err(acc[g]) for g in groups]).T, capsize=4,
           color=["#7f8c8d" if g == POOLED else "#34495e" for g in groups])
    ax.axhline(0.5, ls="--", color="#c0392b", lw=1, label="chance")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (real vs synthetic)")
    ax.set_title("Visual Turing test (95% Clopper-Pearson CI)")
    ax.legend(loc="lower right")
    _save_fig(fig, out / "turing_accuracy.png")
    figures["turing_accuracy"] = {
        "file": "turing_accuracy.png", "title": "Accuracy of real-vs-synthetic calls per reader and pooled",
        "data": {g: {k: acc[g][k] for k in ("k", "n", "estimate", "ci_low", "ci_high", "p_value")}
                 for g in groups}}

    # Accuracy by stated confidence (pooled).
    by_conf = result["turing"][POOLED]["accuracy_by_confidence"]
    levels = list(by_conf)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.errorbar([int(lv) for lv in levels], [by_conf[lv]["estimate"] if by_conf[lv]["n"] else np.nan
                                             for lv in levels],
                yerr=np.array([_err(by_conf[lv]) for lv in levels]).T, fmt="o-", capsize=3)
    ax.axhline(0.5, ls="--", color="#c0392b", lw=1)
    ax.set_xlabel("stated confidence (1-5)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("Accuracy by confidence (pooled)")
    _save_fig(fig, out / "accuracy_by_confidence.png")
    figures["accuracy_by_confidence"] = {"file": "accuracy_by_confidence.png",
                                         "title": "Pooled accuracy at each confidence level", "data": by_conf}

    # Image quality, real vs synthetic.
    scores = {g: {s: [r["quality"] for r in readings if r["quality"] is not None and r["source"] == s
                      and (g == POOLED or r["reader"] == g)] for s in SOURCES} for g in groups}
    fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(groups), 3.2))
    for j, s in enumerate(SOURCES):
        pos = [i * 3 + j for i in range(len(groups))]
        data = [scores[g][s] or [np.nan] for g in groups]
        bp = ax.boxplot(data, positions=pos, widths=0.8, patch_artist=True, showfliers=False,
                        medianprops={"color": "black", "lw": 2})
        for patch in bp["boxes"]:
            patch.set_facecolor(COLORS[s])
            patch.set_alpha(0.5)
        jitter = np.random.default_rng(0)  # fixed: the same answers give the same picture
        for x, values in zip(pos, data):
            ax.scatter(x + jitter.uniform(-0.25, 0.25, len(values)), np.asarray(values) + jitter.uniform(
                -0.12, 0.12, len(values)), s=10, color=COLORS[s], edgecolor="black", linewidth=0.3, zorder=3)
        ax.plot([], [], color=COLORS[s], lw=6, label=s)
    ax.set_xticks([i * 3 + 0.5 for i in range(len(groups))], groups)
    ax.set_ylim(0.5, 5.5)
    ax.set_ylabel("image quality (1-5)")
    ax.set_title("Likert image quality")
    ax.legend(loc="lower right")
    _save_fig(fig, out / "likert_quality.png")
    figures["likert_quality"] = {"file": "likert_quality.png", "title": "Image-quality scores, real vs synthetic",
                                 "data": {g: {s: {"scores": scores[g][s],
                                                  **result["likert_quality"][g][s]} for s in SOURCES}
                                          for g in groups}}

    # Inter-reader agreement on the call.
    cohen = result["agreement"]["call"]["cohen"]
    readers = result["study"]["readers"]
    if len(readers) >= 2:
        mat = np.full((len(readers), len(readers)), np.nan)
        for i in range(len(readers)):
            mat[i, i] = 1.0
        for c in cohen:
            i, j = readers.index(c["a"]), readers.index(c["b"])
            mat[i, j] = mat[j, i] = np.nan if c["kappa"] is None else c["kappa"]
        fig, ax = plt.subplots(figsize=(1.5 + 0.7 * len(readers), 1.2 + 0.7 * len(readers)))
        im = ax.imshow(mat, vmin=-1, vmax=1, cmap="RdBu")
        ax.set_xticks(range(len(readers)), readers)
        ax.set_yticks(range(len(readers)), readers)
        for i in range(len(readers)):
            for j in range(len(readers)):
                ax.text(j, i, "–" if np.isnan(mat[i, j]) else f"{mat[i, j]:.2f}", ha="center", va="center")
        fig.colorbar(im, ax=ax, shrink=0.8)
        fleiss = result["agreement"]["call"]["fleiss_kappa"]
        ax.set_title(f"Cohen's kappa (call); Fleiss {_fmt(fleiss)}")
        _save_fig(fig, out / "agreement_call.png")
        figures["agreement_call"] = {"file": "agreement_call.png",
                                     "title": "Pairwise Cohen's kappa of the real/synthetic call",
                                     "data": {"readers": readers, "cohen": cohen, "fleiss_kappa": fleiss}}

    # Finding detection on real vs synthetic.
    if result["findings"] is not None:
        pooled = result["findings"][POOLED]
        names = list(pooled)
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharey=True)
        for ax, metric in zip(axes, ("sensitivity", "specificity")):
            for j, s in enumerate(SOURCES):
                props = [pooled[n][s][metric] for n in names]
                x = np.arange(len(names)) + (j - 0.5) * 0.35
                ax.bar(x, [p["estimate"] or 0.0 for p in props], width=0.35, color=COLORS[s], label=s,
                       yerr=np.array([_err(p) for p in props]).T, capsize=3)
                for xi, p in zip(x, props):
                    if not p["n"]:
                        ax.text(xi, 0.02, "n/a", ha="center", fontsize=8)  # no positives / negatives in truth
            ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names])
            ax.set_ylim(0, 1.05)
            ax.set_title(f"{metric} (95% Wilson CI)")
        axes[0].legend(loc="lower left")
        _save_fig(fig, out / "findings.png")
        figures["findings"] = {"file": "findings.png",
                               "title": "Finding detection against lesion truth, real vs synthetic (pooled)",
                               "data": pooled}
    return figures


def _readings_csv(readings: list[dict]) -> str:
    buffer = io.StringIO()
    if readings:
        writer = csv.DictWriter(buffer, fieldnames=list(readings[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(readings)
    return buffer.getvalue()


def _html(result: dict, figures: dict) -> str:
    esc = html.escape
    st = result["study"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Reader study report</title>",
        "<style>body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:.5em 0 1.2em}td,th{border:1px solid #ccc;padding:.25em .6em;"
        "text-align:left}th{background:#f0f2f5}img{max-width:100%}</style></head><body>",
        "<h1>Reader study report</h1>",
        f"<p>{len(st['readers'])} reader(s), {st['cases']} cases, {st['readings']} readings "
        f"({st['complete_readings']} complete); slices: {esc(st['slices'])}; window percentiles "
        f"{esc(str(st['window_percentiles']))}.</p>",
        "<table><tr><th>reader</th><th>submitted</th></tr>",
        *(f"<tr><td>{esc(r)}</td><td>{esc(str(t or 'not yet'))}</td></tr>" for r, t in st["submitted"].items()),
        "</table>",
        "<h2>Visual Turing test</h2><p>Accuracy of the real/synthetic call with exact (Clopper-Pearson) 95% CI and "
        "the exact two-sided binomial test against 50%. Spotting synthetic: sensitivity = synthetic cases called "
        "synthetic, specificity = real cases called real (Wilson CIs). Pooled rows treat readings as "
        "independent.</p>",
        "<table><tr><th>group</th><th>accuracy</th><th>p (binomial vs 0.5)</th><th>sensitivity</th>"
        "<th>specificity</th></tr>",
    ]
    for g, t in result["turing"].items():
        spot = t["spotting_synthetic"]
        parts.append(f"<tr><td>{esc(g)}</td><td>{_fmt_prop(t)}</td><td>{_fmt(t['p_value'], 4)}</td>"
                     f"<td>{_fmt_prop(spot['sensitivity'])}</td><td>{_fmt_prop(spot['specificity'])}</td></tr>")
    parts.append("</table>")
    parts.append("<h2>Inter-reader agreement</h2><table><tr><th>item</th><th>Fleiss' kappa</th>"
                 "<th>cases read by all</th><th>Cohen's kappa per pair</th></tr>")
    for field, a in result["agreement"].items():
        pairs = ", ".join(f"{esc(c['a'])}–{esc(c['b'])}: {_fmt(c['kappa'])} (n={c['n']})" for c in a["cohen"])
        parts.append(f"<tr><td>{esc(field)}</td><td>{_fmt(a['fleiss_kappa'])}</td>"
                     f"<td>{a['n_cases_all_readers']}</td><td>{pairs or '–'}</td></tr>")
    parts.append("</table>")
    parts.append("<h2>Image quality (Likert 1–5)</h2><p>Median [IQR] over readings; Wilcoxon signed-rank test "
                 "(two-sided, zero differences dropped) on subject-paired scores (pooled: each subject's mean over "
                 "readers).</p><table><tr><th>group</th><th>real</th><th>synthetic</th><th>paired subjects</th>"
                 "<th>W+ / W−</th><th>p</th></tr>")
    for g, lk in result["likert_quality"].items():
        w = lk["wilcoxon_real_vs_synthetic"]
        cells = [f"{_fmt(lk[s]['median'], 1)} [{_fmt(lk[s]['q1'], 1)}, {_fmt(lk[s]['q3'], 1)}] (n={lk[s]['n']})"
                 for s in SOURCES]
        parts.append(f"<tr><td>{esc(g)}</td><td>{cells[0]}</td><td>{cells[1]}</td><td>{lk['n_subjects_paired']}"
                     f"</td><td>{_fmt(w['w_plus'], 1)} / {_fmt(w['w_minus'], 1)}</td>"
                     f"<td>{_fmt(w['p_value'], 4)}</td></tr>")
    parts.append("</table>")
    if result["findings"] is not None:
        parts.append("<h2>Finding detection</h2><p>Against the lesion truth of the shown slices; Wilson 95% CIs."
                     "</p><table><tr><th>group</th><th>finding</th><th>image</th><th>sensitivity</th>"
                     "<th>specificity</th></tr>")
        for g, by_finding in result["findings"].items():
            for name, by_source in by_finding.items():
                for s in SOURCES:
                    ss = by_source[s]
                    parts.append(f"<tr><td>{esc(g)}</td><td>{esc(name)}</td><td>{s}</td>"
                                 f"<td>{_fmt_prop(ss['sensitivity'])}</td><td>{_fmt_prop(ss['specificity'])}</td>"
                                 "</tr>")
        parts.append("</table>")
    else:
        parts.append("<h2>Finding detection</h2><p>No lesion truth in this study (built without --lesions).</p>")
    parts.append("<h2>Figures</h2><p>The numbers behind each figure are in <code>figures.json</code>.</p>")
    for fig in figures.values():
        parts.append(f"<figure><img src='{esc(fig['file'])}' alt='{esc(fig['title'])}'>"
                     f"<figcaption>{esc(fig['title'])}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def analyze_study(study: str | Path, out: str | Path, answers_csv: str | Path | None = None) -> Path:
    """Analyze a study and write the report into ``out``; returns the path of ``report.html``.

    ``out`` must not be inside ``STUDY/cases`` (the served folder): the report is unblinded.
    """
    from ..errors import InputError

    study, out = Path(study), Path(out)
    if out.resolve().is_relative_to((study / layout.CASES).resolve()):
        raise InputError(f"{out}: the report is unblinded; write it outside {study / layout.CASES}")
    result = analyze(study, answers_csv)
    readings, _ = load_readings(study, answers_csv)
    out.mkdir(parents=True, exist_ok=True)
    figures = _figures(result, readings, out)
    atomic_write_text(out / "results.json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(out / "figures.json", json.dumps(figures, indent=1) + "\n")
    atomic_write_text(out / "readings.csv", _readings_csv(readings))
    return atomic_write_text(out / "report.html", _html(result, figures))
