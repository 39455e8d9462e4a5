"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of the synthetic `tiny` preset (seed 0), generated once per test session."""
    from nerfstudio_humanfeat.synth.generator import generate, make_spec

    root = tmp_path_factory.mktemp("synth_tiny")
    generate(make_spec("tiny", seed=0), root, progress=False)
    return root
