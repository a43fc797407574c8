"""Reading an agent's reply as one action: a tool call or a final answer.

Two action formats, for any `Environment`'s tools:

- ``"text"`` (the default, easy for small models). The first action in a reply counts;
  the rest is ignored. A tool call is any of::

      search(Eiffel Tower engineer)          a call, as environments describe tools
      search("Eiffel Tower", k=3)            Python literals and keywords also work
      search: Eiffel Tower engineer          a line naming the tool
      ```search                              a fenced block whose info string names
      Eiffel Tower engineer                  the tool
      ```

  A call's text, a line's text or a block's body goes to the tool's one required
  argument; a tool with several arguments takes ``key: value`` lines or a JSON object
  in a block. A tool with a required ``code`` argument also answers to ```python.
  The final answer is a line ``ANSWER: ...`` (for code: the line ``ANSWER:`` and a
  fenced block below it), ``answer(...)`` or an ```answer block. `PROMPT_STYLE`
  chooses which form prompts show.
- ``"tools"``: the endpoint's native tool calls (OpenAI JSON schema from each
  `Tool.parameters`) plus a ``submit`` tool taking ``answer``.

A reply that holds no usable action raises `MalformedAction`, whose message is the
short correction shown to the agent.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

from sale.envs.base import Tool
from sale.errors import ConfigError, SaleError
from sale.llm.client import ToolCall

#: Info strings of a fenced block that holds the final answer.
ANSWER_LABELS = ("answer", "submit", "final", "final_answer")
#: The native tool that ends the run in the "tools" format.
SUBMIT_TOOL = "submit"
#: Extra names of a tool that takes ``code`` (a model writes ```python by habit).
CODE_ALIASES = ("python", "py", "python3")
#: How prompts and corrections show a tool that takes one short string (not code):
#: "calls" (``search(<query>)``, the notation environments use to describe their tools),
#: "lines" (``search: <query>``) or "blocks" (a fenced block). Code and several-argument
#: tools are always shown as blocks. Every form is always parsed.
PROMPT_STYLE = "calls"
#: Stop sequence for the text format: generation ends at a fence followed by a blank
#: line, which closes a block (prose follows it) but never opens one (code follows an
#: opening fence at once, labelled or not).
TEXT_STOP = ["```\n\n"]

_FENCE_OPEN = re.compile(r"^\s*(`{3,})[ \t]*([A-Za-z_][\w.\-]*)?:?[ \t]*(.*?)\s*$")
_FENCE_CLOSE = re.compile(r"^\s*`{3,}\s*$")
_LINE_CALL = re.compile(r"^[\s*\-`>]*([A-Za-z_][\w\-]*)(?:[*\s]*:(.*)|\s*\((.*)\)`?)\s*$")
_TRAILING_CALL = re.compile(r"^.*?[.:!?]\s+`?([A-Za-z_][\w\-]*\s*\(.*\))`?\s*$")  # "Thought. search(x)"
_ANSWER_CALL = re.compile(r"^[\s*\-`>]*(?:answer|submit|final_answer)\((.*)\)`?\s*$", re.IGNORECASE)
_ANSWER_LINE = re.compile(r"^\W*(?:final\s+)?answer\W*?:\s*(.*)$", re.IGNORECASE)


class MalformedAction(SaleError):
    """A reply holds no usable action; the message is the correction for the agent."""


@dataclass
class Action:
    """One parsed action.

    ``kind`` is "tool" (``tool`` and ``arguments`` set) or "answer" (``answer`` set).
    ``text`` is the reply up to the end of this action, with a closing fence restored
    when a stop sequence cut it: what the conversation keeps of the reply.
    ``call_id`` is the native tool call's id ("tools" format only).
    """

    kind: str
    tool: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    answer: str | None = None
    text: str = ""
    call_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The action for the trajectory file."""
        if self.kind == "answer":
            return {"kind": "answer", "answer": self.answer}
        return {"kind": "tool", "tool": self.tool, "arguments": self.arguments}


# ----------------------------------------------------------------------------- tools


