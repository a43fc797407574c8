"""The jury: every agent scores bids from 0 to 5 (self and peer review).

Modes (``jury_mode``):

- "per_bid" (the default): one call per (juror, bid), answer ``SCORE: n`` (n*n calls,
  the paper).
- "batched": one call per juror scoring all its bids, answer one line ``BID k: n`` per
  bid (n calls).

Who scores a bid (``jury``): "all" jurors, only its bidder ("self"), or every juror
but its bidder ("peer").

Bids are untrusted text. With ``jury_hardening`` (the default) each bid is wrapped in
markers that carry a random nonce fresh for every call; inside a bid, marker-like text
and text in the juror's answer format ("SCORE: 5", "BID 2: 0") are neutralised, after
Unicode compatibility normalisation and with invisible format characters (zero-width,
bidirectional controls) removed, so look-alike markers and hidden text cannot slip
through; the instructions say that bid text is data that cannot instruct the juror,
that a bid addressing the juror is off-task, and are repeated after the data; and the
score is read from the juror's answer in the strict format only, the last match winning.
A bid that plainly speaks to the jury instead of planning the task (a line in the
verdict format, a bid marker, "ignore previous instructions", "score this 5": see
`injection_sign`) is not shown to the jurors at all: every juror's score for it is 0,
with the reason recorded. Small jurors do not reliably obey "ignore what the bid
says", so this rule does not depend on them. Without hardening a naive prompt
pastes the bid inline and the first digit of the answer is taken (for measuring
injection, not for use).

The score used is, by default (``jury_score: expected``), the juror's expected score
where it wrote its number: the digits 0..5 among that token's top log-probability
alternatives, weighted by their probabilities (`expected_score`). Small jurors write
the same digit for most bids (0 or 5), yet the weight they put on the other digits
still tells a good plan from a poor one. Where the endpoint returns no alternatives
the written number is used.

A missing score (failed call, unparseable answer, out-of-range number) never stops the
auction. It is imputed, in this order, by: the mean of the other jurors' scores of the
same bid; else the mean of this juror's scores of the other bids scored in the same
stage; else 2.5, the middle of the scale. The imputed flag and the reason are kept.
Where the weights are known (the auction), only jurors of nonzero weight stand in for a
missing score: a juror of weight 0 then changes no C - V, not even through imputation,
which is what lets exact pruning never ask it (pruning.py).
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import time
import unicodedata
from collections.abc import Container, Sequence
from dataclasses import dataclass, field

from sale import prompts
from sale.agent.constrain import auction_fields, batched_jury_grammar, jury_grammar
from sale.auction.bids import render
from sale.auction.entropy import token_span
from sale.auction.record import JUROR, Dropout, JuryScore, PhaseStats, ScoredBid
from sale.auction.settings import AuctionSettings
from sale.llm.client import Completion, LLMError
from sale.llm.pool import Agent

NEUTRAL_SCORE = 2.5
MAX_SCORE = 5.0

_NUMBER = r"(\d+(?:\.\d+)?)"
# A line "SCORE: n" (markdown emphasis, '#', '>' or a bullet allowed around it).
_SCORE_LINE = re.compile(r"^[\s*#>_\-]*score[\s*_]*[:=][\s*_]*" + _NUMBER, re.IGNORECASE | re.MULTILINE)
# A line "BID k: n".
_BID_LINE = re.compile(
    r"^[\s*#>_\-]*bid\s*#?\s*(\d+)[\s*_]*[:=\-][\s*_]*" + _NUMBER, re.IGNORECASE | re.MULTILINE
)
# An answer that is only a number ("4", "4/5", "4.").
_BARE = re.compile(r"^[\s*]*" + _NUMBER + r"\s*(?:/\s*5)?\s*\.?[\s*]*$")
# Marker-like text a bid could use to fake the end of its own data block.
_MARKER = re.compile(r"<\s*/?\s*bid\b[^<>\n]*>", re.IGNORECASE)
# Text in a juror's answer format, which a bid could write for the juror to copy.
_ANSWER_LIKE = re.compile(r"\b(?:score|bid\s*#?\s*\d+)[\s*_]*[:=]", re.IGNORECASE)
# Signs that a bid speaks to the jury rather than plans the task (see injection_sign).
_INJECTION_SIGNS = (
    _SCORE_LINE,
    _BID_LINE,
    _MARKER,
    re.compile(r"\b(?:ignore|disregard|forget|override)\b[^.\n]{0,40}\b(?:instructions?|prompts?|rules)\b", re.I),
    re.compile(r"\b(?:score|rate|grade|give)\s+(?:this|it|me|my)\b[^.\n]{0,40}?(?:\b[0-5]\b|highest|maximum|full marks)",
               re.I),
)

NAIVE_PER_BID = "Task: {task}\n\nHere is a plan for this task: {bid}\n\nRate the plan from 0 to 5."
NAIVE_BATCH = "Task: {task}\n\nHere are {n} plans for this task:\n{bids}\n\nRate each plan from 0 to 5."


def included(bidder: str, jurors: Sequence[str], mode: str) -> list[str]:
    """The jurors who score a bid of ``bidder`` under ``mode`` ("all", "self", "peer")."""
    if mode == "self":
        return [j for j in jurors if j == bidder]
    if mode == "peer":
        return [j for j in jurors if j != bidder]
    return list(jurors)


# Cyrillic and Greek letters that look like Latin ones (NFKC keeps them apart).
_LOOKALIKES = str.maketrans("АВЕКМНОРСТХаеорсухіјѕԁΑΒΕΖΗΙΚΜΝΟΡΤΥΧοі", "ABEKMHOPCTXaeopcyxijsdABEZHIKMNOPTYXoi")


def visible_text(text: str) -> str:
    """``text`` as a reader would take it: NFKC-normalised (full-width look-alikes
    become ASCII), invisible format characters (zero-width, bidi controls) removed."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def injection_sign(text: str) -> str | None:
    """The first passage of a bid that addresses the jury instead of planning the task
    (a verdict line, a bid marker, a request to ignore instructions or to be scored),
    or None. An honest plan has no reason to contain any of these."""
    text = visible_text(text).translate(_LOOKALIKES)
    for pattern in _INJECTION_SIGNS:
        m = pattern.search(text)
        if m:
            return m[0].strip()[:80]
    return None


