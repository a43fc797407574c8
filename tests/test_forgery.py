"""Answers that try to be graded as passed while their tests fail.

Each cheat is a whole answer that defines the entry point wrongly and tries to forge
the verdict some other way: read the pass token and print it, print it from an exit
hook, return an object that equals anything, patch the builtins or unittest the tests
use, print success text, exit 0 early, kill its parent, fork without end, exhaust its
memory. Every one is graded on the three test styles (HumanEval's ``check``, MBPP's
asserts, DataFrameBench's unittest suites), small tasks written here; the tests marked
``shared_data`` also grade them on real HumanEval, MBPP and DataFrameBench tasks.
Where the earlier one-process grader (``boundary=False``) falls for a cheat, the test
shows that too, so the cheat is known to be a real one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sale.envs.coding import CodingEnvironment
from sale.envs.sandbox import Limits
from sale.workloads.loaders import load_tasks
from sale.workloads.standard import runnable
from sale.workloads.task import Task

REPO = Path(__file__).resolve().parents[1]
CODING_DATA = Path(os.environ.get("SALE_SHARED_DATA", REPO.parent / "shared" / "data")) / "coding"

# A value that answers every comparison, truth test, arithmetic and container
# question the way a test would like (a float, for tests that check the type).
ALWAYS_EQUAL = '''
class _Everything(float):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __lt__ = __le__ = __gt__ = __ge__ = __eq__
    def __bool__(self): return True
    def __hash__(self): return 0
    def __len__(self): return 1
    def __iter__(self): return iter([self])
    def __contains__(self, item): return True
    def __getitem__(self, key): return self
    def __getattr__(self, name): return self
    def __call__(self, *a, **k): return self
    def __abs__(self): return 0
    def __float__(self): return 0.0
    def __int__(self): return 0
    def __index__(self): return 0
    def __round__(self, n=None): return self
    def __floor__(self): return self
    __ceil__ = __trunc__ = __floor__
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __call__
    __truediv__ = __rtruediv__ = __floordiv__ = __mod__ = __pow__ = __neg__ = __call__
'''

CHEATS = {
    # 1: the pass token, wherever the grader keeps it, printed before exiting 0
    "read the token": '''
import gc, os, sys
found = set()
for module in list(sys.modules.values()):
    for name, value in list(getattr(module, "__dict__", {}).items()):
        if "token" in name.lower() and isinstance(value, str):
            found.add(value)
frame = sys._getframe()
while frame is not None:
    found.update(v for v in frame.f_locals.values() if isinstance(v, str) and len(v) < 100)
    frame = frame.f_back
for obj in gc.get_objects():
    if isinstance(obj, dict):
        found.update(v for v in obj.values() if isinstance(v, str) and len(v) == 32)
for value in found:
    print(value)
sys.stdout.flush()
os._exit(0)
def {entry}(*args, **kwargs):
    return None
''',
    # 2: an exit hook that prints whatever was read and exits 0 after failing tests
    "exit hook": '''
import atexit, gc, os, sys
def _forge():
    main = sys.modules.get("__main__")
    print(getattr(main, "_token", ""), "OK", flush=True)
    os._exit(0)
atexit.register(_forge)
sys.excepthook = lambda *a: _forge()
def {entry}(*args, **kwargs):
    return None
''',
    # 3: a result that equals everything
    "always-equal result": ALWAYS_EQUAL + '''
def {entry}(*args, **kwargs):
    return _Everything(0.0)
''',
    # 4: a builtin the tests use, patched (the wrong result is at least a float)
    "patched builtins": '''
import builtins
builtins.abs = lambda x: 0
def {entry}(*args, **kwargs):
    return 0.0
''',
    # 5: unittest told that everything passed
    "patched unittest": '''
import unittest
unittest.TestResult.wasSuccessful = lambda self: True
unittest.TestCase.run = lambda self, result=None: result
unittest.TestCase.assertEqual = lambda self, *a, **k: None
unittest.TestCase.assertTrue = lambda self, *a, **k: None
def {entry}(*args, **kwargs):
    return None
''',
    "fake success text": '''
import sys
print("OK"); print("Ran 5 tests in 0.001s"); print("OK"); print("passed", file=sys.stderr)
def {entry}(*args, **kwargs):
    print("OK")
    return None
''',
    "exit 0 early": '''
import sys
def {entry}(*args, **kwargs):
    return None
sys.exit(0)
''',
    "exit 0 from the call": '''
import os
def {entry}(*args, **kwargs):
    print("OK", flush=True)
    os._exit(0)
''',
    "kill the parent": '''
import os, signal
def {entry}(*args, **kwargs):
    for target in (os.getppid(), 1, -1):
        try:
            os.kill(target, signal.SIGKILL)
        except OSError:
            pass
    return None
''',
}

#: Cheats that end with a limit, and the reason the grade must name.
LIMITED = {
    "fork bomb": ('''
import os
def {entry}(*args, **kwargs):
    while True:
        try:
            os.fork()
        except OSError:
            pass
''', "process_limit"),
    "memory exhaustion": ('''
def {entry}(*args, **kwargs):
    hoard = []
    while True:
        hoard.append(bytearray(64 << 20))
''', "memory"),
}

#: Cheats the one-process grader falls for (the others fail there too).
FORGED_BEFORE = {"read the token", "exit hook", "always-equal result", "patched builtins",
                 "patched unittest"}


def _task(style: str) -> Task:
    if style == "humaneval":
        grading = {"style": "humaneval", "entry_point": "mean", "setup": "from typing import List",
                   "tests": "def check(candidate):\n"
                            "    assert abs(candidate([1.0, 2.0, 4.0]) - 7 / 3) < 1e-9\n"
                            "    assert abs(candidate([5.0]) - 5.0) < 1e-9\n"
                            "    assert isinstance(candidate([1.0, 3.0]), float)\n"}
    elif style == "asserts":
        grading = {"style": "asserts", "entry_point": "mean", "setup": "import math",
                   "tests": "assert abs(mean([1.0, 2.0, 4.0]) - 7 / 3) < 1e-9\n"
                            "assert math.isclose(abs(mean([5.0]) - 5.0), 0.0)\n"}
    else:
        grading = {"style": "unittest", "entry_point": "mean", "setup": "",
                   "tests": "import unittest\n\n"
                            "class TestMean(unittest.TestCase):\n"
                            "    def test_values(self):\n"
                            "        self.assertAlmostEqual(mean([1.0, 2.0, 4.0]), 7 / 3)\n"
                            "        self.assertAlmostEqual(mean([5.0]), 5.0)\n"
                            "    def test_type(self):\n"
                            "        self.assertIsInstance(mean([1.0]), float)\n"}
    return Task(id=f"mean-{style}", domain="coding", prompt="Write mean(xs).", grading=grading)


RIGHT = "def mean(xs):\n    return sum(xs) / len(xs)\n"
STYLES = ("humaneval", "asserts", "unittest")
LIMITS = Limits(wall_s=10, cpu_s=10, memory_mb=1024)


@pytest.fixture(scope="module")
def grader() -> CodingEnvironment:
    return CodingEnvironment(grade_limits=LIMITS)


@pytest.mark.parametrize("style", STYLES)
async def test_the_small_tasks_pass_a_right_answer(grader, style):
    grade = await grader.grade(_task(style), RIGHT)
    assert grade.passed, grade.detail


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("cheat", list(CHEATS))
async def test_a_cheat_is_not_graded_as_passed(grader, cheat, style):
    task = _task(style)
    answer = CHEATS[cheat].replace("{entry}", "mean")
    grade = await grader.grade(task, answer)
    assert not grade.passed, (cheat, grade.detail)
    assert grade.score == 0.0
    if cheat in FORGED_BEFORE and not (cheat == "patched unittest" and style != "unittest"):
        before = await CodingEnvironment(grade_limits=LIMITS, boundary=False).grade(task, answer)
        assert before.passed, ("the cheat does not forge the one-process grader", cheat, before.detail)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("cheat", list(LIMITED))
async def test_a_cheat_that_hits_a_limit_fails_with_the_limit_named(cheat, style):
    code, reason = LIMITED[cheat]
    grader = CodingEnvironment(grade_limits=Limits(wall_s=8, cpu_s=8, memory_mb=512, nproc=32))
    grade = await grader.grade(_task(style), code.replace("{entry}", "mean"))
    assert not grade.passed
    assert grade.detail["reason"] == reason, grade.detail


# ------------------------------------------------------------------- real tasks


def _real_tasks() -> list[tuple[Task, str]]:
    """One task of each dataset, with its reference solution."""
    if not (CODING_DATA / "humaneval.jsonl").is_file():
        pytest.skip(f"shared benchmark data not found at {CODING_DATA} (set SALE_SHARED_DATA)")
    picked = []
    for fmt, name, solution in (
            ("humaneval", "humaneval.jsonl", lambda r: r["prompt"] + r["canonical_solution"]),
            ("mbpp", "mbpp_sanitized.jsonl", lambda r: r["code"]),
            ("dataframebench", "dataframebench_val.jsonl", lambda r: r["ground_truth"]["pandas"])):
        raw = {}
        with (CODING_DATA / name).open(encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                raw[str(record["task_id"])] = record
        tasks = [t for t in load_tasks(f"{fmt}:{CODING_DATA / name}") if runnable(t)]
        # HumanEval/2 compares floats with abs(); MBPP/2 uses set(); DFB/V0002 a list of dicts
        task = tasks[2] if fmt != "dataframebench" else next(t for t in tasks if t.id.endswith("V0002"))
        picked.append((task, solution(raw[str(task.metadata["original_id"])])))
    return picked


@pytest.mark.shared_data
async def test_cheats_fail_on_real_humaneval_mbpp_and_dataframebench_tasks(grader):
    for task, reference in _real_tasks():
        right = await grader.grade(task, reference)
        assert right.passed, (task.id, right.detail)
        entry = task.grading["entry_point"]
        for cheat, code in CHEATS.items():
            grade = await grader.grade(task, code.replace("{entry}", entry))
            assert not grade.passed, (task.id, cheat, grade.detail)
