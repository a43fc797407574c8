"""Pass rules for search answers (em, match, f1:T, judge) and the LLM judge.

The deterministic rules are checked on constructed cases; the judge against the
scripted OpenAI-compatible server on loopback, through a real pool and its ledger.
"""

from __future__ import annotations

import pytest

from sale.config import parse_pool
from sale.envs.answers import normalize_answer
from sale.envs.grading import (
    MATCH_MAX_TOKENS, GradeRule, GradingConfig, Judge, VerdictCache, answer_scores, configure_grading,
    grade_short_answer, match_answer, other_options,
)  # fmt: skip
from sale.envs.search import SearchEnvironment, SearchIndex
from sale.errors import ConfigError
from sale.llm.ledger import Ledger
from sale.llm.pool import Pool
from sale.testing.scripted import Reply, prompt_text, scripted_pool_yaml
from sale.workloads.task import Document, Task

EM, MATCH, JUDGE = GradeRule("em"), GradeRule("match"), GradeRule("judge")


def passes(rule: GradeRule, answer: str, golds, question: str = "") -> bool:
    return rule.passes(answer_scores(answer, golds, question))


# -- normalisation and the deterministic rules --------------------------------------------


def test_normalisation_articles_punctuation_case_unicode_numbers():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("ZÜRICH") == "zürich"
    assert normalize_answer("Beyonce\u0301") == normalize_answer("Beyoncé")  # decomposed == composed
    assert normalize_answer("LaLee\u2019s Kin") == "lalees kin"  # a curly apostrophe is punctuation
    assert normalize_answer("1,000") == "1000"
    for rule in (EM, MATCH):
        assert passes(rule, "an Apple.", ["apple"])
        assert passes(rule, "“Zürich”", ["Zurich", "Zürich"])
        assert passes(rule, "1,000", ["1000"])
        assert not passes(rule, "100", ["1000"])


def test_match_passes_a_sentence_that_holds_the_gold_and_em_does_not():
    golds = ["Ada Quell"]
    answer = 'The final answer is "Ada Quell founded Corvin Textiles in 1902."'
    assert passes(MATCH, answer, golds) and not passes(EM, answer, golds)
    assert passes(MATCH, "Ada Quell was born in Larkfield, a town by the sea.", ["Larkfield"])
    # whole tokens only: "oboe" is not in "oboes"; "Quell" alone is not "Ada Quell"
    assert not passes(MATCH, "She plays oboes", ["oboe"])
    assert not passes(MATCH, "Quell", golds)


def test_match_and_em_over_aliases():
    golds = ["John F. Kennedy", "JFK", "Kennedy"]
    assert passes(EM, "JFK", golds) and passes(MATCH, "President Kennedy", golds)
    assert not passes(EM, "President Kennedy", golds)
    scores = answer_scores("President Kennedy", golds)
    assert scores["matched"] == "Kennedy" and scores["em"] == 0.0 and scores["match"] == 1.0


def test_yes_no_golds_need_exactly_yes_or_no():
    assert passes(MATCH, "Yes.", ["yes"]) and passes(EM, "yes", ["yes"])
    assert not passes(MATCH, "Yes, both are American.", ["yes"])
    assert not passes(MATCH, "no", ["yes"])
    assert not passes(MATCH, "I do not know", ["no"])


def test_short_and_stop_word_aliases_count_only_by_exact_match():
    golds = ["United States", "US", "at"]
    assert passes(MATCH, "in the United States of America", golds)
    assert not passes(MATCH, "It is us who know", ["US"])
    assert passes(MATCH, "U.S.", ["US"])  # exactly the alias, after normalisation
    assert not passes(MATCH, "look at this", ["at"])
    assert not passes(MATCH, "pl 2", ["PL"])


def test_a_list_of_candidates_over_the_cap_fails_match():
    many = ", ".join(f"City{i}" for i in range(MATCH_MAX_TOKENS)) + ", Paris"
    assert len(normalize_answer(many).split()) > MATCH_MAX_TOKENS
    assert not passes(MATCH, many, ["Paris"])
    assert passes(MATCH, "Lyon, Marseille or Paris", ["Paris"])  # under the cap