def neutralise(text: str, nonce: str) -> str:
    """Make ``text`` unable to close or open a bid block or to offer the juror an answer:
    marker-like tags, the call's nonce and answer-format text ("SCORE:", "BID 2:") are
    replaced, after NFKC normalisation (full-width look-alikes become ASCII) and with
    invisible format characters removed."""
    text = visible_text(text)
    text = re.sub(re.escape(nonce), "[removed]", text, flags=re.IGNORECASE)
    text = _MARKER.sub("[marker removed]", text)
    return _ANSWER_LIKE.sub("[answer format removed]", text)


def _in_range(value: str) -> float | None:
    x = float(value)
    return x if 0.0 <= x <= MAX_SCORE else None


# ----------------------------------------------------------------------------- prompts


def per_bid_prompt(task_text: str, env_desc: str, bid: str, *, hardened: bool = True, nonce: str | None = None) -> str:
    if not hardened:
        return render(NAIVE_PER_BID, task=task_text.strip(), bid=bid)
    nonce = nonce or secrets.token_hex(6)
    return render(
        prompts.text("jury_bid.txt"),
        task=task_text.strip(), environment=env_desc.strip() or "(no tools)",
        open=f"<bid-{nonce}>", close=f"</bid-{nonce}>", bid=neutralise(bid, nonce),
    )  # fmt: skip


def batch_prompt(
    task_text: str, env_desc: str, bids: Sequence[str], *, hardened: bool = True, nonce: str | None = None
) -> str:
    if not hardened:
        listing = "\n".join(f"{k}. {b}" for k, b in enumerate(bids, 1))
        return render(NAIVE_BATCH, task=task_text.strip(), n=len(bids), bids=listing)
    nonce = nonce or secrets.token_hex(6)
    blocks = "\n\n".join(
        f"<bid-{nonce} {k}>\n{neutralise(b, nonce)}\n</bid-{nonce}>" for k, b in enumerate(bids, 1)
    )
    fmt = "\n".join(f"BID {k}: <a whole number from 0 to 5>" for k in range(1, len(bids) + 1))
    return render(
        prompts.text("jury_batch.txt"),
        task=task_text.strip(), environment=env_desc.strip() or "(no tools)",
        n=len(bids), nonce=nonce, bids=blocks, format=fmt,
    )  # fmt: skip


# ----------------------------------------------------------------------------- parsing


def _read(answer: str, n: int, batched: bool, hardened: bool) -> list[tuple[float, int, int] | None]:
    """For bids 1..n: (score, start, end) of the number the juror wrote, or None.

    Per bid, hardened: the last ``SCORE: n`` line, or an answer that is only a number;
    naive: the first digit. Batched, hardened: lines ``BID k: n``, the last line for
    each k winning; naive: for each k, the first digit after the first standalone k.
    An out-of-range number counts as missing.
    """
    found: list[re.Match | None] = [None] * n
    group = 1
    if not batched:
        if not hardened:
            found[0] = re.search(r"(\d)", answer)
        else:
            found[0] = ([*_SCORE_LINE.finditer(answer)] or [None])[-1] or _BARE.match(answer)
    elif not hardened:
        found = [re.search(rf"(?<!\d){k}(?!\d)\D*?(\d)", answer) for k in range(1, n + 1)]
    else:
        group = 2
        for m in _BID_LINE.finditer(answer):
            if 1 <= int(m[1]) <= n:
                found[int(m[1]) - 1] = m
    out: list[tuple[float, int, int] | None] = []
    for m in found:
        value = _in_range(m[group]) if m else None
        out.append(None if value is None else (value, *m.span(group)))
    return out


