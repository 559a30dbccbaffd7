"""The HTML report: summary table with CIs, how to read it, montages, per-subject table."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .. import metrics as M
from ..baselines import BASELINES
from ..stats import CI_LEVEL
from ..utils import atomic_write_text
from .figures import DIFF_WINDOW
from .lesions import class_table_html, erasure_html
from .scoring import SubjectData


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "&ndash;"
    return f"{v:.{digits}f}"


def write_report(table: pd.DataFrame, summary: dict, subjects: Sequence[SubjectData], out: Path,
                 notes: Sequence[str] = ()) -> Path:
    """``report.html`` (summary table with CIs, notes, per-subject table and montages) in ``out``."""
    methods = list(summary["methods"])
    # CNR in the input T2w and in real STIR is the same for every method: shown once, in the by-class table
    metric_cols = [c for c in table.columns if c in M.image_metric_names() or c.startswith(M.LESION_COLUMN_PREFIXES)
                   and not c.startswith(("cnr_target_", "cnr_input_"))]
    head = "".join(f"<th>{html.escape(m)}</th>" for m in methods)
    body = []
    for col in metric_cols:
        cells = []
        for m in methods:
            st = summary["methods"][m].get(col, {})
            if st.get("mean") is None:
                cells.append("<td>&ndash;</td>")
                continue
            ci = f" [{_fmt(st['ci_low'])}, {_fmt(st['ci_high'])}]" if st.get("ci_low") is not None else ""
            cells.append(f"<td>{_fmt(st['mean'])}{ci} <small>n={st['n']}</small></td>")
        arrow = {True: " &uarr;", False: " &darr;"}.get(M.higher_is_better(col), "")
        body.append(f"<tr><th>{html.escape(col)}{arrow}</th>{''.join(cells)}</tr>")
    method_notes = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in BASELINES.items()
                           if k in methods)
    imgs = "".join(
        f"<h3>{html.escape(s.subject)}</h3><img src=\"montages/{html.escape(s.subject)}.png\" "
        f"alt=\"montage {html.escape(s.subject)}\">" for s in subjects)
    per_subject = table.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-", border=0)
    text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>synthseq evaluation</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} img{{max-width:100%}}</style></head><body>
<h1>Pseudo-STIR evaluation</h1>
<p>{summary['n_subjects']} subject(s). Means over subjects with {int(CI_LEVEL * 100)}% bootstrap CIs
({summary['bootstrap']['n_resamples']} resamples, seed {summary['seed']}).</p>
<h2>By lesion class</h2>{class_table_html(summary.get("lesion_classes", {}))}
<h2>Erasure check</h2>{erasure_html({k: v for k, v in summary.get("erasure", {}).items() if k != "per_volume"},
                                    pd.DataFrame(summary.get("erasure", {}).get("per_volume", [])))}
<h2>Summary</h2><table><tr><th>metric</th>{head}</tr>{''.join(body)}</table>
<h2>How to read it</h2><ul>
<li>{html.escape(summary['conventions']['normalization'])}</li>
<li>{html.escape(summary['conventions']['metrics'])}</li>
<li>{html.escape(summary['conventions']['lesions'])}</li>
<li>LPIPS: {html.escape(summary['lpips'])}</li>
<li><b>pseudo_stir</b>: the model's prediction.</li>{method_notes}
{''.join(f'<li>{html.escape(n)}</li>' for n in notes)}</ul>
<h2>Montages</h2><p>T2w | pseudo-STIR | STIR (red: lesion outline) | |difference| | uncertainty; windows (colour
bar under each column): images [-1, 1], |difference| {list(DIFF_WINDOW)} (normalized units), uncertainty from 0 to
the 99th percentile of that subject's body voxels.</p>
{imgs}
<h2>Per subject</h2>{per_subject}
</body></html>
"""
    return atomic_write_text(out / "report.html", text)

