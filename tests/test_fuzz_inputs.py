"""Bad input, fuzzed: pool files, task files and weights files.

Whatever a file holds (random bytes, random text, random YAML or JSON, a valid file
with random parts replaced), reading it either succeeds or raises the named error
(ConfigError for pool and weights files, TaskFileError for task files) with a message
that names the file; never another exception, never a traceback. Through the command
line a bad file gives one ``error: ...`` line, exit status 2, and no results.
(test_config.py, test_workloads.py and test_weights.py check the messages of
hand-picked mistakes; here the mistakes are generated.)
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sale.agent.executor import Limits
from sale.auction.settings import AuctionSettings
from sale.auction.weights import Weights
from sale.cli import main as cli
from sale.config import load_pool_config
from sale.errors import ConfigError, TaskFileError
from sale.workloads.loaders import FORMATS, load_tasks

FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

VALID_POOL = {
    "agents": [
        {"name": "small", "endpoint": {"base_url": "http://127.0.0.1:9/v1", "model": "s"},
         "price": {"input": 0.1, "output": 0.2}, "generation": {"max_tokens": 64, "temperature": 0.0},
         "timeout_s": 5, "max_retries": 1},
        {"name": "big", "model": "qwen2.5-coder-0.5b", "price": {"input": 0.4, "output": 0.4}, "context": 2048},
    ],
    "auction": {"jury_mode": "batched", "bid_max_tokens": 64},
    "execution": {"max_steps": 4},
    "budget": {"per_task": 0.01, "per_run": 1.0},
}
VALID_TASK = {
    "id": "t1", "domain": "search", "prompt": "Where is it?", "tier": 2, "tier_name": "search/2",
    "grading": {"answers": ["Paris"]}, "metadata": {"source": "x"},
    "documents": [{"id": "d1", "title": "T", "text": "It is in Paris."}],
}  # fmt: skip
VALID_WEIGHTS = {"w_cost": 0.01, "w_entropy": -1.0, "w_jury": {"small": 0.5, "big": 0.5}, "meta": {"fit": "minmax"}}

scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))  # fmt: skip
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                      max_leaves=8)  # fmt: skip


def _paths(data, prefix=()):
    """Every path (tuple of keys and indices) into nested dicts and lists."""
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated(draw, base):
    """``base`` with one to three random edits: a value replaced, a key removed or added."""
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(data))
        path = draw(st.sampled_from(paths))
        if not path:
            if draw(st.booleans()):
                data = draw(values)
            continue
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(values)
        else:
            parent.append(draw(values))
        if not isinstance(data, (dict, list)):
            break
    return data


def _write(path: Path, content: bytes | str) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    return path


def _dump_yaml(data) -> str:
    try:
        return yaml.safe_dump(data, allow_unicode=True)
    except yaml.YAMLError:
        return json.dumps(data, default=str)


def _expect(error: type, fn, path: Path):
    """Call fn(); it may succeed, or raise ``error`` naming ``path``; nothing else."""
    try:
        return fn()
    except error as exc:
        assert str(path) in str(exc) or str(path.name) in str(exc), str(exc)
        assert str(exc).strip(), "an empty message"
        return None


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


# ----------------------------------------------------------------------------- pool files


@FUZZ
@given(content=st.binary(max_size=300) | st.text(max_size=300))
def test_pool_file_of_random_bytes_or_text(scratch, content):
    path = _write(scratch / "pool.yaml", content)
    _expect(ConfigError, lambda: load_pool_config(path), path)


@FUZZ
@given(data=mutated(VALID_POOL))
def test_pool_file_with_random_edits(scratch, data):
    path = _write(scratch / "pool.yaml", _dump_yaml(data))
    config = _expect(ConfigError, lambda: load_pool_config(path), path)
    if config is not None:  # a pool that loads has sections that validate or raise ConfigError
        for section in (lambda: AuctionSettings.from_pool(config, str(path)),
                        lambda: Limits.from_mapping(dict(config.execution), f"{path}: execution")):
            _expect(ConfigError, section, path)


@pytest.mark.parametrize("text", [
    "agents: [" * 5000,  # deep nesting
    "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\n"
    "d: &d [*c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e]\n"
    "agents: [{name: a, model: m, price: {input: *f, output: 1}}]\n",  # an alias bomb: 8^6 leaves
    "agents:\n  - !!python/object/apply:os.system ['echo pwned']\n",  # no code from YAML tags
    "\ufeffagents: []\n",
    "agents: 1e999999\n",
])  # fmt: skip
def test_hostile_pool_files(scratch, text):
    path = _write(scratch / "pool.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_pool_config(path)
    assert len(str(info.value)) < 5000


# ----------------------------------------------------------------------------- task files


@FUZZ
@given(fmt=st.sampled_from(sorted(FORMATS)), content=st.binary(max_size=300) | st.text(max_size=300))
def test_task_file_of_random_bytes_or_text(scratch, fmt, content):
    path = _write(scratch / "tasks.jsonl", content)
    _expect(TaskFileError, lambda: load_tasks(f"{fmt}:{path}"), path)


@FUZZ
@given(fmt=st.sampled_from(sorted(FORMATS)), lines=st.lists(values, min_size=1, max_size=3))
def test_task_file_of_random_json_lines(scratch, fmt, lines):
    path = _write(scratch / "tasks.jsonl", "\n".join(json.dumps(v) for v in lines) + "\n")
    _expect(TaskFileError, lambda: load_tasks(f"{fmt}:{path}"), path)


@FUZZ
@given(records=st.lists(mutated(VALID_TASK), min_size=1, max_size=3))
def test_project_task_file_with_random_edits(scratch, records):
    path = _write(scratch / "tasks.jsonl", "\n".join(json.dumps(r) for r in records) + "\n")
    _expect(TaskFileError, lambda: load_tasks(path), path)


def _benchmark_records():
    """One valid record of each benchmark format (to mutate)."""
    return {
        "humaneval": {"task_id": "HumanEval/0", "prompt": "def f(x):\n", "entry_point": "f",
                      "test": "def check(c):\n    assert c(1) == 1\n", "canonical_solution": "    return x\n"},
        "mbpp": {"task_id": 2, "prompt": "Write f.", "code": "def f(x):\n    return x\n", "test_imports": [],
                 "test_list": ["assert f(1) == 1"]},
        "dataframebench": {"task_id": "d/1", "complete_prompt": "def task_func(df):\n", "entry_point": "task_func",
                           "test": "import unittest\nclass T(unittest.TestCase):\n    def test(self): pass\n",
                           "libs": "['pandas']", "instruct_prompt": "Do it."},
        "hotpotqa": {"_id": "h1", "question": "Q?", "answer": "A", "type": "bridge", "level": "hard",
                     "context": [["T1", ["S1.", "S2."]], ["T2", ["S3."]]],
                     "supporting_facts": [["T1", 0]]},
        "hotpotqa-ircot": {"question_id": "h2", "question_text": "Q?", "answers_objects": [{"spans": ["A"]}],
                           "contexts": [{"title": "T", "paragraph_text": "P", "is_supporting": True}]},
        "musique": {"id": "2hop__1_2", "question": "Q?", "answer": "A", "answer_aliases": ["B"], "answerable": True,
                    "paragraphs": [{"idx": 0, "title": "T", "paragraph_text": "P", "is_supporting": True}],
                    "question_decomposition": [{"id": 1, "question": "q1", "answer": "a1", "paragraph_support_idx": 0},
                                               {"id": 2, "question": "#1 q2", "answer": "A",
                                                "paragraph_support_idx": 0}]},
    }  # fmt: skip


BENCHMARK_RECORDS = _benchmark_records()
BENCHMARK_RECORDS["musique-single"] = BENCHMARK_RECORDS["musique"]


@FUZZ
@given(data=st.data())
def test_benchmark_task_files_with_random_edits(scratch, data):
    fmt = data.draw(st.sampled_from(sorted(BENCHMARK_RECORDS)))
    record = data.draw(mutated(BENCHMARK_RECORDS[fmt]))
    path = _write(scratch / "tasks.jsonl", json.dumps(record) + "\n")
    _expect(TaskFileError, lambda: load_tasks(f"{fmt}:{path}"), path)


@pytest.mark.parametrize("line", [
    "[" * 100_000,  # nesting deeper than the parser's recursion
    '{"id": ' + "9" * 5000 + "}",  # an integer longer than Python converts by default
    '{"id": "a", "domain": "search", "prompt": "p", "tier": 1e999}',
    '{"id": "a", "domain": "search", "prompt": "\\ud800"}',  # a lone surrogate
])  # fmt: skip
def test_hostile_task_lines(scratch, line):
    path = _write(scratch / "tasks.jsonl", line + "\n")
    for fmt in FORMATS:
        _expect(TaskFileError, lambda: load_tasks(f"{fmt}:{path}"), path)


# ----------------------------------------------------------------------------- weights files


@FUZZ
@given(content=st.binary(max_size=200) | st.text(max_size=200) | mutated(VALID_WEIGHTS).map(json.dumps))
def test_weights_file(scratch, content):
    path = _write(scratch / "weights.json", content)
    weights = _expect(ConfigError, lambda: Weights.from_file(path), path)
    if weights is not None:
        assert all(isinstance(v, float) for v in (weights.w_cost, weights.w_entropy, *weights.w_jury.values()))


@pytest.mark.parametrize("text", ['{"w_cost": ' + "9" * 5000 + "}", "[" * 100_000, '{"w_cost": 1e999}',
                                  '{"w_cost": 1, "w_entropy": 1, "w_jury": {"a": ' + "1" * 400 + "}}"])
def test_hostile_weights_files(scratch, text):
    path = _write(scratch / "weights.json", text)
    with pytest.raises(ConfigError):
        Weights.from_file(path)


# ----------------------------------------------------------------------------- the command line


def _tasks_file(tmp_path: Path) -> Path:
    return _write(tmp_path / "tasks.jsonl", json.dumps(VALID_TASK) + "\n")


@pytest.mark.parametrize("pool_text, single", [
    ("agents:\n  - name: a\n    model: m\n    price: {input: -1, output: 1}\n", True),
    ("agents: [\n", True),
    ("budget: {per_run: 0}\nagents:\n  - {name: a, model: m, price: {input: 1, output: 1}}\n", True),
    (b"\xff\xfe\x00agents", True),
    ("agents:\n  - name: a\n  - name: a\n", False),  # several problems: one line each
])  # fmt: skip
def test_sale_run_with_a_bad_pool_file(tmp_path, capsys, pool_text, single):
    pool = _write(tmp_path / "pool.yaml", pool_text)
    out = tmp_path / "out"
    for extra in ([], ["--no-pull"]):
        assert cli(["run", "--pool", str(pool), "--tasks", str(_tasks_file(tmp_path)), "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and str(pool) in err and "Traceback" not in err
        if single:
            assert err.count("\n") == 1, err
        assert not out.exists() or not any(out.rglob("*")), sorted(map(str, out.rglob("*")))  # nothing written


def test_sale_run_with_a_bad_weights_file_writes_no_results(tmp_path, capsys):
    weights = _write(tmp_path / "weights.json", '{"w_cost": "cheap"}')
    pool = _write(tmp_path / "pool.yaml", yaml.safe_dump({
        "agents": [{"name": "a", "endpoint": {"base_url": "http://127.0.0.1:9/v1", "model": "a"},
                    "price": {"input": 1, "output": 1}}],
        "auction": {"weights_file": str(weights)},
    }))  # fmt: skip
    out = tmp_path / "out"
    assert cli(["run", "--pool", str(pool), "--tasks", str(_tasks_file(tmp_path)), "--out", str(out)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "weights.json" in errors[0]
    assert not (out / "results.jsonl").exists() or (out / "results.jsonl").stat().st_size == 0


def test_sale_run_with_a_bad_task_file_writes_nothing(tmp_path, capsys):
    pool = _write(tmp_path / "pool.yaml", yaml.safe_dump(VALID_POOL))
    tasks = _write(tmp_path / "tasks.jsonl", json.dumps(VALID_TASK) + "\n{not json\n")
    out = tmp_path / "out"
    assert cli(["run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out), "--no-pull"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "line 2" in err and err.count("\n") == 1
    assert not out.exists()


def test_no_temporary_files_are_left(scratch):
    assert not [p for p in scratch.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
    assert os.access(scratch, os.W_OK)
