"""`sale serve`'s viewer at /ui: the server under uvicorn on loopback over scripted
upstream servers, chat requests for two task keys, then /ui over HTTP and in headless
Chromium (its live task list, a task's auction record and ledger calls)."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from sale.testing.browser import Browser, find_chromium
from test_serve import TOOLS, LiveServer, Upstream, get, pool_yaml, post  # the server's own helpers
from test_view import not_blank
from sale.testing.scripted import ScriptedServer

SYSTEM = "You are a coding agent. Use the tools to inspect the repository."


def chat(srv: LiveServer, key: str, text: str):
    """One harness request for the task ``key`` (the x-sale-task header)."""
    return srv.client().chat.completions.with_raw_response.create(
        model="sale", messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
        tools=TOOLS, extra_headers={"x-sale-task": key},
    )  # fmt: skip


@pytest.fixture
def served(tmp_path):
    behaviour = Upstream()
    with ScriptedServer(behaviour) as up:
        pool = tmp_path / "pool.yaml"
        pool.write_text(pool_yaml(up.base_url))
        srv = LiveServer(pool, tmp_path / "state").start()
        try:
            yield srv, tmp_path / "state"
        finally:
            srv.stop()


def ledger(state) -> list[dict]:
    return [json.loads(line) for line in (state / "ledger.jsonl").read_text().splitlines()]


def test_ui_lists_served_tasks_with_winners_dollars_and_outcome_over_http(served):
    srv, state = served
    a = chat(srv, "task-alpha", "Fix the bug in a.py")
    b = chat(srv, "task-beta", "Add a test for b.py")
    chat(srv, "task-alpha", "Now run the tests")
    assert post(f"{srv.url}/v1/sale/outcome", json={"task": "task-beta", "passed": False}).status_code == 200
    page = get(f"{srv.url}/ui/")
    assert page.status_code == 200 and "Served tasks" in page.text and "/static/served.js" in page.text
    data = get(f"{srv.url}/ui/f/_/api/tasks").json()
    rows = {r["key"]: r for r in data["rows"]}
    assert set(rows) == {"task-alpha", "task-beta"}
    for key, raw in (("task-alpha", a), ("task-beta", b)):
        assert rows[key]["winner"] == raw.headers["x-sale-winner"] == "small"
        assert rows[key]["auction"] == raw.headers["x-sale-auction"]
        # dollars by phase: the sums of the ledger's lines for this key, nothing else
        want: dict[str, float] = {}
        for e in ledger(state):
            if e["task"] == key:
                want[e["phase"]] = want.get(e["phase"], 0.0) + e["dollars"]
        assert set(want) == {"bid", "jury", "execute"}
        assert rows[key]["phases"] == pytest.approx(want)
        assert rows[key]["dollars"] == pytest.approx(sum(want.values()))
    assert rows["task-alpha"]["calls"] == sum(e["task"] == "task-alpha" for e in ledger(state))
    assert rows["task-beta"]["outcome"] == "failed" and rows["task-alpha"]["outcome"] == "absent"
    # the task page: its binding, the auction record's bids and jury, its ledger calls
    task = get(f"{srv.url}/ui/f/_/task/task-alpha")
    assert task.status_code == 200
    record = get(f"{srv.url}/v1/sale/auctions/{a.headers['x-sale-auction']}").json()
    assert re.search(r'id="winner">small<', task.text)
    for bid in record["bids"]:
        assert bid["text"] in task.text
    assert 'id="jury-matrix"' in task.text and 'id="bid-table"' in task.text
    assert task.text.count('data-juror="') == len({j for bid in record["bids"] for j in (bid.get("jury") or {})}) > 0
    n_calls = sum(e["task"] == "task-alpha" for e in ledger(state))
    assert f"Calls in the ledger ({n_calls})" in task.text
    assert get(f"{srv.url}/ui/f/_/task/never-seen").status_code == 404


def test_the_viewer_reads_bindings_read_only_while_serving_and_after(served):
    srv, state = served
    chat(srv, "task-alpha", "Fix the bug in a.py")
    from sale.view.served import ServeFolder

    folder = ServeFolder(state, state, "_")
    assert [b["key"] for b in folder.bindings()] == ["task-alpha"]
    db = folder.connect()  # the connection the viewer reads through refuses writes
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        db.execute("UPDATE bindings SET winner = 'x'")
    db.close()
    # the server keeps binding new keys while the viewer reads
    assert chat(srv, "task-gamma", "Read c.py").headers["x-sale-winner"] == "small"
    assert sorted(b["key"] for b in folder.bindings()) == ["task-alpha", "task-gamma"]
    srv.stop()  # a stopped server's folder still reads
    rows = {b["key"]: b for b in folder.bindings()}
    assert set(rows) == {"task-alpha", "task-gamma"} and folder.problems() == []
    assert rows["task-alpha"]["requests"] == 1 and rows["task-alpha"]["winner"] == "small"


@pytest.fixture(scope="module")
def browser():
    if find_chromium() is None:
        pytest.skip("no chromium on this machine (apt-get install chromium; .ci/run installs it)")
    with Browser(width=1300, height=900) as b:
        yield b


def test_ui_in_chromium_shows_both_tasks_a_third_without_reload_and_a_task_page(served, browser, tmp_path):
    srv, state = served
    a = chat(srv, "task-alpha", "Fix the bug in a.py")
    chat(srv, "task-beta", "Add a test for b.py")
    browser.goto(f"{srv.url}/ui/")
    browser.wait_for("document.querySelectorAll('#tasks tbody tr').length === 2")
    rows = browser.evaluate("[...document.querySelectorAll('#tasks tbody tr')].map(tr => [tr.dataset.key, tr.querySelector('td.winner').innerText])")
    assert sorted(rows) == [["task-alpha", "small"], ["task-beta", "small"]]
    browser.evaluate("window.__same_page = true")
    chat(srv, "task-gamma", "Read c.py")
    browser.wait_for("document.querySelectorAll('#tasks tbody tr').length === 3")
    assert browser.evaluate("window.__same_page === true")  # no reload: the page polled
    keys = browser.evaluate("[...document.querySelectorAll('#tasks tbody tr')].map(tr => tr.dataset.key)")
    assert sorted(keys) == ["task-alpha", "task-beta", "task-gamma"]
    not_blank(browser.screenshot(tmp_path / "served.png"))
    # a task page: its bids and the jury matrix from the auction record
    browser.click("#tasks tr[data-key='task-alpha'] a")
    browser.wait_for("document.querySelector('#task-id') !== null")
    assert browser.text("#task-id") == "task-alpha"
    assert browser.text("#winner") == "small"
    record = get(f"{srv.url}/v1/sale/auctions/{a.headers['x-sale-auction']}").json()
    agents = browser.evaluate("[...document.querySelectorAll('#bid-table tbody tr')].map(tr => tr.dataset.agent)")
    assert sorted(agents) == sorted(b["agent"] for b in record["bids"])
    assert browser.evaluate("document.querySelectorAll('#jury-matrix tbody tr[data-juror]').length") > 0
    assert browser.evaluate("document.querySelectorAll('#ledger tbody tr').length") == sum(
        e["task"] == "task-alpha" for e in ledger(state))
    assert browser.errors == []
    not_blank(browser.screenshot(tmp_path / "served-task.png"))
