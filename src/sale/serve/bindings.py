"""Bindings of task keys to their winners, in SQLite, with a time-to-live.

A binding holds the winner, its plan, the auction id (empty when the auction failed
and the fallback agent took the task), when it was created and last used, and the
outcome the harness reported. A binding is live while ``now - last_used <= ttl_s``;
an expired key holds a new auction on its next request.

Bindings are cached in memory once read. A new binding and an outcome are written at
once; the use of a binding (last used, request count) is written at most once a
second (``FLUSH_S``) and when the store closes, so a pinned request rarely writes: a
crash loses at most a second of "last used" times, never a binding.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

FLUSH_S = 1.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS bindings (
    key TEXT PRIMARY KEY,
    winner TEXT NOT NULL,
    plan TEXT NOT NULL,
    auction TEXT NOT NULL,
    fallback TEXT NOT NULL,
    created REAL NOT NULL,
    last_used REAL NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    passed INTEGER
)
"""


@dataclass
class Binding:
    key: str
    winner: str
    plan: str
    auction: str  # the auction id; "" when the fallback agent took the task
    fallback: str  # why the fallback agent took the task; "" after a won auction
    created: float
    last_used: float
    requests: int = 0
    passed: bool | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class BindingStore:
    """The bindings of one state folder (``bindings.sqlite``); safe across threads."""

    def __init__(self, path: str | Path, ttl_s: float):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)
        self._cache: dict[str, Binding] = {}
        self._dirty: set[str] = set()
        self._flushed = time.monotonic()

    def _row(self, row: tuple | None) -> Binding | None:
        if row is None:
            return None
        *head, passed = row
        return Binding(*head, passed=None if passed is None else bool(passed))

    def get(self, key: str, *, live: bool = True) -> Binding | None:
        """The binding of ``key``; with ``live``, None once its TTL has passed."""
        with self._lock:
            b = self._cache.get(key)
            if b is None:
                row = self._db.execute(
                    "SELECT key, winner, plan, auction, fallback, created, last_used, requests, passed "
                    "FROM bindings WHERE key = ?", (key,),
                ).fetchone()  # fmt: skip
                b = self._row(row)
                if b is not None:
                    self._cache[key] = b
        if b is not None and live and time.time() - b.last_used > self.ttl_s:
            return None
        return b

    def put(self, key: str, winner: str, plan: str, auction: str, fallback: str = "") -> Binding:
        """Bind ``key`` (replacing an expired binding)."""
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO bindings(key, winner, plan, auction, fallback, created, last_used, requests, passed) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 0, NULL) ON CONFLICT(key) DO UPDATE SET winner = excluded.winner, "
                "plan = excluded.plan, auction = excluded.auction, fallback = excluded.fallback, "
                "created = excluded.created, last_used = excluded.last_used, requests = 0, passed = NULL",
                (key, winner, plan, auction, fallback, now, now),
            )
            b = self._cache[key] = Binding(key, winner, plan, auction, fallback, now, now)
            self._dirty.discard(key)
        return b

    def touch(self, key: str) -> None:
        """Count one request of ``key`` and mark it used now (written within FLUSH_S)."""
        with self._lock:
            b = self._cache.get(key)
            if b is None:
                return
            b.last_used = time.time()
            b.requests += 1
            self._dirty.add(key)
            if time.monotonic() - self._flushed >= FLUSH_S:
                self._flush()

    def flush(self) -> None:
        """Write the uses of bindings not yet written."""
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        rows = [(self._cache[k].last_used, self._cache[k].requests, k) for k in self._dirty if k in self._cache]
        if rows:
            self._db.executemany("UPDATE bindings SET last_used = ?, requests = ? WHERE key = ?", rows)
        self._dirty.clear()
        self._flushed = time.monotonic()

    def set_outcome(self, key: str, passed: bool) -> None:
        with self._lock:
            self._db.execute("UPDATE bindings SET passed = ? WHERE key = ?", (int(passed), key))
            if key in self._cache:
                self._cache[key].passed = passed

    def age(self, key: str, seconds: float) -> None:
        """Move the binding's times ``seconds`` into the past (tests and tools use it to
        expire a binding without waiting)."""
        with self._lock:
            self._flush()
            self._cache.pop(key, None)
            self._db.execute(
                "UPDATE bindings SET created = created - ?, last_used = last_used - ? WHERE key = ?",
                (seconds, seconds, key),
            )

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM bindings").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._flush()
            self._db.close()
