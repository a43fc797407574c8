"""Constrained executor steps: the grammars and schemas, what each endpoint is sent,
the tiny model through real llama.cpp under the grammar, and answers that restate the
question."""

from __future__ import annotations

import json
import random

import pytest
import yaml
from gbnf import Grammar

from sale.agent.actions import MalformedAction, parse_text_action
from sale.agent.constrain import (
    ANSWER_WORDS, TURN_BACK, ConstrainSettings, action_grammar, action_schema, batched_jury_grammar, bid_grammar, choose,
    jury_grammar, restates_question, turn_back, TURN_BACK_COPIED, copies_instructions,
)  # fmt: skip
from sale.agent.executor import REPEATED, Limits, execute
from sale.config import parse_pool
from sale.envs.coding import CodingEnvironment
from sale.envs.search import SearchEnvironment, SearchIndex
from sale.errors import ConfigError
from sale.llm.ledger import Ledger
from sale.llm.pool import Pool
from sale.testing.scripted import Reply, scripted_pool_yaml
from sale.workloads.task import Document, Task

FENCE = "```"
DOCS = [
    Document(id="eiffel", title="Eiffel Tower",
             text="The Eiffel Tower in Paris was designed by the engineer Gustave Eiffel's company."),
    Document(id="seine", title="Seine", text="The Seine is a river that flows through Paris."),
]
SEARCH_TASK = Task(id="s/eiffel", domain="search", prompt="Whose company designed the Eiffel Tower in Paris?",
                   grading={"answers": ["Gustave Eiffel"]})
CODE_TASK = Task(
    id="c/vowels", domain="coding", prompt="Write count_vowels(text) returning the number of vowels.",
    grading={"style": "asserts", "entry_point": "count_vowels", "tests": "assert count_vowels('hello') == 2\n"},
)
#: Characters the property tests draw from: letters, digits, the punctuation the
#: parser treats specially, whitespace, every kind of line break and non-ASCII letters.
ALPHABET = "abcXYZ019 \t\n\r\x0b\x0c\x1c\x85\u2028.,;:!?()[]{}<>=+-*/\\\"'`#_|&%$@~^é中ж"


@pytest.fixture(scope="module")
def search_env():
    return SearchEnvironment(SearchIndex.build(DOCS))


@pytest.fixture(scope="module")
def search_tools(search_env):
    return search_env.tools(SEARCH_TASK)


@pytest.fixture(scope="module")
def code_tools():
    return CodingEnvironment().tools(CODE_TASK)


# ----------------------------------------------------------------------------- grammars

WELL_FORMED_SEARCH = [
    'search("Eiffel Tower designer")',
    'I look for the tower first.\nsearch("Eiffel Tower designer")',
    "The first result looks right. I open it.\nopen(\"eiffel\")",
    'open("1")',
    "ANSWER: Gustave Eiffel",
    "The page names him. I am sure.\nANSWER: Gustave Eiffel",
    "ANSWER: " + " ".join(["word"] * ANSWER_WORDS),
    "ANSWER: 1889",
    'search("Eiffel, Tower (Paris) \'designer\' 1889")',
]
MALFORMED_SEARCH = [
    "",
    "I will search for the tower.",  # a thought, no action
    'search("a")\nsearch("b")',  # two actions
    'search("")',  # an empty query
    "search(Eiffel Tower)",  # an unquoted argument
    'lookup("Eiffel Tower")',  # no such tool
    "ANSWER: ",  # an empty answer
    "ANSWER: " + " ".join(["word"] * (ANSWER_WORDS + 1)),  # more words than a short phrase
    f"{FENCE}python\nprint(1)\n{FENCE}",  # no code tool here
    'Thought: I search.\nsearch("x")',  # a colon in the thought reads as an action
    'search("x") and more',
]
WELL_FORMED_CODE = [
    f"{FENCE}python\nprint(count_vowels('hello'))\n{FENCE}",
    f"I test my function first.\n{FENCE}python\ndef count_vowels(text):\n    return sum(c in 'aeiou' for c in text)\n"
    f"print(count_vowels('hello'))\n{FENCE}",
    f"ANSWER:\n{FENCE}python\ndef count_vowels(text):\n    return sum(c in 'aeiou' for c in text)\n{FENCE}",
    f"It works. I hand it in.\nANSWER:\n{FENCE}python\nx = '`a`' + \"``\"\n{FENCE}",
]
MALFORMED_CODE = [
    "ANSWER: count_vowels",  # a coding answer is code
    f"{FENCE}python\n\n{FENCE}",  # an empty block
    f"{FENCE}bash\nls\n{FENCE}",  # no such tool
    f"{FENCE}python\nprint(1)\n{FENCE}\n{FENCE}python\nprint(2)\n{FENCE}",  # two actions
    f"{FENCE}python\nprint('{FENCE}')\n{FENCE}",  # a fence inside the code closes the block early
    'search("x")',
]


