"""A real agent harness on `sale serve`: smolagents' ToolCallingAgent, its model an
`OpenAIServerModel` pointed at the server, on one task.

    pip install -e '.[serve]' smolagents
    python examples/serve_smolagents.py [--pool POOL] [--state DIR]

The default pool is the shipped ``tiny`` pool (a 2.8 MB random model on llama.cpp:
fast, and its answers are gibberish, so the agent runs out of steps rather than
solving anything). With a real pool the same script solves the task. Afterwards the
script checks what the server recorded: the task's binding (its winner), the auction
record, and the ledger's calls by phase (bid and jury from the auction, execute from
the harness's requests, all tagged with the task key). It prints one line per check
and exits 1 if one fails.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

TASK_KEY = "smolagents-example-1"


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def start_server(pool: str, state: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sale.cli", "serve", "--pool", pool, "--state", str(state), "--port", str(port),
         "--log-level", "warning"],
    )  # fmt: skip
    deadline = time.monotonic() + 300  # a first run may fetch the model
    while True:
        try:
            get(f"http://127.0.0.1:{port}/health")
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("sale serve did not start")
            time.sleep(0.2)


def run_agent(base_url: str) -> str:
    from smolagents import OpenAIServerModel, ToolCallingAgent, tool

    @tool
    def multiply(a: int, b: int) -> int:
        """Multiply two integers.

        Args:
            a: the first factor
            b: the second factor
        """
        return a * b

    model = OpenAIServerModel(
        model_id="sale",  # the auction; a pool agent's name would skip it
        api_base=base_url,
        api_key="unused",
        client_kwargs={"default_headers": {"X-SALE-Task": TASK_KEY}, "max_retries": 0},
    )
    agent = ToolCallingAgent(tools=[multiply], model=model, max_steps=2, verbosity_level=0)
    return str(agent.run("What is 17 times 23? Use the multiply tool."))


def main() -> int:
    from sale.config import default_pool_path
    from sale.llm.local import free_port

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", default=str(default_pool_path("tiny")))
    ap.add_argument("--state", help="state folder (default: a temporary one)")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    state = Path(args.state or tmp.name)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(args.pool, state, port)
    try:
        answer = run_agent(url + "/v1")
        print(f"agent answer: {answer[:120]!r}")
        task = get(f"{url}/v1/sale/tasks/{TASK_KEY}")
        binding = task["binding"]
        pool_agents = get(f"{url}/health")["agents"]
        record = get(f"{url}/v1/sale/auctions/{binding['auction']}") if binding["auction"] else {}
    finally:
        proc.terminate()
        proc.wait(60)
    ledger = [json.loads(line) for line in (state / "ledger.jsonl").read_text().splitlines()]
    mine = [e for e in ledger if e["task"] == TASK_KEY]
    checks = {
        "the task is bound to a pool agent": binding["winner"] in pool_agents,
        "the auction record names the same winner": record.get("winner") == binding["winner"],
        "every harness request went to the winner": binding["requests"] >= 1
        and {e["agent"] for e in mine if e["phase"] == "execute"} == {binding["winner"]},
        "the ledger holds the auction's bids and jury": {"bid", "jury"} <= {e["phase"] for e in mine},
        "the server's dollars by phase match the ledger file": abs(
            task["dollars"] - sum(e["dollars"] for e in mine)) < 1e-12,  # fmt: skip
    }
    calls = ", ".join(f"{phase} {t['calls']}" for phase, t in task["by_phase"].items())
    print(f"task {TASK_KEY}: winner {binding['winner']}, {binding['requests']} requests, "
          f"${task['dollars']:.8f} (calls: {calls})")  # fmt: skip
    for name, ok in checks.items():
        print(f"{'ok' if ok else 'FAILED'}: {name}")
    tmp.cleanup()
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
