"""Pass rules for short answers, and the LLM judge that the ``judge`` rule asks.

A search answer is scored every deterministic way at once (`answer_scores`): exact
match (``em``), token F1 (``f1``) and ``match``; a named rule (`GradeRule`) decides
which of them passes it:

- ``em``: the extracted answer equals the answer or an alias after SQuAD/HotpotQA
  normalisation (lowercase, no punctuation, no articles, whitespace collapsed);
- ``match`` (the default for search): a gold answer or alias, normalised the same way,
  appears as a whole-token span in the normalised answer, the "match" accuracy that
  open-domain QA papers (PopQA among them) report for generated answers. Guards: the
  answer holds at most `MATCH_MAX_TOKENS` tokens (a list of candidates cannot pass);
  a yes/no gold needs the answer to be exactly yes or no; a gold that is a stop word or
  two letters or fewer ("at", "us", "pl") counts only by exact match; where the gold is
  one of the options a comparison question offers ("Who is older, A or B?"), an answer
  that also names the other option fails;
- ``f1:T``: token F1 against the best gold at least T (0 < T <= 1);
- ``judge``: the paper's rule: an LLM judge, given the question, the gold answers and
  the answer, says yes or no (`Judge`). Its calls are booked in phase ``judge``; its
  verdicts are cached by a hash of (question, answer, golds, judge).

Every grade records ``em``, ``f1``, ``match`` (and ``judge`` where asked) with
``rule``, so a result can be read again under another rule (`sale regrade`).

The rule of a task is, first to last: ``--grade`` (an override), the task's own
``grading.rule``, the pool file's ``grading.rule``, then ``match``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sale.config import Endpoint, Generation, Price, validation_message
from sale.envs.answers import (
    STOP_WORDS, ChatAgent, _as_golds, _f1, extract_short_answer, judge_prompt, normalize_answer, parse_yes_no,
)  # fmt: skip
from sale.envs.base import Grade
from sale.errors import ConfigError, TaskFileError
from sale.jsonl import JsonlWriter, read_jsonl

#: The rule search tasks are graded by when nothing names another.
DEFAULT_RULE = "match"
#: The most normalised tokens an answer may hold and still pass ``match``.
MATCH_MAX_TOKENS = 20
#: The deterministic scores every search grade records.
SCORE_KEYS = ("em", "f1", "match")
_YES_NO = ("yes", "no")


# ----------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class GradeRule:
    """A named pass rule: ``em``, ``match``, ``f1:T`` or ``judge``."""

    kind: str
    threshold: float = 0.0

    @classmethod
    def parse(cls, text: Any, where: str = "grade rule") -> GradeRule:
        """Read a rule name; ConfigError naming ``where`` for anything else."""
        if isinstance(text, GradeRule):
            return text
        name = str(text).strip().lower() if isinstance(text, str) else ""
        if name in ("em", "match", "judge"):
            return cls(name)
        if name.startswith("f1:"):
            try:
                t = float(name[3:])
            except ValueError:
                t = -1.0
            if 0.0 < t <= 1.0:
                return cls("f1", t)
        raise ConfigError(
            f"{where}: got {text!r}; expected one of em, match, f1:T (0 < T <= 1, e.g. f1:0.5), judge"
        )

    def __str__(self) -> str:
        return f"f1:{self.threshold:g}" if self.kind == "f1" else self.kind

    @property
    def needs_judge(self) -> bool:
        return self.kind == "judge"

    def passes(self, scores: Mapping[str, Any]) -> bool:
        """Whether a grade's recorded scores pass under this rule (a judge verdict that
        is missing or neither yes nor no does not)."""
        if self.kind == "judge":
            return scores.get("judge") is True
        if self.kind == "f1":
            return float(scores.get("f1") or 0.0) >= self.threshold
        return float(scores.get(self.kind) or 0.0) == 1.0


def resolve_rule(override: Any = None, task_rule: Any = None, pool_rule: Any = None, task_id: str = "") -> GradeRule:
    """The rule in force for one task: ``--grade``, the task's, the pool's, else match."""
    if override is not None:
        return GradeRule.parse(override, "--grade")
    if task_rule is not None:
        return GradeRule.parse(task_rule, f"task {task_id}: grading.rule")
    if pool_rule is not None:
        return GradeRule.parse(pool_rule, "pool file: grading.rule")
    return GradeRule(DEFAULT_RULE)


# ----------------------------------------------------------------------------- scores


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split()


def _has_span(tokens: list[str], span: list[str]) -> int:
    """The start of the first occurrence of ``span`` in ``tokens``, or -1."""
    n = len(span)
    for i in range(len(tokens) - n + 1):
        if tokens[i : i + n] == span:
            return i
    return -1


def _exact_only(gold: list[str]) -> bool:
    """A gold that may pass only by exact match: yes/no, a stop word, or 2 letters or fewer."""
    joined = " ".join(gold)
    return joined in _YES_NO or joined in STOP_WORDS or len(joined.replace(" ", "")) <= 2


def other_options(question: str, gold: str) -> list[str]:
    """Where ``gold`` is one of the options a comparison question offers ("A or B"),
    the token that marks each other option: the word on the other side of "or", next
    to it (the other option's edge). [] when the gold is not an option there."""
    span = _tokens(gold)
    if not span or not question:
        return []
    markers: list[str] = []
    # clauses: "Who is older, A or B?" -> the clause holding "A or B"
    clauses = [c for c in _split_clauses(question) if c]
    for clause in clauses:
        toks = _tokens(clause)
        at = _has_span(toks, span)
        if at < 0:
            continue
        end = at + len(span)
        if end < len(toks) and toks[end] == "or":
            markers += _edge(toks[end + 1 :])
        if at > 0 and toks[at - 1] == "or":
            markers += _edge(list(reversed(toks[: at - 1])))
    return [m for m in markers if m not in span]


def _split_clauses(question: str) -> list[str]:
    out, current = [], []
    for ch in question:
        if ch in ",;?:!" or ch == "\n":
            out.append("".join(current))
            current = []
        else:
            current.append(ch)
    out.append("".join(current))
    return [c.replace("--", " ") for c in out]


def _edge(tokens: list[str]) -> list[str]:
    """The first token of ``tokens`` that is not a stop word (or none)."""
    return next(([t] for t in tokens if t not in STOP_WORDS), [])


def match_answer(prediction: str, golds: str | Iterable[str], question: str = "") -> tuple[float, str | None]:
    """``match`` of an extracted answer: (1.0 and the gold matched) or (0.0, None)."""
    answer = _tokens(prediction)
    if not answer or len(answer) > MATCH_MAX_TOKENS:
        return 0.0, None
    for gold in _as_golds(golds):
        span = _tokens(gold)
        if not span:
            continue
        if _exact_only(span):
            if answer == span:
                return 1.0, gold
            continue
        at = _has_span(answer, span)
        if at < 0:
            continue
        rest = answer[:at] + answer[at + len(span) :]
        if any(m in rest for m in other_options(question, gold)):
            continue  # names another option of the comparison too
        return 1.0, gold
    return 0.0, None


def answer_scores(answer: str | None, golds: str | Iterable[str], question: str = "", *, extract: bool = True) -> dict[str, Any]:
    """Every deterministic score of one answer: ``prediction`` (the answer as graded),
    ``em``, ``f1``, ``match`` and ``matched`` (the gold that did best, or None)."""
    gold_list = _as_golds(golds)
    short = extract_short_answer(answer or "") if extract else (answer or "")
    pred = normalize_answer(short)
    em_gold = next((g for g in gold_list if pred == normalize_answer(g)), None)
    f1, f1_gold = 0.0, None
    for g in gold_list:
        value = _f1(short, g)
        if value > f1:
            f1, f1_gold = value, g
    match, match_gold = match_answer(short, gold_list, question)
    return {
        "prediction": short,
        "em": 1.0 if em_gold is not None else 0.0,
        "f1": f1,
        "match": match,
        "matched": em_gold or match_gold or f1_gold,
    }


# ----------------------------------------------------------------------------- the judge


class JudgeConfig(BaseModel):
    """``grading.judge`` of a pool file: a pool agent by name, or an endpoint with a price."""

    model_config = ConfigDict(extra="forbid")
    agent: str | None = None
    endpoint: Endpoint | None = None
    price: Price | None = None
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=3, ge=0, le=20)
    max_tokens: int = Field(default=8, gt=0, le=4096)

    @model_validator(mode="after")
    def _one_judge(self) -> JudgeConfig:
        if (self.agent is None) == (self.endpoint is None):
            raise ValueError("give exactly one of 'agent' (a pool agent's name) or 'endpoint' (with a price)")
        if self.endpoint is not None and self.price is None:
            raise ValueError("a judge endpoint needs its price: {input: ..., output: ...} in dollars per million tokens")
        return self