@pytest.mark.parametrize("text", WELL_FORMED_SEARCH)
def test_search_grammar_accepts_well_formed_actions(search_tools, text):
    grammar = Grammar(action_grammar(search_tools, SEARCH_TASK))
    assert grammar.accepts(text), text
    parse_text_action(text, search_tools)  # and the parser reads it as an action


@pytest.mark.parametrize("text", MALFORMED_SEARCH)
def test_search_grammar_rejects_malformed_actions(search_tools, text):
    assert not Grammar(action_grammar(search_tools, SEARCH_TASK)).accepts(text), text


@pytest.mark.parametrize("text", WELL_FORMED_CODE)
def test_code_grammar_accepts_well_formed_actions(code_tools, text):
    assert Grammar(action_grammar(code_tools, CODE_TASK)).accepts(text), text
    parse_text_action(text, code_tools)


@pytest.mark.parametrize("text", MALFORMED_CODE)
def test_code_grammar_rejects_malformed_actions(code_tools, text):
    assert not Grammar(action_grammar(code_tools, CODE_TASK)).accepts(text), text


@pytest.mark.parametrize("which", ["search", "code"])
def test_every_string_the_grammar_produces_is_an_action(which, search_tools, code_tools):
    """The point of the grammar: whatever a model writes under it, the parser reads an
    action (the right kind: a search answer is a short phrase, a coding answer is code)."""
    tools, task = (search_tools, SEARCH_TASK) if which == "search" else (code_tools, CODE_TASK)
    grammar = Grammar(action_grammar(tools, task))
    rng = random.Random(7)
    kinds = set()
    for _ in range(400):
        text = grammar.sample(rng, ALPHABET)
        assert grammar.accepts(text)
        try:
            action = parse_text_action(text, tools)
        except MalformedAction as exc:
            pytest.fail(f"grammar produced an unparseable reply {text!r}: {exc}")
        kinds.add(action.tool or "answer")
        if action.kind == "answer" and which == "search":
            assert 1 <= len(action.answer.split()) <= ANSWER_WORDS
        if action.kind == "answer" and which == "code":
            assert action.answer.strip() and FENCE not in action.answer
    assert kinds == ({"search", "open", "answer"} if which == "search" else {"run_python", "answer"})


def test_grammar_for_a_tool_of_several_arguments():
    from sale.envs.base import Tool

    async def add(a: int, b: int) -> str:
        return str(a + b)

    params = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}
    tools = [Tool("add", "Add two integers.", params, add)]
    task = Task(id="t", domain="toy", prompt="Add 2 and 3.")
    grammar = Grammar(action_grammar(tools, task))
    assert grammar.accepts(f"{FENCE}add\na: 2\nb: -3\n{FENCE}")
    assert not grammar.accepts(f"{FENCE}add\na: two\nb: 3\n{FENCE}")
    assert not grammar.accepts(f"{FENCE}add\na: 2\n{FENCE}")
    rng = random.Random(3)
    for _ in range(200):
        action = parse_text_action(grammar.sample(rng, ALPHABET), tools)
        if action.kind == "tool":
            assert isinstance(action.arguments["a"], int) and isinstance(action.arguments["b"], int)


def test_bid_and_jury_grammars():
    bid = Grammar(bid_grammar(5))
    assert bid.accepts("Search the tower, then answer.")
    assert not bid.accepts("Search the tower, then open it and answer.")  # 8 words
    assert not bid.accepts(f"{FENCE}python\nx\n{FENCE}") and not bid.accepts("x = 1")
    jury = Grammar(jury_grammar())
    assert jury.accepts("SCORE: 4") and not jury.accepts("SCORE: 6") and not jury.accepts("4")
    batched = Grammar(batched_jury_grammar(3))
    assert batched.accepts("BID 1: 3\nBID 2: 0\nBID 3: 5\n")
    assert not batched.accepts("BID 1: 3\nBID 3: 5\n")


