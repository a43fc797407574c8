"""Bid entropy H(s_i): how unsure an agent was while writing its strategy.

Endpoints return, for each generated token, the log-probabilities of the top-k
alternatives (the chosen token among them). The entropy of one token is taken over
those k alternatives renormalised to sum to one, in nats, so it lies in [0, ln k];
the bid's entropy is the mean over its tokens. k is recorded with the result because
the figure depends on it (a wider top-k sees more of the tail).

A refined bid is the strategy part of a longer answer (an analysis comes first);
`token_span` finds the tokens that spell that part so its length and entropy are
measured on the strategy alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sale.llm.client import TokenLogprob


def token_entropy(top: Sequence[tuple[str, float]]) -> float:
    """Entropy (nats) of the renormalised distribution over ``top`` (token, logprob)."""
    lps = [lp for _, lp in top if lp is not None and math.isfinite(lp)]
    if len(lps) < 2:
        return 0.0
    m = max(lps)
    weights = [math.exp(lp - m) for lp in lps]
    z = sum(weights)
    h = 0.0
    for w in weights:
        p = w / z
        if p > 0:
            h -= p * math.log(p)
    return max(0.0, h)


@dataclass
class EntropyResult:
    """Mean per-token entropy of a bid; ``k`` is the most alternatives seen at a token."""

    entropy: float | None  # None: the endpoint returned no log-probabilities
    k: int
    tokens: int


def mean_entropy(logprobs: Sequence[TokenLogprob] | None) -> EntropyResult:
    """Mean over tokens of `token_entropy`; a token without alternatives counts as 0."""
    if not logprobs:
        return EntropyResult(None, 0, 0)
    total = 0.0
    k = 0
    for t in logprobs:
        top = t.top or [(t.token, t.logprob)]
        k = max(k, len(top))
        total += token_entropy(top)
    return EntropyResult(total / len(logprobs), k, len(logprobs))


def token_span(logprobs: Sequence[TokenLogprob] | None, text: str, start: int, end: int) -> slice | None:
    """The tokens covering characters ``text[start:end]``, or None if unknown.

    The tokens' strings must spell ``text`` (possibly with extra characters around
    it, such as a leading space); otherwise None is returned and callers estimate.
    """
    if not logprobs:
        return None
    joined = "".join(t.token for t in logprobs)
    offset = joined.find(text) if text else -1
    if offset < 0:
        return None
    start, end = start + offset, end + offset
    first = last = None
    pos = 0
    for i, t in enumerate(logprobs):
        nxt = pos + len(t.token)
        if nxt > start and pos < end and t.token.strip():
            first = i if first is None else first
            last = i
        pos = nxt
    if first is None:
        return None
    return slice(first, last + 1)
