"""Regrading without re-execution: `sale regrade` on run and bench folders, and
`sale bench --grade` on a folder graded under another rule, against the scripted server.

The workload: 8 search questions ("Which city is landmark k in?"), each with one city as
its gold answer. The small agent answers with a sentence that holds the right city
(em fails, match passes), the big one with the bare city, the mid one with a wrong city.
"""

from __future__ import annotations

import collections
import json
import threading
from pathlib import Path

import pytest

from sale.cli import main as cli
from sale.evaluation.matrix import MatrixStore
from sale.evaluation.matrix_report import ending
from sale.jsonl import read_jsonl
from sale.testing.scripted import Reply, jury_answer, prompt_text, scripted_pool_yaml

CITIES = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Quito", "Dakar", "Hanoi"]
AGENTS = [("small", 0.1), ("mid", 0.2), ("big", 0.4)]


def write_tasks(path: Path) -> Path:
    lines = []
    for k, city in enumerate(CITIES):
        lines.append(json.dumps({
            "id": f"q{k}", "domain": "search", "prompt": f"Which city is landmark number {k} in?",
            "tier": 1 + k % 2, "tier_name": f"search/{1 + k % 2}", "grading": {"answers": [city]},
            "documents": [{"id": f"d{k}", "title": f"Landmark {k}", "text": f"Landmark {k} stands in {city}."}],
        }))
    path.write_text("\n".join(lines) + "\n")
    return path


class Responder:
    """Bids, jury scores, answers as the module docstring says, judge verdicts; counts kinds."""

    def __init__(self):
        self.calls: collections.Counter = collections.Counter()
        self.lock = threading.Lock()

    def kind(self, text: str) -> str:
        if "You are grading an answer" in text:
            return "judge"
        if "You are a juror" in text:
            return "jury"
        if "You are one of several agents bidding" in text:
            return "bid"
        if "You bid for tasks" in text:
            return "refine"
        return "execute"

    def __call__(self, request):
        model, text = request["model"], prompt_text(request)
        kind = self.kind(text)
        with self.lock:
            self.calls[kind] += 1
        if kind == "judge":  # says yes to any answer that names a city of the workload
            said = text.split("Predicted answer:")[-1].split("\n")[0]
            return Reply("yes" if any(c in said for c in CITIES) else "no")
        if kind == "jury":
            return Reply(jury_answer(text, lambda bid: 3))
        if kind in ("bid", "refine"):
            return Reply("Search the landmark, open its page, answer with the city.")
        k = int(text.split("landmark number ")[1].split(" ")[0])
        city = CITIES[k]
        answer = {"small": f"It is in {city}, a large city.", "mid": "Nowhere", "big": city}[model]
        return Reply(f"Found it.\nANSWER: {answer}")


@pytest.fixture
def responder(scripted):
    r = Responder()
    scripted.responder = r
    return r


@pytest.fixture
def files(scripted, tmp_path):
    pool = tmp_path / "pool.yaml"
    pool.write_text(scripted_pool_yaml(scripted.base_url, AGENTS, max_retries=0)
                    + "grading: {judge: {agent: big}}\n")
    return pool, write_tasks(tmp_path / "tasks.jsonl")


# -- run folders -----------------------------------------------------------------------------


