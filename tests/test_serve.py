"""`sale serve` over real HTTP: uvicorn on a loopback port in front of a pool of
scripted OpenAI-compatible servers whose request logs the tests read; the official
`openai` client (and plain HTTP) as the harness."""

from __future__ import annotations

import concurrent.futures
import http.client as httpclient
import json
import urllib.error
import urllib.request
import subprocess
import sys
import threading
import time
from pathlib import Path

import openai
import pytest
import uvicorn

from sale.llm.local import free_port
from sale.memory.store import SQLiteMemory
from sale.serve.app import create_app
from sale.serve.bindings import BindingStore
from sale.serve.keys import content_hash, task_key, with_plan
from sale.testing.scripted import Reply, ScriptedServer, jury_answer, prompt_text, scripted_pool_yaml

SYSTEM = "You are a coding agent. Use the tools to inspect the repository."
TOOLS = [{"type": "function", "function": {
    "name": "read_file", "description": "Read a file of the repository",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}]  # fmt: skip


class Answer:
    """A plain HTTP answer: status, headers, body text and its JSON."""

    def __init__(self, status: int, headers, text: str):
        self.status_code, self.headers, self.text = status, headers, text

    def json(self):
        return json.loads(self.text)


def http(method: str, url: str, json_body=None, content: bytes | None = None, headers: dict | None = None) -> Answer:
    data = content if content is not None else (None if json_body is None else json.dumps(json_body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return Answer(r.status, r.headers, r.read().decode())
    except urllib.error.HTTPError as e:
        return Answer(e.code, e.headers, e.read().decode())


def get(url: str) -> Answer:
    return http("GET", url)


def post(url: str, json=None, content: bytes | None = None, headers: dict | None = None) -> Answer:
    return http("POST", url, json, content, headers)


def stream_lines(port: int, body: dict) -> tuple[int, dict, list[str]]:
    """POST a streaming request; (status, headers, the non-empty lines of the event stream)."""
    conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"content-type": "application/json"})
    r = conn.getresponse()
    lines = [l.decode().rstrip("\r\n") for l in r]
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, [l for l in lines if l]


def kind(request: dict) -> str:
    """Which phase an upstream request belongs to: bid, jury or execute."""
    text = prompt_text(request)
    if "bidding for a task" in text:
        return "bid"
    if "<bid-" in text:
        return "jury"
    return "execute"


def of_kind(srv: ScriptedServer, k: str, model: str | None = None) -> list[dict]:
    return [r for r in srv.requests if kind(r) == k and (model is None or r.get("model") == model)]


class Upstream:
    """How the scripted pool answers: bids name their agent, the jury prefers the small
    agent's plan, executions call read_file once and then answer."""

    def __init__(self):
        self.bid_delay = 0.0
        self.bid_status = 200
        self.execute_status = 200

    def __call__(self, request: dict) -> Reply:
        k = kind(request)
        model = request.get("model", "")
        if k == "bid":
            if self.bid_status != 200:
                return Reply("bidder down", status=self.bid_status)
            return Reply(f"PLAN-{model.upper()}: read the file, find the bug, fix it.", delay=self.bid_delay)
        if k == "jury":
            return Reply(jury_answer(prompt_text(request), lambda bid: 5 if "PLAN-SMALL" in bid else 1))
        if self.execute_status != 200:
            return Reply("upstream broke", status=self.execute_status)
        if request["messages"][-1].get("role") == "tool":
            return Reply(f"Fixed after reading: {request['messages'][-1]['content']}")
        return Reply("", tool_calls=[{"name": "read_file", "arguments": {"path": "a.py"}}])


class LiveServer:
    """`create_app` under uvicorn on a free loopback port, in a thread."""

    def __init__(self, pool_file: Path, state: Path):
        self.app = create_app(pool_file, state)
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("sale serve did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def client(self, **kw) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0, **kw)


def pool_yaml(base_url: str, serve: dict | None = None, budget: str = "", **fields) -> str:
    text = scripted_pool_yaml(base_url, [("small", 0.1), ("big", 1.0)], max_retries=0, **fields)
    text += "serve: " + json.dumps(serve or {"keepalive_s": 0.02}) + "\n"
    return text + budget


@pytest.fixture
def upstream():
    behaviour = Upstream()
    with ScriptedServer(behaviour) as srv:
        srv.behaviour = behaviour
        yield srv


@pytest.fixture
def serve(upstream, tmp_path):
    """A started `sale serve` over the scripted pool; call it again for a fresh app on
    the same state folder (a restart)."""
    servers: list[LiveServer] = []

    def start(text: str | None = None) -> LiveServer:
        pool = tmp_path / "pool.yaml"
        pool.write_text(text or pool_yaml(upstream.base_url))
        srv = LiveServer(pool, tmp_path / "state").start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


def first_turn() -> list[dict]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Fix the bug in a.py"}]


def run_loop(client: openai.OpenAI, turns: int, **kw) -> list:
    """A harness's tool loop: call, run the tool it asks for, send the result back."""
    messages = first_turn()
    raws = []
    for _ in range(turns):
        raw = client.chat.completions.with_raw_response.create(model="sale", messages=messages, tools=TOOLS, **kw)
        raws.append(raw)
        msg = raw.parse().choices[0].message
        messages.append(msg.model_dump(exclude_none=True))
        if not msg.tool_calls:
            messages.append({"role": "user", "content": "Check the other files too."})
        for call in msg.tool_calls or []:
            messages.append({"role": "tool", "tool_call_id": call.id, "content": f"contents of {json.loads(call.function.arguments)['path']}"})
    return raws


# ----------------------------------------------------------------------------- the tool loop


def test_first_request_holds_the_auction_and_later_turns_go_to_the_winner_with_its_plan(upstream, serve, tmp_path):
    srv = serve()
    raws = run_loop(srv.client(), 3)
    first = raws[0].parse()
    assert first.model == "small"
    assert first.choices[0].message.tool_calls[0].function.name == "read_file"
    assert json.loads(first.choices[0].message.tool_calls[0].function.arguments) == {"path": "a.py"}
    assert first.choices[0].finish_reason == "tool_calls"
    # one auction: each agent bid once, the jury scored, then only the winner was called
    assert sorted(r["model"] for r in of_kind(upstream, "bid")) == ["big", "small"]
    assert of_kind(upstream, "jury")
    executes = of_kind(upstream, "execute")
    assert [r["model"] for r in executes] == ["small"] * 3
    assert of_kind(upstream, "execute", "big") == []
    for r in executes:
        assert r["messages"][0]["role"] == "system"
        assert r["messages"][0]["content"].startswith(SYSTEM)
        assert "Your plan: PLAN-SMALL: read the file" in r["messages"][0]["content"]
        assert r["tools"] == TOOLS  # passed through unchanged
    # the tool message and the assistant's tool call reach the winner unchanged
    second = executes[1]["messages"]
    assert second[-1]["role"] == "tool" and second[-1]["content"] == "contents of a.py"
    assert second[-2]["tool_calls"][0]["function"]["name"] == "read_file"
    assert second[-1]["tool_call_id"] == second[-2]["tool_calls"][0]["id"]
    assert raws[1].parse().choices[0].message.content == "Fixed after reading: contents of a.py"
    # every response says who answered; the key is the hash of the client's own messages
    key = content_hash(first_turn(), TOOLS)
    auction_ids = {r.headers["x-sale-auction"] for r in raws}
    assert len(auction_ids) == 1 and all(r.headers["x-sale-winner"] == "small" for r in raws)
    assert all(r.headers["x-sale-task"] == key for r in raws)
    # the auction record and the task's dollars by phase
    record = get(f"{srv.url}/v1/sale/auctions/{auction_ids.pop()}").json()
    assert record["winner"] == "small" and record["task_key"] == key
    task = get(f"{srv.url}/v1/sale/tasks/{key}").json()
    assert task["binding"]["winner"] == "small" and task["binding"]["requests"] == 3
    assert set(task["by_phase"]) == {"bid", "jury", "execute"}
    assert task["by_phase"]["execute"]["calls"] == 3
    assert task["dollars"] == pytest.approx(sum(p["dollars"] for p in task["by_phase"].values())) and task["dollars"] > 0
    ledger = [json.loads(l) for l in (tmp_path / "state" / "ledger.jsonl").read_text().splitlines()]
    assert [e["phase"] for e in ledger if e["phase"] == "execute" and e["task"] == key] == ["execute"] * 3
    # the harness reports the outcome: it lands in the auction memory
    r = post(f"{srv.url}/v1/sale/outcome", json={"task": key, "passed": True})
    assert r.status_code == 200 and r.json()["memory"] is True
    srv.stop()
    mem = SQLiteMemory(tmp_path / "state" / "memory.sqlite")
    assert mem.get(key).passed is True and mem.get(key).winner == "small"
    mem.close()


def test_streaming_sends_keepalives_during_the_auction_then_the_answer(upstream, serve):
    upstream.behaviour.bid_delay = 0.3
    srv = serve()
    messages = first_turn()
    status, headers, lines = stream_lines(srv.port, {"model": "sale", "messages": messages, "tools": TOOLS, "stream": True})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert "x-sale-winner" not in headers  # not known yet when the headers go out
    assert ": keep-alive" in lines
    assert any(line.startswith(": sale task=") and "winner=small" in line for line in lines)
    data = [line[len("data: "):] for line in lines if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert {c["model"] for c in chunks} == {"small"}
    calls = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0]["function"]["name"] == "read_file"
    # the official client reads the stream of a pinned turn (headers now name the winner)
    messages += [{"role": "assistant", "content": None, "tool_calls": [
        {"id": calls[0]["id"], "type": "function", "function": calls[0]["function"]}]},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "x = 1"}]  # fmt: skip
    raw = srv.client().chat.completions.with_raw_response.create(
        model="sale", messages=messages, tools=TOOLS, stream=True, stream_options={"include_usage": True})
    assert raw.headers["x-sale-winner"] == "small"
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Fixed after reading: x = 1"
    assert chunks[-1].usage.completion_tokens > 0
    assert len(of_kind(upstream, "bid")) == 2  # one auction for both turns


# ----------------------------------------------------------------------------- task keys


def test_session_header_pins_a_task_and_the_hash_separates_tasks(upstream, serve):
    srv = serve()
    client = srv.client()
    ask = lambda text, **kw: client.chat.completions.with_raw_response.create(  # noqa: E731
        model="sale", messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}], **kw)
    a = ask("Task one", extra_headers={"x-session-id": "sess-1"})
    b = ask("A different first message", extra_headers={"x-session-id": "sess-1"})
    assert a.headers["x-sale-task"] == b.headers["x-sale-task"] == "sess-1"
    assert a.headers["x-sale-auction"] == b.headers["x-sale-auction"]
    assert len(of_kind(upstream, "bid")) == 2
    c = ask("Task one")  # no header: the hash of system prompt, tools and first user message
    d = ask("Task two")
    assert c.headers["x-sale-task"].startswith("h-") and c.headers["x-sale-task"] != d.headers["x-sale-task"]
    assert len({a.headers["x-sale-auction"], c.headers["x-sale-auction"], d.headers["x-sale-auction"]}) == 3
    assert len(of_kind(upstream, "bid")) == 6
    e = ask("Task one", extra_body={"metadata": {"session_id": "meta-7"}})
    assert e.headers["x-sale-task"] == "meta-7"
    f = ask("Task one", extra_headers={"X-SALE-Task": "explicit"}, extra_body={"user": "u1"})
    assert f.headers["x-sale-task"] == "explicit"
    g = ask("Task one", extra_headers={"session_id": "codex-1"})
    assert g.headers["x-sale-task"] == "codex-1"


