"""What an auction produces: scored bids, the original round and the auction record.

Everything here is a plain dataclass with ``to_dict()`` (JSON-ready) and
``from_dict()``, so a record can be written to a results file and read back, and an
original round can be cached on disk and reused by later auctions of the same task.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from sale.errors import SaleError
from sale.llm.client import Completion
from sale.memory.store import AuctionRecord, Bid

BIDDER, JUROR, REFINER = "bidder", "juror", "refiner"
ORIGINAL, REFINED = "original", "refined"


class AuctionError(SaleError):
    """An auction could not choose a winner (says which task and why)."""


@dataclass
class JuryScore:
    """One juror's score of one bid.

    ``score`` is the value used in V (0..5: the expected score where the juror's
    log-probabilities give one, else the written one); ``raw`` the number written in
    the juror's answer, None when it is missing, in which case ``imputed`` is True
    and ``reason`` says why (the call failed, the answer did not parse).

    ``asked`` is False when exact jury pruning skipped the call (``skipped`` says
    why: the juror's weight is 0, the bid was out of contention, the winner was
    decided); its score is then imputed as a missing one is (see jury.py), and cannot
    change the winner. ``input_tokens``, ``cached_tokens``, ``output_tokens``,
    ``dollars`` and ``latency_s`` are the usage of the call that gave the score (a
    batched call's usage is kept on the first bid it scored, 0 on the others), so a
    cached round can be replayed with only the calls a pruned jury asks charged.
    """

    score: float
    imputed: bool = False
    raw: float | None = None
    reason: str = ""
    asked: bool = True
    skipped: str = ""
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    dollars: float = 0.0
    latency_s: float = 0.0


@dataclass
class ScoredBid:
    """A bid and every figure the auction computed for it.

    ``output_tokens`` is the bid's own length in tokens (for a refined bid, the
    strategy part of the answer); ``price`` and ``length`` are the pi and |s_i| the
    cost used (after the no_price / no_length ablations); ``jury_term`` is the jury's
    part of ``value``; ``total`` is C - V (lower is better). ``memory`` is the
    bidder's memory term m_i (0..1) with ``memory_value`` on (None: off) and
    ``memory_term`` its part of ``value`` (w_m * m_i).
    """

    agent: str
    kind: str
    text: str
    output_tokens: int
    entropy: float | None = None
    entropy_k: int = 0
    jury: dict[str, JuryScore] = field(default_factory=dict)
    price: float = 0.0
    length: float = 0.0
    cost: float = 0.0
    jury_term: float = 0.0
    value: float = 0.0
    total: float = 0.0
    dollars: float = 0.0  # what writing this bid cost
    memory: float | None = None
    memory_term: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.agent}/{self.kind}"

    def jury_mean(self) -> float:
        """Mean of the scores used (imputed included); 0 when nobody scored it."""
        return sum(s.score for s in self.jury.values()) / len(self.jury) if self.jury else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoredBid:
        data = dict(data)
        data["jury"] = {j: JuryScore(**s) for j, s in (data.get("jury") or {}).items()}
        return cls(**data)


@dataclass
class Dropout:
    """An agent that left a role in this auction, and why."""

    agent: str
    role: str  # bidder, juror or refiner
    stage: str  # original or refined
    reason: str


@dataclass
class PhaseStats:
    """Calls, tokens, dollars and wall time of one phase, from its Completions."""

    calls: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    dollars: float = 0.0
    wall_s: float = 0.0
    cached_tokens: int = 0  # prompt tokens served from the endpoints' caches (part of input_tokens)
    skipped: int = 0  # jury calls exact pruning did not make (per bid and juror; batched: per bid scored)

    def add(self, completion: Completion | None) -> None:
        """Count one call; None is a call that failed."""
        self.calls += 1
        if completion is None:
            self.failed += 1
            return
        self.input_tokens += completion.input_tokens
        self.output_tokens += completion.output_tokens
        self.dollars += completion.dollars
        self.cached_tokens += completion.cached_tokens

    def merge(self, other: PhaseStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tokens": self.tokens}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhaseStats:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def _phases_from(data: dict[str, Any]) -> dict[str, PhaseStats]:
    return {name: PhaseStats.from_dict(p) for name, p in (data or {}).items()}


@dataclass
class Round:
    """The original round of one task: the bids and their jury scores.

    It depends on the task and the call settings only (``settings``, see
    settings.ROUND_FIELDS), not on the weights or the memory, so it can be computed
    once and shared by auctions of the same task in different task orderings.
    """

    task_id: str
    bids: list[ScoredBid]
    dropped: list[Dropout] = field(default_factory=list)
    phases: dict[str, PhaseStats] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def copy(self) -> Round:
        return copy.deepcopy(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "bids": [b.to_dict() for b in self.bids],
            "dropped": [asdict(d) for d in self.dropped],
            "phases": {k: p.to_dict() for k, p in self.phases.items()},
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Round:
        return cls(
            task_id=data["task_id"],
            bids=[ScoredBid.from_dict(b) for b in data["bids"]],
            dropped=[Dropout(**d) for d in data.get("dropped", [])],
            phases=_phases_from(data.get("phases", {})),
            settings=dict(data.get("settings", {})),
        )


@dataclass
class Refinement:
    """Whether refinement ran, why (not), and for whom.

    ``agents``: the agents cheaper than the provisional winner; ``pairs``: how many
    contrastive pairs each found; ``refined``: those that wrote a refined bid;
    ``reference``: with the batched jury, the provisional winner's bid scored again in
    the same jury calls as the refined bids (``jury`` scores, ``jury_term``, ``total``),
    the bar a refined bid must beat.
    """

    ran: bool = False
    reason: str = ""
    agents: list[str] = field(default_factory=list)
    retrieved: list[str] = field(default_factory=list)
    pairs: dict[str, int] = field(default_factory=dict)
    refined: list[str] = field(default_factory=list)
    reference: dict[str, Any] | None = None


@dataclass
class AuctionResult:
    """The record of one auction.

    ``bids`` holds the original bids then the refined ones; ``winner`` and
    ``winner_kind`` name the winning bid; ``phases`` has the calls, tokens, dollars
    and wall time of "bid", "jury" (original and refined bids) and "refine";
    ``original_reused`` is True when the original round came from a cache (its
    phases are then what that round cost when it was computed).
    ``memory_value``: with ``auction: memory_value``, each agent's memory term and
    its evidence (the neighbours it executed and their outcomes, its prior);
    ``gate``: with ``auction: gate``, the gate's decision and evidence (``gated``:
    the task went to one agent without an auction).
    """

    task_id: str
    bids: list[ScoredBid]
    provisional_winner: str
    winner: str
    winner_kind: str
    refinement: Refinement
    dropped: list[Dropout]
    phases: dict[str, PhaseStats]
    settings: dict[str, Any]
    weights: dict[str, Any]
    original_reused: bool = False
    wall_s: float = 0.0
    memory_value: dict[str, Any] | None = None
    gate: dict[str, Any] | None = None

    @property
    def gated(self) -> bool:
        """The gate sent the task to one agent (one bid call, no jury)."""
        return bool(self.gate and self.gate.get("gated"))

    @property
    def winning_bid(self) -> ScoredBid:
        return next(b for b in self.bids if b.agent == self.winner and b.kind == self.winner_kind)

    @property
    def strategy(self) -> str:
        return self.winning_bid.text

    def totals(self) -> PhaseStats:
        """Calls, tokens and dollars of the whole auction (wall time: sum of phases)."""
        out = PhaseStats()
        for p in self.phases.values():
            out.merge(p)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "bids": [b.to_dict() for b in self.bids],
            "provisional_winner": self.provisional_winner,
            "winner": self.winner,
            "winner_kind": self.winner_kind,
            "refinement": asdict(self.refinement),
            "dropped": [asdict(d) for d in self.dropped],
            "phases": {k: p.to_dict() for k, p in self.phases.items()},
            "settings": dict(self.settings),
            "weights": dict(self.weights),
            "original_reused": self.original_reused,
            "wall_s": self.wall_s,
            **({"memory_value": self.memory_value} if self.memory_value is not None else {}),
            **({"gate": self.gate} if self.gate is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuctionResult:
        return cls(
            task_id=data["task_id"],
            bids=[ScoredBid.from_dict(b) for b in data["bids"]],
            provisional_winner=data["provisional_winner"],
            winner=data["winner"],
            winner_kind=data["winner_kind"],
            refinement=Refinement(**data["refinement"]),
            dropped=[Dropout(**d) for d in data["dropped"]],
            phases=_phases_from(data["phases"]),
            settings=dict(data["settings"]),
            weights=dict(data["weights"]),
            original_reused=bool(data.get("original_reused", False)),
            wall_s=float(data.get("wall_s", 0.0)),
            memory_value=data.get("memory_value"),
            gate=data.get("gate"),
        )

    def memory_record(self, task_text: str) -> AuctionRecord:
        """The record the auction memory stores: every bid, tagged, and the winner."""
        won = self.winning_bid
        bids = [
            Bid(
                agent=b.agent, kind=b.kind, text=b.text, cost=b.cost, value=b.value,
                total=b.total, jury_mean=b.jury_mean(), won=b is won,
            )  # fmt: skip
            for b in self.bids
        ]
        return AuctionRecord(task_id=self.task_id, task_text=task_text, bids=bids, winner=self.winner)
