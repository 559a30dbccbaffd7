"""Anatomy module structure: painting split into stages, no import cycle between anatomy and injuries."""

import ast
import inspect

from synthseq.phantom import anatomy, classes, injuries


def _imports(module) -> set[str]:
    tree = ast.parse(inspect.getsource(module))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_injuries_does_not_import_anatomy():
    assert ".anatomy" not in _imports(injuries)
    assert not ({".anatomy", ".injuries"} & _imports(classes))


def test_paint_anatomy_is_split_into_stages():
    src = inspect.getsource(anatomy.paint_anatomy)
    assert len(src.splitlines()) < 40
    stages = [n for n in dir(anatomy) if n.startswith("paint_") and n != "paint_anatomy"]
    assert len(stages) >= 8
    for name in stages:
        assert f"{name}(" in src, name
        assert len(inspect.getsource(getattr(anatomy, name)).splitlines()) < 80, name
