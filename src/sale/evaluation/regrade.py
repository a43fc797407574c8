"""Passing stored answers again under another rule, without executing anything.

Every search execution keeps its final answer and its scores under every rule
(``grade``: em, f1, match, judge where asked, and the rule that passed it). This module
passes such records again under another rule (`regrade_cell`, `regrade_record`), and
``sale regrade DIR --grade RULE`` does it for a whole folder:

- a run folder (``results.jsonl``, ``summary.json``, from ``sale run``), or a demo
  folder (its ``sale/`` and ``largest/`` runs and its report);
- a bench folder (``bench.json``, ``matrix.jsonl``): the outcome matrix and the refined
  executions are passed again, the SALE orderings keep their auctions and winners and
  take the regraded pass of the execution each winner's result came from, and every
  baseline is read again from the regraded matrix. The weights are not fitted again
  (that changes the auctions: ``sale bench --grade RULE`` on the folder does it, reusing
  every execution).

Nothing is executed and no agent is called; the ``judge`` rule calls the judge the pool
file names (``--pool``), its verdicts cached in ``DIR/judge-verdicts.jsonl``. The
originals stay as they are; the regraded summary, results and report are written into
``DIR/regraded-<rule>/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from sale.envs.grading import GradeRule, Judge, grade_short_answer, recorded
from sale.errors import ConfigError, SaleError
from sale.evaluation.matrix import Cell, MatrixStore, OutcomeMatrix
from sale.jsonl import read_jsonl, write_json_atomic

#: Bench outputs that depend on the grading rule (moved aside when the rule changes).
GRADE_DEPENDENT = (
    "weights.json", "sale", "summary.json", "results.jsonl", "report.txt", "report.html",
    "cost_quality.png", "allocation.png", "smallest_wins.png", "single_agents.png",
)  # fmt: skip
#: The rule of a bench folder made before rules were recorded.
LEGACY_RULE = "em"

Say = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rule_slug(rule: GradeRule | str) -> str:
    """A folder-name form of a rule ("f1:0.5" -> "f1-0.5")."""
    return str(rule).replace(":", "-")


# ----------------------------------------------------------------------------- one record


async def regrade_answer(
    answer: str | None, grade: Mapping[str, Any], question: str | None, golds: list[str] | None,
    rule: GradeRule, judge: Judge | None,
) -> tuple[bool, float, dict[str, Any]] | None:
    """(passed, score, grade) of a stored search answer under ``rule``; None when the
    record is not a graded search answer (nothing to pass again). A record graded under
    ``rule`` already is kept exactly as it is."""
    grade = dict(grade or {})
    judged = "judge" in grade and "judge_error" not in grade  # a failed judge call is asked again
    if grade.get("rule") == str(rule) and (not rule.needs_judge or judged):
        return bool(rule.passes(grade)), float(grade.get("f1", 0.0)), grade
    golds = golds or grade.get("golds")
    question = question if question is not None else grade.get("question")
    if not golds or question is None:
        return None
    if answer is None:  # nothing was answered: nothing passes
        return False, 0.0, {**grade, "rule": str(rule)} if grade else {}
    new = await grade_short_answer(answer, list(golds), question, rule, judge)
    return bool(new.passed), float(new.score), recorded(new.detail)


async def regrade_cell(
    cell: Cell, rule: GradeRule, judge: Judge | None = None, *, question: str | None = None,
    golds: list[str] | None = None,
) -> Cell:
    """``cell`` passed again under ``rule`` (a copy; the cell itself where it is not a
    graded search answer or is graded under ``rule`` already)."""
    out = await regrade_answer(cell.answer, cell.grade, question, golds, rule, judge)
    if out is None or (out[0] == cell.passed and out[2] == cell.grade):
        return cell
    passed, _, grade = out
    return replace(cell, passed=passed, grade=grade)


async def regrade_matrix(
    matrix: OutcomeMatrix, rule: GradeRule, judge: Judge | None = None,
    tasks: Mapping[str, Any] | None = None,
) -> int:
    """Pass every search cell of ``matrix`` again under ``rule``, in place; how many changed.
    ``tasks`` (id -> Task) gives questions and golds where cells lack them."""
    changed = 0
    for cell in list(matrix.cells()):
        info = matrix.task(cell.task_id)
        task = (tasks or {}).get(cell.task_id)
        question, golds = _question_golds(task, info.prompt)
        new = await regrade_cell(cell, rule, judge, question=question, golds=golds)
        if new is not cell:
            new.reused = cell.reused
            matrix.add(new)
            changed += new.passed != cell.passed
    return changed


def _question_golds(task: Any, prompt: str | None) -> tuple[str | None, list[str] | None]:
    if task is not None and getattr(task, "domain", "") == "search":
        golds = (task.grading or {}).get("answers")
        return task.prompt, [golds] if isinstance(golds, str) else golds
    return (prompt or None), None


# ----------------------------------------------------------------------------- the rule of a bench folder


def switch_bench_rule(out: Path, rule: GradeRule, say: Say = _stderr) -> str | None:
    """Record ``rule`` as the folder's rule (``grading.json``). Where the folder was
    graded under another rule, its outputs that depend on the rule (weights, SALE
    orderings, summary, report) move into ``graded-<old rule>/`` first; the rounds,
    the matrix and the executions stay and are passed again under ``rule``. Returns the
    old rule where it changed, else None."""
    path = out / "grading.json"
    old: str | None = None
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8")).get("rule")
        except (OSError, json.JSONDecodeError, AttributeError):
            old = None
    elif (out / "matrix.jsonl").exists():
        old = LEGACY_RULE
    if old is not None and old != str(rule):
        present = [name for name in GRADE_DEPENDENT if (out / name).exists()]
        if present:
            dest = out / f"graded-{rule_slug(old)}"
            k = 2
            while dest.exists():
                dest, k = out / f"graded-{rule_slug(old)}-{k}", k + 1
            dest.mkdir(parents=True)
            for name in present:
                shutil.move(str(out / name), str(dest / name))
            say(f"grading: this folder was graded under '{old}', now '{rule}': its {', '.join(present)} moved to "
                f"{dest}; the rounds, the outcome matrix and the executions are reused, passed under '{rule}'")
    write_json_atomic(path, {"rule": str(rule)})
    return old if old is not None and old != str(rule) else None


# ----------------------------------------------------------------------------- run folders


def _run_question_golds(rec: Mapping[str, Any], tasks: Mapping[str, Any]) -> tuple[str | None, list[str] | None]:
    task = tasks.get(rec.get("task_id"))
    return _question_golds(task, None) if task is not None else (None, None)


async def regrade_run(
    run_dir: Path, rule: GradeRule, judge: Judge | None, out_dir: Path, tasks: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A run folder's results passed again under ``rule``, written with a new summary
    into ``out_dir``; returns the summary."""
    from sale.run import summarise_results

    records = list(read_jsonl(run_dir / "results.jsonl"))
    if not records:
        raise SaleError(f"{run_dir}: results.jsonl holds no results to regrade")
    old_summary = _read_json(run_dir / "summary.json")
    out_dir.mkdir(parents=True, exist_ok=True)
    regraded, skipped = [], 0
    for rec in records:
        rec = dict(rec)
        if rec.get("domain") == "search":
            question, golds = _run_question_golds(rec, tasks or {})
            got = await regrade_answer(rec.get("answer"), rec.get("grade") or {}, question, golds, rule, judge)
            if got is None:
                skipped += rec.get("answer") is not None
            else:
                rec["passed"], rec["score"], rec["grade"] = got
        regraded.append(rec)
    if skipped:
        raise SaleError(
            f"{run_dir}: {skipped} search result(s) hold no gold answers (graded before grades were recorded); "
            "give the task files with --tasks"
        )
    from sale.jsonl import JsonlWriter

    (out_dir / "results.jsonl").unlink(missing_ok=True)
    with JsonlWriter(out_dir / "results.jsonl", fsync=False) as writer:
        for rec in regraded:
            writer.write(rec)
    agents = list(old_summary.get("win_share") or dict.fromkeys(r["winner"] for r in regraded if r.get("winner")))
    largest = old_summary.get("largest_agent") or (agents[-1] if agents else "")
    summary = {**old_summary, **summarise_results(regraded, agents, largest)}
    from sale.envs.grading import grading_summary

    summary["grading"] = {**grading_summary(regraded), "rule": str(rule), "regraded_from": str(run_dir)}
    write_json_atomic(out_dir / "summary.json", summary)
    return summary