def test_schema_of_the_tool_calls(search_tools):
    import jsonschema
    schema = action_schema(search_tools, SEARCH_TASK)
    ok = [
        {"name": "search", "arguments": {"query": "Eiffel Tower", "k": 3}},
        {"name": "open", "arguments": {"id": "eiffel"}},
        {"name": "submit", "arguments": {"answer": "Gustave Eiffel"}},
    ]
    bad = [
        {"name": "search", "arguments": {}},
        {"name": "lookup", "arguments": {"query": "x"}},
        {"name": "submit", "arguments": {"answer": " ".join(["w"] * (ANSWER_WORDS + 1))}},
        {"name": "search"},
    ]
    for call in ok:
        jsonschema.validate(call, schema)
        parse_text_action(json.dumps(call), search_tools)
    for call in bad:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(call, schema)


# ----------------------------------------------------------------------------- endpoints


def _pool(scripted, **endpoint_fields):
    text = scripted_pool_yaml(scripted.base_url, [("small", 1.0)], max_retries=0)
    data = yaml.safe_load(text)
    data["agents"][0]["endpoint"].update(endpoint_fields)
    return Pool(parse_pool(data), ledger=Ledger())


async def test_an_endpoint_without_support_gets_no_constraint_with_auto(scripted, search_env, tmp_path):
    async with _pool(scripted) as pool:
        scripted.script("small", Reply('search("Eiffel Tower")'), Reply("ANSWER: Gustave Eiffel"))
        out = await execute(pool["small"], search_env, SEARCH_TASK, "", trajectory_path=tmp_path / "t.jsonl")
    assert out.passed
    for request in scripted.requests_for("small"):
        assert "grammar" not in request and "response_format" not in request
    header = json.loads((tmp_path / "t.jsonl").read_text().splitlines()[0])
    assert header["constrain"] == {"mode": "auto", "used": None}


async def test_grammar_asked_of_an_endpoint_without_it_is_a_clear_error(scripted, search_env):
    async with _pool(scripted) as pool:
        with pytest.raises(ConfigError, match="agent 'small' has no endpoint that takes a grammar"):
            await execute(pool["small"], search_env, SEARCH_TASK, "", constrain="grammar")
        with pytest.raises(ConfigError, match="no endpoint that takes a JSON schema"):
            await execute(pool["small"], search_env, SEARCH_TASK, "", constrain="json_schema")
    assert scripted.requests_for("small") == []  # refused before any call


async def test_a_declared_grammar_endpoint_gets_the_grammar(scripted, search_env, search_tools):
    async with _pool(scripted, structured_output="grammar") as pool:
        scripted.script("small", Reply("ANSWER: Gustave Eiffel"))
        await execute(pool["small"], search_env, SEARCH_TASK, "")
        (request,) = scripted.requests_for("small")
        assert request["grammar"] == action_grammar(search_tools, SEARCH_TASK, max_tokens=Limits().max_output_tokens)
        scripted.script("small", Reply("ANSWER: Gustave Eiffel"))
        await execute(pool["small"], search_env, SEARCH_TASK, "", constrain="off")
        assert "grammar" not in scripted.requests_for("small")[-1]
        with pytest.raises(ConfigError, match="native tool calls"):
            await execute(pool["small"], search_env, SEARCH_TASK, "", constrain="grammar", action_format="tools")


@pytest.mark.parametrize("action_format", ["text", "tools"])
async def test_a_json_schema_endpoint_gets_the_schema_and_its_json_reply_is_an_action(scripted, search_env, search_tools, action_format):
    async with _pool(scripted, structured_output="json_schema") as pool:
        scripted.script(
            "small",
            Reply(json.dumps({"name": "search", "arguments": {"query": "Eiffel Tower"}})),
            Reply(json.dumps({"name": "submit", "arguments": {"answer": "Gustave Eiffel"}})),
        )
        out = await execute(pool["small"], search_env, SEARCH_TASK, "", action_format=action_format)
    assert (out.passed, out.steps, out.malformed) == (True, 2, 0)
    for request in scripted.requests_for("small"):
        fmt = request["response_format"]
        assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"] == action_schema(search_tools, SEARCH_TASK)
        assert "grammar" not in request


