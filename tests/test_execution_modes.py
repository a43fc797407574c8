"""The coding loop's checks and the direct mode, against the scripted server (real HTTP),
the real sandbox, real task records and the tiny GGUF through llama.cpp."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml

from sale.agent.executor import Limits, execute, opening_messages
from sale.agent.modes import ExecutionSettings, answer_directly, execution_config, run_execution
from sale.config import parse_pool
from sale.envs.coding import CodingEnvironment
from sale.envs.search import SearchEnvironment, SearchIndex
from sale.errors import ConfigError
from sale.jsonl import read_jsonl
from sale.llm.ledger import Ledger
from sale.llm.pool import Pool
from sale.testing.scripted import Reply, prompt_text, scripted_pool_yaml
from sale.workloads.loaders import load_tasks, write_tasks
from sale.workloads.task import Document, Task

FENCE = "```"
STUB = 'def add_one(x):\n    """Add one to x.\n    >>> add_one(1)\n    2\n    >>> add_one(-3)\n    -2\n    """'
WRONG = "def add_one(x):\n    return x"
RIGHT = "def add_one(x):\n    return x + 1"
TASK = Task(
    id="c/add_one", domain="coding",
    prompt=f"Complete the Python function `add_one` below so that it does what its docstring says.\n\n{FENCE}python\n{STUB}\n{FENCE}",
    grading={"style": "humaneval", "entry_point": "add_one",
             "tests": "def check(candidate):\n    assert candidate(41) == 42\n    assert candidate(0) == 1\n"},
)  # fmt: skip


def python(code: str, note: str = "Let me run it.") -> Reply:
    return Reply(f"{note}\n{FENCE}python\n{code}\n{FENCE}")


def answer(code: str) -> Reply:
    return Reply(f"Done.\nANSWER:\n{FENCE}python\n{code}\n{FENCE}")


@pytest.fixture
async def pool(scripted):
    text = scripted_pool_yaml(scripted.base_url, [("small", 1000.0)], max_retries=0)
    async with Pool(parse_pool(yaml.safe_load(text)), ledger=Ledger()) as p:
        yield p


def last_message(scripted, call: int) -> str:
    return scripted.requests_for("small")[call]["messages"][-1]["content"]


def steps_of(path) -> list[dict]:
    return [r for r in read_jsonl(path) if r["type"] == "step"]


# ----------------------------------------------------------------------------- the coding loop


async def test_a_stub_is_refused_failures_are_shown_and_the_right_solution_passes(scripted, pool, tmp_path):
    scripted.script("small", python(STUB), python(WRONG), python(RIGHT), answer(RIGHT))
    path = tmp_path / "t.jsonl"
    out = await execute(pool["small"], CodingEnvironment(), TASK, "Write it.", trajectory_path=path)
    assert (out.reason, out.passed, out.steps, out.answer_source) == ("submitted", True, 4, "submitted")
    first = scripted.requests_for("small")[0]["messages"][1]["content"]
    assert "Your first action: run your complete implementation of `add_one` with a ```python block" in first
    refused = last_message(scripted, 1)
    assert refused.startswith("The function `add_one` has no body") and "exit status" not in refused
    failed = last_message(scripted, 2)
    assert failed.startswith("Output of python:\nexit status 0")
    assert "The task's examples: 0 of 2 passed." in failed
    assert "FAILED: >>> add_one(1)\n2\n  expected: 2\n  got: 1" in failed
    assert "Fix `add_one` and run it again" in failed
    assert "The task's examples: 2 of 2 passed." in last_message(scripted, 3)
    steps = steps_of(path)
    assert steps[0]["refused"] == "stub" and "examples" not in steps[0]
    assert [s.get("examples") for s in steps[1:3]] == [{"passed": 0, "total": 2}, {"passed": 2, "total": 2}]
    assert next(read_jsonl(path))["visible_examples"] == 2


async def test_a_repeated_solution_hands_in_the_best_candidate(scripted, pool):
    scripted.script("small", python(RIGHT), python(WRONG), python(WRONG))
    out = await execute(pool["small"], CodingEnvironment(), TASK, "")
    assert out.reason == "repeated" and out.steps == 3
    assert (out.answer, out.answer_source, out.passed) == (RIGHT, "best_code", True)
    # without the examples every candidate ties and the last one is handed in, as before
    scripted.script("small", python(RIGHT), python(WRONG), python(WRONG))
    out = await execute(pool["small"], CodingEnvironment(), TASK, "", check_examples=False)
    assert (out.answer, out.answer_source, out.passed) == (WRONG, "last_code", False)
    assert "examples" not in last_message(scripted, 4)  # the second run's second request


async def test_a_worse_answer_is_sent_back_once_then_the_best_is_handed_in(scripted, pool):
    scripted.script("small", python(RIGHT), answer(WRONG), answer(WRONG))
    out = await execute(pool["small"], CodingEnvironment(), TASK, "")
    sent_back = last_message(scripted, 2)
    assert sent_back.startswith("Your answer was not handed in yet. The task's examples: 0 of 2 passed.")
    assert out.reason == "submitted" and out.steps == 3
    assert (out.answer, out.answer_source, out.passed) == (RIGHT, "best_code", True)


async def test_a_stub_answer_is_refused_and_the_last_reply_grades_the_best(scripted, pool):
    scripted.script("small", answer(STUB), python(RIGHT), Reply("ANSWER: add_one adds one."))
    out = await execute(pool["small"], CodingEnvironment(), TASK, "", limits=Limits(max_steps=3))
    assert last_message(scripted, 1).startswith("The function `add_one` has no body")
    assert out.reason == "submitted" and out.answer_source == "last_code" and out.passed


def test_the_plan_goes_after_the_task_before_it_or_nowhere():
    env = CodingEnvironment()
    tools = env.tools(TASK)

    def user(plan: str) -> str:
        return opening_messages(env, TASK, "Loop and add.", tools, Limits(), "text", plan)[1]["content"]

    after, before, none = user("after"), user("before"), user("none")
    assert after.index("Task:") < after.index("Your plan: Loop and add.") and "Follow the plan." in after
    assert before.index("Your plan: Loop and add.") < before.index("Task:") and "Follow the plan." in before
    assert "Loop and add." not in none and "Follow the plan." not in none and "Your first action" in none
    with pytest.raises(ConfigError, match="plan must be one of before, after, none"):
        opening_messages(env, TASK, "x", tools, Limits(), "text", "first")


def hidden_lines(task: Task) -> list[str]:
    """The hidden tests' checks that the prompt does not show."""
    lines = [ln.strip() for ln in task.grading["tests"].splitlines()]
    return [ln for ln in lines if ("assert" in ln or "candidate(" in ln) and len(ln) > 12 and ln not in task.prompt]