def _code_param(tool: Tool) -> bool:
    return "code" in tool.parameters.get("required", [])


def tool_names(tools: list[Tool]) -> dict[str, Tool]:
    """Every name a fenced block may use for each tool, lowercase (aliases included)."""
    names: dict[str, Tool] = {}
    for tool in tools:
        names[tool.name.lower()] = tool
        if _code_param(tool):
            for alias in CODE_ALIASES:
                names.setdefault(alias, tool)
    return names


def block_label(tool: Tool) -> str:
    """The info string the prompt shows for a tool (``python`` for code tools)."""
    return CODE_ALIASES[0] if _code_param(tool) else tool.name


def _single_text_param(tool: Tool) -> str | None:
    """The name of the tool's one required string argument, if it has exactly one."""
    props = tool.parameters.get("properties", {})
    required = tool.parameters.get("required", [])
    if len(required) == 1 and props.get(required[0], {}).get("type", "string") == "string":
        return required[0]
    return None


def _style(style: str | None) -> str:
    style = style or PROMPT_STYLE
    if style not in ("calls", "lines", "blocks"):
        raise ConfigError(f"sale.agent.actions.PROMPT_STYLE must be calls, lines or blocks, got {style!r}")
    return style


def _one_line_param(tool: Tool, style: str) -> str | None:
    """The parameter of a tool written on one line in ``style`` (``search(<query>)``),
    or None when the tool is written as a fenced block (code, several parameters, or
    the "blocks" style)."""
    single = _single_text_param(tool)
    return single if single and single != "code" and style != "blocks" else None


def short_form(tool: Tool, style: str | None = None) -> str:
    """How prompts and corrections name a tool's action: search(...), 'search: ...' or ```python."""
    style = _style(style)
    if _one_line_param(tool, style):
        return f"{tool.name}(...)" if style == "calls" else f"'{tool.name}: ...'"
    return f"```{block_label(tool)}"


def answer_form(style: str | None = None) -> str:
    """How the prompt shows the final answer."""
    if _style(style) == "blocks":
        return ("```answer\n<your final answer>\n```\n  (Your final answer, which ends the task. "
                "For an answer that is code, put the code in the answer block.)")
    return ("ANSWER: <your final answer>\n  (Your final answer, which ends the task. "
            "For an answer that is code, write the line ANSWER: and put the code block right below it.)")


def example_reply(tools: list[Tool], style: str | None = None) -> str:
    """A short example reply (a thought, then a call of the first tool) for the prompt."""
    if not tools:
        return "I know the answer.\n" + answer_form(style).splitlines()[0]
    tool, single = tools[0], _single_text_param(tools[0])
    if single == "code":
        return "First I check my code on an example.\n```python\ndef add(a, b):\n    return a + b\nprint(add(2, 3))\n```"
    return f"First I take the first step of my plan.\n{_usage(tool, _style(style))}"


def _usage(tool: Tool, style: str) -> str:
    """How to write a call of ``tool`` in the text format."""
    one_line = _one_line_param(tool, style)
    if one_line:
        return f"{tool.name}(<{one_line}>)" if style == "calls" else f"{tool.name}: <{one_line}>"
    single = _single_text_param(tool)
    if single:
        return f"```{block_label(tool)}\n<{single}>\n```"
    props = tool.parameters.get("properties", {})
    return f"```{block_label(tool)}\n" + "\n".join(f"{name}: <{name}>" for name in props) + "\n```"


def describe_text_tools(tools: list[Tool], style: str | None = None) -> str:
    """The tool list of the text format's prompt: how to call each tool, and what it does.
    The call comes first (a one-line call on its line, a block before the line that
    says what it does): small models copy the first line of an entry as their reply,
    which must then be an action, not a description."""
    style = _style(style)
    parts = []
    for tool in tools:
        usage, description = _usage(tool, style), tool.description.strip()
        parts.append(f"- {usage}  {description}" if "\n" not in usage else f"{usage}\n  ({description})")
    return "\n".join(parts)