def test_choose_and_settings():
    class Local:
        name, config = "l", type("C", (), {"is_local": True})()

    assert choose("auto", Local()) == "grammar"
    assert choose("auto", Local(), "tools") is None
    assert choose("off", Local()) is None
    from sale.agent.constrain import auction_fields

    remote = type("R", (), {"name": "r", "config": type("C", (), {"is_local": False, "endpoint": None})()})()
    assert auction_fields("auto", Local(), "g") == {"extra": {"grammar": "g"}}
    assert auction_fields("auto", remote, "g") == {} and auction_fields("off", Local(), "g") == {}
    with pytest.raises(ConfigError, match="must be one of"):
        ConstrainSettings.pop_from({"constrain": "always"}, "pool.yaml: execution")
    section = {"constrain": "off", "turn_back_restated": False, "max_steps": 3}
    assert ConstrainSettings.pop_from(section) == ConstrainSettings("off", False) and section == {"max_steps": 3}


def test_pool_file_execution_section_takes_constrain(scripted, tmp_path):
    from sale.run import open_runner

    text = scripted_pool_yaml(scripted.base_url, [("small", 1.0)])
    data = yaml.safe_load(text)
    data["execution"] = {"constrain": "off", "max_steps": 3}
    pool = Pool(parse_pool(data), ledger=Ledger())
    runner = open_runner(pool, tmp_path / "run", [], envs={})
    assert runner.constrain.mode == "off" and runner.limits.max_steps == 3
    data["execution"] = {"constrain": "sometimes"}
    with pytest.raises(ConfigError, match="execution: execution.constrain must be one of"):
        open_runner(Pool(parse_pool(data), ledger=Ledger()), tmp_path / "run2", [], envs={})


# ----------------------------------------------------------------------------- answers


QUESTION = "In which county is the most populous city in the state where WDXQ can be heard?"


@pytest.mark.parametrize("answer", [
    "The county where the most populous city in the state where WDXQ can be heard",
    "the county of the most populous city in the state where WDXQ is heard",
    "most populous city county WDXQ state",
])
def test_answers_that_restate_the_question(answer):
    assert restates_question(answer, QUESTION)


@pytest.mark.parametrize("answer", [
    "Cook County",
    "the county of Chicago",  # a new entity
    "1889",
    "WDXQ",  # one of the question's entities: too small a share to be a restatement
    "It is in the county seat of Tennessee",
    "",
])
def test_answers_that_answer(answer):
    assert not restates_question(answer, QUESTION)


def test_comparison_answers_name_an_entity_of_the_question():
    q = "Which film came out first, The Big Sleep or Casablanca?"
    assert not restates_question("The Big Sleep", q) and not restates_question("Casablanca", q)
    assert turn_back(Task(id="x", domain="search", prompt=q), "Casablanca") is None
    assert turn_back(CODE_TASK, QUESTION) is None  # coding answers are never turned back


async def test_a_restated_answer_is_turned_back_once_as_a_step(scripted, search_env, tmp_path):
    task = Task(id="s/q", domain="search", prompt=QUESTION, grading={"answers": ["Cook County"]})
    restated = "ANSWER: The county where the most populous city in the state where WDXQ can be heard"
    async with _pool(scripted) as pool:
        scripted.script("small", Reply(restated), Reply("ANSWER: Cook County"))
        path = tmp_path / "t.jsonl"
        out = await execute(pool["small"], search_env, task, "", trajectory_path=path)
        assert (out.passed, out.answer, out.steps, out.malformed) == (True, "Cook County", 2, 0)
        steps = [json.loads(line) for line in path.read_text().splitlines() if '"type": "step"' in line]
        assert steps[0]["turned_back"] == "restated" and steps[0]["observation"] == TURN_BACK
        second = scripted.requests_for("small")[1]["messages"]
        assert second[-1]["role"] == "user" and "restates the question" in second[-1]["content"]

        # once only: the same restatement again is the answer
        scripted.script("small", Reply(restated), Reply(restated))
        out = await execute(pool["small"], search_env, task, "")
        assert (out.answer, out.steps, out.passed) == (restated.removeprefix("ANSWER: "), 2, False)

        # never on the last step, and not at all with turn_back_restated off
        scripted.script("small", Reply(restated))
        out = await execute(pool["small"], search_env, task, "", limits=Limits(max_steps=1))
        assert out.steps == 1 and out.answer.startswith("The county")
        scripted.script("small", Reply(restated))
        out = await execute(pool["small"], search_env, task, "", constrain=ConstrainSettings("auto", False))
        assert out.steps == 1 and out.answer.startswith("The county")
        scripted.script("small", Reply(restated))
        out = await execute(pool["small"], search_env, task, "", constrain="off")
        assert out.steps == 1 and out.answer.startswith("The county")


