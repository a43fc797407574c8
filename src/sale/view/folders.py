"""The folders the viewer shows: runs (`sale run`, `sale demo`), benches (`sale bench`).

`Site(root)` finds them: the root itself when it is a run or a bench folder, else the
run and bench folders one level below it (a demo folder holds ``sale/``, ``largest/``
and ``report/``). Each folder keeps an index of its JSONL files by byte offset and
refreshes it on each request, so a page of a large run reads only the lines it shows,
and a run that is still going shows its new tasks.

Fields are read defensively: a record written by an older or a newer version of the
project shows what it has, and a field that is absent is shown as absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sale.view.files import LineIndex, inside, parse_line, read_json

_TASK_FIELD = re.compile(rb'"task":\s*("(?:[^"\\]|\\.)*")')


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def outcome_of(rec: dict[str, Any]) -> str:
    """The recorded outcome class ("outcome"), else passed/failed from "passed"."""
    out = rec.get("outcome")
    if isinstance(out, str) and out:
        return out
    passed = rec.get("passed")
    if passed is True:
        return "passed"
    if passed is False:
        return "failed"
    return "absent"


def safe_name(task_id: str) -> str:
    from sale.run import safe_name as name

    return name(task_id)


def folder_kind(path: Path) -> str | None:
    """"bench", "run", "serve" or None: what ``path`` holds."""
    if not path.is_dir():
        return None
    if (path / "bindings.sqlite").is_file():
        return "serve"  # a `sale serve` state folder
    if any((path / n).exists() for n in ("bench.json", "rounds.jsonl", "matrix.jsonl")):
        return "bench"
    summary = path / "summary.json"
    if (path / "sale").is_dir() and any((path / "sale").glob("*/ordering-*.jsonl")):
        return "bench"
    data = read_json(summary)[0] if summary.is_file() else None
    if isinstance(data, dict) and "methods" in data:
        return "bench"  # a report folder (the demo's report/): its tables and plots
    if (path / "results.jsonl").exists() or (path / "auctions").is_dir() or isinstance(data, dict):
        return "run"
    return None


# ----------------------------------------------------------------------------- runs


ROW_FIELDS = ("task_id", "tier", "tier_name", "domain", "winner", "winner_kind", "reason")
#: The table's filters that choose one value.
FACETS = ("tier_name", "domain", "winner", "outcome")


class RunFolder:
    """A run folder: results.jsonl, summary.json, auctions/, trajectories/, ledger.jsonl."""

    kind = "run"

    def __init__(self, path: Path, root: Path, fid: str):
        self.path, self.root, self.fid = path, root, fid
        self.name = path.name
        self._lock = threading.Lock()
        self.results = LineIndex(path / "results.jsonl", self._on_result, self._reset_results)
        self._reset_results()
        ledger = path / "ledger.jsonl"
        if not ledger.exists() and (path.parent / "ledger.jsonl").exists():
            ledger = path.parent / "ledger.jsonl"  # the demo's two runs share one ledger
        self.ledger_path = ledger
        self.ledger = LineIndex(ledger, self._on_ledger, self._reset_ledger)
        self._reset_ledger()
        self._ledger_used = False

    # -- indexes

    def _reset_results(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.offsets: dict[str, int] = {}
        self.bad_lines = 0
        self.repeated = 0
        self.auction_files: set[str] = set()  # names of auctions/ files that have a result
        self._pending: tuple[Any, list[dict[str, Any]]] | None = None
        # running sums and counts over self.rows (a repeated task replaces its row)
        self._sums = {"passed": 0, "dollars": 0.0, "errors": 0}
        self._phases: Counter = Counter()
        self._facets: dict[str, Counter] = {k: Counter() for k in FACETS}
        self._by_agent: dict[str, dict[str, float]] = {}

    def _count(self, row: dict[str, Any], sign: int) -> None:
        self._sums["passed"] += sign * (row["passed"] is True)
        self._sums["dollars"] += sign * (row["dollars"] or 0.0)
        self._sums["errors"] += sign * bool(row["error"])
        for p, v in row["phases"].items():
            self._phases[p] += sign * v
        for key, counter in self._facets.items():
            if row[key] not in (None, ""):
                counter[str(row[key])] += sign
        a = self._by_agent.setdefault(row["winner"] or "(none)", {"tasks": 0, "passed": 0, "dollars": 0.0})
        a["tasks"] += sign
        a["passed"] += sign * (row["passed"] is True)
        a["dollars"] += sign * (row["dollars"] or 0.0)

    def _on_result(self, offset: int, raw: bytes) -> None:
        rec = parse_line(raw)
        if rec is None or not isinstance(rec.get("task_id"), str):
            self.bad_lines += 1
            return
        tid = rec["task_id"]
        if tid in self.rows:
            self.repeated += 1
            seq = self.rows[tid]["n"]
        else:
            seq = len(self.rows) + 1
        dollars = rec.get("dollars") if isinstance(rec.get("dollars"), dict) else {}
        tokens = rec.get("tokens") if isinstance(rec.get("tokens"), dict) else {}
        row = {k: rec.get(k) for k in ROW_FIELDS}
        row.update(
            n=seq, outcome=outcome_of(rec), passed=rec.get("passed") if isinstance(rec.get("passed"), bool) else None,
            dollars=_num(dollars.get("total")), tokens=_num(tokens.get("total")), wall_s=_num(rec.get("wall_s")),
            error=str(rec.get("error") or "")[:200], phases={k: v for k, v in dollars.items() if k != "total" and _num(v) is not None},
            auction=rec.get("auction") if isinstance(rec.get("auction"), str) else None,
        )  # fmt: skip
        if isinstance(row["reason"], str):
            row["reason"] = row["reason"][:160]
        if tid in self.rows:
            self._count(self.rows[tid], -1)
        self._count(row, +1)
        self.rows[tid] = row
        self.offsets[tid] = offset
        self.auction_files.add(Path(row["auction"]).name if row["auction"] else f"{safe_name(tid)}.json")

    def _reset_ledger(self) -> None:
        self.ledger_offsets: dict[str, list[int]] = {}
        self.ledger_bad = 0

    def _on_ledger(self, offset: int, raw: bytes) -> None:
        m = _TASK_FIELD.search(raw)
        if m is None:
            rec = parse_line(raw)
            if rec is None:
                self.ledger_bad += 1
                return
            task = str(rec.get("task") or "")
        elif b"\\" not in m.group(1):
            task = m.group(1)[1:-1].decode("utf-8", errors="replace")
        else:
            try:
                task = json.loads(m.group(1))
            except ValueError:
                self.ledger_bad += 1
                return
        self.ledger_offsets.setdefault(task, []).append(offset)

    def refresh(self) -> None:
        with self._lock:
            self.results.refresh()
            if self._ledger_used:
                self.ledger.refresh()

    # -- reading

    def record(self, task_id: str) -> dict[str, Any] | None:
        off = self.offsets.get(task_id)
        return None if off is None else self.results.read_at(off)

    def auction_path(self, task_id: str, rec: dict[str, Any] | None) -> Path:
        rel = (rec or {}).get("auction")
        if isinstance(rel, str) and rel:
            return self.path / rel
        return self.path / "auctions" / f"{safe_name(task_id)}.json"

    def auction(self, task_id: str, rec: dict[str, Any] | None = None) -> tuple[dict[str, Any] | None, str]:
        if rec is not None and rec.get("auction") == "":
            return None, "no auction record: this task was not routed by an auction (or its auction failed)"
        path = self.auction_path(task_id, rec)
        if not inside(self.root, path):
            return None, f"the auction record path {path} lies outside the folder shown"
        data, problem = read_json(path)
        if problem:
            return None, f"auction record {path.relative_to(self.path) if inside(self.path, path) else path}: {problem}"
        if not isinstance(data, dict):
            return None, f"auction record {path.name} is not a JSON object"
        return data, ""

    def trajectory_path(self, task_id: str, rec: dict[str, Any] | None) -> Path | None:
        rel = (rec or {}).get("trajectory")
        if isinstance(rel, str) and rel:
            return self.path / rel
        if rec is None:
            p = self.path / "trajectories" / f"{safe_name(task_id)}.jsonl"
            return p if p.exists() else None
        return None

    def warm_ledger(self) -> None:
        """Index the ledger in the background (a large run's ledger takes seconds), so
        that the first task page opened does not wait for it."""

        def index() -> None:
            with self._lock:
                if not self._ledger_used:
                    self._ledger_used = True
                    self.ledger.refresh()

        if not self._ledger_used:
            threading.Thread(target=index, daemon=True, name="sale-view-ledger").start()

    def ledger_calls(self, task_id: str) -> list[dict[str, Any]]:
        with self._lock:
            if not self._ledger_used:
                self._ledger_used = True
                self.ledger.refresh()
            offsets = list(self.ledger_offsets.get(task_id, ()))
        out = []
        for off in offsets:
            rec = self.ledger.read_at(off)
            if rec is not None:
                out.append(rec)
        return out

    def pending(self) -> list[dict[str, Any]]:
        """Auction records without a result line: tasks under way (or cut off by a kill).
        The auctions/ folder is listed again only when it or the results changed."""
        folder = self.path / "auctions"
        try:
            mtime = os.stat(folder).st_mtime_ns
        except OSError:
            return []
        # a folder's mtime has a coarse clock: two changes in one tick look like one, so
        # a listing is reused only once the folder has been still for a while
        key = (mtime, len(self.auction_files))
        if self._pending is not None and self._pending[0] == key and time.time_ns() - mtime > 2_000_000_000:
            return self._pending[1]
        try:
            names = os.listdir(folder)
        except OSError:
            return []
        out = []
        for name in sorted(n for n in names if n.endswith(".json") and not n.startswith(".") and n not in self.auction_files)[:50]:
            data, problem = read_json(folder / name)
            tid = data.get("task_id") if isinstance(data, dict) else None
            out.append({"file": name, "task_id": tid if isinstance(tid, str) else None,
                        "winner": data.get("winner") if isinstance(data, dict) else None, "problem": problem})  # fmt: skip
        self._pending = (key, out)
        return out

    def summary(self) -> tuple[dict[str, Any] | None, str]:
        path = self.path / "summary.json"
        if not path.exists():
            return None, "summary.json is not written yet: the run is still going, or it was stopped before the end"
        data, problem = read_json(path)
        if problem:
            return None, problem
        if not isinstance(data, dict):
            return None, "summary.json is not a JSON object"
        n = data.get("tasks")
        if isinstance(n, int) and n != len(self.rows):
            return data, f"summary.json counts {n} tasks and results.jsonl holds {len(self.rows)}: it was written before the last tasks (or a rerun is going)"
        return data, ""

    def problems(self) -> list[str]:
        out = []
        if not self.results.exists:
            out.append("results.jsonl is missing: no task has finished yet")
        if self.results.tail:
            out.append(f"the last line of results.jsonl is incomplete ({self.results.tail} bytes): a task being written, or a run killed mid-write")
        if self.bad_lines:
            out.append(f"{self.bad_lines} line(s) of results.jsonl are not task records and were skipped")
        if self.repeated:
            out.append(f"{self.repeated} task(s) appear more than once in results.jsonl; the last line of each is shown")
        return out

    def totals(self) -> dict[str, Any]:
        """Counts and sums of the recorded results (what the table shows)."""
        n = len(self.rows)
        passed, dollars = self._sums["passed"], self._sums["dollars"]
        by_agent = {a: dict(v) for a, v in self._by_agent.items() if v["tasks"] > 0}
        return {
            "tasks": n, "passed": passed, "pass_rate": passed / n if n else None, "dollars": dollars,
            "dollars_per_task": dollars / n if n else None, "phases": dict(self._phases),
            "wins": {a: v["tasks"] for a, v in sorted(by_agent.items(), key=lambda kv: -kv[1]["tasks"])},
            "outcomes": {k: c for k, c in self._facets["outcome"].most_common() if c > 0}, "by_agent": by_agent,
            "errors": self._sums["errors"],
        }  # fmt: skip

    def facets(self) -> dict[str, list[str]]:
        return {key: sorted(v for v, c in counter.items() if c > 0) for key, counter in self._facets.items()}

    def query(self, params: dict[str, str]) -> dict[str, Any]:
        """Rows filtered (tier_name, domain, winner, outcome, passed, q, min_dollars,
        max_dollars), sorted (sort, desc) and paged (offset, limit)."""
        rows = list(self.rows.values())
        for key in FACETS:
            want = params.get(key)
            if want:
                rows = [r for r in rows if str(r[key]) == want]
        if params.get("passed") in ("yes", "no"):
            want_passed = params["passed"] == "yes"
            rows = [r for r in rows if (r["passed"] is True) == want_passed]
        q = (params.get("q") or "").strip().lower()
        if q:
            rows = [r for r in rows if q in str(r["task_id"]).lower() or q in str(r.get("reason") or "").lower()]
        for key, cmp in (("min_dollars", lambda v, x: v >= x), ("max_dollars", lambda v, x: v <= x)):
            try:
                bound = float(params.get(key) or "")
            except ValueError:
                continue
            rows = [r for r in rows if r["dollars"] is not None and cmp(r["dollars"], bound)]
        sort = params.get("sort") or "n"
        if sort not in {"n", "task_id", "tier_name", "domain", "winner", "outcome", "dollars", "tokens", "wall_s", "reason"}:
            sort = "n"
        desc = params.get("desc") in ("1", "true", "yes")
        if sort == "n":  # rows are kept in the order the results came
            rows = rows[::-1] if desc else rows
        else:
            present = [r for r in rows if r[sort] is not None]
            absent = [r for r in rows if r[sort] is None]
            present.sort(key=lambda r: (r[sort] if isinstance(r[sort], (int, float)) else str(r[sort]).lower(), r["n"]),
                         reverse=desc)  # fmt: skip
            rows = present + absent
        try:
            offset = max(0, int(params.get("offset") or 0))
            limit = min(1000, max(1, int(params.get("limit") or 100)))
        except ValueError:
            offset, limit = 0, 100
        page = [{k: v for k, v in r.items() if k not in ("phases",)} for r in rows[offset : offset + limit]]
        return {"total": len(rows), "all": len(self.rows), "offset": offset, "limit": limit, "rows": page}

    def state(self) -> dict[str, Any]:
        try:
            mtime = os.stat(self.path / "summary.json").st_mtime
        except OSError:
            mtime = None
        return {"tasks": len(self.rows), "results_bytes": self.results.pos + self.results.tail,
                "summary_mtime": mtime, "pending": self.pending(), "problems": self.problems()}  # fmt: skip


# ----------------------------------------------------------------------------- benches


PLOTS = ("cost_quality.png", "allocation.png", "smallest_wins.png")


class Ordering:
    """One SALE ordering of a bench: ``sale/<variant>/ordering-<k>.jsonl``."""

    def __init__(self, path: Path, variant: str, k: int):
        self.path, self.variant, self.k = path, variant, k
        self.index = LineIndex(path, self._on_line, self._reset)
        self._reset()

    def _reset(self) -> None:
        self.auctions: dict[str, int] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.bad = 0

    def _on_line(self, offset: int, raw: bytes) -> None:
        # an auction line holds the whole record; only its offset is kept
        head = raw[:200]
        if b'"kind": "auction"' in head or b'"kind":"auction"' in head:
            m = re.search(rb'"task_id":\s*("(?:[^"\\]|\\.)*")', raw)
            if m:
                tid = json.loads(m.group(1))
                if tid not in self.auctions:
                    self.order.append(tid)
                self.auctions[tid] = offset
                return
        rec = parse_line(raw)
        if rec is None or not isinstance(rec.get("task_id"), str):
            self.bad += 1
            return
        tid = rec["task_id"]
        if rec.get("kind") == "auction":
            if tid not in self.auctions:
                self.order.append(tid)
            self.auctions[tid] = offset
            return
        if tid not in self.auctions and tid not in self.results:
            self.order.append(tid)
        self.results[tid] = rec

    def auction(self, task_id: str) -> dict[str, Any] | None:
        off = self.auctions.get(task_id)
        return None if off is None else self.index.read_at(off)


class BenchFolder:
    """A bench folder (or a report folder: summary.json with methods, and plots)."""

    kind = "bench"

    def __init__(self, path: Path, root: Path, fid: str):
        self.path, self.root, self.fid = path, root, fid
        self.name = path.name
        self._lock = threading.Lock()
        self.matrix = LineIndex(path / "matrix.jsonl", self._on_matrix, self._reset_matrix)
        self._reset_matrix()
        self.orderings: dict[tuple[str, int], Ordering] = {}

    def _reset_matrix(self) -> None:
        self.agents: list[str] = []
        self.prices: dict[str, Any] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.cells: dict[str, dict[str, dict[str, Any]]] = {}

    def _on_matrix(self, offset: int, raw: bytes) -> None:
        rec = parse_line(raw)
        if rec is None:
            return
        kind = rec.get("kind")
        if kind == "pool":
            self.agents = [str(a) for a in rec.get("agents") or []]
            self.prices = rec.get("prices") if isinstance(rec.get("prices"), dict) else {}
        elif kind == "task" and isinstance(rec.get("id"), str):
            self.tasks[rec["id"]] = rec
        elif kind == "cell" and isinstance(rec.get("task_id"), str):
            self.cells.setdefault(rec["task_id"], {})[str(rec.get("agent"))] = rec

    def refresh(self) -> None:
        with self._lock:
            self.matrix.refresh()
            for p in sorted((self.path / "sale").glob("*/ordering-*.jsonl")):
                m = re.fullmatch(r"ordering-(\d+)\.jsonl", p.name)
                if not m:
                    continue
                key = (p.parent.name, int(m[1]))
                if key not in self.orderings:
                    self.orderings[key] = Ordering(p, *key)
            for o in self.orderings.values():
                o.index.refresh()

    def summary(self) -> tuple[dict[str, Any] | None, str]:
        path = self.path / "summary.json"
        if not path.exists():
            return None, "summary.json is not written yet: the bench is still going, or it was stopped before its report"
        data, problem = read_json(path)
        if problem:
            return None, problem
        if not isinstance(data, dict):
            return None, "summary.json is not a JSON object"
        return data, ""

    def config(self) -> dict[str, Any] | None:
        data, _ = read_json(self.path / "bench.json")
        return data if isinstance(data, dict) else None

    def plots(self) -> list[str]:
        return [p for p in PLOTS if (self.path / p).is_file()]

    def ordering(self, variant: str, k: int) -> Ordering | None:
        return self.orderings.get((variant, k))

    def trajectory_path(self, task_id: str, winner: str, source: str | None, strategy: str | None) -> Path | None:
        """Where the bench wrote the winner's execution: the outcome matrix's trajectory
        for a winner that kept its original bid, else the refined bid's (by the sha256
        of its text, as the bench names it)."""
        name = safe_name(task_id)
        if source == "matrix":
            return self.path / "trajectories" / "matrix" / f"{name}-{winner}.jsonl"
        if strategy is None:
            return None
        sha = hashlib.sha256(strategy.encode("utf-8")).hexdigest()
        return self.path / "trajectories" / "refined" / f"{name}-{winner}-{sha[:12]}.jsonl"

    def problems(self) -> list[str]:
        out = []
        for o in self.orderings.values():
            if o.index.tail:
                out.append(f"the last line of sale/{o.variant}/ordering-{o.k}.jsonl is incomplete (being written, or cut by a kill)")
            if o.bad:
                out.append(f"{o.bad} unreadable line(s) in sale/{o.variant}/ordering-{o.k}.jsonl were skipped")
        return out

    def state(self) -> dict[str, Any]:
        return {
            "orderings": {f"{v}/{k}": len(o.results) for (v, k), o in self.orderings.items()},
            "cells": sum(len(c) for c in self.cells.values()),
        }


# ----------------------------------------------------------------------------- the site


def _serve_folder(path: Path, root: Path, fid: str) -> Any:
    from sale.view.served import ServeFolder

    return ServeFolder(path, root, fid)


_FOLDERS = {"run": RunFolder, "bench": BenchFolder, "serve": _serve_folder}


class Site:
    """The folders under ``root``, found anew as they appear."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self._folders: dict[str, RunFolder | BenchFolder] = {}
        self._kinds: dict[Path, str] = {}  # a folder recognised keeps its kind
        self._lock = threading.Lock()

    def _kind(self, path: Path) -> str | None:
        kind = self._kinds.get(path)
        if kind is None:
            kind = folder_kind(path)
            if kind is not None:
                self._kinds[path] = kind
        return kind

    def folders(self) -> dict[str, RunFolder | BenchFolder]:
        with self._lock:
            kind = self._kind(self.root)
            if kind is not None:
                found = {"_": (self.root, kind)}
            else:
                found = {}
                try:
                    children = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
                except OSError:
                    children = []
                for child in children:
                    k = self._kind(child)
                    if k is not None:
                        found[child.name] = (child, k)
            for fid, (path, k) in found.items():
                have = self._folders.get(fid)
                if have is None or have.kind != k or have.path != path:
                    self._folders[fid] = _FOLDERS[k](path, self.root, fid)
            for fid in list(self._folders):
                if fid not in found:
                    del self._folders[fid]
            return dict(self._folders)

    def folder(self, fid: str) -> RunFolder | BenchFolder | None:
        return self.folders().get(fid)
