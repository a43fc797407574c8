"""Workloads: loaders for every task format, tiers, the standard workload and its split,
and the shipped demo workload (whose reference solutions must pass its hidden tests)."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from sale.errors import ConfigError, TaskFileError
from sale.workloads.loaders import (
    DATAFRAMEBENCH_LIBRARY_IMPORT,
    document_id,
    load_documents,
    load_tasks,
    subquestion_text,
    write_tasks,
)
from sale.workloads.standard import runnable, demo_workload, split, standard_workload
from sale.workloads.task import Task
from sale.workloads.tiers import coding_tier, search_tier, tier_name


def all_text(value) -> str:
    """Every string inside a task (prompt, grading, metadata, documents), joined."""
    if isinstance(value, Task):
        value = value.model_dump()
    if isinstance(value, dict):
        return "\n".join(all_text(v) for v in value.values())
    if isinstance(value, list):
        return "\n".join(all_text(v) for v in value)
    return str(value)


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# ------------------------------------------------------------------ program runner


def program(grading: dict, solution: str) -> str:
    """The script a grader runs for ``solution``: setup, answer, tests, then the call
    that runs the tests for the grading style."""
    parts = [grading.get("setup", ""), solution, grading["tests"]]
    style = grading["style"]
    if style == "humaneval":
        parts.append(f"check({grading['entry_point']})")
    elif style == "unittest":
        parts.append(
            "import sys as _sys, unittest as _ut\n"
            "_r = _ut.main(module=__name__, argv=['tests'], exit=False, verbosity=0)\n"
            "_sys.exit(0 if _r.result.wasSuccessful() else 1)"
        )
    else:
        assert style == "asserts", style
    return "\n\n".join(parts) + "\n"


def passes(tmp_path: Path, name: str, grading: dict, solution: str) -> bool:
    script = tmp_path / f"{name}.py"
    script.write_text(program(grading, solution), encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    return done.returncode == 0


# --------------------------------------------------------------------------- tiers


def test_tiers_follow_the_documented_ladder():
    assert coding_tier("mbpp") == (1, "coding/1 mbpp")
    assert coding_tier("humaneval") == (2, "coding/2 humaneval")
    assert coding_tier("dataframebench") == (3, "coding/3 dataframebench")
    assert [search_tier(h) for h in (1, 2, 3, 4)] == [
        (1, "search/1 single-hop"), (2, "search/2 2-hop"), (3, "search/3 3-hop"),
        (4, "search/4 4-hop")]
    assert search_tier(6) == (4, "search/4 4-hop")
    assert tier_name("mydomain", 2) == "mydomain/2"
    with pytest.raises(TaskFileError, match="at least one hop"):
        search_tier(0)
    with pytest.raises(TaskFileError, match="leetcode"):
        coding_tier("leetcode")


# ------------------------------------------------------------ coding formats, tiny


def test_humaneval_loader(tmp_path):
    path = write_jsonl(tmp_path / "he.jsonl", [{
        "task_id": "HumanEval/7",
        "prompt": "from typing import List\n\n\ndef total(xs: List[int]) -> int:\n"
                  '    """Sum of xs.\n    >>> total([1, 2])\n    3\n    """\n',
        "entry_point": "total",
        "canonical_solution": "    return sum(xs)\n",
        "test": "def check(candidate):\n    assert candidate([1, 2, 3]) == 6\n",
    }])
    [task] = load_tasks(f"humaneval:{path}")
    assert task.id == "humaneval/HumanEval/7"
    assert (task.domain, task.tier, task.tier_name) == ("coding", 2, "coding/2 humaneval")
    assert task.grading["style"] == "humaneval"
    assert task.grading["entry_point"] == "total"
    assert task.grading["tests"].startswith("def check(candidate)")
    assert task.grading["setup"] == task.metadata["stub"]  # prompt + completion, as officially
    assert "def total(xs: List[int])" in task.prompt and "`total`" in task.prompt
    assert "return sum(xs)" not in all_text(task)
    assert task.metadata["source"] == "humaneval"
    assert task.metadata["source_file"] == "he.jsonl"
    # The setup lets an answer without the stub's import still run.
    assert passes(tmp_path, "he", task.grading, "def total(xs: List[int]) -> int:\n"
                                                "    return sum(xs)\n")
    assert not passes(tmp_path, "he_bad", task.grading, "def total(xs):\n    return 0\n")


def test_mbpp_loader_names_the_function_the_asserts_call(tmp_path):
    path = write_jsonl(tmp_path / "mbpp.jsonl", [{
        "source_file": "x.ipynb", "task_id": 11,
        "prompt": "Write a function to compute the hypotenuse.",
        "code": "import math\ndef square(x):\n    return x * x\n"
                "def hypot(a, b):\n    return math.sqrt(square(a) + square(b))",
        "test_imports": ["import math"],
        "test_list": ["assert math.isclose(hypot(3, 4), 5.0)",
                      "assert math.isclose(hypot(5, 12), 13.0)"],
    }])
    [task] = load_tasks(f"mbpp:{path}")
    assert task.id == "mbpp/11"
    assert (task.tier, task.tier_name) == (1, "coding/1 mbpp")
    assert task.grading == {
        "style": "asserts", "entry_point": "hypot", "setup": "import math",
        "tests": "assert math.isclose(hypot(3, 4), 5.0)\n"
                 "assert math.isclose(hypot(5, 12), 13.0)"}
    assert "`hypot`" in task.prompt
    assert "assert math.isclose(hypot(3, 4), 5.0)" in task.prompt
    assert "hypot(5, 12)" not in task.prompt  # only one example is shown
    assert passes(tmp_path, "mbpp", task.grading,
                  "def hypot(a, b):\n    return (a * a + b * b) ** 0.5\n")


def test_dataframebench_loader_fills_the_library_placeholders(tmp_path):
    path = write_jsonl(tmp_path / "dfb.jsonl", [{
        "task_id": "DFB/V0009", "category": "aggregation", "entry_point": "task_func",
        "libs": ["numpy"],
        "prompt": "Sum a column.\n\n{library_instruction}\n\n```python\n{library_import}\n"
                  "def task_func(rows):\n```",
        "test_code": "import unittest\nclass TestCases(unittest.TestCase):\n"
                     "    def test_sum(self):\n"
                     "        self.assertEqual(task_func([{'a': 1}, {'a': 2}]), 3)\n",
        "prompt_parts": {"statement": "Sum a column.", "stub": "{library_import}\n",
                         "instruction": "{library_instruction}"},
        "ground_truth": {"pandas": "SECRET_REFERENCE", "pandas_source": "x",
                         "polars": "", "polars_source": ""},
        "seed_id": "BigCodeBench/1",
    }])
    [task] = load_tasks(f"dataframebench:{path}")
    assert task.id == "dataframebench/DFB/V0009"
    assert (task.tier, task.tier_name) == (3, "coding/3 dataframebench")
    assert "{library_" not in task.prompt
    assert DATAFRAMEBENCH_LIBRARY_IMPORT in task.prompt and "pandas" in task.prompt.lower()
    assert task.grading["style"] == "unittest"
    assert task.grading["entry_point"] == "task_func"
    assert "class TestCases" in task.grading["tests"]
    assert "SECRET_REFERENCE" not in all_text(task)
    assert task.metadata["libs"] == ["pandas", "numpy"]
    assert passes(tmp_path, "dfb", task.grading,
                  "def task_func(rows):\n    return sum(r['a'] for r in rows)\n")
    assert not passes(tmp_path, "dfb_bad", task.grading, "def task_func(rows):\n    return 0\n")


# ------------------------------------------------------------ search formats, tiny

SHARED_TITLE = "Ferrow Lake"
SHARED_SENTENCES = ["Ferrow Lake is a lake in the north.", " It feeds the Ferrow river."]


def test_hotpotqa_original_and_ircot_formats_agree_on_paragraph_ids(tmp_path):
    original = write_jsonl(tmp_path / "hotpot.jsonl", [{
        "supporting_facts": [[SHARED_TITLE, 1], ["Ferrow", 0]],
        "level": "hard", "question": "Which river does Ferrow Lake feed?",
        "context": [[SHARED_TITLE, SHARED_SENTENCES],
                    ["Ferrow", ["The Ferrow is a river."]],
                    ["Other", ["Unrelated text."]]],
        "answer": "the Ferrow river", "_id": "abc123", "type": "bridge",
    }])
    ircot = write_jsonl(tmp_path / "ircot.jsonl", [
        {"question_id": "q1", "question_text": "What does Ferrow Lake feed?",
         "answers_objects": [{"number": "", "date": {"day": "", "month": "", "year": ""},
                              "spans": ["Ferrow river"]}],
         "contexts": [
             {"id": "0", "title": SHARED_TITLE, "is_supporting": True,
              # the processed format joins sentences with a different spacing
              "paragraph_text": "Ferrow Lake is a lake in the north.  It feeds the Ferrow river."},
             {"id": "1", "title": "Other", "paragraph_text": "Unrelated text.",
              "is_supporting": False}]},
        {"question_id": "q2", "question_text": "Is Ferrow Lake a lake?",
         "answers_objects": [{"spans": ["yes"]}],
         "contexts": [{"id": "0", "title": SHARED_TITLE, "is_supporting": True,
                       "paragraph_text": "Ferrow Lake is a lake in the north."
                                         " It feeds the Ferrow river."}]},
    ])
    [hot] = load_tasks(f"hotpotqa:{original}")
    q1, q2 = load_tasks(f"hotpotqa-ircot:{ircot}")
    assert hot.id == "hotpotqa/abc123" and q1.id == "hotpotqa/q1"
    for task in (hot, q1, q2):
        assert (task.domain, task.tier, task.tier_name) == ("search", 2, "search/2 2-hop")
        assert task.metadata["hops"] == 2
    assert hot.grading == {"answers": ["the Ferrow river"]}
    assert q1.grading == {"answers": ["Ferrow river"]}
    assert [d.title for d in hot.documents] == [SHARED_TITLE, "Ferrow", "Other"]
    assert hot.documents[0].text == "Ferrow Lake is a lake in the north. It feeds the Ferrow river."
    # One paragraph, whichever file or task carries it, has one id.
    lake_id = document_id(SHARED_TITLE, hot.documents[0].text)
    assert hot.documents[0].id == q1.documents[0].id == q2.documents[0].id == lake_id
    assert hot.documents[2].id == q1.documents[1].id
    assert len({d.id for d in hot.documents}) == 3
    assert hot.metadata["supporting"] == [lake_id, hot.documents[1].id]
    assert q1.metadata["supporting"] == [lake_id]


def musique_record(qid: str, steps: list[tuple[int, str, str]], answer: str,
                   aliases: list[str], paragraphs: list[tuple[str, str]] | None = None) -> dict:
    record = {"id": qid, "question": f"question {qid}?", "answer": answer,
              "answer_aliases": aliases, "answerable": True,
              "question_decomposition": [
                  {"id": sid, "question": q, "answer": a, "paragraph_support_idx": i}
                  for i, (sid, q, a) in enumerate(steps)]}
    if paragraphs is not None:
        record["paragraphs"] = [
            {"idx": i, "title": t, "paragraph_text": x, "is_supporting": i < len(steps)}
            for i, (t, x) in enumerate(paragraphs)]
    return record


MUSIQUE = [
    musique_record("2hop__1_2", [(1, "Green >> performer", "Steve Hillage"),
                                 (2, "#1 >> spouse", "Miquette Giraudy")],
                   "Miquette Giraudy", ["M. Giraudy"]),
    musique_record("3hop1__1_3_4", [(1, "Green >> performer", "Steve Hillage"),
                                    (3, "#1 >> place of birth", "Chingford"),
                                    (4, "when was #2 founded", "1086")],
                   "1086", []),
]


def test_musique_with_and_without_paragraphs(tmp_path):
    plain = write_jsonl(tmp_path / "musique.jsonl", MUSIQUE)
    paragraphs = [("Green", "Green is an album by Steve Hillage."),
                  ("Steve Hillage", "He married Miquette Giraudy."),
                  ("Gong", "Gong is a band.")]
    with_paras = write_jsonl(tmp_path / "musique_p.jsonl", [musique_record(
        "2hop__1_2", [(1, "Green >> performer", "Steve Hillage"),
                      (2, "#1 >> spouse", "Miquette Giraudy")],
        "Miquette Giraudy", [], paragraphs)])
    two, three = load_tasks(f"musique:{plain}")
    assert two.id == "musique/2hop__1_2" and three.id == "musique/3hop1__1_3_4"
    assert (two.tier, two.tier_name, two.metadata["hops"]) == (2, "search/2 2-hop", 2)
    assert (three.tier, three.tier_name) == (3, "search/3 3-hop")
    assert two.grading == {"answers": ["Miquette Giraudy", "M. Giraudy"]}
    assert two.documents == [] and three.documents == []
    assert two.metadata["reasoning_type"] == "2hop"
    [para] = load_tasks(f"musique:{with_paras}")
    assert [d.title for d in para.documents] == ["Green", "Steve Hillage", "Gong"]
    assert para.metadata["supporting"] == [d.id for d in para.documents[:2]]


def test_musique_single_hop_subquestions(tmp_path):
    path = write_jsonl(tmp_path / "musique.jsonl", MUSIQUE)
    tasks = load_tasks(f"musique-single:{path}")
    # Sub-question 1 is shared by both questions and appears once.
    assert [t.id for t in tasks] == ["musique-single/1", "musique-single/2",
                                     "musique-single/3", "musique-single/4"]
    by_id = {t.id: t for t in tasks}
    assert by_id["musique-single/1"].prompt == "Who is the performer of Green?"
    assert by_id["musique-single/2"].prompt == "Who is the spouse of Steve Hillage?"
    assert by_id["musique-single/3"].prompt == "Where was Steve Hillage born?"
    assert by_id["musique-single/4"].prompt == "When was Chingford founded?"
    assert by_id["musique-single/1"].grading == {"answers": ["Steve Hillage"]}
    # The last step answers the whole question, so it also takes the aliases.
    assert by_id["musique-single/2"].grading == {"answers": ["Miquette Giraudy", "M. Giraudy"]}
    for task in tasks:
        assert (task.tier, task.tier_name, task.metadata["hops"]) == (1, "search/1 single-hop", 1)
    assert by_id["musique-single/3"].metadata["parent_id"] == "3hop1__1_3_4"
    assert len(load_tasks(f"musique-single:{path}", limit=2)) == 2


def test_subquestion_text_templates():
    assert subquestion_text("UHF >> distributed by", []) == "Who is UHF distributed by?"
    assert subquestion_text("#1 of France >> mother", ["Louis"]) \
        == "Who is the mother of Louis of France?"
    assert subquestion_text("Lago >> located in the administrative territorial entity", []) \
        == "In which administrative territorial entity is Lago located?"
    assert subquestion_text("X >> some new relation", []) == "What is the some new relation of X?"
    assert subquestion_text("when did #2 beat #1 ", ["A", "B"]) == "When did B beat A?"
    with pytest.raises(ValueError, match="#3"):
        subquestion_text("#3 >> spouse", ["A"])


# -------------------------------------------------------------- project JSONL format


def test_project_jsonl_round_trip_and_plain_path(tmp_path):
    tasks = [
        Task(id="a", domain="coding", prompt="p", tier=2,
             grading={"style": "asserts", "tests": "assert f() == 1", "entry_point": "f"}),
        Task(id="b", domain="search", prompt="q?", tier=3, grading={"answers": ["x"]},
             tier_name="search/3 custom"),
        Task(id="c", domain="mine", prompt="r", tier=1),
    ]
    path = write_tasks(tmp_path / "tasks.jsonl", tasks)
    loaded = load_tasks(str(path))
    assert loaded == load_tasks(f"jsonl:{path}") == load_tasks(path)
    assert [t.id for t in loaded] == ["a", "b", "c"]
    assert loaded[0].grading == tasks[0].grading
    assert [t.tier_name for t in loaded] == ["coding/2 humaneval", "search/3 custom", "mine/1"]
    assert "source_file" not in loaded[0].metadata
    assert [t.id for t in load_tasks(path, limit=1)] == ["a"]
    assert load_tasks(path, limit=0) == []


# ------------------------------------------------------------------ malformed input

GOOD_MBPP = {"task_id": 1, "prompt": "Write f.", "code": "def f():\n  return 1",
             "test_imports": [], "test_list": ["assert f() == 1"]}
GOOD_TASK = {"id": "t1", "domain": "coding", "prompt": "p"}


@pytest.mark.parametrize("fmt, good, bad_line, expected", [
    ("mbpp", GOOD_MBPP, '{"task_id": 2, "prompt": "x"', "not valid JSON"),
    ("mbpp", GOOD_MBPP, '[1, 2]', "expected a JSON object"),
    ("mbpp", GOOD_MBPP, json.dumps({**GOOD_MBPP, "task_id": 2, "test_list": None}),
     "field 'test_list': must be a list"),
    ("mbpp", GOOD_MBPP, json.dumps({k: v for k, v in GOOD_MBPP.items() if k != "code"}),
     "field 'code': is missing"),
    ("mbpp", GOOD_MBPP, json.dumps({**GOOD_MBPP, "test_list": ["assert f()", 3]}),
     "field 'test_list': item 1 must be a string"),
    ("humaneval", {"task_id": "H/0", "prompt": "def f():\n", "entry_point": "f", "test": "x"},
     json.dumps({"task_id": "H/1", "prompt": "def g():\n", "entry_point": 5, "test": "x"}),
     "field 'entry_point': must be a string, got 5"),
    ("musique", MUSIQUE[0],
     json.dumps({**MUSIQUE[0], "question_decomposition": [{"id": 1, "question": "q"}]}),
     "field 'question_decomposition[0].answer': is missing"),
    ("musique-single", MUSIQUE[0],
     json.dumps(musique_record("2hop__9", [(9, "#2 >> spouse", "x"), (8, "y >> z", "w")], "x", [])),
     "field 'question_decomposition[0].question': '#2' names no earlier step"),
    ("hotpotqa-ircot",
     {"question_id": "q", "question_text": "?", "answers_objects": [{"spans": ["a"]}],
      "contexts": []},
     json.dumps({"question_id": "r", "question_text": "?", "answers_objects": [{"spans": ["a"]}],
                 "contexts": ["not an object"]}),
     "field 'contexts[0]': must be an object"),
    ("hotpotqa",
     {"_id": "x", "question": "?", "answer": "a", "context": [["T", ["s."]]]},
     json.dumps({"_id": "y", "question": "?", "answer": "a", "context": [["T", "s."]]}),
     "field 'context[0]': must be [title, [sentences]]"),
    ("jsonl", GOOD_TASK, json.dumps({**GOOD_TASK, "id": "t2", "tier": "hard"}),
     "field 'tier': Input should be a valid integer"),
    ("jsonl", GOOD_TASK, json.dumps({"id": "t2", "prompt": "p"}), "field 'domain': Field required"),
    ("jsonl", GOOD_TASK, json.dumps(GOOD_TASK), "field 'id': 't1' repeats the task on line 1"),
])
def test_malformed_line_names_file_line_and_field(tmp_path, fmt, good, bad_line, expected):
    path = tmp_path / f"{fmt}.jsonl"
    # A blank line is skipped but still counted: the bad record is on line 3.
    path.write_text(json.dumps(good) + "\n\n" + bad_line + "\n", encoding="utf-8")
    with pytest.raises(TaskFileError) as info:
        load_tasks(f"{fmt}:{path}")
    message = str(info.value)
    assert message.startswith(f"{path}, line 3")
    assert expected in message


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(TaskFileError, match="no such file"):
        load_tasks(f"mbpp:{tmp_path / 'absent.jsonl'}")
    with pytest.raises(TaskFileError, match="unknown task format 'leetcode'.*mbpp"):
        load_tasks(f"leetcode:{tmp_path / 'x.jsonl'}")
    with pytest.raises(TaskFileError, match="not UTF-8"):
        bad = tmp_path / "latin1.jsonl"
        bad.write_bytes(json.dumps(GOOD_TASK).encode() + b"\n\xff\xfe\n")
        load_tasks(bad)


# ------------------------------------------------------------------------- split


def synthetic_tasks() -> list[Task]:
    tasks = []
    for domain, tiers in (("coding", (1, 2, 3)), ("search", (1, 2, 3, 4))):
        for tier in tiers:
            for i in range(7 + tier):
                tasks.append(Task(id=f"{domain}-{tier}-{i}", domain=domain, prompt="p",
                                  tier=tier))
    return tasks


def test_split_is_deterministic_stratified_and_order_free():
    tasks = synthetic_tasks()
    train, test = split(tasks, seed=3)
    assert split(tasks, seed=3) == (train, test)
    assert {t.id for t in train} | {t.id for t in test} == {t.id for t in tasks}
    assert not {t.id for t in train} & {t.id for t in test}
    sizes = Counter((t.domain, t.tier) for t in tasks)
    in_test = Counter((t.domain, t.tier) for t in test)
    for stratum, size in sizes.items():
        assert in_test[stratum] == int(size / 2 + 0.5)
    # Reordering the input changes nothing but the order.
    shuffled = tasks[:]
    random.Random(7).shuffle(shuffled)
    train2, test2 = split(shuffled, seed=3)
    assert {t.id for t in test2} == {t.id for t in test}
    assert [t.id for t in test2] == [t.id for t in shuffled if t.id in {x.id for x in test}]
    # Another seed draws another split; fractions are respected.
    assert {t.id for t in split(tasks, seed=4)[1]} != {t.id for t in test}
    train3, test3 = split(tasks, test_fraction=0.25, seed=3)
    assert len(test3) == sum(int(n * 0.25 + 0.5) for n in sizes.values())
    assert split(tasks, test_fraction=0.0)[1] == [] and split(tasks, test_fraction=1.0)[0] == []
    with pytest.raises(ConfigError, match="test_fraction"):
        split(tasks, test_fraction=1.5)


# -------------------------------------------------------------------------- demo

# Reference solutions of the demo coding tasks, kept out of the shipped task file.
DEMO_SOLUTIONS = {
    "demo/count-vowels": '''
def count_vowels(text: str) -> int:
    return sum(1 for ch in text.lower() if ch in "aeiou")
''',
    "demo/compress-runs": '''
def compress_runs(text: str) -> str:
    out = []
    i = 0
    while i < len(text):
        j = i
        while j < len(text) and text[j] == text[i]:
            j += 1
        out.append(f"{text[i]}{j - i}")
        i = j
    return "".join(out)
''',
    "demo/grid-shortest-path": '''
from collections import deque

def shortest_path(grid: list[str]) -> int:
    rows, cols = len(grid), len(grid[0])
    if grid[0][0] == "#" or grid[rows - 1][cols - 1] == "#":
        return -1
    dist = {(0, 0): 0}
    queue = deque([(0, 0)])
    while queue:
        r, c = queue.popleft()
        if (r, c) == (rows - 1, cols - 1):
            return dist[(r, c)]
        for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if 0 <= nr < rows and 0 <= nc < cols and grid[nr][nc] == "." \\
                    and (nr, nc) not in dist:
                dist[(nr, nc)] = dist[(r, c)] + 1
                queue.append((nr, nc))
    return -1
''',
}

# Plausible wrong answers: each must fail its task's hidden tests.
DEMO_WRONG = {
    # ignores upper-case vowels
    "demo/count-vowels": 'def count_vowels(text):\n    return sum(ch in "aeiou" for ch in text)\n',
    # counts each character over the whole string instead of per run
    "demo/compress-runs": "def compress_runs(s):\n"
                          "    return ''.join(f'{c}{s.count(c)}' for c in dict.fromkeys(s))\n",
    # ignores the walls
    "demo/grid-shortest-path": "def shortest_path(grid):\n"
                               "    return len(grid) + len(grid[0]) - 2\n",
}


def test_demo_workload_spans_both_domains_and_every_tier():
    tasks, documents_path = demo_workload()
    assert documents_path.is_file()
    assert len({t.id for t in tasks}) == len(tasks) >= 8
    tiers = {(t.domain, t.tier) for t in tasks}
    assert tiers == {("coding", 1), ("coding", 2), ("coding", 3),
                     ("search", 1), ("search", 2), ("search", 3), ("search", 4)}
    for task in tasks:
        assert task.tier_name.startswith(f"{task.domain}/{task.tier}")
        if task.domain == "coding":
            assert task.grading["style"] in {"asserts", "humaneval", "unittest"}
            assert f"`{task.grading['entry_point']}" in task.prompt
        else:
            assert task.grading["answers"] and all(task.grading["answers"])
    assert set(DEMO_SOLUTIONS) == {t.id for t in tasks if t.domain == "coding"}


def test_demo_questions_need_one_lookup_per_hop():
    tasks, documents_path = demo_workload()
    docs = {d.id: d for d in load_documents(documents_path)}
    assert 30 <= len(docs) <= 60
    for task in (t for t in tasks if t.domain == "search"):
        chain = task.metadata["supporting"]
        assert len(chain) == task.metadata["hops"] == len(set(chain)), task.id
        assert all(doc_id in docs for doc_id in chain), task.id
        answer = task.grading["answers"][0].lower()
        assert answer in docs[chain[-1]].text.lower(), task.id
        if len(chain) > 1:  # the document the question starts from does not answer it
            assert answer not in docs[chain[0]].text.lower(), task.id
        # Each hop's document names the entity that the next hop looks up.
        for here, there in zip(chain, chain[1:]):
            assert docs[there].title.lower() in docs[here].text.lower(), (task.id, here)


def test_demo_reference_solutions_pass_and_wrong_ones_fail(tmp_path):
    tasks, _ = demo_workload()
    for task in (t for t in tasks if t.domain == "coding"):
        name = task.id.replace("/", "_").replace("-", "_")
        assert passes(tmp_path, name, task.grading, DEMO_SOLUTIONS[task.id]), task.id
        assert not passes(tmp_path, name + "_wrong", task.grading, DEMO_WRONG[task.id]), task.id


# ---------------------------------------------------------------- shared data

@pytest.mark.shared_data
def test_shared_coding_files(shared_data):
    coding = shared_data / "coding"
    humaneval = load_tasks(f"humaneval:{coding / 'humaneval.jsonl'}")
    mbpp = load_tasks(f"mbpp:{coding / 'mbpp_sanitized.jsonl'}")
    dfb_val = load_tasks(f"dataframebench:{coding / 'dataframebench_val.jsonl'}")
    dfb_train = load_tasks(f"dataframebench:{coding / 'dataframebench_train.jsonl'}")
    assert (len(humaneval), len(mbpp), len(dfb_val), len(dfb_train)) == (164, 427, 16, 709)
    assert humaneval[0].id == "humaneval/HumanEval/0" and mbpp[0].id == "mbpp/2"
    assert dfb_val[0].id == "dataframebench/DFB/V0001"
    for tasks, tier, style in ((mbpp, 1, "asserts"), (humaneval, 2, "humaneval"),
                               (dfb_val + dfb_train, 3, "unittest")):
        assert {(t.domain, t.tier, t.grading["style"]) for t in tasks} == {("coding", tier, style)}
        assert len({t.id for t in tasks}) == len(tasks)
        for t in tasks:
            entry = t.grading["entry_point"]
            assert entry and re.search(rf"\b{re.escape(entry)}\b", t.prompt), t.id
            assert entry in t.grading["tests"] or style == "humaneval", t.id
            assert "{library_" not in t.prompt, t.id
    assert all("def check(candidate)" in t.grading["tests"] for t in humaneval)
    # The reference code never reaches a task; the asserts shown are the first test.
    raw_mbpp = [json.loads(line) for line in (coding / "mbpp_sanitized.jsonl").open()]
    for task, raw in zip(mbpp, raw_mbpp):
        assert raw["code"].strip() not in all_text(task)
        assert raw["test_list"][0].strip() in task.prompt
    raw_he = [json.loads(line) for line in (coding / "humaneval.jsonl").open()]
    for raw, task in zip(raw_he, humaneval):
        assert raw["canonical_solution"].strip() not in all_text(task), task.id


@pytest.mark.shared_data
def test_shared_canonical_solutions_pass_in_normalised_form(shared_data, tmp_path):
    """A few reference solutions from the data pass the grading fields we produce."""
    coding = shared_data / "coding"
    raw_he = [json.loads(line) for line in (coding / "humaneval.jsonl").open()]
    raw_mbpp = [json.loads(line) for line in (coding / "mbpp_sanitized.jsonl").open()]
    humaneval = load_tasks(f"humaneval:{coding / 'humaneval.jsonl'}")
    mbpp = load_tasks(f"mbpp:{coding / 'mbpp_sanitized.jsonl'}")
    for i in (0, 32, 163):  # 32 imports math in its prompt
        solution = raw_he[i]["prompt"] + raw_he[i]["canonical_solution"]
        assert passes(tmp_path, f"he{i}", humaneval[i].grading, solution), humaneval[i].id
    for i in (0, 4, 426):
        assert passes(tmp_path, f"mbpp{i}", mbpp[i].grading, raw_mbpp[i]["code"]), mbpp[i].id


@pytest.mark.shared_data
def test_shared_search_files(shared_data):
    search = shared_data / "search"
    musique = load_tasks(f"musique:{search / 'musique_dev.jsonl'}")
    assert Counter(t.tier for t in musique) == {2: 881, 3: 622, 4: 309}
    assert all(t.documents == [] and t.metadata["hops"] == t.tier for t in musique)
    assert musique[0].id == "musique/2hop__460946_294723"
    assert musique[0].grading == {"answers": ["Miquette Giraudy"]}

    paras = load_tasks(f"musique:{search / 'musique_dev_paragraphs.jsonl'}")
    assert Counter(t.tier for t in paras) == {2: 40, 3: 28, 4: 10}
    assert {t.id for t in paras} <= {t.id for t in musique}
    for t in paras:
        ids = {d.id for d in t.documents}
        assert len(t.metadata["supporting"]) == t.metadata["hops"] and \
            set(t.metadata["supporting"]) <= ids, t.id
    train = load_tasks(f"musique:{search / 'musique_train_paragraphs_sample.jsonl'}")
    assert Counter(t.tier for t in train) == {2: 68, 3: 27, 4: 5}

    hotpot = load_tasks(f"hotpotqa-ircot:{search / 'hotpotqa_dev_distractor.jsonl'}")
    assert len(hotpot) == 375 and hotpot[0].id == "hotpotqa/5a8c7595554299585d9e36b6"
    assert hotpot[0].grading == {"answers": ["Chief of Protocol"]}
    assert all(t.tier == 2 and len(t.metadata["supporting"]) == 2 for t in hotpot)
    hotpot_train = load_tasks(f"hotpotqa:{search / 'hotpotqa_train_distractor_sample.jsonl'}")
    assert len(hotpot_train) == 100 and all(t.tier == 2 for t in hotpot_train)
    assert all(1 <= len(t.metadata["supporting"]) <= 2 for t in hotpot_train)

    single = load_tasks(f"musique-single:{search / 'musique_dev.jsonl'}")
    subquestion_ids = {str(s["id"]) for line in (search / "musique_dev.jsonl").open()
                       for s in json.loads(line)["question_decomposition"]}
    assert len(single) == len(subquestion_ids) == len({t.id for t in single})
    for t in single:
        assert t.tier == 1 and t.prompt.endswith("?") and t.grading["answers"], t.id
        assert ">>" not in t.prompt and not re.search(r"#\d", t.prompt), t.id


@pytest.mark.shared_data
def test_standard_workload_and_split(shared_data):
    tasks = standard_workload(shared_data, per_tier=6, seed=0)
    assert Counter(t.tier_name for t in tasks) == {
        name: 6 for name in ("coding/1 mbpp", "coding/2 humaneval", "coding/3 dataframebench",
                             "search/1 single-hop", "search/2 2-hop", "search/3 3-hop",
                             "search/4 4-hop")}
    assert len({t.id for t in tasks}) == len(tasks)
    assert [t.id for t in standard_workload(shared_data, per_tier=6)] == [t.id for t in tasks]
    other = standard_workload(shared_data, per_tier=6, seed=1)
    assert {t.id for t in other} != {t.id for t in tasks}
    # Tier 2 mixes HotpotQA with MuSiQue with and without paragraphs; val comes first.
    tier2 = [t for t in tasks if t.tier_name == "search/2 2-hop"]
    assert Counter(t.metadata["source_file"] for t in tier2) == {
        "hotpotqa_dev_distractor.jsonl": 2, "musique_dev_paragraphs.jsonl": 2,
        "musique_dev.jsonl": 2}
    assert all(t.metadata["source_file"] == "dataframebench_val.jsonl"
               for t in tasks if t.tier == 3 and t.domain == "coding")
    big = standard_workload(shared_data, per_tier=30)
    assert {t.id for t in tasks} <= {t.id for t in big}
    # 10 val tasks use only libraries the project installs; train tops the tier up.
    assert sum(t.metadata["source_file"] == "dataframebench_train.jsonl" for t in big) == 20
    assert all(runnable(t) for t in big if t.tier == 3 and t.domain == "coding")
    train, test = split(tasks, seed=0)
    assert len(train) == len(test) == 21
    assert Counter(t.tier_name for t in test) == Counter(t.tier_name for t in train)
