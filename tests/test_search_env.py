"""The BM25 search index, document loading, the cached default collection, the environment."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sale.envs.base import Environment
from sale.envs.search import (
    SearchEnvironment,
    SearchIndex,
    SearchIndexError,
    default_collection,
    fts_query,
    load_collection,
)
from sale.errors import TaskFileError
from sale.workloads.task import Document, Task

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

DOCS = [
    Document(id="paris", title="Paris", text="Paris is the capital and largest city of France."),
    Document(id="berlin", title="Berlin", text="Berlin is the capital of Germany, on the Spree."),
    Document(id="eiffel", title="Eiffel Tower",
             text="The Eiffel Tower is a wrought-iron lattice tower in Paris, built in 1889."),
    Document(id="seine", title="Seine", text="The Seine is a river that flows through Paris."),
    Document(id="kiwi", title="Kiwi", text="The kiwi is a flightless bird native to New Zealand."),
    {"id": "hillage", "title": "Green (Steve Hillage album)",
     "text": "Green: performer is Steve Hillage."},
]


@pytest.fixture()
def index():
    return SearchIndex.build(DOCS)


def test_expected_documents_rank_first(index):
    assert len(index) == 6
    assert index.search("capital of France")[0].id == "paris"
    assert index.search("When was the Eiffel Tower built?")[0].id == "eiffel"
    assert index.search("flightless birds")[0].id == "kiwi"  # stemmed: birds ~ bird
    assert index.search("Green >> performer")[0].id == "hillage"
    top = index.search("Berlin Germany capital", k=2)
    assert [h.id for h in top][0] == "berlin"
    assert top[0].title == "Berlin"
    assert "capital of Germany" in top[0].snippet
    assert top[0].score > top[1].score > 0


def test_k_limits_results(index):
    assert len(index.search("Paris", k=1)) == 1
    assert len(index.search("Paris", k=10)) == 3  # only three documents mention it
    assert index.search("Paris", k=0) == []


def test_title_counts_more_than_text(index):
    # "Seine" appears in one title and one text; the titled document wins.
    assert index.search("Seine")[0].id == "seine"


def test_get_and_dedup_by_id():
    idx = SearchIndex.build(DOCS + [Document(id="paris", title="Paris", text="A copy.")])
    assert len(idx) == len(DOCS)
    assert idx.get("paris").text.startswith("Paris is the capital")  # first copy wins
    assert idx.get("nope") is None
    assert [d.id for d in idx] == [d["id"] if isinstance(d, dict) else d.id for d in DOCS]


@pytest.mark.parametrize(
    "query",
    ['"', '"""', "(", ")", "(Paris", "Paris)", "AND", "OR", "NOT", "Paris AND", "NEAR(a b)",
     "*", "Pa*", "^Paris", "title:Paris", "Paris -Berlin", "{title text}: x", "'", "",
     "   ", "\n\t", ";DROP TABLE documents;--", "\x00", "\ud800", "🙂", "中国", "x" * 5000,
     "the of and", " ".join(["Paris"] * 500), "a\"b'c(d)e*f:g^h"],
)
def test_hostile_queries_never_raise(index, query):
    hits = index.search(query)
    assert isinstance(hits, list)
    if not re.search(r"\w", query):
        assert hits == []


def test_query_sanitising():
    assert fts_query('What is "the" (capital) of France AND*') == '"capital" OR "france"'
    assert fts_query("the who") == '"the" OR "who"'  # nothing but stop words: keep them
    assert fts_query("?!") == ""
    assert fts_query("Paris paris PARIS") == '"paris"'


def test_stop_words_only_query_still_searches(index):
    assert index.search("The") != []


def test_persistent_index_reopens_with_same_results(tmp_path):
    path = tmp_path / "sub" / "index.sqlite"
    built = SearchIndex.build(DOCS, path)
    reopened = SearchIndex.open(path)
    assert len(reopened) == len(DOCS)
    for query in ["capital of France", "Eiffel 1889", "river", "bird"]:
        assert reopened.search(query) == built.search(query) != []
    assert reopened.get("kiwi") == built.get("kiwi")
    assert sorted(p.name for p in path.parent.iterdir()) == ["index.sqlite"]  # no temp left


def test_failed_build_leaves_no_file(tmp_path):
    def broken():
        yield DOCS[0]
        raise RuntimeError("source failed")

    path = tmp_path / "index.sqlite"
    with pytest.raises(RuntimeError):
        SearchIndex.build(broken(), path)
    assert list(tmp_path.iterdir()) == []


def test_open_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(SearchIndexError, match="no such"):
        SearchIndex.open(tmp_path / "absent.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database" * 100)
    with pytest.raises(SearchIndexError, match="not a search index"):
        SearchIndex.open(junk)


# -- loading --------------------------------------------------------------------------


