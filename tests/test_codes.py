"""synthseq.codes is the one owner of tissue and lesion codes: nothing else writes a code as a number."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np

import synthseq
from synthseq import codes

PACKAGE = Path(synthseq.__file__).parent
#: Names that hold code maps or code numbers; a comparison of one of these with an integer literal is a copied code.
CODE_NAME = re.compile(r"(^|_)(lab|labels?|les|lesions?|codes?|tissue|seg)($|_)", re.I)
CODE_CONSTANT = re.compile(
    "|".join(sorted({n.upper() for n in [*codes.TISSUES.values(), *codes.LESIONS.values()]} | {"AIRWAY_LABEL"})))


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript):
        return _name(node.value)
    if isinstance(node, ast.Call):
        return _name(node.args[0]) if node.args else ""
    return ""


def _ints(node: ast.AST) -> list[int]:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [v for e in node.elts for v in _ints(e)]
    return []


def _copied_codes(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            named = [s for s in sides if CODE_NAME.search(_name(s) or "")]
            literal = [v for s in sides for v in _ints(s) if v not in (0, 1)]
            if named and literal and not isinstance(node.ops[0], ast.Gt | ast.GtE | ast.Lt | ast.LtE):
                found.append(f"line {node.lineno}: compares {_name(named[0])} with {literal}")
        elif isinstance(node, ast.Call) and _name(node.func) == "isin" and len(node.args) == 2:
            if CODE_NAME.search(_name(node.args[0]) or "") and _ints(node.args[1]):
                found.append(f"line {node.lineno}: isin({_name(node.args[0])}, {_ints(node.args[1])})")
        elif isinstance(node, ast.Assign) and _ints(node.value):
            for target in node.targets:
                for t in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if isinstance(t, ast.Name) and t.id.isupper() and CODE_CONSTANT.fullmatch(t.id):
                        found.append(f"line {node.lineno}: {t.id} = {_ints(node.value)}")
    return found


def test_no_code_number_is_written_outside_synthseq_codes():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "codes.py":
            continue
        hits = _copied_codes(ast.parse(path.read_text(), str(path)))
        if hits:
            offenders[str(path.relative_to(PACKAGE))] = hits
    assert not offenders, f"code numbers copied outside synthseq/codes.py: {offenders}"


def test_the_checker_finds_copied_codes():
    sample = "AIRWAY_LABEL = 5\nCORD = 11\nm = labels == 7\nk = np.isin(lesions, (3, 4))\nok = labels > 0\n"
    hits = _copied_codes(ast.parse(sample))
    assert len(hits) == 4 and not any("labels > 0" in h for h in hits)


def test_body_mask_excludes_background_and_airway_only():
    labels = np.array(sorted(codes.TISSUES))
    mask = codes.body_mask_from_labels(labels)
    assert mask.dtype == bool
    assert set(labels[~mask]) == {0, codes.AIRWAY}
