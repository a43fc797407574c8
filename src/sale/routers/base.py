"""The Router interface: one extension point for SALE and every baseline.

A router decides which agent of a pool executes a task, and with which strategy
(the winning bid, for SALE; empty for routers that do not plan). After the task has
run and been graded, the evaluation tells the router the outcome through
``observe``, so routers that learn online (SALE's memory) can use it.

Routers are chosen by name::

    router = get_router("sale", pool=pool, memory=memory)

A new router is one class with ``name``, ``route`` and ``observe``, registered with
``@register("my-router")`` in a module of the ``sale.routers`` package (modules there
are imported on the first lookup of an unknown name) or anywhere imported before the
lookup.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, TypeVar, runtime_checkable

from sale.envs.base import Environment
from sale.errors import ConfigError
from sale.workloads.task import Task


@dataclass
class Decision:
    """Which agent executes a task, following which strategy.

    ``record`` is the router's record of how it decided (SALE: the auction record,
    JSON-ready); ``info`` holds anything else worth logging.
    """

    agent: str
    strategy: str
    record: dict | None = None
    info: dict = field(default_factory=dict)


@runtime_checkable
class Router(Protocol):
    name: str

    async def route(self, task: Task, env: Environment) -> Decision:
        """Choose the agent (and its strategy) for ``task``."""
        ...

    def observe(self, task: Task, decision: Decision, passed: bool | None) -> None:
        """Learn the graded outcome of a decision (None: not graded)."""
        ...


ROUTERS: dict[str, type] = {}

T = TypeVar("T", bound=type)


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make a router available to `get_router` under ``name``."""

    def deco(cls: T) -> T:
        other = ROUTERS.get(name)
        if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
            raise ConfigError(f"router name '{name}' is taken by {other.__module__}.{other.__qualname__}")
        ROUTERS[name] = cls
        return cls

    return deco


def _discover() -> dict[str, str]:
    """Import every module of the sale.routers package; failures by module name."""
    import sale.routers as package

    failed: dict[str, str] = {}
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        try:
            importlib.import_module(info.name)
        except Exception as exc:  # reported only if the wanted router is still missing
            failed[info.name] = f"{type(exc).__name__}: {exc}"
    return failed


def get_router(name: str, **kwargs: Any) -> Any:
    """Build the router registered under ``name`` with ``kwargs``."""
    failed: dict[str, str] = {}
    if name not in ROUTERS:
        failed = _discover()
    cls = ROUTERS.get(name)
    if cls is None:
        known = ", ".join(sorted(ROUTERS)) or "none"
        hint = "".join(f"; {mod} did not import ({why})" for mod, why in failed.items())
        raise ConfigError(f"unknown router '{name}' (known: {known}){hint}")
    return cls(**kwargs)
