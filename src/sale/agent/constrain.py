"""Constrained replies: grammars and JSON schemas that let an agent write only usable answers.

Small models often write no usable action. Every serving stack they run on can constrain
decoding to a grammar or a JSON schema, so each executor step can ask the endpoint for
a reply that can only be one of the environment's actions:

- the text action format, on an endpoint that takes a GBNF ``grammar`` field (the
  llama.cpp servers of a pool, or an endpoint with ``structured_output: grammar``): one
  line of thought (optional, no colon, parenthesis or backtick, so that it never reads
  as an action), then exactly one action: a one-line call ``search("...")``, a fenced
  code block, a block of ``key: value`` lines, or the final answer. A search task's
  answer is a phrase of at most `ANSWER_WORDS` words; a coding task's answer is the
  line ``ANSWER:`` and a code block;
- on an endpoint with ``structured_output: json_schema`` (vLLM, SGLang, hosted APIs),
  either format: a JSON schema of the tool calls sent as ``response_format``; the reply
  is a ``{"name": ..., "arguments": ...}`` object, which the action parser reads.

``execution: constrain`` chooses: ``auto`` (the default) uses what the endpoint supports
and nothing where it supports neither, ``grammar`` and ``json_schema`` require it (a
clear error before any call otherwise), ``off`` sends no constraint. The bid and the
jury have grammars of their own here (`bid_grammar`, `jury_grammar`).

Answers that answer: a search answer that restates the question (most of the question's
words and no new name or number), or that copies a run of the executor's own
instructions ("and your final answer now."), is turned back once, asking for the entity
itself (`turn_back`); ``execution: turn_back_restated: false`` accepts it as it is, and so
does ``constrain: off``, which leaves the executor as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sale.envs.base import Tool
from sale.errors import ConfigError

MODES = ("auto", "grammar", "json_schema", "off")
#: What an endpoint can take: a GBNF ``grammar`` field, or ``response_format`` with a JSON schema.
SUPPORTS = ("grammar", "json_schema")
#: Words of a search task's final answer under a constraint.
ANSWER_WORDS = 12
#: Characters of the thought before an action, and of a one-line call's argument, at
#: most; both are also held to a quarter of the reply's token limit each, so that a reply
#: cut by that limit is cut inside its action, where it still reads as one (an answer
#: line, an open code block), never inside the thought or a call.
THOUGHT_CHARS = 240
ARGUMENT_CHARS = 200
SUBMIT = "submit"  # the native tool that ends a run (sale.agent.actions.SUBMIT_TOOL)


@dataclass(frozen=True)
class ConstrainSettings:
    """The executor's ``constrain`` and ``turn_back_restated`` settings (a pool file's
    ``execution`` section)."""

    mode: str = "auto"
    turn_back_restated: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"execution.constrain must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not isinstance(self.turn_back_restated, bool):
            raise ConfigError(f"execution.turn_back_restated must be true or false, got {self.turn_back_restated!r}")

    @classmethod
    def pop_from(cls, execution: dict[str, Any], where: str = "execution") -> ConstrainSettings:
        """The settings, taken out of an ``execution`` mapping (the rest are limits)."""
        mode = execution.pop("constrain", "auto")
        turn_back = execution.pop("turn_back_restated", True)
        try:
            return cls(mode=mode, turn_back_restated=turn_back)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    @property
    def turns_back(self) -> bool:
        """Whether restated answers are turned back: never with ``off``, the executor as before."""
        return self.turn_back_restated and self.mode != "off"

    def record(self) -> dict[str, Any]:
        """What a bench fingerprint keeps (a folder from before these settings: `OFF`)."""
        return {"mode": self.mode, "turn_back_restated": self.turns_back}


OFF = ConstrainSettings(mode="off", turn_back_restated=False)


def as_settings(value: ConstrainSettings | str | None) -> ConstrainSettings:
    if value is None:
        return ConstrainSettings()
    if isinstance(value, str):
        return ConstrainSettings(mode=value)
    return value


# ----------------------------------------------------------------------------- support


def endpoint_support(agent: Any) -> tuple[str, ...]:
    """What the agent's endpoint takes: ("grammar",) for a pool's llama.cpp server, the
    endpoint's declared ``structured_output`` otherwise, () when it declares nothing."""
    config = getattr(agent, "config", None)
    if config is None:
        return ()
    if getattr(config, "is_local", False):
        return ("grammar",)
    declared = getattr(getattr(config, "endpoint", None), "structured_output", None)
    return (declared,) if declared in SUPPORTS else ()


