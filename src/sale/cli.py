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

    from sale.preflight import check_out_dir, check_pool, probe_endpoints
    from sale.run import build_environments
    from sale.runlock import RunLock
    from sale.workloads.loaders import task_folders

    # Everything that can be checked is checked before the run folder is touched.
    pool_path = args.pool or default_pool_path()
    pool_config = load_pool_config(pool_path)  # a bad pool file stops the run before anything is written
    if args.grade is not None:
        from sale.envs.grading import GradeRule

        GradeRule.parse(args.grade, "--grade")
    if args.constrain:
        pool_config.execution["constrain"] = args.constrain
    if args.ray is not None:  # before anything starts: what a Ray run does not support
        from sale.ray_run import check_ray_run

        check_ray_run(pool_config, args.memory, str(pool_path))
    tasks = [t for spec in args.tasks for t in load_tasks(spec, limit=args.limit)]
    out = Path(args.out)
    check_out_dir(out)
    if args.pull:
        _pull_missing(pool_path)
    check_pool(pool_config, str(pool_path))
    memory_spec = args.memory or pool_config.memory
    from sale.memory.postgres import PostgresMemory, is_postgres_url

    if is_postgres_url(memory_spec):  # reachable, with a schema this version reads
        PostgresMemory(memory_spec).close()
    task_dirs = task_folders(args.tasks)
    envs = build_environments(tasks, data_dir=args.data_dir, documents=args.documents, hide_paths=task_dirs)
    if args.probe:
        probe_endpoints(pool_config, str(pool_path))

    async def go() -> dict:
        pool = Pool(pool_config, ledger=Ledger(out / "ledger.jsonl"), source=str(pool_path))
        _say(f"{len(tasks)} tasks, pool {pool_path} ({', '.join(pool.names)}), writing {out}")
        async with pool:
            if args.ray is not None:  # the tasks run on a Ray cluster's workers (sale.ray_run)
                from sale.ray_run import open_ray_runner

                runner = open_ray_runner(pool, out, tasks, envs=envs, grade=args.grade, memory=args.memory,
                                         data_dir=args.data_dir, documents=args.documents, hide_paths=task_dirs,
                                         retry_errored=not args.skip_errored, stop_after_errors=args.stop_after_errors,
                                         concurrency=args.concurrency)
            else:
                runner = open_runner(pool, out, tasks, envs=envs, grade=args.grade, retry_errored=not args.skip_errored,
                                     stop_after_errors=args.stop_after_errors, concurrency=args.concurrency or 1,
                                     memory=args.memory)
            done = runner.finished()
            finished = sum(runner.is_done(r) for r in done.values())
            retried = len(done) - finished
            if finished or retried:
                _say(f"resuming: {finished} task(s) already finished" + (f", {retried} errored task(s) to retry" if retried else ""))
            progress = Progress(len(tasks), "run")
            try:
                shown = (lambda: runner.in_flight) if runner.concurrency > 1 else None
                return await runner.run(tasks, on_task=progress_printer(progress, shown))
            finally:
                progress.close()
                pool.ledger.close()

    with RunLock(out):  # before the pool starts: a second run on this folder stops here
        if args.ray is not None:
            from sale.ray_run import connect, disconnect

            started = connect(args.ray, in_flight=args.concurrency)
            try:
                summary = asyncio.run(go())
            finally:
                if started:
                    disconnect()
        else:
            summary = asyncio.run(go())
    _print_summary(summary)
    _print_errors(summary, " ".join(_quote(a) for a in getattr(args, "argv", None) or ["run", "..."]))
    return summary.get("exit_code", 0)


def cmd_demo(args: argparse.Namespace) -> int:
    """The demo workload through the auction and through the largest agent alone."""
    from pathlib import Path

    from sale.config import default_pool_path
    from sale.demo import demo_pool, run_demo

    pool_path = args.pool or default_pool_path()
    out = Path(args.out)
    if args.pull:
        _pull_missing(pool_path)

    async def go() -> dict:
        pool = demo_pool(pool_path, out)
        _say(f"starting the pool {pool_path} (llama.cpp servers for local models) ...")
        async with pool:
            result = await run_demo(pool, out, say=print)
        pool.ledger.close()
        return result

    t = time.perf_counter()
    result = asyncio.run(go())
    print(f"demo finished in {time.perf_counter() - t:.0f} s; everything is in {out}")
    # tasks that errored (an outage, not the agent's work) are said, and set the exit code
    command = " ".join(_quote(a) for a in getattr(args, "argv", None) or ["demo", "..."])
    codes = []
    for name in ("sale", "largest"):
        summary = result[name]
        if summary.get("exit_code"):
            print(f"{name} run ({out / name}):")
            _print_errors(summary, command)
        codes.append(summary.get("exit_code", 0))
    return max(codes)


