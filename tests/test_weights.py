"""Scoring-rule weights: defaults, files, and fitting from an outcome matrix."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sale.auction.weights import (
    BidFeatures,
    FitBounds,
    FitError,
    FitExample,
    Weights,
    default_weights,
    fit_average,
    fit_minmax,
    select,
    selection_accuracy,
)
from sale.errors import ConfigError

PRICES = {"small": 0.05, "medium": 0.09, "large": 0.16, "xlarge": 0.36}
TRUE = Weights(w_cost=0.01, w_entropy=-0.8, w_jury={"small": 0.3, "medium": 0.5, "large": 0.2, "xlarge": 0.4})


def synthetic(n_tasks: int = 200, seed: int = 0, flipped: int = 0) -> list[FitExample]:
    """Random bids for four agents; the target of each task is TRUE's argmin.

    The first ``flipped`` tasks get a wrong target (label noise no weights can fit).
    """
    rng = np.random.default_rng(seed)
    examples = []
    for t in range(n_tasks):
        bids = {
            agent: BidFeatures(
                price=price,
                length=float(rng.uniform(80, 400)),
                entropy=float(rng.uniform(0.1, 2.0)),
                jury={juror: float(rng.integers(0, 6)) for juror in PRICES},
            )
            for agent, price in PRICES.items()
        }
        target = select(TRUE, bids)
        if t < flipped:
            target = next(a for a in PRICES if a != target)
        examples.append(FitExample(bids=bids, succeeded=frozenset({target}), task_id=f"t{t}"))
    return examples


# -- the scoring rule and defaults ---------------------------------------------------


def test_score_is_cost_minus_value():
    w = Weights(w_cost=0.01, w_entropy=-1.0, w_jury={"a": 0.5, "b": 0.5})
    assert w.cost(0.36, 250) == pytest.approx(0.9)
    assert w.value(0.5, {"a": 4, "b": 2}) == pytest.approx(-0.5 + 3.0)
    assert w.score(0.36, 250, 0.5, {"a": 4, "b": 2}) == pytest.approx(0.9 - 2.5)


def test_missing_jury_score_is_imputed_and_unknown_juror_refused():
    w = Weights(w_cost=0.0, w_entropy=0.0, w_jury={"a": 1.0, "b": 1.0, "c": 1.0})
    assert w.value(0.0, {"a": 4, "b": 2}) == pytest.approx(4 + 2 + 3)
    assert w.value(None, {"a": 4, "b": 2, "c": None}) == pytest.approx(9)
    with pytest.raises(ConfigError, match="no jury weight for juror.*zed"):
        w.value(0.0, {"a": 4, "zed": 1})


def test_default_weights_put_terms_on_the_jury_scale():
    w = default_weights(list(PRICES), PRICES)
    assert sum(w.w_jury.values()) == pytest.approx(1.0)  # jury term = mean score, 0..5
    assert w.w_entropy < 0  # an unsure plan counts against the bid
    assert w.cost(PRICES["xlarge"], 250) == pytest.approx(1.0)  # top agent's typical bid = one jury point
    jury = {a: 4.0 for a in PRICES}
    # Same plan quality: the cheaper agent wins; same agent: the surer plan wins.
    assert w.score(0.05, 250, 0.5, jury) < w.score(0.36, 250, 0.5, jury)
    assert w.score(0.05, 250, 0.2, jury) < w.score(0.05, 250, 1.5, jury)
    # A clearly better plan from the large agent beats a weak small-agent plan.
    assert w.score(0.36, 250, 0.5, {a: 4.5 for a in PRICES}) < w.score(0.05, 250, 0.5, {a: 2.5 for a in PRICES})
    assert default_weights(["a", "b"]).w_cost == pytest.approx(0.01)
    with pytest.raises(ConfigError):
        default_weights([])


# -- files ------------------------------------------------------------------------------


def test_weights_round_trip_through_a_file(tmp_path):
    w = Weights(w_cost=0.0123, w_entropy=-0.77, w_jury={"small": 0.1, "large": 0.9}, meta={"method": "minmax"})
    path = tmp_path / "sub" / "weights.json"
    w.to_file(path)
    assert Weights.from_file(path) == w
    assert json.loads(path.read_text())["w_jury"] == {"small": 0.1, "large": 0.9}


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", r"not valid JSON \(line 1"),
        ("[1, 2]", "expected a JSON object"),
        ('{"w_entropy": -1, "w_jury": {}}', "field 'w_cost' is missing"),
        ('{"w_cost": "cheap", "w_entropy": -1, "w_jury": {}}', "field 'w_cost' must be a finite number, got 'cheap'"),
        ('{"w_cost": 0.1, "w_entropy": true, "w_jury": {}}', "field 'w_entropy' must be a finite number"),
        ('{"w_cost": 0.1, "w_entropy": -1, "w_jury": {"a": null}}', "field 'w_jury.a' must be a finite number"),
        ('{"w_cost": 0.1, "w_entropy": -1, "w_jury": [1]}', "field 'w_jury' must be an object"),
        ('{"w_cost": 0.1, "w_entropy": -1, "w_jury": {}, "w_price": 2}', "unknown field 'w_price'"),
    ],
)
def test_malformed_weights_file_names_file_and_field(tmp_path, content, message):
    path = tmp_path / "weights.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        Weights.from_file(path)
    assert str(path) in str(info.value)


def test_missing_weights_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="nope.json: cannot read weights file"):
        Weights.from_file(tmp_path / "nope.json")


# -- targets and bounds ---------------------------------------------------------------------


def test_target_is_cheapest_success_else_largest():
    bids = {a: BidFeatures(p, 100, 0.5, {}) for a, p in PRICES.items()}
    assert FitExample(bids, {"large", "medium"}).target_agent() == "medium"
    assert FitExample(bids, set()).target_agent() == "xlarge"
    assert FitExample(bids, {"small"}, target="large").target_agent() == "large"


def test_invalid_bounds_and_empty_training_set():
    with pytest.raises(ConfigError, match="'jury'"):
        FitBounds(jury=(1.0, 0.0))
    with pytest.raises(ConfigError, match="'cost'"):
        FitBounds(cost=(0.0, float("inf")))
    with pytest.raises(FitError, match="no training examples"):
        fit_minmax([])


# -- fitting ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fit", [fit_minmax, fit_average], ids=["minmax", "average"])
def test_fit_recovers_the_target_on_training_tasks(fit):
    examples = synthetic()
    assert selection_accuracy(TRUE, examples) == 1.0
    # The cold-start defaults are not the generating weights.
    assert selection_accuracy(default_weights(list(PRICES), PRICES), examples) < 0.95
    w = fit(examples)
    assert selection_accuracy(w, examples) >= 0.95
    assert w.meta["train_accuracy"] == selection_accuracy(w, examples)
    assert set(w.w_jury) == set(PRICES)
    assert w.w_cost > 0 and w.w_entropy < 0  # the signs of the generating weights


def test_fitted_weights_work_from_a_file(tmp_path):
    examples = synthetic(seed=3)
    fit_minmax(examples).to_file(tmp_path / "w.json")
    assert selection_accuracy(Weights.from_file(tmp_path / "w.json"), examples) >= 0.95


def test_minmax_gives_up_only_the_unfittable_tasks():
    examples = synthetic(n_tasks=120, seed=1, flipped=4)
    w = fit_minmax(examples)
    assert 1 <= w.meta["tasks_given_up"] <= 5
    assert selection_accuracy(w, examples) >= (120 - 5) / 120
    assert selection_accuracy(w, examples[4:]) >= 0.98  # the clean tasks are still right


def test_minmax_with_the_papers_big_m():
    examples = synthetic(n_tasks=60, seed=2, flipped=2)
    w = fit_minmax(examples, big_m=1e4)
    assert selection_accuracy(w, examples[2:]) >= 0.95


def test_bounds_constrain_the_signs():
    examples = synthetic(n_tasks=80, seed=4)
    w = fit_average(examples, FitBounds(entropy=(0.0, 0.0)))
    assert w.w_entropy == 0.0
    w = fit_minmax(examples[:30], FitBounds(cost=(0.0, 0.0)), time_limit=10)
    assert w.w_cost == 0.0 and w.meta["tasks_given_up"] > 0  # price mattered to the targets
