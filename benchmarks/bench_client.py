"""Client overhead and local throughput.

    python benchmarks/bench_client.py [--calls 2000] [--models smollm2-135m,...] [--skip-local]

Prints:
  client_calls_per_s_c1     completed calls/s against the scripted server (no delay), 1 in flight
  client_calls_per_s_c64    the same with 64 in flight
  local_tok_per_s_<model>_client / _direct   generated tokens/s through the project's path
                            (llama.cpp server process + HTTP client) and llama.cpp called directly
  local_overhead_pct        worst slowdown of the project's path relative to direct, over models
The scripted server runs in its own process so that it does not share this one's GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from sale.llm import models
from sale.llm.client import ChatClient
from sale.llm.local import LlamaServer, free_port
from sale.testing.scripted import serve_in_process

MSG = [{"role": "user", "content": "ping"}]


async def calls_per_s(base_url: str, concurrency: int, calls: int) -> float:
    client = ChatClient(base_url, "bench", concurrency=concurrency)
    await client.chat(MSG)  # connect
    t = time.perf_counter()
    queue = iter(range(calls))

    async def worker() -> None:
        for _ in queue:
            await client.chat(MSG)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t
    await client.close()
    return calls / elapsed


def client_bench(calls: int) -> None:
    with serve_in_process() as base:
        print(f"client_calls_per_s_c1: {asyncio.run(calls_per_s(base, 1, calls // 4)):.0f} calls/s")
        print(f"client_calls_per_s_c64: {asyncio.run(calls_per_s(base, 64, calls)):.0f} calls/s")


BODY = {
    "messages": [{"role": "user", "content": "Write a Python function that checks whether a number is prime, with comments."}],
    "max_tokens": 96,
    "temperature": 0.0,
    "ignore_eos": True,
}


def _direct_server(path, threads: int):
    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = str(path)
    p.n_ctx = 1024
    p.n_parallel = 1
    p.cpuparams.n_threads = threads
    p.cpuparams_batch.n_threads = threads
    p.port = free_port()
    return xllamacpp.Server(p)


async def paired_tok_per_s(path, threads: int, reps: int) -> tuple[float, float]:
    """Generated tokens/s of llama.cpp called in-process and of the project's path (server
    process + HTTP client), measured alternately, request by request, so that drift in the
    machine's speed (a shared 2-core VM varies by +-15 % from one second to the next) falls
    on both sides alike. Returns the medians (direct, client)."""
    direct_server = _direct_server(path, threads)
    direct, via = [], []
    with LlamaServer(path, ctx=1024, parallel=1, threads=threads, name="bench") as srv:
        client = ChatClient(srv.base_url, "bench")
        for i in range(reps + 1):
            t = time.perf_counter()
            out = direct_server.handle_chat_completions(dict(BODY))
            dt = time.perf_counter() - t
            c = await client.chat(BODY["messages"], max_tokens=96, temperature=0.0, extra={"ignore_eos": True})
            if i:  # the first pair is the warm-up
                direct.append(out["usage"]["completion_tokens"] / dt)
                via.append(c.output_tokens / c.latency_s)
        await client.close()
    del direct_server
    return statistics.median(direct), statistics.median(via)


def local_bench(names: list[str], reps: int) -> None:
    import os

    threads = os.cpu_count() or 1
    worst = None
    for name in names:
        if not models.is_present(name):
            print(f"# {name} not pulled; skipped (sale models pull {name})", file=sys.stderr)
            continue
        path = models.model_path(name)
        direct, via = asyncio.run(paired_tok_per_s(path, threads, reps))
        print(f"local_tok_per_s_{name}_direct: {direct:.1f} tok/s")
        print(f"local_tok_per_s_{name}_client: {via:.1f} tok/s")
        overhead = 100.0 * (direct - via) / direct
        worst = overhead if worst is None else max(worst, overhead)
    if worst is not None:
        print(f"local_overhead_pct: {worst:.1f} %")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--models", default="smollm2-135m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--skip-local", action="store_true")
    args = ap.parse_args()
    client_bench(args.calls)
    if not args.skip_local:
        local_bench(args.models.split(","), args.reps)


if __name__ == "__main__":
    main()
