"""The outcome matrix: what every agent of a pool did on every task, and its durable store.

The evaluation executes each task once with each agent of the pool and records a `Cell`
(passed or not, dollars, tokens, the answer). The baselines are trained on the cells of
the training split and evaluated by reading the cells of the test split, so every
routing method is compared on the same executions.

`OutcomeMatrix` holds the cells in memory, together with the few task fields routers use
as features (`TaskInfo`). `MatrixStore` keeps a matrix on disk as JSON Lines, appending
each cell as soon as it is produced, so a run that stops half-way resumes where it
stopped:

    with MatrixStore("runs/matrix.jsonl", agents=["small", "large"],
                     prices={"small": 0.05, "large": 0.36}) as store:
        for task in tasks:
            store.add_task(task)
            for agent in store.matrix.agents:
                if not store.has(task.id, agent):
                    store.add(execute(task, agent))   # -> Cell
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from sale.errors import SaleError
from sale.jsonl import JsonlWriter, read_jsonl, repair_tail


class MatrixError(SaleError):
    """An outcome matrix or its file is inconsistent (unknown agent, missing cell, bad line)."""


@dataclass
class Cell:
    """The outcome of one agent executing one task.

    ``dollars`` and the token counts cover the execution only. ``reason`` says why a
    failure failed (wrong answer, step limit, error), or is empty. ``reused`` marks a
    cell read back from an earlier run rather than executed now. ``grade`` holds a
    search answer's scores under every rule and the rule that passed it
    (`sale.envs.grading.recorded`), so the cell can be passed again under another.
    """

    task_id: str
    agent: str
    passed: bool
    dollars: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    answer: str | None = None
    reason: str = ""
    wall_s: float = 0.0
    reused: bool = False
    grade: dict[str, Any] = field(default_factory=dict)  # search: em, f1, match, judge, rule

    @property
    def tokens(self) -> int:
        """Input plus output tokens."""
        return int(self.input_tokens) + int(self.output_tokens)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        """Build a cell from a dict, ignoring keys it does not know."""
        known = {f.name for f in fields(cls)}
        try:
            cell = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise MatrixError(f"cell record {data!r} is incomplete: {exc}") from None
        cell.passed = bool(cell.passed)
        return cell


@dataclass(frozen=True)
class TaskInfo:
    """The fields of a task that routers and reports need (not its grading data)."""

    id: str
    domain: str = ""
    prompt: str = ""
    tier: int = 1
    tier_name: str = ""

    @classmethod
    def of(cls, task: Any) -> TaskInfo:
        """Take the fields from a `Task`, another TaskInfo or any object with them."""
        if isinstance(task, TaskInfo):
            return task
        return cls(
            id=str(task.id),
            domain=str(getattr(task, "domain", "") or ""),
            prompt=str(getattr(task, "prompt", "") or ""),
            tier=int(getattr(task, "tier", 1) or 1),
            tier_name=str(getattr(task, "tier_name", "") or ""),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class OutcomeMatrix:
    """Cells of a pool of agents over a set of tasks.

    ``agents`` keeps the pool's order; ``prices`` (dollars per million tokens) orders the
    agents by cost: the cheapest has the lowest price, the largest the highest (ties
    keep pool order). Tasks keep the order in which they were added.
    """

    def __init__(self, agents: list[str], prices: dict[str, float]):
        if not agents:
            raise MatrixError("an outcome matrix needs at least one agent")
        if len(set(agents)) != len(agents):
            raise MatrixError(f"agent names repeat in {agents}")
        missing = [a for a in agents if a not in prices]
        if missing:
            raise MatrixError(f"no price for agent(s) {missing}; prices given for {sorted(prices)}")
        self.agents: list[str] = list(agents)
        self.prices: dict[str, float] = {a: float(prices[a]) for a in agents}
        order = sorted(range(len(agents)), key=lambda i: (self.prices[agents[i]], i))
        #: Agents from cheapest to most expensive.
        self.by_price: list[str] = [agents[i] for i in order]
        self._tasks: dict[str, TaskInfo] = {}
        self._cells: dict[str, dict[str, Cell]] = {}

    # -- agents ---------------------------------------------------------------

    @property
    def cheapest(self) -> str:
        return self.by_price[0]

    @property
    def largest(self) -> str:
        """The most expensive agent."""
        return self.by_price[-1]

    def _check_agent(self, agent: str) -> None:
        if agent not in self.prices:
            raise MatrixError(f"unknown agent '{agent}'; the matrix has {self.agents}")

    # -- tasks and cells ------------------------------------------------------

    def add_task(self, task: Any) -> TaskInfo:
        """Register a task (a `Task` or `TaskInfo`); a task seen before is kept as it was."""
        info = TaskInfo.of(task)
        if info.id not in self._tasks:
            self._tasks[info.id] = info
            self._cells.setdefault(info.id, {})
        return self._tasks[info.id]

    def add(self, cell: Cell) -> None:
        """Store a cell, replacing any earlier cell of the same task and agent.

        A cell of a task never registered registers a bare TaskInfo for it.
        """
        self._check_agent(cell.agent)
        if cell.task_id not in self._tasks:
            self.add_task(TaskInfo(id=cell.task_id))
        self._cells[cell.task_id][cell.agent] = cell

    @property
    def tasks(self) -> list[TaskInfo]:
        """Every registered task, in the order added."""
        return list(self._tasks.values())

    @property
    def task_ids(self) -> list[str]:
        return list(self._tasks)

    def task(self, task_id: str) -> TaskInfo:
        try:
            return self._tasks[task_id]
        except KeyError:
            raise MatrixError(f"task '{task_id}' is not in the outcome matrix") from None

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    def has(self, task_id: str, agent: str) -> bool:
        return agent in self._cells.get(task_id, {})

    def get(self, task_id: str, agent: str) -> Cell:
        """The cell of ``agent`` on ``task_id``; MatrixError when it was never recorded."""
        self._check_agent(agent)
        try:
            return self._cells[task_id][agent]
        except KeyError:
            raise MatrixError(f"no cell for task '{task_id}' and agent '{agent}'") from None

    def cells(self) -> Iterator[Cell]:
        """Every cell, task by task in the order added, agents in pool order."""
        for tid in self._tasks:
            row = self._cells[tid]
            for agent in self.agents:
                if agent in row:
                    yield row[agent]

    def is_complete(self, task_id: str) -> bool:
        """True when every agent has a cell for the task."""
        row = self._cells.get(task_id, {})
        return all(a in row for a in self.agents)

    def missing(self, task_ids: Iterable[str] | None = None) -> list[tuple[str, str]]:
        """(task id, agent) pairs without a cell, over ``task_ids`` (default: all tasks)."""
        ids = self.task_ids if task_ids is None else list(task_ids)
        return [(t, a) for t in ids for a in self.agents if not self.has(t, a)]

    # -- per task -------------------------------------------------------------

    def success(self, task_id: str) -> dict[str, bool]:
        """Agent -> passed, for the agents that have a cell on the task."""
        self.task(task_id)
        row = self._cells[task_id]
        return {a: row[a].passed for a in self.agents if a in row}

    def oracle_agent(self, task_id: str) -> str | None:
        """The cheapest agent that passed the task; None when none did."""
        ok = self.success(task_id)
        return next((a for a in self.by_price if ok.get(a)), None)

    def target_agent(self, task_id: str) -> str:
        """The cheapest agent that passed, else the largest (the training target)."""
        return self.oracle_agent(task_id) or self.largest

    # -- numpy views ----------------------------------------------------------

    def _view(self, task_ids: Iterable[str] | None, value, dtype) -> np.ndarray:
        ids = self.task_ids if task_ids is None else list(task_ids)
        gaps = self.missing(ids)
        if gaps:
            shown = ", ".join(f"{t}/{a}" for t, a in gaps[:5])
            raise MatrixError(f"{len(gaps)} cell(s) missing for the requested tasks, e.g. {shown}")
        out = np.empty((len(ids), len(self.agents)), dtype=dtype)
        for i, tid in enumerate(ids):
            row = self._cells[tid]
            for j, agent in enumerate(self.agents):
                out[i, j] = value(row[agent])
        return out

    def success_matrix(self, task_ids: Iterable[str] | None = None) -> np.ndarray:
        """Boolean array (tasks, agents in pool order): did the agent pass the task."""
        return self._view(task_ids, lambda c: c.passed, bool)

    def dollars_matrix(self, task_ids: Iterable[str] | None = None) -> np.ndarray:
        """Float array (tasks, agents in pool order): dollars of each execution."""
        return self._view(task_ids, lambda c: c.dollars, float)

    def tokens_matrix(self, task_ids: Iterable[str] | None = None) -> np.ndarray:
        """Integer array (tasks, agents in pool order): tokens of each execution."""
        return self._view(task_ids, lambda c: c.tokens, np.int64)


class MatrixStore:
    """An `OutcomeMatrix` kept in a JSON Lines file, one record per line, appended as produced.

    Records are ``{"kind": "pool", "agents": [...], "prices": {...}}`` (first line),
    ``{"kind": "task", ...TaskInfo}`` and ``{"kind": "cell", ...Cell}``. Each record is
    appended with one write, flushed and (``fsync=True``, the default) synced to disk,
    through `sale.jsonl.JsonlWriter`.

    Opening an existing file loads its records, marking its cells ``reused``; a cell
    recorded twice keeps the later one. A last line cut short by a crash is cut from
    the file before anything is appended. When ``agents``/``prices`` are given for an
    existing file they must match its pool.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        agents: list[str] | None = None,
        prices: dict[str, float] | None = None,
        *,
        fsync: bool = True,
    ):
        self.path = Path(path)
        self._lock = threading.Lock()
        repair_tail(self.path)
        loaded = self._load()
        if loaded is None:
            if agents is None or prices is None:
                raise MatrixError(f"{self.path}: a new outcome matrix file needs agents and prices")
            self.matrix = OutcomeMatrix(agents, prices)
            if self.path.exists():
                self.path.write_bytes(b"")  # nothing but blank or torn lines
            self._writer = JsonlWriter(self.path, fsync=fsync)
            self._writer.write({"kind": "pool", "agents": self.matrix.agents, "prices": self.matrix.prices})
        else:
            self.matrix = loaded
            if agents is not None and list(agents) != loaded.agents:
                raise MatrixError(f"{self.path}: file holds agents {loaded.agents}, asked for {list(agents)}")
            if prices is not None and {a: float(p) for a, p in prices.items()} != loaded.prices:
                raise MatrixError(f"{self.path}: file holds prices {loaded.prices}, asked for {dict(prices)}")
            self._writer = JsonlWriter(self.path, fsync=fsync)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> OutcomeMatrix:
        """Read a matrix file (cutting a torn last line) without keeping it open."""
        if not Path(path).is_file():
            raise MatrixError(f"{path}: no such outcome matrix file")
        store = cls(path)
        store.close()
        return store.matrix

    def _load(self) -> OutcomeMatrix | None:
        records = list(read_jsonl(self.path))
        if not records:
            return None
        head = records[0]
        if head.get("kind") != "pool":
            raise MatrixError(f"{self.path}: the first record must be the pool (kind 'pool'), got {head.get('kind')!r}")
        matrix = OutcomeMatrix(list(head.get("agents") or []), dict(head.get("prices") or {}))
        for n, rec in enumerate(records[1:], start=2):
            kind = rec.get("kind")
            body = {k: v for k, v in rec.items() if k != "kind"}
            try:
                if kind == "task":
                    matrix.add_task(TaskInfo(**body))
                elif kind == "cell":
                    cell = Cell.from_dict(body)
                    cell.reused = True
                    matrix.add(cell)
                else:
                    raise MatrixError(f"unknown record kind {kind!r}")
            except (MatrixError, TypeError) as exc:
                raise MatrixError(f"{self.path}: record {n}: {exc}") from None
        return matrix

    def _write(self, record: dict[str, Any]) -> None:
        self._writer.write(record)

    def has(self, task_id: str, agent: str) -> bool:
        return self.matrix.has(task_id, agent)

    def add_task(self, task: Any) -> TaskInfo:
        """Register a task, writing its record the first time it is seen."""
        info = TaskInfo.of(task)
        with self._lock:
            if info.id not in self.matrix:
                self.matrix.add_task(info)
                self._write({"kind": "task", **info.to_dict()})
            return self.matrix.task(info.id)

    def add(self, cell: Cell, *, replace: bool = False) -> bool:
        """Append a cell. Returns False (writing nothing) when the cell already exists,
        unless ``replace`` is true."""
        with self._lock:
            if self.matrix.has(cell.task_id, cell.agent) and not replace:
                return False
            if cell.task_id not in self.matrix:
                info = TaskInfo(id=cell.task_id)
                self.matrix.add_task(info)
                self._write({"kind": "task", **info.to_dict()})
            self.matrix.add(cell)
            self._write({"kind": "cell", **cell.to_dict()})
            return True

    def pending(self, tasks: Iterable[Any]) -> list[tuple[Any, str]]:
        """(task, agent) pairs still to execute for ``tasks``, in task then pool order."""
        return [(t, a) for t in tasks for a in self.matrix.agents if not self.has(TaskInfo.of(t).id, a)]

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> MatrixStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
