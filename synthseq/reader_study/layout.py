"""The files of a study folder and the vocabulary shared by the builder, the web app and the statistics.

```
STUDY/manifest.json   what readers may see: case IDs, slice counts, pixel spacing, each reader's case order
STUDY/key.csv         the truth (case -> real/synthetic, subject, lesion truth); never served
STUDY/tokens.json     each reader's secret link token (created by ``serve``; mode 0600); never served
STUDY/answers.sqlite  the answers (SQLite, WAL); never served
STUDY/cases/<case_id>/stack.nii       the shown slices, windowed float32, canonical (S, H, W); served
STUDY/cases/<case_id>/slice_NNN.png   8-bit display rendering of each shown slice; served
STUDY/cases/<case_id>/t2w.nii         the subject's T2w on the same slices (only when built with --t2w); served
```
Only files under ``STUDY/cases`` whose names match :data:`CASE_FILE_RE` are ever served.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..codes import L
from ..errors import InputError

MANIFEST = "manifest.json"
KEY = "key.csv"
TOKENS = "tokens.json"
DATABASE = "answers.sqlite"
CASES = "cases"
STACK = "stack.nii"
T2W_STACK = "t2w.nii"  #: the subject's T2w on the same slices, when the study is built with ``t2w=``
FORMAT = "synthseq-reader-study"

#: Findings asked about, in page order: (column name, label shown to readers, lesion codes that make it present).
#: Cord edema counts cord hemorrhage too: a hemorrhagic contusion shows abnormal (edematous) cord
#: signal on STIR, and readers are asked about abnormal cord signal, not about blood products.
FINDINGS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("marrow_edema", "Bone-marrow edema", (L["marrow_edema"],)),
    ("plc_injury", "PLC injury", (L["plc_injury"],)),
    ("cord_edema", "Cord edema", (L["cord_edema"], L["cord_hemorrhage"])),
)
FINDING_NAMES = tuple(name for name, _, _ in FINDINGS)

#: Answer fields and their allowed values (None = not answered yet).
ANSWER_FIELDS: dict[str, tuple] = {
    "call": ("real", "synthetic"),
    "confidence": (1, 2, 3, 4, 5),
    "quality": (1, 2, 3, 4, 5),
    **{name: (0, 1) for name in FINDING_NAMES},
}

CASE_ID_RE = re.compile(r"^c[0-9a-f]{10}$")
CASE_FILE_RE = re.compile(r"^(stack\.nii|t2w\.nii|slice_[0-9]{3}\.png)$")
READER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def slice_png_name(index: int) -> str:
    return f"slice_{index:03d}.png"


def load_manifest(study: str | Path) -> dict:
    """Read ``STUDY/manifest.json``; :class:`InputError` if it is missing or not a reader-study manifest."""
    path = Path(study) / MANIFEST
    if not path.is_file():
        raise InputError(f"{path}: no reader-study manifest (run `synthseq reader-study build` first)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read the manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path}: not a synthseq reader-study manifest")
    return manifest
