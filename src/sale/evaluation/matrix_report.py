"""What the outcome matrix says before any routing: where the signal is.

- `training_solves`: per agent, how many training tasks it solves, and how many no
  agent solves. Weights are fitted on the tasks some agent solves (the others have the
  largest agent as their target whatever the bids say), so a split with few such tasks
  cannot be fitted; `INFORMATIVE_MIN` is the least the bench accepts without a warning.
- `single_agents_by_tier`: pass@1 of every single agent per tier, smallest to largest,
  over every task of the matrix (the paper's figure of small agents failing to scale).
- `search_rules_by_tier`: the same for the search tiers under each pass rule side by
  side (em, match, f1 >= 0.5, and judge where every cell has a verdict), read from the
  scores each search cell records.
- `endings_by_agent`: per agent and domain, how its executions ended (submitted,
  malformed, repeated, a limit, an error), with tokens and wall time per execution:
  where a small agent loses tasks before its competence is tested.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from sale.envs.grading import GradeRule, pass_rates_by_rule
from sale.evaluation.matrix import OutcomeMatrix

#: Fewer informative training tasks (solved by some agent) than this draws a warning.
INFORMATIVE_MIN = 10


def training_solves(matrix: OutcomeMatrix, train_ids: Iterable[str]) -> dict[str, Any]:
    """Per agent (cheapest first) the training tasks it solves; how many no agent
    solves; how many some agent solves (``informative``); and a warning below
    `INFORMATIVE_MIN`."""
    ids = [t for t in train_ids if t in matrix and matrix.is_complete(t)]
    solves = {a: sum(matrix.get(t, a).passed for t in ids) for a in matrix.by_price}
    unsolved = sum(1 for t in ids if not any(matrix.success(t).values()))
    informative = len(ids) - unsolved
    out: dict[str, Any] = {
        "tasks": len(ids), "solves": solves, "solved_by_none": unsolved, "informative": informative,
    }  # fmt: skip
    if informative < INFORMATIVE_MIN:
        out["warning"] = (
            f"only {informative} of {len(ids)} training tasks are solved by some agent (fewer than "
            f"{INFORMATIVE_MIN}): the weights are fitted on little signal; draw more tasks (--per-tier) or "
            "check the pass rule (--grade)"
        )
    return out


def _tiers(matrix: OutcomeMatrix, task_ids: Sequence[str]) -> list[tuple[str, list[str]]]:
    groups: dict[tuple[str, int, str], list[str]] = {}
    for tid in task_ids:
        info = matrix.task(tid)
        groups.setdefault((info.domain, info.tier, info.tier_name or f"{info.domain}/{info.tier}"), []).append(tid)
    return [(key[2], ids) for key, ids in sorted(groups.items())]


def single_agents_by_tier(matrix: OutcomeMatrix, task_ids: Sequence[str] | None = None) -> dict[str, Any]:
    """``{"agents": cheapest first, "tiers": {tier: {"n": n, agent: pass@1}}}`` over
    the complete tasks among ``task_ids`` (default: every task of the matrix)."""
    ids = [t for t in (task_ids if task_ids is not None else matrix.task_ids) if matrix.is_complete(t)]
    tiers = {}
    for name, members in _tiers(matrix, ids):
        row: dict[str, Any] = {"n": len(members)}
        for agent in matrix.by_price:
            row[agent] = sum(matrix.get(t, agent).passed for t in members) / len(members)
        tiers[name] = row
    return {"agents": list(matrix.by_price), "tasks": len(ids), "tiers": tiers}


def search_rules_by_tier(matrix: OutcomeMatrix, task_ids: Sequence[str] | None = None) -> dict[str, Any]:
    """Per search tier and agent, pass@1 under each rule, from the cells' recorded scores."""
    ids = [t for t in (task_ids if task_ids is not None else matrix.task_ids) if matrix.is_complete(t)]
    tiers: dict[str, Any] = {}
    grades: list[dict[str, Any]] = []
    for name, members in _tiers(matrix, ids):
        cells = {a: [matrix.get(t, a) for t in members] for a in matrix.by_price}
        if not all(c.grade.get("rule") for cs in cells.values() for c in cs):
            continue  # not search, or graded before scores were recorded
        tiers[name] = {"n": len(members), **{a: pass_rates_by_rule([c.grade for c in cs]) for a, cs in cells.items()}}
        grades += [c.grade for cs in cells.values() for c in cs]
    out: dict[str, Any] = {"agents": list(matrix.by_price), "tiers": tiers}
    if grades and all("judge" in g for g in grades):
        out["judge_vs_match"] = rule_agreement(grades, "judge", "match")
    return out


