"""A memory whose new auction records wait for their task's outcome.

The auction adds a task's record as soon as the auction ends, and the run sets the
outcome when the execution is graded. With several tasks in flight another auction
could read a record in between, whose outcome is not known yet. `StagedMemory` holds a
new record aside until its outcome is set, then writes record and outcome together
(one write), so that:

- an auction reads the memory as it stands when it starts (finished tasks only);
- a task's auction record and its outcome reach the memory when the task finishes;
- a task that errors (``discard``) or a process killed mid-task leaves nothing behind.

Inside ``as_of_now()`` (the run enters it when a task starts) ``nearest`` leaves out
the records this process wrote after that moment, so an auction reads the memory as it
stood when its task started, however many tasks finish meanwhile; so does
``outcome_counts`` (each agent's observed record, the outcome term's prior). Other reads (``get``,
iteration, ``len``) and every other method go to the wrapped store unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import itertools
from typing import Any, Iterable, Iterator

from sale.memory.store import AuctionRecord


_WRITES = itertools.count(1)  # one number per record written, in order, in this process
_last = 0
_AS_OF: contextvars.ContextVar[int | None] = contextvars.ContextVar("sale_memory_as_of", default=None)


def _next_write() -> int:
    global _last
    _last = next(_WRITES)
    return _last


@contextlib.contextmanager
def as_of_now() -> Iterator[None]:
    """Reads of a `StagedMemory` in this block (and the tasks it spawns) see the
    memory as it stands now: records written later are left out."""
    token = _AS_OF.set(_last)
    try:
        yield
    finally:
        _AS_OF.reset(token)


class StagedMemory:
    """Wraps a memory store (`sale.memory.store.MemoryStore`); see the module docstring."""

    def __init__(self, inner: Any):
        self.inner = inner
        self._staged: dict[str, AuctionRecord] = {}
        self._written: dict[str, int] = {}  # task id -> the number of its last write here

    @property
    def staged(self) -> list[str]:
        """Task ids whose records wait for an outcome."""
        return list(self._staged)

    def add(self, record: AuctionRecord) -> None:
        if record.passed is not None:  # the outcome is known: nothing to wait for
            self._staged.pop(record.task_id, None)
            self.inner.add(record)
            self._written[record.task_id] = _next_write()
        else:
            self._staged[record.task_id] = record

    def add_many(self, records: Iterable[AuctionRecord]) -> None:
        for rec in records:
            self.add(rec)

    def set_outcome(self, task_id: str, passed: bool | None) -> None:
        rec = self._staged.pop(task_id, None)
        if rec is None:
            self.inner.set_outcome(task_id, passed)
            return
        self.inner.add(dataclasses.replace(rec, passed=None if passed is None else bool(passed)))
        self._written[task_id] = _next_write()

    def discard(self, task_id: str) -> None:
        self._staged.pop(task_id, None)
        discard = getattr(self.inner, "discard", None)
        if discard is not None:
            discard(task_id)

    def _late(self, exclude_task_id: str | None) -> set[str]:
        """Tasks written after the current task started (see `as_of_now`)."""
        as_of = _AS_OF.get()
        late = set() if as_of is None else {t for t, n in self._written.items() if n > as_of}
        late.discard(exclude_task_id)
        return late

    def nearest(self, text: str, k: int = 8, exclude_task_id: str | None = None) -> list[AuctionRecord]:
        late = self._late(exclude_task_id)
        found = self.inner.nearest(text, k=k + len(late), exclude_task_id=exclude_task_id)
        return [r for r in found if r.task_id not in late][:k]

    def nearest_scored(self, text: str, k: int = 8, exclude_task_id: str | None = None) -> list[tuple[float, AuctionRecord]]:
        """`nearest` with similarities, under the same as-of rule (the memory term reads it)."""
        late = self._late(exclude_task_id)
        found = self.inner.nearest_scored(text, k=k + len(late), exclude_task_id=exclude_task_id)
        return [(s, r) for s, r in found if r.task_id not in late][:k]

    def outcome_counts(self, exclude_task_id: str | None = None) -> dict[str, tuple[int, int]]:
        """agent -> (passed, executed), under the same as-of rule (the memory term's prior)."""
        counts = dict(self.inner.outcome_counts(exclude_task_id=exclude_task_id))
        for task_id in self._late(exclude_task_id):
            rec = self.inner.get(task_id)
            if rec is None or rec.winner is None or rec.passed is None or rec.winner not in counts:
                continue
            passed, executed = counts[rec.winner]
            counts[rec.winner] = (passed - int(rec.passed), executed - 1)
            if counts[rec.winner][1] <= 0:
                del counts[rec.winner]
        return counts

    def __iter__(self) -> Iterator[AuctionRecord]:
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.inner

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:  # any other method of the wrapped store
        return getattr(self.__dict__["inner"], name)

    def __enter__(self) -> StagedMemory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
