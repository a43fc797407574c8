"""The outcome matrix, its durable store, and the baseline routers on a synthetic pool.

The synthetic workload makes the right routing known: a task's words say which agents
solve it (easy words: every agent; medium words: the mid and large agents; hard words:
only the large one; impossible words: none), mixed with shared filler words.
"""

from __future__ import annotations

import asyncio
import json
import random

import numpy as np
import pytest

from sale.evaluation.matrix import Cell, MatrixError, MatrixStore, OutcomeMatrix, TaskInfo
from sale.evaluation.metrics import TaskResult, pass_at_1
from sale.routers.base import ROUTERS, Decision, get_router
from sale.routers.baselines import (
    CarrotRouter,
    FrugalGPTRouter,
    LargestRouter,
    LogisticModel,
    OracleRouter,
    RandomRouter,
    RidgeModel,
    RouterNotFitted,
    SingleAgentRouter,
    TORouter,
    WTPRouter,
    evaluate_router,
    evaluate_router_async,
    make_baseline,
)

AGENTS = ["large", "small", "mid"]  # pool order deliberately not price order
PRICES = {"small": 0.05, "mid": 0.16, "large": 0.36}

VOCAB = {
    "easy": "apple banana cherry grape lemon mango melon peach pear plum".split(),
    "medium": "river mountain valley canyon glacier delta island harbor lagoon plateau".split(),
    "hard": "quantum entropy tensor manifold spectral fourier lattice eigen kernel topology".split(),
    "none": "zyzzyva qoph xylyl crwth pfft cwm phpht brr tsktsk hmm".split(),
}
FILLER = "please find write compute the answer for task about report using data".split()
SOLVERS = {"easy": {"small", "mid", "large"}, "medium": {"mid", "large"}, "hard": {"large"}, "none": set()}
TIERS = {"easy": 1, "medium": 2, "hard": 3, "none": 4}


def make_matrix(n_per_level: int = 30, seed: int = 0) -> tuple[OutcomeMatrix, list[TaskInfo], list[TaskInfo]]:
    """A matrix over 4 difficulty levels; returns (matrix, train tasks, test tasks)."""
    rng = random.Random(seed)
    m = OutcomeMatrix(AGENTS, PRICES)
    train, test = [], []
    for level, words in VOCAB.items():
        for i in range(n_per_level):
            prompt = " ".join(rng.sample(words[:5], 4) + rng.sample(FILLER, 3))
            info = TaskInfo(id=f"{level}-{i}", domain="search", prompt=prompt, tier=TIERS[level], tier_name=f"t{TIERS[level]} {level}")
            m.add_task(info)
            tokens = rng.randint(800, 3000)
            for agent in AGENTS:
                ok = agent in SOLVERS[level]
                answer = f"final answer {rng.randint(0, 99)} verified" if ok else "sorry error unable traceback failed"
                m.add(Cell(info.id, agent, ok, dollars=tokens * PRICES[agent] / 1e6, input_tokens=tokens // 2,
                           output_tokens=tokens - tokens // 2, answer=answer, wall_s=1.0))
            (train if i % 2 == 0 else test).append(info)
    return m, train, test


@pytest.fixture(scope="module")
def synthetic():
    return make_matrix()


# ---------------------------------------------------------------------------
# Outcome matrix
# ---------------------------------------------------------------------------


def test_matrix_orders_agents_by_price_and_finds_oracle_and_target():
    m = OutcomeMatrix(AGENTS, PRICES)
    assert m.by_price == ["small", "mid", "large"] and m.cheapest == "small" and m.largest == "large"
    m.add_task(TaskInfo(id="t1"))
    for agent, ok in [("small", False), ("mid", True), ("large", True)]:
        m.add(Cell("t1", agent, ok, dollars=PRICES[agent]))
    for agent in AGENTS:
        m.add(Cell("t2", agent, False))
    assert m.success("t1") == {"large": True, "small": False, "mid": True}
    assert m.oracle_agent("t1") == "mid" and m.target_agent("t1") == "mid"
    assert m.oracle_agent("t2") is None and m.target_agent("t2") == "large"
    assert m.success_matrix().tolist() == [[True, False, True], [False, False, False]]
    assert np.allclose(m.dollars_matrix(["t1"]), [[0.36, 0.05, 0.16]])
    assert m.get("t1", "mid").passed is True


def test_matrix_rejects_unknown_agents_and_missing_cells():
    m = OutcomeMatrix(AGENTS, PRICES)
    with pytest.raises(MatrixError, match="unknown agent 'huge'"):
        m.add(Cell("t", "huge", True))
    m.add(Cell("t", "small", True))
    assert m.missing() == [("t", "large"), ("t", "mid")]
    with pytest.raises(MatrixError, match="2 cell"):
        m.success_matrix()
    with pytest.raises(MatrixError, match="no cell for task 't' and agent 'mid'"):
        m.get("t", "mid")
    with pytest.raises(MatrixError, match="no price"):
        OutcomeMatrix(["a", "b"], {"a": 1.0})


def test_store_resumes_after_a_torn_last_line_without_duplicates(tmp_path):
    path = tmp_path / "runs" / "matrix.jsonl"
    with MatrixStore(path, AGENTS, PRICES) as store:
        store.add_task(TaskInfo(id="t1", domain="coding", prompt="add two numbers", tier=2, tier_name="coding/2"))
        assert store.add(Cell("t1", "small", False, dollars=0.001, answer="x"))
        assert store.add(Cell("t1", "mid", True, dollars=0.002, answer="y"))
    # A crash in the middle of writing the next record leaves a torn line.
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"kind": "cell", "task_id": "t1", "agent": "lar')

    with MatrixStore(path, AGENTS, PRICES) as store:
        m = store.matrix
        assert m.task("t1").prompt == "add two numbers" and m.task("t1").tier == 2
        assert m.has("t1", "small") and m.has("t1", "mid") and not m.has("t1", "large")
        assert m.get("t1", "mid").reused and m.get("t1", "mid").answer == "y"
        pending = store.pending([TaskInfo(id="t1")])
        assert [a for _, a in pending] == ["large"]
        # Finished cells are not written twice.
        assert store.add(Cell("t1", "mid", True)) is False
        assert store.add(Cell("t1", "large", True, dollars=0.004))
        store.add_task(TaskInfo(id="t1"))  # already known: no new record

    lines = path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]  # every line is whole JSON
    cells = [(r["task_id"], r["agent"]) for r in records if r["kind"] == "cell"]
    assert sorted(cells) == [("t1", "large"), ("t1", "mid"), ("t1", "small")]
    assert sum(r["kind"] == "task" for r in records) == 1
    m = MatrixStore.load(path)
    assert m.is_complete("t1") and m.oracle_agent("t1") == "mid"


def test_store_refuses_a_different_pool_and_a_new_file_without_one(tmp_path):
    path = tmp_path / "m.jsonl"
    with pytest.raises(MatrixError, match="needs agents and prices"):
        MatrixStore(path)
    MatrixStore(path, AGENTS, PRICES).close()
    with pytest.raises(MatrixError, match="file holds agents"):
        MatrixStore(path, ["small", "large"], PRICES)
    with pytest.raises(MatrixError, match="file holds prices"):
        MatrixStore(path, AGENTS, {**PRICES, "mid": 0.2})


# ---------------------------------------------------------------------------
# Learners
# ---------------------------------------------------------------------------


def test_logistic_and_ridge_fit_simple_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] - X[:, 1] > 0).astype(float)
    p = LogisticModel(l2=1e-4).fit(X, y).predict_proba(X)
    assert ((p > 0.5) == (y == 1)).mean() > 0.95
    const = LogisticModel().fit(X, np.ones(200))
    assert np.allclose(const.predict_proba(X[:2]), 201 / 202)
    target = 3 * X[:, 2] + 1
    assert np.allclose(RidgeModel(alpha=1e-6).fit(X, target).predict(X), target, atol=1e-3)


