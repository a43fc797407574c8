"""What `sale serve` does, without the HTTP: task keys become auctions, bindings and
forwarded calls.

A new key calls the same `SALERouter.route` that ``sale run`` calls (on the task text:
the first user message, with the system prompt and the tools as the environment
description); every forwarded call goes through the pool's agents, so through the one
client, the pool's budget and its ledger, tagged with the task key and the phase
``execute``. The server adds no auction, client or ledger of its own.

State folder (``--state``): ``bindings.sqlite`` (key -> winner, plan, auction id),
``memory.sqlite`` (the auction memory), ``ledger.jsonl`` (every call) and
``auctions/`` (one auction record per auction).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any

from sale.auction.record import AuctionError
from sale.errors import BudgetExceeded, SaleError
from sale.jsonl import write_json_atomic
from sale.llm.client import Completion, LLMConnectionError, LLMError, LLMHTTPError, LLMTimeoutError
from sale.llm.ledger import Ledger, LedgerEntry, ledger_tags, summarise
from sale.llm.pool import Pool
from sale.memory.store import MemoryStoreError, SQLiteMemory
from sale.routers.base import Decision
from sale.routers.sale import SALERouter
from sale.serve.bindings import Binding, BindingStore
from sale.serve.keys import describe_environment, first_user_message, system_prompt, with_plan
from sale.serve.settings import ServeSettings
from sale.workloads.task import Task

#: Request fields the server consumes itself rather than forwarding.
CONSUMED = frozenset(
    {"model", "messages", "stream", "stream_options", "metadata", "tools", "max_tokens",
     "max_completion_tokens", "temperature"}
)  # fmt: skip
AUCTION_ID = re.compile(r"^auc-[0-9a-f]{16}$")


class ApiError(SaleError):
    """An error answered in the OpenAI shape: ``{"error": {message, type, param, code}}``."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | int | None = None, headers: dict[str, str] | None = None):  # fmt: skip
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def api_error(exc: LLMError) -> ApiError:
    """The OpenAI-shaped error for a call that finally failed (after the client's retries)."""
    if isinstance(exc, BudgetExceeded):
        return ApiError(402, str(exc), type="budget_exceeded", code=getattr(exc, "scope", None))
    if isinstance(exc, LLMHTTPError):
        return ApiError(exc.status, f"upstream error: {exc}", type="upstream_error", code=exc.status)
    if isinstance(exc, LLMTimeoutError):
        return ApiError(504, f"upstream timeout: {exc}", type="upstream_error", code="timeout")
    if isinstance(exc, LLMConnectionError):
        return ApiError(502, f"upstream unreachable: {exc}", type="upstream_error", code="connection_error")
    return ApiError(502, f"upstream error: {exc}", type="upstream_error", code="bad_response")


class ClientEnvironment:
    """The environment of a task a harness runs: described by its own system prompt and
    tools; the tools run in the harness, and the harness grades (POST /v1/sale/outcome)."""

    name = "client"

    def __init__(self, description: str):
        self.description = description

    def describe(self, task: Task) -> str:
        return self.description

    def tools(self, task: Task) -> list:
        return []

    def answer_instructions(self, task: Task) -> str:
        return ""

    async def grade(self, task: Task, answer: str):
        raise SaleError("a served task is graded by its harness, through POST /v1/sale/outcome")


