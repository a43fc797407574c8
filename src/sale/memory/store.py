"""The auction memory: past auctions, searchable by task similarity.

Every finished auction is stored as an `AuctionRecord`: the task, every bid (original
and refined, each with its scores and whether it won), the winning agent and, once a
grader has run, whether the execution passed. Cheaper agents retrieve the records of
the most similar past tasks and learn from (losing, winning) strategy pairs taken from
them (`contrastive_pairs`).

Two stores implement the `MemoryStore` protocol:

- `SQLiteMemory`: the embedded default. One SQLite file in WAL mode; every add is a
  committed transaction; the embeddings are stored beside the records, and nearest-k
  search runs with numpy over an in-memory matrix loaded once on first search and
  kept up to date on every add. Writes from many threads (or asyncio tasks) of one
  process are serialised by a lock; other processes writing the same file are noticed
  through SQLite's data_version and the matrix is reloaded.
- `InMemoryMemory`: the same behaviour without a file, for tests and ablations.

Embeddings are rounded to float16 on the way in (that is how they are stored on disk)
so both stores, and a store before and after a reopen, rank identically.
"""

from __future__ import annotations

import copy
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from sale.errors import ConfigError, SaleError
from sale.memory.embedders import Embedder, LexicalEmbedder

BID_KINDS = ("original", "refined")


class MemoryStoreError(SaleError):
    """An auction memory file or record is unusable (says which and why)."""


@dataclass
class Bid:
    """One bid as remembered: who bid, the strategy text, its scores, whether it won.

    ``total`` is C - V (lower is better), ``jury_mean`` the mean jury score (0..5).
    """

    agent: str
    text: str
    kind: str = "original"
    cost: float = 0.0
    value: float = 0.0
    total: float = 0.0
    jury_mean: float = 0.0
    won: bool = False

    def __post_init__(self) -> None:
        if self.kind not in BID_KINDS:
            raise MemoryStoreError(f"bid of agent '{self.agent}': kind must be one of {BID_KINDS}, got {self.kind!r}")
        for name in ("cost", "value", "total", "jury_mean"):
            setattr(self, name, float(getattr(self, name)))
        self.won = bool(self.won)

    @classmethod
    def from_dict(cls, data: dict) -> Bid:
        return cls(**data)