# ---------------------------------------------------------------------------
# Routers
# ---------------------------------------------------------------------------


def test_fixed_routers_and_registry(synthetic):
    m, train, test = synthetic
    assert LargestRouter().fit(train, m).choose(test[0]) == "large"
    single = get_router("single", agent="mid").fit(train, m)
    assert single.name == "single:mid" and single.choose(test[0]) == "mid"
    assert make_baseline("single:small").choose(test[0]) == "small"
    for name in ["largest", "random", "oracle", "wtp", "carrot", "to-router", "frugalgpt", "single"]:
        assert name in ROUTERS
    with pytest.raises(Exception, match="unknown baseline"):
        make_baseline("nope")
    with pytest.raises(Exception, match="not in the pool"):
        SingleAgentRouter("huge").fit(train, m)
    with pytest.raises(RouterNotFitted):
        WTPRouter().choose(test[0])


def test_random_router_is_seeded_and_order_free(synthetic):
    m, train, test = synthetic
    a = [RandomRouter(seed=3).fit(train, m).choose(t) for t in test]
    b = [RandomRouter(seed=3).fit(train, m).choose(t) for t in reversed(test)]
    assert a == b[::-1]
    assert set(a) == set(AGENTS)
    assert a != [RandomRouter(seed=4).fit(train, m).choose(t) for t in test]


def test_oracle_is_exact(synthetic):
    m, train, test = synthetic
    results = evaluate_router(OracleRouter().fit(train, m), test, m)
    for r in results:
        best = m.oracle_agent(r.task_id)
        assert r.agent == (best or "small")
        assert r.passed == (best is not None)
        assert r.dollars == m.get(r.task_id, r.agent).dollars
    assert pass_at_1(results) == 0.75