def tool_schemas(tools: list[Tool], answer_instructions: str = "") -> list[dict[str, Any]]:
    """OpenAI tools JSON for the environment's tools plus ``submit(answer)``."""
    schemas = [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in tools
    ]
    answer_doc = "The final answer. " + answer_instructions.strip()
    schemas.append({
        "type": "function",
        "function": {
            "name": SUBMIT_TOOL,
            "description": "Submit the final answer; this ends the task.",
            "parameters": {
                "type": "object",
                "properties": {"answer": {"type": "string", "description": answer_doc.strip()}},
                "required": ["answer"],
            },
        },
    })  # fmt: skip
    return schemas


# ----------------------------------------------------------------------------- arguments


def _coerce(tool: Tool, name: str, value: Any) -> Any:
    kind = tool.parameters.get("properties", {}).get(name, {}).get("type")
    try:
        if kind == "string" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if kind == "integer" and not isinstance(value, bool):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            return int(value) if isinstance(value, (int, str)) else _bad(tool, name, value, kind)
        if kind == "number" and not isinstance(value, bool):
            return float(value) if isinstance(value, (int, float, str)) else _bad(tool, name, value, kind)
        if kind == "boolean" and isinstance(value, str):
            if value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
                return value.strip().lower() in ("true", "yes", "1")
    except ValueError:
        _bad(tool, name, value, kind)
    if kind == "string" and not isinstance(value, str):
        _bad(tool, name, value, kind)
    return value


def _bad(tool: Tool, name: str, value: Any, kind: str) -> Any:
    raise MalformedAction(f"Tool '{tool.name}': argument '{name}' must be of type {kind}, got {value!r:.60}.")


def check_arguments(tool: Tool, arguments: dict[str, Any]) -> dict[str, Any]:
    """Keep the tool's declared arguments, coerce simple types, require the required ones."""
    props = tool.parameters.get("properties")
    args = {k: v for k, v in arguments.items() if props is None or k in props}
    missing = [name for name in tool.parameters.get("required", []) if name not in args]
    if missing:
        raise MalformedAction(f"Tool '{tool.name}' needs the argument(s): {', '.join(missing)}.")
    return {k: _coerce(tool, k, v) for k, v in args.items()}


def block_arguments(tool: Tool, body: str) -> dict[str, Any]:
    """The arguments of a fenced block's body.

    A JSON object or ``key: value`` lines whose keys are all the tool's own (and cover
    its required ones) are read as named arguments; otherwise the whole body is the one
    required string argument (stripped, except for code, which keeps its indentation).
    """
    props = tool.parameters.get("properties", {})
    required = tool.parameters.get("required", [])
    stripped = body.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and data and set(data) <= set(props) and set(required) <= set(data):
            return check_arguments(tool, data)
    lines = [line for line in stripped.splitlines() if line.strip()]
    pairs = [line.split(":", 1) for line in lines]
    if lines and all(len(p) == 2 and p[0].strip() in props for p in pairs):
        data = {k.strip(): v.strip() for k, v in pairs}
        if set(required) <= set(data):
            return check_arguments(tool, data)
    single = _single_text_param(tool)
    if single is None:
        keys = ", ".join(props) or "(none)"
        raise MalformedAction(f"Tool '{tool.name}' takes several arguments; write one 'key: value' line each ({keys}).")
    value = body.strip("\n").rstrip() if single == "code" else stripped
    if not value:
        raise MalformedAction(f"The {block_label(tool)} block is empty; put the {single} inside it.")
    return check_arguments(tool, {single: value})


# ----------------------------------------------------------------------------- parsing


def action_forms(tools: list[Tool], style: str | None = None) -> str:
    """The actions in short, for corrections and cues: "search(...), open(...), or ANSWER: ..."."""
    answer = "```answer" if _style(style) == "blocks" else "ANSWER: <your final answer>"
    return ", ".join([*(short_form(t, style) for t in tools), f"or {answer}"])


def _format_help(tools: list[Tool]) -> str:
    return f"Reply with exactly one action: {action_forms(tools)}."


