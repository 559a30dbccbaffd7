"""A wheel holds what a user without the repository needs: the shipped configs, web assets and the licence."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from synthseq.config import CONFIG_DIR, load_yaml

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_configs_are_reachable_from_the_package():
    repo = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))
    assert repo and sorted(p.name for p in CONFIG_DIR.glob("*.yaml")) == repo
    for name in repo:
        assert isinstance(load_yaml(CONFIG_DIR / name), dict)


@pytest.mark.slow
def test_wheel_contains_configs_assets_and_licence(tmp_path):
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools.__version__} is older than the build backend needs (>= 77)")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("synthseq-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for cfg in (ROOT / "configs").glob("*.yaml"):
        assert f"synthseq/configs/{cfg.name}" in names
    assert any(n.startswith("synthseq/reader_study/static/") for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
