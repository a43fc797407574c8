"""Visible examples: read from real prompts of each dataset, run in the real sandbox."""

from __future__ import annotations

import json

import pytest

from sale.envs.examples import Example, format_report, is_stub, run_examples, visible_examples
from sale.workloads.loaders import load_tasks
from sale.workloads.task import Task


def _records(path):
    return {str(r["task_id"]): r for r in map(json.loads, path.read_text().splitlines()) if r}


@pytest.fixture(scope="module")
def humaneval(shared_data):
    tasks = {t.id: t for t in load_tasks(f"humaneval:{shared_data / 'coding/humaneval.jsonl'}")}
    return tasks, _records(shared_data / "coding/humaneval.jsonl")


def test_humaneval_doctests_are_read_from_the_stub(humaneval):
    tasks, _ = humaneval
    found = visible_examples(tasks["humaneval/HumanEval/0"])
    assert [(e.source, e.want) for e in found] == [
        ("has_close_elements([1.0, 2.0, 3.0], 0.5)", "False"),
        ("has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)", "True"),
    ]
    # a docstring's closing quotes are not part of the expected output
    assert all('"""' not in e.want for t in tasks.values() for e in visible_examples(t))
    # "call ==> value" lines of prompts without doctests, calls with literal arguments only
    arrows = visible_examples(tasks["humaneval/HumanEval/148"])
    assert arrows and all(e.source.startswith("bf(") for e in arrows)
    assert visible_examples(tasks["humaneval/HumanEval/80"]) == []  # is_happy(a) => False: a is no literal
    assert sum(1 for t in tasks.values() if visible_examples(t)) >= 130


def test_mbpp_asserts_and_dataframebench_examples(shared_data):
    mbpp = load_tasks(f"mbpp:{shared_data / 'coding/mbpp_sanitized.jsonl'}", limit=50)
    for task in mbpp:
        found = visible_examples(task)
        assert len(found) == 1 and found[0].source.startswith("assert ") and found[0].want == ""
        assert found[0].source in task.prompt  # the one assert the prompt states, not the hidden ones
    first = visible_examples(mbpp[0])[0]
    assert first.source == "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))"

    dfb = {t.id: t for t in load_tasks(f"dataframebench:{shared_data / 'coding/dataframebench_val.jsonl'}")}
    (example,) = visible_examples(dfb["dataframebench/DFB/V0002"])
    assert example.setup == ("s = '1 10 A10B 100 This is a description with spaces'",)
    assert example.source == "task_func(s)" and example.want.startswith("[{'ID': '1', 'Quantity': 10")


async def test_a_right_solution_passes_and_a_wrong_one_is_reported(humaneval):
    tasks, records = humaneval
    task = tasks["humaneval/HumanEval/0"]
    rec = records["HumanEval/0"]
    found = visible_examples(task)
    right = await run_examples(rec["prompt"] + rec["canonical_solution"], found, setup=task.grading["setup"])
    assert (right.passed, right.total, right.error) == (2, 2, "")
    assert format_report(right) == "The task's examples: 2 of 2 passed."
    wrong = await run_examples("def has_close_elements(numbers, threshold):\n    return False\n", found)
    assert (wrong.passed, wrong.total) == (1, 2)
    report = format_report(wrong)
    assert report.startswith("The task's examples: 1 of 2 passed.")
    assert "FAILED: >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)" in report
    assert "expected: True" in report and "got: False" in report


async def test_canonical_solutions_pass_their_own_examples(shared_data, humaneval):
    tasks, records = humaneval
    for n in (2, 12, 29, 55):
        task, rec = tasks[f"humaneval/HumanEval/{n}"], records[f"HumanEval/{n}"]
        run = await run_examples(rec["prompt"] + rec["canonical_solution"], visible_examples(task), setup=task.grading["setup"])
        assert run.total > 0 and run.all_passed, (task.id, format_report(run))
    mbpp = {t.id: t for t in load_tasks(f"mbpp:{shared_data / 'coding/mbpp_sanitized.jsonl'}", limit=5)}
    mrec = _records(shared_data / "coding/mbpp_sanitized.jsonl")
    for task in mbpp.values():
        run = await run_examples(mrec[task.id.split("/")[1]]["code"], visible_examples(task))
        assert run.all_passed, (task.id, format_report(run))


async def test_errors_timeouts_and_asserts_are_reported_per_example():
    examples = [
        Example(source="f(1)", want="2"),
        Example(source="f(0)", want="1"),  # raises
        Example(source="assert f(3) == 5"),  # f(3) is 4
        Example(source="f(-1)", want="0"),  # never ends
        Example(source="f(10)", want="11"),
    ]
    code = "def f(x):\n    if x == 0:\n        raise ValueError('zero')\n    while x < 0:\n        pass\n    return x + 1\n"
    run = await run_examples(code, examples)
    assert [r["passed"] for r in run.results] == [True, False, False, False, True]
    report = format_report(run)
    assert "raised: ValueError: zero" in report
    assert "FAILED: assert f(3) == 5\n  expected: 5\n  got: 4" in report
    assert "TimeoutError" in report
    broken = await run_examples("def f(x):\n    return x +\n", examples[:2])
    assert broken.error and broken.passed == 0 and "SyntaxError" in format_report(broken)


def test_stubs_are_told_from_solutions():
    stub = 'def f(x):\n    """Return x plus one.\n    >>> f(1)\n    2\n    """\n'
    assert is_stub(stub, "f")
    assert is_stub("def f(x):\n    pass\n", "f") and is_stub("def f(x):\n    ...\n", "f")
    assert is_stub("def f(x):\n    # to do\n    raise NotImplementedError\n", "f")
    assert not is_stub(stub + "    return x + 1\n", "f")
    assert not is_stub("def g(x):\n    pass\n", "f")  # does not define f
    assert not is_stub("def f(x) return", "f")  # does not parse
    assert not is_stub("def f(x):\n    pass\n\ndef f(x):\n    return 1\n", "f")  # the last definition counts


def test_examples_come_from_the_prompt_only():
    task = Task(id="t", domain="coding", prompt="Write f.\n\n```python\ndef f(x):\n    \"\"\"\n    >>> f(1)\n    2\n    \"\"\"\n```",
                grading={"style": "asserts", "entry_point": "f", "tests": "assert f(41) == 42\nassert f(1) == 2"})
    assert [(e.source, e.want) for e in visible_examples(task)] == [("f(1)", "2")]
