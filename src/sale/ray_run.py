"""`sale run --ray [ADDRESS]`: the run's tasks as Ray tasks on a cluster's workers.

The driver (the process running ``sale run``) keeps everything a run owns: the run
folder and its lock, results.jsonl, the ledger file, summary.json, the progress, the
early stops and resuming. `RayRunner` is a `sale.run.Runner` whose one change is where
a task runs: instead of running ``Runner._attempt`` itself, it sends the task to a Ray
worker, where a worker-side `Runner` runs that same ``_attempt`` (auction, winner,
execution, grading, memory), against the pool's endpoints and the shared Postgres
memory. The worker sends back the task's results line, its ledger entries and its
auction record and trajectory; the driver writes them into the run folder, so the
folder reads exactly as a run without Ray would leave it.

- A worker process runs one task at a time; ``--concurrency N`` (default: the
  cluster's CPUs) tasks are in flight at once, each asking Ray for CPUs / N of a CPU
  when N is above the CPUs (tasks mostly wait on their calls).
- Each worker process builds its pool, environments and router once per run (the
  first task of the run it gets) and keeps them for the next tasks of that run.
  Sandboxed code of a coding task runs on the worker that holds the task.
- The auction memory must be Postgres (``--memory postgresql://...`` or the pool
  file's ``memory:``): every worker reads and writes the one memory. A worker writes a
  task's auction record together with its outcome when the task finishes
  (`sale.memory.staged`); an auction reads the memory as it stands when it starts
  (records written by the same worker after that are left out; a record another
  worker commits while the auction runs may be read).
- Every agent must be an endpoint: a local GGUF agent is refused (each worker would
  have to start its own llama.cpp servers).
- A per-run dollar limit (``budget.per_run``) is refused: each worker checks the
  calls of its own task only. ``budget.per_task`` holds as without Ray.
- A worker that dies while running a task (killed, out of memory, its node lost):
  Ray runs the task again on another worker (``max_retries`` times, default 3); when
  retries run out, the task is recorded errored and the next run does it again. Its
  memory record, if the worker wrote one before dying, is taken out; the calls it
  made before dying are not in the ledger. Nothing is recorded twice: only the
  driver writes results.jsonl, and memory writes replace a task's record.

Needs the ``ray`` package (``pip install 'sale[ray]'``), on the driver and on every
worker, with ``sale`` itself.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from sale.errors import ConfigError, DiskFullError, MissingExtraError, SaleError
from sale.jsonl import write_bytes_atomic
from sale.llm.ledger import Ledger, LedgerEntry
from sale.run import Runner, open_runner
from sale.workloads.task import Task

LOCAL = "local"  # --ray without an address: a local cluster on this machine


class WorkerLost(SaleError):
    """The Ray worker running a task died, and Ray ran out of retries."""


def _ray():
    try:
        import ray
    except ImportError as exc:
        raise MissingExtraError("ray", "ray", "sale run --ray") from exc
    return ray


def check_ray_run(pool_config: Any, memory: Any, source: str = "<pool>") -> str:
    """The Postgres URL of the memory a Ray run shares; refuses (one line) what a Ray
    run does not support: a SQLite memory, a local GGUF agent, a per-run budget."""
    from sale.memory.postgres import is_postgres_url

    local = [a.name for a in pool_config.agents if a.is_local]
    if local:
        raise ConfigError(
            f"{source}: --ray needs every agent to be an endpoint; {', '.join(local)} "
            "is a local GGUF model (serve it, e.g. with llama-server, and name its endpoint:)"
        )
    spec = memory or pool_config.memory
    if not is_postgres_url(spec):
        what = f"'{spec}'" if spec else "the run folder's memory.sqlite"
        raise ConfigError(
            f"--ray needs an auction memory every worker shares: pass --memory postgresql://... "
            f"or memory: in the pool file (a SQLite memory, here {what}, cannot be shared)"
        )
    budget = getattr(pool_config, "budget", None)
    if budget is not None and budget.per_run is not None:
        raise ConfigError(f"{source}: budget.per_run is not supported with --ray (each worker sees its own calls only); "
                          "use budget.per_task or run without --ray")  # fmt: skip
    return spec


def connect(address: str | None = None, *, num_cpus: int | None = None, in_flight: int | None = None) -> bool:
    """Connect to the Ray cluster at ``address`` (as ``ray.init`` takes it: ``auto``,
    ``HOST:PORT``, ``ray://HOST:PORT``), or start a local one with ``num_cpus`` CPUs
    (default this machine's) when ``address`` is None or "local". A local cluster keeps
    ``in_flight`` worker processes alive between tasks (Ray's default keeps one per
    CPU and restarts the others, which then build their run state again). Returns
    whether this call connected (and so should `disconnect`); a process already
    connected keeps its cluster."""
    ray = _ray()
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    local = address in (None, "", LOCAL)
    try:
        if local:
            cpus = num_cpus or os.cpu_count() or 1
            ray.init(num_cpus=cpus, _system_config={"num_workers_soft_limit": max(cpus, in_flight or 0)}, **options)
        else:
            ray.init(address=address, **options)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the cluster, on one line
        where = "start a local Ray cluster" if local else f"connect to the Ray cluster at {address}"
        why = (str(exc).strip().splitlines() or [""])[0]
        raise SaleError(f"--ray: cannot {where} ({type(exc).__name__}: {why})") from exc
    return True


def disconnect() -> None:
    _ray().shutdown()


def cluster_cpus() -> int:
    """The CPUs of the connected cluster (at least 1)."""
    return max(1, int(_ray().cluster_resources().get("CPU", 1)))


# ----------------------------------------------------------------------------- the worker side


@dataclass
class RunSpec:
    """What a worker needs to run tasks of one run (sent with every task; small)."""

    run_id: str
    pool_config: Any
    source: str
    memory: str
    grade: str | None
    env_tasks: Any  # an ObjectRef of the run's tasks, for the environments (search collections)
    data_dir: str | None = None
    documents: list[str] = field(default_factory=list)
    hide_paths: list[str] = field(default_factory=list)


class _Worker:
    """The pool, environments and runner a worker process keeps for one run."""

    def __init__(self, spec: RunSpec):
        from sale.llm.pool import Pool
        from sale.run import build_environments

        ray = _ray()
        self.run_id = spec.run_id
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="sale-ray-"))
        self.ledger = Ledger(None)
        tasks = ray.get(spec.env_tasks)
        envs = build_environments(tasks, data_dir=spec.data_dir, documents=spec.documents, hide_paths=spec.hide_paths)
        self.pool = Pool(spec.pool_config, ledger=self.ledger, source=spec.source)
        self.loop.run_until_complete(self.pool.start())
        self.runner = open_runner(self.pool, self.dir, tasks, envs=envs, grade=spec.grade, memory=spec.memory)

    async def attempt(self, task: Task) -> dict[str, Any]:
        self.ledger.entries.clear()  # one task at a time: what it records is this task's
        cpu = time.process_time()
        rec, disk = await self.runner._attempt(task, False)
        files = {}
        for key in ("auction", "trajectory"):
            rel = rec.get(key) or ""
            path = self.dir / rel
            if rel and path.is_file():
                files[rel] = path.read_bytes()
                path.unlink()
        return {
            "record": rec, "ledger": [asdict(e) for e in self.ledger.entries], "files": files,
            "disk": str(disk) if disk is not None else None, "pid": os.getpid(),
            "cpu_s": time.process_time() - cpu,
        }  # fmt: skip

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.pool.stop())
            router_memory = getattr(self.runner.router, "memory", None)
            if router_memory is not None:
                router_memory.close()
        except Exception:  # noqa: BLE001 - a worker leaving an old run behind
            pass
        finally:
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)


_WORKER: _Worker | None = None


def sale_task(spec: RunSpec, task: Task) -> dict[str, Any]:
    """Run one task on this worker (the body of the Ray task)."""
    global _WORKER
    if _WORKER is None or _WORKER.run_id != spec.run_id:
        if _WORKER is not None:
            _WORKER.close()
            _WORKER = None
        _WORKER = _Worker(spec)
    return _WORKER.loop.run_until_complete(_WORKER.attempt(task))


# ----------------------------------------------------------------------------- the driver side


@dataclass
class RayRunner(Runner):
    """A `Runner` whose tasks run as Ray tasks (see the module docstring).

    ``concurrency`` is the tasks in flight at once, each in a worker process of its
    own; above the cluster's CPUs each task asks Ray for CPUs / concurrency of a CPU.
    """

    spec: RunSpec | None = None
    max_retries: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        self.worker_cpu_s = 0.0  # CPU time the workers spent on this run's tasks (a benchmark reads it)
        self.worker_pids: set[int] = set()  # the worker processes that ran them
        # more tasks in flight than the cluster has CPUs: each asks for its share of a CPU
        # (a task mostly waits on its calls), so that all of them run at once
        self.task_cpus = min(1.0, math.floor(10_000 * cluster_cpus() / self.concurrency) / 10_000)
        self._remote = _ray().remote(num_cpus=self.task_cpus, max_retries=self.max_retries)(sale_task)

    async def _attempt(self, task: Task, stop_on_error: bool) -> tuple[dict[str, Any], BaseException | None]:
        ray = _ray()
        ref = self._remote.remote(self.spec, task)
        try:
            out = await ref
        except asyncio.CancelledError:
            ray.cancel(ref, force=True)
            raise
        except ray.exceptions.RayTaskError as exc:  # the task raised: a bug, as without Ray
            raise exc.as_instanceof_cause() from None
        except ray.exceptions.RayError as exc:  # the worker (or its node) died, retries spent
            lost = WorkerLost(f"task {task.id}: the Ray worker running it died ({type(exc).__name__}); rerun to retry it")
            if stop_on_error:
                raise lost from exc
            return self._errored_record(task, len(self.pool.ledger.entries), lost), None
        self.worker_cpu_s += out["cpu_s"]
        self.worker_pids.add(out["pid"])
        for entry in out["ledger"]:
            self.pool.ledger.record(LedgerEntry(**entry))
        for rel, data in out["files"].items():
            write_bytes_atomic(self.out_dir / rel, data, fsync=False)
        disk = DiskFullError(out["disk"]) if out["disk"] else None
        return out["record"], disk


def open_ray_runner(
    pool: Any,
    out_dir: str | Path,
    tasks: list[Task],
    *,
    memory: Any = None,
    data_dir: str | Path | None = None,
    documents: Iterable[str | Path] = (),
    hide_paths: Iterable[str | Path] = (),
    grade: str | None = None,
    concurrency: int | None = None,
    max_retries: int = 3,
    **kwargs: Any,
) -> RayRunner:
    """A `RayRunner` for ``pool`` writing into ``out_dir``, on the cluster this process
    is connected to (`connect`). ``concurrency``: tasks sent at once (default: the
    cluster's CPUs). Other keyword arguments go to `sale.run.open_runner`."""
    ray = _ray()
    url = check_ray_run(pool.config, memory, pool.source)
    from sale.run import build_environments

    envs = kwargs.pop("envs", None)
    if envs is None:
        envs = build_environments(tasks, data_dir=data_dir, documents=documents, hide_paths=hide_paths)
    base = open_runner(pool, out_dir, tasks, envs=envs, grade=grade, memory=url, **kwargs)
    spec = RunSpec(
        run_id=uuid.uuid4().hex, pool_config=pool.config, source=str(pool.source), memory=url, grade=grade,
        env_tasks=ray.put(list(tasks)), data_dir=str(data_dir) if data_dir else None,
        documents=[str(p) for p in documents], hide_paths=[str(p) for p in hide_paths],
    )  # fmt: skip
    values = {f.name: getattr(base, f.name) for f in fields(Runner)}
    values["concurrency"] = concurrency or cluster_cpus()
    return RayRunner(**values, spec=spec, max_retries=max_retries)
