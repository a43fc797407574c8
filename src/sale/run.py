"""The main job: stream tasks through a router (the auction) and the winner's execution.

The path of one task::

    Task -> router.route (auction) -> winner + strategy -> execute (agent, environment)
         -> graded Outcome -> router.observe (memory), ledger, results.jsonl

A run directory holds everything a run produced: ``results.jsonl`` (one line per
finished task, appended durably), ``summary.json``, ``memory.sqlite`` (the auction
memory), ``ledger.jsonl`` (every call), ``auctions/`` (one auction record per task) and
``trajectories/`` (one JSONL trajectory per execution). A rerun with the same directory
skips the tasks already done in ``results.jsonl``, so an interrupted run loses nothing;
one process at a time runs in a directory (`sale.runlock`).

Every task ends passed, failed or errored (`sale.outcomes`): an errored task (the
infrastructure failed) is recorded with ``outcome``, ``error_kind`` and ``error``, is
taken out of the auction memory, is left out of pass@1, and is run again by the next
run (a retried task has several lines; the last one counts). summary.json is rewritten
after every task from the whole directory (`Runner.summary`).

Budgets (the pool file's ``budget:`` section, `sale.llm.budget`): a call that could pass
the per-task or per-run dollar limit is refused before it is made. A task with a
refused call is errored (kind "budget") with ``budget`` naming the limit ("per_task" or
"per_run"). After a per-run refusal no further task is started, and a rerun starts
none until the limit is raised; summary.json says so under ``budget`` and ``stop``. A
resumed run counts what its ledger recorded before.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from sale.agent.constrain import ConstrainSettings
from sale.agent.executor import Limits
from sale.agent.modes import ExecutionSettings, execution_config, run_execution
from sale.envs.base import Environment
from sale.envs.grading import configure_grading, grading_summary, recorded
from sale.errors import ConfigError, DiskFullError, SaleError
from sale.jsonl import JsonlWriter, read_jsonl, write_json_atomic
from sale.llm.budget import PER_RUN, PER_TASK
from sale.llm.ledger import Ledger, Totals, ledger_tags, summarise
from sale.llm.pool import Pool
from sale.memory.staged import as_of_now
from sale.outcomes import (
    EXIT_BUDGET, EXIT_ERRORED, EXIT_OK, EXIT_STOPPED, PER_TASK_KINDS, ErrorKind, OutcomeClass, TaskError,
    auction_error, classify_exception, error_kind_of, execution_error, is_disk_full, outcome_of,
)  # fmt: skip
from sale.routers.base import Router
from sale.runlock import RunLock
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
    grade: dict[str, Any] = field(default_factory=dict)  # search: em, f1, match, judge, rule (sale.envs.grading)
    outcome: str = ""  # "passed", "failed" or "errored" (sale.outcomes)
    error_kind: str = ""  # for an errored task: "endpoint", "budget", "disk", "context", "sandbox", "grader"
    budget_limit: float | None = None  # the limit that refused a call of this task, in dollars
    gated: bool = False  # the auction gate sent the task to one agent (one bid call, no jury)
    calls: dict[str, int] = field(default_factory=dict)  # calls by phase (the ledger's)
    cached_tokens: dict[str, int] = field(default_factory=dict)  # prompt tokens read from a cache, by phase
    skipped_calls: dict[str, int] = field(default_factory=dict)  # jury calls exact pruning did not make

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def summarise_results(records: list[dict[str, Any]], agents: list[str], largest: str) -> dict[str, Any]:
    """summary.json: pass@1, dollars, wins per agent, auction overhead, and tokens
    and dollars per phase (bid, jury, refine, execute: per task and shares).

    ``records`` holds one line per task (the latest). pass@1, wins and shares count the
    graded tasks (passed or failed) only; errored tasks are counted apart, by kind, with
    the first message of each kind; dollars and tokens count every task.
    """
    everything = records
    errored = [r for r in records if outcome_of(r) is OutcomeClass.ERRORED]
    by_kind: dict[str, dict[str, Any]] = {}
    for r in errored:
        entry = by_kind.setdefault(error_kind_of(r), {"tasks": 0, "first": r.get("error", "")})
        entry["tasks"] += 1
    records = [r for r in records if outcome_of(r) is not OutcomeClass.ERRORED]
    n = len(records)
    dollars_all = sum(r["dollars"].get("total", 0.0) for r in everything)
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
        for key, name in (("calls", "calls_per_task"), ("cached_tokens", "cached_tokens_per_task"),
                          ("skipped_calls", "skipped_calls_per_task")):  # fmt: skip
            if all(key in r for r in records):  # results from before these were recorded have none
                by_phase[p][name] = sum(r[key].get(p, 0) for r in records) / n
    passed = sum(bool(r["passed"]) for r in records)
    return {
        "tasks": len(everything),
        "graded": n,
        "passed": passed,
        "failed": n - passed,
        "errored": len(errored),
        "errored_by_kind": dict(sorted(by_kind.items())),
        "pass_at_1": (passed / n) if n else None,
        "pass_at_1_by_tier": {k: sum(v) / len(v) for k, v in sorted(tiers.items())},
        "dollars": dollars_all,
        "dollars_per_task": dollars_all / len(everything) if everything else None,
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
        "gated": gated_summary(records),
    }


def gated_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Tasks the auction gate sent to one agent, and what that saved: each gated task
    counted at the mean auction cost (bid, jury, refine) of the run's full auctions,
    less what its one bid cost (None while the run has no full auction)."""
    gated = [r for r in records if r.get("gated")]
    full = [r for r in records if not r.get("gated")]

    def spent(rs: list[dict[str, Any]], key: str) -> float:
        return sum(r[key].get(p, 0) for r in rs for p in AUCTION_PHASES)

    saved = None
    if full:
        saved = {
            key: len(gated) * spent(full, key) / len(full) - spent(gated, key) for key in ("dollars", "tokens")
        }
    return {"tasks": len(gated), "auction_dollars": spent(gated, "dollars"), "saved_estimate": saved}


