"""The main job: stream tasks through a router (the auction) and the winner's execution.

The path of one task::

    Task -> router.route (auction) -> winner + strategy -> execute (agent, environment)
         -> graded Outcome -> router.observe (memory), ledger, results.jsonl

A run directory holds everything a run produced: ``results.jsonl`` (one line per
finished task, appended durably), ``summary.json``, ``memory.sqlite`` (the auction
memory), ``ledger.jsonl`` (every call), ``auctions/`` (one auction record per task) and
``trajectories/`` (one JSONL trajectory per execution). A rerun with the same directory
skips the tasks already in ``results.jsonl``, so an interrupted run loses nothing.

Budgets (the pool file's ``budget:`` section, `sale.llm.budget`): a call that could pass
the per-task or per-run dollar limit is refused before it is made. A task with a
refused call is recorded with ``budget`` naming the limit ("per_task" or "per_run"),
and with reason "budget: ..." when the refusal ended it. After a per-run refusal no
further task is started (a rerun with a larger budget resumes them); summary.json
says so under ``budget``. A resumed run counts what its ledger recorded before.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from sale.agent.executor import Limits
from sale.agent.modes import ExecutionSettings, execution_config, run_execution
from sale.envs.base import Environment
from sale.errors import ConfigError, SaleError
from sale.jsonl import JsonlWriter, read_jsonl, write_json_atomic
from sale.llm.budget import PER_RUN, PER_TASK
from sale.llm.ledger import Ledger, ledger_tags, summarise
from sale.llm.pool import Pool
from sale.routers.base import Router
from sale.workloads.task import Task

AUCTION_PHASES = ("bid", "jury", "refine")


def safe_name(task_id: str) -> str:
    """A file name for a task id (ids contain '/' and other characters)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", task_id)[:80]
    return f"{stem}-{hashlib.sha1(task_id.encode()).hexdigest()[:8]}"


# ----------------------------------------------------------------------------- environments


def build_environments(
    tasks: Iterable[Task],
    *,
    data_dir: str | Path | None = None,
    documents: Iterable[str | Path] = (),
    hide_paths: Iterable[str | Path] = (),
) -> dict[str, Environment]:
    """The environments the tasks need, by domain.

    Search tasks get one collection: the tasks' own paragraphs, the given document
    files and, with ``data_dir``, the default collection of the benchmark data.
    Model-written code cannot see ``data_dir`` or ``hide_paths`` (folders holding the
    tasks' reference solutions and hidden tests).
    """
    tasks = list(tasks)
    domains = {t.domain for t in tasks}
    unknown = domains - {"coding", "search"}
    if unknown:
        raise ConfigError(f"no built-in environment for domain(s) {', '.join(sorted(unknown))}; pass your own environments")
    envs: dict[str, Environment] = {}
    if "coding" in domains:
        from sale.envs.coding import CodingEnvironment

        import sys

        needed = {Path(sys.prefix).resolve(), Path(sys.executable).resolve()}
        hidden = [
            str(p) for p in (Path(h).resolve() for h in (*hide_paths, *([data_dir] if data_dir else [])))
            if not any(n == p or p in n.parents for n in needed)  # never hide the interpreter
        ]
        envs["coding"] = CodingEnvironment(hide_paths=hidden)
    if "search" in domains:
        from sale.envs import search

        search_tasks = [t for t in tasks if t.domain == "search"]
        if data_dir is not None:
            index = search.default_collection(Path(data_dir), search_tasks)
        else:
            docs = list(search.load_collection([Path(p) for p in documents]))
            docs += [d for t in search_tasks for d in t.documents]
            index = search.SearchIndex.build(docs)
        envs["search"] = search.SearchEnvironment(index)
    return envs


# ----------------------------------------------------------------------------- results