async def test_hidden_tests_never_reach_the_agent(scripted, pool, shared_data, tmp_path):
    coding = shared_data / "coding"
    tasks = [
        load_tasks(f"humaneval:{coding / 'humaneval.jsonl'}", limit=1)[0],
        load_tasks(f"mbpp:{coding / 'mbpp_sanitized.jsonl'}", limit=1)[0],
        next(t for t in load_tasks(f"dataframebench:{coding / 'dataframebench_val.jsonl'}") if t.id.endswith("V0002")),
    ]
    env = CodingEnvironment()
    for n, task in enumerate(tasks):
        entry = task.grading["entry_point"]
        hidden = hidden_lines(task)
        assert hidden, task.id
        wrong = f"def {entry}(*args, **kwargs):\n    return None"
        stub = f'def {entry}(*args):\n    """stub"""'
        path = tmp_path / f"{n}.jsonl"
        scripted.script("small", python(stub), python(wrong), answer(wrong))
        await execute(pool["small"], env, task, "Write the function.", trajectory_path=path)
        scripted.script("small", answer(wrong))
        await answer_directly(pool["small"], env, task, "Write the function.", trajectory_path=tmp_path / f"d{n}.jsonl")
        seen = [prompt_text(r) for r in scripted.requests_for("small")]
        seen += [str(s.get("observation") or "") for p in (path, tmp_path / f"d{n}.jsonl") for s in steps_of(p)]
        assert any("examples" in text for text in seen), task.id  # the visible examples were run and shown
        for line in hidden:
            assert not any(line in text for text in seen), (task.id, line)


