"""Refinement from memory: cheaper agents rewrite their bids from past contests.

An agent gets contrastive pairs from the most similar past auctions (a losing and a
winning strategy, at least one of them its own; see memory.store.contrastive_pairs)
and a prompt (``sale/prompts/refine.txt``) that asks why each winner won and each
loser lost, then for a refined strategy for the current task after the marker
``REFINED STRATEGY:``. Only the text after the last marker is the bid; its length and
entropy are measured on the tokens that spell it.

Small models answer this prompt with text that is not a plan for the task, and such
text is short on entropy and scored high by lenient jurors, while the weights were
fitted on original bids only. A refined bid drops out (`refined_problem`) when it
echoes the prompt's own labels (``PAST TASK 1:``), when it is mostly pasted from the
past contests (``refine_max_copied``, see `copied_share`), or when it repeats itself
(``refine_min_distinct``, see `distinct_share`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from sale import prompts
from sale.auction.bids import ask_all, bid_from_completion, bid_problem, clean_strategy, render, words_for
from sale.auction.entropy import token_span
from sale.auction.record import REFINED, REFINER, Dropout, PhaseStats, ScoredBid
from sale.auction.settings import AuctionSettings
from sale.llm.client import Completion, LLMError
from sale.llm.pool import Agent
from sale.memory.store import AuctionRecord, Bid

Pair = tuple[Bid, Bid, AuctionRecord]

_MARKER = re.compile(r"refined[\s*_]+strategy[\s*_]*:", re.IGNORECASE)
_LOOSE_MARKER = re.compile(r"strategy[\s*_]*:", re.IGNORECASE)
_ANALYSIS = re.compile(r"^[\s*#_]*analysis[\s*_]*:", re.IGNORECASE)


#: Copying is measured on phrases of this many words.
COPY_WORDS = 4
_WORD = re.compile(r"\w+")
_LETTERS = re.compile(r"[^\W\d_]+")

#: The labels `pairs_text` writes; a refined bid that contains one echoes the prompt.
PAST_TASK, LOSING, WINNING = "PAST TASK", "LOSING STRATEGY", "WINNING STRATEGY"
_ECHO = re.compile(rf"{PAST_TASK} \d+:|{LOSING} \(|{WINNING} \(")


def _phrases(text: str) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i:i + COPY_WORDS]) for i in range(len(words) - COPY_WORDS + 1)}


def copied_share(strategy: str, shown: str, own: str) -> float:
    """Share of ``strategy``'s 4-word phrases that appear in ``shown`` (the past
    contests in the refine prompt) but not in ``own`` (the current task and the agent's
    own bid for it): 0.0 for a strategy of its own, near 1.0 for a pasted one."""
    phrases = _phrases(strategy)
    if not phrases:
        return 0.0
    return len((phrases & _phrases(shown)) - _phrases(own)) / len(phrases)


def distinct_share(strategy: str) -> float:
    """Share of distinct pairs among ``strategy``'s pairs of adjacent words (words of
    letters; numbers are left out, so numbered repeats count as repeats): 1.0 for text
    that never repeats a word pair, near 0 for "The answer is: The answer is: ..."."""
    words = _LETTERS.findall(strategy.lower())
    pairs = list(zip(words, words[1:]))
    return len(set(pairs)) / len(pairs) if pairs else 1.0


def refined_problem(strategy: str, shown: str, own: str, settings: AuctionSettings) -> str | None:
    """Why a refined bid is not a plan for the task (see the module docstring), or None.
    ``shown``: the past contests in its prompt; ``own``: the task and the agent's own bid."""
    head = repr(strategy[:60])
    if echo := _ECHO.search(strategy):
        return f"refined bid echoes the prompt's label {echo.group().rstrip(' (:')!r}: {head}"
    share = copied_share(strategy, shown, own)
    if share > settings.refine_max_copied:
        return f"refined bid copies the past contests ({share:.0%} of its phrases): {head}"
    distinct = distinct_share(strategy)
    if distinct < settings.refine_min_distinct:
        return f"refined bid repeats itself ({distinct:.0%} of its word pairs distinct): {head}"
    return None