class SaleService:
    """Auctions, bindings and forwarding over a started ``pool``, with state in ``state_dir``."""

    def __init__(self, pool: Pool, state_dir: str | Path, settings: ServeSettings | None = None, *, metrics: Any = None):
        self.pool = pool
        self.state = Path(state_dir)
        self.state.mkdir(parents=True, exist_ok=True)
        self.settings = settings or ServeSettings.from_pool(pool)
        self.fallback = self.settings.fallback or pool.largest.name
        self.bindings = BindingStore(self.state / "bindings.sqlite", self.settings.ttl_s)
        self.memory = SQLiteMemory(self.state / "memory.sqlite", synchronous="NORMAL")
        self.router = SALERouter(pool, self.memory)
        self.auctions_dir = self.state / "auctions"
        self.auctions_dir.mkdir(exist_ok=True)
        self.metrics = metrics
        self._locks: dict[str, asyncio.Lock] = {}
        # what the ledger file recorded before this process: counted against the budget
        # (per task and per server) and in the tasks' dollars
        self.earlier: list[LedgerEntry] = []
        path = pool.ledger.path
        if path is not None and path.exists():
            entries = Ledger.read(path)
            self.earlier = entries[: max(0, len(entries) - len(pool.ledger.entries))]
            if not pool.budget.carried_over:
                pool.budget.carry_over(self.earlier)

    def close(self) -> None:
        self.bindings.close()
        self.memory.close()

    def _count(self, name: str, **labels: str) -> None:
        if self.metrics is not None:
            getattr(self.metrics, name).labels(**labels).inc()

    # ------------------------------------------------------------------ deciding

    async def decide(self, key: str, messages: list[dict[str, Any]], tools: Any) -> tuple[Binding, bool]:
        """The binding of ``key`` and whether this call made it. An unseen (or expired)
        key holds one auction; concurrent first requests of one key wait for it."""
        binding = self._live(key)
        if binding is not None:
            return binding, False
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            binding = self._live(key)
            if binding is not None:
                return binding, False
            try:
                return await self._auction(key, messages, tools), True
            finally:
                self._locks.pop(key, None)

    def _live(self, key: str) -> Binding | None:
        """The live binding of ``key``, unless its winner has left the pool (a pool file
        changed between runs): then the key holds a new auction."""
        binding = self.bindings.get(key)
        return binding if binding is not None and binding.winner in self.pool.names else None

    async def _auction(self, key: str, messages: list[dict[str, Any]], tools: Any) -> Binding:
        text = first_user_message(messages).strip() or system_prompt(messages).strip() or "(no task text)"
        task = Task(id=key, domain="client", prompt=text)
        env = ClientEnvironment(describe_environment(messages, tools))
        budget = self.pool.budget
        refused_before = len(budget.refusals)
        try:
            with ledger_tags(task=key):
                decision = await self.router.route(task, env)
        except AuctionError as exc:
            refusal = next((r for r in budget.refusals[refused_before:] if r.task == key), None)
            if refusal is not None:  # the budget refused the bids: the fallback would be refused too
                raise ApiError(402, f"task '{key}': {refusal.message}", type="budget_exceeded", code=refusal.scope) from None
            self._count("auctions", result="fallback")
            return self.bindings.put(key, self.fallback, "", "", fallback=f"auction failed: {exc}"[:500])
        auction_id = f"auc-{uuid.uuid4().hex[:16]}"
        record = {"auction_id": auction_id, "task_key": key, **(decision.record or {})}
        write_json_atomic(self.auctions_dir / f"{auction_id}.json", record, fsync=False)
        self._count("auctions", result="won")
        return self.bindings.put(key, decision.agent, decision.strategy, auction_id)

    # ------------------------------------------------------------------ forwarding

    async def forward(self, agent_name: str, key: str, body: dict[str, Any], plan: str = "") -> Completion:
        """The request ``body`` sent to ``agent_name`` (with ``plan`` in its system
        prompt), through the pool's agent: budget, client retries, ledger (phase execute)."""
        agent = self.pool[agent_name]
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        extra = {k: v for k, v in body.items() if k not in CONSUMED}
        try:
            with ledger_tags(task=key):
                return await agent.chat(
                    with_plan(body["messages"], plan), phase="execute", max_tokens=max_tokens,
                    temperature=body.get("temperature"), tools=body.get("tools") or None, extra=extra or None,
                )  # fmt: skip
        except LLMError as exc:
            raise api_error(exc) from None

    # ------------------------------------------------------------------ reading back

    def auction_record(self, auction_id: str) -> dict[str, Any]:
        path = self.auctions_dir / f"{auction_id}.json"
        if not AUCTION_ID.match(auction_id) or not path.is_file():
            raise ApiError(404, f"no auction '{auction_id}'", code="not_found", param="id")
        import json

        return json.loads(path.read_text(encoding="utf-8"))

    def task_view(self, key: str) -> dict[str, Any]:
        """A task's binding, and its calls, tokens and dollars by phase (all processes)."""
        binding = self.bindings.get(key, live=False)
        entries = [e for e in (*self.earlier, *self.pool.ledger.entries) if e.task == key]
        if binding is None and not entries:
            raise ApiError(404, f"no task '{key}'", code="not_found", param="key")
        by_phase = summarise(entries, "phase")
        return {
            "task": key,
            "binding": binding.to_dict() if binding else None,
            "live": self.bindings.get(key) is not None,
            "by_phase": {p: t.as_dict() for p, t in by_phase.items()},
            "dollars": sum(t.dollars for t in by_phase.values()),
            "budget": {"per_task": self.pool.budget.per_task, "spent": self.pool.budget.spent_on(key)},
        }

    def record_outcome(self, key: str, passed: bool) -> dict[str, Any]:
        """Store the harness's verdict with the task's auction in the memory (so that
        refinement learns from it) and with its binding."""
        binding = self.bindings.get(key, live=False)
        if binding is None:
            raise ApiError(404, f"no task '{key}': it never made a request", code="not_found", param="task")
        self.bindings.set_outcome(key, passed)
        in_memory = False
        if binding.auction:
            task = Task(id=key, domain="client", prompt="")
            try:
                self.router.observe(task, Decision(binding.winner, binding.plan), passed)
                in_memory = True
            except MemoryStoreError:
                pass
        return {"task": key, "passed": passed, "auction": binding.auction, "memory": in_memory}