def test_task_key_order_and_plan_placement():
    body = {"messages": first_turn(), "tools": TOOLS, "metadata": {"session_id": "m"}, "user": "u"}
    assert task_key({"x-sale-task": "t", "x-session-id": "s"}, body) == ("t", "header:x-sale-task")
    assert task_key({"session_id": "s"}, body) == ("s", "header:session_id")
    assert task_key({}, body) == ("m", "metadata.session_id")
    assert task_key({}, {**body, "metadata": None}) == ("u", "user")
    later = [*first_turn(), {"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}]
    assert task_key({}, {"messages": later, "tools": TOOLS})[0] == content_hash(first_turn(), TOOLS)
    assert content_hash(first_turn(), []) != content_hash(first_turn(), TOOLS)
    planned = with_plan(first_turn(), "step one")
    assert planned[0]["content"] == SYSTEM + "\n\nYour plan: step one" and first_turn()[0]["content"] == SYSTEM
    assert with_plan([{"role": "user", "content": "hi"}], "p")[0] == {"role": "system", "content": "Your plan: p"}


def test_concurrent_first_requests_of_one_key_hold_one_auction(upstream, serve):
    upstream.behaviour.bid_delay = 0.3
    srv = serve()
    client = srv.client()

    def ask(i: int):
        return client.chat.completions.with_raw_response.create(
            model="sale", messages=[{"role": "user", "content": f"Same task, turn {i}"}],
            extra_headers={"X-SALE-Task": "race"})  # fmt: skip

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        raws = list(pool.map(ask, range(4)))
    assert len({r.headers["x-sale-auction"] for r in raws}) == 1
    assert sorted(r["model"] for r in of_kind(upstream, "bid")) == ["big", "small"]
    assert len(of_kind(upstream, "execute")) == 4


# ----------------------------------------------------------------------------- state


def test_a_restart_keeps_the_bindings_and_the_ttl_expires_them(upstream, serve, tmp_path):
    srv = serve()
    first = srv.client().chat.completions.with_raw_response.create(
        model="sale", messages=first_turn(), extra_headers={"X-SALE-Task": "kept"})
    srv.stop()
    srv = serve()  # a new process's app on the same state folder
    again = srv.client().chat.completions.with_raw_response.create(
        model="sale", messages=first_turn(), extra_headers={"X-SALE-Task": "kept"})
    assert again.headers["x-sale-auction"] == first.headers["x-sale-auction"]
    assert len(of_kind(upstream, "bid")) == 2
    task = get(f"{srv.url}/v1/sale/tasks/kept").json()
    assert task["by_phase"]["bid"]["calls"] == 2 and task["by_phase"]["execute"]["calls"] == 2  # both processes
    # past its time-to-live (default one day since the last request) the key holds a new auction
    srv.stop()
    store = BindingStore(tmp_path / "state" / "bindings.sqlite", ttl_s=86400)
    assert store.get("kept").requests == 2  # the uses were written when the server stopped
    store.age("kept", 86400 + 60)
    assert store.get("kept") is None and store.get("kept", live=False).winner == "small"
    store.close()
    srv = serve()
    expired = srv.client().chat.completions.with_raw_response.create(
        model="sale", messages=first_turn(), extra_headers={"X-SALE-Task": "kept"})
    assert expired.headers["x-sale-auction"] != first.headers["x-sale-auction"]
    assert len(of_kind(upstream, "bid")) == 4


def test_a_binding_whose_winner_left_the_pool_holds_a_new_auction(upstream, serve):
    srv = serve()
    first = srv.client().chat.completions.with_raw_response.create(
        model="sale", messages=first_turn(), extra_headers={"X-SALE-Task": "moved"})
    assert first.headers["x-sale-winner"] == "small"
    srv.stop()
    text = pool_yaml(upstream.base_url).replace("name: small", "name: small2").replace('model: "small"', 'model: "small2"')
    srv = serve(text)
    again = srv.client().chat.completions.with_raw_response.create(
        model="sale", messages=first_turn(), extra_headers={"X-SALE-Task": "moved"})
    assert again.headers["x-sale-auction"] != first.headers["x-sale-auction"]
    assert again.headers["x-sale-winner"] in {"small2", "big"}
    assert sorted(r["model"] for r in of_kind(upstream, "bid")) == ["big", "big", "small", "small2"]


# ----------------------------------------------------------------------------- limits and failures


def test_a_budget_refusal_is_a_402_and_the_server_keeps_serving(upstream, serve):
    srv = serve(pool_yaml(upstream.base_url, budget="budget: {per_task: 0.0000001}\n"))
    client = srv.client()
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="sale", messages=first_turn(), extra_headers={"X-SALE-Task": "poor"})
    assert err.value.status_code == 402
    assert "per-task budget" in err.value.message and err.value.body["type"] == "budget_exceeded"
    assert upstream.requests == []  # refused before anything was sent
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="big", messages=first_turn())
    assert err.value.status_code == 402
    assert get(f"{srv.url}/health").json()["status"] == "ok"
    assert get(f"{srv.url}/v1/sale/tasks/poor").status_code == 404  # no binding was made