def cmd_serve(args: argparse.Namespace) -> int:
    """An OpenAI-compatible endpoint: a task's first request holds the auction, the
    later ones go to the winner (sale.serve)."""
    from sale.errors import MissingExtraError

    try:
        import uvicorn

        from sale.serve.app import create_app
    except MissingExtraError:
        raise
    except ImportError as exc:
        raise MissingExtraError(exc.name or "uvicorn", "serve", "sale serve") from None
    app = create_app(args.pool, args.state)
    _say(f"sale serve: pool {args.pool}, state {args.state}; "
         f"OpenAI base URL http://{args.host}:{args.port}/v1, model 'sale'")  # fmt: skip
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    """Serve a read-only web page over a run or bench folder."""
    from sale.view.server import serve_forever

    serve_forever(args.folder, host=args.host, port=args.port, say=_say)
    return 0


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def _print_errors(summary: dict, command: str) -> None:
    """A line per error kind (tasks, first message), why the run stopped, how to go on,
    and the exit code."""
    from sale.outcomes import EXIT_BUDGET, EXIT_ERRORED, EXIT_STOPPED

    for kind, info in summary.get("errored_by_kind", {}).items():
        print(f"errored ({kind}): {info['tasks']} task(s); first: {info['first'][:300]}")
    stop = summary.get("stop", {})
    code = summary.get("exit_code", 0)
    if stop.get("reason") == "budget":
        b = summary.get("budget", {})
        print(f"stopped by the per-run budget (${b.get('per_run'):g}): ${b.get('spent', 0.0):.6f} spent, "
              f"{stop.get('not_started', 0)} task(s) not started; {stop.get('message', '')[:300]}")
        print("raise budget.per_run in the pool file and rerun the same command to go on")
    elif stop.get("reason") == "repeated_error":
        print(f"stopped early: {stop.get('message', '')[:400]}")
        print(f"{stop.get('to_run', 0)} task(s) left to run; once the cause is fixed, resume with: sale {command}")
    elif summary.get("errored"):
        print(f"{summary['errored']} task(s) errored and will be retried by: sale {command} (--skip-errored keeps them as they are)")
    meaning = {EXIT_ERRORED: "tasks errored", EXIT_BUDGET: "budget stop", EXIT_STOPPED: "stopped early"}
    if code:
        print(f"exit code {code} ({meaning.get(code, 'error')})")


def _print_summary(summary: dict) -> None:
    p = summary["pass_at_1"]
    errored = f"  errored {summary['errored']}" if summary.get("errored") else ""
    graded = f" (of {summary['graded']} graded)" if summary.get("errored") else ""
    print(f"tasks {summary['tasks']}  pass@1 {p:.1%}{graded}{errored}" if p is not None else f"no graded tasks{errored}")
    print(f"dollars {summary['dollars']:.6f}  largest agent ({summary['largest_agent']}) share {summary['largest_share']:.0%}")
    print("wins: " + ", ".join(f"{a} {s:.0%}" for a, s in summary["win_share"].items()))
    o = summary["auction_overhead"]
    print(f"auction overhead: {o['token_share']:.0%} of tokens, {o['dollar_share']:.0%} of dollars, {o['wall_share']:.0%} of wall time")
    g = summary.get("grading") or {}
    if g.get("search_tasks"):
        rates = ", ".join(f"{r} {p:.0%}" for r, p in g["search_pass_at_1_by_rule"].items())
        print(f"search answers passed by '{g.get('rule')}'; their pass@1 under each rule: {rates}")