# ----------------------------------------------------------------------------- the loop started from a direct answer

FROM_DIRECT = ExecutionSettings(mode="agent", plan="after", start="direct")


async def test_a_direct_answer_that_passes_the_examples_is_handed_in_at_once(scripted, pool, tmp_path):
    scripted.script("small", Reply(f"Here it is.\n{FENCE}python\n{RIGHT}\n{FENCE}", usage=(120, 20)))
    path = tmp_path / "t.jsonl"
    out = await run_execution(pool["small"], CodingEnvironment(), TASK, "Add one.", settings=FROM_DIRECT,
                              trajectory_path=path)
    assert (out.passed, out.reason, out.steps, out.answer_source) == (True, "submitted", 1, "direct")
    assert (out.input_tokens, out.output_tokens, out.answer) == (120, 20, RIGHT)
    (request,) = scripted.requests_for("small")
    (message,) = request["messages"]  # the direct mode's own prompt, plan after the task
    assert "Solve the task in this one reply." in message["content"] and "Your plan: Add one." in message["content"]
    header, step = list(read_jsonl(path))[:2]
    assert header["start"] == "direct" and step["start"] == "direct"
    assert step["examples"] == {"passed": 2, "total": 2}


async def test_a_failing_direct_answer_becomes_the_loops_first_run(scripted, pool, tmp_path):
    scripted.script("small", answer(WRONG), python(RIGHT), answer(RIGHT))
    path = tmp_path / "t.jsonl"
    out = await run_execution(pool["small"], CodingEnvironment(), TASK, "Add one.", settings=FROM_DIRECT,
                              trajectory_path=path)
    assert (out.passed, out.reason, out.steps, out.answer_source) == (True, "submitted", 3, "submitted")
    second = scripted.requests_for("small")[1]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert "Your first action: run your complete implementation" in second[1]["content"]
    assert second[2]["content"] == f"{FENCE}python\n{WRONG}\n{FENCE}"  # shown as the agent's own run
    assert second[3]["content"].startswith("Output of python:\nexit status 0")
    assert "The task's examples: 0 of 2 passed." in second[3]["content"]
    assert [s.get("examples") for s in steps_of(path)] == [{"passed": 0, "total": 2}, {"passed": 2, "total": 2}, None]
    # the loop never hands in worse than the direct answer: running it again ends the run with the best
    scripted.script("small", answer(RIGHT.replace("+ 1", "+ 2")), python(WRONG), python(RIGHT.replace("+ 1", "+ 2")))
    out = await run_execution(pool["small"], CodingEnvironment(), TASK, "", settings=FROM_DIRECT)
    assert out.reason == "repeated" and out.answer_source in ("best_code", "last_code") and not out.passed


async def test_a_direct_reply_without_a_solution_leaves_the_loop_as_it_was(scripted, pool):
    scripted.script("small", Reply("I would add one to x."), python(RIGHT), answer(RIGHT))
    out = await run_execution(pool["small"], CodingEnvironment(), TASK, "", settings=FROM_DIRECT)
    assert (out.passed, out.steps) == (True, 3)
    second = scripted.requests_for("small")[1]["messages"]
    assert [m["role"] for m in second] == ["system", "user"]  # the loop's own opening, the prose not shown