@dataclass
class TaskRecord:
    """One line of results.jsonl."""

    task_id: str
    tier: int
    tier_name: str
    domain: str
    winner: str
    winner_kind: str
    passed: bool
    score: float
    reason: str
    dollars: dict[str, float]
    tokens: dict[str, int]
    tokens_by_agent: dict[str, int]
    wall_s: float
    auction_wall_s: float
    trajectory: str
    auction: str
    answer: str | None = None
    error: str = ""
    budget: str = ""  # the budget that refused a call of this task: "per_task", "per_run" or ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def summarise_results(records: list[dict[str, Any]], agents: list[str], largest: str) -> dict[str, Any]:
    """summary.json: pass@1, dollars, wins per agent, auction overhead, and tokens
    and dollars per phase (bid, jury, refine, execute: per task and shares)."""
    n = len(records)
    wins = Counter(r["winner"] for r in records)
    dollars = sum(r["dollars"].get("total", 0.0) for r in records)
    tokens = sum(r["tokens"].get("total", 0) for r in records)
    overhead_tokens = sum(r["tokens"].get(p, 0) for r in records for p in AUCTION_PHASES)
    overhead_dollars = sum(r["dollars"].get(p, 0.0) for r in records for p in AUCTION_PHASES)
    wall = sum(r["wall_s"] for r in records)
    auction_wall = sum(r["auction_wall_s"] for r in records)
    tiers: dict[str, list[bool]] = {}
    for r in records:
        tiers.setdefault(r["tier_name"] or str(r["tier"]), []).append(bool(r["passed"]))
    phases = [p for p in dict.fromkeys(p for r in records for p in r["dollars"]) if p != "total"]
    by_phase = {}
    for p in phases:
        p_tokens = sum(r["tokens"].get(p, 0) for r in records)
        p_dollars = sum(r["dollars"].get(p, 0.0) for r in records)
        by_phase[p] = {
            "tokens_per_task": p_tokens / n, "dollars_per_task": p_dollars / n,
            "token_share": p_tokens / tokens if tokens else 0.0,
            "dollar_share": p_dollars / dollars if dollars else 0.0,
        }  # fmt: skip
    return {
        "tasks": n,
        "passed": sum(bool(r["passed"]) for r in records),
        "pass_at_1": (sum(bool(r["passed"]) for r in records) / n) if n else None,
        "pass_at_1_by_tier": {k: sum(v) / len(v) for k, v in sorted(tiers.items())},
        "dollars": dollars,
        "dollars_per_task": dollars / n if n else None,
        "tokens": tokens,
        "win_share": {a: wins.get(a, 0) / n if n else 0.0 for a in agents},
        "largest_agent": largest,
        "largest_share": wins.get(largest, 0) / n if n else 0.0,
        "auction_overhead": {
            "token_share": overhead_tokens / tokens if tokens else 0.0,
            "dollar_share": overhead_dollars / dollars if dollars else 0.0,
            "wall_share": auction_wall / wall if wall else 0.0,
        },
        "by_phase": by_phase,
        "failed_tasks": sum(1 for r in records if r.get("error")),
        "budget_stopped_tasks": sum(1 for r in records if r.get("budget")),
    }


# ----------------------------------------------------------------------------- runner