def test_upstream_500_after_retries_and_a_dead_upstream_get_openai_errors(upstream, serve, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    text = pool_yaml(upstream.base_url).replace("max_retries: 0", "max_retries: 1")
    text = text.replace("serve:", f"  - name: ghost\n    endpoint: {{base_url: \"{dead}\", model: ghost}}\n"
                                  "    price: {input: 0.5, output: 0.5}\n    max_retries: 0\nserve:")  # fmt: skip
    srv = serve(text)
    client = srv.client()
    upstream.behaviour.execute_status = 500
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="big", messages=first_turn())
    assert err.value.status_code == 500 and err.value.body["type"] == "upstream_error"
    assert "HTTP 500" in err.value.message and "after 2 attempts" in err.value.message
    assert len(of_kind(upstream, "execute", "big")) == 2  # the client's retry happened
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="ghost", messages=first_turn())
    assert err.value.status_code == 502 and "unreachable" in err.value.message
    upstream.behaviour.execute_status = 200
    ok = client.chat.completions.create(model="sale", messages=first_turn())  # the ghost drops out of the auction
    assert ok.model == "small"


def test_an_auction_without_bids_falls_back_and_says_so(upstream, serve):
    srv = serve(pool_yaml(upstream.base_url, serve={"fallback": "big"}))
    upstream.behaviour.bid_status = 500
    raw = srv.client().chat.completions.with_raw_response.create(model="sale", messages=first_turn())
    assert raw.parse().model == "big" and raw.headers["x-sale-winner"] == "big"
    assert raw.headers["x-sale-auction"] == "" and "no bid survived" in raw.headers["x-sale-fallback"]
    assert [r["model"] for r in of_kind(upstream, "execute")] == ["big"]
    execute = of_kind(upstream, "execute")[0]
    assert "Your plan" not in json.dumps(execute["messages"])