async def test_without_examples_a_direct_answer_that_compiles_is_handed_in(scripted, pool):
    env, plain = CodingEnvironment(), TASK.model_copy(update={"prompt": "Write `add_one(x)`, which returns x plus one."})
    scripted.script("small", answer(RIGHT))
    out = await run_execution(pool["small"], env, plain, "", settings=FROM_DIRECT)
    assert (out.passed, out.steps, out.answer_source) == (True, 1, "direct")
    broken = "def add_one(x):\n    return (x + 1"
    scripted.script("small", answer(broken), python(RIGHT), answer(RIGHT))
    out = await run_execution(pool["small"], env, plain, "", settings=FROM_DIRECT)
    assert (out.passed, out.steps) == (True, 3)
    assert "SyntaxError" in scripted.requests_for("small")[2]["messages"][3]["content"]


class BrokenToolEnvironment(CodingEnvironment):
    """The coding environment with a run_python tool that raises (a broken sandbox)."""

    def tools(self, task):
        async def run(code: str) -> str:
            raise RuntimeError("sandbox unavailable")

        return [replace(t, run=run) for t in super().tools(task)]


async def test_a_failing_tool_on_the_direct_start_is_shown_not_raised(scripted, pool):
    scripted.script("small", answer(WRONG), answer(RIGHT))
    out = await run_execution(pool["small"], BrokenToolEnvironment(), TASK, "", settings=FROM_DIRECT)
    assert out.passed and out.steps == 2
    shown = scripted.requests_for("small")[1]["messages"][3]["content"]
    assert "Tool 'run_python' failed: RuntimeError: sandbox unavailable" in shown and "0 of 2 passed" in shown


async def test_the_direct_start_is_a_tool_call_in_the_tools_format(scripted, pool):
    scripted.script("small", answer(WRONG), Reply("", tool_calls=[{"name": "submit", "arguments": {"answer": RIGHT}}]))
    out = await run_execution(pool["small"], CodingEnvironment(), TASK, "", settings=FROM_DIRECT, action_format="tools")
    assert out.passed and out.steps == 2
    second = scripted.requests_for("small")[1]["messages"]
    call = second[2]["tool_calls"][0]
    assert (second[2]["role"], call["function"]["name"], second[3]["role"]) == ("assistant", "run_python", "tool")
    assert json.loads(call["function"]["arguments"]) == {"code": WRONG}
    assert second[3]["tool_call_id"] == call["id"] and "0 of 2 passed" in second[3]["content"]


async def test_start_loop_begins_with_the_agents_first_action(scripted, pool):
    scripted.script("small", python(RIGHT), answer(RIGHT))
    out = await run_execution(pool["small"], CodingEnvironment(), TASK, "", settings=ExecutionSettings(start="loop"))
    assert out.passed and out.steps == 2
    assert [m["role"] for m in scripted.requests_for("small")[0]["messages"]] == ["system", "user"]
    scripted.script("small", Reply("ANSWER: Gustave Eiffel"))
    out = await run_execution(pool["small"], EIFFEL_ENV, EIFFEL, "", settings=ExecutionSettings(start="loop"))
    assert out.passed and out.steps == 1 and out.answer_source == "submitted"
    assert [m["role"] for m in scripted.requests_for("small")[2]["messages"]] == ["system", "user"]


# ----------------------------------------------------------------------------- the search loop's direct start


EIFFEL_DOCS = [Document(id=f"d{i}", title=f"Filler {i}", text=f"A company designed filler number {i}.") for i in range(8)]
EIFFEL_DOCS.append(Document(id="eiffel", title="Eiffel Tower", text="The Eiffel Tower was designed by Gustave Eiffel's company."))
EIFFEL_ENV = SearchEnvironment(SearchIndex.build(EIFFEL_DOCS))
EIFFEL = Task(id="s/1", domain="search", prompt="Whose company designed the Eiffel Tower?",
              grading={"answers": ["Gustave Eiffel"]})  # fmt: skip