@dataclass
class Runner:
    """Streams tasks through ``router`` and the winner's execution, into ``out_dir``."""

    pool: Pool
    router: Router
    envs: dict[str, Environment]
    out_dir: Path
    limits: Limits = field(default_factory=Limits)
    action_format: str = "text"
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        (self.out_dir / "auctions").mkdir(parents=True, exist_ok=True)
        (self.out_dir / "trajectories").mkdir(parents=True, exist_ok=True)
        self.results_path = self.out_dir / "results.jsonl"

    def finished(self) -> dict[str, dict[str, Any]]:
        return {r["task_id"]: r for r in read_jsonl(self.results_path) if "task_id" in r}

    def _carry_over_spending(self) -> None:
        """Count what the pool's ledger file recorded before this process (a resumed
        run) against the budget, once per pool."""
        budget, ledger = self.pool.budget, self.pool.ledger
        if budget.carried_over or not budget.limited or ledger.path is None or not ledger.path.exists():
            return
        entries = Ledger.read(ledger.path)
        budget.carry_over(entries[: max(0, len(entries) - len(ledger.entries))])

    def _costs(self, task_id: str, start_entry: int) -> tuple[dict[str, float], dict[str, int], dict[str, int]]:
        """Dollars and tokens by phase (with "total"), and tokens by agent, of one task."""
        mine = [e for e in self.pool.ledger.entries[start_entry:] if e.task == task_id]
        by_phase = summarise(mine, "phase")
        dollars = {p: t.dollars for p, t in by_phase.items()}
        tokens = {p: t.tokens for p, t in by_phase.items()}
        dollars["total"] = sum(t.dollars for t in by_phase.values())
        tokens["total"] = sum(t.tokens for t in by_phase.values())
        return dollars, tokens, {a: t.tokens for a, t in summarise(mine, "agent").items()}

    async def run_one(self, task: Task) -> TaskRecord:
        """Auction, execution, grading and bookkeeping of one task."""
        env = self.envs.get(task.domain)
        if env is None:
            raise ConfigError(f"task {task.id}: no environment for domain '{task.domain}'")
        name = safe_name(task.id)
        ledger = self.pool.ledger
        start_entry = len(ledger.entries)
        started = time.perf_counter()
        auction_path = self.out_dir / "auctions" / f"{name}.json"
        trajectory = self.out_dir / "trajectories" / f"{name}.jsonl"
        with ledger_tags(task=task.id):
            decision = await self.router.route(task, env)
            auction_wall = time.perf_counter() - started
            if decision.record is not None:
                # results.jsonl (fsynced) is the record of what finished; this file only needs
                # to survive a crash of the process, which needs no fsync
                write_json_atomic(auction_path, decision.record, fsync=False)
            trajectory.unlink(missing_ok=True)  # an interrupted earlier attempt
            outcome = await run_execution(
                self.pool[decision.agent], env, task, decision.strategy, settings=self.execution,
                limits=self.limits, trajectory_path=trajectory, action_format=self.action_format,
            )  # fmt: skip
        self.router.observe(task, decision, outcome.passed)
        dollars, tokens, tokens_by_agent = self._costs(task.id, start_entry)
        return TaskRecord(
            task_id=task.id, tier=task.tier, tier_name=task.tier_name, domain=task.domain,
            winner=decision.agent, winner_kind=str(decision.info.get("winner_kind", "")),
            passed=outcome.passed, score=outcome.score, reason=outcome.reason,
            dollars=dollars, tokens=tokens, tokens_by_agent=tokens_by_agent, wall_s=time.perf_counter() - started,
            auction_wall_s=auction_wall, trajectory=str(trajectory.relative_to(self.out_dir)),
            auction=str(auction_path.relative_to(self.out_dir)) if decision.record is not None else "",
            answer=outcome.answer, budget=self.pool.budget.stopped(task.id),
        )  # fmt: skip

    async def run(
        self,
        tasks: list[Task],
        *,
        on_task: Callable[[int, int, dict[str, Any]], None] | None = None,
        stop_on_error: bool = False,
    ) -> dict[str, Any]:
        """Run every task not yet in results.jsonl, in order; write summary.json; return it.
        ``on_task(done, total, record)`` is called for each task's record, those already in
        results.jsonl first.

        A task whose auction fails (every bidder failed) is recorded with ``error`` and
        counted as not passed, and the run goes on.
        """
        ids = [t.id for t in tasks]
        dupes = [i for i, c in Counter(ids).items() if c > 1]
        if dupes:
            raise ConfigError(f"task ids must be unique; repeated: {', '.join(dupes[:5])}")
        done = self.finished()
        records = [done[t.id] for t in tasks if t.id in done]
        if on_task:  # what an earlier run (or a reuse) did counts in the progress shown
            for k, rec in enumerate(records, 1):
                on_task(k, len(tasks), rec)
        budget = self.pool.budget
        self._carry_over_spending()
        not_started: list[str] = []
        with JsonlWriter(self.results_path) as out:
            for task in tasks:
                if task.id in done:
                    continue
                if budget.stopped_run:
                    not_started.append(task.id)
                    continue
                start_entry = len(self.pool.ledger.entries)
                try:
                    rec = (await self.run_one(task)).as_dict()
                except SaleError as exc:
                    if stop_on_error:
                        raise
                    dollars, tokens, by_agent = self._costs(task.id, start_entry)
                    scope = budget.stopped(task.id)
                    refusal = budget.refusal(task.id)
                    rec = TaskRecord(
                        task_id=task.id, tier=task.tier, tier_name=task.tier_name, domain=task.domain,
                        winner="", winner_kind="", passed=False, score=0.0,
                        reason=f"budget: {refusal.message}"[:400] if refusal else "error",
                        dollars=dollars, tokens=tokens, tokens_by_agent=by_agent, wall_s=0.0, auction_wall_s=0.0,
                        trajectory="", auction="", error=str(exc)[:500], budget=scope,
                    ).as_dict()  # fmt: skip
                out.write(rec)
                records.append(rec)
                if on_task:
                    on_task(len(records), len(tasks), rec)
        summary = summarise_results(records, self.pool.names, self.pool.largest.name)
        summary["budget"] = {
            **budget.to_dict(),
            "tasks_limited": {
                scope: [r["task_id"] for r in records if r.get("budget") == scope] for scope in (PER_TASK, PER_RUN)
            },
            "not_started": not_started,
        }
        summary["ledger"] = {
            "by_agent": {k: v.as_dict() for k, v in self.pool.ledger.totals("agent").items()},
            "by_phase": {k: v.as_dict() for k, v in self.pool.ledger.totals("phase").items()},
        }
        write_json_atomic(self.out_dir / "summary.json", summary)
        return summary


