"""The cost ledger: every LLM call, with agent, phase, tokens (prompt tokens served
from the endpoint's cache among them), dollars and latency.

Entries are kept in memory and, when the ledger has a path, appended to a JSON Lines
file as they happen (one line per call, flushed), so totals can be read back later
from the file alone. Callers tag calls with a phase label ("bid", "jury", "refine",
"execute" or their own) and, through `ledger_tags`, with the task being worked on.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

_TAGS: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("sale_ledger_tags", default={})


@contextlib.contextmanager
def ledger_tags(**tags: str) -> Iterator[None]:
    """Tag every call made inside this block (and tasks it spawns) with ``tags``.

    The run loop uses ``ledger_tags(task=task.id)`` so per-task totals can be read back.
    """
    token = _TAGS.set({**_TAGS.get(), **tags})
    try:
        yield
    finally:
        _TAGS.reset(token)


def current_tags() -> dict[str, str]:
    return dict(_TAGS.get())


@dataclass
class LedgerEntry:
    agent: str
    phase: str
    input_tokens: int
    output_tokens: int
    dollars: float
    latency_s: float
    ok: bool = True
    error: str = ""
    task: str = ""
    ts: float = field(default_factory=time.time)
    cached_tokens: int = 0  # prompt tokens served from the endpoint's cache (part of input_tokens)


@dataclass
class Totals:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    dollars: float = 0.0
    latency_s: float = 0.0
    failed: int = 0
    cached_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, e: LedgerEntry) -> None:
        self.calls += 1
        self.input_tokens += e.input_tokens
        self.output_tokens += e.output_tokens
        self.dollars += e.dollars
        self.latency_s += e.latency_s
        self.failed += 0 if e.ok else 1
        self.cached_tokens += e.cached_tokens

    def as_dict(self) -> dict:
        return {**asdict(self), "tokens": self.tokens}


def summarise(entries: Iterable[LedgerEntry], by: str | None = None) -> dict[str, Totals] | Totals:
    """Totals over ``entries``, grouped by an entry field ("agent", "phase", "task") or not."""
    if by is None:
        total = Totals()
        for e in entries:
            total.add(e)
        return total
    out: dict[str, Totals] = {}
    for e in entries:
        out.setdefault(getattr(e, by), Totals()).add(e)
    return out


class Ledger:
    """Records calls; optionally appends them to a JSONL file."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else None
        self.entries: list[LedgerEntry] = []
        self._lock = threading.Lock()
        self._fh = None
        if self.path:
            from sale.jsonl import repair_tail

            self.path.parent.mkdir(parents=True, exist_ok=True)
            repair_tail(self.path)  # a crash mid-write leaves a torn line; cut it off
            self._fh = open(self.path, "a", encoding="utf-8")

    def record(self, entry: LedgerEntry) -> None:
        if not entry.task:
            entry.task = _TAGS.get().get("task", "")
        with self._lock:
            self.entries.append(entry)
            if self._fh:
                self._fh.write(json.dumps(asdict(entry)) + "\n")
                self._fh.flush()

    def totals(self, by: str | None = None, *, task: str | None = None):
        entries = self.entries if task is None else [e for e in self.entries if e.task == task]
        return summarise(entries, by)

    def close(self) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None

    @staticmethod
    def read(path: str | Path) -> list[LedgerEntry]:
        """Entries of a ledger file; a torn last line (a crash mid-write) is skipped."""
        out = []
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    out.append(LedgerEntry(**json.loads(line)))
                except (json.JSONDecodeError, TypeError):
                    continue
        return out