async def test_a_search_loop_hands_in_the_retrieval_answer_at_once(scripted, pool, tmp_path):
    scripted.script("small", Reply("Gustave Eiffel", usage=(300, 4)))
    path = tmp_path / "t.jsonl"
    out = await run_execution(pool["small"], EIFFEL_ENV, EIFFEL, "Look it up.", settings=FROM_DIRECT, trajectory_path=path)
    assert (out.passed, out.reason, out.steps, out.answer_source) == (True, "submitted", 1, "direct")
    assert (out.answer, out.input_tokens, out.output_tokens) == ("Gustave Eiffel", 300, 4)
    (request,) = scripted.requests_for("small")
    (message,) = request["messages"]  # the direct mode's retrieval-then-answer prompt
    assert message["content"].startswith("Documents found for the question:\n\n[1] Eiffel Tower")
    assert "Your plan: Look it up." in message["content"] and not request.get("tools")
    header, step = list(read_jsonl(path))[:2]
    assert header["start"] == "direct" and step["start"] == "direct"
    assert step["action"] == {"kind": "answer", "answer": "Gustave Eiffel"}


@pytest.mark.parametrize("first, why", [
    ("Whose company designed the Eiffel Tower", "restated"),
    ("", "empty"),
    ("The final answer must be a short phrase only: a name, a date, a number, or yes/no.", "copied"),
])  # fmt: skip
async def test_an_unusable_retrieval_answer_starts_the_loop_from_that_retrieval(scripted, pool, tmp_path, first, why):
    scripted.script("small", Reply(first), Reply(f"{FENCE}open\n1\n{FENCE}"), Reply("ANSWER: Gustave Eiffel"))
    path = tmp_path / "t.jsonl"
    out = await run_execution(pool["small"], EIFFEL_ENV, EIFFEL, "", settings=FROM_DIRECT, trajectory_path=path)
    assert (out.passed, out.reason, out.steps, out.answer_source) == (True, "submitted", 3, "submitted")
    second = scripted.requests_for("small")[1]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    # shown as the agent's own first search (the question as the query, the tool's listing as the
    # output), in place of the answer it turned back
    assert second[2]["content"] == f"{FENCE}search\nWhose company designed the Eiffel Tower?\n{FENCE}"
    assert second[3]["content"].startswith("Output of search:\n1. [eiffel] Eiffel Tower")
    # open(1) names the first result of that search
    third = scripted.requests_for("small")[2]["messages"]
    assert "Gustave Eiffel's company" in third[-1]["content"]
    step = steps_of(path)[0]
    assert (step["start"], step["turned_back"], step["text"]) == ("direct", why, first)
    assert step["action"] == {"kind": "tool", "tool": "search", "arguments": {"query": EIFFEL.prompt}}


async def test_with_constrain_off_a_restated_retrieval_answer_is_handed_in(scripted, pool):
    scripted.script("small", Reply("Whose company designed the Eiffel Tower"))
    out = await run_execution(pool["small"], EIFFEL_ENV, EIFFEL, "", settings=FROM_DIRECT, constrain="off")
    assert (out.passed, out.steps, out.answer_source) == (False, 1, "direct")


async def test_the_search_start_is_a_tool_call_in_the_tools_format(scripted, pool):
    scripted.script("small", Reply(""), Reply("", tool_calls=[{"name": "submit", "arguments": {"answer": "Gustave Eiffel"}}]))
    out = await run_execution(pool["small"], EIFFEL_ENV, EIFFEL, "", settings=FROM_DIRECT, action_format="tools")
    assert out.passed and out.steps == 2
    second = scripted.requests_for("small")[1]["messages"]
    call = second[2]["tool_calls"][0]
    assert (second[2]["role"], call["function"]["name"], second[3]["role"]) == ("assistant", "search", "tool")
    assert json.loads(call["function"]["arguments"]) == {"query": EIFFEL.prompt}
    assert second[3]["tool_call_id"] == call["id"] and "[eiffel] Eiffel Tower" in second[3]["content"]


# ----------------------------------------------------------------------------- direct mode


