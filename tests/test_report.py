"""The report: tables, JSON summary, PNG plots and the self-contained HTML page."""

from __future__ import annotations

import base64
import json
import re

import pytest

from sale.evaluation.metrics import TaskResult, summarise
from sale.evaluation.report import (
    ReportError,
    extra_tables,
    format_extra,
    format_summary,
    format_table,
    plot_allocation,
    plot_stream,
    stream_curves,
    win_share_curve,
    write_report,
)

PNG = b"\x89PNG\r\n\x1a\n"
AGENTS = ["small", "mid", "large"]
PRICE = {"small": 0.05, "mid": 0.16, "large": 0.36}


def stream(method, choose, passes, *, overhead=0, ordering=0, n=12):
    out = []
    for i in range(n):
        tier = 1 + i % 3
        agent = choose(i)
        tokens = 1000 + overhead
        out.append(
            TaskResult(
                task_id=f"t{i}", tier_name=f"search/{tier}", domain="search", method=method, agent=agent,
                passed=passes(i, agent), dollars=tokens * PRICE[agent] / 1e6, tokens=tokens,
                largest_used=agent == "large", largest_tokens=1000 if agent == "large" else 0,
                overhead_tokens=overhead, overhead_wall_s=0.5 if overhead else 0.0, wall_s=20.0, tier=tier,
                ordering=ordering,
            )
        )
    return out


def solved(i, agent):
    tier = 1 + i % 3
    return AGENTS.index(agent) + 1 >= tier


@pytest.fixture(scope="module")
def evaluation():
    results = {
        "single:small": stream("single:small", lambda i: "small", solved),
        "largest": stream("largest", lambda i: "large", solved),
        "oracle": stream("oracle", lambda i: AGENTS[i % 3], solved),
        "wtp": stream("wtp", lambda i: "mid", solved),
        "sale": [
            stream("sale", lambda i: AGENTS[i % 3], solved, overhead=40, ordering=0),
            stream("sale", lambda i: AGENTS[min(2, i % 3 + (i % 4 == 0))], solved, overhead=40, ordering=1),
        ],
    }
    return results, summarise(results, n_boot=200)


def test_text_tables_are_aligned_and_list_every_method(evaluation):
    _, summary = evaluation
    text = format_summary(summary)
    for name in summary:
        assert re.search(rf"^{re.escape(name)}\s", text, re.M), name
    table = text.split("\n\n")[0].splitlines()
    assert len({len(line) for line in table[:2]}) == 1  # header and rule have the same width
    assert "search/1" in text and "search/3" in text
    sale_row = next(line for line in table if line.startswith("sale "))
    assert "±" in sale_row and "%" in sale_row
    assert format_table(["a", "bb"], [["x", "1"], ["yyy", "22"]]) == "a    bb\n---  --\nx     1\nyyy  22"


def test_write_report_files(tmp_path, evaluation):
    results, summary = evaluation
    winners = [["large", "mid", "small", "small"] * 5, ["mid", "small", "large", "small"] * 5]
    extra = {"title": "Demo <run>", "agents": AGENTS, "winners": winners, "config": {"seed": 1}, "notes": "synthetic"}
    paths = write_report(tmp_path / "out", summary, results, extra)
    assert set(paths) == {"summary", "results", "table", "cost_quality", "allocation", "smallest_wins", "stream-sale", "html"}

    for key in ("cost_quality", "allocation", "smallest_wins", "stream-sale"):
        data = paths[key].read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, key

    saved = json.loads(paths["summary"].read_text())
    assert saved["methods"]["sale"]["pass_at_1"] == summary["sale"]["pass_at_1"]
    assert saved["extra"]["config"] == {"seed": 1}
    lines = paths["results"].read_text().splitlines()
    assert len(lines) == 12 * 6 and json.loads(lines[0])["task_id"] == "t0"

    page = paths["html"].read_text()
    assert page.startswith("<!DOCTYPE html>") and "Demo &lt;run&gt;" in page
    for name in summary:
        assert f"<td>{name}</td>" in page
    assert '<tr class="highlight"><td>sale</td>' in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 4 and all(base64.b64decode(i).startswith(PNG) for i in images)
    assert not re.search(r'(src|href)="(https?:)?//', page)  # no external assets
    for metric in ("pass@1", "gap closed", "largest share", "overhead"):
        assert metric in page
    assert paths["table"].read_text().strip() == format_summary(summary)