@pytest.mark.parametrize("router", [WTPRouter(), CarrotRouter(), TORouter()], ids=lambda r: r.name)
def test_learned_routers_route_by_the_task_text(synthetic, router):
    m, train, test = synthetic
    router.fit(train, m)
    solvable = [t for t in test if m.oracle_agent(t.id)]
    right = sum(router.choose(t) == m.oracle_agent(t.id) for t in solvable)
    assert right / len(solvable) >= 0.85
    easy = [t for t in test if t.id.startswith("easy")]
    assert sum(router.choose(t) == "small" for t in easy) / len(easy) >= 0.85
    results = evaluate_router(router, test, m)
    oracle = pass_at_1(evaluate_router(OracleRouter().fit(train, m), test, m))
    largest = evaluate_router(LargestRouter().fit(train, m), test, m)
    assert pass_at_1(results) >= oracle - 0.1
    assert sum(r.dollars for r in results) < 0.7 * sum(r.dollars for r in largest)


def test_to_router_sends_unsolvable_tasks_to_the_largest(synthetic):
    m, train, test = synthetic
    router = TORouter().fit(train, m)
    hopeless = [t for t in test if t.id.startswith("none")]
    assert sum(router.choose(t) == "large" for t in hopeless) / len(hopeless) >= 0.85


def test_wtp_trades_quality_for_price(synthetic):
    m, train, test = synthetic
    medium = [t for t in test if t.id.startswith("medium")]
    generous = WTPRouter().fit(train, m)
    assert sum(generous.choose(t) == "mid" for t in medium) >= 0.85 * len(medium)
    stingy = WTPRouter(wtp=1e-9).fit(train, m)  # success is worth nothing: cheapest wins
    assert all(stingy.choose(t) == "small" for t in medium)


def test_carrot_cost_weight_moves_choices_to_cheaper_agents(synthetic):
    m, train, test = synthetic
    hard = [t for t in test if t.id.startswith("hard")]
    balanced = CarrotRouter(lam=0.2).fit(train, m)
    assert sum(balanced.choose(t) == "large" for t in hard) >= 0.85 * len(hard)
    thrifty = CarrotRouter(lam=100.0, cost_model="mean").fit(train, m)
    assert all(thrifty.choose(t) == "small" for t in hard)


def test_frugalgpt_cascade_pays_for_every_agent_it_runs(synthetic):
    m, train, test = synthetic
    router = FrugalGPTRouter().fit(train, m)
    results = {r.task_id: r for r in evaluate_router(router, test, m)}
    for t in test:
        r = results[t.id]
        run, final = router.cascade(t, m)
        assert r.agents_run == run and r.agent == final == run[-1]
        assert run == m.by_price[: len(run)]  # cheapest first, no skipping
        assert r.dollars == pytest.approx(sum(m.get(t.id, a).dollars for a in run))
        assert r.tokens == sum(m.get(t.id, a).tokens for a in run)
        assert r.largest_used == ("large" in run)
        assert r.largest_tokens == (m.get(t.id, "large").tokens if "large" in run else 0)
        assert r.passed == m.get(t.id, final).passed
    easy = [results[t.id] for t in test if t.id.startswith("easy")]
    hard = [results[t.id] for t in test if t.id.startswith("hard")]
    assert sum(r.agents_run == ["small"] for r in easy) >= 0.85 * len(easy)
    assert all(r.agents_run == ["small", "mid", "large"] and r.passed for r in hard)
    # A cascade that rejects everything runs every agent and pays for all of them.
    strict = FrugalGPTRouter(threshold=1.01).fit(train, m)
    assert strict.cascade(test[0], m)[0] == ["small", "mid", "large"]


def test_frugalgpt_live_protocol(synthetic):
    m, train, test = synthetic
    router = FrugalGPTRouter().fit(train, m)
    decision = asyncio.run(router.route(test[0], None))
    assert isinstance(decision, Decision) and decision.agent == "small"
    assert decision.info["cascade"] == ["small", "mid", "large"]
    assert router.next_agent("small") == "mid" and router.next_agent("large") is None
    assert router.accept(test[0], "large", "") is True
    assert router.score(test[0], "small", "final answer 3 verified") > router.score(test[0], "small", "sorry error failed")


def test_evaluate_router_results_and_async_routers(synthetic):
    m, train, test = synthetic

    class Fixed:  # any Router: only name, route, observe
        name = "fixed"

        async def route(self, task, env):
            return Decision(agent="mid", strategy="plan")

        def observe(self, task, decision, passed):
            pass

    results = evaluate_router(Fixed(), [t.id for t in test[:4]], m)
    assert all(isinstance(r, TaskResult) and r.agent == "mid" and r.method == "fixed" for r in results)
    r = results[0]
    cell = m.get(r.task_id, "mid")
    assert (r.passed, r.dollars, r.tokens, r.largest_used, r.reused) == (cell.passed, cell.dollars, cell.tokens, False, True)
    assert r.tier_name == m.task(r.task_id).tier_name and r.domain == "search"

    async def inside_loop():
        return await evaluate_router_async(Fixed(), test[:2], m, method="named")

    assert [x.method for x in asyncio.run(inside_loop())] == ["named", "named"]
    big = evaluate_router(LargestRouter().fit(train, m), test[:3], m)
    assert all(x.largest_used and x.largest_tokens == x.tokens for x in big)