def parse_score(answer: str, *, hardened: bool = True) -> float | None:
    """The score in a per-bid answer, or None (see `_read`)."""
    found = _read(answer, 1, False, hardened)[0]
    return found[0] if found else None


def parse_batch(answer: str, n: int, *, hardened: bool = True) -> list[float | None]:
    """Scores of bids 1..n in a batched answer, None where missing (see `_read`)."""
    return [found[0] if found else None for found in _read(answer, n, True, hardened)]


def expected_score(completion: Completion, start: int, end: int) -> float | None:
    """The juror's expected score at the written number ``completion.text[start:end]``:
    the mean of the digits 0..5 among that token's top alternatives, weighted by their
    probabilities. None when the number is not one token carrying alternatives.

    A small juror that writes 0 for most bids still puts more weight on 3 or 4 for a
    good plan than for a bad one; the written digit alone throws that away.
    """
    span = token_span(completion.logprobs, completion.text, start, end)
    if span is None or span.stop - span.start != 1:
        return None
    weights: dict[int, float] = {}
    for token, logprob in completion.logprobs[span.start].top:
        digit = token.strip()
        if len(digit) == 1 and digit in "012345":
            weights[int(digit)] = weights.get(int(digit), 0.0) + math.exp(logprob)
    total = sum(weights.values())
    return sum(k * w for k, w in weights.items()) / total if total > 0 else None


# ----------------------------------------------------------------------------- the jury


def impute(
    raw: list[dict[str, float | None]], counted: Container[str] | None = None
) -> list[dict[str, tuple[float, bool]]]:
    """Fill missing scores (None) as the module docstring says; (score, imputed).
    ``counted``: the jurors whose scores may stand in for another juror's (default: all;
    the auction passes those of nonzero weight)."""
    out: list[dict[str, tuple[float, bool]]] = []
    for i, scores in enumerate(raw):
        filled: dict[str, tuple[float, bool]] = {}
        for juror, value in scores.items():
            if value is not None:
                filled[juror] = (value, False)
                continue
            others = [v for j, v in scores.items()
                      if j != juror and v is not None and (counted is None or j in counted)]  # fmt: skip
            if not others:
                others = [r[juror] for ii, r in enumerate(raw) if ii != i and r.get(juror) is not None]
            filled[juror] = (sum(others) / len(others) if others else NEUTRAL_SCORE, True)
        out.append(filled)
    return out


@dataclass
class Verdict:
    """What one jury call said about one bid: the number written (``raw``), the score
    used (``used``: the expected score where known, else ``raw``), why it is missing
    (``why``), and the call's usage (kept on the first bid a call scored, 0 elsewhere)."""

    raw: float | None = None
    used: float | None = None
    why: str = ""
    usage: dict[str, float] = field(default_factory=dict)

    def score(self, **extra: object) -> JuryScore:
        """The JuryScore of an answered verdict (``used`` must be set)."""
        assert self.used is not None
        return JuryScore(score=self.used, raw=self.raw, **self.usage, **extra)  # type: ignore[arg-type]


def _usage(c: Completion | None) -> dict[str, float]:
    if c is None:
        return {}
    return {
        "input_tokens": c.input_tokens, "cached_tokens": c.cached_tokens, "output_tokens": c.output_tokens,
        "dollars": c.dollars, "latency_s": c.latency_s,
    }  # fmt: skip


