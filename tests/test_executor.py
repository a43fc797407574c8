"""The executor loop against the scripted server (real HTTP), real environments and files."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml

from sale.agent.actions import MalformedAction, parse_text_action, tool_schemas
from sale.agent.executor import Limits, Outcome, execute, opening_messages
from sale.config import parse_pool
from sale.envs.base import Grade, Tool
from sale.envs.coding import CodingEnvironment
from sale.envs.search import SearchEnvironment, SearchIndex
from sale.errors import ConfigError
from sale.llm.ledger import Ledger
from sale.llm.pool import Pool
from sale.testing.scripted import Reply, scripted_pool_yaml
from sale.workloads.task import Document, Task

FENCE = "```"
PLAN = "Search the tower, open its page, answer with the name."

DOCS = [
    Document(id="eiffel", title="Eiffel Tower",
             text="The Eiffel Tower in Paris was designed by the engineer Gustave Eiffel's company "
                  "and completed in 1889. " + "It is made of wrought iron. " * 40),
    Document(id="seine", title="Seine", text="The Seine is a river that flows through Paris."),
    Document(id="kiwi", title="Kiwi", text="The kiwi is a flightless bird of New Zealand."),
]
SEARCH_TASK = Task(id="s/eiffel", domain="search", prompt="Whose company designed the Eiffel Tower?",
                   grading={"answers": ["Gustave Eiffel", "Eiffel"]})
CODE_TASK = Task(
    id="c/vowels", domain="coding", prompt="Write count_vowels(text) returning the number of vowels.",
    grading={"style": "asserts", "entry_point": "count_vowels",
             "tests": "assert count_vowels('hello') == 2\nassert count_vowels('AEIOU x') == 5\n"},
)
TOY_TASK = Task(id="t/colour", domain="toy", prompt="What colour is the sky?")
GOOD_CODE = "def count_vowels(text):\n    return sum(ch in 'aeiouAEIOU' for ch in text)"


def block(label: str, body: str, note: str = "") -> str:
    return f"{note}\n{FENCE}{label}\n{body}\n{FENCE}" if note else f"{FENCE}{label}\n{body}\n{FENCE}"


class ToyEnv:
    """An environment made for the tests: a two-argument tool, a failing one, a slow one."""

    name = "toy"

    def describe(self, task: Task) -> str:
        return "A toy environment."

    def answer_instructions(self, task: Task) -> str:
        return "Answer with one word."

    def tools(self, task: Task) -> list[Tool]:
        async def add(a: int, b: int) -> str:
            return str(a + b)

        async def boom(x: str) -> str:
            raise RuntimeError(f"cannot handle {x}")

        async def wait(x: str) -> str:
            await asyncio.sleep(3600)
            return "never"

        def schema(**props):
            return {"type": "object", "properties": props, "required": list(props)}

        return [
            Tool("add", "Add two integers.", schema(a={"type": "integer"}, b={"type": "integer"}), add),
            Tool("boom", "Always fails.", schema(x={"type": "string"}), boom),
            Tool("wait", "Never returns.", schema(x={"type": "string"}), wait),
        ]

    async def grade(self, task: Task, answer: str) -> Grade:
        ok = answer.strip().lower() == "blue"
        return Grade(passed=ok, score=float(ok), detail={"seen": answer})


@pytest.fixture
async def pool(scripted):
    text = scripted_pool_yaml(scripted.base_url, [("small", 1000.0)], max_retries=0)
    async with Pool(parse_pool(yaml.safe_load(text)), ledger=Ledger()) as p:
        yield p


@pytest.fixture(scope="module")
def search_env():
    return SearchEnvironment(SearchIndex.build(DOCS))


async def run(scripted, pool, env, task, *replies, **kw) -> Outcome:
    scripted.script("small", *replies)
    return await execute(pool["small"], env, task, kw.pop("strategy", PLAN), **kw)


def messages(scripted, call: int) -> list[dict]:
    return scripted.requests_for("small")[call]["messages"]


# ----------------------------------------------------------------------------- episodes


async def test_search_open_answer_passes_and_writes_trajectory(scripted, pool, search_env, tmp_path):
    path = tmp_path / "runs" / "eiffel.jsonl"
    out = await run(
        scripted, pool, search_env, SEARCH_TASK,
        Reply(block("search", "Eiffel Tower designer", "I will search for the tower."), usage=(300, 20)),
        Reply(block("open", "eiffel") + "\nOutput: (hallucinated)", usage=(500, 10)),
        Reply("The page names him.\nANSWER: Gustave Eiffel", usage=(900, 12)),
        trajectory_path=path,
    )
    assert (out.passed, out.score, out.reason, out.answer) == (True, 1.0, "submitted", "Gustave Eiffel")
    assert (out.steps, out.input_tokens, out.output_tokens) == (3, 1700, 42)
    assert out.dollars == pytest.approx((1700 + 42) * 1000 / 1e6)
    assert out.answer_source == "submitted" and out.grade["em"] == 1.0

    reqs = scripted.requests_for("small")
    assert reqs[0]["stop"] == ["```\n\n"] and reqs[0]["max_tokens"] == 512
    first = reqs[0]["messages"]
    assert [m["role"] for m in first] == ["system", "user"]
    assert "search(<query>)" in first[0]["content"] and SEARCH_TASK.prompt in first[1]["content"]
    assert f"Your plan: {PLAN}" in first[1]["content"]
    assert first[1]["content"].endswith("Follow the plan. Write your first action now.")
    opening = "\n".join(m["content"] for m in first)
    assert "short phrase" in opening  # the environment's answer instructions
    second = messages(scripted, 1)
    assert second[-2] == {"role": "assistant", "content": block("search", "Eiffel Tower designer", "I will search for the tower.")}
    assert second[-1]["content"].startswith("Output of search:\n1. [eiffel] Eiffel Tower")
    assert "(5 replies left.)" in second[-1]["content"]
    third = messages(scripted, 2)
    assert third[-2]["content"] == block("open", "eiffel")  # text after the action is dropped
    assert "Gustave Eiffel's company" in third[-1]["content"]

    by_phase = pool.ledger.totals(by="phase")
    assert set(by_phase) == {"execute"} and by_phase["execute"].calls == 3
    assert by_phase["execute"].dollars == pytest.approx(out.dollars)
    assert pool.ledger.totals(task="s/eiffel").calls == 3

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["type"] for r in lines] == ["header", "step", "step", "step", "outcome"]
    head = lines[0]
    assert head["task_id"] == "s/eiffel" and head["agent"] == "small" and head["strategy"] == PLAN
    assert head["limits"]["max_steps"] == 6 and head["tools"] == ["search", "open"]
    steps = lines[1:4]
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert steps[0]["action"] == {"kind": "tool", "tool": "search", "arguments": {"query": "Eiffel Tower designer"}}
    assert steps[0]["observation"].startswith("1. [eiffel]") and steps[0]["input_tokens"] == 300
    assert steps[2]["action"] == {"kind": "answer", "answer": "Gustave Eiffel"} and steps[2]["observation"] is None
    assert all(s["elapsed_s"] >= 0 and s["dollars"] > 0 for s in steps)
    assert lines[-1]["passed"] is True and lines[-1]["trajectory"] == str(path) == out.trajectory


async def test_coding_runs_code_sees_output_and_passes(scripted, pool):
    env = CodingEnvironment()
    out = await run(
        scripted, pool, env, CODE_TASK,
        Reply(block("python", GOOD_CODE + "\nprint('got', count_vowels('hello'))", "Try it.")),
        Reply("It works.\nANSWER:\n" + block("python", GOOD_CODE)),
        strategy="Write the function, print one example, then submit it.",
    )
    assert out.reason == "submitted" and out.passed and out.answer_source == "submitted"
    assert out.steps == 2 and out.answer.startswith("def count_vowels")
    seen = messages(scripted, 1)[-1]["content"]
    assert seen.startswith("Output of python:") and "got 2" in seen


async def test_coding_wrong_answer_fails(scripted, pool):
    wrong = "def count_vowels(text):\n    return 0"
    out = await run(scripted, pool, CodingEnvironment(), CODE_TASK, Reply(block("answer", wrong)))
    assert out.reason == "submitted" and not out.passed and out.grade["exit_code"] != 0


async def test_unsubmitted_code_that_defines_the_entry_point_is_graded(scripted, pool):
    reply = Reply(block("python", GOOD_CODE + "\nprint(count_vowels('abc'))"))
    out = await run(scripted, pool, CodingEnvironment(), CODE_TASK, reply, limits=Limits(max_steps=1))
    assert out.reason == "max_steps" and out.answer_source == "last_code" and out.passed
    scripted.script("small", Reply(block("python", GOOD_CODE + "\nprint(1)")))
    out = await execute(pool["small"], CodingEnvironment(), CODE_TASK, PLAN, limits=Limits(max_steps=1), grade_last_code=False)
    assert out.reason == "max_steps" and out.answer is None and not out.passed and out.answer_source is None


async def test_a_prose_answer_after_running_the_code_grades_that_code(scripted, pool):
    ran = Reply(block("python", GOOD_CODE + "\nprint(count_vowels('hello'))"))
    prose = Reply("ANSWER: The function count_vowels counts the vowels; it printed 2.")
    out = await run(scripted, pool, CodingEnvironment(), CODE_TASK, ran, prose)
    assert out.reason == "submitted" and out.answer_source == "last_code" and out.passed
    wrong = "def count_vowels(text):\n    return 0"
    out = await run(scripted, pool, CodingEnvironment(), CODE_TASK, ran, Reply(block("answer", wrong)))
    assert out.answer_source == "submitted" and not out.passed  # a submitted definition wins


async def test_a_later_run_that_only_calls_the_function_does_not_replace_it(scripted, pool, tmp_path):
    # Each run starts in a fresh sandbox, so the call fails; the code that defined the
    # function stays the one graded.
    defined = Reply(block("python", GOOD_CODE))
    call = Reply(block("python", "print(count_vowels('hello'))"))
    path = tmp_path / "t.jsonl"
    out = await run(scripted, pool, CodingEnvironment(), CODE_TASK, defined, call, limits=Limits(max_steps=2), trajectory_path=path)
    second = [json.loads(line) for line in path.read_text().splitlines()][2]
    assert "NameError" in second["observation"]
    assert out.reason == "max_steps" and out.answer_source == "last_code" and out.passed
    assert out.answer == GOOD_CODE


async def test_running_the_same_solution_again_hands_it_in(scripted, pool, tmp_path):
    same = Reply(block("python", GOOD_CODE))
    path = tmp_path / "t.jsonl"
    out = await run(scripted, pool, CodingEnvironment(), CODE_TASK, same, same, same, trajectory_path=path)
    assert out.reason == "repeated" and out.steps == 2 and out.malformed == 0
    assert out.answer_source == "last_code" and out.passed and len(scripted.requests_for("small")) == 2
    steps = [json.loads(line) for line in path.read_text().splitlines()][1:-1]
    assert [s["step"] for s in steps] == [1, 2] and steps[1]["observation"] is None


# ----------------------------------------------------------------------------- malformed


async def test_consecutive_malformed_replies_end_the_run(scripted, pool, tmp_path):
    path = tmp_path / "t.jsonl"
    out = await run(scripted, pool, ToyEnv(), TOY_TASK, Reply("I think it is blue-ish."), Reply("Still thinking."),
                    Reply("ANSWER: blue"), trajectory_path=path)
    assert out.reason == "malformed" and out.steps == 2 and out.malformed == 2
    assert not out.passed and out.answer is None and out.grade == {}
    correction = messages(scripted, 1)[-1]["content"]
    assert correction.startswith("No action found.") and "```add" in correction
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 4 and lines[1]["malformed"].startswith("No action found")
    assert lines[-1]["reason"] == "malformed"


async def test_malformed_then_valid_action_recovers(scripted, pool):
    # Malformed replies alternate with valid ones, so the consecutive count never reaches 2.
    out = await run(
        scripted, pool, ToyEnv(), TOY_TASK,
        Reply(block("bash", "echo hi")),  # not a tool here
        Reply(block("add", "a: 2\nb: 40")),
        Reply(block("add", "a: two\nb: 1")),  # bad argument type
        Reply(block("add", '{"a": 1, "b": 1}')),
        Reply(block("boom", "sky")),  # the tool raises
        Reply(block("answer", "Blue")),
    )
    assert out.reason == "submitted" and out.passed and out.steps == 6 and out.malformed == 3
    assert messages(scripted, 1)[-1]["content"].startswith("```bash is not a tool here.")
    assert messages(scripted, 2)[-1]["content"].startswith("Output of add:\n42")
    assert "argument 'a' must be of type integer" in messages(scripted, 3)[-1]["content"]
    assert "Tool 'boom' failed: RuntimeError: cannot handle sky" in messages(scripted, 5)[-1]["content"]
    assert "last reply" in messages(scripted, 5)[-1]["content"]


async def test_repeating_an_action_is_corrected(scripted, pool):
    same = Reply("add: " + json.dumps({"a": 1, "b": 2}))
    out = await run(scripted, pool, ToyEnv(), TOY_TASK, same, same, same)
    assert out.reason == "malformed" and out.steps == 3 and out.malformed == 2
    correction = messages(scripted, 2)[-1]["content"]
    assert correction.startswith("You already ran exactly this action") and "Write ANSWER: and your final answer now" in correction


# ----------------------------------------------------------------------------- limits


def adds(n: int, **kw) -> list[Reply]:
    """n different valid tool calls (a repeated call would count as malformed)."""
    return [Reply(block("add", json.dumps({"a": i, "b": 1})), **kw) for i in range(n)]


async def test_step_limit(scripted, pool):
    out = await run(scripted, pool, ToyEnv(), TOY_TASK, *adds(4), limits=Limits(max_steps=3))
    assert out.reason == "max_steps" and out.steps == 3 and len(scripted.requests_for("small")) == 3
    assert "This is your last reply" in messages(scripted, 2)[-1]["content"]


async def test_token_limit_and_per_step_output_budget(scripted, pool):
    out = await run(scripted, pool, ToyEnv(), TOY_TASK, *adds(4, usage=(5000, 100)), limits=Limits(max_tokens=10_500))
    assert out.reason == "max_tokens" and out.steps == 3
    assert (out.input_tokens, out.output_tokens) == (15_000, 300)
    assert [r["max_tokens"] for r in scripted.requests_for("small")] == [512, 512, 300]


async def test_dollar_limit(scripted, pool):
    steps = adds(3, usage=(1000, 100))  # $1.10 a step at $1000/M
    out = await run(scripted, pool, ToyEnv(), TOY_TASK, *steps, limits=Limits(max_dollars=2.0))
    assert out.reason == "max_dollars" and out.steps == 2 and out.dollars == pytest.approx(2.2)


async def test_wall_time_limit_during_a_call_and_during_a_tool(scripted, pool, tmp_path):
    out = await run(scripted, pool, ToyEnv(), TOY_TASK, Reply(hang=True), limits=Limits(max_wall_s=0.3))
    assert out.reason == "max_wall_s" and out.steps == 0
    path = tmp_path / "wall.jsonl"
    out = await run(scripted, pool, ToyEnv(), TOY_TASK, Reply(block("wait", "x")),
                    limits=Limits(max_wall_s=0.3), trajectory_path=path)
    assert out.reason == "max_wall_s" and out.steps == 1
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[1]["interrupted"] == "max_wall_s" and lines[-1]["reason"] == "max_wall_s"


async def test_llm_error_ends_the_run_without_raising(scripted, pool, tmp_path):
    path = tmp_path / "err.jsonl"
    out = await run(scripted, pool, ToyEnv(), TOY_TASK, Reply(block("add", "a: 1\nb: 1")),
                    Reply("server on fire", status=500), trajectory_path=path)
    assert out.reason.startswith("llm_error: HTTP 500") and out.steps == 1 and not out.passed
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["type"] for r in lines] == ["header", "step", "outcome"]


def test_opening_without_a_plan_and_in_the_tools_format():
    env = ToyEnv()
    plain = opening_messages(env, TOY_TASK, "  ", env.tools(TOY_TASK), Limits(), "text")
    assert [m["role"] for m in plain] == ["system", "user"] and "plan" not in plain[1]["content"]
    assert plain[1]["content"].endswith("Your final answer: Answer with one word.\n\nWrite your first action now.")
    assert "```add\na: <a>\nb: <b>\n```" in plain[0]["content"] and "boom(<x>)" in plain[0]["content"]
    tools = opening_messages(env, TOY_TASK, "plan", env.tools(TOY_TASK), Limits(max_steps=4), "tools")
    assert "```" not in tools[0]["content"] and "at most 4 replies" in tools[0]["content"]


def test_limits_are_validated():
    with pytest.raises(ConfigError, match="max_steps"):
        Limits(max_steps=0)
    assert Limits.from_mapping({"max_steps": 3}).max_steps == 3
    with pytest.raises(ConfigError, match="unknown limit"):
        Limits.from_mapping({"max_stpes": 3})


async def test_bad_action_format_is_a_config_error(pool):
    with pytest.raises(ConfigError, match="action_format"):
        await execute(pool["small"], ToyEnv(), TOY_TASK, PLAN, action_format="json")


# ----------------------------------------------------------------------------- native tool calls


async def test_native_tool_calls(scripted, pool, search_env):
    out = await run(
        scripted, pool, search_env, SEARCH_TASK,
        Reply("", tool_calls=[{"name": "search", "arguments": {"query": "Eiffel Tower", "k": 2}}]),
        Reply("", tool_calls=[{"name": "lookup", "arguments": {"q": "x"}}]),  # no such tool
        Reply("", tool_calls=[{"name": "submit", "arguments": {"answer": "Gustave Eiffel"}}]),
        action_format="tools",
        limits=Limits(max_observation_chars=60),
    )
    assert out.reason == "submitted" and out.passed and out.steps == 3 and out.malformed == 1
    first = scripted.requests_for("small")[0]
    assert "stop" not in first
    assert [t["function"]["name"] for t in first["tools"]] == ["search", "open", "submit"]
    second = messages(scripted, 1)
    assert second[-2]["role"] == "assistant" and second[-2]["tool_calls"][0]["function"]["name"] == "search"
    assert second[-1]["role"] == "tool" and second[-1]["tool_call_id"] == "call_0"
    assert "characters cut" in second[-1]["content"] and second[-1]["content"].startswith("1. [eiffel]")
    assert "There is no tool 'lookup'" in messages(scripted, 2)[-1]["content"]


async def test_native_format_accepts_a_text_answer_and_rejects_prose(scripted, pool):
    out = await run(scripted, pool, ToyEnv(), TOY_TASK, Reply("Hmm."), Reply("ANSWER: blue"), action_format="tools")
    assert out.reason == "submitted" and out.passed and out.malformed == 1
    assert "call submit" in messages(scripted, 1)[-1]["content"]


# ----------------------------------------------------------------------------- parsing


def _tools() -> list[Tool]:
    return ToyEnv().tools(TOY_TASK) + CodingEnvironment().tools(CODE_TASK)


def test_first_action_wins_and_cut_fences_are_restored():
    text = "Plan.\n```json\n{}\n```\n```add\na: 1\nb: 2\n```\n```answer\nblue\n```"
    action = parse_text_action(text, _tools())
    assert (action.kind, action.tool, action.arguments) == ("tool", "add", {"a": 1, "b": 2})
    assert action.text.endswith("b: 2\n```") and "answer" not in action.text
    cut = parse_text_action("Run it.\n```python\nprint(1)", _tools())  # stop sequence ate the fence
    assert (cut.tool, cut.arguments, cut.text) == ("run_python", {"code": "print(1)"}, "Run it.\n```python\nprint(1)\n```")
    one_line = parse_text_action("```boom sky```", _tools())
    assert one_line.arguments == {"x": "sky"}


def test_answers_in_every_form():
    assert parse_text_action("**Answer:** Paris", []).answer == "Paris"
    assert parse_text_action("Final answer: 1889", []).answer == "1889"
    code = parse_text_action("Done.\nANSWER:\n\n```python\ndef f():\n    return 1\n```\ntrailing", _tools())
    assert code.kind == "answer" and code.answer == "def f():\n    return 1"
    assert parse_text_action("```answer\nblue\n```", _tools()).answer == "blue"
    assert parse_text_action('answer("Ada Quell")', _tools()).answer == "Ada Quell"
    both = parse_text_action("ANSWER: the function below\n\n```python\ndef f():\n    return 1\n```\nbye", _tools())
    assert both.answer == "the function below\n```python\ndef f():\n    return 1\n```"
    same_line = parse_text_action("ANSWER: ```python\ndef f():\n    return 1\n```\nmore", _tools())
    assert same_line.answer == "def f():\n    return 1" and same_line.text.endswith("return 1\n```")
    cut = parse_text_action("ANSWER:\n```\ndef f():\n    return 1\n", _tools())  # closing fence cut by the stop
    assert cut.answer == "def f():\n    return 1" and cut.text.endswith("return 1\n```")


def test_one_line_tool_calls():
    search = SearchEnvironment(SearchIndex.build(DOCS)).tools(SEARCH_TASK)
    cases = {
        "SEARCH: Halloway Bridge\nOPEN: x\nANSWER: 1965": {"query": "Halloway Bridge"},  # first wins
        "**Search:** Halloway": {"query": "Halloway"},
        'search("Halloway Bridge", k=3)': {"query": "Halloway Bridge", "k": 3},
        "search(Halloway Bridge, k=5)": {"k": 5, "query": "Halloway Bridge"},  # unquoted, as models write
        "search(query=Quillmere, England)": {"query": "Quillmere, England"},
        "First I look up the mill. search(Corvin Textiles)": {"query": "Corvin Textiles"},
    }
    for text, arguments in cases.items():
        action = parse_text_action(text, search)
        assert (action.tool, action.arguments) == ("search", arguments), text
    assert parse_text_action("- open: d3", search).arguments == {"id": "d3"}
    with pytest.raises(MalformedAction, match="at most 2"):
        parse_text_action("search(1, 2, 3)", search)
    for prose in ("I will search: for it later", "I use search(x) to look it up."):
        with pytest.raises(MalformedAction):  # a tool named inside a sentence is not an action
            parse_text_action(prose, search)


def test_json_tool_calls_written_as_text():
    search = SearchEnvironment(SearchIndex.build(DOCS)).tools(SEARCH_TASK)
    doubled = '{{"name": "search", "arguments": {"query": "Halloway", "k": 1}}}\n\n{{"name": "submit", "arguments": {}}}'
    action = parse_text_action(doubled, search)
    assert (action.tool, action.arguments) == ("search", {"query": "Halloway", "k": 1}) and "submit" not in action.text
    tagged = '<tool_call>\n{"name": "submit", "arguments": {"answer": "1827"}}\n</tool_call>'
    assert parse_text_action(tagged, search).answer == "1827"
    with pytest.raises(MalformedAction, match="No action"):
        parse_text_action('{"name": "fly", "arguments": {}}', search)


async def test_native_format_accepts_a_call_written_as_text(scripted, pool, search_env):
    text_call = '<tool_call>\n{"name": "search", "arguments": {"query": "Eiffel Tower"}}\n</tool_call>'
    out = await run(scripted, pool, search_env, SEARCH_TASK, Reply(text_call), Reply("ANSWER: Eiffel"),
                    action_format="tools")
    assert out.reason == "submitted" and out.passed and out.steps == 2 and out.malformed == 0
    assert messages(scripted, 1)[-1]["content"].startswith("Output of search:\n1. [eiffel]")


def test_malformed_blocks_are_explained():
    with pytest.raises(MalformedAction, match="No action found"):
        parse_text_action("just prose", _tools())
    with pytest.raises(MalformedAction, match="several arguments"):
        parse_text_action("```add\n1 2\n```", _tools())
    with pytest.raises(MalformedAction, match="empty"):
        parse_text_action("```python\n\n```", _tools())
    schemas = tool_schemas(_tools(), "one word")
    assert schemas[-1]["function"]["parameters"]["required"] == ["answer"]


def test_every_action_in_the_text_prompt_starts_with_its_form_not_its_description():
    # A small model copies the first line of an entry as its reply: that line must be an action.
    task = Task(id="c", domain="coding", prompt="Write add(a, b).",
                grading={"style": "asserts", "tests": "assert add(1, 2) == 3", "entry_point": "add"})
    env = CodingEnvironment()
    system = opening_messages(env, task, "", env.tools(task), Limits(), "text")[0]["content"]
    actions = system.split("Actions (write them exactly like this):\n")[1].split("\n\nExample")[0]
    assert actions.startswith("```python\n<code>\n```\n  (Run a Python program")
    assert "\nANSWER: <your final answer>\n  (Your final answer" in actions
    assert "Give your final answer" not in system
