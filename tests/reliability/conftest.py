"""Shared pieces of the reliability suite: the CLI run in-process, tiny inputs (phantom layout, a reader study,
a two-step checkpoint), and the checks every refused command must pass (one line, exit 2, nothing written)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
N_SUBJECTS = 4
SHAPE = (6, 32, 32)  # RAS storage: 6 sagittal slices of 32 x 32
TINY = ["model.generator_kwargs={base_channels: 4, num_downs: 3}",
        "model.discriminator_kwargs={base_channels: 4, n_layers: 2}", "data.image_size=16", "train.batch_size=2",
        "train.device=cpu", "train.schedule=constant", "train.log_every=1", "train.val_every=2",
        "train.image_every=2", "train.ckpt_every=2", "train.cpu_threads=1", "train.steps=2",
        "data.val_fraction=0.25", "data.test_fraction=0.25"]


@pytest.fixture(scope="session")
def tiny() -> list[str]:
    """Overrides that make a training run take a second: networks of a few thousand parameters, 2 steps."""
    return list(TINY)


@pytest.fixture(scope="session")
def rel():
    """This module (helpers), since test files cannot import a conftest under importlib mode."""
    return sys.modules[__name__]


class Result:
    def __init__(self, rc: int, out: str, err: str):
        self.rc, self.out, self.err = rc, out, err

    def refused(self, *words: str) -> str:
        """Assert a clean refusal: exit 2, exactly one stderr line ``synthseq: error: ...`` holding ``words``, and
        it is the last line (progress lines the command printed before failing, e.g. the erasure check's count of a
        volume it synthesized, may precede it; each is one ``synthseq...`` line too)."""
        lines = self.err.strip().splitlines()
        assert self.rc == 2, (self.rc, self.err[-2000:])
        # "synthseq: error: ..." from the commands, "synthseq SUB: error: ..." from argparse usage errors
        error = re.compile(r"^synthseq( [a-z-]+)*: error: ")
        assert lines and error.match(lines[-1]), self.err[-2000:]
        assert sum(bool(error.match(line)) for line in lines) == 1, self.err[-2000:]
        assert all(line.startswith("synthseq") for line in lines), self.err[-2000:]
        assert "Traceback" not in self.err
        for word in words:
            assert str(word) in lines[-1], (word, lines[-1])
        return lines[-1]


@pytest.fixture
def cli(capsys):
    """Run ``synthseq ARGS`` in this process; returns a :class:`Result`."""
    from synthseq.cli import main

    def run(*args) -> Result:
        capsys.readouterr()
        try:
            rc = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            rc = exc.code
        captured = capsys.readouterr()
        return Result(rc, captured.out, captured.err)

    return run


def run_subprocess(args: list[str], *, ulimit_kib: int | None = None, timeout: float = 300) -> Result:
    """``python -m synthseq.cli ARGS`` in a child process (optionally under ``ulimit -f``: a full disk)."""
    cmd = [sys.executable, "-m", "synthseq.cli", *map(str, args)]
    if ulimit_kib is not None:
        import shlex

        cmd = ["bash", "-c", f"ulimit -f {ulimit_kib} && exec {' '.join(shlex.quote(c) for c in cmd)}"]
    # PYTHONDONTWRITEBYTECODE: under ``ulimit -f`` Python's own unbuffered .pyc writes come out truncated (a short
    # write is not an error) and would break every later import of those modules, for everyone
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(Path.home()), "PYTHONPATH": str(ROOT),
           "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def no_temporaries(folder: Path) -> list[Path]:
    """Temporaries an interrupted atomic write would leave (``.name.*.tmp*``) anywhere under ``folder``."""
    return [p for p in folder.rglob(".*") if ".tmp" in p.name and p.name != ".lock"]


def _subject(rng: np.random.Generator):
    _, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij")
    body = (y / 0.8) ** 2 + (z / 0.9) ** 2 < 1
    fat = body & ((y / 0.8) ** 2 + (z / 0.9) ** 2 > 0.7)
    lesion = body & ((y - 0.2) ** 2 + z**2 < rng.uniform(0.02, 0.06))
    labels = np.where(body, 3, 0).astype(np.uint8)
    labels[fat] = 2
    t2w = np.where(body, 300.0, 5.0) + np.where(fat, 500.0, 0.0) + np.where(lesion, 250.0, 0.0)
    stir = np.where(body, 200.0, 5.0) - np.where(fat, 170.0, 0.0) + np.where(lesion, 400.0, 0.0)
    noise = rng.normal(0, 4, (2, *SHAPE))
    return (t2w + noise[0]).astype(np.float32), (stir + noise[1]).astype(np.float32), labels, lesion.astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A phantom-layout folder of 4 tiny subjects (T2w, STIR, labels, lesions) and a cohort.csv."""
    root = tmp_path_factory.mktemp("rel_phantom")
    rng = np.random.default_rng(0)
    for i in range(1, N_SUBJECTS + 1):
        sid = f"sub-{i:04d}"
        (root / sid).mkdir()
        for name, arr in zip(("T2w", "STIR", "labels", "lesions"), _subject(rng)):
            nib.save(nib.Nifti1Image(arr, np.eye(4)), root / sid / f"{sid}_{name}.nii.gz")
    (root / "cohort.csv").write_text("subject,age\n" + "".join(f"sub-{i:04d},{40 + i}\n" for i in range(1, 5)))
    return root


@pytest.fixture(scope="session")
def checkpoint(tiny_root, tmp_path_factory) -> Path:
    """A two-step pix2pix checkpoint on the tiny phantom (``best.pt`` or ``last.pt``)."""
    import torch

    from synthseq.config import load_config
    from synthseq.training import run

    out = tmp_path_factory.mktemp("rel_run") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run(load_config(None, [*TINY, f"data.root={tiny_root}", f"train.out_dir={out}"]))
    finally:
        torch.set_num_threads(threads)
    return next(p for p in (out / "best.pt", out / "last.pt") if p.is_file())


@pytest.fixture(scope="session")
def study_template(tmp_path_factory) -> Path:
    """A built reader study of 3 subjects (readers R1, R2); copy it before changing anything."""
    from synthseq.reader_study import build_study

    root = tmp_path_factory.mktemp("rel_study")
    rng = np.random.default_rng(1)
    affine = np.array([[0.0, 0.0, 3.0, 0], [-1.0, 0, 0, 0], [0, 0.8, 0, 0], [0, 0, 0, 1.0]])
    for i in range(1, 4):
        sid = f"sub-{i:04d}"
        real = rng.gamma(2.0, 50.0, size=(16, 32, 16)).astype(np.float32)
        for folder, name, arr in (("real", "STIR", real), ("synth", "pseudoSTIR", real * 2 + 1)):
            (root / folder).mkdir(exist_ok=True)
            nib.save(nib.Nifti1Image(arr, affine), root / folder / f"{sid}_{name}.nii.gz")
    build_study(root / "real", root / "synth", root / "study", ["R1", "R2"], seed=0)
    return root / "study"


@pytest.fixture
def study(study_template, tmp_path) -> Path:
    import shutil

    dest = tmp_path / "study"
    shutil.copytree(study_template, dest)
    return dest


@pytest.fixture
def a_file(tmp_path) -> Path:
    """A regular file, so that ``a_file / "x"`` is a path under a file."""
    path = tmp_path / "plain.txt"
    path.write_text("not a folder\n")
    return path