@dataclass
class AuctionRecord:
    """One auction of one task, as stored in the memory.

    ``winner`` names the agent of the bid flagged ``won`` (both are None/False when the
    auction had no winner). ``passed`` is the execution's outcome: None until known.
    """

    task_id: str
    task_text: str
    bids: list[Bid] = field(default_factory=list)
    winner: str | None = None
    passed: bool | None = None
    created_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.bids = [b if isinstance(b, Bid) else Bid.from_dict(b) for b in self.bids]
        won = [b for b in self.bids if b.won]
        if len(won) > 1:
            raise MemoryStoreError(f"task '{self.task_id}': {len(won)} bids are flagged won; at most one may be")
        flagged = won[0].agent if won else None
        if flagged != self.winner:
            raise MemoryStoreError(
                f"task '{self.task_id}': winner is {self.winner!r} but the bid flagged won is by {flagged!r}"
            )
        if self.passed is not None:
            self.passed = bool(self.passed)
        self.created_at = float(self.created_at)

    def winning_bid(self) -> Bid | None:
        """The bid flagged won, or None when the auction had no winner."""
        return next((b for b in self.bids if b.won), None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AuctionRecord:
        return cls(**data)


@runtime_checkable
class MemoryStore(Protocol):
    """What the auction needs from a memory: add, search, iterate, report outcomes."""

    def add(self, record: AuctionRecord) -> None:
        """Store ``record``, replacing any record of the same task_id."""
        ...

    def nearest(self, text: str, k: int = 8, exclude_task_id: str | None = None) -> list[AuctionRecord]:
        """The ``k`` records whose task text is most similar to ``text``, best first."""
        ...

    def set_outcome(self, task_id: str, passed: bool | None) -> None:
        """Record whether the winner's execution of ``task_id`` passed."""
        ...

    def __iter__(self) -> Iterator[AuctionRecord]: ...

    def __len__(self) -> int: ...


# ---------------------------------------------------------------------------
# Contrastive pairs
# ---------------------------------------------------------------------------


def contrastive_pairs(
    records: Iterable[AuctionRecord], agent: str, *, require_success: bool = False
) -> list[tuple[Bid, Bid, AuctionRecord]]:
    """One (losing bid, winning bid, record) triple per record, involving ``agent``.

    For each record with a winner:

    1. if ``agent`` has a losing bid, pair it with the winning bid (its original bid
       is preferred over a refined one, as that is what it writes unprompted);
    2. else, if ``agent`` itself won, pair its winning bid with the strongest losing
       bid of another agent (lowest C - V: the closest contest);
    3. else the record is skipped (the agent took no part).

    With ``require_success`` a winning bid only counts when its execution passed, so
    records whose outcome is False or unknown are skipped.
    """
    out: list[tuple[Bid, Bid, AuctionRecord]] = []
    for rec in records:
        winning = rec.winning_bid()
        if winning is None or (require_success and rec.passed is not True):
            continue
        own_losing = [b for b in rec.bids if b.agent == agent and not b.won]
        if own_losing:
            loser = min(own_losing, key=lambda b: (b.kind != "original", b.total))
            out.append((loser, winning, rec))
            continue
        if winning.agent == agent:
            others = [b for b in rec.bids if b.agent != agent and not b.won]
            if others:
                out.append((min(others, key=lambda b: b.total), winning, rec))
    return out


# ---------------------------------------------------------------------------
# The vector index shared by both stores
# ---------------------------------------------------------------------------


def _quantize(mat: np.ndarray) -> np.ndarray:
    """Round embeddings to float16 precision (the stored form), kept as float32."""
    return np.asarray(mat, dtype=np.float32).astype(np.float16).astype(np.float32)


class _VectorIndex:
    """Task ids and their embeddings, as a growable float32 matrix; dot-product top-k."""

    def __init__(self, dim: int):
        self.dim = dim
        self._mat = np.zeros((0, dim), dtype=np.float32)
        self._n = 0
        self._ids: list[str] = []
        self._slot: dict[str, int] = {}

    @classmethod
    def from_arrays(cls, ids: list[str], mat: np.ndarray) -> _VectorIndex:
        """An index over distinct ``ids`` with rows ``mat`` (taken over, not copied)."""
        index = cls(mat.shape[1])
        index._mat, index._n, index._ids = mat, len(ids), list(ids)
        index._slot = {task_id: i for i, task_id in enumerate(ids)}
        return index

    def __len__(self) -> int:
        return self._n

    def _reserve(self, extra: int) -> None:
        need = self._n + extra
        if need > self._mat.shape[0]:
            cap = max(need, 2 * self._mat.shape[0], 1024)
            grown = np.zeros((cap, self.dim), dtype=np.float32)
            grown[: self._n] = self._mat[: self._n]
            self._mat = grown

    def upsert_many(self, ids: list[str], mat: np.ndarray) -> None:
        """Set the vector of each id (new ids get the next slots; a repeated id keeps its last row)."""
        self._reserve(len(ids))
        slots = np.empty(len(ids), dtype=np.int64)
        for j, task_id in enumerate(ids):
            slot = self._slot.get(task_id)
            if slot is None:
                slot = self._slot[task_id] = self._n
                self._ids.append(task_id)
                self._n += 1
            slots[j] = slot
        # Keep the last row given for each slot.
        _, last = np.unique(slots[::-1], return_index=True)
        keep = len(ids) - 1 - last
        self._mat[slots[keep]] = np.asarray(mat, dtype=np.float32)[keep]

    def remove(self, task_id: str) -> None:
        """Drop the vector of ``task_id`` (the others keep their order)."""
        slot = self._slot.pop(task_id, None)
        if slot is None:
            return
        self._mat = np.delete(self._mat[: self._n], slot, axis=0)
        del self._ids[slot]
        self._n -= 1
        self._slot = {tid: i for i, tid in enumerate(self._ids)}

    def search(self, query: np.ndarray, k: int, exclude: str | None = None) -> list[tuple[str, float]]:
        """Top-k (task_id, cosine) by descending similarity; ties broken by insertion order."""
        if self._n == 0 or k <= 0:
            return []
        # einsum runs single-threaded: steadier than a threaded BLAS call when the
        # cores are busy with the rest of the run, and as fast for one query vector.
        scores = np.einsum("ij,j->i", self._mat[: self._n], np.asarray(query, dtype=np.float32))
        if exclude is not None and exclude in self._slot:
            scores[self._slot[exclude]] = -np.inf
        k_eff = min(k, self._n)
        cand = np.argpartition(-scores, k_eff - 1)[:k_eff] if k_eff < self._n else np.arange(self._n)
        order = cand[np.lexsort((cand, -scores[cand]))]
        return [(self._ids[i], float(scores[i])) for i in order if np.isfinite(scores[i])]


# ---------------------------------------------------------------------------
# In-memory store
# ---------------------------------------------------------------------------


def count_outcomes(records: Iterable[AuctionRecord], exclude_task_id: str | None = None) -> dict[str, tuple[int, int]]:
    """agent -> (passed, executed) over ``records`` whose winner and outcome are known."""
    out: dict[str, tuple[int, int]] = {}
    for rec in records:
        if rec.task_id == exclude_task_id or rec.winner is None or rec.passed is None:
            continue
        p, n = out.get(rec.winner, (0, 0))
        out[rec.winner] = (p + int(rec.passed), n + 1)
    return out


class InMemoryMemory:
    """A `MemoryStore` held in a dict; same ranking as `SQLiteMemory`, nothing on disk."""

    def __init__(self, embedder: Embedder | None = None):
        self.embedder = embedder or LexicalEmbedder()
        self._records: dict[str, AuctionRecord] = {}
        self._index = _VectorIndex(self.embedder.dim)
        self._lock = threading.RLock()

    def add(self, record: AuctionRecord) -> None:
        self.add_many([record])

    def add_many(self, records: Iterable[AuctionRecord]) -> None:
        """Store several records (each replaces any earlier one of its task_id)."""
        records = list(records)
        if not records:
            return
        vecs = _quantize(self.embedder.embed([r.task_text for r in records]))
        with self._lock:
            for rec in records:
                self._records[rec.task_id] = copy.deepcopy(rec)
            self._index.upsert_many([r.task_id for r in records], vecs)

    def get(self, task_id: str) -> AuctionRecord | None:
        with self._lock:
            rec = self._records.get(task_id)
            return copy.deepcopy(rec) if rec is not None else None

    def nearest_scored(
        self, text: str, k: int = 8, exclude_task_id: str | None = None
    ) -> list[tuple[float, AuctionRecord]]:
        """Like `nearest`, with each record's cosine similarity to ``text``."""
        query = self.embedder.embed([text])[0]
        with self._lock:
            hits = self._index.search(query, k, exclude_task_id)
            return [(score, copy.deepcopy(self._records[tid])) for tid, score in hits]

    def nearest(self, text: str, k: int = 8, exclude_task_id: str | None = None) -> list[AuctionRecord]:
        return [rec for _, rec in self.nearest_scored(text, k, exclude_task_id)]

    def set_outcome(self, task_id: str, passed: bool | None) -> None:
        with self._lock:
            if task_id not in self._records:
                raise MemoryStoreError(f"in-memory auction memory: no auction for task '{task_id}'")
            self._records[task_id].passed = None if passed is None else bool(passed)

    def outcome_counts(self, exclude_task_id: str | None = None) -> dict[str, tuple[int, int]]:
        """agent -> (passed, executed) over the stored auctions whose outcome is known."""
        with self._lock:
            return count_outcomes(self._records.values(), exclude_task_id)

    def discard(self, task_id: str) -> None:
        """Forget the auction of ``task_id`` (a task that errored, to be run again)."""
        with self._lock:
            self._records.pop(task_id, None)
            self._index.remove(task_id)

    def __iter__(self) -> Iterator[AuctionRecord]:
        with self._lock:
            snapshot = [copy.deepcopy(r) for r in self._records.values()]
        return iter(snapshot)

    def __len__(self) -> int:
        return len(self._records)

    def close(self) -> None:
        """Nothing to release; present so both stores can be used alike."""


# ---------------------------------------------------------------------------
# SQLite store
# ---------------------------------------------------------------------------

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS auctions (
    task_id    TEXT PRIMARY KEY,
    task_text  TEXT NOT NULL,
    created_at REAL NOT NULL,
    winner     TEXT,
    passed     INTEGER,
    bids       TEXT NOT NULL
);
-- Kept apart from the records so loading the search matrix reads only vectors; rows
-- are inserted in the same order as auctions, so rowid order is insertion order.
CREATE TABLE IF NOT EXISTS embeddings (
    task_id   TEXT NOT NULL UNIQUE,
    embedding BLOB NOT NULL
);
"""

_COLUMNS = "task_id, task_text, created_at, winner, passed, bids"


def check_meta(where: str, have: dict[str, str], want: dict[str, str], instead: str) -> None:
    """A stored memory's metadata (``have``; empty: a new memory) against what this
    version and embedder write (``want``): a clear error on a schema or embedder
    mismatch; ``instead`` says what else the user can open."""
    if not have:
        return
    if have.get("schema") != want["schema"]:
        raise MemoryStoreError(f"{where}: memory schema version {have.get('schema')}, this version reads {want['schema']}")
    if have.get("embedder") != want["embedder"] or have.get("dim") != want["dim"]:
        raise ConfigError(
            f"{where}: this memory was built with embedder '{have.get('embedder')}' "
            f"(dim {have.get('dim')}), not '{want['embedder']}' (dim {want['dim']}); "
            f"open it with the same embedder or {instead}"
        )


class SQLiteMemory:
    """The auction memory in one SQLite file (see the module docstring).

    ``busy_timeout_s`` is how long a write waits for another process's write lock.
    ``synchronous`` is SQLite's durability level: FULL (default) survives power loss
    after every committed add, NORMAL survives a crash of the process only.
    The file records the embedder's name; opening it with another embedder raises
    ConfigError rather than mixing incomparable vectors.
    """

    def __init__(
        self,
        path: str | Path,
        embedder: Embedder | None = None,
        *,
        busy_timeout_s: float = 10.0,
        synchronous: str = "FULL",
    ):
        self.path = Path(path)
        self.embedder = embedder or LexicalEmbedder()
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ConfigError(f"{self.path}: synchronous must be OFF, NORMAL, FULL or EXTRA, got {synchronous!r}")
        self._lock = threading.RLock()
        self._index: _VectorIndex | None = None
        self._index_version: int | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                str(self.path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise MemoryStoreError(f"{self.path}: cannot open the auction memory ({exc})") from exc
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            self._conn.executescript(_SCHEMA)
            self._check_meta()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise MemoryStoreError(f"{self.path}: not a usable auction memory file ({exc})") from exc
        except BaseException:
            self._conn.close()
            raise

    # -- setup ------------------------------------------------------------

    def _check_meta(self) -> None:
        want = {"schema": str(SCHEMA_VERSION), "embedder": self.embedder.name, "dim": str(self.embedder.dim)}
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                have = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
                if not have:
                    self._conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", want.items())
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        check_meta(str(self.path), have, want, "start a new memory file")

    # -- conversion -------------------------------------------------------

    def _row_to_record(self, row: tuple) -> AuctionRecord:
        task_id, task_text, created_at, winner, passed, bids = row
        try:
            return AuctionRecord(
                task_id=task_id,
                task_text=task_text,
                created_at=created_at,
                winner=winner,
                passed=None if passed is None else bool(passed),
                bids=[Bid.from_dict(b) for b in json.loads(bids)],
            )
        except (ValueError, TypeError) as exc:
            raise MemoryStoreError(f"{self.path}: record of task '{task_id}' is corrupt ({exc})") from exc

    @staticmethod
    def _record_to_row(rec: AuctionRecord) -> tuple:
        bids = json.dumps([asdict(b) for b in rec.bids], ensure_ascii=False)
        passed = None if rec.passed is None else int(rec.passed)
        return (rec.task_id, rec.task_text, rec.created_at, rec.winner, passed, bids)

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
        rows = [self._record_to_row(r) for r in records]
        blobs = [(r.task_id, v.astype(np.float16).tobytes()) for r, v in zip(records, vecs)]
        with self._lock:
            self._write(
                [
                    (
                        "INSERT INTO auctions(task_id, task_text, created_at, winner, passed, bids) "
                        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(task_id) DO UPDATE SET "
                        "task_text = excluded.task_text, created_at = excluded.created_at, "
                        "winner = excluded.winner, passed = excluded.passed, bids = excluded.bids",
                        rows,
                    ),
                    (
                        "INSERT INTO embeddings(task_id, embedding) VALUES (?, ?) "
                        "ON CONFLICT(task_id) DO UPDATE SET embedding = excluded.embedding",
                        blobs,
                    ),
                ]
            )
            if self._index is not None:
                self._index.upsert_many([r.task_id for r in records], vecs)

    def set_outcome(self, task_id: str, passed: bool | None) -> None:
        """Record whether the execution of ``task_id`` passed (None: unknown)."""
        value = None if passed is None else int(bool(passed))
        with self._lock:
            changed = self._write([("UPDATE auctions SET passed = ? WHERE task_id = ?", [(value, task_id)])])
        if changed == 0:
            raise MemoryStoreError(f"{self.path}: no auction for task '{task_id}'")

    def outcome_counts(self, exclude_task_id: str | None = None) -> dict[str, tuple[int, int]]:
        """agent -> (passed, executed) over the stored auctions whose outcome is known."""
        with self._lock:
            try:
                rows = self._conn.execute(
                    "SELECT winner, SUM(passed), COUNT(*) FROM auctions WHERE passed IS NOT NULL "
                    "AND winner IS NOT NULL AND task_id IS NOT ? GROUP BY winner",
                    (exclude_task_id,),
                ).fetchall()
            except sqlite3.Error as exc:
                raise MemoryStoreError(f"{self.path}: reading outcomes failed ({exc})") from exc
        return {w: (int(p), int(n)) for w, p, n in rows}

    def discard(self, task_id: str) -> None:
        """Forget the auction of ``task_id`` (a task that errored, to be run again)."""
        with self._lock:
            self._write([("DELETE FROM auctions WHERE task_id = ?", [(task_id,)]),
                         ("DELETE FROM embeddings WHERE task_id = ?", [(task_id,)])])
            if self._index is not None:
                self._index.remove(task_id)

    def _write(self, statements: list[tuple[str, list[tuple]]]) -> int:
        """Run each (sql, rows) in one committed transaction; rows changed by the first."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                changed = [self._conn.executemany(sql, rows).rowcount for sql, rows in statements]
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                    self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise MemoryStoreError(f"{self.path}: write failed ({exc})") from exc
        return changed[0]

    # -- reads ------------------------------------------------------------

    def _data_version(self) -> int:
        return self._conn.execute("PRAGMA data_version").fetchone()[0]

    def _ensure_index(self) -> _VectorIndex:
        """Load the embedding matrix once; reload it if another connection wrote."""
        version = self._data_version()
        if self._index is None or version != self._index_version:
            dim = self.embedder.dim
            rows = self._conn.execute("SELECT task_id, embedding FROM embeddings ORDER BY rowid").fetchall()
            mat = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float16).astype(np.float32)
            if mat.size != len(rows) * dim:
                raise MemoryStoreError(f"{self.path}: stored embeddings do not all have dimension {dim}")
            index = _VectorIndex.from_arrays([r[0] for r in rows], mat.reshape(len(rows), dim))
            self._index, self._index_version = index, version
        return self._index

    def _fetch(self, task_ids: list[str]) -> dict[str, AuctionRecord]:
        found: dict[str, AuctionRecord] = {}
        for start in range(0, len(task_ids), 500):
            chunk = task_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._conn.execute(f"SELECT {_COLUMNS} FROM auctions WHERE task_id IN ({marks})", chunk):
                found[row[0]] = self._row_to_record(row)
        return found

    def get(self, task_id: str) -> AuctionRecord | None:
        """The record of ``task_id``, or None."""
        with self._lock:
            return self._fetch([task_id]).get(task_id)

    def nearest_scored(
        self, text: str, k: int = 8, exclude_task_id: str | None = None
    ) -> list[tuple[float, AuctionRecord]]:
        """Like `nearest`, with each record's cosine similarity to ``text``."""
        query = self.embedder.embed([text])[0]
        with self._lock:
            try:
                hits = self._ensure_index().search(query, k, exclude_task_id)
                records = self._fetch([tid for tid, _ in hits])
            except sqlite3.Error as exc:
                raise MemoryStoreError(f"{self.path}: search failed ({exc})") from exc
        return [(score, records[tid]) for tid, score in hits if tid in records]

    def nearest(self, text: str, k: int = 8, exclude_task_id: str | None = None) -> list[AuctionRecord]:
        """The ``k`` most similar past auctions to ``text`` (cosine), best first."""
        return [rec for _, rec in self.nearest_scored(text, k, exclude_task_id)]

    def __iter__(self) -> Iterator[AuctionRecord]:
        """Every record, in the order their task_ids were first added."""
        last = 0
        while True:
            with self._lock:
                rows = self._conn.execute(
                    f"SELECT rowid, {_COLUMNS} FROM auctions WHERE rowid > ? ORDER BY rowid LIMIT 1000", (last,)
                ).fetchall()
            if not rows:
                return
            for row in rows:
                yield self._row_to_record(row[1:])
            last = rows[-1][0]

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM auctions").fetchone()[0]

    def __contains__(self, task_id: object) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM auctions WHERE task_id = ?", (task_id,)).fetchone() is not None

    # -- lifetime ---------------------------------------------------------

    def close(self) -> None:
        """Close the file; the store is unusable afterwards."""
        with self._lock:
            self._conn.close()
            self._index = None

    def __enter__(self) -> SQLiteMemory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