def test_answers_that_copy_the_instructions():
    instructions = "This is your last reply: write ANSWER: and your final answer now.\nAnswer with a name, a date, a number."
    assert copies_instructions("and your final answer now.", instructions)
    assert copies_instructions("A date, a number", instructions)
    assert not copies_instructions("a number", instructions)  # too short to tell from an answer
    assert not copies_instructions("your final answer is Paris", instructions)
    assert turn_back(Task(id="x", domain="search", prompt=QUESTION), "and your final answer now.", instructions) == TURN_BACK_COPIED
    assert turn_back(CODE_TASK, "and your final answer now.", instructions) is None


async def test_a_copied_then_restated_answer_is_turned_back_once_for_each(scripted, search_env, tmp_path):
    task = Task(id="s/q", domain="search", prompt=QUESTION, grading={"answers": ["Cook County"]})
    copied, restated = "ANSWER: a place, a date, a number, or yes or no.", f"ANSWER: {QUESTION}"
    async with _pool(scripted) as pool:
        scripted.script("small", Reply(copied), Reply(restated), Reply(copied), Reply("ANSWER: Cook County"))
        path = tmp_path / "t.jsonl"
        out = await execute(pool["small"], search_env, task, "", trajectory_path=path)
        steps = [json.loads(line) for line in path.read_text().splitlines() if '"type": "step"' in line]
        assert [s.get("turned_back") for s in steps] == ["copied", "restated", None]  # the second copy is the answer
        assert steps[0]["observation"] == TURN_BACK_COPIED and (out.steps, out.passed) == (3, False)
        assert out.answer == copied.removeprefix("ANSWER: ")
        # an answer that copies no instruction is taken at once
        scripted.script("small", Reply("ANSWER: Cook County"))
        out = await execute(pool["small"], search_env, task, "")
        assert (out.steps, out.passed) == (1, True)


# ----------------------------------------------------------------------------- real llama.cpp


@pytest.mark.llama
async def test_tiny_model_under_the_grammar_acts_on_every_step(tiny_model, search_env, tmp_path):
    """The random model writes gibberish; under the grammar each of its replies is an
    action, on every step of an episode, in the search and the coding environment."""
    data = {"agents": [{"name": "tiny", "model": str(tiny_model), "price": {"input": 1.0, "output": 1.0},
                        "context": 2048}]}  # fmt: skip
    limits = Limits(max_steps=3, max_output_tokens=128, max_malformed=3)
    async with Pool(parse_pool(data), ledger=Ledger()) as pool:
        tiny = pool["tiny"]
        for env, task in [(search_env, SEARCH_TASK), (CodingEnvironment(), CODE_TASK)]:
            path = tmp_path / f"{task.domain}.jsonl"
            out = await execute(tiny, env, task, "", limits=limits, trajectory_path=path)
            lines = [json.loads(line) for line in path.read_text().splitlines()]
            assert lines[0]["constrain"] == {"mode": "auto", "used": "grammar"}
            steps = [line for line in lines if line["type"] == "step"]
            assert len(steps) == out.steps >= 1 and out.reason != "malformed"
            assert all(s["action"] is not None for s in steps), [s["text"] for s in steps]
            # a step is only ever turned down for repeating an earlier action, never for its form
            assert all(s["malformed"] in (None, REPEATED["text"]) for s in steps)
            # and each reply, read again, is one action of the environment
            for s in steps:
                parse_text_action(s["text"], env.tools(task))

        # unconstrained, the same model writes no action
        off = await execute(tiny, search_env, SEARCH_TASK, "", limits=limits, constrain="off")
        assert off.malformed >= 1 and off.reason == "malformed"

        # sampled replies (not only greedy ones) are actions too
        grammar = action_grammar(search_env.tools(SEARCH_TASK), SEARCH_TASK, max_tokens=64)
        messages = [{"role": "user", "content": "Find who designed the Eiffel Tower."}]
        for seed in range(4):
            c = await tiny.client.chat(messages, max_tokens=64, temperature=1.0, seed=seed, extra={"grammar": grammar})
            parse_text_action(c.text, search_env.tools(SEARCH_TASK))


# ----------------------------------------------------------------------------- bids and jury


