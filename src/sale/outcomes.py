"""How a task ended: passed, failed, or errored, and the kinds of error.

Every task of a run ends in one of three classes:

- ``passed`` / ``failed``: the agent's work was graded. Only these go into the
  auction memory and into pass@1.
- ``errored``: the infrastructure failed, not the agent: an endpoint unreachable or
  erroring after its retries ("endpoint"), a call refused by a budget ("budget"), a full
  disk ("disk"), a prompt larger than the context ("context"), a sandbox that could not
  run the grader ("sandbox"), or a grader that raised ("grader"). An errored task is
  kept with its error and retried by the next run in the same folder.

`classify_exception` and `classify_text` map an error to its kind; `outcome_of` reads
the class of a results.jsonl line (older lines without ``outcome`` included). The exit
codes of ``sale run`` live here too, so every command that runs tasks uses the same.
"""

from __future__ import annotations

import errno
import sqlite3
from dataclasses import dataclass
from enum import Enum
from typing import Any


class OutcomeClass(str, Enum):
    PASSED = "passed"
    FAILED = "failed"
    ERRORED = "errored"

    def __str__(self) -> str:
        return self.value


class ErrorKind(str, Enum):
    ENDPOINT = "endpoint"
    BUDGET = "budget"
    DISK = "disk"
    CONTEXT = "context"
    SANDBOX = "sandbox"
    GRADER = "grader"

    def __str__(self) -> str:
        return self.value


#: Kinds that say nothing about the next task (another prompt may fit, another task
#: has its own per-task budget): they never stop a run early.
PER_TASK_KINDS = frozenset({ErrorKind.CONTEXT})

#: Exit codes of a command that runs tasks.
EXIT_OK = 0  # every task was graded (passed or failed)
EXIT_ERROR = 2  # bad input or environment: nothing ran, or the run could not go on (one-line error)
EXIT_ERRORED = 3  # the run went through, but some tasks errored (rerun to retry them)
EXIT_BUDGET = 4  # the per-run budget stopped the run (raise it to go on)
EXIT_STOPPED = 5  # stopped early: the same infrastructure error repeated (rerun to resume)
EXIT_INTERRUPTED = 130  # interrupted (Ctrl-C); finished work is kept


@dataclass(frozen=True)
class TaskError:
    """Why a task errored: its kind and a one-line message."""

    kind: ErrorKind
    message: str


# Words endpoints use when a prompt does not fit (llama.cpp, vLLM, SGLang, OpenAI).
_CONTEXT_MARKERS = (
    "context overflow", "exceed_context_size", "exceeds the available context", "maximum context length",
    "context_length_exceeded", "context length", "too many tokens", "prompt is too long",
)  # fmt: skip
_DISK_MARKERS = ("no space left on device", "database or disk is full", "disk quota exceeded")
_SANDBOX_MARKERS = ("sandboxerror", "cannot start the sandbox", "in a sandbox on this machine")


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the disk is full."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(exc, sqlite3.Error) and "full" in str(exc).lower():
            return True
        if any(m in str(exc).lower() for m in _DISK_MARKERS):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def classify_text(text: str) -> ErrorKind:
    """The kind of an error from its message (a failed call, a dropped bidder...)."""
    low = text.lower()
    if "per-run budget" in low or "per-task budget" in low or low.startswith("budget"):
        return ErrorKind.BUDGET
    if any(m in low for m in _DISK_MARKERS):
        return ErrorKind.DISK
    if any(m in low for m in _CONTEXT_MARKERS):
        return ErrorKind.CONTEXT
    if any(m in low for m in _SANDBOX_MARKERS):
        return ErrorKind.SANDBOX
    return ErrorKind.ENDPOINT


def classify_exception(exc: BaseException) -> ErrorKind:
    """The kind of an exception that ended a task."""
    from sale.errors import BudgetExceeded

    if isinstance(exc, BudgetExceeded):
        return ErrorKind.BUDGET
    if is_disk_full(exc):
        return ErrorKind.DISK
    if type(exc).__name__ == "SandboxError":
        return ErrorKind.SANDBOX
    return classify_text(str(exc))


def auction_error(message: str) -> ErrorKind:
    """The kind of a failed auction ("no bid survived (a: reason; b: reason)"): budget
    or context when any bidder dropped out for it, else the endpoints."""
    kinds = [classify_text(part) for part in message.split("; ")]
    for kind in (ErrorKind.BUDGET, ErrorKind.DISK, ErrorKind.CONTEXT):
        if kind in kinds:
            return kind
    return ErrorKind.ENDPOINT


def execution_error(reason: str, grade: dict[str, Any] | None = None) -> TaskError | None:
    """The infrastructure error that ended an execution, from the executor's ``reason``
    and the grade detail, or None when the agent's work was graded as it stands."""
    if reason.startswith("budget:"):
        return TaskError(ErrorKind.BUDGET, reason.removeprefix("budget:").strip())
    if reason.startswith("llm_error:"):
        message = reason.removeprefix("llm_error:").strip()
        return TaskError(classify_text(message), message)
    error = (grade or {}).get("error")
    if error:
        kind = ErrorKind.SANDBOX if classify_text(str(error)) is ErrorKind.SANDBOX else ErrorKind.GRADER
        return TaskError(kind, f"grading failed: {error}")
    return None


_OUTCOMES = {c.value: c for c in OutcomeClass}


def outcome_of(record: dict[str, Any]) -> OutcomeClass:
    """The class of a results.jsonl line (lines written before classes existed: an
    ``error`` means errored)."""
    known = _OUTCOMES.get(record.get("outcome"))  # type: ignore[arg-type]
    if known is not None:
        return known
    if record.get("error"):
        return OutcomeClass.ERRORED
    return OutcomeClass.PASSED if record.get("passed") else OutcomeClass.FAILED


def error_kind_of(record: dict[str, Any]) -> str:
    """The error kind of an errored results.jsonl line ("" for graded lines)."""
    if outcome_of(record) is not OutcomeClass.ERRORED:
        return ""
    return record.get("error_kind") or classify_text(record.get("error", "")).value
