"""The coding loop's checks: a stub is no solution, the examples are run, the best is kept.

For a coding task whose grading names an ``entry_point``, the executor hands each
piece of code the agent runs or answers with to a `CodingChecks`:

- a definition of the function with no body (only a docstring, ``pass``, ``...`` or
  ``raise NotImplementedError``) is refused with an observation that says so, instead
  of being run (a stub runs "ok" and tells the agent nothing);
- a complete definition is a candidate: the task's visible examples
  (`sale.envs.examples`) are run against it and the result joins the observation;
- the best candidate (most examples passed; the later one of equals) is what a run
  that ends without a better answer hands in.

The hidden tests are never run here: only what the task's prompt shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sale.envs.coding import extract_code
from sale.envs.examples import ExampleRun, format_report, is_stub, run_examples, visible_examples
from sale.workloads.task import Task

STUB = ("The function `{entry}` has no body (only a docstring, pass or ...): that is the task's stub,"
        " not a solution, so it was not run. Write the complete implementation of `{entry}` and run it.")
FIX = ("Fix `{entry}` and run it again, or answer with this same code to hand it in as it is.")


@dataclass
class Candidate:
    """A complete definition the agent ran or answered with, and how it did."""

    code: str
    passed: int
    total: int
    step: int


class CodingChecks:
    """The checks of one coding episode (see the module docstring)."""

    def __init__(self, env: Any, task: Task, entry_point: str, *, examples: bool = True):
        self.entry = entry_point
        self.examples = visible_examples(task) if examples else []
        self.setup = str(task.grading.get("setup") or "")
        self.limits = getattr(env, "tool_limits", None)
        self.hide_paths = tuple(getattr(env, "hide_paths", ()) or ())
        self.candidates: list[Candidate] = []
        self._runs: dict[str, ExampleRun] = {}

    @classmethod
    def for_task(cls, env: Any, task: Task, *, examples: bool = True) -> CodingChecks | None:
        """Checks for a coding task with an entry point; None for any other task."""
        entry = task.grading.get("entry_point") if isinstance(task.grading, dict) else None
        if task.domain != "coding" or not isinstance(entry, str) or not entry.isidentifier():
            return None
        return cls(env, task, entry, examples=examples)

    def code_of(self, text: str) -> str:
        """The code in a tool argument or an answer (fences and prose taken off)."""
        return extract_code(text or "", self.entry)

    def is_stub(self, code: str) -> bool:
        return is_stub(code, self.entry)

    def refusal(self) -> str:
        return STUB.format(entry=self.entry)

    def checked(self, code: str) -> bool:
        return code in self._runs

    async def check(self, code: str, step: int) -> ExampleRun:
        """Run the examples against ``code`` (once per distinct code) and keep it as a
        candidate."""
        run = self._runs.get(code)
        if run is None:
            run = await run_examples(code, self.examples, setup=self.setup, hide_paths=self.hide_paths,
                                     **({"limits": self.limits} if self.limits is not None else {}))
            self._runs[code] = run
        self.candidates = [c for c in self.candidates if c.code != code]
        self.candidates.append(Candidate(code, run.passed, run.total, step))
        return run

    def report(self, run: ExampleRun) -> str:
        """The observation about a candidate's examples ("" when the task states none)."""
        text = format_report(run)
        if text and not run.all_passed:
            text += "\n" + FIX.format(entry=self.entry)
        return text

    def passed(self, code: str) -> int | None:
        run = self._runs.get(code)
        return run.passed if run is not None else None

    def best(self) -> Candidate | None:
        """The candidate that passed most examples (the later one of equals)."""
        if not self.candidates:
            return None
        return max(self.candidates, key=lambda c: (c.passed, c.step))
