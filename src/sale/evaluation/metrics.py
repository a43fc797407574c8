"""Evaluation metrics over per-task results: quality, cost, reliance on the largest agent.

Every routing method (SALE, the baselines, single agents) yields one `TaskResult` per
test task, and per task ordering when the stream is replayed in several orders (SALE's
memory makes order matter). `summarise` turns them into a JSON-ready dict per method:

- ``pass_at_1``: share of tasks passed, overall, per tier and per domain;
- ``dollars`` (total over the test tasks) and ``dollars_per_task``;
- ``largest_share``: share of tasks executed by the largest agent, and
  ``largest_token_share``: share of all tokens spent by the largest agent;
- ``overhead_token_share`` and ``overhead_wall_share``: share of tokens and of wall
  time spent on the auction (bids, jury, refinement) rather than on execution;
- ``gap_closed``: (pass@1 - largest) / (oracle - largest), None when the oracle does not
  beat the largest or either reference method is missing;
- ``cost_ratio_vs_largest``: dollars / dollars of the largest agent alone;
- bootstrap confidence intervals (tasks resampled with a seeded generator), and mean and
  standard deviation over orderings where there are several.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from sale.errors import SaleError


class MetricsError(SaleError):
    """Results cannot be summarised (empty, or inconsistent across orderings)."""


@dataclass
class TaskResult:
    """What one routing method did on one task.

    - ``agent``: the agent whose answer counts (for a cascade, the last one run);
      ``agents_run`` lists every agent executed, in order, where there were several.
    - ``dollars``, ``tokens``, ``wall_s``: everything spent on the task, auction
      included (bids, jury, refinement, every execution).
    - ``largest_used``: the largest agent executed the task (or was run in a cascade).
    - ``largest_tokens``: tokens spent by the largest agent on the task, in any phase.
    - ``overhead_tokens``, ``overhead_wall_s``: the part of ``tokens`` and ``wall_s``
      spent on the auction; 0 for methods without one.
    - ``reused``: the execution was read from the outcome matrix, not run again.
    - ``ordering``: which replay of the task stream this result belongs to.
    """

    task_id: str
    tier_name: str
    domain: str
    method: str
    agent: str | None
    passed: bool
    dollars: float = 0.0
    tokens: int = 0
    largest_used: bool = False
    largest_tokens: int = 0
    overhead_tokens: int = 0
    overhead_wall_s: float = 0.0
    wall_s: float = 0.0
    reused: bool = True
    tier: int = 0
    ordering: int = 0
    agents_run: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskResult:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# ---------------------------------------------------------------------------
# Point metrics over one list of results (one method, one ordering)
# ---------------------------------------------------------------------------


def _require(results: Sequence[TaskResult], what: str) -> None:
    if not results:
        raise MetricsError(f"{what}: no results to measure")


def pass_at_1(results: Sequence[TaskResult]) -> float:
    """Share of tasks passed."""
    _require(results, "pass@1")
    return sum(bool(r.passed) for r in results) / len(results)


def _tier_key(r: TaskResult) -> tuple[str, int, str]:
    return (r.domain, r.tier, r.tier_name)


def tier_order(results: Iterable[TaskResult]) -> list[str]:
    """Tier names sorted by domain, then tier number, then name."""
    keys = {_tier_key(r) for r in results}
    seen: dict[str, None] = {}
    for _, _, name in sorted(keys):
        seen.setdefault(name, None)
    return list(seen)


def pass_at_1_by(results: Sequence[TaskResult], attr: str) -> dict[str, float]:
    """pass@1 within each value of ``attr`` ("tier_name" or "domain")."""
    groups: dict[str, list[TaskResult]] = defaultdict(list)
    for r in results:
        groups[getattr(r, attr)].append(r)
    order = tier_order(results) if attr == "tier_name" else sorted(groups)
    return {k: pass_at_1(groups[k]) for k in order}


def pass_at_1_by_tier(results: Sequence[TaskResult]) -> dict[str, float]:
    """pass@1 per tier, tiers in domain and tier order."""
    return pass_at_1_by(results, "tier_name")


def total_dollars(results: Sequence[TaskResult]) -> float:
    """Dollars spent over all tasks."""
    return float(sum(r.dollars for r in results))


def largest_share(results: Sequence[TaskResult]) -> float:
    """Share of tasks executed by the largest agent."""
    _require(results, "largest share")
    return sum(bool(r.largest_used) for r in results) / len(results)


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def largest_token_share(results: Sequence[TaskResult]) -> float | None:
    """Share of all tokens spent by the largest agent; None when no tokens were spent."""
    return _ratio(sum(r.largest_tokens for r in results), sum(r.tokens for r in results))


def overhead_shares(results: Sequence[TaskResult]) -> tuple[float | None, float | None]:
    """(share of tokens, share of wall time) spent on the auction; None where the total is 0."""
    tokens = _ratio(sum(r.overhead_tokens for r in results), sum(r.tokens for r in results))
    wall = _ratio(sum(r.overhead_wall_s for r in results), sum(r.wall_s for r in results))
    return tokens, wall


def allocation(results: Sequence[TaskResult]) -> dict[str, float]:
    """Share of tasks whose counted answer came from each agent."""
    _require(results, "allocation")
    counts: dict[str, int] = defaultdict(int)
    for r in results:
        counts[r.agent or "(none)"] += 1
    return {a: n / len(results) for a, n in sorted(counts.items())}


def allocation_by_tier(results: Sequence[TaskResult]) -> dict[str, dict[str, float]]:
    """Per tier, the share of tasks executed by each agent."""
    groups: dict[str, list[TaskResult]] = defaultdict(list)
    for r in results:
        groups[r.tier_name].append(r)
    return {t: allocation(groups[t]) for t in tier_order(results)}


def gap_closed(value: float | None, largest: float | None, oracle: float | None) -> float | None:
    """(value - largest) / (oracle - largest); None when undefined (oracle == largest)."""
    if value is None or largest is None or oracle is None:
        return None
    den = oracle - largest
    if abs(den) < 1e-12:
        return None
    return (value - largest) / den


def cost_ratio(dollars: float | None, largest_dollars: float | None) -> float | None:
    """dollars / the largest agent's dollars; None when the reference is missing or 0."""
    if dollars is None or not largest_dollars:
        return None
    return dollars / largest_dollars


