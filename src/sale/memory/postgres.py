"""The auction memory in Postgres: one memory shared by every process and machine.

`PostgresMemory` implements the same `MemoryStore` protocol as `SQLiteMemory`, against
a database URL (``postgresql://user:pass@host/db``). It needs the ``psycopg`` package
(``pip install 'sale[postgres]'``) and the pgvector extension in the database
(``CREATE EXTENSION vector``; the store creates it when it may).

- Nearest-k runs in the database: embeddings are ``vector(dim)`` columns and a query
  orders by pgvector's inner product (``<#>``), an exact scan with no approximate
  index, so it ranks as the SQLite store does. The embeddings live in a narrow table
  of their own (``sale_memory_embeddings``: seq, embedding), so the scan reads and
  unpacks only what it ranks by; the k best are joined back to their records. A
  search of a small memory uses no parallel workers (see `PostgresMemory.__init__`). Embeddings are unit vectors (both
  embedders), so the inner product is the cosine. The lexical embedder's vectors are
  dense hashed n-gram vectors, which pgvector handles like any other.
- Embeddings are rounded to float16 on the way in, as in the SQLite store, and ties
  are broken by insertion order (a ``seq`` column that a replaced record keeps).
- Every write is one transaction; records are keyed by task id with
  ``INSERT ... ON CONFLICT DO UPDATE``, so writers in many processes at once never
  lose or duplicate a record.
- The tables ``sale_memory_meta`` and ``sale_memory_auctions`` hold a schema version
  and the embedder's name; opening a database written by another schema version or
  embedder is refused with a one-line error.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import Any

import numpy as np

from sale.errors import MissingExtraError
from sale.memory.embedders import Embedder, LexicalEmbedder
from sale.memory.store import AuctionRecord, Bid, MemoryStoreError, _quantize, check_meta

SCHEMA_VERSION = 2  # 2: the embeddings in a table of their own
_LOCK_KEY = 0x5A1E0001  # advisory lock held while one process creates or checks the tables


def is_postgres_url(spec: Any) -> bool:
    return isinstance(spec, str) and spec.split("://", 1)[0] in ("postgresql", "postgres")


def redact(url: str) -> str:
    """``url`` without its password."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _vector_text(vec: np.ndarray) -> str:
    return "[" + ",".join(repr(float(x)) for x in vec) + "]"