def _write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_load_collection_reads_files_in_order(tmp_path):
    a = _write_jsonl(tmp_path / "a.jsonl", [{"id": "x", "title": "X", "text": "ex"}])
    b = tmp_path / "b.jsonl"
    b.write_text('\n{"id": 7, "text": "seven"}\n\n', encoding="utf-8")
    docs = list(load_collection([a, b]))
    assert docs == [Document(id="x", title="X", text="ex"), Document(id="7", text="seven")]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"b\.jsonl:2: not valid JSON"),
        ('["a", "b"]', r"b\.jsonl:2: expected an object"),
        ('{"id": "y", "title": "Y"}', r"b\.jsonl:2: bad document \(text: Field required"),
        ('{"id": null, "text": "t"}', r"b\.jsonl:2: bad document \(id:"),
    ],
)
def test_load_collection_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "b.jsonl"
    path.write_text('{"id": "ok", "text": "fine"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(TaskFileError, match=message):
        list(load_collection([path]))


def test_load_collection_missing_file(tmp_path):
    with pytest.raises(TaskFileError, match="absent.jsonl: cannot read"):
        list(load_collection([tmp_path / "absent.jsonl"]))


# -- the default collection, over a small stand-in data folder ---------------------------


@pytest.fixture()
def data_dir(tmp_path):
    search = tmp_path / "data" / "search"
    search.mkdir(parents=True)
    _write_jsonl(search / "musique_facts.jsonl", [
        {"id": "UHF (film)_0", "title": "UHF (film)", "text": "UHF: distributed by is Orion Pictures."},
        {"id": "Mike Medavoy_0", "title": "Mike Medavoy",
         "text": "Orion Pictures: founded by is Mike Medavoy."},
    ])
    _write_jsonl(search / "wiki_vital_summaries_en.jsonl", [
        {"id": "wv00000", "title": "Cologne", "text": "Cologne is a city on the Rhine."},
    ])
    return tmp_path / "data"


def _task(doc_text: str) -> Task:
    return Task(
        id="t1", domain="search", prompt="Where is the German Aerospace Center based?",
        grading={"answers": ["Cologne"]},
        documents=[Document(id="dlr", title="German Aerospace Center", text=doc_text)],
    )


def test_default_collection_includes_files_and_task_documents(data_dir, tmp_path):
    task = _task("The German Aerospace Center is headquartered in Cologne.")
    # The same paragraph carried by two tasks is indexed once.
    idx = default_collection(data_dir, [task, task], cache_dir=tmp_path / "cache")
    assert len(idx) == 4
    assert idx.search("UHF distributed by")[0].id == "UHF (film)_0"
    assert idx.search("German Aerospace Center headquarters")[0].id == "dlr"
    # The search/ folder itself is accepted too.
    assert len(default_collection(data_dir / "search", cache_dir=tmp_path / "cache")) == 3


def test_default_collection_is_cached_by_inputs(data_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = default_collection(data_dir, [_task("In Cologne.")], cache_dir=cache)
    (cached,) = cache.iterdir()
    assert first.path == cached

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached index should have been reused")

    monkeypatch.setattr(SearchIndex, "build", no_rebuild)
    again = default_collection(data_dir, [_task("In Cologne.")], cache_dir=cache)
    assert again.path == cached
    assert again.search("Cologne") == first.search("Cologne")

    monkeypatch.undo()
    other = default_collection(data_dir, [_task("In Bonn, once.")], cache_dir=cache)
    assert other.path != cached
    assert len(list(cache.iterdir())) == 2
    assert other.search("Bonn")[0].id == "dlr"


def test_default_collection_rebuilds_a_corrupt_cache(data_dir, tmp_path):
    cache = tmp_path / "cache"
    path = default_collection(data_dir, cache_dir=cache).path
    path.write_bytes(b"garbage" * 1000)
    idx = default_collection(data_dir, cache_dir=cache)
    assert idx.path == path
    assert len(idx) == 3


def test_default_collection_names_missing_file(tmp_path):
    with pytest.raises(TaskFileError, match="musique_facts.jsonl: missing"):
        default_collection(tmp_path, cache_dir=tmp_path / "cache")


@pytest.mark.shared_data
def test_musique_sub_questions_find_their_fact_document(tmp_path):
    search_dir = SHARED_DATA / "search"
    if not (search_dir / "musique_dev.jsonl").is_file():
        pytest.skip(f"shared benchmark data not found at {SHARED_DATA.resolve()}")
    idx = default_collection(SHARED_DATA, cache_dir=tmp_path / "cache")
    assert len(idx) >= 12_000  # 2,629 fact documents and 10,033 Wikipedia summaries
    with (search_dir / "musique_dev.jsonl").open(encoding="utf-8") as handle:
        records = [json.loads(line) for _, line in zip(range(40), handle)]
    checked = 0
    for record in records:
        answers: list[str] = []
        for step in record["question_decomposition"]:
            # "#1 >> spouse" -> "Steve Hillage >> spouse": the earlier hop's answer.
            query = re.sub(r"#(\d+)", lambda m: answers[int(m.group(1)) - 1], step["question"])
            answers.append(step["answer"])
            top5 = [hit.id for hit in idx.search(query, k=5)]
            assert step["document_id"] in top5, (query, step["document_id"], top5)
            checked += 1
    assert checked >= 80


# -- the environment ------------------------------------------------------------------


def _search_task(answers) -> Task:
    return Task(id="q1", domain="search", prompt="What city is the Eiffel Tower in?",
                grading={"answers": answers})


def test_environment_protocol_and_description(index):
    env = SearchEnvironment(index)
    assert isinstance(env, Environment)
    assert env.name == "search"
    text = env.describe(_search_task(["Paris"]))
    assert "search(query, k=5)" in text and "open(id)" in text
    assert "short phrase" in env.answer_instructions(_search_task(["Paris"]))
    tools = {tool.name: tool for tool in env.tools(_search_task(["Paris"]))}
    assert set(tools) == {"search", "open"}
    assert tools["search"].parameters["required"] == ["query"]
    assert tools["search"].parameters["properties"]["k"]["maximum"] == 10
    assert tools["open"].parameters["required"] == ["id"]


async def test_search_and_open_tools(index):
    tools = {t.name: t for t in SearchEnvironment(index).tools(_search_task(["Paris"]))}
    out = await tools["search"].run(query="Eiffel Tower built")
    first = out.splitlines()[0]
    assert first == "1. [eiffel] Eiffel Tower"
    assert "wrought-iron" in out
    # k is clamped to [1, max_k] and may arrive as a string.
    one = await tools["search"].run(query="Paris", k="1")
    assert len(re.findall(r"^\d+\. ", one, re.M)) == 1
    many = await tools["search"].run(query="the capital river tower bird", k=99)
    assert len(re.findall(r"^\d+\. ", many, re.M)) == 5  # every document with a match
    assert "No documents match" in await tools["search"].run(query="((*))")
    assert "No documents match" in await tools["search"].run()

    opened = await tools["open"].run(id="eiffel")
    assert opened.startswith("[eiffel] Eiffel Tower\n\n")
    assert "built in 1889" in opened
    assert (await tools["open"].run(id="[kiwi]")).startswith("[kiwi] Kiwi")
    missing = await tools["open"].run(id="no-such-doc")
    assert "No document has the id 'no-such-doc'" in missing


async def test_open_by_rank_opens_that_result_of_the_episodes_last_search(index):
    env = SearchEnvironment(index)
    tools = {t.name: t for t in env.tools(_search_task(["Paris"]))}
    assert "No document has the id '1'" in await tools["open"].run(id="1")  # no search yet
    listing = await tools["search"].run(query="Paris", k=3)
    second = re.findall(r"^2\. \[([^\]]+)\]", listing, re.M)[0]
    assert (await tools["open"].run(id="2")).startswith(f"[{second}]")
    assert "No document has the id '9'" in await tools["open"].run(id="9")  # beyond the list
    # Another episode's tools have their own last search.
    other = {t.name: t for t in env.tools(_search_task(["Paris"]))}
    assert "No document has the id '2'" in await other["open"].run(id="2")


async def test_open_truncates_long_documents():
    idx = SearchIndex.build([Document(id="long", title="Long", text="word " * 2000)])
    env = SearchEnvironment(idx, open_max_chars=100)
    (_, open_tool) = env.tools(_search_task(["x"]))
    out = await open_tool.run(id="long")
    assert out.endswith("... [truncated]")
    assert len(out) < 150


async def test_grade_records_every_score_and_passes_by_the_rule(index):
    env = SearchEnvironment(index)
    grade = await env.grade(_search_task(["Paris", "City of Light"]), "Answer: Paris.")
    assert grade.passed and grade.score == 1.0
    # match (the default) passes a longer answer that holds the gold; em does not
    partial = await env.grade(_search_task(["Paris"]), "Paris France")
    assert partial.passed and partial.detail["rule"] == "match"
    assert partial.score == pytest.approx(2 / 3)
    assert partial.detail["em"] == 0.0 and partial.detail["match"] == 1.0
    assert "judge" not in partial.detail
    strict = await SearchEnvironment(index, rule="em").grade(_search_task(["Paris"]), "Paris France")
    assert not strict.passed and strict.detail["rule"] == "em"
    # the task's own rule beats the environment's, --grade beats both
    own = Task(id="q2", domain="search", prompt="?", grading={"answers": ["Paris"], "rule": "em"})
    assert not (await env.grade(own, "Paris France")).passed
    forced = SearchEnvironment(index, rule="em", rule_override="f1:0.6")
    assert (await forced.grade(own, "Paris France")).detail["rule"] == "f1:0.6"
    assert (await forced.grade(own, "Paris France")).passed


async def test_grade_rejects_a_task_without_answers(index):
    env = SearchEnvironment(index)
    with pytest.raises(TaskFileError, match="task q1: grading.answers"):
        await env.grade(Task(id="q1", domain="search", prompt="?"), "Paris")
    assert (await env.grade(_search_task("Paris"), "paris")).passed  # one string is fine