class GradingConfig(BaseModel):
    """The ``grading:`` section of a pool file."""

    model_config = ConfigDict(extra="forbid")
    rule: str | None = None
    judge: JudgeConfig | None = None

    @classmethod
    def from_pool(cls, section: Any, source: str = "<pool>") -> GradingConfig:
        if section is None or section == {}:
            return cls()
        if isinstance(section, str):  # "grading: em"
            section = {"rule": section}
        if not isinstance(section, dict):
            raise ConfigError(f"{source}: grading: expected a mapping (rule, judge) or a rule name, got {section!r}")
        try:
            cfg = cls.model_validate(section)
        except ValidationError as exc:
            raise ConfigError(validation_message(source, exc, section).replace(f"{source}: ", f"{source}: grading.")) from None
        if cfg.rule is not None:
            GradeRule.parse(cfg.rule, f"{source}: grading.rule")
        return cfg


def verdict_key(question: str, answer: str, golds: Iterable[str], judge: str) -> str:
    """The cache key of a verdict: a hash of (question, answer, golds, judge)."""
    blob = json.dumps([question, answer, list(golds), judge], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class VerdictCache:
    """Judge verdicts by `verdict_key`, appended to a JSON Lines file (or kept in memory)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self._verdicts: dict[str, dict[str, Any]] = {}
        if self.path is not None:
            for rec in read_jsonl(self.path):
                if isinstance(rec.get("key"), str):
                    self._verdicts[rec["key"]] = rec
        self._writer: JsonlWriter | None = None

    def __len__(self) -> int:
        return len(self._verdicts)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._verdicts.get(key)

    def put(self, key: str, record: dict[str, Any]) -> None:
        rec = {"key": key, **record}
        self._verdicts[key] = rec
        if self.path is not None:
            if self._writer is None:
                self._writer = JsonlWriter(self.path, fsync=False)
            self._writer.write(rec)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class Judge:
    """An LLM asked whether an answer is correct; verdicts cached (see `VerdictCache`).

    ``agent`` is anything with the pool agents' async ``chat`` (calls are made with
    phase "judge"); ``name`` identifies the judge in the cache key. A call that fails
    gives the verdict None with ``judge_error`` and is not cached, so a later grade asks
    again; a reply that is neither yes nor no is recorded (``judge_reply``) and cached.
    """

    def __init__(self, agent: ChatAgent, name: str, cache: VerdictCache | None = None, *, max_tokens: int = 8):
        self.agent = agent
        self.name = name
        self.cache = cache if cache is not None else VerdictCache()
        self.max_tokens = max_tokens
        self.calls = 0
        self.owns_client = False  # a judge endpoint of its own: its client is closed with it

    async def verdict(self, question: str, answer: str, golds: Iterable[str]) -> dict[str, Any]:
        """``{"judge": True | False | None, "judge_reply": ...}`` or, where the call
        failed, ``{"judge": None, "judge_error": ...}``."""
        gold_list = _as_golds(golds)
        if not answer.strip():
            return {"judge": False, "judge_reply": "(empty answer: not asked)"}
        key = verdict_key(question, answer, gold_list, self.name)
        hit = self.cache.get(key)
        if hit is not None:
            return {"judge": hit.get("judge"), "judge_reply": hit.get("judge_reply", "")}
        prompt = judge_prompt(question, answer, gold_list)
        self.calls += 1
        try:
            completion = await self.agent.chat(
                [{"role": "user", "content": prompt}], phase="judge", max_tokens=self.max_tokens, temperature=0.0
            )
        except Exception as exc:  # a failing judge is recorded on the grade; the run goes on
            return {"judge": None, "judge_error": f"{type(exc).__name__}: {exc}"[:300]}
        reply = (getattr(completion, "text", "") or "").strip()
        out = {"judge": parse_yes_no(reply), "judge_reply": reply[:200]}
        self.cache.put(key, out)
        return out

    async def close(self) -> None:
        self.cache.close()
        client = getattr(self.agent, "client", None)
        if self.owns_client and client is not None:
            await client.close()


def make_judge(config: JudgeConfig, pool: Any, cache_path: str | Path | None, source: str = "<pool>") -> Judge:
    """The judge a pool file names: one of ``pool``'s agents, or an endpoint of its own
    (booked in the pool's ledger as agent "judge")."""
    cache = VerdictCache(cache_path)
    if config.agent is not None:
        try:
            agent = pool[config.agent]
        except KeyError:
            names = ", ".join(getattr(pool, "names", []))
            raise ConfigError(f"{source}: grading.judge.agent: no agent named '{config.agent}' in the pool ({names})") from None
        model = agent.config.model or (agent.config.endpoint.model if agent.config.endpoint else "")
        return Judge(agent, f"agent:{config.agent}:{model}", cache, max_tokens=config.max_tokens)
    from sale.config import AgentConfig
    from sale.llm.client import ChatClient
    from sale.llm.pool import Agent

    ep = config.endpoint
    key = None
    if ep.api_key_env:
        key = os.environ.get(ep.api_key_env)
        if key is None:
            raise ConfigError(f"{source}: grading.judge.endpoint.api_key_env: environment variable {ep.api_key_env} is not set")
    agent_config = AgentConfig(
        name="judge", endpoint=ep, price=config.price, generation=Generation(max_tokens=config.max_tokens),
        timeout_s=config.timeout_s, max_retries=config.max_retries,
    )  # fmt: skip
    client = ChatClient(ep.base_url, ep.model, api_key=key, agent="judge", timeout_s=config.timeout_s,
                        max_retries=config.max_retries)  # fmt: skip
    agent = Agent(agent_config, client, pool.ledger)
    judge = Judge(agent, f"endpoint:{ep.base_url}:{ep.model}", cache, max_tokens=config.max_tokens)
    judge.owns_client = True
    return judge


# ----------------------------------------------------------------------------- grading


def golds_of(task: Any) -> list[str]:
    """A search task's gold answers (the answer, then its aliases); ConfigError if malformed."""
    golds = (task.grading or {}).get("answers")
    if isinstance(golds, str):
        golds = [golds]
    if not golds or not isinstance(golds, list) or not all(isinstance(g, str) for g in golds):
        raise TaskFileError(
            f"task {task.id}: grading.answers must be a non-empty list of strings "
            f"(the answer, then its aliases), got {golds!r}"
        )
    return golds


async def grade_short_answer(
    answer: str | None, golds: list[str], question: str, rule: GradeRule, judge: Judge | None = None,
) -> Grade:
    """Score ``answer`` every deterministic way, ask the judge where ``rule`` is judge,
    and pass it by ``rule``. ``detail`` holds ``em``, ``f1``, ``match``, ``judge`` (where
    asked), ``rule``, ``prediction``, ``matched``, ``golds`` and ``question``."""
    detail = answer_scores(answer, golds, question)
    if rule.needs_judge:
        if judge is None:
            raise ConfigError(
                "grade rule 'judge' needs a judge: name one in the pool file, "
                "grading: {judge: {agent: NAME}} or {judge: {endpoint: {...}, price: {...}}}"
            )
        detail.update(await judge.verdict(question, detail["prediction"], golds))
    detail.update({"rule": str(rule), "golds": list(golds), "question": question})
    return Grade(passed=rule.passes(detail), score=float(detail["f1"]), detail=detail)


def recorded(detail: Mapping[str, Any] | None) -> dict[str, Any]:
    """The part of a grade's detail a result line keeps: the scores and the rule
    (search grades); {} for graders that record no rule."""
    if not detail or "rule" not in detail:
        return {}
    keep = (*SCORE_KEYS, "judge", "judge_reply", "judge_error", "rule", "prediction", "matched", "golds", "question")
    return {k: detail[k] for k in keep if k in detail}


def configure_grading(
    envs: Mapping[str, Any], pool: Any, *, rule: Any = None, cache_dir: str | Path | None = None,
) -> Judge | None:
    """Set the search environment's rules from ``--grade`` (``rule``) and the pool
    file's ``grading:`` section, and give it the judge the pool names (verdicts cached
    in ``cache_dir``/judge-verdicts.jsonl); what neither names, the environment keeps.
    Returns the environment's judge (None without one)."""
    env = envs.get("search")
    source = getattr(pool, "source", "<pool>")
    cfg = GradingConfig.from_pool(getattr(pool.config, "grading", None), source)
    override = GradeRule.parse(rule, "--grade") if rule is not None else None
    if env is None:
        return None
    if override is not None:
        env.rule_override = override
    if cfg.rule:  # else the environment keeps its own (match unless it was built with another)
        env.rule = GradeRule.parse(cfg.rule, f"{source}: grading.rule")
    if cfg.judge is not None:
        cache = Path(cache_dir) / "judge-verdicts.jsonl" if cache_dir is not None else None
        env.judge = make_judge(cfg.judge, pool, cache, source)
    elif (getattr(env, "rule_override", None) or env.rule).needs_judge and getattr(env, "judge", None) is None:
        raise ConfigError(f"{source}: grade rule 'judge' needs grading.judge in the pool file ({{agent: NAME}} or an endpoint)")
    return getattr(env, "judge", None)


def search_scores(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The recorded grades (``grade``) of the search records among ``records``."""
    return [dict(r.get("grade") or {}) for r in records if r.get("domain") == "search" and (r.get("grade") or {}).get("rule")]


def pass_rates_by_rule(grades: list[Mapping[str, Any]], rules: Iterable[str] = ("em", "match", "f1:0.5")) -> dict[str, float]:
    """Share of ``grades`` that pass under each rule (judge too, where every grade has a verdict)."""
    names = list(rules)
    if grades and all("judge" in g for g in grades):
        names.append("judge")
    return {name: sum(GradeRule.parse(name).passes(g) for g in grades) / len(grades) for name in names} if grades else {}


def grading_summary(records: list[Mapping[str, Any]], envs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """summary.json's ``grading``: the rule search answers were passed by, and the
    search tasks' pass@1 under each rule, read from the recorded scores."""
    grades = search_scores(records)
    env = (envs or {}).get("search")
    rule = getattr(env, "rule_override", None) or getattr(env, "rule", None)
    used = sorted({g["rule"] for g in grades})
    return {
        "rule": str(rule) if rule is not None else (used[0] if len(used) == 1 else None),
        "rules_used": used,
        "search_tasks": len(grades),
        "search_pass_at_1_by_rule": pass_rates_by_rule(grades),
    }
