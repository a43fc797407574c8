"""Reports of an evaluation: terminal tables, a JSON summary, plots and one HTML page.

`write_report(out_dir, summary, results, extra)` writes, into ``out_dir``:

- ``summary.json``: the summary of `sale.evaluation.metrics.summarise` and ``extra``;
- ``results.jsonl``: every per-task result, one per line;
- ``report.txt``: the method table and the per-tier pass@1 table, as printed;
- ``cost_quality.png``: pass@1 against dollars, one labelled point per method;
- ``allocation.png``: per tier, the share of tasks each agent executed under SALE;
- ``smallest_wins.png``: the smallest agent's share of auction wins along the stream
  (when ``extra["winners"]`` is given);
- ``stream-<method>.png``, for every SALE method given with its results: along the
  task stream, the share of tasks each agent won so far and the running pass rate
  (the memory at work, averaged over orderings);
- ``report.html``: one self-contained page (plots inlined as base64 PNG, no external
  assets) with the tables and a short explanation of every metric.

Plots are drawn with matplotlib's Agg canvas directly (no pyplot, no global backend).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from sale.errors import SaleError
from sale.evaluation.metrics import TaskResult, split_orderings
from sale.jsonl import write_json_atomic


class ReportError(SaleError):
    """A report cannot be written (missing data for a table or plot, unwritable folder)."""


# ---------------------------------------------------------------------------
# Formatting helpers
# ---------------------------------------------------------------------------


def _pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}"


def _pass_cell(s: Mapping[str, Any]) -> str:
    p = _pct(s.get("pass_at_1"))
    ci = s.get("pass_at_1_ci")
    std = s.get("pass_at_1_std")
    text = p
    if ci:
        text += f" [{_pct(ci[0])}, {_pct(ci[1])}]"
    if std is not None:
        text += f" ±{_pct(std)}"
    return text


def _money(x: float | None) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def _vs_largest(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    return f"{100 * (ratio - 1):+.0f}%"


def _overhead(s: Mapping[str, Any]) -> str:
    tok, wall = s.get("overhead_token_share"), s.get("overhead_wall_share")
    if not tok and not wall:
        return "-"
    return f"{_pct(tok, 2)}% / {_pct(wall, 2)}%"


def _gap(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


METHOD_COLUMNS = (
    "method",
    "pass@1 % [CI]",
    "$ total",
    "$/task",
    "$ vs largest",
    "largest share",
    "largest tokens",
    "gap closed",
    "overhead tok/wall",
)


def method_rows(summary: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """One row of display strings per method, in the summary's order (see METHOD_COLUMNS)."""
    rows = []
    for name, s in summary.items():
        rows.append(
            [
                name,
                _pass_cell(s),
                _money(s.get("dollars")),
                _money(s.get("dollars_per_task")),
                _vs_largest(s.get("cost_ratio_vs_largest")),
                f"{_pct(s.get('largest_share'))}%",
                f"{_pct(s.get('largest_token_share'))}%",
                _gap(s.get("gap_closed")),
                _overhead(s),
            ]
        )
    return rows


