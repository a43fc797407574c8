"""`sale serve` on pinned requests: its overhead per request and its throughput.

A scripted upstream (``python -m sale.testing.scripted``) and ``sale serve`` each run in
a process of their own; this process is the client (aiohttp, kept-alive connections).
The task is bound once (its first request holds the auction), then every request is a
pinned one: key lookup, plan added, the call through the pool's client, budget and
ledger, the answer rebuilt.

    python benchmarks/bench_serve.py [--pairs 400] [--requests 4000]

Prints:
    serve_overhead_ms_p50: X ms          a pinned request through sale serve minus the same
                                         request straight to the upstream, paired (median)
    serve_pinned_requests_per_s_c64: X requests/s   64 clients in flight
    serve_cpu_ms_per_pinned_request: X ms   CPU time (user + system) of the sale serve
                                         process per request of the throughput run: on a
                                         shared machine, the figure the load does not inflate
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

from sale.llm.local import free_port
from sale.testing.scripted import scripted_pool_yaml, serve_in_process

AGENTS = [("small", 0.1), ("big", 1.0)]
MESSAGES = [
    {"role": "system", "content": "You are a coding agent. Use the tools to inspect the repository."},
    {"role": "user", "content": "Fix the bug in a.py"},
]
HEADERS = {"X-SALE-Task": "bench", "Content-Type": "application/json"}


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of process ``pid`` (Linux), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    import os

    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_serve(pool: Path, state: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sale.cli", "serve", "--pool", str(pool), "--port", str(port),
         "--state", str(state), "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=1).read()
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("sale serve did not start") from None
            time.sleep(0.05)


async def timed_post(session: aiohttp.ClientSession, url: str, body: dict) -> float:
    started = time.perf_counter()
    async with session.post(url, json=body, headers=HEADERS) as r:
        await r.read()
        if r.status != 200:
            raise RuntimeError(f"{url}: HTTP {r.status}")
    return time.perf_counter() - started


async def overhead(serve_url: str, upstream_url: str, pairs: int) -> float:
    async with aiohttp.ClientSession() as session:
        served = {"model": "sale", "messages": MESSAGES, "max_tokens": 64}
        direct = {"model": "small", "messages": MESSAGES, "max_tokens": 64}
        for _ in range(20):  # warm-up (the first request holds the auction)
            await timed_post(session, serve_url + "/v1/chat/completions", served)
            await timed_post(session, upstream_url + "/chat/completions", direct)
        diffs = []
        for i in range(pairs):
            if i % 2:  # alternate which goes first
                a = await timed_post(session, upstream_url + "/chat/completions", direct)
                b = await timed_post(session, serve_url + "/v1/chat/completions", served)
            else:
                b = await timed_post(session, serve_url + "/v1/chat/completions", served)
                a = await timed_post(session, upstream_url + "/chat/completions", direct)
            diffs.append((b - a) * 1000)
    return statistics.median(diffs)


async def throughput(serve_url: str, requests: int, concurrency: int) -> float:
    body = {"model": "sale", "messages": MESSAGES, "max_tokens": 64}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        left = [requests]

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                await timed_post(session, serve_url + "/v1/chat/completions", body)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return requests / (time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=400)
    ap.add_argument("--requests", type=int, default=4000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, serve_in_process("ok", {"<bid-": "SCORE: 3\nBID 1: 3\nBID 2: 3"}) as up:
        pool = Path(tmp) / "pool.yaml"
        # enough connections to the upstream for 64 requests in flight
        pool.write_text(scripted_pool_yaml(up, AGENTS, concurrency=64, max_retries=0))
        proc, serve_url = start_serve(pool, Path(tmp) / "state")
        try:
            p50 = asyncio.run(overhead(serve_url, up, args.pairs))
            print(f"serve_overhead_ms_p50: {p50:.2f} ms")
            cpu_before = cpu_seconds(proc.pid)
            rate = asyncio.run(throughput(serve_url, args.requests, 64))
            cpu_after = cpu_seconds(proc.pid)
            print(f"serve_pinned_requests_per_s_c64: {rate:.0f} requests/s")
            if cpu_before is not None and cpu_after is not None:
                print(f"serve_cpu_ms_per_pinned_request: {(cpu_after - cpu_before) * 1000 / args.requests:.2f} ms")
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
