"""sale: strategy auctions for pools of small and large LLM agents.

The Python API in one place (imported lazily, so ``import sale`` stays cheap)::

    from sale import Pool, SALERouter, Task, build_environments, execute, run_tasks, load_tasks
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Pool": "sale.llm.pool",
    "Agent": "sale.llm.pool",
    "Ledger": "sale.llm.ledger",
    "load_pool_config": "sale.config",
    "default_pool_path": "sale.config",
    "Task": "sale.workloads.task",
    "load_tasks": "sale.workloads.loaders",
    "demo_workload": "sale.workloads.standard",
    "standard_workload": "sale.workloads.standard",
    "Auction": "sale.auction.auction",
    "AuctionSettings": "sale.auction.settings",
    "Weights": "sale.auction.weights",
    "SALERouter": "sale.routers.sale",
    "get_router": "sale.routers.base",
    "SQLiteMemory": "sale.memory.store",
    "execute": "sale.agent.executor",
    "Limits": "sale.agent.executor",
    "build_environments": "sale.run",
    "open_runner": "sale.run",
    "run_tasks": "sale.run",
    "SaleError": "sale.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sale' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