def _cut(text: str, chars: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= chars else text[: chars - 3].rstrip() + "..."


def pairs_text(pairs: Sequence[Pair], agent: str, chars: int) -> str:
    """The past contests, numbered, each with its task, losing and winning strategy."""
    blocks = []
    for k, (loser, winner, rec) in enumerate(pairs, 1):
        def who(b: Bid) -> str:
            return "yours" if b.agent == agent else "another agent's"

        blocks.append(
            f"{PAST_TASK} {k}:\n{_cut(rec.task_text, chars)}\n"
            f"{LOSING} ({who(loser)}):\n{_cut(loser.text, chars)}\n"
            f"{WINNING} ({who(winner)}):\n{_cut(winner.text, chars)}"
        )
    return "\n\n".join(blocks)


def refine_messages(task_text: str, env_desc: str, shown: str, settings: AuctionSettings) -> list[dict[str, str]]:
    """The refine prompt; ``shown`` is the past contests as `pairs_text` writes them."""
    prompt = render(
        prompts.text("refine.txt"),
        pairs=shown,
        task=task_text.strip(),
        environment=env_desc.strip() or "(no tools)",
        max_words=words_for(settings.bid_max_tokens),
    )
    return [{"role": "user", "content": prompt}]


def strategy_span(answer: str) -> tuple[int, int] | None:
    """Character span of the refined strategy in ``answer``, or None if there is none.

    The text after the last ``REFINED STRATEGY:``; else after the last
    ``STRATEGY:``; else, when the answer is not just an analysis, the whole answer.
    """
    matches = list(_MARKER.finditer(answer)) or list(_LOOSE_MARKER.finditer(answer))
    if matches:
        start = matches[-1].end()
    elif _ANALYSIS.match(answer):
        return None  # the answer stopped before the strategy
    else:
        start = 0
    while start < len(answer) and answer[start] in " \t\r\n*_":
        start += 1
    end = len(answer.rstrip())
    return (start, end) if end > start else None


def refined_bid(agent: Agent, c: Completion) -> ScoredBid | None:
    """The refined bid in a refine answer, measured on its own tokens; None if empty."""
    span = strategy_span(c.text)
    if span is None:
        return None
    start, end = span
    text = clean_strategy(c.text[start:end])
    if not text:
        return None
    tokens = token_span(c.logprobs, c.text, start, end)
    if tokens is not None:
        logprobs = c.logprobs[tokens]
        count = len(logprobs)
    else:  # tokens do not spell the text: estimate the length, use every token
        logprobs = c.logprobs
        count = round(c.output_tokens * (end - start) / max(1, len(c.text)))
    return bid_from_completion(agent, REFINED, text, c, count, logprobs)


def _no_strategy(answer: Completion, settings: AuctionSettings) -> str:
    """Why a refine answer holds no strategy: cut by the token cap, or stopped early."""
    if answer.finish_reason == "length":
        return f"no refined strategy in the answer: cut at refine_max_tokens={settings.refine_max_tokens}"
    return f"no refined strategy in the answer: {' '.join(answer.text.split())[-60:]!r}"


async def refine_bids(
    agents: Sequence[Agent],
    task_text: str,
    env_desc: str,
    pairs: Mapping[str, Sequence[Pair]],
    settings: AuctionSettings,
    originals: Mapping[str, str] | None = None,
) -> tuple[list[ScoredBid], list[Dropout], PhaseStats]:
    """Each agent with at least one pair writes a refined bid, concurrently.
    ``originals``: each agent's original bid for this task (its phrases are its own)."""
    askers = [a for a in agents if pairs.get(a.name)]
    # The past contests as each agent is shown them: its prompt, and what a copy is measured against.
    shown = {a.name: pairs_text(pairs[a.name], a.name, settings.refine_text_chars) for a in askers}

    answers, stats = await ask_all(askers, lambda agent: agent.chat(
        refine_messages(task_text, env_desc, shown[agent.name], settings),
        phase="refine", max_tokens=settings.refine_max_tokens,
        temperature=settings.bid_temperature, top_logprobs=settings.top_logprobs,
        timeout_s=settings.call_timeout_s,
    ))  # fmt: skip
    bids: list[ScoredBid] = []
    dropped: list[Dropout] = []
    for agent, answer in zip(askers, answers):
        if isinstance(answer, LLMError):
            stats.add(None)
            dropped.append(Dropout(agent.name, REFINER, REFINED, f"call failed: {answer.reason}"))
            continue
        stats.add(answer)
        bid = refined_bid(agent, answer)
        problem = _no_strategy(answer, settings) if bid is None else bid_problem(bid.text)
        if not problem:
            own = task_text + "\n" + (originals or {}).get(agent.name, "")
            problem = refined_problem(bid.text, shown[agent.name], own, settings)
        if problem:
            dropped.append(Dropout(agent.name, REFINER, REFINED, problem))
            continue
        bids.append(bid)
    return bids, dropped, stats
