"""A coding task's visible examples: found in its prompt, run against a candidate.

The hidden tests grade an answer; the examples a task states in its own prompt are
there for the agent to check its work against. `visible_examples` reads them from
``task.prompt`` only (never from ``task.grading``), in the forms the public datasets
write them:

- doctests (``>>> call`` and the expected output below it), in a docstring of the
  prompt's code (HumanEval) or in its prose (DataFrameBench's "Example:" sections);
- ``call ==> value`` / ``call == value`` / ``call -> value`` lines of a docstring that
  name the task's function (the HumanEval prompts without doctests);
- ``assert`` statements in the prompt's code blocks (MBPP states one).

`run_examples` runs a candidate and the examples in the sandbox (`sale.envs.sandbox`)
in a fresh process: the candidate is executed as a module, then each example is run
with a time limit of its own, and one result line per example comes back. A value that
reads as a Python literal is compared by value, other expected output as doctest text
(whitespace normalised, ``...`` as a wildcard). `format_report` says what passed and,
for each failure, the call, what was expected and what came out.

`is_stub` tells a function whose body is only a docstring, ``pass``, ``...`` or
``raise NotImplementedError`` (the task's stub handed back unchanged).
"""

from __future__ import annotations

import ast
import doctest
import json
import re
import secrets
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

from sale.envs.sandbox import Limits, run_python
from sale.workloads.task import Task

#: Examples kept per task (the first ones in the prompt).
MAX_EXAMPLES = 12
#: Failures spelled out in a report; the rest are counted.
MAX_SHOWN_FAILURES = 4
#: Characters of a value shown in a report.
SHOWN_CHARS = 300

_FENCE = re.compile(r"^ {0,3}```[ \t]*([\w+.-]*)[^\n]*\n(.*?)^ {0,3}```[ \t]*$", re.MULTILINE | re.DOTALL)
_ARROW = re.compile(r"^\s*(?P<call>.+?\))\s*(?:#\s*)?(?:==>|=>|->|➞|==|returns?|should return|should be)\s*(?P<want>\S.*?)\s*$")


@dataclass(frozen=True)
class Example:
    """One visible example.

    ``setup``: statements run before it (``>>> s = ...`` lines of a doctest);
    ``source``: the expression or statement under test; ``want``: the expected output
    as the prompt writes it ("" for a statement, such as an ``assert``);
    ``shown``: how the prompt states it, for reports.
    """

    source: str
    want: str = ""
    setup: tuple[str, ...] = ()
    shown: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "want": self.want, "setup": list(self.setup), "shown": self.shown or self.source}


@dataclass
class ExampleRun:
    """What a candidate did on the examples: ``results`` (one per example, in order:
    ``passed``, ``got``, ``error``), and ``error`` when the candidate could not be run
    at all (it does not compile, or raised when executed)."""

    examples: list[Example]
    results: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""

    @property
    def total(self) -> int:
        return len(self.examples)

    @property
    def passed(self) -> int:
        return sum(1 for r in self.results if r.get("passed"))

    @property
    def all_passed(self) -> bool:
        return self.passed == self.total


# ----------------------------------------------------------------------------- finding them


def _parses(source: str) -> ast.Module | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ast.parse(source)
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            return None


def _docstrings(code: str) -> list[str]:
    """The docstrings of a code block (module, classes, functions); the raw block, minus
    lines that only close a string, when it does not parse (a stub without a body)."""
    tree = _parses(code) or _parses(code.rstrip() + "\n    pass\n")
    if tree is None:
        return ["\n".join(ln for ln in code.splitlines() if ln.strip() not in ('"""', "'''"))]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                found.append(doc)
    return found


def _segments(prompt: str) -> tuple[list[str], list[str]]:
    """(prose, code blocks) of a prompt: the text outside fences, and the fenced bodies."""
    code = [m.group(2) for m in _FENCE.finditer(prompt)]
    prose = _FENCE.sub("\n\n", prompt)
    return [prose], code