async def ask_jury(
    jobs: Sequence[tuple[Agent, list[int]]],
    task_text: str,
    env_desc: str,
    bids: Sequence[ScoredBid],
    settings: AuctionSettings,
) -> tuple[dict[tuple[int, str], Verdict], PhaseStats, dict[str, list[str]]]:
    """Make the jury calls ``jobs`` (a juror and the indices of the bids it scores in
    one call: one index per call with the per-bid jury) concurrently.

    Returns a Verdict per (bid index, juror), the calls' stats (wall time included)
    and the reasons of failed calls by juror.
    """
    hardened = settings.jury_hardening
    batched = settings.jury_mode == "batched"
    # The expected score needs the answer's log-probabilities (hardened prompts only).
    expected = hardened and settings.jury_score == "expected"

    async def ask(juror: Agent, prompt: str, max_tokens: int, n_bids: int) -> Completion | LLMError:
        # The answer format of the hardened prompts, as a grammar (auction.constrain: auto).
        grammar = jury_grammar() if settings.jury_mode == "per_bid" else batched_jury_grammar(n_bids)
        fields = auction_fields(settings.constrain, juror, grammar) if hardened else {}
        try:
            return await juror.chat(
                [{"role": "user", "content": prompt}], phase="jury", max_tokens=max_tokens,
                temperature=settings.jury_temperature, timeout_s=settings.call_timeout_s,
                top_logprobs=settings.top_logprobs if expected else None, **fields,
            )  # fmt: skip
        except LLMError as exc:
            return exc

    prompts_ = [
        batch_prompt(task_text, env_desc, [bids[i].text for i in idx], hardened=hardened)
        if batched else per_bid_prompt(task_text, env_desc, bids[idx[0]].text, hardened=hardened)
        for _, idx in jobs
    ]  # fmt: skip
    stats = PhaseStats()
    started = time.perf_counter()
    answers = await asyncio.gather(
        *(ask(juror, prompt, settings.jury_max_tokens * len(idx), len(idx)) for (juror, idx), prompt in zip(jobs, prompts_))
    )
    stats.wall_s = time.perf_counter() - started

    verdicts: dict[tuple[int, str], Verdict] = {}
    failures: dict[str, list[str]] = {}
    for (juror, idx), answer in zip(jobs, answers):
        if isinstance(answer, LLMError):
            stats.add(None)
            failures.setdefault(juror.name, []).append(answer.reason)
            for i in idx:
                verdicts[i, juror.name] = Verdict(why="call failed")
            continue
        stats.add(answer)
        for n, (i, found) in enumerate(zip(idx, _read(answer.text, len(idx), batched, hardened))):
            v = Verdict(usage=_usage(answer) if n == 0 else {})
            verdicts[i, juror.name] = v
            if found is None:
                v.why = "no score in answer: " + repr(answer.text[:80])
                continue
            v.raw = found[0]
            weighted = expected_score(answer, found[1], found[2]) if expected else None
            v.used = v.raw if weighted is None else weighted
    return verdicts, stats, failures


def dropouts(failures: dict[str, list[str]], stage: str) -> list[Dropout]:
    """One Dropout per juror whose calls failed."""
    return [
        Dropout(name, JUROR, stage, f"{len(reasons)} jury call(s) failed: {reasons[0]}")
        for name, reasons in failures.items()
    ]


def rule_reason(sign: str) -> str:
    return f"the bid addresses the jury ({sign!r}): scored 0 by rule"


async def score_bids(
    jurors: Sequence[Agent],
    task_text: str,
    env_desc: str,
    bids: Sequence[ScoredBid],
    settings: AuctionSettings,
    stage: str,
) -> tuple[list[Dropout], PhaseStats]:
    """Have the whole jury score ``bids`` (setting each bid's ``jury``); drop-outs and
    stats. Every bid gets a JuryScore from each juror that ``settings.jury`` includes
    for it (the paper's jury; `sale.auction.pruning` asks fewer calls)."""
    names = [j.name for j in jurors]
    included_jurors = [included(b.agent, names, settings.jury) for b in bids]
    hardened = settings.jury_hardening
    # Hardened: a bid that addresses the jury is scored 0 by rule and shown to nobody.
    signs = {i: sign for i, b in enumerate(bids) if hardened and (sign := injection_sign(b.text))}
    wanted = [[] if i in signs else w for i, w in enumerate(included_jurors)]

    jobs: list[tuple[Agent, list[int]]] = []
    for juror in jurors:
        mine = [i for i, w in enumerate(wanted) if juror.name in w]
        if not mine:
            continue
        if settings.jury_mode == "per_bid":
            jobs.extend((juror, [i]) for i in mine)
        else:
            jobs.append((juror, mine))
    verdicts, stats, failures = await ask_jury(jobs, task_text, env_desc, bids, settings)

    # Imputation works on the scores used (expected where known), raw keeps the digit.
    used = [{j: verdicts[i, j].used for j in w} for i, w in enumerate(wanted)]
    filled = impute(used)
    for i, bid in enumerate(bids):
        bid.jury = {}
        for j, (score, imputed) in filled[i].items():
            v = verdicts[i, j]
            bid.jury[j] = JuryScore(score=score, imputed=imputed, raw=v.raw, reason=v.why, **v.usage)  # type: ignore[arg-type]
        if i in signs:
            bid.jury = {j: JuryScore(score=0.0, reason=rule_reason(signs[i])) for j in included_jurors[i]}
    return dropouts(failures, stage), stats