def test_malformed_requests_get_400_naming_the_field(serve):
    srv = serve()
    chat = lambda body: post(f"{srv.url}/v1/chat/completions", json=body)  # noqa: E731
    cases = [
        ({"model": "sale"}, "messages"),
        ({"model": "sale", "messages": []}, "messages"),
        ({"model": "sale", "messages": [{"role": "user", "content": "x"}, {"role": "robot", "content": "y"}]}, "messages[1].role"),
        ({"model": "sale", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "sale", "messages": [{"role": "user", "content": "x"}], "tools": {"a": 1}}, "tools"),
        ({"model": "sale", "messages": [{"role": "user", "content": "x"}], "max_tokens": -3}, "max_tokens"),
    ]  # fmt: skip
    for body, param in cases:
        r = chat(body)
        assert r.status_code == 400, body
        err = r.json()["error"]
        assert err["param"] == param and err["message"].startswith(param + ":")
    r = post(f"{srv.url}/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = chat({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = post(f"{srv.url}/v1/sale/outcome", json={"task": "never-seen", "passed": True})
    assert r.status_code == 404
    r = post(f"{srv.url}/v1/sale/outcome", json={"task": "x", "passed": "yes"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "passed"
    assert get(f"{srv.url}/v1/sale/auctions/../../etc").status_code == 404
    assert get(f"{srv.url}/health").status_code == 200


# ----------------------------------------------------------------------------- the other endpoints


def test_models_direct_agents_and_decide_only(upstream, serve):
    srv = serve()
    client = srv.client()
    assert [m.id for m in client.models.list()] == ["sale", "small", "big"]
    direct = client.chat.completions.with_raw_response.create(model="big", messages=first_turn())
    assert direct.parse().model == "big" and direct.headers["x-sale-winner"] == "big"
    assert of_kind(upstream, "bid") == []  # a named agent is used without an auction
    decided = post(f"{srv.url}/v1/sale/auction", json={"messages": first_turn(), "tools": TOOLS},
                         headers={"X-SALE-Task": "plan-first"}).json()  # fmt: skip
    assert decided["winner"] == "small" and decided["plan"].startswith("PLAN-SMALL") and decided["new"] is True
    assert [r["model"] for r in of_kind(upstream, "execute")] == ["big"]  # nothing forwarded
    pinned = client.chat.completions.with_raw_response.create(
        model="sale", messages=first_turn(), tools=TOOLS, extra_headers={"X-SALE-Task": "plan-first"})
    assert pinned.headers["x-sale-auction"] == decided["auction"]
    assert len(of_kind(upstream, "bid")) == 2


def metric(text: str, name: str, **labels: str) -> float:
    want = {f'{k}="{v}"' for k, v in labels.items()}
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        metric_name, _, rest = head.partition("{")
        if metric_name == name and set(filter(None, rest.rstrip("}").split(","))) == want:
            return float(value)
    raise AssertionError(f"{name} {labels} not in /metrics")


def test_metrics_count_what_happened(upstream, serve):
    srv = serve()
    run_loop(srv.client(), 3)
    srv.client().chat.completions.create(model="big", messages=first_turn())
    post(f"{srv.url}/v1/chat/completions", json={"model": "sale"})
    text = get(f"{srv.url}/metrics").text
    assert metric(text, "sale_serve_auctions_total", result="won") == 1
    assert metric(text, "sale_serve_pinned_requests_total", agent="small") == 2
    assert metric(text, "sale_serve_direct_requests_total", agent="big") == 1
    assert metric(text, "sale_llm_calls_total", agent="small", phase="execute") == 3
    assert metric(text, "sale_llm_calls_total", agent="big", phase="bid") == 1
    assert metric(text, "sale_llm_tokens_total", agent="small", phase="execute", kind="output") > 0
    assert metric(text, "sale_llm_dollars_total", agent="small", phase="execute") > 0
    assert metric(text, "sale_serve_requests_total", endpoint="chat", status="200") == 4
    assert metric(text, "sale_serve_requests_total", endpoint="chat", status="400") == 1
    assert metric(text, "sale_serve_request_seconds_count", endpoint="chat") == 5


def test_sale_serve_command_starts_and_rejects_a_bad_pool(upstream, tmp_path):
    pool = tmp_path / "pool.yaml"
    pool.write_text(pool_yaml(upstream.base_url, serve={"fallback": "nobody"}))
    bad = subprocess.run([sys.executable, "-m", "sale.cli", "serve", "--pool", str(pool), "--state", str(tmp_path / "s")],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "serve.fallback: no agent named 'nobody'" in bad.stderr
    pool.write_text(pool_yaml(upstream.base_url))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sale.cli", "serve", "--pool", str(pool), "--port", str(port),
                             "--state", str(tmp_path / "s"), "--log-level", "warning"])  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = get(f"http://127.0.0.1:{port}/health").json()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "sale serve did not start"
                time.sleep(0.1)
        assert health["agents"] == ["small", "big"] and health["fallback"] == "big"
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        assert client.chat.completions.create(model="sale", messages=first_turn()).model == "small"
    finally:
        proc.terminate()
        proc.wait(30)
    assert (tmp_path / "s" / "bindings.sqlite").is_file() and (tmp_path / "s" / "ledger.jsonl").is_file()


def test_responses_api_takes_the_same_path_with_function_tools(upstream, serve):
    srv = serve()
    client = srv.client()
    tools = [{"type": "function", "name": "read_file", "description": "Read a file of the repository",
              "parameters": TOOLS[0]["function"]["parameters"]}]  # fmt: skip
    items: list = [{"role": "user", "content": "Fix the bug in a.py"}]
    raw = client.responses.with_raw_response.create(model="sale", instructions=SYSTEM, input=items, tools=tools)
    first = raw.parse()
    assert first.model == "small" and raw.headers["x-sale-winner"] == "small"
    call = next(o for o in first.output if o.type == "function_call")
    assert call.name == "read_file" and json.loads(call.arguments) == {"path": "a.py"}
    items += [{"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
              {"type": "function_call_output", "call_id": call.call_id, "output": "contents of a.py"}]  # fmt: skip
    second = client.responses.with_raw_response.create(model="sale", instructions=SYSTEM, input=items, tools=tools)
    assert second.parse().output_text == "Fixed after reading: contents of a.py"
    assert second.headers["x-sale-auction"] == raw.headers["x-sale-auction"]
    # the same key as the chat API would give: the hash of the same system prompt, tools and task
    assert raw.headers["x-sale-task"] == content_hash(first_turn(), TOOLS)
    executes = of_kind(upstream, "execute")
    assert len(of_kind(upstream, "bid")) == 2 and [r["model"] for r in executes] == ["small", "small"]
    sent = executes[1]
    assert "Your plan: PLAN-SMALL" in sent["messages"][0]["content"] and sent["tools"] == TOOLS
    assert sent["messages"][-2]["tool_calls"][0]["id"] == call.call_id
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "contents of a.py"}
    r = post(f"{srv.url}/v1/responses", json={"model": "sale", "input": "hi", "tools": [{"type": "web_search"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools[0]"
    r = post(f"{srv.url}/v1/responses", json={"model": "sale", "input": "hi", "previous_response_id": "resp_1"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "previous_response_id"


def test_a_stream_whose_upstream_fails_ends_with_an_error_event(upstream, serve):
    srv = serve()
    upstream.behaviour.execute_status = 503
    status, _headers, lines = stream_lines(srv.port, {"model": "big", "messages": first_turn(), "stream": True})
    assert status == 200  # the stream had begun
    data = [line[len("data: "):] for line in lines if line.startswith("data: ")]
    error = json.loads(data[0])["error"]
    assert error["status"] == 503 and error["type"] == "upstream_error" and "HTTP 503" in error["message"]
    assert data[-1] == "[DONE]"
    with pytest.raises(openai.APIError):
        list(srv.client().chat.completions.create(model="big", messages=first_turn(), stream=True))
    upstream.behaviour.execute_status = 200
    assert srv.client().chat.completions.create(model="big", messages=first_turn()).model == "big"


def test_an_outcome_reported_to_serve_is_evidence_for_the_memory_term(upstream, serve):
    srv = serve(pool_yaml(upstream.base_url) + "auction: {memory_value: true}\n")
    client = srv.client()
    first = client.chat.completions.with_raw_response.create(model="sale", messages=first_turn(), tools=TOOLS)
    key = first.headers["x-sale-task"]
    assert post(f"{srv.url}/v1/sale/outcome", json={"task": key, "passed": False}).status_code == 200
    again = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Fix the bug in b.py"}]
    second = client.chat.completions.with_raw_response.create(model="sale", messages=again, tools=TOOLS)
    record = get(f"{srv.url}/v1/sale/auctions/{second.headers['x-sale-auction']}").json()
    evidence = record["memory_value"]["agents"]
    assert [(n["task_id"], n["passed"]) for n in evidence["small"]["neighbours"]] == [(key, False)]
    assert evidence["big"]["neighbours"] == []  # big never executed: its prior only
    assert evidence["small"]["value"] < evidence["big"]["value"]