def test_stream_curves_follow_each_ordering_and_average_them():
    def r(agent, passed, ordering):
        return TaskResult(task_id=f"t{agent}{passed}", tier_name="coding/1", domain="coding", method="sale",
                          agent=agent, passed=passed, ordering=ordering)  # fmt: skip

    first = [r("small", False, 0), r("large", True, 0), r("small", True, 0)]
    second = [r("large", True, 1), r("large", False, 1), r("small", False, 1), r("small", True, 1)]
    curves = stream_curves([first, second], ["small", "large"])
    assert list(curves) == ["small", "large", "pass"]
    # up to the shortest ordering (3 tasks); shares so far, averaged over the two orderings
    assert curves["small"] == pytest.approx([(1 + 0) / 2, (1 / 2 + 0) / 2, (2 / 3 + 1 / 3) / 2])
    assert curves["large"] == pytest.approx([(0 + 1) / 2, (1 / 2 + 1) / 2, (1 / 3 + 2 / 3) / 2])
    assert curves["pass"] == pytest.approx([(0 + 1) / 2, (1 / 2 + 1 / 2) / 2, (2 / 3 + 1 / 3) / 2])
    assert stream_curves([], ["small"]) == {}
    with pytest.raises(ReportError, match="stream plot of sale: no results"):
        plot_stream([], ["small"], title="sale")


SIDE = {
    "auction_overhead": {
        "sale": {
            "bid": {"calls_per_task": 3.0, "tokens_per_task": 1200.0, "dollars_per_task": 0.0001,
                    "wall_s_per_task": 15.0, "token_share": 0.25, "dollar_share": 0.2, "wall_share": 0.3},
            "jury": {"calls_per_task": 9.0, "tokens_per_task": 4800.0, "dollars_per_task": 0.0004,
                     "skipped_calls_per_task": 7.0, "cached_tokens_per_task": 3000.0, "wall_s_per_task": 30.0, "token_share": 0.5, "dollar_share": 0.4, "wall_share": 0.6},
        }
    },
    "jury_modes": {
        "main": "per_bid", "same_provisional_winner": 0.75,
        "modes": {
            "per_bid": {"jury_calls_per_task": 9.0, "jury_tokens_per_task": 4800.0, "jury_dollars_per_task": 0.0004,
                        "jury_wall_s_per_task": 30.0, "provisional_winner_pass_rate": 0.5,
                        "provisional_winner_largest_share": 0.25},
            "batched": {"jury_calls_per_task": 3.0, "jury_tokens_per_task": 2400.0, "jury_dollars_per_task": 0.0002,
                        "jury_wall_s_per_task": 20.0, "provisional_winner_pass_rate": 0.4,
                        "provisional_winner_largest_share": 0.0},
        },
    },
    "reused": {"executions": {"sale": {"from_matrix": 40, "from_earlier_refined_execution": 3, "fresh": 7}}},
}


def test_side_tables_per_phase_jury_modes_and_reuse(tmp_path, evaluation):
    tables = {title.split(" (")[0]: rows for title, _, rows in extra_tables(SIDE)}
    assert tables["Cost per phase"] == [
        ["sale", "bid", "3.00", "-", "1200", "-", "0.0001", "15.00", "25.0", "20.0", "30.0"],
        ["sale", "jury", "9.00", "7.00", "4800", "3000", "0.0004", "30.00", "50.0", "40.0", "60.0"],
    ]
    assert tables["Jury modes on the same original bids"] == [
        ["per_bid (used)", "9.0", "4800", "0.0004", "30.00", "50.0", "25.0"],
        ["batched", "3.0", "2400", "0.0002", "20.00", "40.0", "0.0"],
    ]
    assert tables["Where each auction winner's execution came from"] == [["sale", "40", "3", "7"]]
    assert "same provisional winner on 75% of tasks" in format_extra(SIDE)
    assert extra_tables({}) == [] and format_extra({}) == ""
    # The report shows them in the text table and on the page.
    results, summary = evaluation
    paths = write_report(tmp_path, summary, results, SIDE)
    page, text = paths["html"].read_text(), paths["table"].read_text()
    for title in ("Cost per phase", "Jury modes on the same original bids", "per_bid (used)"):
        assert title in page and title in text


def test_report_without_sale_or_winners(tmp_path, evaluation):
    results, summary = evaluation
    only = {k: v for k, v in summary.items() if k != "sale"}
    paths = write_report(tmp_path, only)
    assert set(paths) == {"summary", "table", "cost_quality", "html"}
    assert "sale" not in paths["html"].read_text().split("<h2>What the metrics mean")[0].split("<h1>")[1]
    with pytest.raises(ReportError, match="no methods"):
        write_report(tmp_path, {})
    with pytest.raises(ReportError, match="smallest_agent"):
        write_report(tmp_path, summary, extra={"winners": [["a", "b"]]})


def test_win_share_curves_and_allocation_png():
    assert win_share_curve(["s", "l", "s", "s"], "s") == [1.0, 0.5, 2 / 3, 0.75]
    assert win_share_curve(["s", "l", "l", "s"], "s", window=2) == [1.0, 0.5, 0.0, 0.5]
    png = plot_allocation({"t1": {"small": 0.7, "large": 0.3}, "t2": {"large": 1.0}}, ["small", "large"])
    assert png.startswith(PNG) and len(png) > 5000