def test_a_comparison_answer_that_names_both_options_fails_match():
    q = "Who is older, Annie Morton or Terry Richardson?"
    assert other_options(q, "Terry Richardson") == ["morton"]
    assert passes(MATCH, "Terry Richardson", ["Terry Richardson"], q)
    assert passes(MATCH, "Terry Richardson is older", ["Terry Richardson"], q)
    assert not passes(MATCH, "Terry Richardson is older than Annie Morton", ["Terry Richardson"], q)
    assert not passes(MATCH, "Annie Morton or Terry Richardson", ["Terry Richardson"], q)
    q2 = "Which dog's ancestors include Gordon and Irish Setters: the Manchester Terrier or the Scotch Collie?"
    assert other_options(q2, "Scotch Collie") == ["terrier"]
    assert not passes(MATCH, "the Scotch Collie, not the Manchester Terrier", ["Scotch Collie"], q2)
    assert passes(MATCH, "The Scotch Collie.", ["Scotch Collie"], q2)
    # not a comparison: the gold appears in the question without "or" beside it
    q3 = "Who produced the series based on the book by James Burke?"
    assert other_options(q3, "James Burke") == []


def test_an_empty_answer_passes_no_rule():
    for rule in (EM, MATCH, GradeRule("f1", 0.5)):
        assert not passes(rule, "", ["Paris"])
        assert not passes(rule, "   ", ["Paris"])
    assert answer_scores(None, ["Paris"])["prediction"] == ""
    assert match_answer("", ["Paris"]) == (0.0, None)


def test_f1_threshold_rule():
    golds = ["Bank of England"]
    scores = answer_scores("the Bank", golds)
    assert scores["f1"] == pytest.approx(2 * (1 * 1 / 3) / (1 + 1 / 3))  # precision 1, recall 1/3
    assert GradeRule.parse("f1:0.5").passes(scores)
    assert not GradeRule.parse("f1:0.6").passes(scores)
    assert GradeRule.parse("f1:1").passes(answer_scores("bank of england", golds))


@pytest.mark.parametrize("bad", ["exact", "f1", "f1:0", "f1:1.5", "f1:x", "", None, 3])
def test_unknown_rules_are_a_clear_error(bad):
    with pytest.raises(ConfigError, match=r"--grade: got .*expected one of em, match, f1:T"):
        GradeRule.parse(bad, "--grade")
    assert str(GradeRule.parse("F1:0.50")) == "f1:0.5"


def test_pool_file_grading_section_is_validated(tmp_path):
    agents = [{"name": "a", "endpoint": {"base_url": "http://127.0.0.1:9/v1", "model": "a"}, "price": {"input": 1, "output": 1}}]
    assert parse_pool({"agents": agents, "grading": {"rule": "em"}}, "p.yaml").grading == {"rule": "em"}
    with pytest.raises(ConfigError, match=r"p.yaml: grading.rule: got 'exact'"):
        parse_pool({"agents": agents, "grading": {"rule": "exact"}}, "p.yaml")
    with pytest.raises(ConfigError, match=r"p.yaml: grading.judge.*exactly one of 'agent'"):
        parse_pool({"agents": agents, "grading": {"judge": {}}}, "p.yaml")
    with pytest.raises(ConfigError, match=r"needs its price"):
        parse_pool({"agents": agents, "grading": {"judge": {"endpoint": {"base_url": "http://x/v1", "model": "j"}}}}, "p.yaml")
    assert GradingConfig.from_pool("match").rule == "match"


# -- the judge, against the scripted server -------------------------------------------------


def _task(prompt: str = "Which instrument does the conductor play?", golds=("oboe",)) -> Task:
    return Task(id="q1", domain="search", prompt=prompt, grading={"answers": list(golds)})


def _index() -> SearchIndex:
    return SearchIndex.build([Document(id="d", title="Orchestra", text="The conductor plays the oboe.")])


async def _env_with_judge(scripted, tmp_path, *, grading: str, **agent_fields) -> tuple[SearchEnvironment, Pool]:
    text = scripted_pool_yaml(scripted.base_url, [("small", 0.1), ("big", 1.0)], **agent_fields) + grading
    cfg = parse_pool(__import__("yaml").safe_load(text), "pool.yaml")
    pool = Pool(cfg, ledger=Ledger(), source="pool.yaml")
    await pool.start()
    env = SearchEnvironment(_index())
    configure_grading({"search": env}, pool, cache_dir=tmp_path)
    return env, pool


async def test_judge_yes_no_and_a_garbled_verdict(scripted, tmp_path):
    replies = {"oboe player": "Yes.", "violin": "No", "flute": "Well, it depends on the orchestra."}

    def answer(req):
        said = prompt_text(req).split("Predicted answer:")[-1].lower()
        return Reply(next(r for k, r in replies.items() if k in said))

    scripted.responder = answer
    env, pool = await _env_with_judge(scripted, tmp_path, grading="grading: {rule: judge, judge: {agent: big}}\n")
    try:
        yes = await env.grade(_task(), "Oboe player")
        assert yes.passed and yes.detail["judge"] is True and yes.detail["rule"] == "judge"
        assert {"em", "f1", "match"} <= set(yes.detail)
        no = await env.grade(_task(), "Violin")
        assert not no.passed and no.detail["judge"] is False
        garbled = await env.grade(_task(), "Flute")
        assert not garbled.passed and garbled.detail["judge"] is None
        assert "depends" in garbled.detail["judge_reply"]
    finally:
        await pool.stop()
    calls = scripted.requests_for("big")
    assert len(calls) == 3 and not scripted.requests_for("small")
    prompt = prompt_text(calls[0])
    assert "Which instrument does the conductor play?" in prompt and "oboe" in prompt and "Oboe player" in prompt
    judge_entries = [e for e in pool.ledger.entries if e.phase == "judge"]
    assert len(judge_entries) == 3 and all(e.agent == "big" and e.dollars > 0 for e in judge_entries)


