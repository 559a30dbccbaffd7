"""The report by lesion class, and the erasure check measured against the phantom's lesions.

* :func:`class_summary`: per lesion class the number of lesions (connected components over the scored subjects)
  and of subjects, the lesion CNR in the input T2w and in the real STIR (identical for every method, so given
  once), and per method contrast recovery, step recovery and CNR with their bootstrap CIs; the best method
  (recovery closest to 1) is named, and a class seen in fewer than :data:`MIN_CONCLUSIVE` subjects is marked "not conclusive".
* :func:`erasure_rows`: per subject the erasure check's flag counts (:mod:`synthseq.erasure`; the flag map
  ``synthseq synthesize`` wrote beside the prediction when there is one, else the check run here, with the
  subject's T1w when the input folder holds one), and, with phantom lesions, how many lesions that T2w and STIR
  show the pseudo-STIR erased (lesion-to-reference step below half the real STIR's), how many of those carry a
  *missing* flag, and the false alarms. :func:`erasure_summary` pools them: sensitivity for erased lesions,
  false alarms per volume.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from .. import metrics as M
from ..data.normalize import normalize
from ..io import sagittal_axis
from ..stats import mean_ci
from .scoring import METHOD, SubjectData, input_params, normalized_pair, resolve_pred_norm

#: Fewest subjects with a lesion class for its numbers to be read as more than anecdote.
MIN_CONCLUSIVE = 5


def count_lesions(subjects: Sequence[SubjectData]) -> dict[str, dict[str, int]]:
    """Per lesion class: ``{"lesions": connected components over all subjects, "subjects": subjects with it}``."""
    out: dict[str, dict[str, int]] = {}
    for s in subjects:
        if s.lesions is None:
            continue
        for name, code in M.LESION_CODES.items():
            n = int(ndimage.label(np.asarray(s.lesions) == code)[1])
            if n:
                d = out.setdefault(name, {"lesions": 0, "subjects": 0})
                d["lesions"] += n
                d["subjects"] += 1
    return out


def _ci(values: Sequence[float], seed: int, name: str) -> dict[str, Any]:
    import zlib

    return mean_ci(np.asarray(values, dtype=float), seed=[int(seed), zlib.crc32(name.encode())])


def _column_ci(part: pd.DataFrame, column: str, seed: int, method: str) -> dict[str, Any] | None:
    """:func:`_ci` of one method's ``column``; None where the table has no such column (it predates it)."""
    return _ci(part[column].to_numpy(float), seed, f"{method}/{column}") if column in part else None


def class_summary(table: pd.DataFrame, counts: Mapping[str, Mapping[str, int]], seed: int = 0) -> dict[str, Any]:
    """The by-class numbers (see the module docstring) from the metric table of :func:`evaluate_volumes`."""
    methods = list(dict.fromkeys(table["method"]))
    model_rows = table[table["method"] == METHOD]
    out: dict[str, Any] = {}
    for name in M.LESION_CODES:
        col = f"cr_{name}"
        if col not in table.columns or name not in counts:
            continue
        entry: dict[str, Any] = {"lesions": int(counts[name]["lesions"]), "subjects": int(counts[name]["subjects"])}
        for key, label in ((f"cnr_input_{name}", "cnr_input"), (f"cnr_target_{name}", "cnr_target")):
            if key in model_rows:
                entry[label] = _ci(model_rows[key].to_numpy(float), seed, key)
        per = {}
        for m in methods:
            part = table[table["method"] == m]
            per[m] = {key: _column_ci(part, column, seed, m) for key, column in (
                ("recovery", col), ("step_recovery", f"sr_{name}"), ("reference_bias", f"rb_{name}"),
                ("cnr", f"cnr_{name}"))}
        entry["methods"] = per
        scored = {m: v["recovery"]["mean"] for m, v in per.items() if v["recovery"].get("mean") is not None
                  and m != "linear_oracle"}
        entry["best"] = min(scored, key=lambda m: abs(scored[m] - 1.0)) if scored else None
        n = min((v["recovery"].get("n") or 0) for v in per.values()) if per else 0
        entry["n_recovery"] = int(n)
        entry["conclusive"] = bool(n >= MIN_CONCLUSIVE)
        out[name] = entry
    return out