# ----------------------------------------------------------------------------- bench folders


async def regrade_bench(bench_dir: Path, rule: GradeRule, judge: Judge | None, out_dir: Path,
                        tasks: Mapping[str, Any] | None = None, say: Say = _stderr) -> dict[str, Any]:
    """A bench folder's results passed again under ``rule`` (see the module docstring),
    its summary and report written into ``out_dir``; returns the summary."""
    from sale.evaluation.bench import BASELINE_METHODS, strategy_sha
    from sale.evaluation.matrix_report import matrix_extra
    from sale.evaluation.metrics import TaskResult, summarise
    from sale.evaluation.report import write_report
    from sale.routers.baselines import evaluate_router, make_baseline

    config = _read_json(bench_dir / "bench.json")
    if not config.get("train") and not config.get("test"):
        raise SaleError(f"{bench_dir}/bench.json: no train/test split recorded; not a bench folder")
    matrix = MatrixStore.load(bench_dir / "matrix.jsonl")
    before = sum(c.passed for c in matrix.cells())
    await regrade_matrix(matrix, rule, judge, tasks)
    after = sum(c.passed for c in matrix.cells())
    executions: dict[tuple[str, str, str], Cell] = {}
    for rec in read_jsonl(bench_dir / "executions.jsonl"):
        try:
            cell = Cell.from_dict(rec["cell"])
        except (KeyError, TypeError, SaleError):
            continue
        info = matrix.task(cell.task_id) if cell.task_id in matrix else None
        question, golds = _question_golds((tasks or {}).get(cell.task_id), info.prompt if info else None)
        executions[rec["task_id"], rec["agent"], rec["strategy_sha"]] = await regrade_cell(
            cell, rule, judge, question=question, golds=golds)
    train = [matrix.task(t) for t in config.get("train", []) if t in matrix]
    test = [matrix.task(t) for t in config.get("test", []) if t in matrix]

    old = _read_json(bench_dir / "summary.json")
    old_extra = dict(old.get("extra") or {})
    results: dict[str, list[TaskResult]] = {}
    moved = Counter()
    sale_dir = bench_dir / "sale"
    for folder in sorted(p for p in sale_dir.glob("*") if p.is_dir()) if sale_dir.is_dir() else []:
        lines: list[TaskResult] = []
        for path in sorted(folder.glob("ordering-*.jsonl"), key=lambda p: int(p.stem.split("-")[-1])):
            auctions = {r["task_id"]: r for r in read_jsonl(path) if r.get("kind") == "auction"}
            for line in read_jsonl(path):
                if line.get("kind") != "result":
                    continue
                tr = TaskResult.from_dict(line["result"])
                cell = _winner_cell(line, auctions.get(line["task_id"]), matrix, executions, strategy_sha)
                if cell is not None and cell.passed != tr.passed:
                    tr.passed = cell.passed
                    moved[folder.name] += 1
                lines.append(tr)
        if lines:
            results[folder.name] = lines
    seed = int(config.get("seed", 0))
    taken = set(BASELINE_METHODS) | set(results)
    for name in BASELINE_METHODS:
        router = make_baseline(name, **({"seed": seed} if name == "random" else {}))
        try:
            router.fit(train, matrix)
        except ConfigError:
            continue
        results[name] = evaluate_router(router, test, matrix, method=name)
    for agent in matrix.by_price:
        method = agent if agent not in taken else f"single:{agent}"
        router = make_baseline(f"single:{agent}").fit(train, matrix)
        results[method] = evaluate_router(router, test, matrix, method=method)
    summary = summarise(results, largest="largest", oracle="oracle", seed=seed)
    extra = {
        **old_extra,
        **matrix_extra(matrix, [t.id for t in train]),
        "title": f"{old_extra.get('title') or 'SALE bench'} (regraded under {rule})",
        "grading": {
            "rule": str(rule), "regraded_from": str(bench_dir), "matrix_passes_before": before,
            "matrix_passes_after": after, "sale_results_changed": dict(moved),
            "note": "Regraded from the stored answers without executing anything: the SALE auctions and winners "
            "are those of the original run (weights fitted under the folder's rule); each winner's result takes "
            "the regraded pass of its execution, and every baseline is read again from the regraded matrix.",
        },
    }
    paths = write_report(out_dir, summary, results, extra)
    say(f"regraded under '{rule}': matrix passes {before} -> {after}; report {paths['html']}")
    return json.loads(paths["summary"].read_text(encoding="utf-8"))


