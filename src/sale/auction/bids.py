"""Bids: every agent writes a short strategy for the task, all at once.

The prompt comes from ``sale/prompts/bid.txt`` (the task, the environment's
description of its tools, and what a strategy should say). A bid's length |s_i| is
its output tokens and its entropy H(s_i) the mean top-k token entropy (entropy.py).
An agent whose call fails, or whose bid is not a strategy (empty, a copied placeholder,
fewer than three words: see `bid_problem`), drops out of the bidding.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence

from sale import prompts
from sale.agent.constrain import auction_fields, bid_grammar
from sale.auction.entropy import mean_entropy
from sale.auction.record import BIDDER, ORIGINAL, Dropout, PhaseStats, ScoredBid
from sale.auction.settings import AuctionSettings
from sale.llm.client import Completion, LLMError
from sale.llm.pool import Agent

_FIELD = re.compile(r"\{(\w+)\}")


def render(template: str, **values: object) -> str:
    """Fill ``{name}`` fields in one pass (text inserted is never re-scanned, so
    braces in a task or a bid are safe); unknown fields are left as they are."""
    return _FIELD.sub(lambda m: str(values[m[1]]) if m[1] in values else m[0], template)


def words_for(max_tokens: int) -> int:
    """A word budget to ask for, so that a strategy fits ``max_tokens`` tokens."""
    return max(10, int(max_tokens * 0.6))


def bid_messages(task_text: str, env_desc: str, settings: AuctionSettings) -> list[dict[str, str]]:
    prompt = render(
        prompts.text("bid.txt"),
        task=task_text.strip(),
        environment=env_desc.strip() or "(no tools)",
        max_words=words_for(settings.bid_max_tokens),
    )
    return [{"role": "user", "content": prompt}]


def clean_strategy(text: str) -> str:
    """Strip whitespace and a leading 'STRATEGY:' that some models repeat."""
    text = text.strip()
    return re.sub(r"^\s*\**\s*strategy\s*\**\s*:\s*", "", text, flags=re.IGNORECASE).strip()


PLACEHOLDER = re.compile(r"[\W_]*<[^<>\n]{1,80}>[\W_]*")
MIN_WORDS = 3


def bid_problem(text: str) -> str | None:
    """Why a cleaned bid is not a strategy, or None when it is one: an empty bid, a bid
    that only repeats a placeholder of the prompt (``<your strategy ...>``, which small
    models copy), or one of fewer than ``MIN_WORDS`` words. Such a bid drops out: its
    length would make it nearly free and a lenient jury can still score it high."""
    if not text:
        return "empty bid"
    if PLACEHOLDER.fullmatch(text):
        return f"bid only repeats a placeholder of the prompt: {text[:60]!r}"
    words = len(text.split())
    if words < MIN_WORDS:
        return f"bid too short to be a strategy ({words} word{'s' if words != 1 else ''}): {text[:60]!r}"
    return None


def bid_from_completion(agent: Agent, kind: str, text: str, c: Completion, tokens: int, logprobs) -> ScoredBid:
    ent = mean_entropy(logprobs)
    return ScoredBid(
        agent=agent.name, kind=kind, text=text, output_tokens=max(1, tokens),
        entropy=ent.entropy, entropy_k=ent.k, dollars=c.dollars,
    )  # fmt: skip


async def ask_all(
    agents: Sequence[Agent], call: Callable[[Agent], Awaitable[Completion]]
) -> tuple[list[Completion | LLMError], PhaseStats]:
    """Make ``call`` for every agent concurrently; a failed call yields its LLMError.

    The returned stats hold the phase's wall time; the caller adds each answer to them.
    """

    async def one(agent: Agent) -> Completion | LLMError:
        try:
            return await call(agent)
        except LLMError as exc:
            return exc

    stats = PhaseStats()
    started = time.perf_counter()
    answers = await asyncio.gather(*(one(a) for a in agents))
    stats.wall_s = time.perf_counter() - started
    return list(answers), stats


async def collect_bids(
    agents: Sequence[Agent], task_text: str, env_desc: str, settings: AuctionSettings
) -> tuple[list[ScoredBid], list[Dropout], PhaseStats]:
    """Ask every agent for a bid concurrently; returns bids (pool order), drop-outs, stats."""
    messages = bid_messages(task_text, env_desc, settings)

    grammar = bid_grammar(words_for(settings.bid_max_tokens))
    answers, stats = await ask_all(agents, lambda agent: agent.chat(
        messages, phase="bid", max_tokens=settings.bid_max_tokens,
        temperature=settings.bid_temperature, top_logprobs=settings.top_logprobs,
        timeout_s=settings.call_timeout_s, **auction_fields(settings.constrain, agent, grammar),
    ))  # fmt: skip
    bids: list[ScoredBid] = []
    dropped: list[Dropout] = []
    for agent, answer in zip(agents, answers):
        if isinstance(answer, LLMError):
            stats.add(None)
            dropped.append(Dropout(agent.name, BIDDER, ORIGINAL, f"call failed: {answer.reason}"))
            continue
        stats.add(answer)
        text = clean_strategy(answer.text)
        problem = bid_problem(text)
        if problem:
            dropped.append(Dropout(agent.name, BIDDER, ORIGINAL, problem))
            continue
        bids.append(bid_from_completion(agent, ORIGINAL, text, answer, answer.output_tokens, answer.logprobs))
    return bids, dropped, stats