# ----------------------------------------------------------------------------- runner


@dataclass
class Runner:
    """Streams tasks through ``router`` and the winner's execution, into ``out_dir``.

    - ``retry_errored``: a task whose last line in results.jsonl is errored is run
      again (False: it is kept as it is and skipped).
    - ``stop_after_errors``: stop the run once this many tasks in a row errored with
      the same kind of infrastructure error (an endpoint that is down); 0: never.
    - ``concurrency``: at most this many tasks in flight at once (asyncio, one
      process); each agent's own ``concurrency`` still bounds its calls. An auction
      reads the memory as it stands when it starts; a task's auction record and its
      outcome reach the memory together when the task finishes (`StagedMemory`).
      results.jsonl is appended in the order tasks finish.
    """

    pool: Pool
    router: Router
    envs: dict[str, Environment]
    out_dir: Path
    limits: Limits = field(default_factory=Limits)
    action_format: str = "text"
    retry_errored: bool = True
    stop_after_errors: int = 3
    constrain: ConstrainSettings = field(default_factory=ConstrainSettings)
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    concurrency: int = 1

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {self.concurrency}")
        self.in_flight = 0  # tasks running now (for a progress display)
        self.out_dir = Path(self.out_dir)
        try:
            (self.out_dir / "auctions").mkdir(parents=True, exist_ok=True)
            (self.out_dir / "trajectories").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _write_error(exc, self.out_dir) from exc
        self.results_path = self.out_dir / "results.jsonl"
        self._earlier_ledger: list[Any] | None = None

    def finished(self) -> dict[str, dict[str, Any]]:
        """The latest line of results.jsonl of every task (a retried task has several)."""
        return {r["task_id"]: r for r in read_jsonl(self.results_path) if "task_id" in r}

    def is_done(self, rec: dict[str, Any] | None) -> bool:
        """Whether a task whose latest line is ``rec`` needs no run now."""
        if rec is None:
            return False
        return outcome_of(rec) is not OutcomeClass.ERRORED or not self.retry_errored

    def _carry_over_spending(self) -> None:
        """Count what the pool's ledger file recorded before this process (a resumed
        run) against the budget, once per pool."""
        budget = self.pool.budget
        if budget.carried_over or not budget.limited:
            return
        budget.carry_over(self._ledger_before())

    def _ledger_before(self) -> list[Any]:
        """The entries the pool's ledger file holds from before this process."""
        if self._earlier_ledger is None:
            ledger = self.pool.ledger
            entries = Ledger.read(ledger.path) if ledger.path is not None and ledger.path.exists() else []
            self._earlier_ledger = entries[: max(0, len(entries) - len(ledger.entries))]
        return self._earlier_ledger

    def _costs(self, task_id: str, start_entry: int) -> dict[str, dict[str, Any]]:
        """A task's costs as `TaskRecord` fields: dollars and tokens by phase (with
        "total"), calls and cached prompt tokens by phase, and tokens by agent."""
        # the judge's calls grade the method; they are not its cost
        mine = [e for e in self.pool.ledger.entries[start_entry:] if e.task == task_id and e.phase != "judge"]
        by_phase = summarise(mine, "phase")
        dollars = {p: t.dollars for p, t in by_phase.items()}
        tokens = {p: t.tokens for p, t in by_phase.items()}
        dollars["total"] = sum(t.dollars for t in by_phase.values())
        tokens["total"] = sum(t.tokens for t in by_phase.values())
        return {
            "dollars": dollars, "tokens": tokens,
            "tokens_by_agent": {a: t.tokens for a, t in summarise(mine, "agent").items()},
            "calls": {p: t.calls for p, t in by_phase.items()},
            "cached_tokens": {p: t.cached_tokens for p, t in by_phase.items()},
        }  # fmt: skip

    def _budget_error(self, task_id: str) -> TaskError | None:
        refusal = self.pool.budget.refusal(task_id)
        return TaskError(ErrorKind.BUDGET, refusal.message) if refusal is not None else None

    def _budget_limit(self, scope: str) -> float | None:
        budget = self.pool.budget
        return budget.per_run if scope == PER_RUN else budget.per_task if scope == PER_TASK else None

    async def run_one(self, task: Task) -> TaskRecord:
        """Auction, execution, grading and bookkeeping of one task.

        Only a graded outcome goes to the router (the auction memory); a task that
        errored (`sale.outcomes`) is taken out of it again.
        """
        env = self.envs.get(task.domain)
        if env is None:
            raise ConfigError(f"task {task.id}: no environment for domain '{task.domain}'")
        name = safe_name(task.id)
        ledger = self.pool.ledger
        start_entry = len(ledger.entries)
        started = time.perf_counter()
        auction_path = self.out_dir / "auctions" / f"{name}.json"
        trajectory = self.out_dir / "trajectories" / f"{name}.jsonl"
        with ledger_tags(task=task.id), as_of_now():  # the auction reads the memory as it is now
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
                constrain=self.constrain,
            )  # fmt: skip
        error = execution_error(outcome.reason, outcome.grade) or self._budget_error(task.id)
        if error is None:
            self.router.observe(task, decision, outcome.passed)
            verdict = OutcomeClass.PASSED if outcome.passed else OutcomeClass.FAILED
        else:
            forget = getattr(self.router, "forget", None)
            if forget is not None:
                forget(task)
            verdict = OutcomeClass.ERRORED
        costs = self._costs(task.id, start_entry)
        phases = (decision.record or {}).get("phases") or {}
        skipped = {p: int(v["skipped"]) for p, v in phases.items() if v.get("skipped")}
        scope = self.pool.budget.stopped(task.id)
        return TaskRecord(
            task_id=task.id, tier=task.tier, tier_name=task.tier_name, domain=task.domain,
            winner=decision.agent, winner_kind=str(decision.info.get("winner_kind", "")),
            passed=outcome.passed and error is None, score=outcome.score, reason=outcome.reason,
            **costs, skipped_calls=skipped, wall_s=time.perf_counter() - started,
            auction_wall_s=auction_wall, trajectory=str(trajectory.relative_to(self.out_dir)),
            auction=str(auction_path.relative_to(self.out_dir)) if decision.record is not None else "",
            answer=outcome.answer, budget=scope, outcome=verdict.value, grade=recorded(outcome.grade),
            error=error.message[:500] if error else "", error_kind=error.kind.value if error else "",
            budget_limit=self._budget_limit(scope), gated=bool(decision.info.get("gated", False)),
        )  # fmt: skip

    async def _attempt(self, task: Task, stop_on_error: bool) -> tuple[dict[str, Any], BaseException | None]:
        """The results line of one task, and the full-disk error that must stop the run
        (None when there is none)."""
        start_entry = len(self.pool.ledger.entries)
        try:
            return (await self.run_one(task)).as_dict(), None
        except SaleError as exc:
            if stop_on_error:
                raise
            rec = self._errored_record(task, start_entry, exc)
            return rec, (exc if rec["error_kind"] == ErrorKind.DISK.value else None)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            return self._errored_record(task, start_entry, exc), exc

    def _errored_record(self, task: Task, start_entry: int, exc: BaseException) -> dict[str, Any]:
        """The results line of a task that raised: errored, with the kind of ``exc``."""
        budget = self.pool.budget
        costs = self._costs(task.id, start_entry)
        scope = budget.stopped(task.id)
        refusal = budget.refusal(task.id)
        from sale.auction.record import AuctionError

        if isinstance(exc, AuctionError):
            kind = auction_error(str(exc))
        else:
            kind = classify_exception(exc)
        if refusal is not None:
            kind = ErrorKind.BUDGET
        forget = getattr(self.router, "forget", None)
        if forget is not None:
            try:
                forget(task)
            except (SaleError, OSError) as err:
                if kind is not ErrorKind.DISK:  # on a full disk the rerun replaces the record
                    raise
        return TaskRecord(
            task_id=task.id, tier=task.tier, tier_name=task.tier_name, domain=task.domain,
            winner="", winner_kind="", passed=False, score=0.0,
            reason=f"budget: {refusal.message}"[:400] if refusal else "error",
            **costs, wall_s=0.0, auction_wall_s=0.0, trajectory="", auction="", error=str(exc)[:500], budget=scope,
            outcome=OutcomeClass.ERRORED.value, error_kind=kind.value, budget_limit=self._budget_limit(scope),
        ).as_dict()  # fmt: skip

    def summary(
        self, tasks: list[Task], stop: dict[str, Any] | None = None, done: dict[str, dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """summary.json from the whole folder: the latest results line of every task of
        ``tasks`` and every entry of the ledger file (earlier processes included), so a
        resumed run reports what a run straight through would. ``done``: the latest
        results line of each task, when the caller holds them (else read back)."""
        done = self.finished() if done is None else done
        records = [done[t.id] for t in tasks if t.id in done]
        summary = summarise_results(records, self.pool.names, self.pool.largest.name)
        budget = self.pool.budget
        summary["budget"] = {
            **budget.to_dict(),
            "tasks_limited": {
                scope: [r["task_id"] for r in records if r.get("budget") == scope] for scope in (PER_TASK, PER_RUN)
            },
            "not_started": list((stop or {}).get("not_started", [])),
        }
        total, by_agent, by_phase = self._ledger_totals()
        summary["budget"]["spent"] = total.dollars  # every call the folder's ledger holds
        summary["ledger"] = {
            "calls": total.calls,
            "dollars": total.dollars,
            "tokens": total.tokens,
            "by_agent": {k: v.as_dict() for k, v in by_agent.items()},
            "by_phase": {k: v.as_dict() for k, v in by_phase.items()},
        }
        not_done = [t.id for t in tasks if not self.is_done(done.get(t.id))]
        summary["stop"] = {
            "reason": (stop or {}).get("reason", ""),
            "message": (stop or {}).get("message", ""),
            "not_started": len((stop or {}).get("not_started", [])),
            "to_run": len(not_done),
        }
        summary["grading"] = grading_summary(records, self.envs)
        summary["exit_code"] = run_exit_code(summary)
        return summary

    def _ledger_totals(self) -> tuple[Totals, dict[str, Totals], dict[str, Totals]]:
        """Totals of the whole ledger (earlier processes, then this one), overall, by
        agent and by phase; kept up to date entry by entry."""
        acc = getattr(self, "_ledger_acc", None)
        if acc is None:
            acc = self._ledger_acc = [0, Totals(), {}, {}]
            for e in self._ledger_before():
                self._add_entry(acc, e)
        entries = self.pool.ledger.entries
        for e in entries[acc[0]:]:
            self._add_entry(acc, e)
        acc[0] = len(entries)
        return acc[1], acc[2], acc[3]

    @staticmethod
    def _add_entry(acc: list, e: Any) -> None:
        acc[1].add(e)
        acc[2].setdefault(e.agent, Totals()).add(e)
        acc[3].setdefault(e.phase, Totals()).add(e)

    def _write_summary(self, summary: dict[str, Any], *, fsync: bool = False) -> None:
        # Atomic (a rename): never half-written. Not fsynced after every task: it is
        # computed from results.jsonl (fsynced), and any run on the folder rewrites it.
        path = self.out_dir / "summary.json"
        try:
            write_json_atomic(path, summary, fsync=fsync)
        except OSError as exc:
            raise _write_error(exc, path) from exc

    def _previous_budget_stop(self, done: dict[str, dict[str, Any]]) -> str:
        """The message of a per-run budget stop of an earlier run that still holds (the
        limit was not raised since), or ""."""
        limit = self.pool.budget.per_run
        if limit is None:
            return ""
        for rec in done.values():
            if rec.get("budget") == PER_RUN and outcome_of(rec) is OutcomeClass.ERRORED:
                was = rec.get("budget_limit")
                if was is None or limit <= was + 1e-12:
                    return rec.get("error", "") or f"per-run budget ${limit:g} reached"
        return ""

    async def run(
        self,
        tasks: list[Task],
        *,
        on_task: Callable[[int, int, dict[str, Any]], None] | None = None,
        stop_on_error: bool = False,
        on_start: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Run every task not yet done in results.jsonl (errored tasks again, unless
        ``retry_errored`` is off), in order; rewrite summary.json after every task;
        return the summary. ``on_task(done, total, record)`` is called for each task's
        record, those already done first.

        A task whose auction or execution fails for the infrastructure is recorded as
        errored (``outcome``, ``error_kind``, ``error``) and the run goes on, until the
        per-run budget refuses a call, the disk is full (`DiskFullError`), or
        ``stop_after_errors`` tasks in a row errored alike. The summary's ``stop`` and
        ``exit_code`` say which. With ``concurrency`` above 1 the tasks already in
        flight when a stop is decided finish and are recorded; no further one starts.
        ``on_start(in_flight)`` is called when a task starts.
        """
        ids = [t.id for t in tasks]
        dupes = [i for i, c in Counter(ids).items() if c > 1]
        if dupes:
            raise ConfigError(f"task ids must be unique; repeated: {', '.join(dupes[:5])}")
        with RunLock(self.out_dir):
            return await self._run(tasks, on_task, stop_on_error, on_start)

    async def _run(self, tasks: list[Task], on_task, stop_on_error: bool, on_start=None) -> dict[str, Any]:
        done = self.finished()
        shown = [done[t.id] for t in tasks if self.is_done(done.get(t.id))]
        if on_task:  # what an earlier run (or a reuse) did counts in the progress shown
            for k, rec in enumerate(shown, 1):
                on_task(k, len(tasks), rec)
        count = len(shown)
        budget = self.pool.budget
        self._carry_over_spending()
        stop: dict[str, Any] = {"reason": "", "message": "", "not_started": []}
        previous = self._previous_budget_stop(done)
        if previous:
            stop.update(reason="budget", message=previous)
        streak: tuple[str, int] = ("", 0)
        pending_stop = ""
        try:
            out = JsonlWriter(self.results_path)
        except OSError as exc:
            raise _write_error(exc, self.results_path) from exc
        in_flight: dict[asyncio.Future, int] = {}  # running tasks -> their place in ``tasks``

        async def collect() -> None:
            """Wait for at least one task in flight and record what finished."""
            nonlocal count, streak, pending_stop
            finished, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for fut in sorted(finished, key=in_flight.__getitem__):
                task = tasks[in_flight.pop(fut)]
                self.in_flight = len(in_flight)
                rec, disk = fut.result()
                if disk is not None:
                    try:
                        out.write(rec)  # most likely fails too; the task is run again anyway
                    except OSError:
                        pass
                    raise _write_error(disk, self.out_dir) from disk
                try:
                    out.write(rec)
                except OSError as exc:
                    raise _write_error(exc, self.results_path) from exc
                done[task.id] = rec
                count += self.is_done(rec)
                if on_task:
                    on_task(count, len(tasks), rec)
                kind = rec.get("error_kind", "")
                if kind and kind not in {k.value for k in PER_TASK_KINDS} and rec.get("budget") != PER_TASK:
                    streak = (kind, streak[1] + 1 if streak[0] == kind else 1)
                else:
                    streak = ("", 0)
                pending_stop = ""  # stop before the next task, if there is one
                if self.stop_after_errors and streak[1] >= self.stop_after_errors and kind != ErrorKind.BUDGET:
                    pending_stop = f"{streak[1]} tasks in a row errored ({kind}); last: {rec.get('error', '')}"[:600]
                self._write_summary(self.summary(tasks, stop, done))

        with out:
            try:
                for place, task in enumerate(tasks):
                    if self.is_done(done.get(task.id)):
                        continue
                    while len(in_flight) >= max(1, self.concurrency):
                        await collect()
                    if not stop["reason"] and budget.stopped_run:
                        refused = next((r for r in budget.refusals if r.scope == PER_RUN), None)
                        stop.update(reason="budget", message=refused.message if refused else "per-run budget reached")
                    if not stop["reason"] and pending_stop:
                        stop.update(reason="repeated_error", message=pending_stop)
                    if stop["reason"]:
                        stop["not_started"].append(task.id)
                        continue
                    in_flight[asyncio.ensure_future(self._attempt(task, stop_on_error))] = place
                    self.in_flight = len(in_flight)
                    if on_start:
                        on_start(len(in_flight))
                while in_flight:
                    await collect()
            finally:
                if in_flight:  # an error stops the run: the tasks still in flight are run again next time
                    for fut in in_flight:
                        fut.cancel()
                    await asyncio.gather(*in_flight, return_exceptions=True)
                    in_flight.clear()
                self.in_flight = 0
        if stop["reason"] == "" and budget.stopped_run:
            refused = next((r for r in budget.refusals if r.scope == PER_RUN), None)
            stop.update(reason="budget", message=refused.message if refused else "per-run budget reached")
        summary = self.summary(tasks, stop)
        self._write_summary(summary, fsync=True)
        return summary


def run_exit_code(summary: dict[str, Any]) -> int:
    """The exit code of a run from its summary (see `sale.outcomes`): a budget stop,
    an early stop on a repeated error, errored tasks, or 0."""
    reason = summary.get("stop", {}).get("reason", "")
    if reason == "budget":
        return EXIT_BUDGET
    if reason == "repeated_error":
        return EXIT_STOPPED
    return EXIT_ERRORED if summary.get("errored") else EXIT_OK


def _write_error(exc: BaseException, path: Path | str) -> SaleError:
    """A one-line error for a failed write: "no space left on device: PATH" for a
    full disk, else the system's reason and the path."""
    where = path
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.filename:
            where = cause.filename
            break
        cause = cause.__cause__ or cause.__context__
    else:
        named = re.match(r"(/[^:]+): ", str(exc))  # "PATH: write failed (...)" of the memory store
        where = named.group(1) if named else where
    if is_disk_full(exc):
        return DiskFullError(f"no space left on device: {where}; free some space and rerun to resume")
    if isinstance(exc, OSError):
        return SaleError(f"cannot write {where}: {exc.strerror or exc}")
    return SaleError(str(exc))


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
    grade: str | None = None,
    retry_errored: bool = True,
    stop_after_errors: int = 3,
    concurrency: int = 1,
    memory: Any = None,
) -> Runner:
    """A Runner for ``pool`` writing into ``out_dir``, with SALE and a durable memory by default.

    Limits and the action format default to the pool file's ``execution`` section.
    Search answers are graded by ``grade`` (a rule name, see `sale.envs.grading`), else
    by the task's or the pool file's rule, else ``match``.

    ``concurrency``: tasks in flight at once (see `Runner`). ``memory``: the auction
    memory of the default router (a store, a ``postgresql://`` URL or a SQLite file);
    default the pool file's ``memory:``, else the folder's ``memory.sqlite``. New records wait for their outcome (`StagedMemory`).

    Everything that can be checked is checked before ``out_dir`` is created.
    """
    from sale.memory.postgres import PostgresMemory, is_postgres_url
    from sale.memory.staged import StagedMemory
    from sale.memory.store import SQLiteMemory
    from sale.routers.sale import SALERouter

    out_dir = Path(out_dir)
    execution = dict(pool.config.execution)
    constrain = ConstrainSettings.pop_from(execution, f"{pool.source}: execution")
    settings, pool_limits, pool_fmt = execution_config(execution, f"{pool.source}: execution")
    fmt = action_format or pool_fmt
    limits = limits or pool_limits
    if envs is None:
        envs = build_environments(tasks, data_dir=data_dir, documents=documents, hide_paths=hide_paths)
    if router is None and memory is None and pool.config.memory:
        memory = pool.config.memory
        if not is_postgres_url(memory) and not Path(memory).is_absolute() and pool.source:
            memory = str(Path(pool.source).parent / memory)  # a file named in the pool file
    if router is None and is_postgres_url(memory):
        memory = PostgresMemory(memory)  # before the folder is made: an unreachable database stops here
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(exc, out_dir) from exc
    if router is None:
        # WAL with synchronous=NORMAL: a commit survives a crash of the process
        if memory is None or isinstance(memory, (str, Path)):
            memory = SQLiteMemory(memory or out_dir / "memory.sqlite", synchronous="NORMAL")
        router = SALERouter(pool, StagedMemory(memory))
    configure_grading(envs, pool, rule=grade, cache_dir=out_dir)
    return Runner(pool, router, envs, out_dir, limits=limits, action_format=fmt, execution=settings,
                  retry_errored=retry_errored, stop_after_errors=stop_after_errors, constrain=constrain,
                  concurrency=concurrency)


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


def progress_printer(progress, in_flight: Callable[[], int] | None = None) -> Callable[[int, int, dict[str, Any]], None]:
    """An on_task callback that shows tasks done, pass rate, dollars and the winner
    (and, with ``in_flight``, the tasks running now)."""
    state = {"passed": 0, "dollars": 0.0, "n": 0, "errored": 0}

    def on_task(done: int, total: int, rec: dict[str, Any]) -> None:
        state["dollars"] += rec["dollars"].get("total", 0.0)
        if outcome_of(rec) is OutcomeClass.ERRORED:
            state["errored"] += 1
        else:
            state["n"] += 1
            state["passed"] += bool(rec["passed"])
        rate = f"{state['passed'] / state['n']:.0%}" if state["n"] else "-"
        errored = f"  errored {state['errored']}" if state["errored"] else ""
        running = f"  in flight {in_flight()}" if in_flight is not None else ""
        progress.update(done, f"pass {rate}{errored}{running}  ${state['dollars']:.5f}  winner {rec['winner'] or '-'}")

    return on_task


async def run_tasks(pool: Pool, tasks: list[Task], out_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Stream ``tasks`` through SALE and execution with a started ``pool``; returns the summary.

    Keyword arguments go to `open_runner` (router, envs, data_dir, documents, limits...).
    A rerun with the same ``out_dir`` resumes.
    """
    return await open_runner(pool, out_dir, tasks, **kwargs).run(tasks)