def all_tiers(summary: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Tier names over every method, in the order they first appear."""
    seen: dict[str, None] = {}
    for s in summary.values():
        for t in s.get("pass_at_1_by_tier", {}):
            seen.setdefault(t, None)
    return list(seen)


def tier_rows(summary: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of pass@1 per tier, one row per method."""
    tiers = all_tiers(summary)
    header = ["method", *tiers]
    rows = [[name, *(_pct(s.get("pass_at_1_by_tier", {}).get(t)) for t in tiers)] for name, s in summary.items()]
    return header, rows


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        out = [str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def format_summary(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """The method table and the per-tier pass@1 table, as text for a terminal."""
    if not summary:
        raise ReportError("the summary has no methods")
    first = next(iter(summary.values()))
    level = first.get("ci_level", 0.95)
    parts = [format_table(METHOD_COLUMNS, method_rows(summary))]
    parts.append(
        f"pass@1 with a {100 * level:.0f}% bootstrap interval over tasks (and ± std over orderings where several); "
        "overhead = share of tokens / wall time spent on the auction."
    )
    header, rows = tier_rows(summary)
    if len(header) > 1:
        parts.append("pass@1 % per tier")
        parts.append(format_table(header, rows))
    return "\n\n".join(parts)


def _num(x: Any, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def extra_tables(extra: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of the evaluation's side tables, where ``extra`` has them:
    the cost per phase (``auction_overhead`` or ``phase_costs``: method -> phase ->
    stats; a stat that is missing shows as "-"), the
    jury modes compared (``jury_modes``) and where executions came from (``reused``)."""
    tables = []
    overhead = extra.get("auction_overhead") or extra.get("phase_costs") or {}
    if overhead:
        header = ["method", "phase", "calls/task", "skipped/task", "tokens/task", "cached tok/task", "$/task",
                  "wall s/task", "token %", "$ %", "wall %"]  # fmt: skip
        rows = [
            [method, phase, _num(p.get("calls_per_task"), ".2f"), _num(p.get("skipped_calls_per_task"), ".2f"),
             _num(p.get("tokens_per_task"), ".0f"), _num(p.get("cached_tokens_per_task"), ".0f"),
             _money(p.get("dollars_per_task")), _num(p.get("wall_s_per_task"), ".2f"),
             _pct(p.get("token_share")), _pct(p.get("dollar_share")), _pct(p.get("wall_share"))]
            for method, phases in overhead.items() for phase, p in phases.items()
        ]  # fmt: skip
        tables.append(("Cost per phase (per task; shares of everything the method spent)", header, rows))
    jury = extra.get("jury_modes") or {}
    if jury.get("modes"):
        header = ["jury mode", "calls/task", "tokens/task", "$/task", "wall s/task",
                  "winner passes %", "winner largest %"]  # fmt: skip
        rows = [
            [mode + (" (used)" if mode == jury.get("main") else ""), _num(m.get("jury_calls_per_task"), ".1f"),
             _num(m.get("jury_tokens_per_task"), ".0f"), _money(m.get("jury_dollars_per_task")),
             _num(m.get("jury_wall_s_per_task"), ".2f"), _pct(m.get("provisional_winner_pass_rate")),
             _pct(m.get("provisional_winner_largest_share"))]
            for mode, m in jury["modes"].items()
        ]  # fmt: skip
        same = jury.get("same_provisional_winner")
        title = f"Jury modes on the same original bids (same provisional winner on {_pct(same, 0)}% of tasks)"
        tables.append((title, header, rows))
    tables += matrix_tables(extra)
    pruning = extra.get("jury_pruning") or {}
    if pruning.get("tasks"):
        header = ["jury", "calls/task", "tokens/task", "$/task"]
        rows = [[name, _num(pruning.get(f"jury_calls_per_task_{key}"), ".1f"),
                 _num(pruning.get(f"jury_tokens_per_task_{key}"), ".0f"), _money(pruning.get(f"jury_dollars_per_task_{key}"))]
                for name, key in (("pruned (exact)", "pruned"), ("whole", "full"))]  # fmt: skip
        title = (f"Exact jury pruning on the test tasks' rounds (provisional winner differs on "
                 f"{pruning.get('winner_differs')} of {pruning['tasks']} tasks)")  # fmt: skip
        tables.append((title, header, rows))
    executions = (extra.get("reused") or {}).get("executions") or {}
    if executions:
        header = ["method", "from the outcome matrix", "from an earlier refined execution", "fresh"]
        rows = [[m, *(str(e.get(k, 0)) for k in ("from_matrix", "from_earlier_refined_execution", "fresh"))]
                for m, e in executions.items()]  # fmt: skip
        tables.append(("Where each auction winner's execution came from", header, rows))
    return tables


def matrix_tables(extra: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The outcome matrix's tables, where ``extra`` has them (`sale.evaluation.matrix_report`):
    training solves per agent, single agents' pass@1 per tier, search tiers per rule, and how
    each agent's executions ended."""
    tables = []
    training = extra.get("training") or {}
    if training.get("solves"):
        header = ["training tasks", *training["solves"], "solved by none", "informative"]
        rows = [[str(training.get("tasks", "-")), *(str(n) for n in training["solves"].values()),
                 str(training.get("solved_by_none", "-")), str(training.get("informative", "-"))]]  # fmt: skip
        title = "Training tasks solved per agent (what the weights are fitted on)"
        if training.get("warning"):
            title += f" - warning: {training['warning']}"
        tables.append((title, header, rows))
    single = extra.get("single_agents_by_tier") or {}
    if single.get("tiers"):
        agents = list(single.get("agents") or [])
        header = ["tier", "tasks", *agents]
        rows = [[tier, str(row.get("n", "-")), *(_pct(row.get(a)) for a in agents)] for tier, row in single["tiers"].items()]
        rule = (extra.get("grading") or {}).get("rule")
        title = f"pass@1 (%) of each single agent per tier, smallest to largest (all {single.get('tasks')} tasks of the outcome matrix"
        tables.append((title + (f"; search graded by {rule})" if rule else ")"), header, rows))
    rules = extra.get("search_rules_by_tier") or {}
    if rules.get("tiers"):
        agents = list(rules.get("agents") or [])
        names = list(dict.fromkeys(r for row in rules["tiers"].values() for a in agents for r in (row.get(a) or {})))
        header = ["tier", "tasks", *(f"{a} {r}" for a in agents for r in names)]
        rows = [[tier, str(row.get("n", "-")), *(_pct((row.get(a) or {}).get(r)) for a in agents for r in names)]
                for tier, row in rules["tiers"].items()]  # fmt: skip
        title = "Search tiers: pass@1 (%) of each single agent under each pass rule"
        agreement = rules.get("judge_vs_match")
        if agreement:
            title += (f" (judge and match agree on {_pct(agreement.get('agree'))}% of {agreement.get('answers')} answers; "
                      f"judge only {agreement.get('judge_only')}, match only {agreement.get('match_only')}, "
                      f"unreadable verdicts {agreement.get('unreadable_verdicts')})")
        tables.append((title, header, rows))
    endings = extra.get("endings_by_agent") or {}
    if endings.get("rows"):
        kinds = list(endings.get("endings") or [])
        header = ["agent", "domain", "executions", "passed", *kinds, "tokens/exec", "wall s/exec"]
        rows = [[r["agent"], r["domain"], str(r["n"]), str(r["passed"]), *(str(r.get(k, 0)) for k in kinds),
                 _num(r.get("tokens"), ".0f"), _num(r.get("wall_s"), ".1f")] for r in endings["rows"]]  # fmt: skip
        tables.append(("How each agent's executions ended (all tasks of the outcome matrix)", header, rows))
    return tables


def format_tables(tables: Sequence[tuple[str, Sequence[str], Sequence[Sequence[str]]]]) -> str:
    """(title, header, rows) tables as text for a terminal ("" when there are none)."""
    return "\n\n".join(f"{title}\n{format_table(header, rows)}" for title, header, rows in tables)


def format_extra(extra: Mapping[str, Any]) -> str:
    """`extra_tables` as text for a terminal ("" when there are none)."""
    return format_tables(extra_tables(extra))


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------


def _figure(width: float = 6.4, height: float = 4.4):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def plot_cost_quality(summary: Mapping[str, Mapping[str, Any]], *, highlight: str | None = None) -> bytes:
    """PNG: pass@1 (%) against dollars per task, one labelled point per method."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    points = [(n, s["dollars_per_task"], s["pass_at_1"]) for n, s in summary.items() if s.get("pass_at_1") is not None]
    if not points:
        raise ReportError("cost-quality plot: no method has a pass@1")
    for name, x, y in points:
        main = name == highlight
        ax.scatter([x], [100 * y], s=70 if main else 40, marker="*" if main else "o", color="C3" if main else "C0", zorder=3)
        ax.annotate(name, (x, 100 * y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ci = {n: s.get("pass_at_1_ci") for n, s in summary.items()}
    for name, x, y in points:
        if ci.get(name):
            lo, hi = ci[name]
            ax.plot([x, x], [100 * lo, 100 * hi], color="0.7", linewidth=1, zorder=1)
    xs = [p[1] for p in points]
    if max(xs) > 0 and min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    else:
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
    ax.set_xlabel("dollars per task")
    ax.set_ylabel("pass@1 (%)")
    ax.set_title("Quality against cost")
    ax.grid(True, alpha=0.3)
    return _png(fig)


def plot_allocation(
    allocation_by_tier: Mapping[str, Mapping[str, float]], agents: Sequence[str], *, title: str = "Allocation per tier"
) -> bytes:
    """PNG: per tier, stacked bars of the share of tasks executed by each agent."""
    tiers = list(allocation_by_tier)
    if not tiers:
        raise ReportError("allocation plot: no tiers")
    names = list(agents) + sorted({a for shares in allocation_by_tier.values() for a in shares} - set(agents))
    fig = _figure(max(6.4, 0.9 * len(tiers) + 2), 4.4)
    ax = fig.add_subplot(1, 1, 1)
    bottom = [0.0] * len(tiers)
    for k, agent in enumerate(names):
        vals = [100 * allocation_by_tier[t].get(agent, 0.0) for t in tiers]
        ax.bar(range(len(tiers)), vals, bottom=bottom, label=agent, color=f"C{k % 10}")
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(tiers)))
    ax.set_xticklabels(tiers, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("share of tasks (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


def plot_single_agents(single: Mapping[str, Any]) -> bytes:
    """PNG: pass@1 of every single agent per tier (a bar per agent, smallest first)."""
    tiers = list(single.get("tiers") or {})
    agents = list(single.get("agents") or [])
    if not tiers or not agents:
        raise ReportError("single-agent plot: no tiers or agents")
    fig = _figure(max(6.4, 0.9 * len(tiers) + 2), 4.4)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(agents)
    for k, agent in enumerate(agents):  # grouped bars: agents side by side within each tier
        ys = [100 * (single["tiers"][t].get(agent) or 0.0) for t in tiers]
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(tiers))]
        ax.bar(xs, ys, width=width, color=f"C{k % 10}", label=agent)
    ax.set_xticks(range(len(tiers)))
    ax.set_xticklabels(tiers, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("pass@1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Single agents per tier (smallest to largest)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


def running_share(flags: Sequence[bool], window: int | None = None) -> list[float]:
    """Share of true flags after each item: cumulative, or over the last ``window`` items."""
    out, hits = [], 0
    for i, hit in enumerate(flags):
        hits += bool(hit)
        if window:
            lo = max(0, i + 1 - window)
            out.append(sum(map(bool, flags[lo : i + 1])) / (i + 1 - lo))
        else:
            out.append(hits / (i + 1))
    return out


def mean_curve(curves: Sequence[Sequence[float]]) -> list[float]:
    """Point-wise mean of ``curves``, up to the shortest one."""
    n = min(len(c) for c in curves)
    return [sum(c[i] for c in curves) / len(curves) for i in range(n)]


def win_share_curve(winners: Sequence[str | None], agent: str, window: int | None = None) -> list[float]:
    """Share of wins by ``agent`` after each task: cumulative, or over the last ``window`` tasks."""
    return running_share([w == agent for w in winners], window)


def plot_smallest_wins(winners_by_ordering: Sequence[Sequence[str | None]], smallest: str, *, window: int | None = None) -> bytes:
    """PNG: the smallest agent's win share along the stream, one line per ordering and their mean."""
    curves = [win_share_curve(w, smallest, window) for w in winners_by_ordering if len(w)]
    if not curves:
        raise ReportError("smallest-agent plot: no winners given")
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for i, c in enumerate(curves):
        ax.plot(range(1, len(c) + 1), [100 * v for v in c], color="0.65", linewidth=0.8, label="ordering" if i == 0 else None)
    if len(curves) > 1:
        mean = mean_curve(curves)
        ax.plot(range(1, len(mean) + 1), [100 * v for v in mean], color="C3", linewidth=2, label="mean")
    kind = f"over the last {window} tasks" if window else "cumulative"
    ax.set_xlabel("tasks into the stream")
    ax.set_ylabel(f"wins by {smallest} (%)")
    ax.set_title(f"Smallest agent's share of wins ({kind})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def stream_curves(orderings: Sequence[Sequence[TaskResult]], agents: Sequence[str]) -> dict[str, list[float]]:
    """Along the stream (results in stream order, one list per ordering): for each agent
    the share of tasks it executed so far, and ``"pass"`` the running pass rate; each
    averaged over orderings, up to the shortest ordering."""
    groups = [list(g) for g in orderings if len(g)]
    if not groups:
        return {}
    names = list(agents) + sorted({r.agent for g in groups for r in g if r.agent} - set(agents))
    out = {a: mean_curve([running_share([r.agent == a for r in g]) for g in groups]) for a in names}
    out["pass"] = mean_curve([running_share([r.passed for r in g]) for g in groups])
    return out


def plot_stream(orderings: Sequence[Sequence[TaskResult]], agents: Sequence[str], *, title: str) -> bytes:
    """PNG: along the stream, the share of tasks won by each agent so far (solid) and the
    running pass rate (dashed), averaged over orderings."""
    curves = stream_curves(orderings, agents)
    if not curves:
        raise ReportError(f"stream plot of {title}: no results")
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for k, (name, ys) in enumerate(curves.items()):
        xs = range(1, len(ys) + 1)
        if name == "pass":
            ax.plot(xs, [100 * v for v in ys], color="black", linestyle="--", linewidth=2, label="pass rate")
        else:
            ax.plot(xs, [100 * v for v in ys], color=f"C{k % 10}", linewidth=1.5, label=f"won by {name}")
    ax.set_xlabel("tasks into the stream")
    ax.set_ylabel("% of tasks so far")
    ax.set_ylim(-2, 102)
    ax.set_title(f"{title}: wins and passes along the stream")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


# ---------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------

METRIC_NOTES = {
    "pass@1": "Share of test tasks whose single counted answer passed the grader (tests for coding, "
    "answer match for search). The interval is a percentile bootstrap over tasks (seeded); "
    "± is the standard deviation over task orderings where the stream was replayed in several orders.",
    "$ total, $/task": "Dollars spent, tokens times each agent's price, over every call a method made: bids, "
    "jury, refinement and executions (for a cascade, every agent it ran).",
    "$ vs largest": "Change in dollars against always using the largest agent.",
    "largest share": "Share of tasks executed by the largest agent (for a cascade: tasks where it ran).",
    "largest tokens": "Share of all tokens that the largest agent spent, in any phase.",
    "gap closed": "(pass@1 - largest) / (oracle - largest): how much of the distance from the largest agent "
    "to the oracle (cheapest agent that passes, known in hindsight) a method covers. Blank when the oracle "
    "does not beat the largest agent.",
    "overhead tok/wall": "Share of tokens and of wall time spent on the auction (bids, jury, refinement) "
    "rather than on executing tasks.",
}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em}
table{border-collapse:collapse;font-size:0.9em;margin:1em 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f3f3f3}
tr.highlight td{background:#fff6e0;font-weight:600}
img{max-width:100%;border:1px solid #eee;margin:0.5em 0}
dt{font-weight:600;margin-top:0.6em}dd{margin-left:1.2em}
pre{background:#f7f7f7;padding:0.8em;overflow-x:auto;font-size:0.85em}
"""


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], highlight: str | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for r in rows:
        cls = ' class="highlight"' if highlight is not None and r[0] == highlight else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(
    summary: Mapping[str, Mapping[str, Any]],
    images: Mapping[str, bytes],
    *,
    title: str = "SALE evaluation",
    highlight: str | None = None,
    notes: str = "",
    config: Mapping[str, Any] | None = None,
    tables: Sequence[tuple[str, Sequence[str], Sequence[Sequence[str]]]] = (),
) -> str:
    """A self-contained HTML page: tables, the PNGs inlined as base64, metric notes;
    ``tables`` are further (title, header, rows) shown after the per-tier table."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if notes:
        parts.append(f"<p>{html.escape(notes)}</p>")
    n_tasks = {s.get("n_tasks") for s in summary.values()}
    n_ord = {s.get("n_orderings") for s in summary.values()}
    parts.append(
        f"<p>{len(summary)} methods; test tasks per method: {', '.join(map(str, sorted(n_tasks, key=str)))}; "
        f"orderings: {', '.join(map(str, sorted(n_ord, key=str)))}.</p>"
    )
    parts.append("<h2>Methods</h2>")
    parts.append(_html_table(METHOD_COLUMNS, method_rows(summary), highlight))
    header, rows = tier_rows(summary)
    if len(header) > 1:
        parts.append("<h2>pass@1 (%) per tier</h2>")
        parts.append(_html_table(header, rows, highlight))
    for title_, header, rows in tables:
        parts.append(f"<h2>{html.escape(title_)}</h2>")
        parts.append(_html_table(header, rows, highlight))
    captions = {
        "cost_quality": "pass@1 against dollars per task (bars: bootstrap interval).",
        "allocation": "Share of tasks executed by each agent, per tier.",
        "smallest_wins": "The smallest agent's share of auction wins along the task stream.",
        "single_agents": "pass@1 of every single agent per tier, over every task of the outcome matrix.",
    }
    for key, png in images.items():
        data = base64.b64encode(png).decode("ascii")
        caption = captions.get(key) or (
            f"{key[len('stream-'):]}: share of tasks won by each agent so far and the running pass rate, "
            "along the task stream (mean over orderings)"
            if key.startswith("stream-") else key
        )
        parts.append(f"<h2>{html.escape(caption)}</h2>")
        parts.append(f'<img alt="{html.escape(key)}" src="data:image/png;base64,{data}">')
    parts.append("<h2>What the metrics mean</h2><dl>")
    for name, text in METRIC_NOTES.items():
        parts.append(f"<dt>{html.escape(name)}</dt><dd>{html.escape(text)}</dd>")
    parts.append("</dl>")
    if config:
        parts.append("<h2>Configuration</h2>")
        parts.append(f"<pre>{html.escape(json.dumps(config, indent=2, default=str))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------
# Everything at once
# ---------------------------------------------------------------------------


def _flatten(results: Mapping[str, Any]) -> list[TaskResult]:
    out: list[TaskResult] = []
    for _, value in (results or {}).items():
        for group in split_orderings(value):
            out.extend(group)
    return out


def write_report(
    out_dir: str | Path,
    summary: Mapping[str, Mapping[str, Any]],
    results: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write the summary, results, tables, plots and HTML page; return name -> path.

    ``results`` maps a method to its TaskResults (a flat list or one list per ordering).
    ``extra`` (all keys optional):

    - ``title`` (str), ``notes`` (str), ``config`` (dict, shown and saved);
    - ``sale_method`` (default "sale"): the method whose allocation per tier is
      plotted and which is highlighted; where absent, the first method whose name
      starts with "sale", else no allocation plot;
    - ``agents``: the pool from cheapest to most expensive (bar order, smallest agent);
    - ``winners``: auction winners in stream order, one list per ordering;
    - ``smallest_agent``: the agent whose win share is plotted (default: agents[0]);
    - ``window``: plot a moving share over this many tasks instead of the cumulative one;
    - ``auction_overhead`` (or ``phase_costs``), ``jury_modes``, ``reused``, and the
      outcome matrix's ``training``, ``single_agents_by_tier`` (also plotted as
      ``single_agents.png``) and ``search_rules_by_tier``: side tables (`extra_tables`).
    """
    if not summary:
        raise ReportError("the summary has no methods")
    extra = dict(extra or {})
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create the report folder {out}: {exc}") from None
    paths: dict[str, Path] = {}

    paths["summary"] = out / "summary.json"
    write_json_atomic(paths["summary"], {"methods": summary, "extra": _jsonable(extra)})

    flat = _flatten(results or {})
    if flat:
        paths["results"] = out / "results.jsonl"
        with open(paths["results"], "w", encoding="utf-8") as fh:
            for r in flat:
                fh.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")

    tables = extra_tables(extra)
    text = "\n\n".join(filter(None, [format_summary(summary), format_tables(tables)]))
    paths["table"] = out / "report.txt"
    paths["table"].write_text(text + "\n", encoding="utf-8")

    sale = extra.get("sale_method")
    if sale is None:
        sale = next((m for m in summary if m.lower().startswith("sale")), None)
    agents = list(extra.get("agents") or [])

    images: dict[str, bytes] = {"cost_quality": plot_cost_quality(summary, highlight=sale)}
    if sale in summary and summary[sale].get("allocation_by_tier"):
        images["allocation"] = plot_allocation(
            summary[sale]["allocation_by_tier"], agents, title=f"Allocation per tier ({sale})"
        )
    winners = extra.get("winners")
    if winners:
        if winners and isinstance(winners[0], str):
            winners = [winners]
        smallest = extra.get("smallest_agent") or (agents[0] if agents else None)
        if smallest is None:
            raise ReportError("smallest-agent plot: give extra['smallest_agent'] or extra['agents'] (cheapest first)")
        images["smallest_wins"] = plot_smallest_wins(winners, smallest, window=extra.get("window"))
    if (extra.get("single_agents_by_tier") or {}).get("tiers"):
        images["single_agents"] = plot_single_agents(extra["single_agents_by_tier"])
    for method, value in (results or {}).items():
        if method.lower().startswith("sale") and value:
            images[f"stream-{method}"] = plot_stream(split_orderings(value), agents, title=method)
    for key, png in images.items():
        paths[key] = out / f"{key}.png"
        paths[key].write_bytes(png)

    page = render_html(
        summary,
        images,
        title=str(extra.get("title") or "SALE evaluation"),
        highlight=sale,
        notes=str(extra.get("notes") or ""),
        config=extra.get("config"),
        tables=tables,
    )
    paths["html"] = out / "report.html"
    paths["html"].write_text(page, encoding="utf-8")
    return paths


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))
