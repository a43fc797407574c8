"""The coding environment: code extraction, grading styles, the run_python tool.

Small tasks written here need no shared data; the tests marked ``shared_data`` grade
real HumanEval, MBPP and DataFrameBench tasks (their reference solutions must pass, a
wrong solution must fail) and skip when ../shared/data is absent.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from sale.envs.base import Environment, Tool
from sale.envs.coding import CodingEnvironment, extract_code, normalise_grading
from sale.envs.sandbox import Limits
from sale.errors import TaskFileError
from sale.workloads.loaders import load_tasks
from sale.workloads.task import Task

REPO = Path(__file__).resolve().parents[1]
CODING_DATA = Path(os.environ.get("SALE_SHARED_DATA", REPO.parent / "shared" / "data")) / "coding"


def _task(grading: dict, task_id: str = "t1") -> Task:
    return Task(id=task_id, domain="coding", prompt="Write it.", grading=grading)


ADD_HUMANEVAL = _task({
    "style": "humaneval", "entry_point": "add", "setup": "from typing import List",
    "tests": "def check(candidate):\n    assert candidate(2, 3) == 5\n"
             "    assert candidate(-1, 1) == 0\n",
})
HYPOT_ASSERTS = _task({
    "style": "asserts", "entry_point": "hyp", "setup": ["import math"],
    "tests": ["assert math.isclose(hyp(3, 4), 5.0)", "assert hyp(0, 0) == 0"],
})
WORDS_UNITTEST = _task({
    "style": "unittest", "entry_point": "count_words", "setup": "",
    "tests": ("import unittest\n\n"
              "class TestCases(unittest.TestCase):\n"
              "    def test_simple(self):\n"
              "        self.assertEqual(count_words('a b a'), {'a': 2, 'b': 1})\n\n"
              "    def test_empty(self):\n"
              "        self.assertEqual(count_words(''), {})\n\n"
              "if __name__ == '__main__':\n"
              "    unittest.main()\n"),
})
WORDS_OK = ("from collections import Counter\n\n"
            "def count_words(text):\n    return dict(Counter(text.split()))\n")


@pytest.fixture(scope="module")
def env() -> CodingEnvironment:
    return CodingEnvironment(grade_limits=Limits(wall_s=20, cpu_s=20, memory_mb=2048))


# ------------------------------------------------------------------- code extraction


def test_extract_plain_code_is_kept():
    code = "def f():\n    return 1\n"
    assert extract_code(code, "f") == code.strip("\n")


def test_extract_prefers_the_last_python_block_defining_the_entry_point():
    answer = ("First try:\n```python\ndef f():\n    return 0  # a long first draft\n```\n"
              "Fixed:\n```python\ndef f():\n    return 1\n```\n"
              "Usage:\n```python\nprint(f())\n```\n"
              "```bash\npython main.py --with --many --flags --to --be --longest\n```\n")
    assert extract_code(answer, "f") == "def f():\n    return 1"


def test_extract_takes_the_longest_block_without_an_entry_point():
    answer = "```\nx = 1\n```\nthen\n```py\nx = 1\ny = 2\n```\nand\n```python\nz = 3\n```"
    assert extract_code(answer) == "x = 1\ny = 2"


def test_extract_handles_other_languages_and_cut_off_fences():
    assert extract_code("```text\nonly this\n```") == "only this"
    assert extract_code("Here:\n```python\ndef g():\n    return 2\n") == "def g():\n    return 2"


def test_extract_drops_leading_prose_and_ignores_fences_inside_docstrings():
    assert extract_code("Sure, here it is:\ndef h():\n    return 3") == "def h():\n    return 3"
    code = 'def k():\n    """Example:\n    ```\n    k()\n    ```\n    """\n    return 4\n'
    assert extract_code(code, "k") == code.strip("\n")


# ------------------------------------------------------------------ grading form


def test_normalise_grading_joins_lists_and_infers_the_style():
    grading = normalise_grading(HYPOT_ASSERTS)
    assert grading == {"style": "asserts", "entry_point": "hyp", "setup": "import math",
                       "tests": "assert math.isclose(hyp(3, 4), 5.0)\nassert hyp(0, 0) == 0"}
    inferred = normalise_grading(_task({"tests": "def check(candidate):\n    pass\n",
                                        "entry_point": "f"}))
    assert inferred["style"] == "humaneval"
    unittest_tests = _task({"tests": WORDS_UNITTEST.grading["tests"]})
    assert normalise_grading(unittest_tests)["style"] == "unittest"


@pytest.mark.parametrize("grading, field", [
    ({"style": "asserts"}, "tests"),
    ({"style": "pytest", "tests": "assert True"}, "style"),
    ({"style": "humaneval", "tests": "def check(c): pass"}, "entry_point"),
    ({"tests": "assert True", "entry_point": "not a name"}, "entry_point"),
    ({"tests": 42}, "tests"),
])
def test_bad_grading_is_reported_with_task_and_field(grading, field):
    with pytest.raises(TaskFileError, match=rf"task 'bad-1': grading\.{field}"):
        normalise_grading(_task(grading, "bad-1"))


# --------------------------------------------------------------------------- grading


async def test_humaneval_style_passes_a_right_answer_and_fails_a_wrong_one(env):
    right = "```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```"
    wrong = "def add(a, b):\n    return a - b\n"
    good = await env.grade(ADD_HUMANEVAL, right)
    bad = await env.grade(ADD_HUMANEVAL, wrong)
    assert good.passed and good.score == 1.0
    assert good.detail["reason"] == "ok" and good.detail["style"] == "humaneval"
    assert "rlimits" in good.detail["isolation"]
    assert not bad.passed and bad.score == 0.0
    assert "AssertionError" in bad.detail["stderr_tail"]


async def test_setup_prelude_supplies_imports_the_answer_left_out(env):
    answer = "def add(a: List[int], b) -> int:\n    return a + b\n"  # List from setup
    assert (await env.grade(ADD_HUMANEVAL, answer)).passed


async def test_asserts_style_with_test_imports(env):
    assert (await env.grade(HYPOT_ASSERTS, "def hyp(a, b):\n    return (a*a + b*b) ** 0.5")).passed
    missing = await env.grade(HYPOT_ASSERTS, "def other(a, b):\n    return 0")
    assert not missing.passed and "NameError" in missing.detail["stderr_tail"]


async def test_unittest_style_counts_tests_and_failures(env):
    good = await env.grade(WORDS_UNITTEST, WORDS_OK)
    assert good.passed and good.detail["tests_run"] == 2
    bad = await env.grade(WORDS_UNITTEST, "def count_words(text):\n    return {'a': 2, 'b': 1}\n")
    assert not bad.passed
    assert bad.detail["tests_run"] == 2 and bad.detail["failures"] == 1


async def test_answer_that_exits_early_does_not_pass(env):
    for exit_call in ("import sys\nsys.exit(0)", "import os\nos._exit(0)"):
        answer = f"def add(a, b):\n    return 0\n\n{exit_call}\n"
        grade = await env.grade(ADD_HUMANEVAL, answer)
        assert not grade.passed, exit_call


async def test_main_guard_in_the_answer_does_not_run(env):
    answer = ("def add(a, b):\n    return a + b\n\n"
              "if __name__ == '__main__':\n    print(add(int(input()), 1))\n")
    assert (await env.grade(ADD_HUMANEVAL, answer)).passed


async def test_runaway_answer_fails_with_timeout():
    quick = CodingEnvironment(grade_limits=Limits(wall_s=1, cpu_s=5))
    grade = await quick.grade(ADD_HUMANEVAL, "def add(a, b):\n    while True:\n        pass\n")
    assert not grade.passed and grade.detail["reason"] == "timeout"


async def test_empty_answer_fails_without_running(env):
    grade = await env.grade(ADD_HUMANEVAL, "  \n")
    assert not grade.passed and grade.detail["reason"] == "empty answer"


# ---------------------------------------------------------------- tool and protocol


def test_environment_protocol_and_texts(env):
    assert isinstance(env, Environment) and env.name == "coding"
    text = env.describe(ADD_HUMANEVAL)
    assert "run_python" in text and "`add`" in text
    assert "`add`" in env.answer_instructions(ADD_HUMANEVAL)
    assert "```python" in env.answer_instructions(_task({"tests": "assert True"}))


async def test_run_python_tool_shows_output_and_errors(env):
    [tool] = env.tools(ADD_HUMANEVAL)
    assert isinstance(tool, Tool) and tool.name == "run_python"
    assert tool.parameters["required"] == ["code"]
    text = await tool.run(code="print(6 * 7)")
    assert "exit status 0" in text and "42" in text and "stderr: (empty)" in text
    failing = await tool.run(code="```python\nraise ValueError('boom')\n```")
    assert "exit status 1" in failing and "ValueError: boom" in failing


async def test_tool_output_is_cut_to_the_tool_limit():
    small = CodingEnvironment(tool_limits=Limits(output_chars=500))
    [tool] = small.tools(ADD_HUMANEVAL)
    text = await tool.run(code="print('y' * 50_000)")
    assert "bytes cut" in text and len(text) < 1000


# ---------------------------------------------------------------------- real data


def _records(name: str, count: int, keep=lambda r: True) -> list[dict]:
    path = CODING_DATA / name
    if not path.is_file():
        pytest.skip(f"shared benchmark data not found at {path} (set SALE_SHARED_DATA)")
    records = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if keep(record):
                records.append(record)
            if len(records) == count:
                break
    return records


@pytest.mark.shared_data
async def test_humaneval_reference_solutions_pass_and_swapped_ones_fail(env):
    records = _records("humaneval.jsonl", 3)
    tasks = {t.metadata["original_id"]: t for t in load_tasks(f"humaneval:{CODING_DATA / 'humaneval.jsonl'}")}
    answers = [f"```python\n{r['prompt']}{r['canonical_solution']}```" for r in records]
    for i, record in enumerate(records):
        task = tasks[record["task_id"]]
        assert (await env.grade(task, answers[i])).passed, task.id
        swapped = await env.grade(task, answers[(i + 1) % len(records)])
        assert not swapped.passed, task.id


@pytest.mark.shared_data
async def test_humaneval_answers_may_use_the_helpers_their_stub_defines(env):
    """HumanEval/10, /32, /38 and /50 define a helper next to the entry point; an answer
    with only the entry point passes, as with prompt + completion officially."""
    records = _records("humaneval.jsonl", 164, keep=lambda r: r["task_id"] in {
        "HumanEval/10", "HumanEval/32", "HumanEval/38", "HumanEval/50"})
    tasks = {t.metadata["original_id"]: t for t in load_tasks(f"humaneval:{CODING_DATA / 'humaneval.jsonl'}")}
    assert len(records) == 4
    for record in records:
        prompt = record["prompt"]
        only_entry = prompt[prompt.index(f"def {record['entry_point']}("):] + record["canonical_solution"]
        grade = await env.grade(tasks[record["task_id"]], only_entry)
        assert grade.passed, (record["task_id"], grade.detail["stderr_tail"])


@pytest.mark.shared_data
async def test_mbpp_reference_solutions_pass_and_swapped_ones_fail(env):
    records = _records("mbpp_sanitized.jsonl", 2) + _records(
        "mbpp_sanitized.jsonl", 1, keep=lambda r: bool(r["test_imports"]))
    tasks = [_task({"style": "asserts", "tests": r["test_list"], "entry_point": None,
                    "setup": r["test_imports"]}, str(r["task_id"])) for r in records]
    for i, task in enumerate(tasks):
        assert (await env.grade(task, records[i]["code"])).passed, task.id
        swapped = await env.grade(task, records[(i + 1) % len(tasks)]["code"])
        assert not swapped.passed, task.id


def _importable(record: dict) -> bool:
    names = {"scikit-learn": "sklearn"}
    libs = ["pandas", *record["libs"]]
    return all(importlib.util.find_spec(names.get(lib, lib)) for lib in libs)


@pytest.mark.shared_data
async def test_dataframebench_reference_solutions_pass_and_wrong_ones_fail(env):
    if importlib.util.find_spec("pandas") is None:
        pytest.skip("pandas is not installed: DataFrameBench solutions cannot run")
    records = _records("dataframebench_val.jsonl", 2,
                       keep=lambda r: _importable(r) and "matplotlib" not in r["libs"])
    if len(records) < 2:
        pytest.skip("fewer than two DataFrameBench val tasks have their libraries installed")
    for i, record in enumerate(records):
        task = _task({"style": "unittest", "tests": record["test_code"],
                      "entry_point": record["entry_point"], "setup": ""}, record["task_id"])
        grade = await env.grade(task, record["ground_truth"]["pandas"])
        assert grade.passed, (task.id, grade.detail["stderr_tail"])
        assert grade.detail["tests_run"] > 0
        other = records[(i + 1) % len(records)]["ground_truth"]["pandas"]
        assert not (await env.grade(task, other)).passed, task.id


# ------------------------------------------------- official semantics across the boundary


async def test_stub_helpers_are_in_scope_for_an_answer_that_defines_only_the_entry_point(env):
    stub = ("def is_even(n: int) -> bool:\n    return n % 2 == 0\n\n\n"
            "def evens(xs):\n    \"\"\"The even numbers of xs.\"\"\"\n")
    task = _task({"style": "humaneval", "entry_point": "evens", "setup": stub,
                  "tests": "def check(candidate):\n    assert candidate([1, 2, 4]) == [2, 4]\n"})
    assert (await env.grade(task, "def evens(xs):\n    return [x for x in xs if is_even(x)]\n")).passed
    assert not (await env.grade(task, "def other(xs):\n    return xs\n")).passed  # the stub returns None


async def test_an_answer_that_reassigns_stdout_and_prints_a_lot_still_passes(env):
    answer = ("import io, sys\nsys.stdout = io.StringIO()\nprint('x' * 10_000)\n"
              "def add(a, b):\n    sys.stdout = sys.__stdout__\n"
              "    for _ in range(2000):\n        print('noise ' * 20)\n    return a + b\n")
    grade = await env.grade(ADD_HUMANEVAL, answer)
    assert grade.passed, grade.detail


async def test_sets_floats_exceptions_and_objects_compare_as_in_one_process(env):
    tests = '''
import math
assert pairs([1, 2, 2]) == {(1, 2), (2, 2)} and isinstance(pairs([]), set)
assert math.isnan(ratio(0.0, 0.0)) and ratio(1.0, 3.0) == 1 / 3 and ratio(-0.0, 1.0) == 0.0
assert math.copysign(1, ratio(-0.0, 1.0)) == -1
try:
    ratio(1, "x")
except TypeError as exc:
    assert "unsupported" in str(exc)
else:
    raise AssertionError("no TypeError")
try:
    check_positive(-1)
except ValueError as exc:  # a subclass of ValueError the answer defines
    assert type(exc).__name__ == "Negative" and exc.args == ("-1 is negative",)
else:
    raise AssertionError("no ValueError")
box = Box(3)
assert box.size == 3 and box.doubled() == 6 and len(box) == 3 and list(box) == [0, 1, 2]
assert grow(box).size == 4 and box != Box(3)  # the answer's objects equal only themselves
assert list(gen(3)) == [0, 1, 2] and gen(3) != [0, 1, 2]
'''
    answer = '''
import math
from itertools import product
def pairs(xs):
    return {(a, b) for a, b in product(xs, xs) if a < b or (a == b == 2)}
def ratio(a, b):
    if a == 0 and b == 0:
        return math.nan
    return a / b
class Negative(ValueError):
    pass
def check_positive(n):
    if n < 0:
        raise Negative(f"{n} is negative")
class Box:
    def __init__(self, size): self.size = size
    def doubled(self): return 2 * self.size
    def __len__(self): return self.size
    def __iter__(self): return iter(range(self.size))
def grow(box):
    return Box(box.size + 1)
def gen(n):
    yield from range(n)
'''
    task = _task({"style": "asserts", "entry_point": "pairs", "setup": "", "tests": tests})
    grade = await env.grade(task, answer)
    assert grade.passed, grade.detail["stderr_tail"]


@pytest.mark.skipif(importlib.util.find_spec("pandas") is None, reason="pandas is not installed")
async def test_dataframes_files_and_library_objects_cross_as_data(env):
    tests = '''
import os, tempfile, unittest
import numpy as np
import pandas as pd
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

class TestFrames(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "in.csv")
        pd.DataFrame({"g": ["a", "b", "a"], "v": [1.0, 2.0, np.nan]}).to_csv(self.path, index=False)

    def test_frame_from_a_file_the_tests_wrote(self):
        result = task_func(self.path)
        expected = pd.DataFrame({"v": [1.0, 2.0]}, index=pd.Index(["a", "b"], name="g"))
        pd.testing.assert_frame_equal(result, expected)

    def test_frame_argument_and_array_result(self):
        frame = pd.DataFrame({"x": [1, 2, 3]}, index=[5, 6, 7])
        np.testing.assert_array_equal(doubled(frame), np.array([2, 4, 6]))

    def test_a_plot(self):
        ax = plot([1, 2, 3])
        self.assertIsInstance(ax, plt.Axes)
        self.assertEqual(ax.get_title(), "bars")
        self.assertEqual(len(ax.patches), 3)
        self.assertEqual([p.get_height() for p in ax.patches], [1.0, 2.0, 3.0])

    def test_errors(self):
        with self.assertRaises(FileNotFoundError):
            task_func(os.path.join(self.dir, "missing.csv"))
        with self.assertRaises(pd.errors.EmptyDataError):
            open(os.path.join(self.dir, "empty.csv"), "w").close()
            task_func(os.path.join(self.dir, "empty.csv"))
'''
    answer = '''
import pandas as pd
import matplotlib.pyplot as plt
def task_func(path):
    return pd.read_csv(path).groupby("g").sum()
def doubled(frame):
    return (frame["x"] * 2).to_numpy()
def plot(values):
    fig, ax = plt.subplots()
    ax.bar(range(len(values)), values)
    ax.set_title("bars")
    return ax
'''
    task = _task({"style": "unittest", "entry_point": "task_func", "setup": "", "tests": tests})
    grade = await env.grade(task, answer)
    assert grade.passed and grade.detail["tests_run"] == 4, grade.detail["stderr_tail"]
    wrong = answer.replace('groupby("g").sum()', 'groupby("g").mean()')
    wrong = wrong.replace('set_title("bars")', 'set_title("bar")')
    bad = await env.grade(task, wrong)
    assert not bad.passed and bad.detail["failures"] == 1, bad.detail["stderr_tail"]


async def test_patches_and_random_seeds_of_the_tests_reach_the_answer(env):
    tests = '''
import io, random, unittest
from unittest.mock import patch

class TestShared(unittest.TestCase):
    @patch(__name__ + ".choice", return_value=7)
    def test_a_patched_name_of_the_answer(self, mock_choice):
        self.assertEqual(pick([1, 2, 3]), 7)
        mock_choice.assert_called_once_with([1, 2, 3])

    def test_a_seed_the_tests_set(self):
        random.seed(3)
        expected = [random.randint(0, 100) for _ in range(5)]
        random.seed(3)
        self.assertEqual(draws(5), expected)
        self.assertEqual(random.randint(0, 100), (random.seed(3), [random.randint(0, 100) for _ in range(6)])[1][5])

    @patch("sys.stdout", new_callable=io.StringIO)
    def test_printed_output(self, stdout):
        shout("hi")
        self.assertEqual(stdout.getvalue(), "HI\\n")
'''
    answer = '''
import random
from random import choice
def pick(xs):
    return choice(xs)
def draws(n):
    return [random.randint(0, 100) for _ in range(n)]
def shout(text):
    print(text.upper())
'''
    task = _task({"style": "unittest", "entry_point": "pick", "setup": "", "tests": tests})
    grade = await env.grade(task, answer)
    assert grade.passed and grade.detail["tests_run"] == 3, grade.detail["stderr_tail"]


async def test_a_patch_reaches_the_answer_when_the_tests_import_mock_late(env):
    # unittest.mock is imported only while check() runs, after the tests were loaded
    tests = (
        "def check(candidate):\n"
        "    from unittest import mock\n"
        "    with mock.patch('os.getcwd', return_value='/patched'):\n"
        "        assert candidate() == '/patched'\n"
        "    assert candidate() != '/patched'\n")
    task = _task({"style": "humaneval", "entry_point": "where", "setup": "", "tests": tests})
    grade = await env.grade(task, "import os\ndef where():\n    return os.getcwd()\n")
    assert grade.passed, grade.detail["stderr_tail"]
    bad = await env.grade(task, "def where():\n    return '/patched'\n")
    assert not bad.passed
