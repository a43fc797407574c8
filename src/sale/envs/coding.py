"""The coding environment: a sandboxed Python tool, and grading by hidden tests.

An executing agent gets one tool, ``run_python(code)``, which runs a program in the
sandbox (`sale.envs.sandbox`) and shows its exit status, stdout and stderr. Its final
answer is code, usually in a markdown fence; `extract_code` takes the code out, and
`CodingEnvironment.grade` runs it together with the task's hidden tests in the sandbox.

A coding task's ``grading`` has the normalised form

    {"style": "humaneval" | "asserts" | "unittest",
     "tests": str,              # Python source
     "entry_point": str | None, # the function the tests call
     "setup": str}              # optional prelude, run before the answer and before
                                # the tests (imports; for HumanEval the whole stub)

- ``humaneval``: ``tests`` defines ``check(candidate)``; the grader calls
  ``check(<entry_point>)``.
- ``asserts``: ``tests`` is assert statements (MBPP), run after the answer.
- ``unittest``: ``tests`` defines ``unittest.TestCase`` classes (DataFrameBench); the
  grader loads and runs them (an ``if __name__ == "__main__"`` block in them is inert).

Grading runs two sandboxed processes (`sale.envs.sandbox`, each with the sandbox's
full isolation, in pid namespaces of their own, sharing only a scratch directory): the
answer's process imports the setup and the answer and serves calls; the tests' process
runs the setup and the tests, with the answer's functions and classes bound as
references whose calls cross a pair of pipes, arguments and results carried as data
(JSON, with tagged numpy and pandas values; never pickle; see `_grade_wire`,
`_grade_answer` and `_grade_tests`). Nothing the answer does in its own process
(patching builtins or unittest, printing, exit hooks, ``sys.exit``, an always-equal
result) reaches the tests' process, and the verdict is what that process writes to a
pipe of its own. What the tests patch with unittest.mock and the global random
generators' states reach the answer's process, as they would in one process.

``CodingEnvironment(boundary=False)`` keeps the earlier one-process grader (answer
and tests in one module, passing when the program prints a token from its stdin):
faster, and forgeable by an answer that sets out to; only for comparison.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import marshal
import os
import re
import secrets
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from sale.envs.base import Grade, Tool
from sale.envs.sandbox import (Limits, SandboxResult, _drain, remove_shared_directory,
                               run_python, sandbox_isolation, shared_directory, shared_path)
from sale.errors import TaskFileError
from sale.workloads.task import Task

STYLES = ("humaneval", "asserts", "unittest")
#: The module name the graded answer and its tests are imported as.
GRADED_MODULE = "solution_under_test"
#: Limits of one ``run_python`` tool call and of one grading run.
TOOL_LIMITS = Limits(wall_s=10, cpu_s=10, memory_mb=1024, output_chars=4000)
GRADE_LIMITS = Limits(wall_s=30, cpu_s=30, memory_mb=2048, output_chars=8000)
#: Characters of stderr and stdout kept in ``Grade.detail``.
DETAIL_TAIL_CHARS = 2000

_PYTHON_TAGS = {"", "python", "python3", "py", "py3", "pycon", "ipython"}
# A fence is indented by at most three spaces (as in CommonMark), so ``` inside an
# indented docstring of plain code is not taken for one.
_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})[ \t]*(?P<tag>[\w+.-]*)[^\n]*\n"
                    r"(?P<body>.*?)^ {0,3}(?P=fence)[ \t]*$", re.MULTILINE | re.DOTALL)
_OPEN_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([\w+.-]*)[^\n]*\n", re.MULTILINE)
_CODE_START = re.compile(r"^(?:def |async def |class |import |from \S+ import |@)",
                         re.MULTILINE)
#: The sandbox programs of the two-process grader and the data format they share, by
#: the module name each sandbox imports them as.
_HERE = Path(__file__).resolve().parent
_HARNESS = {"_sale_answer": _HERE / "_grade_answer.py", "_sale_tests": _HERE / "_grade_tests.py",
            "_sale_wire": _HERE / "_grade_wire.py"}
#: Reasons of a run that hit one of its limits: they name why a grade failed.
LIMIT_REASONS = ("timeout", "cpu", "memory", "file_size", "disk_full", "process_limit")
#: Seconds the answer's process may take to end once the tests' process has ended.
_ANSWER_GRACE_S = 2.0
_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in", re.MULTILINE)
_UNITTEST_FAILED = re.compile(r"^FAILED \((.*)\)$", re.MULTILINE)


# ------------------------------------------------------------------ answers and tests


def extract_code(answer: str, entry_point: str | None = None) -> str:
    """The code in an answer.

    An answer that is valid Python as a whole is taken as it is. Otherwise fenced
    blocks tagged as Python (or untagged) are preferred over blocks in other
    languages. Among them, the last block that defines ``entry_point`` wins (a final,
    corrected version usually comes last); without such a block, the longest (the last
    of equally long ones). An unclosed fence (a cut-off answer) counts as a block up
    to the end. Without fences, the answer is taken as code, minus any leading prose
    when that makes it compile.
    """
    if _compiles(answer):
        return answer.strip("\n")
    blocks = [(m["tag"].lower(), m["body"]) for m in _FENCE.finditer(answer)]
    if not blocks:
        opened = list(_OPEN_FENCE.finditer(answer))
        if opened:
            last = opened[-1]
            blocks = [(last.group(2).lower(), answer[last.end():])]
    if not blocks:
        return _strip_prose(answer)
    python = [body for tag, body in blocks if tag in _PYTHON_TAGS]
    candidates = python or [body for _, body in blocks]
    if entry_point:
        defines = re.compile(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(entry_point)}"
                             r"[ \t]*\(", re.MULTILINE)
        defining = [body for body in candidates if defines.search(body)]
        if defining:
            return defining[-1].strip("\n")
    return max(reversed(candidates), key=len).strip("\n")


def _strip_prose(answer: str) -> str:
    text = answer.strip("\n")
    if _compiles(text):
        return text
    start = _CODE_START.search(text)
    if start and _compiles(text[start.start():]):
        return text[start.start():]
    return text


def _compiles(source: str) -> bool:
    """Whether ``source`` parses as Python (compiled only, never run)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. invalid escape sequences
        try:
            compile(source, "<answer>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError, MemoryError, RecursionError, OverflowError):
            return False
    return True


def normalise_grading(task: Task) -> dict[str, Any]:
    """``task.grading`` in the normalised form, checked; lists of lines are joined.

    A missing ``style`` is inferred from the tests (``def check(`` -> humaneval, a
    TestCase -> unittest, else asserts). Raises `TaskFileError` naming the task and
    the field when the grading cannot be used.
    """
    grading = task.grading
    where = f"task {task.id!r}: grading"
    tests = _text(grading.get("tests"), f"{where}.tests")
    if not tests.strip():
        raise TaskFileError(f"{where}.tests is missing or empty; a coding task needs"
                            " hidden tests")
    setup = _text(grading.get("setup") or "", f"{where}.setup")
    entry_point = grading.get("entry_point")
    if entry_point is not None and (not isinstance(entry_point, str)
                                    or not entry_point.isidentifier()):
        raise TaskFileError(f"{where}.entry_point must be a Python identifier or null,"
                            f" got {entry_point!r}")
    style = grading.get("style") or _infer_style(tests)
    if style not in STYLES:
        raise TaskFileError(f"{where}.style must be one of {', '.join(STYLES)},"
                            f" got {style!r}")
    if style == "humaneval" and not entry_point:
        raise TaskFileError(f"{where}.entry_point is required for humaneval-style tests"
                            " (they call check(entry_point))")
    return {"style": style, "tests": tests, "entry_point": entry_point or None,
            "setup": setup}


def _text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    raise TaskFileError(f"{where} must be Python source (a string or a list of lines),"
                        f" got {type(value).__name__}")


def _infer_style(tests: str) -> str:
    if re.search(r"^def check\(", tests, re.MULTILINE):
        return "humaneval"
    if "unittest" in tests and "TestCase" in tests:
        return "unittest"
    return "asserts"


def grading_program(grading: dict[str, Any], code: str) -> tuple[str, dict[str, str]]:
    """The sandbox program that grades ``code``: (main.py source, extra files).

    The answer and the tests are one module, `GRADED_MODULE`, so the tests see the
    answer's names; main.py reads the pass token from stdin, imports (and for unittest
    runs) that module, and prints the token last.
    """
    parts = [grading["setup"], code, grading["tests"]]
    if grading["style"] == "humaneval":
        parts.append(f"check({grading['entry_point']})")
    module = "\n\n".join(p.strip("\n") for p in parts if p.strip()) + "\n"
    main = ["import sys", "_token = sys.stdin.readline().strip()"]
    if grading["style"] == "unittest":
        main += [
            "import unittest",
            f"import {GRADED_MODULE} as _tests",
            "_suite = unittest.defaultTestLoader.loadTestsFromModule(_tests)",
            "if _suite.countTestCases() == 0:",
            "    sys.exit('grading error: the tests define no test case')",
            "_result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2).run(_suite)",
            "if not _result.wasSuccessful():",
            "    sys.exit(1)",
        ]
    else:
        main.append(f"import {GRADED_MODULE}")
    main.append("print(_token)")
    return "\n".join(main) + "\n", {f"{GRADED_MODULE}.py": module}


def format_result(result: SandboxResult) -> str:
    """What the agent sees of one tool run: how it ended, then stdout and stderr."""
    lines = [f"{result.summary()}, {result.wall_s:.2f} s"]
    for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        lines.append(f"--- {name} ---" if text else f"--- {name}: (empty) ---")
        if text:
            lines.append(text.rstrip("\n"))
    return "\n".join(lines)


@functools.cache
def _harness_pyc(name: str) -> bytes:
    """A module of the two-process grader as a ``.pyc`` without source, compiled once
    per process: a sandbox imports it as it is (compiling the two sides and their wire
    format in every run costs more CPU than most tasks' tests)."""
    path = _HARNESS[name]
    code = compile(path.read_text(encoding="utf-8"), path.name, "exec", dont_inherit=True,
                   optimize=0)
    # The header: magic number, flags (0) and the source's mtime and size, which are
    # not checked where there is no source.
    return importlib.util.MAGIC_NUMBER + bytes(12) + marshal.dumps(code)


#: Packages worth telling an agent about when they are installed.
NOTABLE_PACKAGES = ("numpy", "pandas", "scipy", "matplotlib", "sklearn", "polars",
                    "seaborn", "sympy", "networkx")


@functools.cache
def installed_packages() -> tuple[str, ...]:
    """Which of `NOTABLE_PACKAGES` the sandbox's interpreter (this one) can import."""
    return tuple(name for name in NOTABLE_PACKAGES if importlib.util.find_spec(name))


# ------------------------------------------------------------------------ environment


class CodingEnvironment:
    """Python tasks: a ``run_python`` tool while working, hidden tests for the answer.

    ``tool_limits`` and ``grade_limits`` bound one tool call and one grading run.
    ``hide_paths`` are made invisible to all sandboxed code (e.g. the benchmark data
    folder, which holds reference solutions).
    """

    name = "coding"

    def __init__(self, *, tool_limits: Limits = TOOL_LIMITS,
                 grade_limits: Limits = GRADE_LIMITS, hide_paths: Sequence[str] = (),
                 boundary: bool = True):
        self.tool_limits = tool_limits
        self.grade_limits = grade_limits
        self.hide_paths = tuple(hide_paths)
        self.boundary = boundary

    def describe(self, task: Task) -> str:
        limits = self.tool_limits
        version = ".".join(map(str, sys.version_info[:2]))
        packages = ", ".join(installed_packages()) or "none"
        return (
            f"Coding environment (Python {version}; packages besides the standard"
            f" library: {packages}).\n"
            "Tool: run_python(code) runs a Python program in an isolated sandbox and"
            " returns its exit status, stdout and stderr (cut to"
            f" {limits.output_chars} characters). Each call starts in a fresh empty"
            " directory; nothing persists between calls. No network; limits:"
            f" {limits.wall_s:g} s wall clock, {limits.memory_mb} MB memory.\n"
            "Hidden tests grade the final answer.\n"
            f"Final answer: {self.answer_instructions(task)}"
        )

    def tools(self, task: Task) -> list[Tool]:
        async def run(code: str) -> str:
            if "```" in code or "~~~" in code:
                code = extract_code(code)
            result = await run_python(code, limits=self.tool_limits,
                                      hide_paths=self.hide_paths)
            return format_result(result)

        return [Tool(
            name="run_python",
            description=("Run a Python program in a sandbox (fresh directory, no"
                         " network) and see its exit status, stdout and stderr."),
            parameters={"type": "object",
                        "properties": {"code": {"type": "string",
                                                "description": "The complete program."}},
                        "required": ["code"]},
            run=run,
        )]

    def answer_instructions(self, task: Task) -> str:
        entry_point = task.grading.get("entry_point")
        if entry_point:
            return (f"the complete Python code that defines the function `{entry_point}`,"
                    " with every import it needs, in one ```python code block. Leave out"
                    f" tests, example calls and input(): hidden tests call `{entry_point}`"
                    " directly.")
        return ("the complete Python code, with every import it needs, in one ```python"
                " code block. Leave out example calls and input(); hidden tests run it.")

    async def grade(self, task: Task, answer: str) -> Grade:
        grading = normalise_grading(task)
        code = extract_code(answer or "", grading["entry_point"])
        if not code.strip():
            return Grade(passed=False, score=0.0,
                         detail={"style": grading["style"], "reason": "empty answer"})
        if self.boundary:
            return await self._grade_apart(grading, code)
        return await self._grade_in_one_process(grading, code)

    async def _grade_apart(self, grading: dict[str, Any], code: str) -> Grade:
        """The answer and the tests in two sandboxes; the verdict from the tests' one."""
        loop = asyncio.get_running_loop()
        await sandbox_isolation()  # the plan decides where the shared directory appears
        shared = shared_directory()
        inside = shared_path(shared)
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        verdict_r, verdict_w = os.pipe()
        wire = _harness_pyc("_sale_wire")
        setup = grading["setup"].strip("\n")
        answer_module = "\n\n".join(p for p in (setup, code.strip("\n")) if p.strip()) + "\n"
        test_cfg = {"req": req_w, "resp": resp_r, "verdict": verdict_w, "cwd": inside,
                    "style": grading["style"], "entry_point": grading["entry_point"]}
        verdict = bytearray()
        reader = None
        handed: set[int] = set()
        try:
            async def run(code: str, fds: tuple[int, ...], **kwargs: Any) -> SandboxResult:
                handed.update(fds)  # run_python closes them from here on
                return await run_python(code, pass_fds=fds, shared_dir=shared, **kwargs)

            answer = asyncio.ensure_future(run(
                "import _sale_answer\n", (req_r, resp_w),
                stdin=json.dumps({"req": req_r, "resp": resp_w, "cwd": inside}) + "\n",
                limits=self.grade_limits, hide_paths=self.hide_paths,
                files={"_sale_wire.pyc": wire, "_sale_answer.pyc": _harness_pyc("_sale_answer"),
                       f"{GRADED_MODULE}.py": answer_module}))
            tests = asyncio.ensure_future(run(
                "import _sale_tests\n", (req_w, resp_r, verdict_w),
                stdin=json.dumps(test_cfg) + "\n",
                limits=self.grade_limits, hide_paths=self.hide_paths,
                files={"_sale_wire.pyc": wire, "_sale_tests.pyc": _harness_pyc("_sale_tests"),
                       "setup.py": setup + "\n", "tests.py": grading["tests"]}))
            reader = loop.create_task(_drain(verdict_r, lambda chunk: verdict.extend(
                chunk[:max(0, (1 << 16) - len(verdict))])))
            try:
                test_result = await tests
            except BaseException:
                answer.cancel()
                await asyncio.gather(answer, return_exceptions=True)
                raise
            done, _ = await asyncio.wait({answer}, timeout=_ANSWER_GRACE_S)
            if not done:
                answer.cancel()
            answer_result = (await asyncio.gather(answer, return_exceptions=True))[0]
            await asyncio.wait({reader}, timeout=1.0)
        finally:
            if reader is not None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            for fd in {req_r, req_w, resp_r, resp_w, verdict_r, verdict_w} - handed:
                os.close(fd)  # the rest were taken over (and closed) by run_python
            remove_shared_directory(shared)
        if isinstance(answer_result, BaseException):
            if not isinstance(answer_result, asyncio.CancelledError):
                raise answer_result
            answer_result = None
        try:
            report = json.loads(bytes(verdict).decode("utf-8"))
        except ValueError:
            report = {}
        if not isinstance(report, dict):
            report = {}
        passed = (report.get("passed") is True and test_result.exit_code == 0
                  and not test_result.timed_out)
        detail: dict[str, Any] = {
            "style": grading["style"],
            "reason": "ok" if passed else _failure_reason(test_result, answer_result, report),
            "summary": test_result.summary(),
            "exit_code": test_result.exit_code,
            "wall_s": round(max(test_result.wall_s,
                                answer_result.wall_s if answer_result else 0.0), 3),
            "isolation": test_result.isolation,
            "stderr_tail": _tails(test_result.stderr, answer_result and answer_result.stderr),
            "stdout_tail": _tails(test_result.stdout, answer_result and answer_result.stdout),
        }
        if answer_result is not None:
            detail["answer_summary"] = answer_result.summary()
        if grading["style"] == "unittest":
            detail.update({k: report[k] for k in ("tests_run", "failures", "errors")
                           if isinstance(report.get(k), int)})
        return Grade(passed=passed, score=1.0 if passed else 0.0, detail=detail)

    async def _grade_in_one_process(self, grading: dict[str, Any], code: str) -> Grade:
        """The earlier grader: answer and tests in one sandboxed process."""
        main, files = grading_program(grading, code)
        token = secrets.token_hex(16)
        result = await run_python(main, stdin=token + "\n", limits=self.grade_limits,
                                  files=files, hide_paths=self.hide_paths)
        passed = result.exit_code == 0 and not result.timed_out and token in result.stdout
        detail: dict[str, Any] = {
            "style": grading["style"],
            "reason": result.reason if passed or result.reason != "ok" else "no pass token",
            "summary": result.summary(),
            "exit_code": result.exit_code,
            "wall_s": round(result.wall_s, 3),
            "isolation": result.isolation,
            "stderr_tail": result.stderr[-DETAIL_TAIL_CHARS:],
            "stdout_tail": result.stdout.replace(token, "")[-DETAIL_TAIL_CHARS:],
        }
        if grading["style"] == "unittest":
            detail.update(_unittest_counts(result.stderr))
        return Grade(passed=passed, score=1.0 if passed else 0.0, detail=detail)


def _failure_reason(tests: SandboxResult, answer: SandboxResult | None,
                    report: dict[str, Any]) -> str:
    """Why a grade failed: a limit either process hit (the answer's first), else
    "error" when the answer's process failed, else "tests failed"."""
    for result in (answer, tests):
        if result is not None and result.reason in LIMIT_REASONS:
            return result.reason
    limits = report.get("limits")
    if isinstance(limits, list):
        for limit in limits:
            if limit in LIMIT_REASONS:
                return limit
    if not report:
        return "no verdict"
    if answer is not None and answer.reason != "ok":
        return "error"
    return "tests failed"


def _tails(tests: str, answer: str | None) -> str:
    """The end of the tests' output, after the end of the answer's (when it has any)."""
    text = tests[-DETAIL_TAIL_CHARS:]
    if answer:
        text = f"--- answer ---\n{answer[-DETAIL_TAIL_CHARS:]}\n--- tests ---\n{text}"
    return text


def _unittest_counts(stderr: str) -> dict[str, int]:
    """Tests run, failures and errors, from unittest's summary lines."""
    counts: dict[str, int] = {}
    ran = _UNITTEST_RAN.findall(stderr)
    if ran:
        counts["tests_run"] = int(ran[-1])
    failed = _UNITTEST_FAILED.findall(stderr)
    if failed:
        for item in failed[-1].split(","):
            key, _, value = item.strip().partition("=")
            if value.isdigit():
                counts[key] = int(value)
    return counts
