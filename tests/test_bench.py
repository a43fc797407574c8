"""`sale bench` end to end against a scripted pool whose right routing is known.

The workload: 8 coding tasks with hidden tests, 4 easy (tier 1) and 4 hard (tier 2).
The scripted server answers by request type (recognised from the project's prompts):

- bids: every agent writes a plan tagged "Q<n>"; on easy tasks all plans are Q4, on
  hard ones small Q1, mid Q2, big Q5; jurors score a plan by its tag;
- refinement: mid's refined plan is Q5 and names "the careful method", small's is Q1;
- executions: big always writes correct code; mid and small are right on easy tasks;
  on hard tasks small is always wrong and mid is right only when its plan names the
  careful method (a refined plan).

So the oracle is small on easy tasks and big on hard ones, the auction should send hard
tasks to big until memory lets mid's refined bid win, and every LLM request is counted.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import threading
from pathlib import Path

import pytest
import yaml

from sale.config import parse_pool
from sale.errors import ConfigError
from sale.evaluation.bench import (
    ABLATION_VARIANTS, CORE_VARIANTS, EndpointFailure, add_arguments, run_bench, run_from_args, select_variants,
    variant_orderings,
)  # fmt: skip
from sale.evaluation.matrix import MatrixStore
from sale.llm.ledger import Ledger
from sale.llm.pool import Pool
from sale.run import build_environments
from sale.testing.scripted import Reply, jury_answer, prompt_text, scripted_pool_yaml
from sale.workloads.loaders import write_tasks
from sale.workloads.standard import split
from sale.workloads.task import Task

AGENTS = [("small", 0.1), ("mid", 0.2), ("big", 0.4)]
REQUIRED = ["sale", "sale-no-memory", "largest", "oracle", "wtp", "carrot", "to-router", "frugalgpt"]
REQUIRED += [name for name, _ in AGENTS]  # each single agent
HARD_Q = {"small": 1, "mid": 2, "big": 5}


def make_tasks() -> list[Task]:
    tasks = []
    for k in range(8):
        hard = k >= 4
        tasks.append(
            Task(
                id=f"{'hard' if hard else 'easy'}-{k}",
                domain="coding",
                tier=2 if hard else 1,
                prompt=f"Write a function f(x) that returns x + {k}. This is a {'hard' if hard else 'easy'} task.",
                grading={"style": "asserts", "tests": f"assert f(1) == {1 + k}", "entry_point": "f"},
            )
        )
    return tasks


def request_kind(text: str) -> str:
    if "You are a juror" in text:
        return "jury"
    if "You bid for tasks" in text:
        return "refine"
    if "You are one of several agents bidding" in text:
        return "bid"
    if "You solve one task by using tools" in text or "Solve the task in this one reply." in text:
        return "execute"  # the loop, or the direct answer a coding loop starts from
    raise AssertionError(f"unexpected request: {text[:80]!r}")


def quality(text: str) -> int:
    m = re.search(r"Q(\d)", text)
    return int(m[1]) if m else 0


class Responder:
    """Answers every request as the module docstring says and counts them by kind.

    ``on_execute(n)`` is called with the number of execution requests so far.
    """

    def __init__(self):
        self.calls: collections.Counter = collections.Counter()
        self.executions: list[tuple[str, str, bool]] = []  # (model, task text, refined plan)
        self.on_execute = None
        self.fail_executions = 0  # answer this many execution requests with HTTP 500
        self.lock = threading.Lock()

    def __call__(self, request):
        model, text = request["model"], prompt_text(request)
        kind = request_kind(text)
        with self.lock:
            self.calls[kind] += 1
        hard = "hard task" in text
        if kind == "bid":
            q = HARD_Q[model] if hard else 4
            return Reply(f"Plan of {model}: write f, then test it on two inputs. Q{q}")
        if kind == "refine":
            q, how = (5, "the careful method") if model == "mid" else (1, "a quick guess")
            return Reply(f"ANALYSIS: the winner tested its code.\nREFINED STRATEGY: write f with {how}, test it. Q{q}")
        if kind == "jury":
            return Reply(jury_answer(text, quality))
        with self.lock:
            if self.fail_executions > 0:
                self.fail_executions -= 1
                return Reply("server overloaded", status=500)
        k = int(re.search(r"returns x \+ (\d+)", text)[1])
        careful = "careful method" in text
        right = model == "big" or not hard or (model == "mid" and careful)
        with self.lock:
            self.executions.append((model, text, careful))
            n = len(self.executions)
        if self.on_execute:
            self.on_execute(n)
        body = f"def f(x):\n    return x + {k}" if right else "def f(x):\n    return x"
        return Reply(f"Done.\nANSWER:\n```python\n{body}\n```")


@pytest.fixture
def responder(scripted):
    r = Responder()
    scripted.responder = r
    return r


@pytest.fixture
def files(scripted, tmp_path):
    pool = tmp_path / "pool.yaml"
    pool.write_text(scripted_pool_yaml(scripted.base_url, AGENTS, max_retries=0))
    tasks = write_tasks(tmp_path / "tasks.jsonl", make_tasks())
    return pool, tasks


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="sale bench")
    add_arguments(ap)
    return ap.parse_args(argv)


def bench(argv: list[str]) -> int:
    """Run `sale bench` through the CLI when it is wired there, else through run_from_args."""
    from sale import cli

    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if "bench" in commands:
        return cli.main(["bench", *argv])
    ap = argparse.ArgumentParser(prog="sale bench")
    add_arguments(ap)
    return run_from_args(ap.parse_args(argv))


def args_for(files, out: Path, *extra: str) -> list[str]:
    pool, tasks = files
    return ["--out", str(out), "--pool", str(pool), "--tasks", str(tasks), "--no-pull", *extra]


def test_bench_end_to_end_then_rerun_makes_no_calls(files, responder, tmp_path, capsys, monkeypatch):
    out = tmp_path / "bench"
    assert bench(args_for(files, out, "--orderings", "3")) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    methods, extra = summary["methods"], summary["extra"]

    for name in REQUIRED + ["random", "sale-default-weights"]:
        assert name in methods, name
        for key in ("pass_at_1", "dollars", "largest_share"):
            assert isinstance(methods[name][key], float), (name, key)
        assert name in printed
    for agent in ("small", "mid", "big"):
        assert methods["oracle"]["pass_at_1"] >= methods[agent]["pass_at_1"]
    # The known routing: small solves easy tasks, only big (or mid with a refined plan) hard ones.
    assert methods["small"]["pass_at_1"] == 0.5 and methods["big"]["pass_at_1"] == 1.0
    assert methods["oracle"]["pass_at_1"] == 1.0 and methods["oracle"]["largest_share"] == 0.5
    assert methods["sale"]["n_orderings"] == 3 and methods["sale"]["n_tasks"] == 4
    assert methods["sale"]["pass_at_1"] == 1.0
    assert methods["sale"]["largest_share"] < 0.5  # refined mid bids took hard tasks from big
    assert methods["sale-no-memory"]["pass_at_1"] == 1.0 and methods["sale-no-memory"]["largest_share"] == 0.5

    # Original rounds were computed once per task and shared by every ordering and variant.
    assert responder.calls["bid"] == 3 * 8
    # Matrix: each agent ran each task once on its original plan; refined plans ran once each.
    refined_runs = [e for e in responder.executions if e[2]]
    assert len(responder.executions) - len(refined_runs) == 3 * 8
    assert len({(m, t) for m, t, _ in refined_runs}) == len(refined_runs) >= 1
    ex = extra["reused"]["executions"]["sale"]
    assert ex["fresh"] + ex["from_earlier_refined_execution"] >= 1 and ex["from_matrix"] >= 1
    assert sum(ex.values()) == 3 * 4
    assert extra["splits"]["train"] == 4 and extra["splits"]["test"] == 4
    assert set(extra["weights"]["fitted"]["w_jury"]) == {"small", "mid", "big"}
    assert (out / "weights.json").is_file()
    assert len(extra["winners"]) == 3 and all(len(w) == 4 for w in extra["winners"])

    # SALE's costs include its auction: every result pays for bids and jury.
    rows = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
    sale_rows = [r for r in rows if r["method"] == "sale"]
    assert len(sale_rows) == 12
    for r in sale_rows:
        assert 0 < r["overhead_tokens"] < r["tokens"] and r["largest_tokens"] <= r["tokens"]
    overhead = extra["auction_overhead"]["sale"]
    assert overhead["bid"]["calls_per_task"] == 3 and overhead["jury"]["calls_per_task"] >= 3
    assert overhead["refine"]["calls_per_task"] > 0
    assert extra["auction_overhead"]["sale-no-memory"]["refine"]["calls_per_task"] == 0
    # Exact jury pruning decides as the whole jury (sale-full-jury) on every test round, never with more calls.
    pruning = extra["jury_pruning"]
    assert pruning["tasks"] == 4 and pruning["winner_differs"] == 0
    assert pruning["jury_calls_per_task_pruned"] <= pruning["jury_calls_per_task_full"] == 9
    assert overhead["jury"]["skipped_calls_per_task"] >= 0

    page = (out / "report.html").read_text()
    for name in methods:
        assert f"<td>{name}</td>" in page
    assert (out / "cost_quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "smallest_wins.png").is_file()

    # A rerun of the same folder makes no LLM request and writes the same summary.
    before = sum(responder.calls.values())
    text = (out / "summary.json").read_text()
    assert bench(args_for(files, out, "--orderings", "3")) == 0
    assert sum(responder.calls.values()) == before
    assert (out / "summary.json").read_text() == text

    # One more ordering reuses the cached rounds and matrix: only refinement calls and
    # executions of refined plans are new.
    executions = len(responder.executions)
    assert bench(args_for(files, out, "--orderings", "4")) == 0
    assert responder.calls["bid"] == 3 * 8
    assert all(e[2] for e in responder.executions[executions:])
    assert json.loads((out / "summary.json").read_text())["methods"]["sale"]["n_orderings"] == 4

    # Other refinement settings leave the rounds, the matrix and the weights valid: the
    # folder is refused while its SALE orderings are in it, and taken over once they are
    # moved away; then only refinement calls and executions of refined plans are new.
    pool, tasks = files
    tuned = pool.with_name("tuned.yaml")
    tuned.write_text(pool.read_text() + "auction:\n  refine_min_distinct: 0.25\n")
    with pytest.raises(ConfigError, match=r"another auction\.refine_min_distinct; move or delete"):
        run_from_args(parse(args_for((tuned, tasks), out)))
    (out / "sale").rename(tmp_path / "old-sale")
    calls, executions = dict(responder.calls), len(responder.executions)
    kept = {name: (out / name).read_bytes() for name in ("rounds.jsonl", "matrix.jsonl", "weights.json")}
    assert bench(args_for((tuned, tasks), out)) == 0
    assert {name: (out / name).read_bytes() for name in kept} == kept
    assert responder.calls["bid"] == calls["bid"] and responder.calls["refine"] > calls["refine"]
    assert all(e[2] for e in responder.executions[executions:])
    assert json.loads((out / "bench.json").read_text())["auction"]["refine_min_distinct"] == 0.25
    # A round setting is another matter: the rounds and the matrix depend on it.
    with pytest.raises(ConfigError, match="another rounds; use a new --out folder"):
        run_from_args(parse(args_for((tuned, tasks), out, "--jury-mode", "batched")))

    # The executions depend on constrained steps: a folder made with them refuses --constrain off.
    with pytest.raises(ConfigError, match="another constrain; use a new --out folder"):
        run_from_args(parse(args_for((tuned, tasks), out, "--constrain", "off")))

    # The folder belongs to its configuration: another seed (so another split) is refused.
    with pytest.raises(ConfigError, match="seed"):
        run_from_args(parse(args_for((tuned, tasks), out, "--seed", "7")))
    # So is an edit of the execution prompts (the outcome matrix was made with the old ones).
    from sale import prompts

    original = prompts.text
    # An edit of the refine prompt makes only the SALE orderings stale.
    monkeypatch.setattr(prompts, "text", lambda name: original(name) + ("\nBe brief." if name == "refine.txt" else ""))
    with pytest.raises(ConfigError, match="another refine_prompt; move or delete"):
        run_from_args(parse(args_for((tuned, tasks), out)))
    monkeypatch.setattr(prompts, "text", lambda name: original(name) + ("\nBe brief." if name == "execute_task.txt" else ""))
    with pytest.raises(ConfigError, match="execution_prompts"):
        run_from_args(parse(args_for((tuned, tasks), out)))


async def test_interrupted_bench_resumes_without_repeating_calls(scripted, responder, tmp_path):
    tasks = make_tasks()
    train, test = split(tasks, test_fraction=0.5, seed=0)
    envs = build_environments(tasks)
    cfg = parse_pool(yaml.safe_load(scripted_pool_yaml(scripted.base_url, AGENTS, max_retries=0)))
    out = tmp_path / "bench"
    loop = asyncio.get_running_loop()
    async with Pool(cfg, ledger=Ledger()) as pool:
        quiet = dict(orderings=2, progress=False, say=lambda m: None)
        job = asyncio.ensure_future(run_bench(pool, train, test, out, envs, **quiet))
        responder.on_execute = lambda n: n == 10 and loop.call_soon_threadsafe(job.cancel)
        with pytest.raises(asyncio.CancelledError):
            await job
        responder.on_execute = None
        assert not (out / "summary.json").exists()
        done = len(responder.executions)
        # An endpoint that fails is not taken for the agent failing: nothing is recorded.
        responder.fail_executions = 2
        with pytest.raises(EndpointFailure, match="rerun to retry"):
            await run_bench(pool, train, test, out, envs, **quiet)
        summary = await run_bench(pool, train, test, out, envs, **quiet)
    assert summary["methods"]["sale"]["n_orderings"] == 2
    assert summary["methods"]["big"]["pass_at_1"] == 1.0 and summary["methods"]["oracle"]["pass_at_1"] == 1.0
    assert responder.calls["bid"] == 3 * 8
    original = [e for e in responder.executions if not e[2]]
    # The one execution in flight when the bench was stopped may run again; nothing else does.
    assert done == 10 and 3 * 8 <= len(original) <= 3 * 8 + 1
    cells = list(MatrixStore.load(out / "matrix.jsonl").cells())
    assert len(cells) == 3 * 8 and not any(c.reason.startswith("llm_error") for c in cells)


def test_ablations_and_jury_comparison(files, responder, tmp_path):
    out = tmp_path / "bench"
    assert bench(args_for(files, out, "--orderings", "1", "--ablations", "--compare-jury")) == 0
    summary = json.loads((out / "summary.json").read_text())
    methods, extra = summary["methods"], summary["extra"]
    for variant in CORE_VARIANTS + ABLATION_VARIANTS:
        assert variant.name in methods
    modes = extra["jury_modes"]["modes"]
    assert modes["batched"]["jury_calls_per_task"] == 3 and modes["per_bid"]["jury_calls_per_task"] == 9
    assert modes["per_bid"]["jury_tokens_per_task"] > modes["batched"]["jury_tokens_per_task"]
    assert extra["jury_modes"]["same_provisional_winner"] == 1.0  # the scores agree by construction
    # Either jury picks the cheapest agent on easy tasks and the big one on hard ones
    # (half of the test split), and each such winner passes in the outcome matrix.
    for mode in modes.values():
        assert mode["provisional_winner_pass_rate"] == 1.0 and mode["provisional_winner_largest_share"] == 0.5
    page = (out / "report.html").read_text()
    assert "Jury modes on the same original bids" in page and "Cost per phase" in page
    # The jury-free variant makes no jury calls; self/peer review score with their own.
    assert extra["auction_overhead"]["sale-no-jury"]["jury"]["calls_per_task"] == 0
    assert "sale-self-review" in extra["reused"]["variant_rounds"]
    # Every variant's stream shares the original bids: 3 bids per task, nothing more.
    assert responder.calls["bid"] == 3 * 8


def test_a_jury_mode_variant_auctions_on_its_own_rounds_and_fitted_weights(files, responder, tmp_path, capsys):
    out = tmp_path / "bench"
    variants = "sale,sale-batched-jury,sale-per-bid-jury"
    assert bench(args_for(files, out, "--orderings", "1", "--variants", variants, "--compare-jury")) == 0
    # One fit on the batched rounds, shared by the variant and the jury comparison.
    assert capsys.readouterr().err.count("weights (sale-batched-jury, its own rounds): minmax fit on 4") == 1
    summary = json.loads((out / "summary.json").read_text())
    assert {"sale", "sale-batched-jury", "sale-per-bid-jury"} <= set(summary["methods"])
    # The batched jury scored the main round's bids (not asked again) on the train and
    # test tasks, one call per juror and task.
    assert responder.calls["bid"] == 3 * 8
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    batched = [r for r in rounds if json.loads(r["key"])["jury_mode"] == "batched"]
    assert len(batched) == 8 and {r["round"]["phases"]["jury"]["calls"] for r in batched} == {3}
    # Its weights were fitted on those scores; per-bid is the main mode here, so that
    # variant auctions with the main fit.
    own = summary["extra"]["weights"]["own_fit"]
    assert set(own) == {"sale-batched-jury"} and set(own["sale-batched-jury"]["w_jury"]) == {"small", "mid", "big"}
    reused = summary["extra"]["reused"]["variant_rounds"]["sale-batched-jury"]
    assert "jury_mode=batched" in reused and "calls of its own" in reused


def test_variants_choose_which_sale_variants_run(files, responder, tmp_path):
    out = tmp_path / "bench"
    assert bench(args_for(files, out, "--orderings", "1", "--variants", "sale-no-memory,sale-no-jury,sale-full-jury")) == 0
    summary = json.loads((out / "summary.json").read_text())
    methods = summary["methods"]
    assert {"sale-no-memory", "sale-no-jury", "sale-full-jury"} <= set(methods)
    # The whole jury asks every call; without refinement a pruned one would ask no more (the pruning check).
    full = summary["extra"]["auction_overhead"]["sale-full-jury"]["jury"]
    assert full["skipped_calls_per_task"] == 0 and full["calls_per_task"] >= 9
    pruning = summary["extra"]["jury_pruning"]
    assert pruning["winner_differs"] == 0 and pruning["jury_calls_per_task_full"] == 9
    assert not {"sale", "sale-default-weights"} & set(methods)
    assert not (out / "sale" / "sale").exists()  # nothing of the variants left out ran
    assert "oracle" in methods and "largest" in methods  # the baselines still do
    with pytest.raises(ConfigError, match="unknown sale-fancy; known: sale, "):
        select_variants(["sale-fancy"])


def test_outcome_memory_variants_run_when_named(files, responder, tmp_path):
    out = tmp_path / "bench"
    from sale.jsonl import read_jsonl

    names = "sale,sale-memory-value,sale-gated,sale-memory-value-gated"
    # NAME:N gives one variant its own number of orderings
    assert bench(args_for(files, out, "--orderings", "1", "--variants", names.replace("sale,", "sale:2,", 1))) == 0
    summary = json.loads((out / "summary.json").read_text())
    methods = summary["methods"]
    assert set(names.split(",")) <= set(methods)
    assert {name: methods[name]["n_orderings"] for name in names.split(",")} == {
        "sale": 2, "sale-memory-value": 1, "sale-gated": 1, "sale-memory-value-gated": 1}
    assert summary["extra"]["splits"]["orderings_by_variant"]["sale"] == 2
    assert (out / "sale" / "sale" / "ordering-1.jsonl").exists()
    assert not (out / "sale" / "sale-gated" / "ordering-1.jsonl").exists()
    for bad in ("sale:0", "sale:two"):
        with pytest.raises(ConfigError, match=f"variants: '{bad}': the orderings after ':'"):
            variant_orderings([bad])
    for name in names.split(","):
        lines = list(read_jsonl(out / "sale" / name / "ordering-0.jsonl"))
        auctions = [r["auction"] for r in lines if r["kind"] == "auction"]
        assert auctions
        settings = auctions[0]["settings"]
        assert settings["memory_value"] == ("memory-value" in name)
        assert (settings["gate"] is not None) == ("gated" in name)
        for a in auctions:
            assert ("memory_value" in a) == ("memory-value" in name)
            if "memory_value" in a:  # evidence only from the stream's own executions (its winners)
                earlier = {b["task_id"]: b["winner"] for b in auctions[: auctions.index(a)]}
                for agent, term in a["memory_value"]["agents"].items():
                    assert all(earlier[n["task_id"]] == agent for n in term["neighbours"])
            if a.get("gate", {}).get("gated"):
                assert a["phases"]["bid"]["calls"] == 1 and a["phases"]["jury"]["calls"] == 0
    # a folder made before these settings existed is still this configuration
    path = out / "bench.json"
    made = json.loads(path.read_text())
    for key in ("memory_value", "memory_k", "memory_prior", "gate"):
        del made["auction"][key]
    path.write_text(json.dumps(made))
    calls = sum(responder.calls.values())
    assert bench(args_for(files, out, "--orderings", "1", "--variants", names)) == 0
    assert sum(responder.calls.values()) == calls


def test_matrix_only_stops_after_the_outcome_matrix_and_a_later_run_goes_on(files, responder, tmp_path):
    from sale.evaluation.matrix import MatrixStore

    out = tmp_path / "bench"
    assert bench(args_for(files, out, "--orderings", "1", "--variants", "sale", "--matrix-only")) == 0
    assert responder.calls["bid"] == 3 * 8 and responder.calls["execute"] >= 3 * 8  # rounds and matrix
    assert responder.calls["refine"] == 0 and not (out / "sale").exists()  # no SALE stream ran
    assert all("Plan of" in text for _, text, _ in responder.executions)  # each agent follows its own bid
    summary = json.loads((out / "summary.json").read_text())
    assert "sale" not in summary["methods"] and {"largest", "oracle"} <= set(summary["methods"])
    assert summary["extra"]["single_agents_by_tier"]["tasks"] == 8
    assert (out / "report.html").exists()
    done = dict(responder.calls)
    assert bench(args_for(files, out, "--orderings", "1", "--variants", "sale")) == 0  # goes on from the matrix
    assert responder.calls["bid"] == done["bid"]  # rounds reused
    assert "sale" in json.loads((out / "summary.json").read_text())["methods"]
    assert len(list(MatrixStore.load(out / "matrix.jsonl").cells())) == 3 * 8


def test_matrix_only_without_a_plan_asks_for_no_bid(files, responder, tmp_path):
    from sale.evaluation.matrix import MatrixStore

    out = tmp_path / "bench"
    assert bench(args_for(files, out, "--matrix-only", "--execution-plan", "none")) == 0
    assert responder.calls["bid"] == responder.calls["jury"] == 0
    assert responder.calls["execute"] >= 3 * 8
    assert not any("Your plan" in text or "Plan of" in text for _, text, _ in responder.executions)
    matrix = MatrixStore.load(out / "matrix.jsonl")
    assert all(matrix.is_complete(t) for t in matrix.task_ids) and len(matrix) == 8
    methods = json.loads((out / "summary.json").read_text())["methods"]
    assert {"largest", "oracle"} <= set(methods)


def test_compare_shows_bench_folders_matrices_side_by_side(files, responder, tmp_path, capsys):
    from sale import cli

    with_plan, without = tmp_path / "plan", tmp_path / "noplan"
    assert bench(args_for(files, with_plan, "--matrix-only")) == 0
    # without a plan the "mid" agent's hard tasks go as without the careful method: the same here
    assert bench(args_for(files, without, "--matrix-only", "--execution-plan", "none")) == 0
    capsys.readouterr()
    assert cli.main(["compare", str(with_plan), str(without), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["labels"] == ["plan (agent, plan after, start direct, constrain auto)",
                               "noplan (agent, plan none, start direct, constrain auto)"]  # fmt: skip
    assert table["tasks"] == 8 and table["agents"] == [name for name, _ in sorted(AGENTS, key=lambda a: a[1])]
    from sale.evaluation.matrix import MatrixStore

    matrix = MatrixStore.load(with_plan / "matrix.jsonl")
    for row in table["rows"]:
        info = {t: matrix.task(t) for t in matrix.task_ids}
        ids = [t for t, i in info.items() if row["group"] in (f"{i.domain}, all", i.tier_name or f"{i.domain}/{i.tier}")]
        assert row["n"] == len(ids) > 0
        cells = [matrix.get(t, row["agent"]) for t in ids]
        got = row[table["labels"][0]]
        assert got["passed"] == sum(c.passed for c in cells)
        assert got["tokens"] == pytest.approx(sum(c.tokens for c in cells) / len(cells))
    assert cli.main(["compare", str(with_plan), str(without)]) == 0
    printed = capsys.readouterr().out
    assert "[2] noplan (agent, plan none" in printed and "coding, all" in printed
    assert cli.main(["compare", str(tmp_path)]) == 2  # not a bench folder: a clear error
    assert "no matrix.jsonl" in capsys.readouterr().err


def test_the_task_files_folders_are_hidden_from_model_written_code(files, tmp_path):
    from sale.run import build_environments
    from sale.workloads.loaders import task_folders

    pool, tasks = files
    args = parse(["--out", str(tmp_path / "b"), "--pool", str(pool), "--tasks", f"jsonl:{tasks}", str(tasks)])
    assert task_folders(args.tasks) == {tasks.resolve().parent}
    assert task_folders(parse(["--out", str(tmp_path / "b")]).tasks or []) == set()  # standard workload: --data-dir is hidden
    env = build_environments(make_tasks(), hide_paths=task_folders(args.tasks))["coding"]
    assert str(tasks.resolve().parent) in env.hide_paths
