"""Latency of the Python sandbox: how long a trivial program takes from call to result.

    python benchmarks/bench_sandbox.py [--runs 30]

Prints the median and 90th percentile wall time of ``run_python("print(1)")`` (target:
median under 100 ms), the median of a bare ``python -I -c "print(1)"`` measured in
turn with it (the floor any out-of-process run pays; on a busy machine both grow), the
median for a program that imports numpy, the time of the one-off isolation probe, and
the isolation in force.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from sale.envs.sandbox import run_python, sandbox_isolation


async def _timed(code: str, runs: int, bare: list[float] | None = None) -> list[float]:
    """Wall times (ms) of ``runs`` sandbox runs; with ``bare``, a plain interpreter run
    is timed before each, into that list."""
    times = []
    for _ in range(runs):
        if bare is not None:
            start = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-c", code, stdout=asyncio.subprocess.DEVNULL)
            await proc.wait()
            bare.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        result = await run_python(code)
        times.append((time.perf_counter() - start) * 1000)
        if not result.ok:
            raise SystemExit(f"sandbox run failed: {result.summary()}\n{result.stderr}")
    return times


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) >= 2 else values[0]


async def main(runs: int) -> None:
    start = time.perf_counter()
    isolation = await sandbox_isolation()
    probe_ms = (time.perf_counter() - start) * 1000
    bare: list[float] = []
    trivial = await _timed("print(1)", runs, bare)
    numpy = await _timed("import numpy; print(numpy.ones(3).sum())", max(5, runs // 3))
    print(f"sandbox_probe_ms: {probe_ms:.1f} ms")
    print(f"sandbox_p50_ms: {statistics.median(trivial):.1f} ms")
    print(f"sandbox_p90_ms: {_p90(trivial):.1f} ms")
    print(f"bare_python_p50_ms: {statistics.median(bare):.1f} ms")
    print(f"sandbox_numpy_p50_ms: {statistics.median(numpy):.1f} ms")
    print(f"sandbox_isolation: {isolation}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="runs of print(1)")
    asyncio.run(main(parser.parse_args().runs))