async def test_direct_coding_is_one_call_graded_and_recorded(scripted, pool, tmp_path):
    scripted.script("small", Reply(f"Here it is.\n{FENCE}python\n{RIGHT}\n{FENCE}", usage=(200, 30)))
    path = tmp_path / "direct.jsonl"
    out = await run_execution(pool["small"], CodingEnvironment(), TASK, "Add one.",
                              settings=ExecutionSettings(mode="direct", plan="none"), trajectory_path=path)
    assert (out.passed, out.reason, out.steps, out.answer_source) == (True, "direct", 1, "direct")
    assert (out.input_tokens, out.output_tokens) == (200, 30) and out.grade["style"] == "humaneval"
    (request,) = scripted.requests_for("small")
    (message,) = request["messages"]
    assert message["role"] == "user" and message["content"].startswith("Complete the Python function `add_one`")
    assert "Solve the task in this one reply." in message["content"] and "Add one." not in message["content"]
    assert "tools" not in request or not request["tools"]
    lines = list(read_jsonl(path))
    assert [r["type"] for r in lines] == ["header", "step", "outcome"]
    assert lines[0]["mode"] == "direct" and lines[-1]["passed"] is True
    # the plan where the settings put it
    scripted.script("small", answer(RIGHT))
    await answer_directly(pool["small"], CodingEnvironment(), TASK, "Add one.", settings=ExecutionSettings(mode="direct", plan="before"))
    assert prompt_text(scripted.requests_for("small")[1]).startswith("Your plan: Add one.")


async def test_direct_search_answers_from_the_retrieved_documents(scripted, pool):
    scripted.script("small", Reply("Gustave Eiffel"))
    out = await run_execution(pool["small"], EIFFEL_ENV, EIFFEL, "", settings=ExecutionSettings(mode="direct", retrieve_k=2))
    assert out.passed and out.steps == 1 and out.reason == "direct"
    text = prompt_text(scripted.requests_for("small")[0])
    assert text.startswith("Documents found for the question:\n\n[1] Eiffel Tower\nThe Eiffel Tower was designed")
    assert "[2]" in text and "[3]" not in text and "Question: Whose company designed the Eiffel Tower?" in text
    assert "short phrase" in text
    # the question comes last, right before the answer: small models otherwise answer the
    # instructions' last words ("yes/no") instead of the question
    assert text.endswith("Question: Whose company designed the Eiffel Tower?\nAnswer:")


async def test_direct_mode_survives_an_endpoint_failure(scripted, pool):
    scripted.script("small", Reply("down", status=500))
    out = await answer_directly(pool["small"], CodingEnvironment(), TASK, "")
    assert out.reason.startswith("llm_error: HTTP 500") and not out.passed and out.answer is None


def test_execution_settings_are_read_from_the_pool_section():
    settings, limits, fmt = execution_config({"mode": "direct", "plan": "none", "max_steps": 3, "action_format": "tools"})
    assert (settings.mode, settings.plan, settings.examples, limits.max_steps, fmt) == ("direct", "none", True, 3, "tools")
    assert execution_config({})[0] == ExecutionSettings(mode="agent", plan="after", start="direct", examples=True)
    assert execution_config({"start": "loop"})[0].start == "loop"
    with pytest.raises(ConfigError, match=r"execution: start: got 'first'"):
        execution_config({"start": "first"})
    with pytest.raises(ConfigError, match=r"pool.yaml: execution: mode: got 'fast'; expected: .*'agent' or 'direct'"):
        execution_config({"mode": "fast"}, "pool.yaml: execution")
    with pytest.raises(ConfigError, match="unknown setting.s. mood; known: action_format, examples"):
        execution_config({"mood": "direct"})


