"""A real harness end to end on `sale serve`: examples/serve_smolagents.py (smolagents'
ToolCallingAgent on the tiny llama.cpp pool), with its checks of the binding, the
auction record and the ledger.

    pip install smolagents && python benchmarks/bench_serve_harness.py

Prints:
    serve_harness_checks_passed: N/M checks
    serve_harness_wall_s: X s       server start (llama.cpp), auction and the agent's run
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "serve_smolagents.py"


def main() -> int:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - started
    lines = proc.stdout.splitlines()
    checks = [l for l in lines if l.startswith(("ok: ", "FAILED: "))]
    for line in lines:
        if line.startswith(("task ", "FAILED: ")):
            print(f"# {line}")
    if not checks:
        print(proc.stderr[-2000:], file=sys.stderr)
    print(f"serve_harness_checks_passed: {sum(c.startswith('ok: ') for c in checks)}/{len(checks)} checks")
    print(f"serve_harness_wall_s: {wall:.1f} s")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
