"""The executor: the auction's winner works on its task with tools, following its plan.

`execute` runs one episode. The agent is told the task, the environment, its tools and
its own strategy ("Your plan: ..."), then replies one action at a time (see
`sale.agent.actions` for the formats); each tool's output comes back as the next
message, until the agent answers or a limit ends the run. The answer is graded by the
environment and the episode comes back as an `Outcome`; it never raises for a limit,
a malformed reply, a failing tool or a failing endpoint.

Limits end the loop by raising `_Ended` internally; the reason is recorded:
"submitted", "max_steps", "max_tokens", "max_dollars", "max_wall_s", "malformed",
"repeated" (a coding agent ran the same code that defines the task's function again:
it has nothing more to try, and that code is graded), "context_full" (the conversation
grew past the model's context), "llm_error: ..." or "budget: ...".

When the task is a coding task (its grading names an ``entry_point``) and the run ends
without an answer, or with an answer that does not define that function (small models
often answer with a sentence about the code they ran), the last code the agent ran that
defines the function is graded as its answer (``answer_source`` "last_code"): the agent
wrote and tried the solution but did not hand it in. Pass ``grade_last_code=False`` to
count such runs as failures.

On such a task the loop also refuses a stub, runs the task's visible examples against
each complete definition, and hands in the definition that passed most of them
(``answer_source`` "best_code" when that is not the last one): see
`sale.agent.candidates`. ``plan`` places the strategy in the prompt (after the task,
before it, or nowhere); `sale.agent.modes` adds the direct mode beside this loop.

With a ``trajectory_path``, every step is appended to a JSON Lines file as it happens:
a header line (task, agent, strategy, limits, the opening messages), one line per step,
and the outcome last.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from string import Template
from typing import Any

from sale import prompts
from sale.agent.actions import (
    ANSWER_LABELS, SUBMIT_TOOL, TEXT_STOP, Action, MalformedAction, block_label,
    answer_form, describe_text_tools, example_reply, parse_text_action, parse_tool_call, tool_schemas,
)  # fmt: skip
from sale.agent.constrain import (
    TURN_BACK,
    TURN_BACK_COPIED,
    ConstrainSettings,
    Constraint,
    action_constraint,
    question_of,
    turn_back,
)
from sale.agent.candidates import CodingChecks
from sale.envs.base import Environment, Tool
from sale.errors import BudgetExceeded, ConfigError
from sale.llm.client import Completion, ContextOverflow, LLMError, ToolCall
from sale.llm.ledger import ledger_tags
from sale.workloads.task import Task

log = logging.getLogger(__name__)

ACTION_FORMATS = ("text", "tools")
#: Where the winner's plan goes in the task prompt: before the task, after it (the
#: paper's executor, the default), or nowhere.
PLAN_POSITIONS = ("before", "after", "none")
#: The note after the observation that precedes the agent's last reply.
LAST_REPLY = {
    "text": "This is your last reply: write ANSWER: and your final answer now.",
    "tools": f"This is your last reply: call {SUBMIT_TOOL} with your final answer now.",
}
#: The correction for an action identical to one already run. Small models repeat an
#: action when they do not know what comes next (often with the answer in its output);
#: measured on the 1.5B model, a correction that also offered other actions was answered
#: by the same action again, one that asks for the answer got an answer.
REPEATED = {
    "text": "You already ran exactly this action; its output is above. Write ANSWER: and your final answer now.",
    "tools": f"You already made exactly this call; its output is above. Call {SUBMIT_TOOL} with your final answer now.",
}


@dataclass(frozen=True)
class Limits:
    """What bounds one episode. Each limit that ends a run is named in `Outcome.reason`.

    - ``max_steps``: replies (LLM calls) of the agent.
    - ``max_tokens``: input plus output tokens over the episode.
    - ``max_dollars``: dollars over the episode (None: no limit).
    - ``max_wall_s``: wall-clock seconds of the loop, tool runs included.
    - ``max_malformed``: consecutive replies without a usable action.
    - ``max_output_tokens``: tokens the agent may write per reply.
    - ``max_observation_chars``: characters of a tool's output shown to the agent (the
      middle of longer output is cut); this one shapes the run, it does not end it.
    """

    max_steps: int = 6
    max_tokens: int = 24_000
    max_dollars: float | None = None
    max_wall_s: float = 300.0
    max_malformed: int = 2
    max_output_tokens: int = 512
    max_observation_chars: int = 2000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name == "max_dollars":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"executor Limits.{f.name} must be a positive number, got {value!r}")

    @classmethod
    def from_mapping(cls, data: dict[str, Any], where: str = "execution") -> Limits:
        """Limits from a config section (e.g. a pool file's ``execution``); unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in set(data) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown limit(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            return cls(**data)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


@dataclass
class Outcome:
    """How one episode ended. ``grade`` is the environment's grade detail.

    ``answer_source`` is "submitted", "direct" (the direct answer a coding or search
    loop starts from, handed in as it was), "last_code" or "best_code" (see the module
    docstring) or None (nothing was graded). ``malformed`` counts every malformed reply of the run.
    """

    task_id: str
    agent: str
    answer: str | None
    passed: bool
    score: float
    reason: str
    steps: int
    input_tokens: int
    output_tokens: int
    dollars: float
    wall_s: float
    trajectory: str | None = None
    grade: dict[str, Any] = field(default_factory=dict)
    answer_source: str | None = None
    malformed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Ended(Exception):
    """Ends the loop; ``reason`` goes into the outcome."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def load_prompt(name: str) -> Template:
    """A prompt template from `sale.prompts` ($name placeholders)."""
    return Template(prompts.text(name))


def truncate(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters: the head and tail kept, the middle marked."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return f"{text[:head]}\n... [{len(text) - head - tail} characters cut] ...\n{text[-tail:]}"


def opening_messages(env: Environment, task: Task, strategy: str, tools: list[Tool], limits: Limits, action_format: str,
                     plan: str = "after") -> list[dict[str, Any]]:  # fmt: skip
    """The system prompt (format, tools, an example reply) and the user prompt
    (environment, task, "Your plan: <strategy>" after the task, before it or not at
    all as ``plan`` says, a cue to act; for a coding task with an entry point the cue
    asks for a complete implementation first)."""
    if plan not in PLAN_POSITIONS:
        raise ConfigError(f"plan must be one of {', '.join(PLAN_POSITIONS)}, got {plan!r}")
    if action_format == "text":
        system = load_prompt("execute_system_text.txt").substitute(
            tools=describe_text_tools(tools), answer=answer_form(), example=example_reply(tools),
            max_steps=limits.max_steps)
    else:
        system = load_prompt("execute_system_tools.txt").substitute(max_steps=limits.max_steps)
    environment = env.describe(task).strip()
    instructions = env.answer_instructions(task).strip()
    shown = f"Your plan: {strategy.strip()}\n\n" if strategy.strip() and plan != "none" else ""
    start = "Follow the plan. " if shown else ""
    entry = task.grading.get("entry_point") if isinstance(task.grading, dict) else None
    code_tool = _code_tool(tools)
    if task.domain == "coding" and isinstance(entry, str) and entry and code_tool is not None:
        how = f"a ```{block_label(code_tool)} block" if action_format == "text" else code_tool.name
        start += load_prompt("execute_coding_start.txt").substitute(entry_point=entry, tool=how)
    user = load_prompt("execute_task.txt").substitute(
        environment=environment,
        task=task.prompt.strip(),
        plan_before=shown if plan == "before" else "",
        plan=shown if plan == "after" else "",
        # Not said twice: small models copy instructions near the end of the prompt as
        # their answer.
        answer_instructions="" if instructions in environment else f"Your final answer: {instructions}\n\n",
        start=start,
    )
    return [{"role": "system", "content": system.strip()}, {"role": "user", "content": user.strip()}]


class _Trajectory:
    """A JSON Lines file written line by line, each line flushed."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class _Episode:
    """The state of one run: conversation, counters, the answer."""

    def __init__(self, agent: Any, env: Environment, task: Task, tools: list[Tool], limits: Limits,
                 action_format: str, phase: str, messages: list[dict[str, Any]], trajectory: _Trajectory | None,
                 constraint: Constraint | None = None, turn_back_restated: bool = False,
                 checks: CodingChecks | None = None, opening: list[dict[str, Any]] | None = None):  # fmt: skip
        self.agent, self.env, self.task, self.tools = agent, env, task, tools
        self.constraint, self.turn_back_restated = constraint, turn_back_restated
        self.turned_back: set[str] = set()  # why answers were turned back ("restated", "copied")
        self.limits, self.format, self.phase = limits, action_format, phase
        self.messages = messages
        self.trajectory = trajectory
        self.by_name = {t.name: t for t in tools}
        self.schemas = tool_schemas(tools, env.answer_instructions(task)) if action_format == "tools" else None
        self.started = time.monotonic()
        self.steps = self.input_tokens = self.output_tokens = 0
        self.dollars = 0.0
        self.malformed = self.malformed_run = 0
        self.answer: str | None = None
        self.last_code: str | None = None
        self.done: set[str] = set()  # actions already run, to catch a model repeating itself
        self.pending: dict[str, Any] | None = None  # the step under way, for the trajectory
        self.checks = checks  # a coding task's checks: stubs refused, examples run, best candidate kept
        self.answer_only = False  # the final answer was asked for: a constraint allows only it
        self.opening = opening  # the prompt of the direct answer the loop starts from (coding, search)
        self.handed_direct = False  # that direct answer was handed in as it was

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def check_limits(self) -> None:
        lim = self.limits
        if self.steps >= lim.max_steps:
            raise _Ended("max_steps")
        if self.input_tokens + self.output_tokens >= lim.max_tokens:
            raise _Ended("max_tokens")
        if lim.max_dollars is not None and self.dollars >= lim.max_dollars:
            raise _Ended("max_dollars")
        if self.elapsed() >= lim.max_wall_s:
            raise _Ended("max_wall_s")

    async def run(self) -> None:
        """Step until an answer or a limit raises `_Ended`."""
        while True:
            self.check_limits()
            try:
                async with asyncio.timeout(self.limits.max_wall_s - self.elapsed()):
                    if self.opening is None:
                        await self.step()
                    elif self.checks is not None:
                        await self.coding_start()
                    else:
                        await self.search_start()
            except TimeoutError:
                if self.pending is not None:
                    self.finish_step(observation=None, interrupted="max_wall_s")
                raise _Ended("max_wall_s") from None

    def reply_budget(self) -> int:
        lim = self.limits
        return max(1, min(lim.max_output_tokens, lim.max_tokens - self.input_tokens - self.output_tokens))

    def count(self, c: Completion, **extra: Any) -> None:
        """Count a reply as a step and open its trajectory record."""
        self.steps += 1
        self.input_tokens += c.input_tokens
        self.output_tokens += c.output_tokens
        self.dollars += c.dollars
        self.pending = {
            "type": "step", "step": self.steps, **extra, "text": c.text,
            "tool_calls": [asdict(tc) for tc in c.tool_calls] or None,
            "action": None, "malformed": None, "observation": None,
            "input_tokens": c.input_tokens, "output_tokens": c.output_tokens, "dollars": c.dollars,
        }  # fmt: skip

    async def coding_start(self) -> None:
        """The first step of a coding loop that starts from one direct answer.

        The agent is asked once for the whole solution (the direct mode's prompt). A
        complete definition that passes all the task's visible examples (or, where the
        task states none, that compiles) is handed in as it is: the loop then costs what
        the direct answer costs. Otherwise the loop goes on from it: the conversation
        shows the definition as the agent's first run, with its output and the
        examples' report. A reply without a complete definition leaves the loop to
        start as it would have.
        """
        prompt, self.opening = self.opening, None
        c: Completion = await self.agent.chat(prompt, phase=self.phase, max_tokens=self.reply_budget())
        self.count(c, start="direct")
        checks, tool = self.checks, _code_tool(self.tools)  # checks: set wherever an opening is (see execute)
        code = checks.code_of(c.text)
        if tool is None or not self.defines_entry(code) or checks.is_stub(code):
            self.finish_step(observation=None)
            return
        action = Action(kind="tool", tool=tool.name, arguments={"code": code},
                        text=f"```{block_label(tool)}\n{code}\n```", call_id="direct-1")  # fmt: skip
        self.pending["action"] = action.as_dict()
        report = ""
        if checks.examples:
            run = await checks.check(code, self.steps)
            self.pending["examples"] = {"passed": run.passed, "total": run.total}
            if run.all_passed:
                self.hand_in_direct(code)
            report = checks.report(run)
        elif _compiles(code):
            self.hand_in_direct(code)
        await self.show_first_run(c, action, tool, report)

    async def search_start(self) -> None:
        """The first step of a search loop that starts from one retrieval-then-answer call.

        The agent answers once from the documents retrieved for the question (the direct
        mode's prompt). An answer is handed in as it is, unless it is empty, restates
        the question or copies the instructions (the checks `turn_back` makes, where
        answers are turned back): the loop then costs what the direct answer costs.
        Otherwise the loop goes on, shown that retrieval as its first search (the
        question as the query, the search tool's own listing as the output); the
        answer it replaces is kept in the trajectory, not in the conversation.
        """
        prompt, self.opening = self.opening, None
        c: Completion = await self.agent.chat(prompt, phase=self.phase, max_tokens=self.reply_budget())
        self.count(c, start="direct")
        answer = c.text.strip()
        instructions = f"{self.instructions()}\n{load_prompt('direct_search.txt').template}"
        why = turn_back(self.task, answer, instructions) if answer and self.turn_back_restated else None
        if answer and why is None:
            self.pending["action"] = {"kind": "answer", "answer": answer}
            self.hand_in_direct(answer)
        self.pending["turned_back"] = ("copied" if why == TURN_BACK_COPIED else "restated") if answer else "empty"
        tool = _search_tool(self.tools)  # there is one wherever a search opening is (see execute)
        query = " ".join(question_of(self.task).split())
        action = Action(kind="tool", tool=tool.name, arguments={"query": query},
                        text=f"```{block_label(tool)}\n{query}\n```", call_id="direct-1")  # fmt: skip
        self.pending["action"] = action.as_dict()
        await self.show_first_run(c, action, tool)

    async def show_first_run(self, c: Completion, action: Action, tool: Tool, report: str = "") -> None:
        """Run ``action`` (the direct start's reply turned into a call of ``tool``) and
        show it to the agent as its own first run, with the output and ``report``."""
        try:
            observation = await self.run_tool(action)
        except MalformedAction as exc:  # the tool failed: the agent sees why, as after its own run
            observation = str(exc)
        self.done.add(_action_key(action))
        shown = truncate(observation or "(no output)", self.limits.max_observation_chars)
        if report:
            shown = f"{shown}\n\n{report}"
        if self.format == "tools":  # shown to the agent as its own call of the tool
            call = ToolCall(id=action.call_id or "direct-1", name=tool.name, arguments=json.dumps(action.arguments))
            c = replace(c, tool_calls=[call])
        self.reply(c, action, shown, label=block_label(tool))
        self.finish_step(observation=shown)

    def hand_in_direct(self, answer: str) -> None:
        self.answer, self.handed_direct = answer, True
        self.finish_step(observation=None)
        raise _Ended("submitted")

    async def step(self) -> None:
        fields = self.constraint.request(self.answer_only) if self.constraint else {}
        c: Completion = await self.agent.chat(
            self.messages, phase=self.phase, max_tokens=self.reply_budget(),
            stop=TEXT_STOP if self.format == "text" else None, tools=self.schemas,
            **({"extra": fields} if fields else {}),
        )  # fmt: skip
        self.count(c)
        lim = self.limits
        action: Action | None = None
        try:
            action = self.parse(c)
            self.pending["action"] = action.as_dict()
            if action.kind == "answer":
                if self.turn_back(c, action):
                    return
                note = await self.review_answer(action.answer or "")
                if note is None:
                    self.answer = action.answer
                    self.finish_step(observation=None)
                    raise _Ended("submitted")
                self.malformed_run = 0
                self.reply(c, action, note, label=None)
                self.finish_step(observation=note)
                return
            key = _action_key(action)
            code = self.candidate_code(action)
            if code is not None and self.checks is not None and self.checks.is_stub(code):
                note = self.checks.refusal()  # not run, not remembered: a stub again gets the same answer
                self.malformed_run = 0
                self.pending["refused"] = "stub"
                self.reply(c, action, note, label=None)
                self.finish_step(observation=note)
                return
            if key in self.done:
                if self.defines_entry(action.arguments.get("code")):
                    # The same solution again: the agent has nothing more to try (graded as last_code).
                    self.last_code = action.arguments["code"]
                    self.finish_step(observation=None)
                    raise _Ended("repeated")
                raise MalformedAction(REPEATED[self.format])
            observation = await self.run_tool(action)
            self.done.add(key)
            report = ""
            if code is not None and self.checks is not None and self.defines_entry(code):
                run = await self.checks.check(code, self.steps)
                report = self.checks.report(run)
                if run.total:
                    self.pending["examples"] = {"passed": run.passed, "total": run.total}
        except MalformedAction as exc:
            self.malformed += 1
            self.malformed_run += 1
            self.pending["malformed"] = str(exc)
            self.reply(c, action, str(exc), label=None)
            self.finish_step(observation=str(exc))
            if self.malformed_run >= lim.max_malformed:
                raise _Ended("malformed") from None
            return
        self.malformed_run = 0
        shown = truncate(observation or "(no output)", lim.max_observation_chars)
        if report:  # short by construction, and never cut: it is what the agent must fix
            shown = f"{shown}\n\n{report}"
        self.reply(c, action, shown, label=block_label(self.by_name[action.tool]))
        self.finish_step(observation=shown)

    def turn_back(self, c: Completion, action: Action) -> bool:
        """Turn back a search answer that restates the question or copies the
        instructions (a step of its own), once for each of the two."""
        message = turn_back(self.task, action.answer, self.instructions()) if self.turn_back_restated else None
        kind = "copied" if message == TURN_BACK_COPIED else "restated"
        if message is None or kind in self.turned_back or self.steps >= self.limits.max_steps:
            return False
        self.turned_back.add(kind)
        self.pending["turned_back"] = kind
        self.reply(c, action, message, label=None)
        self.finish_step(observation=message)
        return True

    def instructions(self) -> str:
        """The executor's own prompt text (never the task or a tool's output): what a
        copied answer is checked against."""
        own = [self.messages[0]["content"] if self.messages and self.messages[0]["role"] == "system" else ""]
        own += [self.env.answer_instructions(self.task), *LAST_REPLY.values(), *REPEATED.values(), TURN_BACK,
                TURN_BACK_COPIED]
        return "\n".join(own)

    def candidate_code(self, action: Action) -> str | None:
        """The code of a code-running action on a coding task, as the sandbox gets it."""
        code = action.arguments.get("code")
        if self.checks is None or not isinstance(code, str):
            return None
        return self.checks.code_of(code)

    async def review_answer(self, answer: str) -> str | None:
        """None to accept an answer; else why it is sent back: a stub, or a new
        candidate that fails some of the task's examples while replies are left (the
        same code answered again is accepted as it is)."""
        checks = self.checks
        if checks is None:
            return None
        code = checks.code_of(answer)
        if not self.defines_entry(code):
            return None  # prose: graded by the code the agent ran (see _graded)
        if checks.is_stub(code):
            return checks.refusal() if self.steps < self.limits.max_steps else None
        if checks.checked(code) or not checks.examples or self.steps >= self.limits.max_steps:
            return None
        run = await checks.check(code, self.steps)
        self.pending["examples"] = {"passed": run.passed, "total": run.total}
        if run.all_passed:
            return None
        return "Your answer was not handed in yet. " + checks.report(run)

    def defines_entry(self, code: Any) -> bool:
        """Whether ``code`` defines the function a coding task's grading calls."""
        entry = self.task.grading.get("entry_point")
        return isinstance(code, str) and isinstance(entry, str) and _defines(code, entry)

    def parse(self, c: Completion) -> Action:
        if self.format == "tools":
            if c.tool_calls:
                return parse_tool_call(c.tool_calls[0], self.tools)
            try:  # no native call: an answer or a call written as text still counts
                action = parse_text_action(c.text, self.tools)
            except MalformedAction:
                raise MalformedAction(f"Call one of the tools, or call {SUBMIT_TOOL} with your final answer.") from None
            return action
        return parse_text_action(c.text, self.tools)

    async def run_tool(self, action: Action) -> str:
        """Run the action's tool; an exception from the tool is a malformed action."""
        tool = self.by_name[action.tool]
        try:
            output = await tool.run(**action.arguments)
        except Exception as exc:  # a tool must never crash the loop
            raise MalformedAction(f"Tool '{tool.name}' failed: {type(exc).__name__}: {str(exc)[:300]}") from None
        if self.defines_entry(action.arguments.get("code")):
            # Only code that defines the task's function: a later run that just calls it
            # (in a fresh sandbox, where it fails) does not replace the solution.
            self.last_code = action.arguments["code"]
        return output if isinstance(output, str) else str(output)

    def reply(self, c: Completion, action: Action | None, observation: str, label: str | None) -> None:
        """Append the agent's reply and the observation to the conversation."""
        left = self.limits.max_steps - self.steps
        note = LAST_REPLY[self.format] if left == 1 else f"({left} replies left.)"
        if left == 1 or observation == REPEATED[self.format]:
            self.answer_only = True
        call = c.tool_calls[0] if self.format == "tools" and c.tool_calls else None
        if call is not None:
            self.messages.append({"role": "assistant", "content": c.text, "tool_calls": [
                {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}]})
            self.messages.append({"role": "tool", "tool_call_id": call.id, "content": f"{observation}\n\n{note}"})
            return
        text = action.text if action is not None and action.text else truncate(c.text, self.limits.max_observation_chars)
        self.messages.append({"role": "assistant", "content": text})
        head = f"Output of {label}:\n" if label else ""
        self.messages.append({"role": "user", "content": f"{head}{observation}\n\n{note}"})

    def finish_step(self, observation: str | None, interrupted: str | None = None) -> None:
        record, self.pending = self.pending, None
        if record is None or self.trajectory is None:
            return
        record["observation"] = observation
        record["elapsed_s"] = round(self.elapsed(), 3)
        if interrupted:
            record["interrupted"] = interrupted
        self.trajectory.write(record)


def _code_tool(tools: list[Tool]) -> Tool | None:
    """The tool that runs code (its arguments require ``code``), if any."""
    return next((t for t in tools if "code" in t.parameters.get("required", [])), None)


def _action_key(action: Action) -> str:
    """What identifies an action run before (a model repeating itself)."""
    return json.dumps([action.tool, action.arguments], sort_keys=True, default=str)


def _search_tool(tools: list[Tool]) -> Tool | None:
    """The tool that searches by a query (its one required argument ``query``), if any."""
    return next((t for t in tools if t.parameters.get("required") == ["query"]), None)


def _compiles(code: str) -> bool:
    """Whether ``code`` is valid Python (compiled here, never run)."""
    try:
        compile(code, "<answer>", "exec", dont_inherit=True)
    except Exception:  # SyntaxError, or a parser limit on hostile input
        return False
    return True


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


def _can_start_direct(env: Environment, task: Task, tools: list[Tool], checks: CodingChecks | None) -> bool:
    """Whether a loop can start from one direct answer: a coding task whose candidates
    are checked (it has an entry point), or a search task with a search tool over an
    index (the retrieval the direct answer reads is then shown as that tool's run)."""
    if checks is not None:
        return True
    return task.domain == "search" and _search_tool(tools) is not None and getattr(env, "index", None) is not None


async def execute(
    agent: Any,
    env: Environment,
    task: Task,
    strategy: str,
    *,
    limits: Limits = Limits(),
    trajectory_path: Path | str | None = None,
    action_format: str = "text",
    phase: str = "execute",
    grade_last_code: bool = True,
    constrain: ConstrainSettings | str | None = None,
    plan: str = "after",
    check_examples: bool = True,
    opening: list[dict[str, Any]] | None = None,
) -> Outcome:
    """Run ``agent`` on ``task`` in ``env`` following ``strategy``; grade and return the outcome.

    ``agent`` is a `sale.llm.pool.Agent` (anything with ``name`` and an async ``chat``
    of the same signature). ``action_format`` is "text" (fenced blocks) or "tools"
    (native tool calls). Raises only for bad arguments (`ConfigError`); limits,
    malformed replies, failing tools and endpoint errors end the run with a reason.
    ``constrain`` (`sale.agent.constrain`; default ``auto``) constrains each reply to
    the actions, and turns back a search answer that restates the question.

    ``plan`` places the strategy after the task (default), before it, or leaves it out
    ("none"). On a coding task with an entry point a stub is refused, and with
    ``check_examples`` the task's visible examples are run against each complete
    definition and the best one is handed in (see `sale.agent.candidates`).
    ``opening`` is the prompt of one direct answer the loop starts from where it can
    (`_can_start_direct`; see `_Episode.coding_start` and `_Episode.search_start`); on
    other tasks it is ignored.
    """
    if action_format not in ACTION_FORMATS:
        raise ConfigError(f"action_format must be one of {', '.join(ACTION_FORMATS)}, got {action_format!r}")
    tools = list(env.tools(task))
    reserved = {name for name in (*ANSWER_LABELS, SUBMIT_TOOL)} & {t.name.lower() for t in tools}
    if reserved:
        raise ConfigError(f"environment '{env.name}': tool name(s) {', '.join(sorted(reserved))} are reserved for the final answer")
    settings = constrain if isinstance(constrain, ConstrainSettings) else ConstrainSettings(mode=constrain or "auto")
    constraint = action_constraint(settings, agent, tools, task, action_format, limits.max_output_tokens)
    messages = opening_messages(env, task, strategy, tools, limits, action_format, plan)
    path = Path(trajectory_path) if trajectory_path is not None else None
    trajectory = _Trajectory(path) if path is not None else None
    checks = CodingChecks.for_task(env, task, examples=check_examples)
    episode = _Episode(agent, env, task, tools, limits, action_format, phase, messages, trajectory,
                       constraint, settings.turns_back, checks,
                       opening if _can_start_direct(env, task, tools, checks) else None)  # fmt: skip
    try:
        if trajectory:
            trajectory.write({
                "type": "header", "task_id": task.id, "agent": agent.name, "strategy": strategy,
                "limits": asdict(limits), "action_format": action_format, "phase": phase, "plan": plan,
                "start": "direct" if episode.opening is not None else "loop",
                "visible_examples": len(checks.examples) if checks is not None else None,
                "environment": env.name, "tools": [t.name for t in tools], "messages": messages,
                "constrain": constraint.record(),
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            })  # fmt: skip
        try:
            with ledger_tags(task=task.id):
                await episode.run()
            reason = "submitted"  # not reached: run() only ends by raising
        except _Ended as end:
            reason = end.reason
        except BudgetExceeded as exc:  # before LLMError: a refused call is both
            reason = f"budget: {exc}"[:400]
        except ContextOverflow as exc:
            # The opening prompt does not fit: the task cannot run on this agent. A
            # conversation the agent itself grew past the context ends its run.
            reason = f"llm_error: {exc.reason}"[:400] if episode.steps == 0 else "context_full"
        except LLMError as exc:
            reason = f"llm_error: {exc.reason}"[:400]
        outcome = await _graded(episode, env, task, reason, grade_last_code)
        outcome.trajectory = str(path) if path is not None else None
        if trajectory:
            trajectory.write({"type": "outcome", **outcome.to_dict()})
        return outcome
    finally:
        if trajectory:
            trajectory.close()


async def _graded(ep: _Episode, env: Environment, task: Task, reason: str, grade_last_code: bool) -> Outcome:
    """The episode's outcome, its answer (or the last code, see module doc) graded."""
    answer, source = ep.answer, ("direct" if ep.handed_direct else "submitted") if ep.answer is not None else None
    entry = task.grading.get("entry_point")
    checks = ep.checks
    best = checks.best() if checks is not None and grade_last_code else None
    if best is not None:
        code = checks.code_of(answer) if answer is not None else ""
        if answer is not None and _defines(code, entry) and not checks.is_stub(code):
            mine = checks.passed(code)
            if mine is None and checks.examples:  # answered on the last reply: not checked yet
                mine = (await checks.check(code, ep.steps)).passed
            if mine is not None and best.passed > mine:
                answer, source = best.code, "best_code"  # an earlier candidate did better on the examples
        else:
            last = checks.code_of(ep.last_code) if ep.last_code else None
            answer, source = best.code, "last_code" if best.code == last else "best_code"
    elif grade_last_code and ep.last_code and (answer is None or not _defines(answer, entry)):
        answer, source = ep.last_code, "last_code"
    passed, score, detail = False, 0.0, {}
    if answer is not None:
        try:
            grade = await env.grade(task, answer)
            passed, score, detail = bool(grade.passed), float(grade.score), dict(grade.detail)
        except Exception as exc:  # a grader bug must not lose the episode
            log.warning("grading task %s failed: %s", task.id, exc)
            detail = {"error": f"{type(exc).__name__}: {exc}"}
    return Outcome(
        task_id=task.id, agent=ep.agent.name, answer=answer, passed=passed, score=score, reason=reason,
        steps=ep.steps, input_tokens=ep.input_tokens, output_tokens=ep.output_tokens, dollars=ep.dollars,
        wall_s=round(ep.elapsed(), 3), grade=detail, answer_source=source, malformed=ep.malformed,
    )  # fmt: skip
