"""SALE as a router: the strategy auction behind the Router interface.

    router = SALERouter(pool, SQLiteMemory("memory.sqlite"))
    decision = await router.route(task, env)      # the auction picks agent + strategy
    ...                                           # the winner executes, a grader runs
    router.observe(task, decision, passed=True)   # the outcome goes into the memory
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from sale.auction.auction import Auction
from sale.auction.record import AuctionResult, Round
from sale.auction.settings import AuctionSettings
from sale.auction.weights import Weights
from sale.envs.base import Environment
from sale.llm.pool import Pool
from sale.memory.store import InMemoryMemory, MemoryStore
from sale.routers.base import Decision, register
from sale.workloads.task import Task


@register("sale")
class SALERouter:
    """Routes each task by a strategy auction over ``pool``.

    - ``memory``: the auction memory (None: a fresh in-memory store).
    - ``settings``: AuctionSettings, a mapping of them, or None for the pool file's
      ``auction:`` section.
    - ``weights``: Weights, a weights file, or None (the settings' weights_file, else
      the cold-start defaults).
    - ``original_rounds``: an optional cache of original rounds by task id; a round
      found there is reused and a new one is put there (an evaluation shares one
      cache between orderings of the same tasks).
    """

    name = "sale"

    def __init__(
        self,
        pool: Pool,
        memory: MemoryStore | None = None,
        settings: AuctionSettings | dict[str, Any] | None = None,
        weights: Weights | str | Path | None = None,
        *,
        original_rounds: MutableMapping[str, Round] | None = None,
    ):
        if settings is None:
            settings = AuctionSettings.from_pool(pool.config, pool.source)
        elif not isinstance(settings, AuctionSettings):
            settings = AuctionSettings.from_dict(settings)
        if isinstance(weights, (str, Path)):
            weights = Weights.from_file(weights)
        self.memory: MemoryStore = memory if memory is not None else InMemoryMemory()
        self.auction = Auction(pool, self.memory, settings, weights)
        self.original_rounds = original_rounds

    @property
    def settings(self) -> AuctionSettings:
        return self.auction.settings

    async def run_auction(self, task: Task, env: Environment) -> AuctionResult:
        """The full auction record of ``task`` (and the memory updated with it)."""
        env_desc = env.describe(task)
        cache = self.original_rounds
        if cache is None:
            return await self.auction.run(task, env_desc)
        original = cache.get(task.id)
        if original is None:
            original = await self.auction.original_round(task, env_desc)
            cache[task.id] = original
        return await self.auction.run(task, env_desc, original=original)

    async def route(self, task: Task, env: Environment) -> Decision:
        result = await self.run_auction(task, env)
        totals = result.totals()
        return Decision(
            agent=result.winner,
            strategy=result.strategy,
            record=result.to_dict(),
            info={
                "provisional_winner": result.provisional_winner,
                "winner_kind": result.winner_kind,
                "refined": result.refinement.ran,
                "auction_tokens": totals.tokens,
                "auction_dollars": totals.dollars,
                "auction_calls": totals.calls,
                "gated": result.gated,
            },
        )

    def observe(self, task: Task, decision: Decision, passed: bool | None) -> None:
        """Store the execution's outcome with the task's auction in the memory."""
        self.memory.set_outcome(task.id, passed)

    def forget(self, task: Task) -> None:
        """Take the auction of ``task`` out of the memory: its task errored (the
        infrastructure failed), so it says nothing about the bids."""
        discard = getattr(self.memory, "discard", None)
        if discard is not None:
            discard(task.id)
