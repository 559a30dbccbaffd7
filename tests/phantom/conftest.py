"""Shared phantom fixtures: tiny subjects in memory and a small dataset on disk (session scope, built once)."""

from __future__ import annotations

import pytest

from synthseq.phantom import generate_dataset, generate_subject

N_TINY = 40  # ~0.04 s each; enough that every injury and confounder occurs several times


@pytest.fixture(scope="session")
def tiny_subjects():
    return [generate_subject(f"sub-{i:04d}", rng_seed=i, preset="tiny") for i in range(N_TINY)]


@pytest.fixture(scope="session")
def default_subject():
    """One default-preset subject (seed 2: fracture, PLC injury, cord oedema with haemorrhage)."""
    return generate_subject("sub-0001", rng_seed=2, preset="default")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom") / "ds"
    return generate_dataset(out, subjects=3, seed=5, preset="tiny", preview=True, progress=False)