def _fmt_ci(st: Mapping[str, Any] | None, digits: int = 2) -> str:
    if not st or st.get("mean") is None or not math.isfinite(st["mean"]):
        return "&ndash;"
    lo, hi = st.get("ci_low"), st.get("ci_high")
    ci = f" [{lo:.{digits}f}, {hi:.{digits}f}]" if lo is not None and hi is not None else ""
    return f"{st['mean']:.{digits}f}{ci}"


def class_table_html(classes: Mapping[str, Any]) -> str:
    """The by-class HTML table: one row per class; CNR in T2w / real STIR once; recovery, step recovery, reference
    bias and CNR per method."""
    if not classes:
        return "<p>No lesion classes (no lesion maps given).</p>"
    methods = list(next(iter(classes.values()))["methods"])
    head = ("<tr><th rowspan=2>lesion class</th><th rowspan=2>lesions (subjects)</th><th rowspan=2>CNR T2w</th>"
            "<th rowspan=2>CNR real STIR</th>" + "".join(f"<th colspan=4>{html.escape(m)}</th>" for m in methods)
            + "</tr><tr>" + "<th>recovery</th><th>step</th><th>ref. bias</th><th>CNR</th>" * len(methods) + "</tr>")
    rows = []
    for name, e in classes.items():
        cells = []
        for m in methods:
            rec, cnr = e["methods"][m]["recovery"], e["methods"][m]["cnr"]
            best = m == e.get("best")
            r = _fmt_ci(rec)
            cells.append(f"<td>{'<b>' + r + ' &#9733;</b>' if best else r}</td>"
                         f"<td>{_fmt_ci(e['methods'][m].get('step_recovery'))}</td>"
                         f"<td>{_fmt_ci(e['methods'][m].get('reference_bias'))}</td><td>{_fmt_ci(cnr, 1)}</td>")
        flag = "" if e["conclusive"] else " <small>(n &lt; 5: not conclusive)</small>"
        rows.append(f"<tr><th>{html.escape(name)}{flag}</th><td>{e['lesions']} ({e['subjects']})</td>"
                    f"<td>{_fmt_ci(e.get('cnr_input'), 1)}</td><td>{_fmt_ci(e.get('cnr_target'), 1)}</td>"
                    f"{''.join(cells)}</tr>")
    return (f"<table>{head}{''.join(rows)}</table><p>Recovery = lesion contrast in the method's image / in real "
            f"STIR (1 = all of it; &#9733; closest to 1, the oracle aside); step = the lesion-to-reference intensity "
            f"step in normalized units over real STIR's (offset-free: a reference near the dark end of the range "
            f"makes recovery steep, not step); ref. bias = the normal reference tissue's mean in the method's image "
            f"minus in real STIR (normalized units; &gt; 0: rendered too bright, which flattens recovery); mean over "
            f"subjects [95% bootstrap CI]. "
            f"CNR in the T2w and the real STIR is the same for every method and shown once.</p>")


