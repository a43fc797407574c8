"""The viewer's FastAPI app: pages (Jinja2 templates), a JSON API for the task table,
and the package's own CSS and JavaScript (nothing is fetched from the network).

Routes, relative to where the app is served or mounted (``root_path``):

    /                                   the folder (a run or a bench), or the list of folders
    /f/{fid}/                           a run page or a bench page (fid "_" = the root itself)
    /f/{fid}/api/tasks?...              the run's task table: filtered, sorted, one page
    /f/{fid}/api/state                  counts the page polls to update while a run goes on
    /f/{fid}/summary                    the run's summary block (HTML, for the live update)
    /f/{fid}/task/{task_id}             a run's task page
    /f/{fid}/sale/{variant}/{k}/        a bench's SALE ordering: its tasks
    /f/{fid}/sale/{variant}/{k}/task/{task_id}   a task page of that ordering
    /f/{fid}/plot/{name}                a plot the bench wrote (PNG)
    /static/...                         CSS and JavaScript
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, Undefined, select_autoescape
from markupsafe import Markup, escape

from sale.view.files import inside, read_trajectory
from sale.view.folders import PLOTS, BenchFolder, RunFolder, Site, outcome_of
from sale.view.records import auction_view, columns
from sale.view.served import ServeFolder

STATIC = Path(__file__).with_name("static")


# ----------------------------------------------------------------------------- formatting


ABSENT = Markup('<span class="absent">absent</span>')


def fmt_num(x: Any, digits: int = 3) -> Any:
    if isinstance(x, Undefined):
        x = None
    if x is None:
        return ABSENT
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x):
            return str(x)
        if x != 0 and abs(x) < 10 ** -digits:
            return f"{x:.{digits}g}"
        return f"{x:,.{digits}f}"
    return str(x)


def fmt_money(x: Any) -> Any:
    if isinstance(x, Undefined):
        x = None
    if x is None:
        return ABSENT
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return str(x)
    if x == 0:
        return "$0"
    if abs(x) >= 1:
        return f"${x:,.4f}"
    digits = min(12, max(3, 2 - math.floor(math.log10(abs(x)))))
    return f"${x:.{digits}f}"


def fmt_pct(x: Any, digits: int = 1) -> Any:
    if isinstance(x, Undefined):
        x = None
    if x is None:
        return ABSENT
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return str(x)
    return f"{100 * x:.{digits}f}%"


def fmt_time(ts: Any) -> Any:
    if not isinstance(ts, (int, float)):
        return ABSENT if ts is None else str(ts)
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def fmt_value(x: Any) -> Any:
    """Any recorded value, short: numbers formatted, structures as compact JSON."""
    if isinstance(x, Undefined):
        x = None
    if x is None:
        return ABSENT
    if isinstance(x, (int, float, bool)):
        return fmt_num(x)
    if isinstance(x, str):
        return x
    return json.dumps(x, ensure_ascii=False, default=str)


def total(rows: list[dict[str, Any]], key: str) -> float | None:
    """The sum of the numbers recorded under ``key`` (None when there are none)."""
    xs = [r.get(key) for r in rows if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
    return sum(xs) if xs else None


def pretty(x: Any) -> str:
    return json.dumps(x, indent=2, ensure_ascii=False, default=str)


def cost_quality_svg(by_agent: dict[str, dict[str, float]], total: dict[str, Any]) -> Markup:
    """Pass rate against dollars per task, one point per winning agent and one for the
    whole run (recorded results, summed); the point's area follows its task count."""
    points = [(name, a["dollars"] / a["tasks"], a["passed"] / a["tasks"], a["tasks"])
              for name, a in by_agent.items() if a["tasks"]]  # fmt: skip
    if not points:
        return Markup('<p class="note">No finished task yet: nothing to plot.</p>')
    if total.get("tasks"):
        points.append(("whole run", total["dollars_per_task"], total["pass_rate"], total["tasks"]))
    w, h, left, bottom, top, right = 520, 260, 64, 40, 14, 120
    raw = max(p[1] for p in points) * 1.15 or 1e-9
    unit = 10 ** math.floor(math.log10(raw / 4))
    step = next(unit * m for m in (1, 2, 2.5, 5, 10) if unit * m * 4 >= raw)  # round ticks
    xmax = step * 4
    n_max = max(p[3] for p in points)

    def X(v: float) -> float:
        return left + (w - left - right) * v / xmax

    def Y(v: float) -> float:
        return top + (h - top - bottom) * (1 - v)

    parts = [f'<svg class="cq" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
             f'aria-label="pass rate against dollars per task">']  # fmt: skip
    for t in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<line x1="{left}" x2="{w - right}" y1="{Y(t):.1f}" y2="{Y(t):.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{Y(t) + 4:.1f}" text-anchor="end">{int(t * 100)}%</text>')
    for i in range(5):
        v = step * i
        parts.append(f'<text x="{X(v):.1f}" y="{h - bottom + 16}" text-anchor="middle">{escape(fmt_money(v))}</text>')
    parts.append(f'<text x="{(left + w - right) / 2:.0f}" y="{h - 6}" text-anchor="middle" class="axis">'
                 'dollars per task</text>')  # fmt: skip
    parts.append(f'<text x="14" y="{(top + h - bottom) / 2:.0f}" transform="rotate(-90 14 {(top + h - bottom) / 2:.0f})" '
                 'text-anchor="middle" class="axis">pass rate</text>')  # fmt: skip
    for i, (name, x, y, n) in enumerate(points):
        r = 4 + 10 * math.sqrt(n / n_max)
        cls = "pt run" if name == "whole run" else f"pt c{i % 6}"
        parts.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="{r:.1f}" class="{cls}">'
                     f'<title>{escape(name)}: {n} tasks, pass {100 * y:.0f}%, {escape(fmt_money(x))} per task</title></circle>')
        parts.append(f'<text x="{X(x) + r + 3:.1f}" y="{Y(y) + 4:.1f}" class="plabel">{escape(name)} ({n})</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def make_env() -> Environment:
    env = Environment(loader=PackageLoader("sale.view", "templates"), autoescape=select_autoescape(["html"]))
    env.filters.update(num=fmt_num, money=fmt_money, pct=fmt_pct, time=fmt_time, value=fmt_value, pretty=pretty, total=total,
                       q=lambda s: quote(str(s), safe=""))  # fmt: skip
    env.globals.update(outcome_of=outcome_of)
    return env


# ----------------------------------------------------------------------------- the app


def build_app(folder: str | Path) -> FastAPI:
    site = Site(folder)
    env = make_env()
    app = FastAPI(title="sale view", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.site = site
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def page(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        base = request.scope.get("root_path", "").rstrip("/")
        body = env.get_template(template).render(base=base, root=site.root, **ctx)
        return HTMLResponse(body, status_code=status)

    def missing(request: Request, title: str, message: str) -> HTMLResponse:
        return page(request, "missing.html", status=404, title=title, message=message, folders=site.folders())

    def run_page(request: Request, f: RunFolder) -> HTMLResponse:
        f.refresh()
        f.warm_ledger()
        initial = f.query({})
        return page(request, "run.html", f=f, title=f"run {f.name}", summary_block=summary_block(request, f),
                    initial=json.dumps({"page": initial, "facets": f.facets(), "state": f.state()}).replace("</", "<\\/"),
                    many=len(site.folders()) > 1)  # fmt: skip

    def summary_block(request: Request, f: RunFolder) -> Markup:
        summary, note = f.summary()
        totals = f.totals()
        base = request.scope.get("root_path", "").rstrip("/")
        html = env.get_template("run_summary.html").render(
            base=base, f=f, s=summary or {}, has_summary=summary is not None, note=note, t=totals,
            svg=cost_quality_svg(totals["by_agent"], totals), problems=f.problems(),
        )  # fmt: skip
        return Markup(html)

    def bench_page(request: Request, f: BenchFolder) -> HTMLResponse:
        from sale.evaluation.report import extra_tables, method_rows, tier_rows, METHOD_COLUMNS

        f.refresh()
        summary, note = f.summary()
        methods = (summary or {}).get("methods") if isinstance((summary or {}).get("methods"), dict) else {}
        extra = (summary or {}).get("extra") if isinstance((summary or {}).get("extra"), dict) else {}
        tables, problems, main_tables = [], list(f.problems()), 0
        try:
            if methods:
                tables.append(("Methods", list(METHOD_COLUMNS), method_rows(methods)))
                header, rows = tier_rows(methods)
                if len(header) > 1:
                    tables.append(("pass@1 % per tier", header, rows))
                main_tables = len(tables)
            if extra:
                tables.extend(extra_tables(extra))
        except Exception as exc:  # a summary of another shape: say so, show the rest
            problems.append(f"summary.json could not be laid out as tables ({type(exc).__name__}: {exc})")
        orderings = sorted(f.orderings.values(), key=lambda o: (o.variant != "sale", o.variant, o.k))
        return page(request, "bench.html", f=f, title=f"bench {f.name}", tables=tables, note=note, extra=extra,
                    orderings=orderings, plots=f.plots(), config=f.config(), problems=problems, main_tables=main_tables,
                    many=len(site.folders()) > 1, tasks=len(f.tasks), cells=sum(len(c) for c in f.cells.values()))  # fmt: skip

    def serve_page(request: Request, f: ServeFolder) -> HTMLResponse:
        f.refresh()
        initial = f.query({})
        return page(request, "served.html", f=f, title=f"served tasks {f.name}", many=len(site.folders()) > 1,
                    initial=json.dumps(initial).replace("</", "<\\/"))  # fmt: skip

    def serve_task(request: Request, f: ServeFolder, key: str) -> HTMLResponse:
        f.refresh()
        binding = f.binding(key)
        calls = f.ledger_calls(key)
        if binding is None and not calls:
            return missing(request, "no such task", f"task {key!r} has no binding and no call in {f.path}")
        problems = [f.db_problem] if f.db_problem else []
        if binding is None:
            problems.append("no binding for this task key: its calls are in the ledger, its binding is not in bindings.sqlite")
        auction, auction_problem = f.auction((binding or {}).get("auction"))
        retrieved = _retrieved(f, auction, lambda tid: f.auction((f.binding(tid) or {}).get("auction"))[0],
                               lambda tid: f"/f/{f.fid}/task/{quote(tid, safe='')}")  # fmt: skip
        return page(
            request, "task.html", title=f"task {key}", f=f, task_id=key, rec=None, problems=problems,
            a=auction_view(auction) if auction else None, auction_problem=auction_problem, trajectory=None,
            calls=calls, call_columns=columns(calls, ("agent", "phase", "input_tokens", "output_tokens", "dollars", "latency_s", "ok", "error", "ts")),
            ledger_note="" if f.ledger.exists else "no ledger.jsonl in this folder yet", retrieved=retrieved,
            back=f"/f/{f.fid}/", back_label=f"served tasks {f.name}", result_fields=[], bench=None, served=binding,
        )  # fmt: skip

    def folder_page(request: Request, fid: str) -> HTMLResponse:
        f = site.folder(fid)
        if f is None:
            return missing(request, "no such folder", f"{fid!r} is not a run or bench folder under {site.root}")
        if isinstance(f, ServeFolder):
            return serve_page(request, f)
        return run_page(request, f) if isinstance(f, RunFolder) else bench_page(request, f)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        folders = site.folders()
        if list(folders) == ["_"]:
            return folder_page(request, "_")
        for f in folders.values():
            f.refresh()
        return page(request, "index.html", title=f"sale view {site.root.name}", folders=folders)

    @app.get("/f/{fid}/", response_class=HTMLResponse)
    def folder(request: Request, fid: str) -> HTMLResponse:
        return folder_page(request, fid)

    @app.get("/f/{fid}/api/tasks")
    def api_tasks(request: Request, fid: str) -> JSONResponse:
        f = site.folder(fid)
        if isinstance(f, ServeFolder):
            f.refresh()
            return JSONResponse(f.query(dict(request.query_params)))
        if not isinstance(f, RunFolder):
            return JSONResponse({"error": f"{fid!r} is not a run folder"}, status_code=404)
        f.refresh()
        return JSONResponse({**f.query(dict(request.query_params)), "facets": f.facets()})

    @app.get("/f/{fid}/api/state")
    def api_state(fid: str) -> JSONResponse:
        f = site.folder(fid)
        if f is None:
            return JSONResponse({"error": f"{fid!r} is not a run or bench folder"}, status_code=404)
        f.refresh()
        return JSONResponse(f.state())

    @app.get("/f/{fid}/summary", response_class=HTMLResponse)
    def run_summary(request: Request, fid: str) -> HTMLResponse:
        f = site.folder(fid)
        if not isinstance(f, RunFolder):
            return HTMLResponse("", status_code=404)
        f.refresh()
        return HTMLResponse(summary_block(request, f))

    @app.get("/f/{fid}/plot/{name}")
    def plot(fid: str, name: str):
        f = site.folder(fid)
        if not isinstance(f, BenchFolder) or name not in PLOTS or not (f.path / name).is_file():
            return JSONResponse({"error": "no such plot"}, status_code=404)
        return FileResponse(f.path / name, media_type="image/png")

    @app.get("/f/{fid}/task/{task_id:path}", response_class=HTMLResponse)
    def run_task(request: Request, fid: str, task_id: str) -> HTMLResponse:
        f = site.folder(fid)
        if isinstance(f, ServeFolder):
            return serve_task(request, f, task_id)
        if not isinstance(f, RunFolder):
            return missing(request, "no such run", f"{fid!r} is not a run folder under {site.root}")
        f.refresh()
        rec = f.record(task_id)
        auction, auction_problem = f.auction(task_id, rec)
        if rec is None and auction is None:
            return missing(request, "no such task", f"task {task_id!r} has no result and no auction record in {f.path}")
        problems = []
        if rec is None:
            problems.append("no result line for this task in results.jsonl: it is still running, or the run was stopped before it finished")
        traj_path = f.trajectory_path(task_id, rec)
        trajectory = None
        if traj_path is not None:
            if inside(f.root, traj_path) or _in_sibling_run(f.path, traj_path):
                trajectory = read_trajectory(traj_path)
            else:
                problems.append(f"the trajectory path {traj_path} lies outside the folder shown")
        calls = f.ledger_calls(task_id)
        retrieved = _retrieved(f, auction, lambda tid: f.auction(tid, f.record(tid))[0],
                               lambda tid: f"/f/{fid}/task/{quote(tid, safe='')}" if tid in f.rows else None)  # fmt: skip
        return page(
            request, "task.html", title=f"task {task_id}", f=f, task_id=task_id, rec=rec, problems=problems,
            a=auction_view(auction) if auction else None, auction_problem=auction_problem, trajectory=trajectory,
            calls=calls, call_columns=columns(calls, ("agent", "phase", "input_tokens", "output_tokens", "dollars", "latency_s", "ok", "error", "ts")),
            ledger_note=_ledger_note(f), retrieved=retrieved, back=f"/f/{fid}/", back_label=f"run {f.name}",
            result_fields=_result_fields(rec), bench=None,
        )  # fmt: skip

    def bench_ordering(request: Request, fid: str, variant: str, k: int):
        """(bench folder, ordering) of a URL, or the page saying which is missing."""
        f = site.folder(fid)
        if not isinstance(f, BenchFolder):
            return missing(request, "no such bench", f"{fid!r} is not a bench folder under {site.root}")
        f.refresh()
        o = f.ordering(variant, k)
        if o is None:
            return missing(request, "no such ordering", f"no sale/{variant}/ordering-{k}.jsonl in {f.path}")
        return f, o

    @app.get("/f/{fid}/sale/{variant}/{k}/", response_class=HTMLResponse)
    def ordering_page(request: Request, fid: str, variant: str, k: int) -> HTMLResponse:
        found = bench_ordering(request, fid, variant, k)
        if isinstance(found, HTMLResponse):
            return found
        f, o = found
        rows = []
        for tid in o.order:
            res = o.results.get(tid) or {}
            r = res.get("result") if isinstance(res.get("result"), dict) else {}
            info = f.tasks.get(tid) or {}
            rows.append({"task_id": tid, "tier_name": info.get("tier_name") or r.get("tier_name"),
                         "domain": info.get("domain") or r.get("domain"), "winner": res.get("winner"),
                         "winner_kind": res.get("winner_kind"), "provisional": res.get("provisional_winner"),
                         "refined": res.get("refined"), "passed": r.get("passed") if res else None,
                         "dollars": r.get("dollars"), "execution": res.get("execution"), "done": bool(res)})  # fmt: skip
        return page(request, "ordering.html", title=f"{variant} ordering {k}", f=f, o=o, rows=rows)

    @app.get("/f/{fid}/sale/{variant}/{k}/task/{task_id:path}", response_class=HTMLResponse)
    def bench_task(request: Request, fid: str, variant: str, k: int, task_id: str) -> HTMLResponse:
        found = bench_ordering(request, fid, variant, k)
        if isinstance(found, HTMLResponse):
            return found
        f, o = found
        line = o.auction(task_id)
        res = o.results.get(task_id)
        if line is None and res is None:
            return missing(request, "no such task", f"task {task_id!r} is not in sale/{variant}/ordering-{k}.jsonl")
        auction = line.get("auction") if isinstance((line or {}).get("auction"), dict) else None
        problems = []
        if res is None:
            problems.append("no result line yet: the winner's execution is still going, or the bench was stopped before it")
        a = auction_view(auction) if auction else None
        trajectory = None
        winner = (res or {}).get("winner") or (auction or {}).get("winner")
        if winner:
            strategy = None
            if a:
                won = next((b for b in a["bids"] if b["winner"]), None)
                strategy = won["text"] if won else None
            path = f.trajectory_path(task_id, winner, (res or {}).get("execution") or ("matrix" if (auction or {}).get("winner_kind") == "original" else None), strategy)
            if path is not None:
                trajectory = read_trajectory(path)
        base_task = f"/f/{fid}/sale/{quote(variant, safe='')}/{k}/task/"
        retrieved = _retrieved(f, auction, lambda tid: (o.auction(tid) or {}).get("auction"),
                               lambda tid: base_task + quote(tid, safe="") if tid in o.auctions else None)  # fmt: skip
        result = (res or {}).get("result") if isinstance((res or {}).get("result"), dict) else None
        bench = {"variant": variant, "k": k, "line": res, "result": result, "task": f.tasks.get(task_id),
                 "cells": f.cells.get(task_id, {}), "agents": f.agents or sorted(f.cells.get(task_id, {})),
                 "usage": (line or {}).get("usage"), "round_usage": (line or {}).get("round_usage")}  # fmt: skip
        return page(
            request, "task.html", title=f"task {task_id}", f=f, task_id=task_id, rec=None, problems=problems,
            a=a, auction_problem="" if auction else "the ordering has no auction line for this task",
            trajectory=trajectory, calls=None, call_columns=[], ledger_note="", retrieved=retrieved,
            back=f"/f/{fid}/sale/{quote(variant, safe='')}/{k}/", back_label=f"{variant} ordering {k}",
            result_fields=_result_fields(result), bench=bench,
        )  # fmt: skip

    return app


def _in_sibling_run(run: Path, path: Path) -> bool:
    """Whether ``path`` lies in a run folder beside ``run`` (the demo's largest-agent run
    points at the executions it reused from the auction run)."""
    parent = run.resolve().parent
    try:
        rel = path.resolve().relative_to(parent)
    except (ValueError, OSError):
        return False
    return len(rel.parts) > 1 and (parent / rel.parts[0] / "results.jsonl").is_file()


def _result_fields(rec: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """The result record's fields for the key/value table (long texts shown elsewhere)."""
    if not rec:
        return []
    return [(k, v) for k, v in rec.items() if k not in ("answer",)]


def _ledger_note(f: RunFolder) -> str:
    if not f.ledger.exists:
        return f"no ledger file ({f.ledger_path.name}) in this folder"
    if f.ledger_path.parent != f.path:
        return f"from {f.ledger_path.parent.name}/{f.ledger_path.name}, which this folder shares with the other run beside it"
    return ""


def _retrieved(f: Any, auction: dict[str, Any] | None, load, link) -> list[dict[str, Any]]:
    """The past auctions refinement retrieved, with their bids as recorded in their own records."""
    if not auction:
        return []
    ids = (auction.get("refinement") or {}).get("retrieved") if isinstance(auction.get("refinement"), dict) else None
    out = []
    for tid in ids if isinstance(ids, list) else []:
        tid = str(tid)
        try:
            rec = load(tid)
        except Exception:  # an unreadable past record: shown as missing
            rec = None
        bids = []
        if isinstance(rec, dict):
            for b in rec.get("bids") or []:
                if isinstance(b, dict):
                    won = b.get("agent") == rec.get("winner") and b.get("kind") == rec.get("winner_kind")
                    bids.append({"agent": b.get("agent"), "kind": b.get("kind"), "total": b.get("total"),
                                 "text": b.get("text"), "won": won})  # fmt: skip
        out.append({"task_id": tid, "link": link(tid), "bids": bids, "found": isinstance(rec, dict),
                    "winner": rec.get("winner") if isinstance(rec, dict) else None})  # fmt: skip
    return out