def ending(reason: str) -> str:
    """An execution's ``reason`` as its kind: the reason itself, or the part before
    ": " for an error or a budget refusal ("llm_error: HTTP 500" -> "llm_error")."""
    return (reason or "none").split(":", 1)[0].strip() or "none"


def endings_by_agent(matrix: OutcomeMatrix, task_ids: Sequence[str] | None = None) -> dict[str, Any]:
    """``{"endings": kinds seen, "rows": [{agent, domain, n, passed, <kind>: count,
    tokens, wall_s}]}``, cheapest agent first, over the complete tasks among
    ``task_ids`` (default: every task); ``tokens`` and ``wall_s`` are per execution."""
    ids = [t for t in (task_ids if task_ids is not None else matrix.task_ids) if matrix.is_complete(t)]
    by_domain: dict[str, list[str]] = {}
    for t in ids:
        by_domain.setdefault(matrix.task(t).domain, []).append(t)
    rows, kinds = [], {}
    for agent in matrix.by_price:
        for domain, members in sorted(by_domain.items()):
            cells = [matrix.get(t, agent) for t in members]
            row: dict[str, Any] = {"agent": agent, "domain": domain, "n": len(cells), "passed": sum(c.passed for c in cells)}
            for c in cells:
                kind = ending(c.reason)
                kinds[kind] = None
                row[kind] = row.get(kind, 0) + 1
            row["tokens"] = sum(c.tokens for c in cells) / len(cells)
            row["wall_s"] = sum(c.wall_s for c in cells) / len(cells)
            rows.append(row)
    return {"endings": list(kinds), "rows": rows}


def rule_agreement(grades: list[dict[str, Any]], a: str, b: str) -> dict[str, Any]:
    """How often two rules pass or fail the same answers: the share that agree and the
    counts of each disagreement (``a_only``: passed by ``a`` alone)."""
    ra, rb = GradeRule.parse(a), GradeRule.parse(b)
    both = [(ra.passes(g), rb.passes(g)) for g in grades]
    return {
        "answers": len(both), "agree": sum(x == y for x, y in both) / len(both) if both else None,
        f"{a}_only": sum(x and not y for x, y in both), f"{b}_only": sum(y and not x for x, y in both),
        "unreadable_verdicts": sum(g.get("judge") is None for g in grades) if "judge" in (a, b) else None,
    }  # fmt: skip


def matrix_extra(matrix: OutcomeMatrix, train_ids: Iterable[str]) -> dict[str, Any]:
    """The report's entries for the matrix: ``training``, ``single_agents_by_tier``,
    ``search_rules_by_tier`` and ``endings_by_agent``."""
    return {
        "training": training_solves(matrix, train_ids),
        "single_agents_by_tier": single_agents_by_tier(matrix),
        "search_rules_by_tier": search_rules_by_tier(matrix),
        "endings_by_agent": endings_by_agent(matrix),
    }


def format_training(training: dict[str, Any]) -> str:
    """One line: solves per agent, and how many tasks no agent solves."""
    solves = ", ".join(f"{a} {n}" for a, n in training["solves"].items())
    return (
        f"training split: {training['tasks']} tasks; solved per agent: {solves}; solved by no agent: "
        f"{training['solved_by_none']}; informative: {training['informative']}"
    )