def _winner_cell(line, auction_rec, matrix, executions, strategy_sha) -> Cell | None:
    task_id, winner = line["task_id"], line.get("winner")
    if line.get("execution") == "matrix":
        return matrix.get(task_id, winner) if matrix.has(task_id, winner) else None
    if auction_rec is None:
        return None
    strategy = (auction_rec.get("auction") or {}).get("strategy") or ""
    return executions.get((task_id, winner, strategy_sha(strategy)))


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SaleError(f"{path}: unreadable ({exc})") from None
    return data if isinstance(data, dict) else {}


# ----------------------------------------------------------------------------- the command


def folder_kind(path: Path) -> str:
    """"bench", "run" or "demo" (a folder holding sale/ and largest/ runs); SaleError otherwise."""
    if (path / "bench.json").is_file() and (path / "matrix.jsonl").is_file():
        return "bench"
    if (path / "results.jsonl").is_file():
        return "run"
    if (path / "sale" / "results.jsonl").is_file():
        return "demo"
    raise SaleError(f"{path}: neither a run folder (results.jsonl) nor a bench folder (bench.json, matrix.jsonl)")


async def regrade_folder(
    path: str | Path, rule: str | GradeRule, *, pool_path: str | Path | None = None,
    tasks: Iterable[Any] = (), say: Say = _stderr,
) -> dict[str, Any]:
    """``sale regrade``: pass the folder's stored answers again under ``rule``; the
    results go into ``path/regraded-<rule>/``. Returns what was written, by part."""
    path = Path(path)
    rule = GradeRule.parse(rule, "--grade")
    kind = folder_kind(path)
    by_id = {t.id: t for t in tasks}
    judge, pool = None, None
    if rule.needs_judge:
        judge, pool = await _judge_for(path, pool_path)
    out = path / f"regraded-{rule_slug(rule)}"
    try:
        if kind == "bench":
            return {"bench": await regrade_bench(path, rule, judge, out, by_id, say)}
        if kind == "run":
            summary = await regrade_run(path, rule, judge, out, by_id)
            say(f"regraded under '{rule}': pass@1 {_pct(_read_json(path / 'summary.json').get('pass_at_1'))} -> "
                f"{_pct(summary.get('pass_at_1'))}; {out / 'summary.json'}")
            return {"run": summary}
        return await _regrade_demo(path, rule, judge, out, by_id, say)
    finally:
        if judge is not None:
            await judge.close()
        if pool is not None:
            await pool.stop()
            pool.ledger.close()


