"""``sale compare``: the outcome matrices of several bench folders side by side.

Bench folders that differ in how executions run (``--execution-mode``,
``--execution-plan``, ``--execution-start``, ``--constrain``) hold one outcome matrix
each. Per tier and agent, over the tasks every folder holds complete (so each column
counts the same executions), the table shows what each folder's executions passed and
what one execution spent in tokens and wall seconds; one row per domain sums its tiers.
Nothing runs: the matrices are read.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

from sale.errors import ConfigError
from sale.evaluation.matrix import Cell, MatrixStore, OutcomeMatrix


def folder_label(folder: Path) -> str:
    """The folder's name and how its executions ran (from its bench.json)."""
    try:
        made = json.loads((folder / "bench.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return folder.name
    ex = made.get("execution") or {}
    how = [ex.get("mode", "agent"), f"plan {ex.get('plan', 'after')}"]
    if ex.get("mode", "agent") == "agent":
        how.append(f"start {ex.get('start', 'direct')}")
    constrain = (made.get("constrain") or {}).get("mode")
    if constrain:
        how.append(f"constrain {constrain}")
    return f"{folder.name} ({', '.join(how)})"


def load_folder(folder: str | Path) -> OutcomeMatrix:
    path = Path(folder) / "matrix.jsonl"
    if not path.is_file():
        raise ConfigError(f"{folder}: not a bench folder (no matrix.jsonl)")
    return MatrixStore.load(path)


def compare(matrices: dict[str, OutcomeMatrix]) -> dict[str, Any]:
    """``{"labels", "agents", "tasks", "rows": [{"group", "agent", "n", label: {passed,
    tokens, wall_s}}]}``: per tier (then per domain, ``group`` "<domain>, all") and agent,
    cheapest agent first, over the tasks complete in every matrix; ``tokens`` and
    ``wall_s`` per execution."""
    if not matrices:
        raise ConfigError("compare: give at least one bench folder")
    first = next(iter(matrices.values()))
    agents = [a for a in first.by_price if all(a in m.agents for m in matrices.values())]
    if not agents:
        raise ConfigError("compare: the folders share no agent")
    ids = [t for t in first.task_ids if all(t in m and all(m.has(t, a) for a in agents) for m in matrices.values())]
    if not ids:
        raise ConfigError("compare: the folders share no task every agent executed")
    groups: dict[tuple, list[str]] = {}
    for t in ids:
        info = first.task(t)
        groups.setdefault((info.domain, 0, f"{info.domain}, all"), []).append(t)
        groups.setdefault((info.domain, 1, info.tier, info.tier_name or f"{info.domain}/{info.tier}"), []).append(t)
    rows = []
    for key in sorted(groups, key=lambda k: k[:3]):
        members = groups[key]
        for agent in agents:
            row: dict[str, Any] = {"group": key[-1], "agent": agent, "n": len(members)}
            for label, m in matrices.items():
                cells: list[Cell] = [m.get(t, agent) for t in members]
                row[label] = {
                    "passed": sum(c.passed for c in cells),
                    "tokens": sum(c.tokens for c in cells) / len(cells),
                    "wall_s": sum(c.wall_s for c in cells) / len(cells),
                }
            rows.append(row)
    return {"labels": list(matrices), "agents": agents, "tasks": len(ids), "rows": rows}


def format_comparison(table: dict[str, Any]) -> str:
    """The comparison as aligned text: a legend of the folders, then per row and
    folder ``passed/n  tokens  wall s``."""
    labels = table["labels"]
    lines = [f"{len(labels)} folder(s), {table['tasks']} task(s) complete in every one; "
             "per folder: passed/n, tokens and wall seconds per execution"]  # fmt: skip
    lines += [f"  [{i + 1}] {label}" for i, label in enumerate(labels)]
    gw = max(len("tier"), *(len(r["group"]) for r in table["rows"]))
    aw = max(len("agent"), *(len(r["agent"]) for r in table["rows"]))
    head = f"{'tier':<{gw}}  {'agent':<{aw}}" + "".join(f"  {f'[{i + 1}]':>22}" for i in range(len(labels)))
    lines += ["", head]
    for r in table["rows"]:
        cols = "".join(
            f"  {str(r[lb]['passed']) + '/' + str(r['n']):>6} {r[lb]['tokens']:>7.0f} {r[lb]['wall_s']:>6.1f}s"
            for lb in labels
        )
        lines.append(f"{r['group']:<{gw}}  {r['agent']:<{aw}}{cols}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folders", nargs="+", help="bench folders (each holds a matrix.jsonl)")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")


def run_from_args(args: argparse.Namespace) -> int:
    folders: Sequence[Path] = [Path(f) for f in args.folders]
    labels = [folder_label(f) for f in folders]
    if len(set(labels)) < len(labels):
        raise ConfigError("compare: a folder is named twice")
    table = compare({label: load_folder(f) for label, f in zip(labels, folders)})
    print(json.dumps(table, indent=1) if args.json else format_comparison(table))
    return 0
