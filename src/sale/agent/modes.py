"""How a winner executes its task: the tool-using loop, or one direct answer.

A pool file's ``execution:`` section holds the executor's limits (`Limits`), the
action format and these settings (`ExecutionSettings`):

- ``mode: agent | direct``: ``agent`` (default) runs the tool-using loop
  (`sale.agent.executor.execute`); ``direct`` asks once for the whole solution or
  answer, and grades it as the loop's answer is graded. For a search task the direct
  call is retrieval-then-answer: the ``retrieve_k`` best documents for the question
  (BM25, each cut to ``retrieve_chars``) are put in the prompt.
- ``plan: after | before | none``: where the winner's plan goes in the prompt: after
  the task (default: the paper's executor), before it, or nowhere.
- ``start: direct | loop``: ``direct`` (default) starts the loop from one direct
  answer (the direct mode's prompt), so the loop costs what a direct answer costs
  where the direct answer is good. On a coding task with an entry point, a complete
  definition that passes the task's visible examples (or compiles, where it states
  none) is handed in at once; otherwise the loop goes on from it, shown the examples'
  failures, and hands in its best candidate. On a search task, the retrieval-then-
  answer reply is handed in unless it is empty, restates the question or copies the
  instructions; otherwise the loop goes on, shown that retrieval as its first search.
  ``loop`` lets the agent's first action start the loop (the paper's executor).
  Other tasks always start with the loop.
- ``examples: true | false``: the coding loop runs the task's visible examples against
  each complete definition the agent writes and hands in the best one
  (`sale.agent.candidates`); false leaves them out.

`run_execution` runs either mode and returns the same `Outcome`; a direct answer's
trajectory file has the loop's layout (header, one step, outcome).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sale.agent.constrain import ConstrainSettings
from sale.agent.executor import ACTION_FORMATS, Limits, Outcome, _Trajectory, execute, load_prompt
from sale.config import validation_message
from sale.envs.base import Environment
from sale.errors import BudgetExceeded, ConfigError
from sale.llm.client import LLMError
from sale.llm.ledger import ledger_tags
from sale.workloads.task import Task

log = logging.getLogger(__name__)

MODES = ("agent", "direct")


class ExecutionSettings(BaseModel):
    """The executor's settings besides its limits (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["agent", "direct"] = "agent"
    plan: Literal["after", "before", "none"] = "after"
    start: Literal["direct", "loop"] = "direct"
    examples: bool = True
    retrieve_k: int = Field(default=5, ge=1, le=20)
    retrieve_chars: int = Field(default=1200, ge=100, le=20_000)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "execution") -> ExecutionSettings:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(validation_message(where, exc, data)) from None


SETTING_KEYS = tuple(ExecutionSettings.model_fields)