async def _regrade_demo(path: Path, rule: GradeRule, judge, out: Path, tasks, say: Say) -> dict[str, Any]:
    from sale.evaluation.metrics import summarise
    from sale.evaluation.report import write_report
    from sale.run import as_task_result

    parts = {}
    results = {}
    largest = _read_json(path / "sale" / "summary.json").get("largest_agent", "")
    for name in ("sale", "largest"):
        if (path / name / "results.jsonl").is_file():
            parts[name] = await regrade_run(path / name, rule, judge, out / name, tasks)
            recs = list(read_jsonl(out / name / "results.jsonl"))
            results[name] = [as_task_result(r, name, largest) for r in recs]
    old_extra = dict(_read_json(path / "report" / "summary.json").get("extra") or {})
    summary = summarise(results, largest="largest", oracle="largest", n_boot=500)
    extra = {**old_extra, "title": f"{old_extra.get('title') or 'sale demo'} (regraded under {rule})"}
    paths = write_report(out / "report", summary, results, extra)
    say(f"regraded under '{rule}': " + ", ".join(
        f"{n} pass@1 {_pct(s.get('pass_at_1'))}" for n, s in parts.items()) + f"; report {paths['html']}")
    return parts


async def _judge_for(path: Path, pool_path: str | Path | None):
    from sale.config import load_pool_config
    from sale.envs.grading import GradingConfig, make_judge
    from sale.llm.ledger import Ledger
    from sale.llm.pool import Pool

    if pool_path is None:
        raise ConfigError("--grade judge: give --pool, the pool file whose grading.judge names the judge")
    config = load_pool_config(pool_path)
    grading = GradingConfig.from_pool(config.grading, str(pool_path))
    if grading.judge is None:
        raise ConfigError(f"{pool_path}: grade rule 'judge' needs grading.judge ({{agent: NAME}} or an endpoint)")
    if grading.judge.agent is not None:  # only the judge agent is started
        config = config.model_copy(update={"agents": [a for a in config.agents if a.name == grading.judge.agent] or config.agents})
    pool = Pool(config, ledger=Ledger(path / "judge-ledger.jsonl"), source=str(pool_path))
    if grading.judge.agent is not None:
        await pool.start()
    return make_judge(grading.judge, pool, path / "judge-verdicts.jsonl", str(pool_path)), pool