def _block(lines: list[str], start: int) -> tuple[str, str, int, bool] | None:
    """The fenced block opening at ``lines[start]``: (label, body, closing line, closed)."""
    fence = _FENCE_OPEN.match(lines[start])
    if not fence:
        return None
    label, first = (fence.group(2) or "").lower(), fence.group(3)
    if first.endswith("```"):  # one line: ```search Eiffel Tower```
        return label, first.rstrip("`").strip(), start, True
    end = start + 1
    while end < len(lines) and not _FENCE_CLOSE.match(lines[end]):
        end += 1
    body = lines[start + 1 : end]
    return label, "\n".join([first, *body] if first else body), end, end < len(lines)


def _kept(lines: list[str], end: int, closed: bool) -> str:
    """The reply up to a block's closing fence, the fence restored when it was cut."""
    return "\n".join(lines[: end + 1]) if closed else "\n".join(lines) + "\n```"


def _line_call(line: str, tools: dict[str, Tool]) -> tuple[Tool, dict[str, Any]] | None:
    """A one-line tool call, ``search: Eiffel Tower`` or ``search("Eiffel Tower", k=3)``."""
    match = _LINE_CALL.match(line)
    if not match:
        trailing = _TRAILING_CALL.match(line)
        match = _LINE_CALL.match(trailing.group(1)) if trailing else None
    if not match or match.group(1).lower() not in tools:
        return None
    tool = tools[match.group(1).lower()]
    if match.group(2) is not None:
        value = match.group(2).strip("* \t")
        return (tool, block_arguments(tool, value)) if value else None
    inside = match.group(3).strip()
    try:
        call = ast.parse(f"f({inside})", mode="eval").body
        if not isinstance(call, ast.Call):  # e.g. "a) or (b"
            raise ValueError(inside)
        positional = [ast.literal_eval(a) for a in call.args]
        named = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):  # plain text, not literals
        return (tool, _loose_call(tool, inside)) if inside else None
    order = list(tool.parameters.get("properties", {}))
    if len(positional) > len(order):
        raise MalformedAction(f"Tool '{tool.name}' takes at most {len(order)} argument(s).")
    return tool, check_arguments(tool, {**dict(zip(order, positional)), **named})


def _loose_call(tool: Tool, inside: str) -> dict[str, Any]:
    """Arguments of ``search(Eiffel Tower, k=3)``: trailing ``name=value`` parts, then the text."""
    props = tool.parameters.get("properties", {})
    named: dict[str, Any] = {}
    parts = inside.split(",")
    while len(parts) > 1:
        key, eq, value = parts[-1].partition("=")
        if not eq or key.strip() not in props:
            break
        named[key.strip()] = value.strip().strip("\"'`")
        parts.pop()
    text = ",".join(parts).strip()
    single = _single_text_param(tool)
    key, eq, value = text.partition("=")
    if eq and key.strip() in props:  # search(query=Eiffel Tower)
        named[key.strip()] = value.strip().strip("\"'`")
    elif single and single not in named:
        named[single] = text.strip("\"'`")
    return check_arguments(tool, named)


