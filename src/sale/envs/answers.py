"""Short-answer grading for question answering, by the SQuAD / MuSiQue conventions.

An answer and each gold answer are normalised (lowercase, punctuation removed, the
articles "a", "an" and "the" removed, whitespace collapsed) and compared two ways:

- exact match: 1.0 when the normalised strings are equal, else 0.0;
- token F1: the harmonic mean of precision and recall over the bag of normalised tokens.

Both take the best value over the gold answer and its aliases. `grade_answer` turns
them into a `Grade` (passed = exact match, score = F1). `extract_short_answer` cleans a
model's reply ("Answer: Paris." -> "Paris") before grading; `judge_prompt` and
`parse_yes_no` are the LLM judge's prompt and verdict reader. The named pass rules
(em, match, f1:T, judge) are in `sale.envs.grading`.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from typing import Any, Iterable, Protocol

from sale.envs.base import Grade

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
# "Answer:", "Final answer:", "**Short answer**:" and the like at the start of a reply.
_ANSWER_PREFIX = re.compile(
    r"^\W*(?:the\s+)?(?:final\s+|short\s+)?answer(?:\s*\**\s*[:\-]|\s+is\b\s*:?)\s*\**\s*",
    re.IGNORECASE,
)
_QUOTE_PAIRS = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u2018": "\u2019", "*": "*"}
_THINK_BLOCK = re.compile(r"<think>.*?(?:</think>|$)", re.IGNORECASE | re.DOTALL)

# Common English function words and question words. They carry no topic and match most
# documents, so search drops them from queries (unless nothing else is left), and a
# gold answer that is one of them passes the ``match`` rule only by exact match.
STOP_WORDS = frozenset(
    """a about above after again against all also am an and any are as at be because
    been before being below between both but by can could did do does doing down during
    each few for from further had has have having he her here hers herself him himself
    his how i if in into is it its itself just me more most my myself no nor not now of
    off on once only or other our ours ourselves out over own same she should so some
    such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom
    whose why will with would you your yours yourself yourselves s t d ll m re ve""".split()
)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace (SQuAD's rule).

    Text is first brought to Unicode NFKC form (a composed "é" equals a decomposed
    one), and Unicode punctuation (curly quotes, dashes) goes like ASCII punctuation.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION and not unicodedata.category(ch).startswith("P"))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _as_golds(golds: str | Iterable[str]) -> list[str]:
    """Accept one gold answer or several; drop non-strings and blanks."""
    if isinstance(golds, str):
        golds = [golds]
    return [g for g in golds if isinstance(g, str) and g.strip()]


def _f1(prediction: str, gold: str) -> float:
    """Token F1 between one prediction and one gold answer."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        # Both empty (e.g. an answer made only of articles) is agreement.
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, golds: str | Iterable[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in _as_golds(golds)))


def token_f1(prediction: str, golds: str | Iterable[str]) -> float:
    """The best token F1 of the prediction against any gold answer (0.0 if none)."""
    return max((_f1(prediction, g) for g in _as_golds(golds)), default=0.0)


def extract_short_answer(text: str) -> str:
    """Reduce a model's final reply to the bare answer phrase.

    Drops ``<think>`` blocks, takes the line after an "Answer:" label when the reply
    has several lines, strips "Answer:"-style prefixes, surrounding quotes, backticks
    or bold markers, and one trailing period.
    """
    text = _THINK_BLOCK.sub(" ", text or "").strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        labelled = [line for line in lines if _ANSWER_PREFIX.match(line)]
        # The last labelled line wins ("...reasoning...\nAnswer: X"); else the first line.
        text = labelled[-1] if labelled else lines[0]
    elif lines:
        text = lines[0]
    else:
        return ""
    text = _ANSWER_PREFIX.sub("", text, count=1).strip()
    changed = True
    while changed and len(text) >= 2:
        changed = False
        closing = _QUOTE_PAIRS.get(text[0])
        if closing and text.endswith(closing):
            text = text[1:-1].strip()
            changed = True
        elif text.endswith(".") and not text.endswith(".."):
            text = text[:-1].rstrip()
            changed = True
    return text


def grade_answer(
    prediction: str, golds: str | Iterable[str], *, extract: bool = True
) -> Grade:
    """Grade a prediction: passed = exact match, score = token F1.

    ``detail`` holds ``em``, ``f1``, ``matched`` (the gold answer that scored best, or
    None when nothing overlaps) and ``prediction`` (the answer as graded, after
    `extract_short_answer` when ``extract`` is true).
    """
    gold_list = _as_golds(golds)
    answer = extract_short_answer(prediction) if extract else prediction
    best_gold: str | None = None
    best = (0.0, 0.0)
    for gold in gold_list:
        pair = (exact_match(answer, gold), _f1(answer, gold))
        if pair > best:
            best, best_gold = pair, gold
    em, f1 = best
    return Grade(
        passed=em == 1.0,
        score=f1,
        detail={"em": em, "f1": f1, "matched": best_gold, "prediction": answer},
    )


class _Completion(Protocol):
    text: str


class ChatAgent(Protocol):
    """The part of an LLM client the judge needs."""

    async def chat(
        self, messages: list[dict[str, Any]], *, phase: str, max_tokens: int,
        temperature: float,
    ) -> _Completion: ...


JUDGE_PROMPT = """You are grading an answer to a question against the gold answer.

Question: {question}
Gold answer(s): {golds}
Predicted answer: {prediction}

Does the predicted answer refer to the same thing as a gold answer? Ignore differences
in wording, abbreviation, formatting or extra detail, but not in substance. Reply with
one word: yes or no."""


def judge_prompt(question: str, prediction: str, golds: str | Iterable[str]) -> str:
    """The judge's prompt for one answer."""
    gold_list = _as_golds(golds)
    return JUDGE_PROMPT.format(
        question=question.strip(),
        golds="; ".join(gold_list) if gold_list else "(none)",
        prediction=prediction.strip() or "(empty)",
    )


def parse_yes_no(text: str) -> bool | None:
    """Read a yes/no verdict: the first word decides, else a lone 'yes' or 'no' does."""
    text = _THINK_BLOCK.sub(" ", text or "").lower()
    words = re.findall(r"[a-z]+", text)
    if not words:
        return None
    if words[0] in ("yes", "no"):
        return words[0] == "yes"
    said = {w for w in words if w in ("yes", "no")}
    if len(said) == 1:
        return said == {"yes"}
    return None
