"""Hard dollar budgets per task and per run, enforced before every call.

A pool file may set::

    budget:
      per_task: 0.01   # dollars any one task may spend (bids, jury, refinement, execution)
      per_run: 1.0     # dollars the whole run may spend

Before a call is made, `Agent.chat` asks the pool's `Budget` to *reserve* the call's
worst-case cost; the reservation fails with `OverBudget` (before anything is sent)
when the dollars already spent, plus those held by calls still in flight, plus this
call's worst case would pass a limit. After the call, the reservation is *settled*
with the call's actual cost (from the usage the endpoint reports), or released when
the call failed. Reservations are taken and settled under a lock, so concurrent calls
(the bids of an auction, the jury) can never together pass a limit.

The worst case of a call, and the assumption it rests on
--------------------------------------------------------
``input tokens  <= UTF-8 bytes of the JSON text of the messages and the tool schemas
                   + MESSAGE_ALLOWANCE_TOKENS per message + CALL_ALLOWANCE_TOKENS
                   (+ TOOLS_ALLOWANCE_TOKENS when tools are sent)``
``output tokens <= max_tokens`` (the endpoint stops generating there)

Input tokens are priced at the dearer of the input and the ``cached_input`` price
(which of them the endpoint's prompt cache serves is known only afterwards); the
settled cost charges cached prompt tokens at ``cached_input``.

A byte-level BPE tokenizer (GPT-2 style: Qwen, Llama 3, SmolLM, GPT-4) or a
SentencePiece tokenizer with byte fallback never spends more than one token on one
byte of text, so a text of B bytes is at most B tokens. The JSON text of a message is
longer than the text the chat template renders from it (keys, quotes and escapes are
counted too); the allowances cover what a template adds of its own: special and role
tokens around each message, a default system prompt, instructions for tool use. A
tokenizer that can spend several tokens on one byte, or an endpoint that reports
more output tokens than ``max_tokens``, breaks the bound; the actual cost is still
charged, so such an overrun shows in the totals and the calls after it are refused.

What counts: every dollar the ledger records through this pool (failed calls cost
nothing, as in the ledger). A task's spending is keyed by its id, read from the
ledger tags (``ledger_tags(task=...)``) the run loop and the auction set; a call
outside any task counts against the run only. `carry_over` adds what a run directory's
ledger recorded before a restart, so a resumed run keeps its limits.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sale.errors import BudgetExceeded, ConfigError
from sale.llm.client import LLMError
from sale.llm.ledger import current_tags

#: Tokens a chat template may add around one message (role header, end-of-turn).
MESSAGE_ALLOWANCE_TOKENS = 16
#: Tokens a chat template may add once per call (BOS, a default system prompt, the
#: assistant header that starts the reply).
CALL_ALLOWANCE_TOKENS = 96
#: Tokens a chat template may add when tools are sent (its tool-use instructions).
TOOLS_ALLOWANCE_TOKENS = 512

PER_TASK, PER_RUN = "per_task", "per_run"


def max_input_tokens(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> int:
    """An upper bound of the input tokens of a call (see the module docstring)."""
    size = CALL_ALLOWANCE_TOKENS
    for message in messages:
        size += len(json.dumps(message, ensure_ascii=False).encode("utf-8")) + MESSAGE_ALLOWANCE_TOKENS
    if tools:
        size += len(json.dumps(tools, ensure_ascii=False).encode("utf-8")) + TOOLS_ALLOWANCE_TOKENS
    return size


def worst_case_dollars(
    price: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, max_tokens: int
) -> float:
    """The most a call can cost: bound of its input tokens times the input price plus
    ``max_tokens`` times the output price (``price`` in dollars per million tokens)."""
    input_price = max(price.input, price.cached)  # the dearer of fresh and cached input
    return (max_input_tokens(messages, tools) * input_price + max_tokens * price.output) / 1e6


class OverBudget(LLMError, BudgetExceeded):
    """A call was refused before it was made: its worst case would pass a budget.

    It is an `LLMError`, so every caller that survives a failing endpoint (a bidder
    dropping out, a juror's score imputed) survives a refused call the same way, and a
    `BudgetExceeded`, so a caller can tell the two apart. ``scope`` is "per_task" or
    "per_run".
    """

    def __init__(self, agent: str, scope: str, limit: float, spent: float, held: float, worst: float, task: str = ""):
        what = "per-task budget" if scope == PER_TASK else "per-run budget"
        of_task = f" of task '{task}'" if task and scope == PER_TASK else ""
        reason = (
            f"{what} ${limit:g}{of_task} would be exceeded: ${spent:.6g} spent, ${held:.6g} held by calls in "
            f"flight, this call may cost up to ${worst:.6g}; the call was not made"
        )
        super().__init__(agent, "(budget)", reason)
        self.args = (f"agent '{agent}': {reason}",)
        self.scope = scope
        self.task = task
        self.limit = limit


@dataclass
class Refusal:
    """One refused call: which task, which budget, which agent, and the message."""

    task: str
    scope: str
    agent: str
    message: str


class Hold:
    """The reservation of one call; `settle` it with the actual cost, or `release` it."""

    def __init__(self, budget: Budget, task: str, dollars: float):
        self.budget = budget
        self.task = task
        self.dollars = dollars
        self.done = False

    def settle(self, dollars: float) -> None:
        """Charge ``dollars`` (the call's actual cost) and free the reservation."""
        self.budget._settle(self, dollars)

    def release(self) -> None:
        """Free the reservation without charging (the call failed or was cancelled)."""
        self.budget._settle(self, 0.0)


class Budget:
    """Dollar limits of a pool: ``per_task`` and ``per_run`` (None: no limit).

    Without limits it still counts what was spent, so totals can be read back.
    """

    def __init__(self, per_task: float | None = None, per_run: float | None = None):
        for name, value in ((PER_TASK, per_task), (PER_RUN, per_run)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
                raise ConfigError(f"budget.{name} must be a positive number of dollars, got {value!r}")
        self.per_task = None if per_task is None else float(per_task)
        self.per_run = None if per_run is None else float(per_run)
        self.spent = 0.0
        self.held = 0.0
        self.task_spent: dict[str, float] = {}
        self.task_held: dict[str, float] = {}
        self.refusals: list[Refusal] = []
        self.overruns = 0  # settled calls that cost more than their reservation
        self.carried_over = False
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Any) -> Budget:
        """From a pool file's validated ``budget`` section (`sale.config.BudgetConfig`)."""
        if config is None:
            return cls()
        return cls(per_task=config.per_task, per_run=config.per_run)

    @property
    def limited(self) -> bool:
        return self.per_task is not None or self.per_run is not None

    # ------------------------------------------------------------------ reservations

    def reserve(self, agent: str, dollars: float, *, task: str | None = None) -> Hold:
        """Reserve ``dollars`` for one call of ``agent``; raises `OverBudget` if a limit
        would be passed. ``task`` defaults to the current ledger tag."""
        if task is None:
            task = current_tags().get("task", "")
        with self._lock:
            if self.per_run is not None and self.spent + self.held + dollars > self.per_run:
                self._refuse(OverBudget(agent, PER_RUN, self.per_run, self.spent, self.held, dollars, task))
            if task and self.per_task is not None:
                spent, held = self.task_spent.get(task, 0.0), self.task_held.get(task, 0.0)
                if spent + held + dollars > self.per_task:
                    self._refuse(OverBudget(agent, PER_TASK, self.per_task, spent, held, dollars, task))
            self.held += dollars
            if task:
                self.task_held[task] = self.task_held.get(task, 0.0) + dollars
        return Hold(self, task, dollars)

    def _refuse(self, exc: OverBudget) -> None:
        self.refusals.append(Refusal(exc.task, exc.scope, exc.agent, exc.reason))
        raise exc

    def _settle(self, hold: Hold, dollars: float) -> None:
        with self._lock:
            if hold.done:
                return
            hold.done = True
            self.held = max(0.0, self.held - hold.dollars)
            self.spent += dollars
            if dollars > hold.dollars:
                self.overruns += 1
            if hold.task:
                self.task_held[hold.task] = max(0.0, self.task_held.get(hold.task, 0.0) - hold.dollars)
                self.task_spent[hold.task] = self.task_spent.get(hold.task, 0.0) + dollars

    # ------------------------------------------------------------------ reading back

    def carry_over(self, entries: Iterable[Any]) -> None:
        """Count ledger entries of an earlier process (a resumed run) as spent."""
        with self._lock:
            for e in entries:
                self.spent += e.dollars
                if e.task:
                    self.task_spent[e.task] = self.task_spent.get(e.task, 0.0) + e.dollars
            self.carried_over = True

    def spent_on(self, task: str) -> float:
        return self.task_spent.get(task, 0.0)

    def stopped(self, task: str) -> str:
        """Which budget refused a call of ``task``: "per_run", "per_task" or ""."""
        scopes = {r.scope for r in self.refusals if r.task == task}
        return PER_RUN if PER_RUN in scopes else (PER_TASK if PER_TASK in scopes else "")

    @property
    def stopped_run(self) -> bool:
        """Whether the per-run budget has refused a call (the run should start no more tasks)."""
        return any(r.scope == PER_RUN for r in self.refusals)

    def refusal(self, task: str) -> Refusal | None:
        """The first refused call of ``task`` (its message says which limit and why)."""
        return next((r for r in self.refusals if r.task == task), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            PER_TASK: self.per_task,
            PER_RUN: self.per_run,
            "spent": self.spent,
            "refused_calls": len(self.refusals),
            "run_stopped": self.stopped_run,
            "overruns": self.overruns,
        }
