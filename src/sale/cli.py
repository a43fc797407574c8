"""The command line: ``sale models``, ``sale smoke`` and the commands of later stages.

Errors the project raises on purpose (bad config, missing model, failing endpoint) are
printed as one line, ``error: ...``, with exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from sale.errors import SaleError


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- models


def cmd_models_list(args: argparse.Namespace) -> int:
    from sale.llm import models

    print(f"model cache: {models.cache_dir()}")
    print(f"{'name':<22}{'size':>10}  {'present':<8} description")
    for m in models.CATALOGUE.values():
        present = "yes" if models.is_present(m.name) else "no"
        print(f"{m.name:<22}{m.size / 1e6:>8.1f}MB  {present:<8} {m.description}")
    return 0


def cmd_models_pull(args: argparse.Namespace) -> int:
    from sale.llm import models

    if args.source and len(args.names) != 1:
        raise SaleError("--from takes one model name")
    for name in args.names:
        t = time.perf_counter()
        path = models.pull(name, source=args.source, progress=_say)
        _say(f"{name}: ready at {path} (sha256 verified, {time.perf_counter() - t:.1f} s)")
    return 0


# ----------------------------------------------------------------------------- smoke


def cmd_smoke(args: argparse.Namespace) -> int:
    """Start the pool, ask every agent one question, print answers and the ledger."""
    from sale.config import default_pool_path
    from sale.llm.pool import Pool

    pool_path = args.pool or default_pool_path()
    if args.pull:
        _pull_missing(pool_path)

    async def go() -> None:
        pool = Pool.from_file(pool_path)
        _say(f"starting {len(pool)} agents from {pool_path} ...")
        async with pool:
            for agent in pool.by_price():
                c = await agent.chat([{"role": "user", "content": args.prompt}], phase="smoke", max_tokens=64, top_logprobs=5)
                print(f"[{agent.name}] {c.text.strip()[:300]!r}")
                print(f"    tokens in/out {c.input_tokens}/{c.output_tokens}, ${c.dollars:.8f}, {c.latency_s:.2f} s")
        for name, t in pool.ledger.totals("agent").items():
            print(f"ledger {name}: {t.calls} calls, {t.tokens} tokens, ${t.dollars:.8f}")

    asyncio.run(go())
    return 0


# ----------------------------------------------------------------------------- run


def _pull_missing(pool_path) -> None:
    """Fetch the catalogue models a pool file names, when they are not in the cache."""
    from sale.config import load_pool_config
    from sale.llm import models

    for a in load_pool_config(pool_path).agents:
        if a.model in models.CATALOGUE and not models.is_present(a.model):
            models.pull(a.model, progress=_say)


def cmd_run(args: argparse.Namespace) -> int:
    """Stream tasks through the auction and the winner's execution into --out."""
    from pathlib import Path

    from sale.config import default_pool_path, load_pool_config
    from sale.llm.ledger import Ledger
    from sale.llm.pool import Pool
    from sale.progress import Progress
    from sale.run import open_runner, progress_printer
    from sale.workloads.loaders import load_tasks

    pool_path = args.pool or default_pool_path()
    pool_config = load_pool_config(pool_path)  # a bad pool file stops the run before anything is written
    if args.constrain:
        pool_config.execution["constrain"] = args.constrain
    tasks = [t for spec in args.tasks for t in load_tasks(spec, limit=args.limit)]
    out = Path(args.out)
    if args.pull:
        _pull_missing(pool_path)

    async def go() -> dict:
        pool = Pool(pool_config, ledger=Ledger(out / "ledger.jsonl"), source=str(pool_path))
        _say(f"{len(tasks)} tasks, pool {pool_path} ({', '.join(pool.names)}), writing {out}")
        async with pool:
            from sale.workloads.loaders import parse_spec

            task_dirs = {parse_spec(spec)[1].resolve().parent for spec in args.tasks}
            runner = open_runner(pool, out, tasks, data_dir=args.data_dir, documents=args.documents, hide_paths=task_dirs)
            done = len(runner.finished())
            if done:
                _say(f"resuming: {done} task(s) already finished")
            progress = Progress(len(tasks), "run")
            try:
                return await runner.run(tasks, on_task=progress_printer(progress))
            finally:
                progress.close()
                pool.ledger.close()

    summary = asyncio.run(go())
    _print_summary(summary)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The demo workload through the auction and through the largest agent alone."""
    from pathlib import Path

    from sale.config import default_pool_path
    from sale.demo import demo_pool, run_demo

    pool_path = args.pool or default_pool_path()
    out = Path(args.out)
    if args.pull:
        _pull_missing(pool_path)

    async def go() -> None:
        pool = demo_pool(pool_path, out)
        _say(f"starting the pool {pool_path} (llama.cpp servers for local models) ...")
        async with pool:
            await run_demo(pool, out, say=print)
        pool.ledger.close()

    t = time.perf_counter()
    asyncio.run(go())
    print(f"demo finished in {time.perf_counter() - t:.0f} s; everything is in {out}")
    return 0


def _print_summary(summary: dict) -> None:
    p = summary["pass_at_1"]
    print(f"tasks {summary['tasks']}  pass@1 {p:.1%}" if p is not None else "no tasks")
    print(f"dollars {summary['dollars']:.6f}  largest agent ({summary['largest_agent']}) share {summary['largest_share']:.0%}")
    print("wins: " + ", ".join(f"{a} {s:.0%}" for a, s in summary["win_share"].items()))
    o = summary["auction_overhead"]
    print(f"auction overhead: {o['token_share']:.0%} of tokens, {o['dollar_share']:.0%} of dollars, {o['wall_share']:.0%} of wall time")


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="sale", description="Strategy auctions for pools of LLM agents.")
    sub = ap.add_subparsers(dest="command", required=True)

    m = sub.add_parser("models", help="list or pull local GGUF models")
    msub = m.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list", help="show the catalogue and what is present").set_defaults(func=cmd_models_list)
    p = msub.add_parser("pull", help="fetch models into the cache, verified by sha256")
    p.add_argument("names", nargs="+")
    p.add_argument("--from", dest="source", help="copy from this local GGUF file instead of downloading")
    p.set_defaults(func=cmd_models_pull)

    s = sub.add_parser("smoke", help="ask every agent of a pool one question")
    s.add_argument("--pool", help="pool file (default: the local ladder)")
    s.add_argument("--prompt", default="In one sentence: what is a binary search?")
    s.add_argument("--no-pull", dest="pull", action="store_false", help="do not fetch missing models")
    s.set_defaults(func=cmd_smoke)

    r = sub.add_parser("run", help="stream tasks through the auction and the winner's execution")
    r.add_argument("--pool", help="pool file (default: the local ladder)")
    r.add_argument("--tasks", nargs="+", required=True, help="FORMAT:PATH or a project JSONL file (several allowed)")
    r.add_argument("--out", required=True, help="run directory (a rerun resumes it)")
    r.add_argument("--data-dir", help="benchmark data folder: search tasks use its default document collection")
    r.add_argument("--documents", nargs="*", default=[], help="JSONL files of {id, title, text} for search tasks")
    r.add_argument("--limit", type=int, help="at most this many tasks from each source")
    r.add_argument("--no-pull", dest="pull", action="store_false", help="do not fetch missing models")
    r.add_argument("--constrain", choices=("auto", "grammar", "json_schema", "off"),
                   help="constrain each executor step to the actions (default: the pool file's execution.constrain, else auto)")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="the shipped demo workload: auction vs the largest agent alone")
    d.add_argument("--pool", help="pool file (default: the local ladder)")
    d.add_argument("--out", default="sale-demo", help="output folder (default: ./sale-demo; a rerun resumes it)")
    d.add_argument("--no-pull", dest="pull", action="store_false", help="do not fetch missing models")
    d.set_defaults(func=cmd_demo)

    from sale.evaluation import bench

    b = sub.add_parser("bench", help="evaluate SALE, its ablations and the baselines on a workload")
    bench.add_arguments(b)
    b.set_defaults(func=bench.run_from_args)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SaleError as exc:
        _say(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        _say("interrupted; finished work is kept, rerun to resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
