"""The client against the scripted server, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from sale.config import parse_pool
from sale.llm.client import (
    ChatClient,
    LLMConnectionError,
    LLMHTTPError,
    LLMResponseError,
    LLMTimeoutError,
)
from sale.llm.ledger import Ledger, ledger_tags
from sale.llm.local import free_port
from sale.llm.pool import Pool
from sale.testing.scripted import Reply, scripted_pool_yaml

import yaml

MSG = [{"role": "user", "content": "hello there"}]


def client(srv, model="m", **kw):
    kw.setdefault("backoff_s", 0.01)
    return ChatClient(srv.base_url, model, agent="agent-x", **kw)


async def test_text_usage_and_request_fields(scripted):
    scripted.script("m", Reply("a b c", usage=(11, 3)))
    c = client(scripted)
    out = await c.chat(MSG, max_tokens=7, temperature=0.3, stop=["\n"], seed=5)
    await c.close()
    assert out.text == "a b c"
    assert (out.input_tokens, out.output_tokens) == (11, 3)
    assert out.finish_reason == "stop" and out.latency_s > 0
    req = scripted.requests[-1]
    assert req["model"] == "m" and req["max_tokens"] == 7 and req["temperature"] == 0.3
    assert req["stop"] == ["\n"] and req["seed"] == 5 and req["messages"] == MSG


async def test_logprobs_with_top_k(scripted):
    scripted.script("m", Reply("one two", top_logprobs=[-0.1, -2.0, -3.0, -4.0]))
    c = client(scripted)
    out = await c.chat(MSG, top_logprobs=3)
    await c.close()
    assert scripted.requests[-1]["logprobs"] is True and scripted.requests[-1]["top_logprobs"] == 3
    assert [t.token.strip() for t in out.logprobs] == ["one", "two"]
    assert all(len(t.top) == 3 for t in out.logprobs)
    assert out.logprobs[0].top[1][1] == pytest.approx(-2.0)


async def test_tool_calls_are_returned(scripted):
    scripted.script("m", Reply("", tool_calls=[{"name": "search", "arguments": {"query": "x", "k": 2}}]))
    c = client(scripted)
    out = await c.chat(MSG, tools=[{"type": "function", "function": {"name": "search", "parameters": {}}}])
    await c.close()
    assert out.finish_reason == "tool_calls"
    assert out.tool_calls[0].name == "search"
    assert json.loads(out.tool_calls[0].arguments) == {"query": "x", "k": 2}


async def test_retries_500_then_succeeds(scripted):
    scripted.script("m", Reply(status=500), Reply(status=503), Reply("fine"))
    c = client(scripted, max_retries=3)
    out = await c.chat(MSG)
    await c.close()
    assert out.text == "fine" and len(scripted.requests) == 3


async def test_429_honours_retry_after(scripted):
    scripted.script("m", Reply(status=429, retry_after=0.4), Reply("after wait"))
    c = client(scripted, max_retries=2)
    t = time.perf_counter()
    out = await c.chat(MSG)
    elapsed = time.perf_counter() - t
    await c.close()
    assert out.text == "after wait"
    assert elapsed >= 0.35  # waited as told, not the 10 ms backoff


async def test_gives_up_with_typed_error_naming_agent_and_endpoint(scripted):
    scripted.script("m", *[Reply(status=500, text="boom")] * 3)
    c = client(scripted, max_retries=2)
    with pytest.raises(LLMHTTPError) as info:
        await c.chat(MSG)
    await c.close()
    assert info.value.status == 500
    msg = str(info.value)
    assert "agent-x" in msg and scripted.base_url in msg and "boom" in msg and "3 attempts" in msg


async def test_4xx_is_not_retried(scripted):
    scripted.script("m", Reply(status=400, text="bad request"), Reply("never"))
    c = client(scripted, max_retries=3)
    with pytest.raises(LLMHTTPError):
        await c.chat(MSG)
    await c.close()
    assert len(scripted.requests) == 1


async def test_timeout_then_retry(scripted):
    scripted.script("m", Reply(delay=2.0), Reply("quick"))
    c = client(scripted, max_retries=1, timeout_s=0.3)
    out = await c.chat(MSG)
    await c.close()
    assert out.text == "quick"


async def test_timeout_exhausted(scripted):
    scripted.script("m", Reply(hang=True), Reply(hang=True))
    c = client(scripted, max_retries=1, timeout_s=0.2)
    with pytest.raises(LLMTimeoutError, match="no answer within 0.2 s"):
        await c.chat(MSG)
    await c.close()


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"choices": []}', b'{"choices": [{"message": {"content": 5}}]}', b"[1,2]",
     b'{"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": "many"}}'],
)
async def test_malformed_body_is_a_response_error(scripted, raw):
    scripted.script("m", Reply(raw=raw))
    c = client(scripted, max_retries=0)
    with pytest.raises(LLMResponseError, match="malformed completion"):
        await c.chat(MSG)
    await c.close()


async def test_connection_refused():
    c = ChatClient(f"http://127.0.0.1:{free_port()}/v1", "m", agent="gone", max_retries=1, backoff_s=0.01)
    with pytest.raises(LLMConnectionError, match="agent 'gone'"):
        await c.chat(MSG)
    await c.close()


async def test_semaphore_limits_calls_in_flight(scripted):
    scripted.script("m", *[Reply("x", delay=0.2)] * 6)
    c = client(scripted, concurrency=2)
    t = time.perf_counter()
    await asyncio.gather(*(c.chat(MSG) for _ in range(6)))
    elapsed = time.perf_counter() - t
    await c.close()
    # 6 calls of 0.2 s, 2 at a time: at least 3 rounds
    assert elapsed >= 0.55


async def test_pool_records_every_call_in_the_ledger(scripted, tmp_path):
    cfg = parse_pool(yaml.safe_load(scripted_pool_yaml(scripted.base_url, [("cheap", 1.0), ("dear", 10.0)])))
    ledger = Ledger(tmp_path / "ledger.jsonl")
    scripted.script("cheap", Reply("a b", usage=(100, 2)))
    scripted.script("dear", Reply("c", usage=(1000, 1)), *[Reply(status=500)] * 4)
    async with Pool(cfg, ledger=ledger) as pool:
        assert pool.cheapest.name == "cheap" and pool.largest.name == "dear"
        with ledger_tags(task="t1"):
            await pool["cheap"].chat(MSG, phase="bid")
            c = await pool["dear"].chat(MSG, phase="jury")
            assert c.dollars == pytest.approx((1000 * 10 + 1 * 10) / 1e6)
            with pytest.raises(LLMHTTPError):
                pool["dear"].client.backoff_s = 0.001
                await pool["dear"].chat(MSG, phase="execute")
    ledger.close()
    by_agent = ledger.totals("agent")
    assert by_agent["cheap"].input_tokens == 100 and by_agent["dear"].calls == 2
    assert by_agent["dear"].failed == 1
    by_phase = ledger.totals("phase")
    assert set(by_phase) == {"bid", "jury", "execute"}
    assert by_phase["bid"].dollars == pytest.approx(102 / 1e6)
    # read back from the file alone
    entries = Ledger.read(tmp_path / "ledger.jsonl")
    assert len(entries) == 3 and all(e.task == "t1" for e in entries)
    from sale.llm.ledger import summarise

    assert summarise(entries).dollars == pytest.approx(ledger.totals().dollars)


async def test_api_key_from_environment(scripted, monkeypatch):
    text = f'agents:\n  - name: k\n    endpoint: {{base_url: "{scripted.base_url}", model: k, api_key_env: SALE_TEST_KEY}}\n    price: {{input: 1, output: 1}}\n'
    cfg = parse_pool(yaml.safe_load(text))
    from sale.errors import ConfigError

    monkeypatch.delenv("SALE_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="SALE_TEST_KEY is not set"):
        await Pool(cfg).start()
    monkeypatch.setenv("SALE_TEST_KEY", "sekret")
    async with Pool(cfg) as pool:
        await pool["k"].chat(MSG, phase="x")
    assert scripted.requests[-1]["model"] == "k"
    assert scripted.headers[-1].get("Authorization") == "Bearer sekret"


async def test_scripted_server_in_its_own_process_answers_and_stops():
    from sale.testing.scripted import serve_in_process

    with serve_in_process("fixed reply", rules={"juror": "SCORE: 4"}) as base_url:
        client = ChatClient(base_url, "any", max_retries=0)
        assert (await client.chat(MSG)).text == "fixed reply"
        juror = [{"role": "user", "content": "You are a juror. Score it."}]
        assert (await client.chat(juror)).text == "SCORE: 4"
    with pytest.raises(LLMConnectionError):  # the process is gone
        await client.chat(MSG)
    await client.close()
