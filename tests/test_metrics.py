"""Metrics against figures computed by hand on a four-task example."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sale.evaluation.metrics import (
    MetricsError,
    TaskResult,
    bootstrap_ci,
    cost_ratio,
    gap_closed,
    largest_share,
    largest_token_share,
    overhead_shares,
    pass_at_1,
    pass_at_1_by_tier,
    split_orderings,
    summarise,
    total_dollars,
)

TIERS = {"t1": (1, "coding/1 mbpp"), "t2": (1, "coding/1 mbpp"), "t3": (2, "coding/2 humaneval"), "t4": (2, "coding/2 humaneval")}


def results(method, passed, agents, dollars, *, tokens=(1000,) * 4, largest_tokens=None, overhead_tokens=(0,) * 4,
            wall=(10.0,) * 4, overhead_wall=(0.0,) * 4, ordering=0):
    out = []
    for i, tid in enumerate(["t1", "t2", "t3", "t4"]):
        tier, name = TIERS[tid]
        out.append(
            TaskResult(
                task_id=tid, tier_name=name, domain="coding", method=method, agent=agents[i], passed=passed[i],
                dollars=dollars[i], tokens=tokens[i], largest_used=agents[i] == "large",
                largest_tokens=(largest_tokens[i] if largest_tokens else (tokens[i] if agents[i] == "large" else 0)),
                overhead_tokens=overhead_tokens[i], overhead_wall_s=overhead_wall[i], wall_s=wall[i], tier=tier,
                ordering=ordering,
            )
        )
    return out


LARGEST = results("largest", [True, False, True, False], ["large"] * 4, [0.4] * 4)
ORACLE = results("oracle", [True, True, True, True], ["small", "small", "mid", "mid"], [0.05, 0.05, 0.16, 0.16])
SALE = results(
    "sale", [True, False, True, True], ["small", "small", "large", "mid"], [0.06, 0.06, 0.41, 0.17],
    tokens=(1100,) * 4, largest_tokens=(25, 25, 1025, 25), overhead_tokens=(100,) * 4, overhead_wall=(1.0,) * 4,
)


def test_point_metrics_by_hand():
    assert pass_at_1(SALE) == 0.75
    assert pass_at_1_by_tier(SALE) == {"coding/1 mbpp": 0.5, "coding/2 humaneval": 1.0}
    assert total_dollars(SALE) == pytest.approx(0.70)
    assert largest_share(SALE) == 0.25 and largest_share(LARGEST) == 1.0
    assert largest_token_share(SALE) == pytest.approx(1100 / 4400)
    assert overhead_shares(SALE) == (pytest.approx(400 / 4400), pytest.approx(0.1))
    assert overhead_shares(LARGEST) == (0.0, 0.0)
    assert overhead_shares([]) == (None, None)
    assert gap_closed(0.75, 0.5, 1.0) == 0.5
    assert gap_closed(0.75, 0.5, 0.5) is None and gap_closed(0.7, None, 1.0) is None
    assert cost_ratio(0.7, 1.6) == pytest.approx(0.4375) and cost_ratio(0.7, 0.0) is None
    with pytest.raises(MetricsError, match="no results"):
        pass_at_1([])


def test_summarise_by_hand():
    s = summarise({"largest": LARGEST, "oracle": ORACLE, "sale": SALE}, n_boot=200)
    json.dumps(s, allow_nan=False)  # strict JSON
    sale = s["sale"]
    assert sale["n_tasks"] == 4 and sale["n_orderings"] == 1
    assert sale["pass_at_1"] == 0.75 and sale["pass_at_1_std"] is None
    assert sale["pass_at_1_by_tier"] == {"coding/1 mbpp": 0.5, "coding/2 humaneval": 1.0}
    assert sale["pass_at_1_by_domain"] == {"coding": 0.75}
    assert sale["dollars"] == pytest.approx(0.70) and sale["dollars_per_task"] == pytest.approx(0.175)
    assert sale["largest_share"] == 0.25
    assert sale["largest_token_share"] == pytest.approx(0.25)
    assert sale["overhead_token_share"] == pytest.approx(1 / 11)
    assert sale["overhead_wall_share"] == pytest.approx(0.1)
    assert sale["gap_closed"] == pytest.approx(0.5)
    assert sale["gap_closed_by_tier"] == {"coding/1 mbpp": pytest.approx(0.0), "coding/2 humaneval": pytest.approx(1.0)}
    assert sale["cost_ratio_vs_largest"] == pytest.approx(0.4375)
    assert sale["allocation"] == {"large": 0.25, "mid": 0.25, "small": 0.5}
    assert sale["allocation_by_tier"] == {"coding/1 mbpp": {"small": 1.0}, "coding/2 humaneval": {"large": 0.5, "mid": 0.5}}
    assert sale["n_tasks_by_tier"] == {"coding/1 mbpp": 2, "coding/2 humaneval": 2}
    assert s["largest"]["gap_closed"] == 0.0 and s["oracle"]["gap_closed"] == 1.0
    assert s["largest"]["cost_ratio_vs_largest"] == 1.0
    # Without the reference methods the relative figures are undefined, not errors.
    alone = summarise({"sale": SALE}, n_boot=50)
    assert alone["sale"]["gap_closed"] is None and alone["sale"]["cost_ratio_vs_largest"] is None


def test_orderings_mean_and_std():
    second = results("sale", [True] * 4, ["small", "small", "large", "mid"], [0.1] * 4, ordering=1)
    for given in (SALE + second, [SALE, second]):  # flat with an ordering field, or nested
        s = summarise({"sale": given}, n_boot=100)["sale"]
        assert s["n_orderings"] == 2 and s["n_tasks"] == 4
        assert s["pass_at_1"] == pytest.approx(0.875)
        assert s["pass_at_1_std"] == pytest.approx(np.std([0.75, 1.0], ddof=1))
        assert s["pass_at_1_by_ordering"] == [0.75, 1.0]
        assert s["dollars_per_task_by_ordering"] == pytest.approx([0.70 / 4, 0.4 / 4])
        assert s["dollars"] == pytest.approx((0.70 + 0.4) / 2)
        assert s["pass_at_1_by_tier"]["coding/1 mbpp"] == pytest.approx(0.75)
    with pytest.raises(MetricsError, match="task 't1' has more than one result"):
        split_orderings(SALE + SALE)


def test_bootstrap_is_seeded_and_contains_the_estimate():
    rng = np.random.default_rng(1)
    x = rng.random(60) < 0.6
    a = bootstrap_ci(x, seed=7)
    assert a == bootstrap_ci(x, seed=7)
    assert a != bootstrap_ci(x, seed=8)
    assert a[0] <= x.mean() <= a[1] and a[0] < a[1]
    narrow = bootstrap_ci(np.tile(x, 10), seed=7)
    assert narrow[1] - narrow[0] < a[1] - a[0]
    assert bootstrap_ci([1.0]) == (1.0, 1.0)
    wide = bootstrap_ci(x, seed=7, level=0.99)
    assert wide[0] <= a[0] and wide[1] >= a[1]
    s = summarise({"sale": SALE}, n_boot=300, seed=3)["sale"]
    assert s["pass_at_1_ci"] == summarise({"sale": SALE}, n_boot=300, seed=3)["sale"]["pass_at_1_ci"]
    lo, hi = s["pass_at_1_ci"]
    assert lo <= s["pass_at_1"] <= hi
    with pytest.raises(MetricsError):
        bootstrap_ci([])