def choose(mode: str, agent: Any, action_format: str = "text") -> str | None:
    """The constraint used for ``agent`` under ``mode``: "grammar", "json_schema" or None.

    A grammar serves the text format only (llama.cpp refuses a grammar beside native
    tools); a JSON schema serves both. ``grammar`` or ``json_schema`` asked of an
    endpoint that does not declare it raises `ConfigError`.
    """
    if mode not in MODES:
        raise ConfigError(f"execution.constrain must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "off":
        return None
    support = endpoint_support(agent)
    name = getattr(agent, "name", "?")
    if mode == "grammar":
        if "grammar" not in support:
            raise ConfigError(
                f"execution.constrain: grammar: agent '{name}' has no endpoint that takes a grammar "
                "(a pool's local model does; a remote one needs endpoint.structured_output: grammar); "
                "use constrain: auto or off")
        if action_format != "text":
            raise ConfigError(f"execution.constrain: grammar: the '{action_format}' action format uses native "
                              "tool calls, which a grammar cannot constrain; use constrain: json_schema, auto or off")
        return "grammar"
    if mode == "json_schema":
        if "json_schema" not in support:
            raise ConfigError(
                f"execution.constrain: json_schema: agent '{name}' has no endpoint that takes a JSON schema "
                "(declare endpoint.structured_output: json_schema for vLLM, SGLang or a hosted API); "
                "use constrain: auto or off")
        return "json_schema"
    if "grammar" in support and action_format == "text":
        return "grammar"
    if "json_schema" in support:
        return "json_schema"
    return None


def request_fields(used: str | None, *, grammar: str | None = None, schema: dict[str, Any] | None = None,
                   name: str = "action") -> dict[str, Any]:  # fmt: skip
    """The request fields for a constraint: ``grammar`` (llama.cpp) or ``response_format``."""
    if used == "grammar" and grammar:
        return {"grammar": grammar}
    if used == "json_schema" and schema:
        return {"response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}}
    return {}


# ----------------------------------------------------------------------------- grammars


def literal(text: str) -> str:
    """A GBNF string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _params(tool: Tool) -> tuple[dict[str, Any], list[str]]:
    return tool.parameters.get("properties", {}) or {}, list(tool.parameters.get("required", []) or [])


def _single_string(tool: Tool) -> str | None:
    props, required = _params(tool)
    if len(required) == 1 and props.get(required[0], {}).get("type", "string") == "string":
        return required[0]
    return None


def _rule_name(tool: Tool, i: int) -> str:
    return f"tool{i}-" + re.sub(r"[^a-zA-Z0-9]+", "-", tool.name).strip("-").lower()


#: Every character that Python's str.splitlines breaks a line at, as GBNF escapes: none
#: may appear inside a line of the reply, or the parser would read two lines.
BREAKS = "\\n\\r\\x0B\\x0C\\x1C\\x1D\\x1E\\x85\\u2028\\u2029"

_VALUE_RULES = {
    "integer": '"-"? [0-9] [0-9]{0,8}',
    "number": '"-"? [0-9] [0-9]{0,8} ("." [0-9]{1,6})?',
    "boolean": '("true" | "false")',
}


def _code_tool(tool: Tool) -> bool:
    return "code" in _params(tool)[1]


def action_grammar(tools: list[Tool], task: Any, *, answer_words: int = ANSWER_WORDS,
                   max_tokens: int | None = None) -> str:  # fmt: skip
    """The GBNF grammar of one reply in the text format: an optional line of thought,
    then exactly one action of ``tools`` or the final answer (see the module doc).
    ``max_tokens``: the reply's token limit, which bounds the thought and a call."""
    thought_chars, arg_chars = THOUGHT_CHARS, ARGUMENT_CHARS
    if max_tokens:
        thought_chars = max(8, min(thought_chars, max_tokens // 4))
        arg_chars = max(8, min(arg_chars, max_tokens // 4))
    rules: list[str] = []
    actions: list[str] = []
    for i, tool in enumerate(tools):
        name = _rule_name(tool, i)
        single = _single_string(tool)
        if _code_tool(tool):
            rules.append(f"{name} ::= " + literal("```python\n") + " code " + literal("\n```"))
        elif single:
            rules.append(f"{name} ::= {literal(tool.name + '(' + chr(34))} arg {literal(chr(34) + ')')}")
        else:
            props, required = _params(tool)
            lines = []
            for key in required or list(props)[:1]:
                kind = props.get(key, {}).get("type", "string")
                value = _VALUE_RULES.get(kind, "text")
                lines.append(f"{literal(key + ': ')} {value} {literal(chr(10))}")
            rules.append(f"{name} ::= {literal('```' + tool.name + chr(10))} {' '.join(lines)} {literal('```')}")
        actions.append(name)
    coding = bool((getattr(task, "grading", None) or {}).get("entry_point")) or getattr(task, "domain", "") == "coding"
    if coding:
        rules.append("answer ::= " + literal("ANSWER:\n```python\n") + " code " + literal("\n```"))
    elif getattr(task, "domain", "") == "search":
        more = max(0, answer_words - 1)
        rules.append(f"answer ::= {literal('ANSWER: ')} word ({literal(' ')} word){{0,{more}}}")
    else:
        rules.append(f"answer ::= {literal('ANSWER: ')} [^ \\t{BREAKS}`*] text")
    actions.append("answer")
    head = [
        f"root ::= (thought {literal(chr(10))})? action",
        f"thought ::= [^{BREAKS}`:()] [^{BREAKS}`:()]{{0,{thought_chars - 1}}}",
        "action ::= " + " | ".join(actions),
        # a one-line call's argument, quoted: never empty, no quote, backslash or line break
        f'arg ::= [^"\\\\{BREAKS} ] [^"\\\\{BREAKS}]{{0,{arg_chars - 1}}}',
        # code: a first character that is not blank, then no three backticks in a row
        f"code ::= [^`{BREAKS}\\t ] ([^`] | \"`\" [^`] | \"``\" [^`])*",
        f"text ::= [^{BREAKS}`]*",
        f"word ::= [^ \\t{BREAKS}`*] [^ \\t{BREAKS}`]{{0,39}}",
    ]
    return "\n".join(head + rules) + "\n"


def action_schema(tools: list[Tool], task: Any, *, answer_words: int = ANSWER_WORDS) -> dict[str, Any]:
    """The JSON schema of one tool call ``{"name": ..., "arguments": {...}}``, the
    ``submit`` call with the final answer included; a search answer is bounded in words."""
    calls = []
    for tool in tools:
        params = dict(tool.parameters or {"type": "object", "properties": {}})
        params.setdefault("type", "object")
        calls.append({
            "type": "object",
            "properties": {"name": {"type": "string", "enum": [tool.name]}, "arguments": params},
            "required": ["name", "arguments"],
        })  # fmt: skip
    answer: dict[str, Any] = {"type": "string", "minLength": 1}
    if getattr(task, "domain", "") == "search" and not (getattr(task, "grading", None) or {}).get("entry_point"):
        answer["pattern"] = rf"^\S+( \S+){{0,{max(0, answer_words - 1)}}}$"
    calls.append({
        "type": "object",
        "properties": {
            "name": {"type": "string", "enum": [SUBMIT]},
            "arguments": {"type": "object", "properties": {"answer": answer}, "required": ["answer"]},
        },
        "required": ["name", "arguments"],
    })  # fmt: skip
    return {"anyOf": calls}


@dataclass(frozen=True)
class Constraint:
    """The constraint of an episode's steps: which kind was used, and the request fields."""

    mode: str
    used: str | None
    fields: dict[str, Any]
    # The fields once the episode has asked for the final answer (after a repeated
    # action, and for the last reply): the final answer is the only action allowed.
    answer_fields: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"mode": self.mode, "used": self.used}

    def request(self, answer_only: bool = False) -> dict[str, Any]:
        """The request fields of a step (``answer_only``: once the answer is asked for)."""
        return (self.answer_fields or self.fields) if answer_only else self.fields


def action_constraint(settings: ConstrainSettings | str | None, agent: Any, tools: list[Tool], task: Any,
                      action_format: str, max_tokens: int | None = None) -> Constraint:  # fmt: skip
    """The constraint for every step of one episode of ``agent`` (`ConfigError` when
    ``grammar`` or ``json_schema`` is asked of an endpoint without it)."""
    settings = as_settings(settings)
    used = choose(settings.mode, agent, action_format)
    if used == "grammar":
        fields = request_fields(used, grammar=action_grammar(tools, task, max_tokens=max_tokens))
        answer = request_fields(used, grammar=action_grammar([], task, max_tokens=max_tokens))
    elif used == "json_schema":
        fields = request_fields(used, schema=action_schema(tools, task))
        answer = request_fields(used, schema=action_schema([], task))
    else:
        fields = answer = {}
    return Constraint(settings.mode, used, fields, answer)


def bid_grammar(max_words: int) -> str:
    """A plan of at most ``max_words`` words, in one or a few lines, with no code: no
    backticks, no line that opens like code."""
    more = max(0, max_words - 1)
    return (
        f"root ::= word (sep word){{0,{more}}}\n"
        'sep ::= " " | "\\n"\n'
        "word ::= [^ \\t\\n`{}<>=] [^ \\t\\n`{}<>=]{0,29}\n"
    )


def auction_fields(mode: str, agent: Any, grammar: str) -> dict[str, Any]:
    """The request fields of a bid or jury call under the auction's ``constrain``
    setting: the grammar where ``mode`` is "auto" and the endpoint takes one."""
    return {"extra": {"grammar": grammar}} if mode == "auto" and "grammar" in endpoint_support(agent) else {}


def jury_grammar(high: int = 5) -> str:
    """The jury's answer: ``SCORE: n`` with n from 0 to ``high``."""
    return f'root ::= "SCORE: " [0-{high}]\n'


def batched_jury_grammar(n_bids: int, high: int = 5) -> str:
    """The batched jury's answer: one line ``BID k: n`` for each of ``n_bids`` plans, in order."""
    lines = " ".join(f'"BID {k}: " [0-{high}] "\\n"' for k in range(1, n_bids + 1))
    return f"root ::= {lines}\n"


# ----------------------------------------------------------------------------- answers

_WORD = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?")
#: Words that carry no topic: a restated question shares them with any text.
STOPWORDS = frozenset("""
a an the of in on at to for from by with and or but as is are was were be been being it its this that these
those which who whom whose what when where why how did do does done has have had not no yes than then there
their they them he she his her him we you your i my me our us one any all some much many more most can could
would should will shall may might must into onto over under about after before between during also so such
same both each either neither
""".split())  # fmt: skip

TURN_BACK = ("Your answer restates the question. The question asks for one thing: a name, a place, a date, "
             "a number, or yes or no. Reply with ANSWER: and that only.")  # fmt: skip


def _words(text: str) -> list[str]:
    return _WORD.findall(text or "")


def _stem(word: str) -> str:
    w = word.lower()
    if w.endswith("'s"):
        w = w[:-2]
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


def restates_question(answer: str, question: str, *, share: float = 0.5) -> bool:
    """Whether ``answer`` restates ``question`` instead of answering it: it holds at least
    ``share`` of the question's topic words and no new entity (a capitalised word or a
    number that the question does not hold). A short answer naming one of the
    question's entities ("Which is older, A or B?" "A") holds too small a share."""
    q_words = {_stem(w) for w in _words(question) if w.lower() not in STOPWORDS}
    if len(q_words) < 3:
        return False
    a_raw = [w for w in _words(answer) if w.lower() not in STOPWORDS]
    if not a_raw:
        return False
    a_words = {_stem(w) for w in a_raw}
    new_entity = any(_stem(w) not in q_words and (w[0].isupper() or any(ch.isdigit() for ch in w)) for w in a_raw)
    if new_entity:
        return False
    return len(a_words & q_words) / len(q_words) >= share


def question_of(task: Any) -> str:
    """The question of a search task (its ``metadata.question`` when the loader kept it)."""
    meta = getattr(task, "metadata", None) or {}
    question = meta.get("question") if isinstance(meta, dict) else None
    return question if isinstance(question, str) and question.strip() else str(getattr(task, "prompt", ""))


TURN_BACK_COPIED = ("Your answer copies words of the instructions, not the answer. The question asks for one "
                    "thing: a name, a place, a date, a number, or yes or no. Reply with ANSWER: and that only.")  # fmt: skip


def _plain(text: str) -> str:
    return " ".join(w.lower() for w in _words(text))


def copies_instructions(answer: str, instructions: str, *, min_words: int = 3) -> bool:
    """Whether ``answer`` is a run of at least ``min_words`` words copied from
    ``instructions`` (the executor's own prompt text, never the task or a tool's
    output): small models answer with the tail of the prompt ("and your final answer
    now.")."""
    plain = _plain(answer)
    return len(plain.split()) >= min_words and f" {plain} " in f" {_plain(instructions)} "


def turn_back(task: Any, answer: str | None, instructions: str = "") -> str | None:
    """The message that turns back a search task's answer that restates its question
    or copies ``instructions`` (see `copies_instructions`), or None."""
    if answer is None or getattr(task, "domain", "") != "search" or (getattr(task, "grading", None) or {}).get("entry_point"):
        return None
    if instructions and copies_instructions(answer, instructions):
        return TURN_BACK_COPIED
    return TURN_BACK if restates_question(answer, question_of(task)) else None
