"""Helpers shared across test folders (fixtures: test files cannot import each other under importlib mode)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest


def write_tiny_checkpoint(path: Path, overrides: Sequence[str] = (), *, spacing=(1.0, 1.0), image_size: int = 32,
                          seed: int = 0) -> Path:
    """A tiny randomly initialised pix2pix checkpoint written through the real schema (``ModelSpec.entries``)."""
    import torch

    from synthseq.checkpoint import ModelSpec, save_checkpoint
    from synthseq.config import load_config, to_dict
    from synthseq.data.preprocess import Preprocessor
    from synthseq.models import build_gan

    cfg = load_config(None, ["model.generator_kwargs={base_channels: 4, num_downs: 3}",
                             "model.discriminator_kwargs={base_channels: 4}", "infer.batch_size=8", *overrides])
    torch.manual_seed(seed)
    model = build_gan(cfg.model, cfg.loss, cfg.data.context_slices * len(cfg.data.input_keys))
    spec = ModelSpec(kind=cfg.model.kind, config=to_dict(cfg), preprocessing=Preprocessor.from_config(cfg.data),
                     pixel_spacing_mm=spacing, image_size=image_size, context_slices=cfg.data.context_slices,
                     input_keys=list(cfg.data.input_keys))
    return save_checkpoint({**spec.entries(), "model": model.state_dict(), "step": 0,
                            "best": {"metric": "ssim", "value": None, "step": None}}, path)


@pytest.fixture(scope="session")
def checkpoint_writer() -> Callable[..., Path]:
    """``checkpoint_writer(path, overrides=(), spacing=(1, 1), image_size=32) -> path`` (write_tiny_checkpoint)."""
    return write_tiny_checkpoint


@pytest.fixture
def playwright_chromium():
    """``(sync_playwright, chromium_path)`` for the real-browser tests, or skip (fail when
    SYNTHSEQ_REQUIRE_BROWSER=1, as CI sets it)."""
    chromium = os.environ.get("SYNTHSEQ_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright, reason = None, "the playwright Python package is not installed (pip install playwright)"
    if reason is None and not Path(chromium).is_file():
        reason = f"no chromium at {chromium} (apt-get install chromium, or set SYNTHSEQ_CHROMIUM)"
    if reason is not None:
        if os.environ.get("SYNTHSEQ_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser test required (SYNTHSEQ_REQUIRE_BROWSER=1) but {reason}")
        pytest.skip(f"browser test skipped: {reason}")
    return sync_playwright, chromium
