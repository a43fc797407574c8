"""The Environment interface: what an agent may do, and how its answer is graded.

A user adds an environment by implementing this protocol; the executor loop and the
auction only talk to it through these methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol, runtime_checkable

from sale.workloads.task import Task


@dataclass
class Tool:
    """A tool the agent may call. ``run`` gets the parsed arguments and returns text."""

    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments (object)
    run: Callable[..., Awaitable[str]]


@dataclass
class Grade:
    """The graded outcome of one answer."""

    passed: bool
    score: float = 0.0  # in [0, 1]; 1.0 for a pass in binary graders
    detail: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Environment(Protocol):
    name: str

    def describe(self, task: Task) -> str:
        """Text that tells bidders what tools and answer format the task offers."""

    def tools(self, task: Task) -> list[Tool]:
        """The tools available while executing ``task`` (not including 'submit')."""

    def answer_instructions(self, task: Task) -> str:
        """What the final answer must look like (e.g. a full function, a short phrase)."""

    async def grade(self, task: Task, answer: str) -> Grade:
        """Grade the submitted answer."""
