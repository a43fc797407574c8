"""Agents and pools: named models with prices, reached through the one client.

An `Agent` wraps a `ChatClient` with the agent's price and generation defaults, and
records every call in the pool's ledger under a phase label. A `Pool` builds its agents
from a pool file, starts the llama.cpp servers of its local agents and stops them.

    async with Pool.from_file("pool.yaml") as pool:
        c = await pool["small"].chat([{"role": "user", "content": "hi"}], phase="bid")
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

from sale.config import AgentConfig, PoolConfig, Price, load_pool_config
from sale.errors import ConfigError
from sale.llm.budget import Budget, worst_case_dollars
from sale.llm.client import ChatClient, Completion, LLMError
from sale.llm.ledger import Ledger, LedgerEntry
from sale.llm.local import LlamaServer
from sale.llm.models import resolve_model


class Agent:
    def __init__(self, config: AgentConfig, client: ChatClient | None, ledger: Ledger, budget: Budget | None = None):
        self.config = config
        self.name = config.name
        self.price: Price = config.price
        self.client = client
        self.ledger = ledger
        self.budget = budget if budget is not None else Budget()
        self.server: LlamaServer | None = None
        self.gate: asyncio.Semaphore | None = None  # shared by the local agents of a pool

    @property
    def unit_price(self) -> float:
        """Mean of input and output price, dollars per million tokens (the auction's pi)."""
        return (self.price.input + self.price.output) / 2

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, ${self.unit_price:g}/M)"

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        phase: str,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_logprobs: int | None = None,
        tools: list[dict[str, Any]] | None = None,
        stop: list[str] | None = None,
        timeout_s: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Completion:
        """One call, recorded in the ledger under ``phase``; raises LLMError on failure.
        ``extra``: more request fields (a ``grammar``, a ``response_format``).

        The call's worst-case cost is reserved in the pool's budget first; a call that
        could pass a budget is not made (`sale.llm.budget.OverBudget`, an LLMError).
        """
        if self.client is None:
            raise LLMError(self.name, "(not started)", "the pool is not started; use 'async with pool' or await pool.start()")
        gen = self.config.generation
        max_tokens = max_tokens or gen.max_tokens
        hold = self.budget.reserve(self.name, worst_case_dollars(self.price, messages, tools, max_tokens))
        try:
            async with self.gate or contextlib.nullcontext():
                c = await self.client.chat(
                    messages,
                    max_tokens=max_tokens,
                    temperature=gen.temperature if temperature is None else temperature,
                    top_logprobs=top_logprobs,
                    tools=tools,
                    stop=stop,
                    seed=gen.seed,
                    timeout_s=timeout_s,
                    extra=extra,
                )
        except LLMError as exc:
            hold.release()
            self.ledger.record(LedgerEntry(self.name, phase, 0, 0, 0.0, 0.0, ok=False, error=exc.reason[:300]))
            raise
        except BaseException:  # cancelled: the reservation must not outlive the call
            hold.release()
            raise
        c.phase = phase
        c.dollars = self.price.dollars(c.input_tokens, c.output_tokens, c.cached_tokens)
        hold.settle(c.dollars)
        self.ledger.record(LedgerEntry(
            self.name, phase, c.input_tokens, c.output_tokens, c.dollars, c.latency_s, cached_tokens=c.cached_tokens,
        ))  # fmt: skip
        return c


class Pool:
    """The agents of a pool, in the order of the pool file."""

    def __init__(self, config: PoolConfig, *, ledger: Ledger | None = None, source: str = "<pool>"):
        self.config = config
        self.source = source
        self.ledger = ledger or Ledger()
        self.budget = Budget.from_config(config.budget)  # the pool file's hard dollar limits
        self.agents: list[Agent] = [Agent(a, None, self.ledger, self.budget) for a in config.agents]
        self._started = False

    @classmethod
    def from_file(cls, path: str | Path, *, ledger: Ledger | None = None) -> "Pool":
        return cls(load_pool_config(path), ledger=ledger, source=str(path))

    # ------------------------------------------------------------------ access
    def __iter__(self) -> Iterator[Agent]:
        return iter(self.agents)

    def __len__(self) -> int:
        return len(self.agents)

    def __getitem__(self, name: str) -> Agent:
        for a in self.agents:
            if a.name == name:
                return a
        raise KeyError(f"no agent named '{name}' in pool {self.source}")

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.agents]

    def by_price(self) -> list[Agent]:
        """Cheapest first (ties keep file order)."""
        return sorted(self.agents, key=lambda a: a.unit_price)

    @property
    def cheapest(self) -> Agent:
        return self.by_price()[0]

    @property
    def largest(self) -> Agent:
        """The most expensive agent, taken as the largest."""
        return self.by_price()[-1]

    # ------------------------------------------------------------------ lifecycle
    async def start(self, *, pull_missing: bool = False) -> "Pool":
        """Start local servers (in parallel) and create the clients."""
        if self._started:
            return self
        local = [a for a in self.agents if a.config.is_local]
        for a in local:
            path = resolve_model(a.config.model, pull_missing=pull_missing)
            cpus = os.cpu_count() or 1
            a.server = LlamaServer(path, ctx=a.config.context, parallel=a.config.concurrency, threads=a.config.threads or cpus, name=a.name)
        try:
            await asyncio.gather(*(a.server.astart() for a in local))
        except Exception:
            await self.stop()
            raise
        # Local servers share this machine's cores, and llama.cpp's threads spin while
        # they wait: calls made one at a time finish sooner than calls side by side.
        gate = asyncio.Semaphore(self.config.local_calls) if local else None
        for a in local:
            a.gate = gate
        for a in self.agents:
            cfg = a.config
            if cfg.is_local:
                base_url, model, key = a.server.base_url, a.name, None
            else:
                ep = cfg.endpoint
                base_url, model = ep.base_url, ep.model
                key = None
                if ep.api_key_env:
                    key = os.environ.get(ep.api_key_env)
                    if key is None:
                        raise ConfigError(
                            f"{self.source}: agents '{a.name}'.endpoint.api_key_env: environment variable "
                            f"{ep.api_key_env} is not set; export it or remove api_key_env"
                        )
            a.client = ChatClient(
                base_url, model, api_key=key, agent=a.name, concurrency=cfg.concurrency,
                timeout_s=cfg.timeout_s, max_retries=cfg.max_retries,
            )  # fmt: skip
        self._started = True
        return self

    async def stop(self) -> None:
        for a in self.agents:
            if a.client is not None:
                await a.client.close()
                a.client = None
            if a.server is not None:
                a.server.stop()
                a.server = None
        self._started = False

    async def __aenter__(self) -> "Pool":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()