async def test_the_verdict_cache_makes_a_second_grade_call_nothing(scripted, tmp_path):
    scripted.responder = lambda req: Reply("yes")
    env, pool = await _env_with_judge(scripted, tmp_path, grading="grading: {rule: judge, judge: {agent: small}}\n")
    try:
        first = await env.grade(_task(), "the oboe, a woodwind")
        assert first.passed and len(scripted.requests) == 1
        again = await env.grade(_task(), "the oboe, a woodwind")
        assert again.detail == first.detail and len(scripted.requests) == 1
        # another answer, question or golds is another verdict
        await env.grade(_task(golds=("oboe", "hautbois")), "the oboe, a woodwind")
        assert len(scripted.requests) == 2
        await env.judge.close()
    finally:
        await pool.stop()
    # the cache is a file: a new judge over it asks nothing either
    cache = VerdictCache(tmp_path / "judge-verdicts.jsonl")
    assert len(cache) == 2
    judge = Judge(pool["small"], env.judge.name, cache)
    grade = await grade_short_answer("the oboe, a woodwind", ["oboe"], _task().prompt, JUDGE, judge)
    assert grade.passed and judge.calls == 0 and len(scripted.requests) == 2


async def test_a_failing_judge_endpoint_is_recorded_and_the_grading_goes_on(scripted, tmp_path):
    scripted.script("big", Reply(status=500), Reply("yes"))
    env, pool = await _env_with_judge(
        scripted, tmp_path, grading="grading: {rule: judge, judge: {agent: big}}\n", max_retries=0
    )
    try:
        failed = await env.grade(_task(), "oboe")
        assert not failed.passed and failed.detail["judge"] is None
        assert "500" in failed.detail["judge_error"]
        assert failed.detail["match"] == 1.0  # the other scores are still there
        retried = await env.grade(_task(), "oboe")  # a failure is not cached: asked again
        assert retried.passed and retried.detail["judge"] is True
    finally:
        await pool.stop()


async def test_a_judge_endpoint_of_its_own_is_booked_in_phase_judge(scripted, tmp_path):
    scripted.script("judge-model", Reply("yes"))
    grading = (
        f"grading:\n  rule: judge\n  judge:\n    endpoint: {{base_url: \"{scripted.base_url}\", model: judge-model}}\n"
        "    price: {input: 2.0, output: 2.0}\n"
    )
    env, pool = await _env_with_judge(scripted, tmp_path, grading=grading)
    try:
        assert (await env.grade(_task(), "oboe")).passed
        await env.judge.close()
    finally:
        await pool.stop()
    (entry,) = pool.ledger.entries
    assert entry.agent == "judge" and entry.phase == "judge" and entry.dollars > 0
    assert len(scripted.requests_for("judge-model")) == 1


async def test_the_judge_rule_without_a_judge_is_a_clear_error(scripted, tmp_path):
    with pytest.raises(ConfigError, match="grade rule 'judge' needs grading.judge"):
        await _env_with_judge(scripted, tmp_path, grading="grading: {rule: judge}\n")
    with pytest.raises(ConfigError, match="no agent named 'huge'"):
        await _env_with_judge(scripted, tmp_path, grading="grading: {judge: {agent: huge}}\n")


async def test_configure_grading_keeps_what_neither_the_pool_nor_grade_names(scripted, tmp_path):
    cfg = parse_pool(__import__("yaml").safe_load(scripted_pool_yaml(scripted.base_url, [("a", 1.0)])), "pool.yaml")
    pool = Pool(cfg, ledger=Ledger(), source="pool.yaml")
    env = SearchEnvironment(_index(), rule="em")
    assert configure_grading({"search": env}, pool) is None
    assert str(env.rule_for(_task())) == "em"
    configure_grading({"search": env}, pool, rule="f1:0.8")
    assert str(env.rule_for(_task())) == "f1:0.8"
    with pytest.raises(ConfigError, match="--grade: got 'exactly'"):
        configure_grading({"search": env}, pool, rule="exactly")