class PostgresMemory:
    """The auction memory in a Postgres database (see the module docstring)."""

    def __init__(self, url: str, embedder: Embedder | None = None, *, connect_timeout_s: float = 10.0):
        try:
            import psycopg
        except ImportError as exc:
            raise MissingExtraError("psycopg", "postgres", "a postgresql:// auction memory") from exc
        self._psycopg = psycopg
        self.url = url
        self.where = redact(url)
        self.embedder = embedder or LexicalEmbedder()
        self._lock = threading.RLock()
        try:
            self._conn = psycopg.connect(url, connect_timeout=max(1, int(connect_timeout_s)), autocommit=True)
        except psycopg.Error as exc:
            raise MemoryStoreError(f"{self.where}: cannot connect to the auction memory ({_first_line(exc)})") from exc
        try:
            # A search of a memory under ~256 MB of embeddings (about 120,000 records of 512
            # dimensions) runs in this connection's own process: starting parallel workers
            # costs more than they save on such a scan, and many searches (one per task in
            # flight, per worker) already run at once.
            self._conn.execute("SET min_parallel_table_scan_size = '256MB'")
            self._setup()
        except BaseException:
            self._conn.close()
            raise

    # -- setup ------------------------------------------------------------

    def _setup(self) -> None:
        dim = self.embedder.dim
        want = {"schema": str(SCHEMA_VERSION), "embedder": self.embedder.name, "dim": str(dim)}
        psycopg = self._psycopg
        try:
            with self._conn.transaction():
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                has_vector = self._conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone()
                if not has_vector:
                    try:
                        with self._conn.transaction():
                            self._conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                    except psycopg.Error as exc:
                        raise MemoryStoreError(
                            f"{self.where}: the auction memory needs the pgvector extension "
                            f"(CREATE EXTENSION vector failed: {_first_line(exc)})"
                        ) from exc
                self._conn.execute("CREATE TABLE IF NOT EXISTS sale_memory_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                have = dict(self._conn.execute("SELECT key, value FROM sale_memory_meta").fetchall())
                if not have:
                    self._conn.execute(
                        "CREATE TABLE IF NOT EXISTS sale_memory_auctions ("
                        " task_id TEXT PRIMARY KEY, seq BIGSERIAL NOT NULL UNIQUE, task_text TEXT NOT NULL,"
                        " created_at DOUBLE PRECISION NOT NULL, winner TEXT, passed BOOLEAN, bids JSONB NOT NULL)"
                    )
                    self._conn.execute(
                        "CREATE TABLE IF NOT EXISTS sale_memory_embeddings ("
                        " seq BIGINT PRIMARY KEY REFERENCES sale_memory_auctions(seq) ON DELETE CASCADE,"
                        f" embedding vector({dim}) NOT NULL)"
                    )
                    # kept in the row, not compressed or moved out of line: a search scans them all
                    self._conn.execute("ALTER TABLE sale_memory_embeddings ALTER COLUMN embedding SET STORAGE PLAIN")
                    with self._conn.cursor() as cur:
                        cur.executemany("INSERT INTO sale_memory_meta(key, value) VALUES (%s, %s)", list(want.items()))
        except psycopg.Error as exc:
            raise MemoryStoreError(f"{self.where}: cannot set up the auction memory ({_first_line(exc)})") from exc
        check_meta(self.where, have, want, "use another database")

    # -- writes -----------------------------------------------------------

    def add(self, record: AuctionRecord) -> None:
        """Store ``record`` in its own committed transaction (replacing its task_id)."""
        self.add_many([record])

    def add_many(self, records: Iterable[AuctionRecord]) -> None:
        """Store several records in one committed transaction."""
        records = list(records)
        if not records:
            return
        vecs = _quantize(self.embedder.embed([r.task_text for r in records]))
        rows = [
            (r.task_id, r.task_text, r.created_at, r.winner, r.passed,
             json.dumps([asdict(b) for b in r.bids], ensure_ascii=False), _vector_text(v))
            for r, v in zip(records, vecs)
        ]  # fmt: skip
        self._write(
            "WITH a AS (INSERT INTO sale_memory_auctions(task_id, task_text, created_at, winner, passed, bids) "
            "VALUES (%s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT (task_id) DO UPDATE SET "
            "task_text = excluded.task_text, created_at = excluded.created_at, winner = excluded.winner, "
            "passed = excluded.passed, bids = excluded.bids RETURNING seq) "
            "INSERT INTO sale_memory_embeddings(seq, embedding) SELECT seq, %s::vector FROM a "
            "ON CONFLICT (seq) DO UPDATE SET embedding = excluded.embedding",
            rows,
        )

    def set_outcome(self, task_id: str, passed: bool | None) -> None:
        """Record whether the execution of ``task_id`` passed (None: unknown)."""
        value = None if passed is None else bool(passed)
        if self._write("UPDATE sale_memory_auctions SET passed = %s WHERE task_id = %s", [(value, task_id)]) == 0:
            raise MemoryStoreError(f"{self.where}: no auction for task '{task_id}'")

    def discard(self, task_id: str) -> None:
        """Forget the auction of ``task_id`` (a task that errored, to be run again)."""
        self._write("DELETE FROM sale_memory_auctions WHERE task_id = %s", [(task_id,)])

    def _write(self, sql: str, rows: list[tuple]) -> int:
        """Run ``sql`` for every row in one committed transaction; rows changed."""
        with self._lock:
            try:
                with self._conn.transaction(), self._conn.cursor() as cur:
                    changed = 0
                    for row in rows:
                        cur.execute(sql, row)
                        changed += max(cur.rowcount, 0)
                    return changed
            except self._psycopg.Error as exc:
                raise MemoryStoreError(f"{self.where}: write failed ({_first_line(exc)})") from exc

    # -- reads ------------------------------------------------------------

    _COLUMNS = "task_id, task_text, created_at, winner, passed, bids"

    def _record(self, row: tuple) -> AuctionRecord:
        task_id, task_text, created_at, winner, passed, bids = row
        try:
            return AuctionRecord(
                task_id=task_id, task_text=task_text, created_at=created_at, winner=winner, passed=passed,
                bids=[Bid.from_dict(b) for b in (json.loads(bids) if isinstance(bids, str) else bids)],
            )  # fmt: skip
        except (ValueError, TypeError) as exc:
            raise MemoryStoreError(f"{self.where}: record of task '{task_id}' is corrupt ({exc})") from exc

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except self._psycopg.Error as exc:
                raise MemoryStoreError(f"{self.where}: read failed ({_first_line(exc)})") from exc

    def get(self, task_id: str) -> AuctionRecord | None:
        rows = self._read(f"SELECT {self._COLUMNS} FROM sale_memory_auctions WHERE task_id = %s", (task_id,))
        return self._record(rows[0]) if rows else None

    def nearest_scored(
        self, text: str, k: int = 8, exclude_task_id: str | None = None
    ) -> list[tuple[float, AuctionRecord]]:
        """Like `nearest`, with each record's cosine similarity to ``text``."""
        if k <= 0:
            return []
        query = _vector_text(np.asarray(self.embedder.embed([text])[0], dtype=np.float32))
        columns = ", ".join(f"a.{c.strip()}" for c in self._COLUMNS.split(","))
        # the k + 1 best embeddings (one may be the excluded task's), then their records
        rows = self._read(
            "WITH hits AS (SELECT seq, embedding <#> %s::vector AS d FROM sale_memory_embeddings "
            "ORDER BY d, seq LIMIT %s) "
            f"SELECT -hits.d, {columns} FROM hits JOIN sale_memory_auctions a USING (seq) "
            "WHERE a.task_id IS DISTINCT FROM %s ORDER BY hits.d, hits.seq LIMIT %s",
            (query, k + 1, exclude_task_id, k),
        )
        return [(float(r[0]), self._record(r[1:])) for r in rows]

    def nearest(self, text: str, k: int = 8, exclude_task_id: str | None = None) -> list[AuctionRecord]:
        """The ``k`` most similar past auctions to ``text`` (cosine), best first."""
        return [rec for _, rec in self.nearest_scored(text, k, exclude_task_id)]

    def __iter__(self) -> Iterator[AuctionRecord]:
        """Every record, in the order their task_ids were first added."""
        last = 0
        while True:
            rows = self._read(
                f"SELECT seq, {self._COLUMNS} FROM sale_memory_auctions WHERE seq > %s ORDER BY seq LIMIT 1000", (last,)
            )
            if not rows:
                return
            for row in rows:
                yield self._record(row[1:])
            last = rows[-1][0]

    def __len__(self) -> int:
        return self._read("SELECT COUNT(*) FROM sale_memory_auctions")[0][0]

    def __contains__(self, task_id: object) -> bool:
        return bool(self._read("SELECT 1 FROM sale_memory_auctions WHERE task_id = %s", (task_id,)))

    # -- lifetime ---------------------------------------------------------

    def close(self) -> None:
        """Close the connection; the store is unusable afterwards."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> PostgresMemory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def open_memory(spec: Any, default_path: Any, embedder: Embedder | None = None, **sqlite_options: Any):
    """The auction memory named by ``spec``: a ``postgresql://`` URL, a SQLite file
    path, or None for ``default_path`` (a SQLite file)."""
    from sale.memory.store import SQLiteMemory

    if is_postgres_url(spec):
        return PostgresMemory(spec, embedder)
    return SQLiteMemory(default_path if spec in (None, "") else spec, embedder, **sqlite_options)