def test_run_results_record_every_score_and_regrade_calls_nothing(files, responder, scripted, tmp_path):
    pool, tasks = files
    out = tmp_path / "run"
    assert cli(["run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out), "--no-pull"]) == 0
    results = list(read_jsonl(out / "results.jsonl"))
    for r in results:
        assert r["grade"]["rule"] == "match" and {"em", "f1", "match"} <= set(r["grade"])
        assert r["passed"] is (r["grade"]["match"] == 1.0)
    assert any(r["grade"]["em"] == 0.0 and r["passed"] for r in results)  # a sentence won and passed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["grading"]["rule"] == "match"
    original = (out / "results.jsonl").read_bytes(), (out / "summary.json").read_bytes()
    asked = len(scripted.requests)

    # under its own rule: the same results
    assert cli(["regrade", str(out), "--grade", "match"]) == 0
    same = list(read_jsonl(out / "regraded-match" / "results.jsonl"))
    assert same == results
    assert json.loads((out / "regraded-match" / "summary.json").read_text())["pass_at_1"] == summary["pass_at_1"]

    # under em: only passed (and the grade's rule), the summary change; nothing executed
    assert cli(["regrade", str(out), "--grade", "em"]) == 0
    strict = list(read_jsonl(out / "regraded-em" / "results.jsonl"))
    assert len(scripted.requests) == asked
    for before, after in zip(results, strict):
        assert after["passed"] is (before["grade"]["em"] == 1.0)
        assert after["grade"]["rule"] == "em"
        changed = {k for k in before if before[k] != after[k]}
        assert changed <= {"passed", "grade"}
    assert any(a["passed"] != b["passed"] for a, b in zip(results, strict))
    em_summary = json.loads((out / "regraded-em" / "summary.json").read_text())
    assert em_summary["pass_at_1"] == sum(r["grade"]["em"] for r in results) / len(results)
    assert em_summary["grading"]["rule"] == "em"
    assert ((out / "results.jsonl").read_bytes(), (out / "summary.json").read_bytes()) == original


def test_regrade_under_the_judge_asks_only_the_judge_and_caches_its_verdicts(files, responder, scripted, tmp_path):
    pool, tasks = files
    out = tmp_path / "run"
    assert cli(["run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out), "--no-pull", "--grade", "em"]) == 0
    before = collections.Counter(responder.calls)
    assert cli(["regrade", str(out), "--grade", "judge", "--pool", str(pool)]) == 0
    asked = responder.calls - before
    answered = [r for r in read_jsonl(out / "results.jsonl") if (r["grade"].get("prediction") or "").strip()]
    assert set(asked) == {"judge"} and asked["judge"] == len(answered)
    judged = list(read_jsonl(out / "regraded-judge" / "results.jsonl"))
    assert all(r["grade"]["rule"] == "judge" and "judge" in r["grade"] for r in judged)
    assert all(r["passed"] is (r["grade"]["judge"] is True) for r in judged)
    ledger = [json.loads(line) for line in (out / "judge-ledger.jsonl").read_text().splitlines()]
    assert {e["phase"] for e in ledger} == {"judge"} and {e["agent"] for e in ledger} == {"big"}
    again = collections.Counter(responder.calls)
    assert cli(["regrade", str(out), "--grade", "judge", "--pool", str(pool)]) == 0
    assert responder.calls == again  # every verdict came from the cache
    assert list(read_jsonl(out / "regraded-judge" / "results.jsonl")) == judged


def test_a_run_graded_by_the_judge_does_not_count_its_calls_as_the_methods_cost(files, responder, tmp_path):
    pool, tasks = files
    out = tmp_path / "run"
    assert cli(["run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out), "--no-pull", "--grade", "judge"]) == 0
    results = list(read_jsonl(out / "results.jsonl"))
    assert all(r["grade"]["rule"] == "judge" and r["passed"] is (r["grade"]["judge"] is True) for r in results)
    assert responder.calls["judge"] == len(results)
    ledger = [json.loads(line) for line in (out / "ledger.jsonl").read_text().splitlines()]
    judged = [e for e in ledger if e["phase"] == "judge"]
    assert len(judged) == len(results) and all(e["dollars"] > 0 for e in judged)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dollars"] == pytest.approx(sum(e["dollars"] for e in ledger if e["phase"] != "judge"))
    assert all("judge" not in r["dollars"] and "judge" not in r["tokens"] for r in results)
    assert summary["ledger"]["by_phase"]["judge"]["calls"] == len(results)  # shown apart


def test_results_recorded_without_golds_are_regraded_from_the_task_files(files, responder, tmp_path, capsys):
    pool, tasks = files
    out = tmp_path / "run"
    assert cli(["run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out), "--no-pull", "--grade", "em"]) == 0
    graded = list(read_jsonl(out / "results.jsonl"))
    # a folder from before grades were recorded: no grade on its lines
    (out / "results.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "grade"}) + "\n" for r in graded))
    assert cli(["regrade", str(out), "--grade", "match"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "hold no gold answers" in err and "--tasks" in err
    assert cli(["regrade", str(out), "--grade", "match", "--tasks", str(tasks)]) == 0
    regraded = list(read_jsonl(out / "regraded-match" / "results.jsonl"))
    assert [r["passed"] for r in regraded] == [r["grade"]["match"] == 1.0 for r in graded]
    assert all(r["grade"]["rule"] == "match" for r in regraded)


def test_an_ending_is_the_reason_without_its_detail():
    assert ending("submitted") == "submitted" and ending("max_steps") == "max_steps"
    assert ending("llm_error: HTTP 500 from http://x") == "llm_error" and ending("budget: per_task") == "budget"
    assert ending("") == "none"


def test_regrade_of_a_folder_that_is_neither_is_a_one_line_error(tmp_path, capsys):
    assert cli(["regrade", str(tmp_path), "--grade", "em"]) == 2
    assert cli(["regrade", str(tmp_path), "--grade", "exact"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: ") and "neither a run folder" in err[0]
    assert err[1].startswith("error: --grade: got 'exact'")


# -- bench folders ---------------------------------------------------------------------------


def bench_args(files, out: Path, *extra: str) -> list[str]:
    pool, tasks = files
    return ["bench", "--out", str(out), "--pool", str(pool), "--tasks", str(tasks), "--no-pull",
            "--orderings", "1", "--variants", "sale-no-memory", *extra]  # fmt: skip


def test_bench_regrade_and_bench_grade_reuse_every_execution(files, responder, scripted, tmp_path, capsys):
    out = tmp_path / "bench"
    assert cli(bench_args(files, out, "--grade", "em")) == 0
    printed = capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    methods, extra = summary["methods"], summary["extra"]
    assert extra["grading"]["rule"] == "em"
    assert methods["small"]["pass_at_1"] == 0.0 and methods["big"]["pass_at_1"] == 1.0
    # the training report: solves per agent, none by small and mid, a warning under 10
    training = extra["training"]
    assert training["solves"] == {"small": 0, "mid": 0, "big": 4} and training["solved_by_none"] == 0
    assert "warning" in training and "training split: 4 tasks" in printed.err
    assert "warning: only 4 of 4 training tasks" in printed.err
    # the per-tier table of single agents, and the search tiers under each rule
    tiers = extra["single_agents_by_tier"]["tiers"]
    assert list(tiers) == ["search/1", "search/2"] and tiers["search/1"]["big"] == 1.0
    rules = extra["search_rules_by_tier"]["tiers"]["search/2"]["small"]
    assert rules["em"] == 0.0 and rules["match"] == 1.0
    assert "pass@1 (%) of each single agent per tier" in printed.out
    assert (out / "single_agents.png").is_file()
    # how each agent's executions ended: every execution counted once under its ending
    endings = extra["endings_by_agent"]
    assert [(r["agent"], r["domain"], r["n"]) for r in endings["rows"]] == [(a, "search", 8) for a in ("small", "mid", "big")]
    assert all(sum(r.get(k, 0) for k in endings["endings"]) == r["n"] for r in endings["rows"])
    assert endings["rows"][2]["submitted"] == 8 and endings["rows"][2]["passed"] == 8
    assert all(r["tokens"] > 0 for r in endings["rows"])
    assert "How each agent's executions ended" in printed.out
    cells = list(MatrixStore.load(out / "matrix.jsonl").cells())
    assert len(cells) == 24 and all(c.grade.get("rule") == "em" and "match" in c.grade for c in cells)
    original = (out / "summary.json").read_bytes()
    asked = len(scripted.requests)

    # regrade under another rule: nothing is called, only passes, summaries and reports change
    assert cli(["regrade", str(out), "--grade", "match"]) == 0
    assert len(scripted.requests) == asked
    regraded = json.loads((out / "regraded-match" / "summary.json").read_text())
    assert regraded["methods"]["small"]["pass_at_1"] == 1.0 and regraded["methods"]["oracle"]["largest_share"] == 0.0
    assert regraded["extra"]["training"]["solves"]["small"] == 4
    assert regraded["methods"]["sale-no-memory"]["n_tasks"] == 4
    assert (out / "regraded-match" / "report.html").is_file()
    assert (out / "summary.json").read_bytes() == original
    # under its own rule: the same results
    assert cli(["regrade", str(out), "--grade", "em"]) == 0
    own = json.loads((out / "regraded-em" / "summary.json").read_text())["methods"]
    assert {m: s["pass_at_1"] for m, s in own.items()} == {m: s["pass_at_1"] for m, s in methods.items()}
    assert sorted((out / "regraded-em" / "results.jsonl").read_text().splitlines()) == sorted(
        (out / "results.jsonl").read_text().splitlines())

    # sale bench --grade match on the folder: executions reused, weights and orderings redone
    before = collections.Counter(responder.calls)
    assert cli(bench_args(files, out, "--grade", "match")) == 0
    asked = responder.calls - before
    assert asked["execute"] == 0 and asked["bid"] == 0 and asked["jury"] == 0
    assert (out / "graded-em" / "weights.json").is_file() and (out / "graded-em" / "summary.json").read_bytes() == original
    again = json.loads((out / "summary.json").read_text())
    assert again["extra"]["grading"]["rule"] == "match" and again["methods"]["small"]["pass_at_1"] == 1.0
    assert json.loads((out / "grading.json").read_text()) == {"rule": "match"}


def test_bench_regrade_under_the_judge_reports_its_agreement_with_match(files, responder, scripted, tmp_path, capsys):
    out = tmp_path / "bench"
    assert cli(bench_args(files, out, "--grade", "match")) == 0
    pool, _ = files
    before = collections.Counter(responder.calls)
    assert cli(["regrade", str(out), "--grade", "judge", "--pool", str(pool)]) == 0
    asked = responder.calls - before
    assert set(asked) == {"judge"} and 0 < asked["judge"] <= 24  # one per matrix answer, none executed
    extra = json.loads((out / "regraded-judge" / "summary.json").read_text())["extra"]
    agreement = extra["search_rules_by_tier"]["judge_vs_match"]
    # the judge says yes to any answer naming the right city, like match; mid's "Nowhere" fails both
    assert agreement["answers"] == 24 and agreement["agree"] == 1.0 and agreement["unreadable_verdicts"] == 0
    assert "judge and match agree on 100.0% of 24 answers" in (out / "regraded-judge" / "report.txt").read_text()
    # the bench under the judge on the same folder: executions reused, verdicts read from the cache
    before = collections.Counter(responder.calls)
    assert cli(bench_args(files, out, "--grade", "judge")) == 0
    assert responder.calls == before
    summary = json.loads((out / "summary.json").read_text())
    assert summary["extra"]["grading"]["rule"] == "judge" and summary["methods"]["small"]["pass_at_1"] == 1.0
    assert (out / "graded-match" / "weights.json").is_file()


def test_a_judge_sample_measures_its_agreement_with_match(files, responder, tmp_path):
    pool, tasks = files
    out = tmp_path / "run"
    assert cli(["run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out), "--no-pull"]) == 0
    before = collections.Counter(responder.calls)
    assert cli(["regrade", str(out), "--grade", "judge", "--pool", str(pool), "--sample", "5"]) == 0
    assert responder.calls - before == collections.Counter(judge=5)
    sample = json.loads((out / "judge-sample.json").read_text())
    assert len(sample["answers"]) == 5 and sample["agreement"]["answers"] == 5
    assert all(a["judge"] is (a["match"] == 1.0) for a in sample["answers"])  # the scripted judge agrees here
    assert sample["agreement"]["agree"] == 1.0
    assert cli(["regrade", str(out), "--grade", "em", "--sample", "5"]) == 2


def test_the_default_bench_draws_at_least_40_training_tasks(shared_data):
    import argparse

    from sale.evaluation.bench import add_arguments
    from sale.workloads.standard import split, standard_workload

    args = argparse.ArgumentParser()
    add_arguments(args)
    defaults = args.parse_args(["--out", "x"])
    tasks = standard_workload(shared_data, per_tier=defaults.per_tier, seed=defaults.seed)
    train, test = split(tasks, test_fraction=defaults.test_fraction, seed=defaults.seed)
    assert len(train) >= 40 and len(test) >= 40
    assert {t.tier_name for t in train} == {t.tier_name for t in tasks}  # every tier is in the fit