async def judge_sample(path: Path, n: int, judge: Judge, *, seed: int = 0, tasks: Mapping[str, Any] | None = None,
                       say: Say = _stderr) -> dict[str, Any]:
    """Ask the judge about ``n`` stored search answers drawn at random (seeded) from a
    run or bench folder, and measure its agreement with ``match``; written to
    ``path/judge-sample.json`` with every answer, golds, verdict and match."""
    import random

    from sale.evaluation.matrix_report import rule_agreement

    items: list[tuple[str, str | None, dict[str, Any], str | None, list[str] | None]] = []
    if folder_kind(path) == "bench":
        matrix = MatrixStore.load(path / "matrix.jsonl")
        for cell in matrix.cells():
            q, g = _question_golds((tasks or {}).get(cell.task_id), matrix.task(cell.task_id).prompt)
            items.append((f"{cell.task_id} / {cell.agent}", cell.answer, cell.grade, q, g))
    else:
        for folder in [path] if (path / "results.jsonl").is_file() else [path / "sale", path / "largest"]:
            for rec in read_jsonl(folder / "results.jsonl"):
                if rec.get("domain") == "search":
                    q, g = _run_question_golds(rec, tasks or {})
                    items.append((f"{rec['task_id']} / {rec.get('winner')}", rec.get("answer"), rec.get("grade") or {}, q, g))
    items = [i for i in items if (i[2] or i[4]) and i[1] is not None]
    random.Random(f"judge-sample:{seed}").shuffle(items)
    judged = []
    for key, answer, grade, question, golds in items[:n]:
        got = await regrade_answer(answer, grade, question, golds, GradeRule("judge"), judge)
        if got is not None:
            judged.append({"answer_of": key, **got[2]})
    if not judged:
        raise SaleError(f"{path}: no search answers with gold answers to judge")
    agreement = rule_agreement(judged, "judge", "match")
    write_json_atomic(path / "judge-sample.json", {"judge": judge.name, "seed": seed, "agreement": agreement,
                                                   "answers": judged})  # fmt: skip
    say(f"judge on {len(judged)} answers: agrees with match on {_pct(agreement['agree'])} "
        f"(judge only {agreement['judge_only']}, match only {agreement['match_only']}, "
        f"unreadable {agreement['unreadable_verdicts']}); {path / 'judge-sample.json'}")
    return agreement


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("folder", metavar="RUN_OR_BENCH_DIR", help="a sale run, demo or bench folder")
    add("--grade", metavar="RULE", required=True, help="pass rule: em, match, f1:T or judge")
    add("--pool", help="pool file naming the judge (grading.judge), for --grade judge")
    add("--sample", type=int, metavar="N", help="with --grade judge: ask the judge about N stored search answers "
        "drawn at random and report its agreement with match (judge-sample.json), instead of regrading all")
    add("--tasks", nargs="+", default=[], help="task files, for results recorded without their gold answers")
    add("--data-dir", help="benchmark data folder: its standard workload gives the gold answers of a bench "
        "folder recorded without them")


def run_from_args(args: argparse.Namespace) -> int:
    from sale.workloads.loaders import load_tasks

    rule = GradeRule.parse(args.grade, "--grade")
    if args.sample is not None and (not rule.needs_judge or args.sample < 1):
        raise ConfigError("--sample N (N >= 1) goes with --grade judge: the judge asked about N answers, beside match")
    tasks = [t for spec in args.tasks for t in load_tasks(spec)]
    if args.data_dir:
        from sale.workloads.standard import standard_workload

        tasks += standard_workload(args.data_dir, per_tier=1_000_000)  # every task it can draw, by id
    if args.sample is not None:
        asyncio.run(_judge_sample_cmd(Path(args.folder), args.sample, args.pool, tasks))
        return 0
    asyncio.run(regrade_folder(args.folder, rule, pool_path=args.pool, tasks=tasks))
    return 0


async def _judge_sample_cmd(path: Path, n: int, pool_path: str | None, tasks: list[Any]) -> None:
    folder_kind(path)
    judge, pool = await _judge_for(path, pool_path)
    try:
        await judge_sample(path, n, judge, tasks={t.id: t for t in tasks})
    finally:
        await judge.close()
        await pool.stop()
        pool.ledger.close()


async def regrade_for_task(cell: Cell, task: Any, env: Any) -> Cell:
    """A stored execution of ``task`` passed under the rule ``env`` (a search environment)
    gives that task; the cell itself for any other task."""
    if cell is None or task is None or env is None or getattr(task, "domain", "") != "search":
        return cell
    from sale.envs.grading import golds_of

    return await regrade_cell(cell, env.rule_for(task), env.judge, question=task.prompt, golds=golds_of(task))