# ------------------------------------------------------------------------------------------- erasure
def erasure_rows(subjects: Sequence[SubjectData], t1w: Mapping[str, Any] | None = None,
                 flag_maps: Mapping[str, Path] | None = None, pred_norm: str = "auto") -> pd.DataFrame:
    """One row per subject with a T2w: the erasure check's counts and, with lesion maps, its score (module doc)."""
    from .. import erasure
    from ..io import load_volume

    rows = []
    for s in subjects:
        if s.t2w is None:
            continue
        fpath = (flag_maps or {}).get(s.subject)
        if fpath is not None:
            flags = np.asarray(load_volume(fpath, allow_zero=True).data)
            used_t1 = None
            comp = {c: int(ndimage.label(flags == c)[1]) for c in (erasure.MISSING, erasure.UNSUPPORTED)}
            missing, unsupported = comp[erasure.MISSING], comp[erasure.UNSUPPORTED]
        else:
            t1 = (t1w or {}).get(s.subject)
            vol, rep = erasure.check(s.t2w, s.pred, t1)
            flags, used_t1 = np.asarray(vol.data), t1 is not None
            missing, unsupported = rep["missing"], rep["unsupported"]
        row = {"subject": s.subject, "erasure_missing": missing, "erasure_unsupported": unsupported,
               "erasure_used_t1w": used_t1, "erasure_flags_from": "file" if fpath is not None else "evaluate"}
        if s.lesions is not None and s.labels is not None:
            body, _ = s.body_mask()
            pp = input_params(s) if resolve_pred_norm(pred_norm, s) == "input" else None
            pred_n, target_n, _ = normalized_pair(s.pred, s, body, pp)
            t2_n = normalize(s.t2w.data, "percentile", M.METRIC_PERCENTILES, body, name=s.t2w.name)[0]
            found = erasure.erased_lesions(pred_n, target_n, t2_n, s.lesions, s.labels,
                                           slice_axis=sagittal_axis(s.target.affine))
            sc = erasure.score_against_lesions(flags, found)
            row.update(visible_lesions=sc["visible_lesions"], erased_lesions=sc["erased_lesions"],
                       erased_flagged=sc["erased_flagged"], erasure_false_alarms=sc["false_alarms"],
                       erased_classes=",".join(sorted({f["class"] for f in found if f["erased"]})))
        rows.append(row)
    return pd.DataFrame(rows)


def erasure_summary(rows: pd.DataFrame) -> dict[str, Any]:
    """Pooled: flags per volume, sensitivity for erased lesions (flagged / erased), false alarms per volume."""
    if rows.empty:
        return {}
    out: dict[str, Any] = {"volumes": int(len(rows)),
                           "missing_per_volume": float(rows["erasure_missing"].mean()),
                           "unsupported_per_volume": float(rows["erasure_unsupported"].mean())}
    if "erased_lesions" in rows:
        erased, hit = int(rows["erased_lesions"].sum()), int(rows["erased_flagged"].sum())
        out.update(visible_lesions=int(rows["visible_lesions"].sum()), erased_lesions=erased,
                   erased_flagged=hit, sensitivity=hit / erased if erased else None,
                   false_alarms_per_volume=float(rows["erasure_false_alarms"].mean()))
    return out


def erasure_html(summary: Mapping[str, Any], rows: pd.DataFrame) -> str:
    if not summary:
        return "<p>No T2w inputs given: the erasure check needs them.</p>"
    s = summary
    sens = ""
    if "erased_lesions" in s:
        se = "&ndash;" if s["sensitivity"] is None else f"{s['sensitivity']:.2f}"
        sens = (f" Phantom truth: {s['erased_lesions']} of {s['visible_lesions']} lesions that T2w and STIR show "
                f"erased by the pseudo-STIR (lesion-to-reference step below half the real STIR's); "
                f"{s['erased_flagged']} of them flagged "
                f"(sensitivity {se}); {s['false_alarms_per_volume']:.2f} false alarms per volume.")
    table = rows.to_html(index=False, na_rep="-", border=0)
    return (f"<p>Per volume: {s['missing_per_volume']:.2f} T2w foci missing in the pseudo-STIR, "
            f"{s['unsupported_per_volume']:.2f} unsupported pseudo-STIR foci.{sens}</p>{table}")


__all__ = ["MIN_CONCLUSIVE", "class_summary", "class_table_html", "count_lesions", "erasure_html", "erasure_rows",
           "erasure_summary"]