# ---------------------------------------------------------------------------
# Orderings and the bootstrap
# ---------------------------------------------------------------------------


def split_orderings(results: Sequence[TaskResult] | Sequence[Sequence[TaskResult]]) -> list[list[TaskResult]]:
    """Normalise a method's results into one list per ordering.

    Accepts a flat list (grouped by ``TaskResult.ordering``) or a list of lists (one per
    ordering). Each ordering must cover a task at most once.
    """
    items = list(results)
    if items and not isinstance(items[0], TaskResult):
        groups = [list(g) for g in items]
    else:
        by: dict[int, list[TaskResult]] = defaultdict(list)
        for r in items:
            by[r.ordering].append(r)
        groups = [by[k] for k in sorted(by)]
    for i, g in enumerate(groups):
        ids = [r.task_id for r in g]
        if len(set(ids)) != len(ids):
            dup = next(t for t in ids if ids.count(t) > 1)
            raise MetricsError(f"ordering {i}: task '{dup}' has more than one result")
    return [g for g in groups if g]


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampled with replacement).

    Deterministic for a given seed. One value gives a zero-width interval.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise MetricsError("bootstrap: no values")
    if not 0 < level < 1:
        raise MetricsError(f"bootstrap: level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(int(n_boot), x.size))
    means = x[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _per_task(groups: list[list[TaskResult]], value) -> np.ndarray:
    """Per task, the mean of ``value(result)`` over the orderings that ran it."""
    acc: dict[str, list[float]] = defaultdict(list)
    for g in groups:
        for r in g:
            acc[r.task_id].append(float(value(r)))
    return np.array([np.mean(v) for _, v in sorted(acc.items())], dtype=float)


def _mean_std(xs: list[float | None]) -> tuple[float | None, float | None]:
    vals = [x for x in xs if x is not None]
    if not vals:
        return None, None
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
    return float(np.mean(vals)), std


# ---------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------


def summarise_method(
    results: Sequence[TaskResult] | Sequence[Sequence[TaskResult]],
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """The metrics of one method; point figures are means over orderings."""
    groups = split_orderings(results)
    if not groups:
        raise MetricsError("no results to summarise")
    per = []
    for g in groups:
        tok, wall = overhead_shares(g)
        per.append(
            {
                "pass_at_1": pass_at_1(g),
                "dollars": total_dollars(g),
                "dollars_per_task": total_dollars(g) / len(g),
                "largest_share": largest_share(g),
                "largest_token_share": largest_token_share(g),
                "overhead_token_share": tok,
                "overhead_wall_share": wall,
                "tokens": int(sum(r.tokens for r in g)),
                "wall_s": float(sum(r.wall_s for r in g)),
            }
        )
    out: dict[str, Any] = {"n_tasks": len(groups[0]), "n_orderings": len(groups)}
    for key in per[0]:
        mean, std = _mean_std([p[key] for p in per])
        out[key] = mean
        if key in ("pass_at_1", "dollars", "largest_share"):
            out[f"{key}_std"] = std
    out["pass_at_1_by_ordering"] = [p["pass_at_1"] for p in per]
    out["dollars_per_task_by_ordering"] = [p["dollars_per_task"] for p in per]

    everything = [r for g in groups for r in g]
    out["pass_at_1_by_tier"] = _mean_over(groups, pass_at_1_by_tier, tier_order(everything))
    out["pass_at_1_by_domain"] = _mean_over(groups, lambda g: pass_at_1_by(g, "domain"), sorted({r.domain for r in everything}))
    tiers: dict[str, int] = defaultdict(int)
    for r in groups[0]:
        tiers[r.tier_name] += 1
    out["n_tasks_by_tier"] = {t: tiers.get(t, 0) for t in tier_order(everything)}
    out["allocation"] = allocation(everything)
    out["allocation_by_tier"] = allocation_by_tier(everything)

    ci = dict(n_boot=n_boot, level=level, seed=seed)
    out["pass_at_1_ci"] = list(bootstrap_ci(_per_task(groups, lambda r: r.passed), **ci))
    out["dollars_per_task_ci"] = list(bootstrap_ci(_per_task(groups, lambda r: r.dollars), **ci))
    out["largest_share_ci"] = list(bootstrap_ci(_per_task(groups, lambda r: r.largest_used), **ci))
    out["ci_level"] = level
    return out


def _mean_over(groups, fn, keys: list[str]) -> dict[str, float]:
    """Mean over orderings of a per-key metric, for keys present in any ordering."""
    acc: dict[str, list[float]] = defaultdict(list)
    for g in groups:
        for k, v in fn(g).items():
            acc[k].append(v)
    return {k: float(np.mean(acc[k])) for k in keys if acc.get(k)}


def summarise(
    results_by_method: Mapping[str, Sequence[TaskResult] | Sequence[Sequence[TaskResult]]],
    *,
    largest: str = "largest",
    oracle: str = "oracle",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Summarise every method: method name -> its metrics (JSON-ready).

    ``largest`` and ``oracle`` name the reference methods for ``gap_closed`` and
    ``cost_ratio_vs_largest``; where either is absent those figures are None. The
    per-tier ``gap_closed_by_tier`` uses the same references per tier.
    """
    if not results_by_method:
        raise MetricsError("no methods to summarise")
    summary: dict[str, dict[str, Any]] = {}
    for name, results in results_by_method.items():
        try:
            summary[name] = summarise_method(results, n_boot=n_boot, level=level, seed=seed)
        except MetricsError as exc:
            raise MetricsError(f"method '{name}': {exc}") from None
    ref_l = summary.get(largest)
    ref_o = summary.get(oracle)
    for name, s in summary.items():
        s["gap_closed"] = gap_closed(
            s["pass_at_1"], ref_l and ref_l["pass_at_1"], ref_o and ref_o["pass_at_1"]
        )
        s["cost_ratio_vs_largest"] = cost_ratio(s["dollars"], ref_l and ref_l["dollars"])
        by_tier = {}
        for tier, value in s["pass_at_1_by_tier"].items():
            lt = ref_l and ref_l["pass_at_1_by_tier"].get(tier)
            ot = ref_o and ref_o["pass_at_1_by_tier"].get(tier)
            by_tier[tier] = gap_closed(value, lt, ot)
        s["gap_closed_by_tier"] = by_tier
    return _finite(summary)


def _finite(obj: Any) -> Any:
    """Replace NaN and infinities by None so the summary is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