@pytest.mark.llama
def test_direct_mode_end_to_end_on_the_tiny_gguf(tiny_model, tmp_path):
    from sale.cli import main as cli

    pool = tmp_path / "pool.yaml"
    pool.write_text(f"""
agents:
  - name: tiny
    model: {tiny_model}
    price: {{input: 0.01, output: 0.01}}
    context: 2048
    generation: {{max_tokens: 16}}
auction: {{bid_max_tokens: 16, refine_max_tokens: 16}}
execution: {{mode: direct, plan: none, max_output_tokens: 16}}
""")
    tasks = write_tasks(tmp_path / "tasks.jsonl", [
        TASK,
        Task(id="s/1", domain="search", prompt="Which city is the landmark in?", grading={"answers": ["Paris"]},
             documents=[Document(id="d1", title="Landmark", text="The landmark stands in Paris.")]),
    ])  # fmt: skip
    out = tmp_path / "out"
    argv = ["run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out), "--no-pull"]
    assert cli(argv) == 0
    results = list(read_jsonl(out / "results.jsonl"))
    assert [r["task_id"] for r in results] == ["c/add_one", "s/1"]
    for rec in results:
        assert rec["reason"] == "direct" and rec["tokens"]["execute"] > 0
        lines = list(read_jsonl(out / rec["trajectory"]))
        assert [r["type"] for r in lines] == ["header", "step", "outcome"] and lines[0]["mode"] == "direct"
        assert lines[-1]["grade"], rec["task_id"]  # graded: the grader's detail is recorded
    ledger_lines = len((out / "ledger.jsonl").read_text().splitlines())
    assert cli(argv) == 0  # resumed: nothing runs again
    assert len(list(read_jsonl(out / "results.jsonl"))) == 2
    assert len((out / "ledger.jsonl").read_text().splitlines()) == ledger_lines


def test_the_bench_builds_its_outcome_matrix_from_direct_answers(scripted, tmp_path):
    import argparse

    from sale.evaluation.bench import add_arguments, run_from_args
    from sale.evaluation.matrix import MatrixStore
    from sale.testing.scripted import jury_answer

    kinds: list[str] = []

    def respond(request):
        text = prompt_text(request)
        if "You are a juror" in text:
            kinds.append("jury")
            return Reply(jury_answer(text, lambda bid: 3))
        if "You are one of several agents bidding" in text or "You bid for tasks" in text:
            kinds.append("bid")
            return Reply("Write f and return x plus the number.")
        kinds.append("direct" if "Solve the task in this one reply." in text else "loop")
        k = text.split("returns x + ")[1].split(".")[0]
        body = f"def f(x):\n    return x + {k}" if request["model"] == "big" or int(k) % 2 else "def f(x):\n    return x"
        return Reply(f"{FENCE}python\n{body}\n{FENCE}")

    scripted.responder = respond
    pool = tmp_path / "pool.yaml"
    pool.write_text(scripted_pool_yaml(scripted.base_url, [("small", 0.1), ("big", 0.4)], max_retries=0))
    tasks = write_tasks(tmp_path / "tasks.jsonl", [
        Task(id=f"t{k}", domain="coding", tier=1 + k % 2, prompt=f"Write a function f(x) that returns x + {k}.",
             grading={"style": "asserts", "tests": f"assert f(1) == {1 + k}", "entry_point": "f"})
        for k in range(1, 5)
    ])  # fmt: skip
    out = tmp_path / "bench"

    def bench(*extra: str) -> int:
        ap = argparse.ArgumentParser()
        add_arguments(ap)
        return run_from_args(ap.parse_args(["--out", str(out), "--pool", str(pool), "--tasks", str(tasks), "--no-pull",
                                            "--orderings", "1", "--variants", "sale-no-memory", *extra]))  # fmt: skip

    assert bench("--execution-mode", "direct", "--execution-plan", "none") == 0
    matrix = MatrixStore.load(out / "matrix.jsonl")
    cells = list(matrix.cells())
    assert len(cells) == 8 and {c.reason for c in cells} == {"direct"}
    assert kinds.count("direct") == 8 and "loop" not in kinds  # one call per execution, no loop
    assert [c.passed for c in cells if c.agent == "big"] == [True] * 4
    assert [c.passed for c in cells if c.agent == "small"] == [True, False, True, False]  # right on odd k
    config = json.loads((out / "bench.json").read_text())["execution"]
    assert (config["mode"], config["plan"]) == ("direct", "none")
    with pytest.raises(ConfigError, match="another execution"):
        bench()  # the folder's matrix holds direct answers: the loop needs a folder of its own