# ----------------------------------------------------------------------------- main


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="sale", description="Strategy auctions for pools of LLM agents.")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
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
    r.add_argument("--grade", metavar="RULE", help="pass rule of search answers: em, match (default), f1:T or judge")
    r.add_argument("--no-pull", dest="pull", action="store_false", help="do not fetch missing models")
    r.add_argument("--skip-errored", action="store_true",
                   help="keep tasks that errored in an earlier run as they are (default: run them again)")
    r.add_argument("--stop-after-errors", type=_count, default=3, metavar="N",
                   help="stop once N tasks in a row errored alike, e.g. an endpoint is down (default 3; 0: never)")
    r.add_argument("--concurrency", type=_positive, default=None, metavar="N",
                   help="tasks in flight at once (default 1; with --ray the cluster's CPUs); each agent's own "
                        "concurrency still bounds its calls")
    r.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run the tasks as Ray tasks on the cluster at ADDRESS (auto, HOST:PORT, ray://...; "
                        "no ADDRESS: a local cluster); needs a postgresql:// memory and endpoint agents")
    r.add_argument("--memory", metavar="URL_OR_FILE",
                   help="auction memory: postgresql://... (shared by many runs) or a SQLite file "
                        "(default: the pool file's memory:, else OUT/memory.sqlite)")
    r.add_argument("--no-probe", dest="probe", action="store_false",
                   help="do not check that the pool's endpoints answer before the run")
    r.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")
    r.add_argument("--constrain", choices=("auto", "grammar", "json_schema", "off"),
                   help="constrain each executor step to the actions (default: the pool file's execution.constrain, else auto)")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="the shipped demo workload: auction vs the largest agent alone")
    d.add_argument("--pool", help="pool file (default: the local ladder)")
    d.add_argument("--out", default="sale-demo", help="output folder (default: ./sale-demo; a rerun resumes it)")
    d.add_argument("--no-pull", dest="pull", action="store_false", help="do not fetch missing models")
    d.set_defaults(func=cmd_demo)

    sv = sub.add_parser("serve", help="an OpenAI-compatible endpoint: one auction per task, later requests pinned to the winner")
    sv.add_argument("--pool", required=True, help="pool file")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--state", default="sale-serve", help="state folder: bindings, memory, ledger, auctions (default: ./sale-serve)")
    sv.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    sv.set_defaults(func=cmd_serve)

    v = sub.add_parser("view", help="a read-only web page over a run or bench folder (on loopback)")
    v.add_argument("folder", help="a run folder (sale run, sale demo), a bench folder (sale bench), or a folder holding them")
    v.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765; 0: any free port)")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    v.set_defaults(func=cmd_view)

    from sale.evaluation import bench

    b = sub.add_parser("bench", help="evaluate SALE, its ablations and the baselines on a workload")
    bench.add_arguments(b)
    b.set_defaults(func=bench.run_from_args)

    from sale.evaluation import regrade

    g = sub.add_parser("regrade", help="pass stored search answers again under another rule, executing nothing")
    regrade.add_arguments(g)
    g.set_defaults(func=regrade.run_from_args)

    from sale.evaluation import compare

    c = sub.add_parser("compare", help="bench folders' outcome matrices side by side: passed, tokens, wall time")
    compare.add_arguments(c)
    c.set_defaults(func=compare.run_from_args)
    return ap


def main(argv: list[str] | None = None) -> int:
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # to say how to resume
        return args.func(args)
    except SaleError as exc:
        if debug:
            raise
        _say(f"error: {_one_line(str(exc))}")
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        _say("interrupted; finished work is kept, rerun to resume")
        return 130
    except OSError as exc:
        if debug:
            raise
        from sale.outcomes import is_disk_full

        where = f": {exc.filename}" if exc.filename else ""
        what = "no space left on device" if is_disk_full(exc) else (exc.strerror or str(exc))
        _say(f"error: {what}{where}")
        return 2
    except Exception as exc:  # a bug: still one line, the traceback with --debug
        if debug:
            raise
        _say(f"error: {type(exc).__name__}: {_one_line(str(exc))} (rerun with --debug for the traceback)")
        return 1


def _one_line(text: str) -> str:
    """A message on one line (a multi-line one is joined with '; ')."""
    return "; ".join(part.strip() for part in text.strip().splitlines() if part.strip())


if __name__ == "__main__":
    sys.exit(main())