def execution_config(section: dict[str, Any] | None, where: str = "execution") -> tuple[ExecutionSettings, Limits, str]:
    """A pool file's ``execution:`` section as (settings, limits, action format).

    Raises `ConfigError` naming the field for a bad value or an unknown key.
    """
    data = dict(section or {})
    ConstrainSettings.pop_from(data, where)  # checked here, read by the executor's caller
    known = {"action_format", *SETTING_KEYS, *(f.name for f in fields(Limits))}
    unknown = sorted(str(k) for k in set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    fmt = data.pop("action_format", "text")
    if fmt not in ACTION_FORMATS:
        raise ConfigError(f"{where}.action_format: got {fmt!r}; expected one of {', '.join(ACTION_FORMATS)}")
    settings = ExecutionSettings.from_dict({k: data.pop(k) for k in SETTING_KEYS if k in data}, where)
    return settings, Limits.from_mapping(data, where), fmt


def _plan_text(strategy: str, settings: ExecutionSettings) -> str:
    return f"Your plan: {strategy.strip()}\n\n" if strategy.strip() and settings.plan != "none" else ""


def retrieved_documents(env: Any, task: Task, k: int, chars: int) -> list[dict[str, str]]:
    """The ``k`` best documents of a search environment's index for the question."""
    index = getattr(env, "index", None)
    if index is None:
        return []
    docs = []
    for hit in index.search(task.prompt, k):
        doc = index.get(hit.id)
        text = " ".join((doc.text if doc is not None else hit.snippet).split())
        if len(text) > chars:
            text = text[:chars].rsplit(" ", 1)[0] + " ..."
        docs.append({"id": hit.id, "title": hit.title, "text": text})
    return docs


def direct_messages(env: Environment, task: Task, strategy: str, settings: ExecutionSettings) -> list[dict[str, Any]]:
    """The one prompt of a direct answer: the task (with the retrieved documents for a
    search task), the plan where ``settings.plan`` puts it, and the answer format."""
    instructions = env.answer_instructions(task).strip()
    plan = _plan_text(strategy, settings)
    if task.domain == "search" and getattr(env, "index", None) is not None:
        docs = retrieved_documents(env, task, settings.retrieve_k, settings.retrieve_chars)
        listed = "\n\n".join(f"[{n}] {d['title']}\n{d['text']}" for n, d in enumerate(docs, 1)) or "(none found)"
        text = load_prompt("direct_search.txt").substitute(
            documents=listed, task=task.prompt.strip(), plan=plan if settings.plan == "after" else "",
            answer_instructions=instructions)
    else:
        text = load_prompt("direct_task.txt").substitute(
            task=task.prompt.strip(), plan=plan if settings.plan == "after" else "", answer_instructions=instructions)
    if settings.plan == "before" and plan:
        text = plan + text
    return [{"role": "user", "content": text.strip()}]


async def answer_directly(
    agent: Any,
    env: Environment,
    task: Task,
    strategy: str,
    *,
    settings: ExecutionSettings = ExecutionSettings(mode="direct"),
    limits: Limits = Limits(),
    trajectory_path: Path | str | None = None,
    phase: str = "execute",
) -> Outcome:
    """One call for the whole solution or answer, graded like the loop's answer.

    Never raises for an endpoint failure or a refused call: the outcome's reason says
    what happened ("direct" when an answer came back).
    """
    messages = direct_messages(env, task, strategy, settings)
    path = Path(trajectory_path) if trajectory_path is not None else None
    trajectory = _Trajectory(path) if path is not None else None
    started = time.monotonic()
    answer, reason, steps = None, "direct", 0
    tokens_in = tokens_out = 0
    dollars = 0.0
    try:
        if trajectory:
            trajectory.write({
                "type": "header", "task_id": task.id, "agent": agent.name, "strategy": strategy, "mode": "direct",
                "limits": asdict(limits), "phase": phase, "plan": settings.plan, "environment": env.name,
                "tools": [], "messages": messages, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            })  # fmt: skip
        try:
            with ledger_tags(task=task.id):
                c = await agent.chat(messages, phase=phase, max_tokens=min(limits.max_output_tokens, limits.max_tokens))
            steps, tokens_in, tokens_out, dollars = 1, c.input_tokens, c.output_tokens, c.dollars
            answer = c.text.strip()
            if trajectory:
                trajectory.write({
                    "type": "step", "step": 1, "text": c.text, "tool_calls": None,
                    "action": {"kind": "answer", "answer": answer}, "malformed": None, "observation": None,
                    "input_tokens": c.input_tokens, "output_tokens": c.output_tokens, "dollars": c.dollars,
                    "elapsed_s": round(time.monotonic() - started, 3),
                })  # fmt: skip
        except BudgetExceeded as exc:
            reason = f"budget: {exc}"[:400]
        except LLMError as exc:
            reason = f"llm_error: {exc.reason}"[:400]
        passed, score, detail = False, 0.0, {}
        if answer:
            try:
                grade = await env.grade(task, answer)
                passed, score, detail = bool(grade.passed), float(grade.score), dict(grade.detail)
            except Exception as exc:  # a grader bug must not lose the answer
                log.warning("grading task %s failed: %s", task.id, exc)
                detail = {"error": f"{type(exc).__name__}: {exc}"}
        outcome = Outcome(
            task_id=task.id, agent=agent.name, answer=answer, passed=passed, score=score, reason=reason,
            steps=steps, input_tokens=tokens_in, output_tokens=tokens_out, dollars=dollars,
            wall_s=round(time.monotonic() - started, 3), trajectory=str(path) if path is not None else None,
            grade=detail, answer_source="direct" if answer else None,
        )  # fmt: skip
        if trajectory:
            trajectory.write({"type": "outcome", **outcome.to_dict()})
        return outcome
    finally:
        if trajectory:
            trajectory.close()


async def run_execution(
    agent: Any,
    env: Environment,
    task: Task,
    strategy: str,
    *,
    settings: ExecutionSettings = ExecutionSettings(),
    limits: Limits = Limits(),
    trajectory_path: Path | str | None = None,
    action_format: str = "text",
    phase: str = "execute",
    constrain: ConstrainSettings | str | None = None,
) -> Outcome:
    """Execute ``task`` in the mode ``settings.mode`` says; see the module docstring.
    ``constrain`` applies to the agent loop's steps (see `sale.agent.constrain`)."""
    if settings.mode == "direct":
        return await answer_directly(agent, env, task, strategy, settings=settings, limits=limits,
                                     trajectory_path=trajectory_path, phase=phase)  # fmt: skip
    # which tasks a loop can start from a direct answer is decided in one place: `execute`
    opening = direct_messages(env, task, strategy, settings) if settings.start == "direct" else None
    return await execute(agent, env, task, strategy, limits=limits, trajectory_path=trajectory_path,
                         action_format=action_format, phase=phase, plan=settings.plan,
                         check_examples=settings.examples, constrain=constrain, opening=opening)  # fmt: skip


__all__ = ["ExecutionSettings", "MODES", "answer_directly", "direct_messages", "execution_config", "run_execution"]