@pytest.mark.parametrize("jury_mode", ["per_bid", "batched"])
async def test_auction_calls_get_grammars_only_with_auction_constrain_auto(scripted, jury_mode):
    from sale.auction.bids import collect_bids, words_for
    from sale.auction.jury import score_bids
    from sale.auction.settings import AuctionSettings

    bid, score = Reply("Search the tower, open its page, answer."), Reply("SCORE: 4" if jury_mode == "per_bid" else "BID 1: 4\n")
    scripted.script("small", bid, score, bid, score)
    async with _pool(scripted, structured_output="grammar") as pool:
        for mode in ("off", "auto"):
            settings = AuctionSettings(constrain=mode, jury_mode=jury_mode)
            bids, dropped, _ = await collect_bids(list(pool), "Who designed the Eiffel Tower?", "search", settings)
            assert not dropped
            await score_bids(list(pool), "Who designed the Eiffel Tower?", "search", bids, settings, "original")
            assert bids[0].jury["small"].raw == 4
    bid_off, jury_off, bid_auto, jury_auto = scripted.requests_for("small")
    assert "grammar" not in bid_off and "grammar" not in jury_off
    assert bid_auto["grammar"] == bid_grammar(words_for(AuctionSettings().bid_max_tokens))
    assert jury_auto["grammar"] == (jury_grammar() if jury_mode == "per_bid" else batched_jury_grammar(1))
    assert AuctionSettings(constrain="auto").round_key() != AuctionSettings().round_key()
    assert "constrain" not in AuctionSettings().round_key()  # rounds cached before the setting stay valid


@pytest.mark.llama
@pytest.mark.parametrize("jury_mode", ["per_bid", "batched"])
async def test_tiny_jurors_under_the_grammar_always_score(tiny_model, jury_mode):
    """Unconstrained, the random model's jury answers hold no score (they are imputed);
    under the grammar every juror scores every bid, and bids hold no code."""
    from sale.auction.bids import collect_bids, words_for
    from sale.auction.jury import score_bids
    from sale.auction.settings import AuctionSettings

    agents = [{"name": n, "model": str(tiny_model), "price": {"input": p, "output": p}, "context": 1024}
              for n, p in [("tiny-a", 0.01), ("tiny-b", 0.05)]]  # fmt: skip
    async with Pool(parse_pool({"agents": agents}), ledger=Ledger()) as pool:
        jurors = list(pool)
        for mode in ("off", "auto"):
            settings = AuctionSettings(constrain=mode, jury_mode=jury_mode, bid_max_tokens=24)
            bids, _, _ = await collect_bids(jurors, "Which river flows through Paris?", "search", settings)
            await score_bids(jurors, "Which river flows through Paris?", "search", bids, settings, "original")
            raws = [s.raw for b in bids for s in b.jury.values()]
            if mode == "off":
                assert any(r is None for r in raws)
            else:
                assert len(raws) == 4 and all(r is not None and 0 <= r <= 5 for r in raws)
                assert all("`" not in b.text and len(b.text.split()) <= words_for(24) for b in bids)


async def test_once_the_answer_is_asked_for_the_grammar_allows_only_the_answer(scripted, search_env, search_tools):
    """After a repeated action (the executor asks for the final answer) and for the last
    reply, a constrained step can only be the answer: the 0.5B model, still offered
    search, repeated its search until the wall-clock limit."""
    full = action_grammar(search_tools, SEARCH_TASK, max_tokens=Limits().max_output_tokens)
    answer_only = action_grammar([], SEARCH_TASK, max_tokens=Limits().max_output_tokens)
    assert "search" not in answer_only and "answer ::=" in answer_only
    async with _pool(scripted, structured_output="grammar") as pool:
        scripted.script("small", Reply('search("Eiffel Tower")'), Reply('search("Eiffel Tower")'),
                        Reply("ANSWER: Gustave Eiffel"))  # fmt: skip
        out = await execute(pool["small"], search_env, SEARCH_TASK, "", limits=Limits(max_steps=8))
        assert out.passed
        assert [r["grammar"] for r in scripted.requests_for("small")] == [full, full, answer_only]
        # the last reply of an episode is asked for the answer too
        scripted.script("small", Reply('search("Eiffel Tower")'), Reply("ANSWER: Gustave Eiffel"))
        out = await execute(pool["small"], search_env, SEARCH_TASK, "", limits=Limits(max_steps=2))
        assert out.passed
        assert [r["grammar"] for r in scripted.requests_for("small")[-2:]] == [full, answer_only]