def _literal(text: str) -> bool:
    try:
        ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return True


def _doctests(text: str) -> list[Example]:
    try:
        parsed = doctest.DocTestParser().get_examples(text)
    except ValueError:  # inconsistent indentation and the like
        return []
    out: list[Example] = []
    setup: list[str] = []
    for ex in parsed:
        source = ex.source.rstrip("\n")
        want = ex.want.rstrip("\n")
        if not want and not source.lstrip().startswith(("assert ", "print(")):
            setup.append(source)  # an assignment or import the next call needs
            continue
        shown = "\n".join([*(f">>> {s}" for s in setup), f">>> {source}", *(want.splitlines() if want else [])])
        out.append(Example(source=source, want=want, setup=tuple(setup), shown=shown))
    return out


def _literal_call(source: str) -> bool:
    """Whether ``source`` is one call whose arguments are all literals."""
    tree = _parses(source)
    if tree is None or len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return False
    call = tree.body[0].value
    if not isinstance(call, ast.Call):
        return False
    return all(_literal(ast.unparse(a)) for a in [*call.args, *(k.value for k in call.keywords)])


def _arrow_lines(text: str, entry_point: str) -> list[Example]:
    """``f(1, 2) ==> 3`` lines naming the task's function, with a literal on the right."""
    out = []
    for line in text.splitlines():
        match = _ARROW.match(line)
        if not match or f"{entry_point}(" not in match["call"]:
            continue
        call = match["call"].strip()
        call = call[call.index(f"{entry_point}(") :]
        want = match["want"].rstrip(" .,;")
        if not _literal_call(call) or not _literal(want):
            continue
        out.append(Example(source=call, want=want, shown=line.strip()))
    return out


def _asserts(code: str) -> list[Example]:
    tree = _parses(code)
    if tree is None:
        return []
    return [Example(source=ast.get_source_segment(code, node) or ast.unparse(node))
            for node in tree.body if isinstance(node, ast.Assert)]


def visible_examples(task: Task) -> list[Example]:
    """The examples ``task.prompt`` states (at most `MAX_EXAMPLES`, first first).

    Only the prompt is read: what the agent was shown, nothing of the hidden tests.
    Examples that name none of the prompt's functions are kept too (a doctest of a
    helper); duplicates are dropped.
    """
    entry = task.grading.get("entry_point") if isinstance(task.grading, dict) else None
    prose, blocks = _segments(task.prompt or "")
    found: list[Example] = []
    for block in blocks:
        for doc in _docstrings(block):
            found += _doctests(doc)
            if isinstance(entry, str) and entry and not _doctests(doc):
                found += _arrow_lines(doc, entry)
        found += _asserts(block)
    for text in prose:
        found += _doctests(text)
    unique: dict[tuple[str, str, tuple[str, ...]], Example] = {}
    for ex in found:
        unique.setdefault((ex.source, ex.want, ex.setup), ex)
    return list(unique.values())[:MAX_EXAMPLES]


# ----------------------------------------------------------------------------- stubs


