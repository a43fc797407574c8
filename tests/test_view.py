"""`sale view` in a real headless Chromium, over run and bench folders made by real runs.

Runs are made with `sale run` against the scripted server (3 agents; refinement runs
and a refined bid wins), served by uvicorn on a free loopback port, and driven over
the DevTools protocol. Each test checks that the page shows what the folder holds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from sale.jsonl import read_jsonl
from sale.testing.browser import Browser, find_chromium
from sale.testing.scripted import Reply, ScriptedServer, jury_answer, prompt_text, scripted_pool_yaml
from sale.view.server import ViewServer

AGENTS = [("small", 0.1), ("mid", 0.3), ("big", 1.0)]
QUALITY = {"small": 2, "mid": 3, "big": 5}


def quality(text: str) -> int:
    m = re.search(r"Q(\d)", text)
    return int(m[1]) if m else 0


class Responder:
    """Bids tagged by quality (big's best), jurors that score the tag, refined bids of
    quality 5 (so the cheaper agents' refined bids win once memory has pairs), and an
    executor that searches once and answers (small answers wrong). ``gates[i]`` holds
    the execution of task i until it is set."""

    def __init__(self):
        self.gates: dict[int, threading.Event] = {}

    def __call__(self, req):
        model, text = req["model"], prompt_text(req)
        if "You are a juror" in text:
            if model == "mid" and "landmark number 5 in" in text:
                return Reply("I would rather not say.")  # no score: imputed
            return Reply(jury_answer(text, quality))
        if "You bid for tasks" in text:
            return Reply("ANALYSIS: the winner searched first.\nREFINED STRATEGY: search the landmark, open the best page, answer with the city. Q5")
        if "You are one of several agents bidding" in text:
            return Reply(f"Plan of {model}: search the landmark, read its page, answer with the city. Q{QUALITY[model]}")
        m = re.search(r"landmark number (\d+) in", text)
        gate = self.gates.get(int(m[1])) if m else None
        if gate is not None:
            gate.wait(60)
        if "Output of" in text:
            return Reply("ANSWER: Lyon" if model == "small" else "The page says Paris.\nANSWER: Paris")
        return Reply("search(landmark)")


def write_tasks(path: Path, n: int) -> Path:
    lines = [json.dumps({
        "id": f"geo/q{i}", "domain": "search", "prompt": f"Which city is landmark number {i} in?",
        "tier": 1 + i % 2, "tier_name": f"search/{1 + i % 2}", "grading": {"answers": ["Paris"]},
        "documents": [{"id": f"d{i}", "title": f"Landmark {i}", "text": f"Landmark {i} stands in Paris."}],
    }) for i in range(n)]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def run_command(srv: ScriptedServer, tmp: Path, n: int, out: Path) -> list[str]:
    pool = tmp / "pool.yaml"
    pool.write_text(scripted_pool_yaml(srv.base_url, AGENTS))
    tasks = write_tasks(tmp / "tasks.jsonl", n)
    return [sys.executable, "-m", "sale.cli", "run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out)]


@pytest.fixture(scope="module")
def browser():
    if find_chromium() is None:
        pytest.skip("no chromium on this machine (apt-get install chromium; .ci/run installs it)")
    with Browser(width=1300, height=900) as b:
        yield b


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished run of 6 tasks by `sale run` against the scripted pool."""
    tmp = tmp_path_factory.mktemp("view-run")
    out = tmp / "run"
    with ScriptedServer(Responder()) as srv:
        done = subprocess.run(run_command(srv, tmp, 6, out), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return out


def not_blank(path: Path) -> None:
    """The screenshot shows a page (kept in $SALE_VIEW_SHOTS, when set, to look at)."""
    from PIL import Image

    if os.environ.get("SALE_VIEW_SHOTS"):
        shutil.copy(path, Path(os.environ["SALE_VIEW_SHOTS"]) / path.name)

    img = Image.open(path).convert("RGB")
    hist = img.convert("L").histogram()
    inked = sum(hist[:200]) / sum(hist)  # darker than the page's light greys
    assert img.width >= 800 and img.height >= 400, img.size
    assert inked > 0.02, f"{path.name}: only {inked:.1%} of the page is drawn"
    assert len(img.getcolors(1 << 24) or []) > 20, f"{path.name}: fewer than 20 colours"


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def table_rows(b: Browser) -> list[list[str]]:
    return b.evaluate("[...document.querySelectorAll('#tasks tbody tr')].map(tr => [...tr.cells].map(td => td.innerText.trim()))")


def wait_rows(b: Browser, n: int) -> list[list[str]]:
    b.wait_for(f"document.querySelectorAll('#tasks tbody tr').length === {n}")
    return table_rows(b)


# ----------------------------------------------------------------------------- the run page


def test_run_page_lists_every_task_sorts_and_filters_by_winner(run_dir, browser, tmp_path):
    results = list(read_jsonl(run_dir / "results.jsonl"))
    summary = json.loads((run_dir / "summary.json").read_text())
    with ViewServer(run_dir) as url:
        browser.goto(url + "/")
        rows = wait_rows(browser, len(results))
        assert [r[1] for r in rows] == [r["task_id"] for r in results]
        for row, rec in zip(rows, results):
            assert row[4].split(" ")[0] == rec["winner"]
            assert row[5] == ("passed" if rec["passed"] else "failed")
        cards = browser.text(".cards")
        assert f"{100 * summary['pass_at_1']:.1f}%" in cards
        assert f"{100 * summary['largest_share']:.1f}%" in cards
        assert f"{100 * summary['auction_overhead']['dollar_share']:.1f}%" in cards
        phases = browser.text("#phases")
        for phase in summary["by_phase"]:
            assert phase in phases
        assert browser.evaluate("document.querySelectorAll('svg.cq circle').length") >= 2

        # filter by winner: exactly the tasks that agent won
        winners = {r["winner"] for r in results}
        assert {"small", "big"} <= winners, winners  # the scripted pool makes both win
        for agent in sorted(winners):
            browser.select("#filters select[name=winner]", agent)
            want = [r["task_id"] for r in results if r["winner"] == agent]
            rows = wait_rows(browser, len(want))
            assert [r[1] for r in rows] == want
            assert f"of {len(want)} matching" in browser.text("#count")
        browser.select("#filters select[name=winner]", "")
        wait_rows(browser, len(results))

        # sort by dollars, most first (a click on the header)
        browser.click("#tasks th[data-sort=dollars]")
        browser.wait_for("document.querySelector('#tasks th[data-sort=dollars]').classList.contains('desc')")
        top = max(results, key=lambda r: r["dollars"]["total"])["task_id"]
        browser.wait_for(f"document.querySelector('#tasks tbody tr td:nth-child(2)').innerText === {json.dumps(top)}")

        # typing a search narrows the table
        browser.type("#filters input[name=q]", "q3")
        assert [r[1] for r in wait_rows(browser, 1)] == ["geo/q3"]
        assert browser.errors == []
        not_blank(browser.screenshot(tmp_path / "run.png"))


def test_task_page_shows_bids_jury_matrix_winner_trajectory_and_calls(run_dir, browser, tmp_path):
    results = list(read_jsonl(run_dir / "results.jsonl"))
    rec = next(r for r in results if r["winner_kind"] == "refined")  # refinement ran and its bid won
    auction = json.loads((run_dir / rec["auction"]).read_text())
    with ViewServer(run_dir) as url:
        browser.goto(url + "/")
        wait_rows(browser, len(results))
        browser.click(f"#tasks a[href$='{rec['task_id'].replace('/', '%2F')}']")
        browser.wait_for("document.querySelector('#task-id') !== null")
        assert browser.text("#task-id") == rec["task_id"]
        assert browser.text("#winner") == auction["winner"]

        # every bid, in order, with C - V as recorded, the winners marked
        bids = browser.evaluate(
            "[...document.querySelectorAll('#bid-table tbody tr')].map(tr => ({agent: tr.dataset.agent,"
            " kind: tr.dataset.kind, marks: tr.cells[0].innerText, total: tr.querySelector('td.total').innerText}))"
        )
        assert [(b["agent"], b["kind"]) for b in bids] == [(b["agent"], b["kind"]) for b in auction["bids"]]
        for shown, bid in zip(bids, auction["bids"]):
            assert shown["total"] == f"{bid['total']:,.4f}"
            is_winner = bid["agent"] == auction["winner"] and bid["kind"] == auction["winner_kind"]
            assert ("final winner" in shown["marks"]) == is_winner
            is_prov = bid["agent"] == auction["provisional_winner"] and bid["kind"] == "original"
            assert ("provisional" in shown["marks"]) == is_prov
        texts = browser.text("#bids")
        for bid in auction["bids"]:
            assert bid["text"].splitlines()[0] in texts

        # the jury matrix: juror by bid, the score used and the digit written
        cells = browser.evaluate(
            "Object.fromEntries([...document.querySelectorAll('#jury-matrix tbody tr[data-juror]')].map(tr =>"
            " [tr.dataset.juror, [...tr.querySelectorAll('td.jc')].map(td => td.innerText.trim())]))"
        )
        weights = auction["weights"]["w_jury"]
        assert set(cells) == set(weights)
        for juror, shown in cells.items():
            for text, bid in zip(shown, auction["bids"], strict=True):
                score = bid["jury"][juror]
                assert text.startswith(f"{score['score']:.2f}")
                if score["raw"] is not None:
                    assert f"wrote {score['raw']:.0f}" in text
                else:  # no digit written: imputed, and pruned when the juror was not asked
                    assert "imputed" in text and ("pruned" in text) == (score.get("asked") is False)
                    if score.get("asked") is False:  # exact pruning skipped the call: why is shown
                        assert score["skipped"] in text
        weight_cells = browser.evaluate("[...document.querySelectorAll('#jury-matrix td.w')].map(td => td.innerText)")
        assert weight_cells == [f"{w:,.4f}" for w in weights.values()]

        # refinement: why it ran, the pairs, the past auctions it retrieved
        refine = browser.text("#refinement")
        assert auction["refinement"]["reason"] in refine
        for tid in auction["refinement"]["retrieved"]:
            assert tid in refine

        # the winner's trajectory, step by step, and its graded outcome
        steps = [json.loads(l) for l in (run_dir / rec["trajectory"]).read_text().splitlines()]
        n_steps = sum(1 for s in steps if s["type"] == "step")
        assert browser.evaluate("document.querySelectorAll('#steps > li').length") == n_steps
        outcome = browser.text("#exec-outcome")
        assert ("passed" if rec["passed"] else "failed") in outcome and rec["answer"] in outcome

        # the task's calls from the ledger
        calls = [e for e in read_jsonl(run_dir / "ledger.jsonl") if e["task"] == rec["task_id"]]
        assert browser.evaluate("document.querySelectorAll('#ledger tbody tr').length") == len(calls)
        assert browser.errors == []
        not_blank(browser.screenshot(tmp_path / "task.png"))

        # a juror whose answer held no score: its scores are imputed, and say why
        auction = json.loads((run_dir / next(r for r in results if r["task_id"] == "geo/q5")["auction"]).read_text())
        browser.goto(f"{url}/f/_/task/geo%2Fq5")
        shown = browser.evaluate("[...document.querySelectorAll('#jury-matrix tr[data-juror=mid] td.jc')].map(td => td.innerText)")
        imputed = [bid["jury"]["mid"] for bid in auction["bids"]]
        assert imputed and all(s["imputed"] for s in imputed)
        for text, score in zip(shown, imputed, strict=True):
            assert text.startswith(f"{score['score']:.2f}") and "imputed" in text and score["reason"] in text


def test_a_run_still_going_then_killed(tmp_path, browser):
    """The page follows a run as it goes (no reload), and after a SIGKILL shows what the
    folder holds and says what is missing."""
    responder = Responder()
    responder.gates = {2: threading.Event(), 4: threading.Event()}
    out = tmp_path / "run"
    out.mkdir()  # the viewer is opened on the folder before the run writes anything
    with ScriptedServer(responder) as srv:
        proc = subprocess.Popen(run_command(srv, tmp_path, 6, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with ViewServer(out) as url:
                # wait until task 2's execution is held: tasks 0-1 finished, 2 under way
                browser.goto(url + "/")
                browser.wait_for("document.querySelectorAll('#pending li').length === 1", timeout_s=60)
                assert [r[1] for r in table_rows(browser)] == ["geo/q0", "geo/q1"]
                assert "geo/q2" in browser.text("#pending")
                # summary.json is rewritten after every task: it covers the two finished
                assert browser.text("#summary").split("\n")[:2] == ["TASKS FINISHED", "2"]
                responder.gates[2].set()
                # the same page, not reloaded, grows to four tasks while task 4 is held
                browser.evaluate("window.notReloaded = true")
                browser.wait_for("document.querySelectorAll('#tasks tbody tr').length === 4 &&"
                                 " document.querySelector('#pending').innerText.includes('geo/q4')", timeout_s=60)
                rows = table_rows(browser)
                assert [r[1] for r in rows] == [f"geo/q{i}" for i in range(4)]
                assert browser.evaluate("window.notReloaded === true")
                assert browser.text("#n-tasks") == "4"

                proc.kill()  # killed mid-run: task 4 has an auction record and half a trajectory
                proc.wait()
                browser.goto(url + "/")
                assert [r[1] for r in wait_rows(browser, 4)] == [f"geo/q{i}" for i in range(4)]
                assert browser.text("#summary").split("\n")[:2] == ["TASKS FINISHED", "4"]
                browser.wait_for("document.querySelector('#pending').innerText.includes('geo/q4')")
                browser.click("#pending a")
                browser.wait_for("document.querySelector('#task-id') !== null")
                page = browser.text("main")
                assert "no result line for this task" in page
                assert "no outcome recorded yet" in page
                assert browser.evaluate("document.querySelectorAll('#bid-table tbody tr').length") >= 3
                assert browser.errors == []
                not_blank(browser.screenshot(tmp_path / "killed-task.png"))
        finally:
            for gate in responder.gates.values():
                gate.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_half_written_and_damaged_files_are_shown_and_named(run_dir, browser, tmp_path):
    """Torn results line, half-written auction record, missing trajectory: every page
    answers 200, shows what is there and says what is missing."""
    folder = tmp_path / "damaged"
    shutil.copytree(run_dir, folder)
    results = list(read_jsonl(folder / "results.jsonl"))
    lines = (folder / "results.jsonl").read_bytes().splitlines(keepends=True)
    (folder / "results.jsonl").write_bytes(b"".join(lines[:-1]) + lines[-1][:40])  # torn last line
    (folder / "summary.json").unlink()
    broken = results[1]
    (folder / broken["auction"]).write_text((folder / broken["auction"]).read_text()[:100])
    gone = results[2]
    (folder / gone["trajectory"]).unlink()
    with ViewServer(folder) as url:
        browser.goto(url + "/")
        assert len(wait_rows(browser, len(results) - 1)) == len(results) - 1
        summary = browser.text("#summary")
        assert "summary.json is not written yet" in summary and "last line of results.jsonl is incomplete" in summary
        browser.wait_for(f"document.querySelector('#pending').innerText.includes({json.dumps(results[-1]['task_id'])})")

        status, _ = get(f"{url}/f/_/task/{broken['task_id'].replace('/', '%2F')}")
        assert status == 200
        browser.goto(f"{url}/f/_/task/{broken['task_id'].replace('/', '%2F')}")
        assert "is not valid JSON" in browser.text("#auction-missing")
        assert browser.evaluate("document.querySelectorAll('#steps > li').length") >= 1  # the trajectory still shows

        browser.goto(f"{url}/f/_/task/{gone['task_id'].replace('/', '%2F')}")
        assert "trajectory file" in browser.text("#trajectory") and "is missing" in browser.text("#trajectory")
        assert browser.evaluate("document.querySelectorAll('#bid-table tbody tr').length") >= 3

        status, body = get(f"{url}/f/_/task/no-such-task")
        assert status == 404 and "has no result and no auction record" in body
        assert browser.errors == []


def test_records_of_a_newer_writer_show_their_new_fields(run_dir, browser, tmp_path):
    """An outcome class and pruned jury calls (fields this version does not write) show."""
    folder = tmp_path / "newer"
    shutil.copytree(run_dir, folder)
    results = list(read_jsonl(folder / "results.jsonl"))
    results[0]["outcome"] = "errored"
    results[0]["error"] = "endpoint unreachable"
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    path = folder / results[3]["auction"]
    auction = json.loads(path.read_text())
    first = auction["bids"][0]
    del first["jury"]["big"]
    first["pruned"] = {"big": "cannot change the winner"}
    auction["phases"]["jury"]["skipped"] = 1
    path.write_text(json.dumps(auction))
    with ViewServer(folder) as url:
        browser.goto(url + "/")
        wait_rows(browser, len(results))
        browser.select("#filters select[name=outcome]", "errored")
        rows = wait_rows(browser, 1)
        assert rows[0][1] == results[0]["task_id"] and rows[0][5] == "errored"
        browser.goto(f"{url}/f/_/task/{results[3]['task_id'].replace('/', '%2F')}")
        cell = browser.evaluate("document.querySelector('#jury-matrix tr[data-juror=big] td.jc').innerText")
        assert "pruned" in cell and "cannot change the winner" in cell
        assert "skipped" in browser.text("#auction-phases")
        assert browser.errors == []


# ----------------------------------------------------------------------------- the bench page


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    """A bench of the scripted pool of tests/test_bench.py: one ordering of SALE."""
    from test_bench import AGENTS as BENCH_AGENTS
    from test_bench import Responder as BenchResponder
    from test_bench import make_tasks

    from sale.cli import main as cli
    from sale.workloads.loaders import write_tasks as write_task_file

    tmp = tmp_path_factory.mktemp("view-bench")
    with ScriptedServer(BenchResponder()) as srv:
        pool = tmp / "pool.yaml"
        pool.write_text(scripted_pool_yaml(srv.base_url, BENCH_AGENTS, max_retries=0))
        tasks = write_task_file(tmp / "tasks.jsonl", make_tasks())
        out = tmp / "bench"
        rc = cli(["bench", "--out", str(out), "--pool", str(pool), "--tasks", str(tasks), "--no-pull",
                  "--orderings", "1", "--variants", "sale"])  # fmt: skip
    assert rc == 0
    return out


def test_bench_page_tables_and_links_to_task_pages(bench_dir, browser, tmp_path):
    summary = json.loads((bench_dir / "summary.json").read_text())
    ordering = [json.loads(l) for l in (bench_dir / "sale" / "sale" / "ordering-0.jsonl").read_text().splitlines()]
    results = [r for r in ordering if r["kind"] == "result"]
    with ViewServer(bench_dir) as url:
        browser.goto(url + "/")
        methods = browser.evaluate("[...document.querySelectorAll('#methods tbody tr')].map(tr => tr.cells[0].innerText)")
        assert methods == list(summary["methods"])
        assert "pass@1 % per tier" in browser.text("main")
        assert browser.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        not_blank(browser.screenshot(tmp_path / "bench.png"))

        browser.click("#orderings a")
        rows = browser.wait_for("[...document.querySelectorAll('#ordering-tasks tbody tr')].map(tr => tr.cells[1].innerText)")
        assert rows == [r["task_id"] for r in results]
        refined = next((r for r in results if r["winner_kind"] == "refined"), results[0])
        browser.click(f"#ordering-tasks a[href$='/task/{refined['task_id']}']")
        browser.wait_for("document.querySelector('#task-id') !== null")
        assert browser.text("#task-id") == refined["task_id"]
        assert browser.text("#winner") == refined["winner"]
        auction = next(r["auction"] for r in ordering if r["kind"] == "auction" and r["task_id"] == refined["task_id"])
        shown = browser.evaluate("[...document.querySelectorAll('#bid-table tbody tr')].map(tr => tr.dataset.agent + '/' + tr.dataset.kind)")
        assert shown == [f"{b['agent']}/{b['kind']}" for b in auction["bids"]]
        assert browser.evaluate("document.querySelectorAll('#steps > li').length") >= 1
        assert "Done." in browser.text("#steps")
        assert browser.evaluate("document.querySelectorAll('#matrix-row tbody tr').length") == 3
        assert browser.errors == []
        not_blank(browser.screenshot(tmp_path / "bench-task.png"))


# ----------------------------------------------------------------------------- serving


def test_sale_view_command_serves_and_refuses_a_missing_folder(run_dir, tmp_path, capsys):
    from sale.cli import main as cli

    assert cli(["view", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no such folder" in err and len(err.splitlines()) == 1

    proc = subprocess.Popen([sys.executable, "-m", "sale.cli", "view", str(run_dir), "--port", "0"],
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = proc.stderr.readline()
        m = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
        assert m, line
        status, body = get(m[1] + "/")
        assert status == 200 and "geo/q0" in body
        status, _ = get(m[1] + "/static/view.css")
        assert status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_mounted_under_a_prefix(run_dir):
    """`sale serve` mounts the views at /ui: every link and fetch carries the prefix."""
    from fastapi import FastAPI

    from sale.view import create_app

    parent = FastAPI()
    parent.mount("/ui", create_app(run_dir))
    with ViewServer(run_dir, app=parent) as url:
        status, body = get(url + "/ui/")
        assert status == 200
        hrefs = re.findall(r'(?:href|src)="([^"#]+)"', body)
        assert hrefs and all(h.startswith("/ui/") for h in hrefs), hrefs
        assert get(url + "/ui/static/run.js")[0] == 200
        status, body = get(url + "/ui/f/_/api/tasks?winner=big")
        data = json.loads(body)
        assert status == 200 and data["total"] == sum(r["winner"] == "big" for r in read_jsonl(run_dir / "results.jsonl"))
        status, body = get(url + "/ui/f/_/task/geo%2Fq1")
        assert status == 200 and "Jury" in body
        assert get(url + "/f/_/task/geo%2Fq1")[0] == 404  # nothing outside the mount


def test_a_demo_folder_lists_its_runs_and_report(tmp_path, browser):
    """`sale demo` writes sale/, largest/ and report/ with one ledger beside them."""
    import asyncio

    import yaml
    from test_demo import Responder as DemoResponder

    from sale.config import parse_pool
    from sale.demo import run_demo
    from sale.llm.ledger import Ledger
    from sale.llm.pool import Pool
    from sale.workloads.standard import demo_workload

    demo = tmp_path / "demo"
    with ScriptedServer(DemoResponder()) as srv:
        cfg = parse_pool(yaml.safe_load(scripted_pool_yaml(srv.base_url, [("small", 0.1), ("mid", 0.2), ("big", 0.4)])))

        async def go():
            async with Pool(cfg, ledger=Ledger(demo / "ledger.jsonl")) as pool:
                await run_demo(pool, demo, say=lambda _: None)
            pool.ledger.close()

        asyncio.run(go())
    tasks, _ = demo_workload()
    with ViewServer(demo) as url:
        browser.goto(url + "/")
        names = browser.evaluate("[...document.querySelectorAll('table.grid tbody tr td:first-child a')].map(a => a.innerText)")
        assert names == ["largest", "report", "sale"]
        assert browser.evaluate("[...document.images].length >= 1 && [...document.images].every(i => i.naturalWidth > 0)")
        for name in ("sale", "largest"):
            browser.goto(f"{url}/f/{name}/")
            assert len(wait_rows(browser, len(tasks))) == len(tasks)
        reused = next(r for r in read_jsonl(demo / "largest" / "results.jsonl") if r.get("reused"))
        browser.goto(f"{url}/f/largest/task/{urllib.parse.quote(reused['task_id'], safe='')}")
        assert browser.evaluate("document.querySelectorAll('#steps > li').length") >= 1  # ../sale/trajectories/...
        browser.goto(f"{url}/f/sale/task/{urllib.parse.quote(tasks[0].id, safe='')}")
        assert "shares with the other run" in browser.text("#calls")
        assert browser.evaluate("document.querySelectorAll('#ledger tbody tr').length") >= 1
        browser.goto(f"{url}/f/report/")
        assert browser.evaluate("[...document.querySelectorAll('#methods tbody tr')].map(tr => tr.cells[0].innerText)") == ["sale", "largest"]
        assert browser.errors == []
        not_blank(browser.screenshot(tmp_path / "demo-report.png"))


def test_garbage_in_a_folder_never_makes_a_server_error(tmp_path):
    """Fields of the wrong type, lines that are not records, a summary that is a list,
    an auction record of the wrong shape, a path leading out of the folder."""
    folder = tmp_path / "odd"
    (folder / "auctions").mkdir(parents=True)
    (folder / "results.jsonl").write_text("\n".join([
        json.dumps({"task_id": "a", "dollars": "x", "tokens": None, "passed": "yes", "winner": 3, "tier_name": 7}),
        "not json", "[1, 2]", json.dumps({"task_id": 5}),
        json.dumps({"task_id": "b", "auction": "auctions/b.json", "trajectory": "../../../etc/passwd",
                    "dollars": {"total": 0.5, "bid": "?"}, "passed": False}),
    ]) + "\n")  # fmt: skip
    (folder / "auctions" / "b.json").write_text(json.dumps({
        "bids": ["oops", {"agent": "x", "jury": {"j": 3, "k": {"score": None, "imputed": True}}, "total": "low"}],
        "weights": [1], "refinement": 5, "dropped": {"a": 1}, "phases": [], "winner": None,
    }))  # fmt: skip
    (folder / "summary.json").write_text("[1, 2]")
    (folder / "ledger.jsonl").write_text('{"task": "b", "dollars": "many"}\nnonsense\n{"agent": "x"}\n')
    with ViewServer(folder) as url:
        for path in ("/", "/f/_/", "/f/_/task/a", "/f/_/task/b", "/f/_/summary", "/f/_/api/state",
                     "/f/_/api/tasks?sort=dollars&desc=1", "/f/_/api/tasks?sort=winner&min_dollars=abc&limit=x",
                     "/f/_/api/tasks?sort=tier_name", "/f/nope/", "/f/_/plot/cost_quality.png", "/f/_/task/"):
            status, body = get(url + path)
            assert status in (200, 404), (path, status, body[:300])
        status, body = get(url + "/f/_/task/b")
        assert status == 200 and "lies outside the folder" in body and "root:x:0" not in body
        assert "summary.json is not a JSON object" in get(url + "/")[1]
