"""What the memory says about outcomes: the memory term of a bid's value and the gate.

Both read only outcomes the run observed: a stored auction's ``passed`` is set once
its winner's execution was graded (`sale run`, the bench's stream) or reported through
``sale serve``'s /v1/sale/outcome, so each stored auction is one observed execution,
by its winner. Agents that did not execute a task say nothing about it.

The memory term (``auction: memory_value: true``)
    V_i = w_h H_i + sum_j w_j gamma_j + w_m m_i, with m_i agent i's
    similarity-weighted success on the past tasks it executed among the ``memory_k``
    nearest ones (cosine s_r, clipped at 0; y_r = 1 passed, 0 failed)::

        m_i = (sum_r s_r y_r + a p_i) / (sum_r s_r + a)

    shrunk, with strength a = ``memory_prior`` (in fully similar tasks), to the prior
    p_i: agent i's overall rate over every observed execution in the memory, itself
    shrunk the same way to the overall rate p of all agents' observed executions,
    p = (passed + 1) / (executed + 2) (a uniform Beta prior)::

        p_i = (passed_i + a p) / (executed_i + a)

    An agent without history gets m_i = p, the rate of an average observed
    execution: the term neither favours nor punishes it against an agent whose record
    is average. m_i is known before the jury speaks, so exact jury pruning treats it
    like the entropy term.

The gate (``auction: gate: {k, min_similarity, min_agreement, explore}``)
    Where the k nearest past tasks all have similarity >= ``min_similarity`` and at
    least ``min_agreement`` of them were passed by one agent (the cheapest such
    agent, if several qualify), the task goes to that agent: one bid call, no jury.
    A deterministic share ``explore`` of the tasks that would be gated (the task id's
    hash) still holds the full auction, so the memory keeps learning about the
    others. A neighbour whose execution failed, or whose outcome is unknown, counts
    against agreement.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sale.errors import ConfigError
from sale.memory.store import AuctionRecord, MemoryStore, count_outcomes


@dataclass
class Neighbour:
    """A past task near the current one: who executed it and how it went."""

    task_id: str
    similarity: float
    executor: str | None
    passed: bool | None


@dataclass
class MemoryTerm:
    """m_i of one agent and its evidence: ``neighbours`` are the near past tasks the
    agent executed with an observed outcome; ``weight`` is the sum of their
    similarities; ``prior`` is p_i (``executed``/``passed``: the agent's overall
    observed record in the memory)."""

    agent: str
    value: float
    prior: float
    weight: float
    executed: int
    passed: int
    neighbours: list[Neighbour] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def nearest_scored(memory: MemoryStore, text: str, k: int, exclude: str | None) -> list[tuple[float, AuctionRecord]]:
    """The k nearest past auctions with their similarities (stores without scores: 1.0)."""
    search = getattr(memory, "nearest_scored", None)
    if search is not None:
        return list(search(text, k=k, exclude_task_id=exclude))
    return [(1.0, r) for r in memory.nearest(text, k=k, exclude_task_id=exclude)]


def neighbours(memory: MemoryStore, text: str, k: int, exclude: str | None) -> list[Neighbour]:
    """The k nearest past tasks, best first, with their executors and outcomes."""
    return [
        Neighbour(task_id=r.task_id, similarity=float(s), executor=r.winner, passed=r.passed)
        for s, r in nearest_scored(memory, text, k, exclude)
    ]


def outcome_counts(memory: MemoryStore, exclude: str | None = None) -> dict[str, tuple[int, int]]:
    """agent -> (passed, executed) over every observed execution in ``memory``."""
    counts = getattr(memory, "outcome_counts", None)
    if counts is not None:
        return dict(counts(exclude_task_id=exclude))
    return count_outcomes(memory, exclude)


def memory_terms(
    memory: MemoryStore | None, text: str, agents: Sequence[str], *, k: int, strength: float,
    exclude: str | None = None,
) -> dict[str, MemoryTerm]:
    """m_i for each of ``agents`` (see the module docstring); no memory: the prior 1/2."""
    if strength <= 0:
        raise ConfigError(f"memory_prior must be > 0, got {strength}")
    counts = outcome_counts(memory, exclude) if memory is not None else {}
    total_p = sum(p for p, _ in counts.values())
    total_n = sum(n for _, n in counts.values())
    overall = (total_p + 1.0) / (total_n + 2.0)
    near = neighbours(memory, text, k, exclude) if memory is not None else []
    out = {}
    for agent in agents:
        passed, executed = counts.get(agent, (0, 0))
        prior = (passed + strength * overall) / (executed + strength)
        own = [n for n in near if n.executor == agent and n.passed is not None]
        weight = sum(max(0.0, n.similarity) for n in own)
        hits = sum(max(0.0, n.similarity) * float(bool(n.passed)) for n in own)
        value = (hits + strength * prior) / (weight + strength)
        out[agent] = MemoryTerm(agent, value, prior, weight, executed, passed, own)
    return out


# ----------------------------------------------------------------------------- the gate


def explore_draw(task_id: str) -> float:
    """A number in [0, 1) fixed by the task id (the explore share's coin)."""
    digest = hashlib.sha256(task_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass
class GateDecision:
    """Whether the gate sent the task to one agent, and why.

    ``agent``: the agent the neighbours agree on (None when they do not);
    ``gated``: the task went to it without an auction; ``explored``: it would have,
    but the task falls in the explore share; ``agreement``: share of the k neighbours
    passed by ``agent``."""

    gated: bool
    reason: str
    agent: str | None = None
    agreement: float = 0.0
    explored: bool = False
    draw: float = 0.0
    neighbours: list[Neighbour] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gate_decision(
    memory: MemoryStore | None, task_id: str, text: str, prices: dict[str, float], *,
    k: int, min_similarity: float, min_agreement: float, explore: float,
) -> GateDecision:
    """Apply the gate to a task (see the module docstring); ``prices``: the pool's."""
    if memory is None:
        return GateDecision(False, "no memory store")
    near = neighbours(memory, text, k, task_id)
    if len(near) < k:
        return GateDecision(False, f"only {len(near)} past task(s) in memory, the gate needs {k}", neighbours=near)
    far = [n for n in near if n.similarity < min_similarity]
    if far:
        return GateDecision(
            False, f"{len(far)} of the {k} nearest past tasks are less similar than {min_similarity:g} "
            f"(least: {min(n.similarity for n in far):.3f})", neighbours=near,
        )  # fmt: skip
    passed_by: dict[str, int] = {}
    for n in near:
        if n.passed and n.executor in prices:
            passed_by[n.executor] = passed_by.get(n.executor, 0) + 1
    agreeing = [a for a, c in passed_by.items() if c / k >= min_agreement - 1e-12]
    if not agreeing:
        best = max(passed_by.values(), default=0)
        return GateDecision(
            False, f"no agent passed at least {min_agreement:g} of the {k} nearest past tasks "
            f"(the most by one agent: {best})", neighbours=near,
        )  # fmt: skip
    agent = min(agreeing, key=lambda a: (prices[a], a))
    share = passed_by[agent] / k
    draw = explore_draw(task_id)
    if draw < explore:
        return GateDecision(
            False, f"explore share: {agent} passed {passed_by[agent]} of the {k} nearest past tasks, "
            f"but this task holds the full auction (draw {draw:.3f} < explore {explore:g})",
            agent=agent, agreement=share, explored=True, draw=draw, neighbours=near,
        )  # fmt: skip
    return GateDecision(
        True, f"{agent} passed {passed_by[agent]} of the {k} nearest past tasks, all at least {min_similarity:g} similar",
        agent=agent, agreement=share, draw=draw, neighbours=near,
    )  # fmt: skip