def _function(tree: ast.Module, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    found = None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            found = node  # the last definition is the one that counts
    return found


def _empty_statement(node: ast.stmt) -> bool:
    if isinstance(node, ast.Pass):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return node.value.value is Ellipsis or isinstance(node.value.value, str)
    if isinstance(node, ast.Raise) and node.exc is not None:
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


def is_stub(code: str, entry_point: str) -> bool:
    """Whether ``code`` defines ``entry_point`` with no body: only a docstring, ``pass``,
    ``...`` or ``raise NotImplementedError`` (comments aside). Code that does not parse,
    or does not define the function, is not a stub."""
    tree = _parses(code)
    if tree is None:
        return False
    func = _function(tree, entry_point)
    return func is not None and all(_empty_statement(s) for s in func.body)


# ----------------------------------------------------------------------------- running them

# The program run in the sandbox. It reads a marker from stdin, executes the candidate
# (candidate.py) as a module named "candidate", then runs each example of examples.json
# with an alarm of its own, printing one marked JSON line per example as it finishes.
_RUNNER = r'''
import ast, contextlib, doctest, io, json, math, signal, sys, time, traceback
started = time.monotonic()
marker = sys.stdin.readline().strip()
out = sys.stdout
examples = json.load(open("examples.json", encoding="utf-8"))
budget = float(sys.argv[1]) if len(sys.argv) > 1 else 8.0
per_example = budget

def say(record):
    out.write(marker + json.dumps(record) + "\n")
    out.flush()

def alarm(signum, frame):
    raise TimeoutError(f"took longer than {per_example:g} s")

signal.signal(signal.SIGALRM, alarm)
ns = {"__name__": "candidate"}
try:
    signal.setitimer(signal.ITIMER_REAL, budget)
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(open("setup.py", encoding="utf-8").read() + "\n" + open("candidate.py", encoding="utf-8").read(), "candidate.py", "exec"), ns)
    signal.setitimer(signal.ITIMER_REAL, 0)
except BaseException as exc:
    signal.setitimer(signal.ITIMER_REAL, 0)
    say({"load_error": "".join(traceback.format_exception_only(type(exc), exc)).strip()[-500:]})
    sys.exit(0)

def same(got, want):
    if got == want:
        return True
    if isinstance(got, float) and isinstance(want, (int, float)):
        return math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(got, (list, tuple)) and isinstance(want, (list, tuple)) and len(got) == len(want) and type(got) is type(want):
        return all(same(g, w) for g, w in zip(got, want))
    return False

checker = doctest.OutputChecker()
flags = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
def expected_value(want):
    """The expected output as a value: a literal, else an expression of the prompt's
    (datetime.datetime(...), np.float64(...)) evaluated beside the candidate."""
    try:
        return True, ast.literal_eval(want.strip())
    except Exception:
        pass
    try:
        scope = dict(ns)
        for name, module in (("datetime", "datetime"), ("np", "numpy"), ("numpy", "numpy"), ("pd", "pandas"), ("pandas", "pandas")):
            if name + "." in want and name not in scope:
                scope[name] = __import__(module)
        return True, eval(compile(want.strip(), "<expected>", "eval"), scope)
    except BaseException:
        return False, None

for n, ex in enumerate(examples):
    record = {"passed": False}
    buffer = io.StringIO()
    # an equal share of the time left, so one slow example leaves time for the others
    per_example = max(0.5, (budget - (time.monotonic() - started)) / (len(examples) - n))
    try:
        signal.setitimer(signal.ITIMER_REAL, per_example)
        with contextlib.redirect_stdout(buffer):
            for line in ex["setup"]:
                exec(compile(line, "<example>", "single" if "\n" not in line else "exec"), ns)
            source, want = ex["source"], ex["want"]
            try:
                code = compile(source, "<example>", "eval")
            except SyntaxError:
                code = None
            if code is None:
                if isinstance(ast.parse(source).body[0], ast.Assert) and isinstance(ast.parse(source).body[0].test, ast.Compare):
                    test = ast.parse(source).body[0].test
                    if len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
                        left = eval(compile(ast.Expression(test.left), "<example>", "eval"), ns)
                        right = eval(compile(ast.Expression(test.comparators[0]), "<example>", "eval"), ns)
                        record["got"] = repr(left)[:2000]
                        record["expected"] = repr(right)[:2000]
                exec(compile(source, "<example>", "exec"), ns)
                value, has_value = None, False
            else:
                value, has_value = eval(code, ns), True
        signal.setitimer(signal.ITIMER_REAL, 0)
        printed = buffer.getvalue()
        got = printed + (repr(value) + "\n" if has_value and value is not None else "")
        record["got"] = record.get("got", got.rstrip("\n"))
        if not want:
            record["passed"] = True
        else:
            literal, expected = expected_value(want) if has_value and not printed else (False, None)
            record["passed"] = checker.check_output(want + "\n", got, flags)
            if literal and not record["passed"]:
                try:
                    record["passed"] = bool(same(value, expected))
                except Exception:  # e.g. comparing arrays
                    pass
    except BaseException as exc:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if isinstance(exc, AssertionError) and "got" in record:
            record["error"] = "AssertionError"
        else:
            record["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-500:]
        if ex["want"].lstrip().startswith("Traceback") and not isinstance(exc, (AssertionError, TimeoutError)):
            record["passed"] = type(exc).__name__ in ex["want"]
    say(record)
'''


async def run_examples(
    code: str,
    examples: Sequence[Example],
    *,
    setup: str = "",
    limits: Limits | None = None,
    hide_paths: Sequence[str] = (),
) -> ExampleRun:
    """Run ``code`` (a candidate solution) and then each example, in the sandbox.

    ``setup`` runs before the code (a task's own imports). Each example has a share of
    the wall-clock limit; an example that does not report back (a loop that never
    ends, a crash of the process) counts as failed.
    """
    examples = list(examples)
    run = ExampleRun(examples)
    if not examples:
        return run
    limits = limits or Limits(wall_s=10, cpu_s=10, memory_mb=1024, output_chars=20_000)
    budget = max(1.0, limits.wall_s - 1.0)  # the candidate's import and all examples
    marker = "@@example-" + secrets.token_hex(8) + "@@"
    files = {
        "candidate.py": code,
        "setup.py": setup,
        "examples.json": json.dumps([ex.to_dict() for ex in examples]),
        "runner.py": _RUNNER,
    }
    main = f"import runpy, sys\nsys.argv = ['runner.py', '{budget}']\nrunpy.run_path('runner.py', run_name='__main__')\n"
    result = await run_python(main, stdin=marker + "\n", limits=limits, files=files, hide_paths=tuple(hide_paths))
    for line in result.stdout.splitlines():
        if not line.startswith(marker):
            continue
        try:
            record = json.loads(line[len(marker):])
        except json.JSONDecodeError:
            continue
        if "load_error" in record:
            run.error = str(record["load_error"])
            break
        run.results.append(record)
    if not run.error and len(run.results) < len(examples):
        why = "the run " + (result.reason if result.reason != "ok" else "stopped early")
        tail = result.stderr.strip().splitlines()[-1:] if result.stderr.strip() else []
        for _ in range(len(examples) - len(run.results)):
            run.results.append({"passed": False, "error": f"did not finish ({why})" + (f": {tail[0][:200]}" if tail else "")})
    if run.error:
        run.results = [{"passed": False, "error": run.error} for _ in examples]
    return run


def _cut(text: str) -> str:
    text = str(text)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + " ..."


def format_report(run: ExampleRun) -> str:
    """The observation about a run of the examples: counts, then the failures."""
    if not run.total:
        return ""
    if run.error:
        return (f"The task's examples could not run: the code raised an error when executed:\n{_cut(run.error)}")
    head = f"The task's examples: {run.passed} of {run.total} passed."
    if run.all_passed:
        return head
    lines = [head]
    failures = [(ex, r) for ex, r in zip(run.examples, run.results) if not r.get("passed")]
    for ex, r in failures[:MAX_SHOWN_FAILURES]:
        lines.append(f"FAILED: {_cut(ex.shown or ex.source)}")
        if ex.want:
            lines.append(f"  expected: {_cut(ex.want)}")
        elif r.get("expected") is not None:
            lines.append(f"  expected: {_cut(r['expected'])}")
        if r.get("error") and r.get("error") != "AssertionError":
            lines.append(f"  raised: {_cut(r['error'])}")
        elif "got" in r:
            lines.append(f"  got: {_cut(r['got']) or '(nothing)'}")
    if len(failures) > MAX_SHOWN_FAILURES:
        lines.append(f"... and {len(failures) - MAX_SHOWN_FAILURES} more failed.")
    return "\n".join(lines)


__all__ = ["Example", "ExampleRun", "format_report", "is_stub", "run_examples", "visible_examples"]