def parse_text_action(text: str, tools: list[Tool]) -> Action:
    """The first action of a reply in the text format; `MalformedAction` if none.

    Scans line by line; the first of these wins:

    - a fenced block labelled with a tool name or alias: a tool call;
    - a fenced block labelled ``answer``: the answer;
    - a line ``ANSWER: x`` or ``answer(x)`` outside blocks: the answer is x, followed by
      the fenced block right below the line if there is one (when x is empty: that
      block's body, or else the rest of the reply);
    - a line ``<tool>: input`` or ``<tool>(arguments)``, or a sentence that ends in
      ``<tool>(arguments)``: a tool call.

    Blocks with other labels are skipped. A block left open at the end of the reply (a
    stop sequence cut its closing fence) runs to the end. Failing all of these, a JSON
    tool call written as text counts (``{"name": ..., "arguments": ...}``).
    """
    names = tool_names(tools)
    by_name = {t.name.lower(): t for t in tools}
    lines = (text or "").splitlines()
    skipped: list[str] = []
    i = 0
    while i < len(lines):
        block = _block(lines, i)
        if block:
            label, body, end, closed = block
            if label in ANSWER_LABELS:
                return Action("answer", answer=body.strip(), text=_kept(lines, end, closed))
            if label in names:
                tool = names[label]
                return Action("tool", tool=tool.name, arguments=block_arguments(tool, body), text=_kept(lines, end, closed))
            skipped.append(label or "(no label)")
            i = end + 1
            continue
        answer = _ANSWER_LINE.match(lines[i])
        if answer:
            value = answer.group(1).strip("* \t")
            if value.startswith("```"):  # "ANSWER: ```python": the block opens on this line
                label, body, end, closed = _block([value, *lines[i + 1 :]], 0)
                return Action("answer", answer=body.strip(), text=_kept(lines, i + end, closed))
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            block = _block(lines, j) if j < len(lines) else None
            if block and block[1].strip():  # a fenced block right below belongs to the answer
                kept = _kept(lines, block[2], block[3])
                fenced = kept.split("\n", j)[-1]
                return Action("answer", answer=f"{value}\n{fenced}" if value else block[1].strip(), text=kept)
            if value:
                return Action("answer", answer=value, text="\n".join(lines[: i + 1]))
            rest = "\n".join(lines[j:]).strip()
            if rest:
                return Action("answer", answer=rest, text=text)
        answer = _ANSWER_CALL.match(lines[i])
        if answer and answer.group(1).strip("\"'` "):
            return Action("answer", answer=answer.group(1).strip("\"'` "), text="\n".join(lines[: i + 1]))
        call = _line_call(lines[i], by_name)
        if call:
            return Action("tool", tool=call[0].name, arguments=call[1], text="\n".join(lines[: i + 1]))
        i += 1
    found = _json_tool_call(text or "")
    if found is not None and (found[0].name == SUBMIT_TOOL or found[0].name in {t.name for t in tools}):
        action = parse_tool_call(found[0], tools)
        action.call_id, action.text = None, text[: found[1]]
        return action
    if skipped:
        raise MalformedAction(f"```{skipped[0]} is not a tool here. " + _format_help(tools))
    raise MalformedAction("No action found. " + _format_help(tools))


def _json_tool_call(text: str) -> tuple[ToolCall, int] | None:
    """The first ``{"name": ..., "arguments": {...}}`` object in a reply's text, and its end.

    Models trained for tool calling often write the call as text when the server does
    not turn it into a native one (``<tool_call>`` tags, doubled braces and all).
    """
    decoder = json.JSONDecoder()
    for match in re.finditer(r'\{\s*"name"\s*:', text):
        try:
            obj, end = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("name"), str):
            args = obj.get("arguments", obj.get("parameters", {}))
            return ToolCall(id="", name=obj["name"], arguments=args if isinstance(args, str) else json.dumps(args)), end
    return None


def parse_tool_call(call: ToolCall, tools: list[Tool]) -> Action:
    """A native tool call as an action; `MalformedAction` for unknown tools or bad JSON."""
    try:
        args = json.loads(call.arguments) if call.arguments.strip() else {}
    except json.JSONDecodeError as exc:
        raise MalformedAction(f"The arguments of '{call.name}' are not valid JSON ({exc.msg}).") from None
    if not isinstance(args, dict):
        raise MalformedAction(f"The arguments of '{call.name}' must be a JSON object.")
    if call.name == SUBMIT_TOOL:
        answer = args.get("answer")
        if not isinstance(answer, str) or not answer.strip():
            raise MalformedAction("submit needs a non-empty string 'answer'.")
        return Action("answer", answer=answer.strip(), call_id=call.id)
    by_name = {t.name: t for t in tools}
    if call.name not in by_name:
        known = ", ".join([*by_name, SUBMIT_TOOL])
        raise MalformedAction(f"There is no tool '{call.name}'. Tools: {known}.")
    return Action("tool", tool=call.name, arguments=check_arguments(by_name[call.name], args), call_id=call.id)
