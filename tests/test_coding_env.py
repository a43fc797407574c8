"""The coding environment: code extraction, grading styles, the run_python tool.

Small tasks written here need no shared data; the tests marked ``shared_data`` grade
real HumanEval, MBPP and DataFrameBench tasks (their reference solutions must pass, a
wrong solution must fail) and skip when ../shared/data is absent.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

import pytest

from sale.envs.base import Environment, Tool
from sale.envs.coding import CodingEnvironment, extract_code, normalise_grading
from sale.envs.sandbox import Limits
from sale.errors import TaskFileError
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


_IMPORT = re.compile(r"^(?:from\s+\S+\s+import\s+.+|import\s+.+)$")


@pytest.mark.shared_data
async def test_humaneval_reference_solutions_pass_and_swapped_ones_fail(env):
    records = _records("humaneval.jsonl", 3)
    tasks = [_task({"style": "humaneval", "tests": r["test"], "entry_point": r["entry_point"],
                    "setup": "\n".join(ln for ln in r["prompt"].splitlines() if _IMPORT.match(ln))},
                   r["task_id"]) for r in records]
    answers = [f"```python\n{r['prompt']}{r['canonical_solution']}```" for r in records]
    for i, task in enumerate(tasks):
        assert (await env.grade(task, answers[i])).passed, task.id
        swapped = await env.grade(task, answers[(i + 1) % len(tasks)])
        assert not swapped.passed, task.id


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
