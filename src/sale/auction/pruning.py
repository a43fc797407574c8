"""Exact jury pruning: ask only the jury calls that can still change the winner.

``auction: jury_pruning: exact`` (the default; ``off`` asks the whole jury, as in the
paper). A bid's C - V is ``base - sum_j c_j * gamma_j``: ``base`` is its cost minus
its entropy term (and its memory term with ``memory_value``), known before any juror speaks, and ``c_j`` is juror j's weight
(times the subset rescaling of the ``self``/``peer`` juries, see auction.py). Every
score gamma_j lies in 0..5, so until juror j has answered, its term adds between
``min(0, -5 c_j)`` and ``max(0, -5 c_j)``: each bid's C - V lies in an interval
[best case, worst case] that narrows as jurors answer.

The pruner asks in waves. A bid is *out of contention* once its best case is worse
than another bid's worst case: no answer can make it win, so nothing more is asked
about it. The jury stops once one bid is left in contention (its worst case beats
every other bid's best case). Within a wave the jurors not yet asked are taken in
order of |weight|, the largest first:

- per bid: each bid in contention is shown to its next juror, one call each;
- batched: the next juror scores, in one call, every bid in contention it has not
  scored yet.

A juror whose weight is 0 (or whose term is 0 for any other reason) is never asked:
its score cannot move any C - V. Bids that address the jury are scored 0 by rule
(jury.py) and need no call. Comparisons keep a margin of 1e-9 (relative), so a tie
or a rounding difference never prunes: the pruned jury never asks more calls than
the whole jury, and decides as it would.

What exactness means. Given the same answers to the calls it asks, the pruned jury
picks the same winner as the whole jury, whatever the skipped calls would have
answered (every value in 0..5 leads to the same winner). Skipped scores are recorded
(``asked: false`` and why) and imputed like missing ones (jury.py), from the asked
scores only, so the record's totals keep the winner. A call that fails keeps its
juror's term open over 0..5 and is not asked again; where the open terms of failed
calls alone leave the winner undecided, the winner comes from the imputed scores. A
missing score is imputed from the other jurors of nonzero weight who scored the same
bid (jury.py), and by then the pruned jury has asked every one of them about every bid
still in contention, so it imputes as the whole jury does; only where no other juror
scored a bid does the fallback (the juror's scores of the other bids) see fewer
scores than the whole jury's, and the winner may then differ. With the batched jury a juror's
scores depend on the other bids in its call, which pruning leaves out: the decision
is exact for the scores its calls gave, which may differ from a whole-jury call's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sale.auction.jury import MAX_SCORE

#: Relative margin of every comparison (a tie or a rounding error never prunes).
MARGIN = 1e-9


@dataclass
class Candidate:
    """One bid as the pruner sees it.

    ``base``: C minus the entropy term (and the memory term); ``coef``: juror -> c_j for each juror who
    scores this bid (C - V = base - sum c_j * score_j); ``known``: scores already
    answered; ``asked``: jurors already asked (answered or failed); ``fixed``: scores
    set by rule without a call (they count as known and never as asked).
    """

    label: str
    base: float
    coef: dict[str, float]
    known: dict[str, float] = field(default_factory=dict)
    asked: set[str] = field(default_factory=set)
    fixed: bool = False

    def open(self) -> list[str]:
        """Jurors whose term is still unknown and not 0."""
        return [j for j, c in self.coef.items() if c != 0 and j not in self.known]

    def bounds(self) -> tuple[float, float]:
        """(best case, worst case) of C - V over every score the open jurors can give."""
        total = self.base - sum(self.coef[j] * s for j, s in self.known.items() if j in self.coef)
        lo = hi = total
        for j in self.open():
            step = -self.coef[j] * MAX_SCORE
            lo += min(0.0, step)
            hi += max(0.0, step)
        return lo, hi


Request = tuple[str, list[int]]  # a juror and the candidates it scores in one call


class Pruner:
    """Decides which jury calls to ask next (see the module docstring)."""

    def __init__(self, candidates: Sequence[Candidate], order: Sequence[str], batched: bool):
        self.c = list(candidates)
        self.order = list(order)  # jurors, largest |weight| first
        self.batched = batched
        self.out: dict[int, str] = {}

    def _tol(self, bounds: Sequence[tuple[float, float]]) -> float:
        return MARGIN * max([1.0, *(abs(x) for b in bounds for x in b)])

    def contenders(self) -> list[int]:
        """Candidates no other candidate certainly beats (recording why the others are out)."""
        bounds = [c.bounds() for c in self.c]
        tol = self._tol(bounds)
        alive = []
        for i, (lo, _) in enumerate(bounds):
            beaten = [k for k, (_, hi) in enumerate(bounds) if k != i and hi < lo - tol]
            if beaten:
                if i not in self.out:
                    k = min(beaten, key=lambda k: bounds[k][1])
                    self.out[i] = (
                        f"out of contention: its best case {lo:.6g} cannot beat the worst case "
                        f"{bounds[k][1]:.6g} of {self.c[k].label}"
                    )
                continue
            alive.append(i)
        return alive

    def _askable(self, i: int) -> list[str]:
        cand = self.c[i]
        open_ = set(cand.open()) - cand.asked
        return [j for j in self.order if j in open_]

    def next_requests(self) -> list[Request]:
        """The next wave of calls; [] when the winner is decided or nothing is left to ask."""
        alive = self.contenders()
        if len(alive) <= 1:
            return []
        if not self.batched:
            return [(ask[0], [i]) for i in alive if (ask := self._askable(i))]
        for j in self.order:
            idx = [i for i in alive if j in self._askable(i)]
            if idx:
                return [(j, idx)]
        return []

    def record(self, i: int, juror: str, score: float | None) -> None:
        """Juror ``juror`` was asked about candidate ``i``; None: no usable answer."""
        cand = self.c[i]
        cand.asked.add(juror)
        if score is not None:
            cand.known[juror] = score

    def skip_reason(self, i: int, juror: str) -> str:
        """Why juror ``juror`` was never asked about candidate ``i``."""
        if self.c[i].coef.get(juror, 0.0) == 0:
            return "weight 0: its score cannot change C - V"
        if i in self.out:
            return self.out[i]
        alive = self.contenders()
        if len(alive) == 1:
            return f"decided without it: {self.c[alive[0]].label}'s worst case beats every other bid's best case"
        return "undecided only by failed calls: nothing left to ask"


async def run_pruned(pruner: Pruner, ask: Callable[[list[Request]], Awaitable[Mapping[tuple[int, str], float | None]]]) -> int:
    """Ask waves of calls until the winner is decided; ``ask`` makes one wave and
    returns the score used for each (candidate, juror) it asked (None: missing).
    Returns the number of waves."""
    waves = 0
    while requests := pruner.next_requests():
        waves += 1
        answers = await ask(requests)
        for juror, idx in requests:
            for i in idx:
                pruner.record(i, juror, answers.get((i, juror)))
    return waves