def open_runner(
    pool: Pool,
    out_dir: str | Path,
    tasks: Iterable[Task],
    *,
    router: Router | None = None,
    envs: dict[str, Environment] | None = None,
    data_dir: str | Path | None = None,
    documents: Iterable[str | Path] = (),
    hide_paths: Iterable[str | Path] = (),
    limits: Limits | None = None,
    action_format: str | None = None,
) -> Runner:
    """A Runner for ``pool`` writing into ``out_dir``, with SALE and a durable memory by default.

    Limits and the action format default to the pool file's ``execution`` section.
    """
    from sale.memory.store import SQLiteMemory
    from sale.routers.sale import SALERouter

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings, pool_limits, pool_fmt = execution_config(pool.config.execution, f"{pool.source}: execution")
    fmt = action_format or pool_fmt
    limits = limits or pool_limits
    if router is None:
        # WAL with synchronous=NORMAL: a commit survives a crash of the process
        router = SALERouter(pool, SQLiteMemory(out_dir / "memory.sqlite", synchronous="NORMAL"))
    if envs is None:
        envs = build_environments(tasks, data_dir=data_dir, documents=documents, hide_paths=hide_paths)
    return Runner(pool, router, envs, out_dir, limits=limits, action_format=fmt, execution=settings)


def as_task_result(rec: dict[str, Any], method: str, largest: str, ordering: int = 0):
    """A results.jsonl record as the evaluation's TaskResult (for metrics and reports)."""
    from sale.evaluation.metrics import TaskResult

    overhead = sum(rec["tokens"].get(p, 0) for p in AUCTION_PHASES)
    return TaskResult(
        task_id=rec["task_id"], tier_name=rec["tier_name"], domain=rec["domain"], method=method,
        agent=rec["winner"] or None, passed=bool(rec["passed"]), dollars=rec["dollars"].get("total", 0.0),
        tokens=rec["tokens"].get("total", 0), largest_used=rec["winner"] == largest,
        largest_tokens=rec.get("tokens_by_agent", {}).get(largest, 0), overhead_tokens=overhead,
        overhead_wall_s=rec["auction_wall_s"], wall_s=rec["wall_s"], reused=bool(rec.get("reused", False)),
        tier=rec["tier"], ordering=ordering, agents_run=[rec["winner"]] if rec["winner"] else [],
    )  # fmt: skip


def progress_printer(progress) -> Callable[[int, int, dict[str, Any]], None]:
    """An on_task callback that shows tasks done, pass rate, dollars and the winner."""
    state = {"passed": 0, "dollars": 0.0, "n": 0}

    def on_task(done: int, total: int, rec: dict[str, Any]) -> None:
        state["n"] += 1
        state["passed"] += bool(rec["passed"])
        state["dollars"] += rec["dollars"].get("total", 0.0)
        rate = state["passed"] / state["n"]
        progress.update(done, f"pass {rate:.0%}  ${state['dollars']:.5f}  winner {rec['winner'] or '-'}")

    return on_task


async def run_tasks(pool: Pool, tasks: list[Task], out_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Stream ``tasks`` through SALE and execution with a started ``pool``; returns the summary.

    Keyword arguments go to `open_runner` (router, envs, data_dir, documents, limits...).
    A rerun with the same ``out_dir`` resumes.
    """
    return await open_runner(pool, out_dir, tasks, **kwargs).run(tasks)
