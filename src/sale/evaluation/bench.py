"""``sale bench``: SALE, its ablations and every baseline on the test split of a workload.

    sale bench --out runs/bench --data-dir ../shared/data --per-tier 20

Stages, each cached in the bench folder ``DIR`` and written durably as it goes, so an
interrupted bench resumes where it stopped and a rerun makes no repeated LLM calls:

1. Workload: the standard workload (``--data-dir``), task files (``--tasks``) or the
   shipped demo; a deterministic, stratified train/test split.
2. Original rounds (``rounds.jsonl``): every agent's bid and the jury's scores of the
   bids, for every task. They depend only on the task and the call settings, so they
   are computed once and shared by every ordering and every SALE variant.
3. The outcome matrix (``matrix.jsonl``): every agent executes every task once,
   following its own original bid (an agent whose bid dropped out of the round runs
   without a plan). Baselines train on it, the weights are fitted on it, and it
   defines the oracle.
4. Weights (``weights.json``): fitted with `fit_minmax` on the training split (bid
   features of the original rounds; target: the cheapest agent that succeeded).
5. SALE on the test split over N seeded orderings (``sale/<method>/``): memory starts
   empty for every ordering and grows along it (one SQLite memory per ordering), so a
   resumed ordering continues its own stream. An auction whose winner kept its
   original bid reuses that agent's matrix execution; a refined winning bid executes
   afresh, cached by (task, agent, sha256 of the strategy) in ``executions.jsonl``.
6. Variants: ``sale-default-weights`` (cold-start weights), ``sale-no-memory`` and,
   with ``--ablations``, no price, no length, no entropy, no jury, self-review only
   and peer-review only; named with ``--variants``: ``sale-full-jury`` (every jury
   call asked, as in the paper), the other jury mode, and beyond the paper the memory
   of outcomes: ``sale-memory-value``, ``sale-gated`` and ``sale-memory-value-gated``
   (sale.auction.outcomes_memory; w_m is the cold-start default, as the training
   tasks run no stream).
7. Baselines read from the matrix: each single agent (named by the agent), largest,
   random, oracle, WTP, CARROT, TO-Router and FrugalGPT (which pays for every agent
   its cascade ran).
8. ``--compare-jury``: the test tasks' original bids scored again in the other jury
   mode; per mode the auction's calls, tokens, dollars and wall time per task, and how
   often both modes choose the same provisional winner.
9. The report (`sale.evaluation.report.write_report`): ``summary.json`` (``methods``:
   the metrics of every method by name; ``extra``: split sizes, weights, what was
   reused, the per-phase auction overhead, the jury comparison, the smallest agent's
   wins along the stream), ``results.jsonl``, ``report.txt``, plots and
   ``report.html``.

What is reused, and why that is honest (also written into ``extra["reused"]``):

- An auction is charged the full cost of its original round (bid and jury calls, as
  measured when the round was computed) even when the round came from the cache:
  every ordering stands for a separate deployment that would have paid for it. With
  exact jury pruning (the default; ``sale-full-jury`` turns it off) the cached round
  holds the whole jury, the pruned jury reads the answers of the calls it asks from
  it, and only those calls are charged (their recorded tokens, dollars and, in
  proportion to their latency, the round's jury wall time).
- Variants whose round settings differ from the main ones (no jury, self or peer
  review, the other jury mode) reuse the original *bids* (their calls are identical:
  same prompt and bid settings) and compute their own jury calls, since a batched
  juror scores bids in one call whose context holds the other bids. Without a jury
  there are no jury calls and none are charged.
- Winners that kept their original bid execute exactly what the matrix executed (the
  same agent following the same strategy on the same task), so the matrix cell is
  reused.

Work that failed because an endpoint failed (unreachable, overloaded, HTTP 5xx or 429,
a call timeout) is never cached: the stage stops with `EndpointFailure` and a rerun
retries it. Failures that are the agent's own (a malformed reply, a limit, an HTTP 4xx
such as a prompt beyond its context) are outcomes and are recorded.

A bench folder belongs to one configuration (pool, tasks, split, seed, round settings,
execution limits and prompts); ``bench.json`` records it and a rerun with another raises
ConfigError. The auction's other settings (refinement, ablation flags), the refine
prompt and the embedder matter only to the SALE orderings in ``sale/``: with those
moved away, a rerun with other such settings keeps the rounds, the matrix and the
weights. The number of orderings, ``--ablations``, ``--variants`` and
``--compare-jury`` may change between runs: finished work is kept and only what is
missing runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Sequence

from sale import prompts
from sale.agent.constrain import OFF as CONSTRAIN_OFF, ConstrainSettings
from sale.agent.executor import Limits
from sale.agent.modes import ExecutionSettings, execution_config, run_execution
from sale.auction.auction import Auction
from sale.auction.jury import score_bids
from sale.auction.record import BIDDER, ORIGINAL, AuctionError, AuctionResult, PhaseStats, Round
from sale.auction.settings import AuctionSettings
from sale.auction.weights import BidFeatures, FitError, FitExample, Weights, default_weights, fit_minmax
from sale.envs.base import Environment
from sale.envs.grading import recorded
from sale.errors import ConfigError, SaleError
from sale.evaluation.matrix import Cell, MatrixStore, OutcomeMatrix
from sale.evaluation.metrics import TaskResult, summarise
from sale.jsonl import JsonlWriter, read_jsonl, write_json_atomic
from sale.llm.ledger import LedgerEntry, ledger_tags
from sale.llm.pool import Pool
from sale.memory.embedders import Embedder, LexicalEmbedder
from sale.workloads.task import Task

#: Auction phases, in the order they happen.
PHASES = ("bid", "jury", "refine")

#: Baselines read from the outcome matrix, in report order.
BASELINE_METHODS = ("largest", "oracle", "wtp", "carrot", "to-router", "frugalgpt", "random")

Say = Callable[[str], None]

_ENDPOINT_FAILURE = re.compile(r"HTTP (?:5\d\d|429)|Client\w*Error|Server\w*Error|no answer within", re.IGNORECASE)


class EndpointFailure(SaleError):
    """Calls failed because an endpoint did (unreachable, overloaded, 5xx, timed out);
    nothing of the affected work was cached, so a rerun retries it."""


def endpoint_failed(reason: str) -> bool:
    """Whether a failure ``reason`` blames the endpoint rather than the agent.

    Such failures are not cached: a rerun retries them. Anything else (an HTTP 4xx
    such as a prompt beyond the context, a malformed reply, a limit) is the agent's
    outcome and is recorded.
    """
    return bool(_ENDPOINT_FAILURE.search(reason))


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    """One SALE method of the bench: auction settings changed from the main ones,
    which weights it uses, and whether it has a memory. ``own_fit``: its weights are
    fitted on its own training rounds (else the main fit is used, as an ablation)."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    fitted_weights: bool = True
    own_fit: bool = False
    doc: str = ""

    @property
    def memory(self) -> bool:
        return not self.overrides.get("no_memory", False)


CORE_VARIANTS = (
    Variant("sale", doc="the full auction with fitted weights and memory"),
    Variant("sale-default-weights", fitted_weights=False, doc="cold-start weights instead of fitted ones"),
    Variant("sale-no-memory", {"no_memory": True}, doc="no refinement: the provisional winner executes"),
)
ABLATION_VARIANTS = (
    Variant("sale-no-price", {"no_price": True}, doc="every agent priced at the pool's mean price"),
    Variant("sale-no-length", {"no_length": True}, doc="every bid's length counted as 1"),
    Variant("sale-no-entropy", {"no_entropy": True}, doc="entropy weight 0"),
    Variant("sale-no-jury", {"no_jury": True}, doc="no jury calls; jury term 0"),
    Variant("sale-self-review", {"jury": "self"}, doc="each bid scored by its own bidder only"),
    Variant("sale-peer-review", {"jury": "peer"}, doc="each bid scored by every agent but its bidder"),
)
#: The full auction with the other jury mode, or with the whole jury (run when named with --variants).
JURY_VARIANTS = (
    Variant("sale-batched-jury", {"jury_mode": "batched"}, own_fit=True,
            doc="each juror scores all bids in one call; weights fitted on these scores"),
    Variant("sale-per-bid-jury", {"jury_mode": "per_bid"}, own_fit=True,
            doc="each juror scores each bid in a call of its own; weights fitted on these scores"),
    Variant("sale-full-jury", {"jury_pruning": "off"}, doc="every jury call asked, as in the paper (no exact pruning)"),
)
#: Beyond the paper, the memory of outcomes (run when named with --variants).
OUTCOME_VARIANTS = (
    Variant("sale-memory-value", {"memory_value": True},
            doc="each bid's value adds w_m * m_i, the bidder's observed success on similar past tasks"),
    Variant("sale-gated", {"gate": {}},
            doc="a task whose nearest past tasks one agent all passed goes to it with one bid call, no jury"),
    Variant("sale-memory-value-gated", {"memory_value": True, "gate": {}},
            doc="sale-memory-value and sale-gated together"),
)
#: Every variant --variants can name.
ALL_VARIANTS = CORE_VARIANTS + ABLATION_VARIANTS + JURY_VARIANTS + OUTCOME_VARIANTS


def select_variants(names: Sequence[str] | None, ablations: bool = False) -> list[Variant]:
    """The SALE variants named (in the order given), else the core ones (and the ablations)."""
    if names is None:
        return list(CORE_VARIANTS) + (list(ABLATION_VARIANTS) if ablations else [])
    known = {v.name: v for v in ALL_VARIANTS}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ConfigError(f"variants: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(known)}")
    return [known[n] for n in dict.fromkeys(names)]


def variant_orderings(entries: Sequence[str]) -> dict[str, int | None]:
    """``--variants`` entries as variant name -> its own number of orderings (``NAME:N``),
    or None where it replays ``--orderings``; in the order given."""
    counts: dict[str, int | None] = {}
    for entry in entries:
        name, sep, count = entry.partition(":")
        n = None
        if sep:
            try:
                n = int(count)
            except ValueError:
                n = 0
            if n < 1:
                raise ConfigError(f"variants: '{entry}': the orderings after ':' must be a whole number of at least 1")
        counts[name.strip()] = n
    return counts


def variant_settings(base: AuctionSettings, variant: Variant) -> AuctionSettings:
    """``base`` with the variant's overrides, validated."""
    return AuctionSettings.from_dict({**base.model_dump(), **variant.overrides}, f"variant {variant.name}")


def _fit_summary(weights: Weights, n: int) -> str:
    accuracy = weights.meta.get("train_accuracy")
    shown = f", train accuracy {accuracy:.0%}" if isinstance(accuracy, float) else ""
    return f"{weights.meta.get('method')} fit on {n} training tasks{shown}"


def round_key(settings: AuctionSettings) -> str:
    """The cache key of an original round: its round settings as canonical JSON."""
    return json.dumps(settings.round_key(), sort_keys=True)


# ----------------------------------------------------------------------------- caches


def _usage(entries: Iterable[LedgerEntry], task_id: str) -> dict[str, dict[str, int]]:
    """Tokens by phase, then by agent, of the ledger entries made for ``task_id``."""
    out: dict[str, dict[str, int]] = {}
    for e in entries:
        if e.task != task_id:
            continue
        per = out.setdefault(e.phase, {})
        per[e.agent] = per.get(e.agent, 0) + e.input_tokens + e.output_tokens
    return out


class RoundStore:
    """Original rounds by (round settings, task id), appended to a JSONL file.

    Each record also holds the round's tokens by phase and agent (``usage``), which
    the auction record does not keep but reliance on the largest agent needs.
    """

    def __init__(self, path: Path):
        self.path = path
        self._rounds: dict[tuple[str, str], tuple[Round, dict]] = {}
        for rec in read_jsonl(path):
            try:
                self._rounds[rec["key"], rec["task_id"]] = (Round.from_dict(rec["round"]), rec.get("usage") or {})
            except (KeyError, TypeError, ValueError):
                continue  # an unreadable record is computed again
        self._writer: JsonlWriter | None = None

    def get(self, key: str, task_id: str) -> tuple[Round, dict] | None:
        hit = self._rounds.get((key, task_id))
        return None if hit is None else (hit[0].copy(), hit[1])

    def has(self, key: str, task_id: str) -> bool:
        return (key, task_id) in self._rounds

    def put(self, key: str, rnd: Round, usage: dict) -> None:
        if self._writer is None:
            self._writer = JsonlWriter(self.path)
        self._writer.write({"key": key, "task_id": rnd.task_id, "round": rnd.to_dict(), "usage": usage})
        self._rounds[key, rnd.task_id] = (rnd.copy(), usage)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def strategy_sha(strategy: str) -> str:
    return hashlib.sha256(strategy.encode("utf-8")).hexdigest()


class ExecutionStore:
    """Executions of refined strategies by (task, agent, sha256 of the strategy)."""

    def __init__(self, path: Path):
        self.path = path
        self._cells: dict[tuple[str, str, str], Cell] = {}
        for rec in read_jsonl(path):
            try:
                self._cells[rec["task_id"], rec["agent"], rec["strategy_sha"]] = Cell.from_dict(rec["cell"])
            except (KeyError, TypeError, SaleError):
                continue
        self._writer: JsonlWriter | None = None

    def get(self, task_id: str, agent: str, sha: str) -> Cell | None:
        return self._cells.get((task_id, agent, sha))

    def put(self, sha: str, cell: Cell) -> None:
        if self._writer is None:
            self._writer = JsonlWriter(self.path)
        self._writer.write({"task_id": cell.task_id, "agent": cell.agent, "strategy_sha": sha, "cell": cell.to_dict()})
        self._cells[cell.task_id, cell.agent, sha] = cell

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# ----------------------------------------------------------------------------- the bench


@dataclass
class VariantRun:
    """What one SALE variant produced over its orderings."""

    results: list[TaskResult]
    winners: list[list[str]]
    phases: dict[str, PhaseStats]
    executions: Counter
    auctions: int


class Bench:
    """The stages of one bench over ``pool`` in ``out_dir`` (see the module docstring)."""

    def __init__(
        self,
        pool: Pool,
        tasks_train: Sequence[Task],
        tasks_test: Sequence[Task],
        out_dir: str | Path,
        envs: dict[str, Environment],
        *,
        settings: AuctionSettings | None = None,
        jury_mode: str | None = None,
        limits: Limits | None = None,
        action_format: str | None = None,
        parallel: int = 1,
        seed: int = 0,
        embedder: Embedder | None = None,
        pull_missing: bool = False,
        say: Say = _stderr,
        progress: bool = True,
        grade: str | None = None,
        execution: dict[str, Any] | None = None,
    ):
        self.pool = pool
        self.train = list(tasks_train)
        self.test = list(tasks_test)
        self.tasks = self.train + self.test
        self.out = Path(out_dir)
        self.envs = envs
        self.seed = int(seed)
        self.say = say
        self.show_progress = progress
        self.pull_missing = pull_missing
        self.embedder = embedder or LexicalEmbedder()
        if parallel < 1:
            raise ConfigError(f"parallel must be at least 1, got {parallel}")
        self.parallel = int(parallel)
        self._check_tasks()

        base = settings if settings is not None else AuctionSettings.from_pool(pool.config, pool.source)
        if jury_mode is not None:
            base = AuctionSettings.from_dict({**base.model_dump(), "jury_mode": jury_mode}, "--jury-mode")
        # The bench fits and passes its own weights; a weights file of the pool is not read.
        self.settings = AuctionSettings.from_dict({**base.model_dump(), "weights_file": None})
        self.main_key = round_key(self.settings)
        self._own_fits: dict[str, Weights] = {}  # weights fitted on other round settings, by round key
        # ``execution`` (e.g. {"mode": "direct"}) overrides the pool file's execution settings
        section = {**pool.config.execution, **(execution or {})}
        self.execution, pool_limits, fmt = execution_config(section, f"{pool.source}: execution")
        self.action_format = action_format or fmt
        self.constrain = ConstrainSettings.pop_from(section, f"{pool.source}: execution")
        self.limits = limits or pool_limits
        self.largest = pool.largest.name
        self.default_weights = default_weights(pool.names, {a.name: a.unit_price for a in pool})

        self.out.mkdir(parents=True, exist_ok=True)
        self._check_config()
        self._setup_grading(grade)
        self.rounds = RoundStore(self.out / "rounds.jsonl")
        self.executions = ExecutionStore(self.out / "executions.jsonl")
        self.matrix_store: MatrixStore | None = None

    # ------------------------------------------------------------------ checks

    def _check_tasks(self) -> None:
        if not self.test:
            raise ConfigError("bench: the test split is empty; give more tasks or a larger --test-fraction")
        ids = [t.id for t in self.tasks]
        dupes = [i for i, n in Counter(ids).items() if n > 1]
        if dupes:
            raise ConfigError(f"bench: task ids must be unique across train and test; repeated: {', '.join(dupes[:5])}")
        missing = sorted({t.domain for t in self.tasks} - set(self.envs))
        if missing:
            raise ConfigError(f"bench: no environment for domain(s) {', '.join(missing)}")

    #: Fingerprint entries only the SALE orderings (``sale/``) depend on; the rounds, the
    #: matrix and the weights do not (the round settings are in ``rounds``).
    SALE_ONLY = ("auction", "embedder", "refine_prompt")

    def fingerprint(self) -> dict[str, Any]:
        """What the caches in the folder depend on."""
        return {
            "agents": {a.name: a.unit_price for a in self.pool},
            "train": [t.id for t in self.train],
            "test": [t.id for t in self.test],
            "seed": self.seed,
            "rounds": self.settings.round_key(),
            "auction": self.settings.model_dump(),
            "limits": asdict(self.limits),
            "action_format": self.action_format,
            "constrain": self.constrain.record(),
            "execution": self.execution.model_dump(),
            "embedder": getattr(self.embedder, "name", type(self.embedder).__name__),
            "execution_prompts": prompts.digest(prompts.EXECUTION),
            "refine_prompt": prompts.digest(prompts.REFINE),
        }

    def _check_config(self) -> None:
        """Refuse a folder made with another configuration. Where only the auction's
        other settings (refinement, ablation flags), the refine prompt or the embedder
        changed, the rounds, matrix and weights stay valid: the folder is taken over
        once its SALE orderings are out of the way, and an error says so while they are
        there."""
        path = self.out / "bench.json"
        want = self.fingerprint()
        if path.exists():
            try:
                have = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise ConfigError(f"{path}: unreadable ({exc}); use a new --out folder") from None
            if "rounds" not in have:  # a folder from before the round settings were recorded apart
                have["rounds"] = AuctionSettings.from_dict(have.get("auction") or {}).round_key()
            have.setdefault("refine_prompt", want["refine_prompt"])  # a folder from before it was recorded
            have.setdefault("constrain", CONSTRAIN_OFF.record())  # a folder from before constrained steps
            with contextlib.suppress(ConfigError):  # settings added since take their defaults
                have["auction"] = AuctionSettings.from_dict(have.get("auction") or {}).model_dump()
            diff = sorted(k for k in want if have.get(k) != want[k])
            core = [k for k in diff if k not in self.SALE_ONLY]
            if core:
                raise ConfigError(
                    f"{self.out}: this bench folder was made with another {', '.join(core)}; "
                    "use a new --out folder (its cached rounds, matrix and orderings belong to that configuration)"
                )
            if not diff:
                return
            sale = self.out / "sale"
            if any(sale.glob("*/ordering-*.jsonl")):
                changed = [f"auction.{k}" for k in sorted(want["auction"]) if have["auction"].get(k) != want["auction"][k]]
                changed += [k for k in ("embedder", "refine_prompt") if k in diff]
                raise ConfigError(
                    f"{self.out}: the SALE orderings in {sale} were run with another {', '.join(changed)}; "
                    f"move or delete {sale} to run them again with these settings (the cached rounds, "
                    "matrix and weights stay valid), or use a new --out folder"
                )
        write_json_atomic(path, want)

    def _setup_grading(self, grade: str | None) -> None:
        """The pass rule of search answers (``--grade``, else the pool file's, else match)
        and its judge; a folder graded under another rule keeps its executions and moves
        what depends on the rule aside (`sale.evaluation.regrade.switch_bench_rule`)."""
        from sale.envs.grading import configure_grading
        from sale.evaluation.regrade import switch_bench_rule

        self.judge = configure_grading(self.envs, self.pool, rule=grade, cache_dir=self.out)
        search = self.envs.get("search")
        self.rule = (search.rule_override or search.rule) if search is not None else None
        self._task_by_id = {t.id: t for t in self.tasks}
        if self.rule is not None:
            switch_bench_rule(self.out, self.rule, self.say)

    async def _under_rule(self, cell: Cell) -> Cell:
        """A stored execution passed under the bench's rule (search cells record their scores)."""
        from sale.evaluation.regrade import regrade_for_task

        task, search = self._task_by_id.get(cell.task_id), self.envs.get("search")
        if task is not None and search is not None and search.judge is not None and search.rule_for(task).needs_judge:
            await self._start()  # the judge may be an agent of the pool
        return await regrade_for_task(cell, task, search)

    # ------------------------------------------------------------------ helpers

    async def _start(self) -> None:
        """Start the pool's agents on the first stage that needs an LLM call."""
        await self.pool.start(pull_missing=self.pull_missing)

    def _progress(self, total: int, label: str):
        from sale.progress import Progress

        if not self.show_progress or total == 0:
            return None
        return Progress(total, label)

    async def _bounded(self, items: list, work: Callable[[Any], Awaitable[str]], label: str) -> None:
        """Run ``work`` on every item, at most ``parallel`` at a time, with a progress bar."""
        progress = self._progress(len(items), label)
        sem = asyncio.Semaphore(self.parallel)
        done = 0

        async def one(item: Any) -> None:
            nonlocal done
            async with sem:
                status = await work(item)
            done += 1
            if progress:
                progress.update(done, status)

        try:
            async with asyncio.TaskGroup() as group:
                for item in items:
                    group.create_task(one(item))
        except BaseExceptionGroup as group_error:
            raise group_error.exceptions[0] from None
        finally:
            if progress:
                progress.close()

    def _env_desc(self, task: Task) -> str:
        return self.envs[task.domain].describe(task)

    @property
    def matrix(self) -> OutcomeMatrix:
        assert self.matrix_store is not None, "the matrix stage has not run"
        return self.matrix_store.matrix

    # ------------------------------------------------------------------ rounds

    async def round_for(self, settings: AuctionSettings, task: Task) -> tuple[Round, dict]:
        """The original round of ``task`` under ``settings`` (cached, else computed).

        Under the main settings every agent bids and the jury scores the bids. Under
        other round settings the main round's bids are reused and only the jury runs
        (none for no_jury).
        """
        key = round_key(settings)
        hit = self.rounds.get(key, task.id)
        if hit is not None:
            return hit
        ledger = self.pool.ledger
        if key == self.main_key:
            await self._start()
            mark = len(ledger.entries)
            auction = Auction(self.pool, None, self.settings, self.default_weights)
            rnd = await auction.original_round(task, self._env_desc(task))
            usage = _usage(ledger.entries[mark:], task.id)
            if not rnd.bids:
                reasons = "; ".join(f"{d.agent}: {d.reason}" for d in rnd.dropped) or "no agents"
                raise AuctionError(f"task '{task.id}': no bid survived ({reasons})")
            _check_endpoints(task, rnd.dropped)
        else:
            main, main_usage = await self.round_for(self.settings, task)
            for name in ("bid_max_tokens", "bid_temperature", "top_logprobs"):
                if getattr(settings, name) != getattr(self.settings, name):
                    raise ConfigError(f"bench: a variant may not change the bid setting '{name}'")
            rnd = main.copy()
            for bid in rnd.bids:
                bid.jury = {}
            dropped = [d for d in rnd.dropped if d.role == BIDDER]
            jury = PhaseStats()
            usage = {"bid": dict(main_usage.get("bid", {}))}
            if not settings.no_jury:
                await self._start()
                mark = len(ledger.entries)
                with ledger_tags(task=task.id):
                    jury_dropped, jury = await score_bids(
                        list(self.pool), task.prompt, self._env_desc(task), rnd.bids, settings, ORIGINAL
                    )
                _check_endpoints(task, jury_dropped)
                dropped += jury_dropped
                usage["jury"] = _usage(ledger.entries[mark:], task.id).get("jury", {})
            rnd.dropped = dropped
            rnd.phases = {"bid": PhaseStats.from_dict(main.phases["bid"].to_dict()), "jury": jury}
            rnd.settings = settings.round_key()
        self.rounds.put(key, rnd, usage)
        return rnd.copy(), usage

    async def rounds_stage(self, settings: AuctionSettings, tasks: Sequence[Task], label: str) -> None:
        """Make sure every task has its original round under ``settings``."""
        key = round_key(settings)
        todo = [t for t in tasks if not self.rounds.has(key, t.id)]
        self.say(f"rounds ({label}): {len(tasks) - len(todo)} of {len(tasks)} cached, {len(todo)} to compute")
        failed: dict[str, SaleError] = {}

        async def work(task: Task) -> str:
            try:
                await self.round_for(settings, task)
            except (AuctionError, EndpointFailure) as exc:
                failed[task.id] = exc
                return f"{task.id}: failed"
            return task.id

        await self._bounded(todo, work, "rounds")
        if failed:
            shown = "; ".join(str(e) for e in list(failed.values())[:3])
            message = f"{len(failed)} original round(s) failed and were not cached: {shown}"
            if all(isinstance(e, EndpointFailure) for e in failed.values()):
                raise EndpointFailure(message + " (rerun to retry)")
            raise SaleError(message + " (rerun to retry, or leave these tasks out if their bids stay empty)")

    # ------------------------------------------------------------------ matrix

    async def _execute(self, task: Task, agent: str, strategy: str, trajectory: Path) -> Cell:
        await self._start()
        trajectory.parent.mkdir(parents=True, exist_ok=True)
        trajectory.unlink(missing_ok=True)  # left by an interrupted attempt
        with ledger_tags(task=task.id):
            out = await run_execution(
                self.pool[agent], self.envs[task.domain], task, strategy, settings=self.execution,
                limits=self.limits, trajectory_path=trajectory, action_format=self.action_format,
                constrain=self.constrain,
            )  # fmt: skip
        return Cell(
            task_id=task.id, agent=agent, passed=out.passed, dollars=out.dollars,
            input_tokens=out.input_tokens, output_tokens=out.output_tokens, answer=out.answer,
            reason=out.reason, wall_s=out.wall_s, grade=recorded(out.grade),
        )  # fmt: skip

    async def matrix_stage(self) -> None:
        """Every agent executes every task once, following its own original bid (no bid
        is asked for where the execution takes no plan)."""
        from sale.run import safe_name

        store = MatrixStore(self.out / "matrix.jsonl", self.pool.names, {a.name: a.unit_price for a in self.pool})
        self.matrix_store = store
        for task in self.tasks:
            store.add_task(task)
        for cell in list(store.matrix.cells()):  # cells recorded under another rule are passed again
            store.matrix.add(await self._under_rule(cell))
        pending = store.pending(self.tasks)
        total = len(self.tasks) * len(self.pool)
        self.say(f"matrix: {total - len(pending)} of {total} executions cached, {len(pending)} to run")

        failed: list[str] = []

        async def work(item: tuple[Task, str]) -> str:
            task, agent = item
            strategy = ""
            if self.execution.plan != "none":  # without a plan the execution needs no bid
                rnd, _ = await self.round_for(self.settings, task)
                strategy = next((b.text for b in rnd.bids if b.agent == agent), "")
            path = self.out / "trajectories" / "matrix" / f"{safe_name(task.id)}-{agent}.jsonl"
            cell = await self._execute(task, agent, strategy, path)
            if endpoint_failed(cell.reason):
                failed.append(f"{agent} on {task.id}: {cell.reason}")
                return f"{agent} endpoint failure on {task.id}"
            store.add(cell)
            return f"{agent} {'passed' if cell.passed else 'failed'} {task.id}"

        await self._bounded(pending, work, "matrix")
        if failed:
            raise EndpointFailure(
                f"{len(failed)} execution(s) ended on an endpoint failure and were not recorded "
                f"(rerun to retry them): {failed[0]}"
            )

    # ------------------------------------------------------------------ weights

    def fit_examples(self, settings: AuctionSettings | None = None) -> list[FitExample]:
        """One example per training task: its original bids' features (from the round
        under ``settings``, default the main ones) and who succeeded."""
        key = round_key(settings) if settings else self.main_key
        examples = []
        for task in self.train:
            hit = self.rounds.get(key, task.id)
            if hit is None or not self.matrix.is_complete(task.id):
                continue
            bids = {
                b.agent: BidFeatures(
                    price=self.pool[b.agent].unit_price, length=float(b.output_tokens),
                    entropy=b.entropy or 0.0, jury={j: s.score for j, s in b.jury.items()},
                )  # fmt: skip
                for b in hit[0].bids
            }
            ok = {a for a, passed in self.matrix.success(task.id).items() if passed}
            examples.append(FitExample(bids=bids, succeeded=ok, task_id=task.id))
        return examples

    def weights_stage(self) -> Weights:
        """Fitted weights (weights.json, fitted once); the defaults where a fit is impossible.
        First says how many training tasks each agent solves and how many none does."""
        from sale.evaluation.matrix_report import format_training, training_solves

        self.training = training_solves(self.matrix, [t.id for t in self.train])
        self.say(format_training(self.training))
        if "warning" in self.training:
            self.say(f"warning: {self.training['warning']}")
        path = self.out / "weights.json"
        if path.exists():
            weights = Weights.from_file(path)
            self.say(f"weights: read {path}")
        else:
            examples = self.fit_examples()
            weights = self._fit(examples)
            weights.to_file(path)
            weights = Weights.from_file(path)  # as a rerun will read it
            self.say(f"weights: {_fit_summary(weights, len(examples))}")
        weights.check_jurors(self.pool.names)
        return weights

    async def variant_weights(self, variant: Variant, fitted: Weights) -> Weights:
        """The weights ``variant`` auctions with: the defaults, the main ``fitted`` ones,
        or, with ``own_fit`` and rounds of its own, weights fitted on its training rounds
        (rounds computed here where missing; the fit takes well under a second and is
        made again on each run)."""
        if not variant.fitted_weights:
            return self.default_weights
        settings = variant_settings(self.settings, variant)
        if not variant.own_fit or round_key(settings) == self.main_key:
            return fitted
        await self.rounds_stage(settings, self.train, f"{variant.name}, train split")
        return self.fit_on(settings, variant.name)

    def fit_on(self, settings: AuctionSettings, label: str) -> Weights:
        """Weights fitted on the training rounds under ``settings`` (already computed), once
        per round settings and shared by a jury-mode variant and --compare-jury."""
        key = round_key(settings)
        if key not in self._own_fits:
            examples = self.fit_examples(settings)
            self._own_fits[key] = self._fit(examples)
            self.say(f"weights ({label}, its own rounds): {_fit_summary(self._own_fits[key], len(examples))}")
        return self._own_fits[key]

    def _fit(self, examples: list[FitExample]) -> Weights:
        """Weights fitted on ``examples``; the defaults (with the reason) where that fails."""
        try:
            weights = fit_minmax(examples)
        except FitError as exc:
            weights = default_weights(self.pool.names, {a.name: a.unit_price for a in self.pool})
            weights.meta = {"method": "default", "fit_error": str(exc)}
        for name in self.pool.names:  # a juror that never scored gets no say
            weights.w_jury.setdefault(name, 0.0)
        return weights

    # ------------------------------------------------------------------ SALE orderings

    def ordering(self, k: int) -> list[Task]:
        """The k-th seeded permutation of the test tasks."""
        tasks = list(self.test)
        random.Random(f"sale-bench:{self.seed}:{k}").shuffle(tasks)
        return tasks

    async def _winner_execution(self, task: Task, result: AuctionResult) -> tuple[Cell, str]:
        """The winner's execution and where it came from: "matrix", "cache" or "fresh"."""
        from sale.run import safe_name

        if result.winner_kind == ORIGINAL and self.matrix.has(task.id, result.winner):
            return self.matrix.get(task.id, result.winner), "matrix"
        sha = strategy_sha(result.strategy)
        cell = self.executions.get(task.id, result.winner, sha)
        if cell is not None:
            return await self._under_rule(cell), "cache"
        path = self.out / "trajectories" / "refined" / f"{safe_name(task.id)}-{result.winner}-{sha[:12]}.jsonl"
        cell = await self._execute(task, result.winner, result.strategy, path)
        if endpoint_failed(cell.reason):
            raise EndpointFailure(
                f"task '{task.id}': {result.winner}'s execution failed (rerun to retry): {cell.reason}"
            )
        self.executions.put(sha, cell)
        return cell, "fresh"

    def _sale_result(
        self, method: str, k: int, task: Task, result: AuctionResult, usage: list[dict], cell: Cell, source: str
    ) -> TaskResult:
        totals = result.totals()
        if result.gated:  # the gate used the winner's bid of the cached round only
            usage = [{"bid": {result.winner: usage[0].get("bid", {}).get(result.winner, 0)}}, *usage[1:]]
        elif result.original_reused and result.settings.get("jury_pruning") == "exact":
            # A pruned jury read its answers from the cached round: only the calls it asked count.
            asked: dict[str, int] = {}
            for b in result.bids:
                for j, js in b.jury.items() if b.kind == ORIGINAL else ():
                    asked[j] = asked.get(j, 0) + (js.input_tokens + js.output_tokens if js.asked else 0)
            usage = [{**usage[0], "jury": asked}, *usage[1:]]
        largest_tokens = sum(per.get(self.largest, 0) for u in usage for per in u.values())
        if cell.agent == self.largest:
            largest_tokens += cell.tokens
        return TaskResult(
            task_id=task.id, tier_name=task.tier_name, domain=task.domain, method=method,
            agent=result.winner, passed=bool(cell.passed), dollars=totals.dollars + cell.dollars,
            tokens=totals.tokens + cell.tokens, largest_used=result.winner == self.largest,
            largest_tokens=int(largest_tokens), overhead_tokens=totals.tokens, overhead_wall_s=totals.wall_s,
            wall_s=totals.wall_s + cell.wall_s, reused=source != "fresh", tier=task.tier, ordering=k,
        )  # fmt: skip

    async def run_ordering(self, variant: Variant, weights: Weights, k: int, progress=None) -> list[dict]:
        """Stream the k-th ordering through the variant's auction; its result records.

        ``sale/<method>/ordering-<k>.jsonl`` gets an ``auction`` line as soon as an
        auction is done and a ``result`` line once its winner's execution is known, so
        a rerun neither repeats an auction nor an execution.
        """
        folder = self.out / "sale" / variant.name
        path = folder / f"ordering-{k}.jsonl"
        auctions: dict[str, dict] = {}
        results: dict[str, dict] = {}
        for rec in read_jsonl(path):
            (auctions if rec.get("kind") == "auction" else results)[rec.get("task_id")] = rec
        order = self.ordering(k)
        if all(t.id in results for t in order):
            return [results[t.id] for t in order]
        settings = variant_settings(self.settings, variant)
        memory = None
        if variant.memory:
            from sale.memory.store import SQLiteMemory

            memory = SQLiteMemory(folder / f"memory-{k}.sqlite", self.embedder)
        auction = Auction(self.pool, memory, settings, weights)
        ledger = self.pool.ledger
        try:
            with JsonlWriter(path) as out:
                for task in order:
                    if task.id in results:
                        continue
                    rec = auctions.get(task.id)
                    if rec is None:
                        original, round_usage = await self.round_for(settings, task)
                        if not settings.no_memory:
                            await self._start()  # refinement may call the agents
                        mark = len(ledger.entries)
                        result = await auction.run(task, self._env_desc(task), original=original)
                        _check_endpoints(task, result.dropped[len(original.dropped):])
                        rec = {
                            "kind": "auction", "task_id": task.id, "auction": result.to_dict(),
                            "round_usage": round_usage, "usage": _usage(ledger.entries[mark:], task.id),
                        }  # fmt: skip
                        out.write(rec)
                    result = AuctionResult.from_dict(rec["auction"])
                    cell, source = await self._winner_execution(task, result)
                    if memory is not None:
                        memory.set_outcome(task.id, cell.passed)
                    usage = [rec["round_usage"], rec["usage"]]
                    tr = self._sale_result(variant.name, k, task, result, usage, cell, source)
                    line = {
                        "kind": "result", "task_id": task.id, "result": tr.to_dict(), "execution": source,
                        "winner": result.winner, "winner_kind": result.winner_kind,
                        "provisional_winner": result.provisional_winner, "refined": result.refinement.ran,
                        "phases": {p: s.to_dict() for p, s in result.phases.items()},
                    }  # fmt: skip
                    out.write(line)
                    results[task.id] = line
                    if progress:
                        verdict = "passed" if cell.passed else "failed"
                        progress.update(progress.done + 1, f"ordering {k}: {result.winner} {verdict}")
        finally:
            if memory is not None:
                memory.close()
        return [results[t.id] for t in order]

    async def run_variant(self, variant: Variant, weights: Weights, orderings: int) -> VariantRun:
        """Every ordering of one SALE variant (its own rounds first, where they differ)."""
        settings = variant_settings(self.settings, variant)
        if round_key(settings) != self.main_key:
            await self.rounds_stage(settings, self.test, f"{variant.name}, test split")
        folder = self.out / "sale" / variant.name
        done = 0
        for k in range(orderings):
            done += sum(1 for r in read_jsonl(folder / f"ordering-{k}.jsonl") if r.get("kind") == "result")
        total = orderings * len(self.test)
        self.say(f"{variant.name}: {done} of {total} auctions done over {orderings} orderings, {total - done} to run")
        progress = self._progress(total - done, variant.name)
        lines: list[list[dict]] = []
        try:
            for k in range(orderings):
                lines.append(await self.run_ordering(variant, weights, k, progress))
        finally:
            if progress:
                progress.close()
        results, winners = [], []
        phases = {p: PhaseStats() for p in PHASES}
        executions: Counter = Counter()
        for ordering in lines:
            winners.append([line["winner"] for line in ordering])
            for line in ordering:
                results.append(TaskResult.from_dict(line["result"]))
                executions[line["execution"]] += 1
                for p, stats in line["phases"].items():
                    phases.setdefault(p, PhaseStats()).merge(PhaseStats.from_dict(stats))
        return VariantRun(results, winners, phases, executions, auctions=sum(len(o) for o in lines))

    # ------------------------------------------------------------------ baselines

    def baselines_stage(self) -> tuple[dict[str, list[TaskResult]], dict[str, str]]:
        """Every baseline and single agent on the test split, read from the matrix."""
        from sale.routers.baselines import evaluate_router, make_baseline

        results: dict[str, list[TaskResult]] = {}
        skipped: dict[str, str] = {}
        for name in BASELINE_METHODS:
            router = make_baseline(name, **({"seed": self.seed} if name == "random" else {}))
            try:
                router.fit(self.train, self.matrix)
            except ConfigError as exc:
                skipped[name] = str(exc)
                continue
            results[name] = evaluate_router(router, self.test, self.matrix, method=name)
        taken = set(results) | set(BASELINE_METHODS) | {v.name for v in ALL_VARIANTS}
        for agent in self.pool.by_price():
            method = agent.name if agent.name not in taken else f"single:{agent.name}"
            router = make_baseline(f"single:{agent.name}").fit(self.train, self.matrix)
            results[method] = evaluate_router(router, self.test, self.matrix, method=method)
        note = f", skipped {', '.join(skipped)}" if skipped else ""
        self.say(f"baselines: {len(results)} methods read from the outcome matrix{note}")
        return results, skipped

    # ------------------------------------------------------------------ jury modes

    def _provisional(self, settings: AuctionSettings, weights: Weights, rnd: Round) -> str:
        auction = Auction(self.pool, None, settings, weights)
        bids = [auction.score(b) for b in rnd.copy().bids]
        return auction.best(bids).agent

    async def compare_jury_stage(self, weights: Weights) -> dict[str, Any]:
        """The original bids scored in both jury modes: cost per mode, agreement, and how
        well each mode's provisional winner does (its cell of the outcome matrix), with
        weights fitted on each mode's own training rounds."""
        main = self.settings.jury_mode
        other = "per_bid" if main == "batched" else "batched"
        other_settings = AuctionSettings.from_dict({**self.settings.model_dump(), "jury_mode": other})
        modes = {main: self.settings, other: other_settings}
        await self.rounds_stage(modes[other], [*self.train, *self.test], f"{other} jury")
        fitted = {main: weights, other: self.fit_on(other_settings, f"{other} jury")}
        per_mode: dict[str, Any] = {}
        winners: dict[str, list[str]] = {}
        n = len(self.test)
        largest = self.matrix.largest
        for mode, settings in modes.items():
            bid, jury = PhaseStats(), PhaseStats()
            winners[mode] = []
            for task in self.test:
                rnd, _ = await self.round_for(settings, task)
                bid.merge(rnd.phases.get("bid", PhaseStats()))
                jury.merge(rnd.phases.get("jury", PhaseStats()))
                winners[mode].append(self._provisional(settings, fitted[mode], rnd))
            passed = [self.matrix.success(t.id).get(w, False) for t, w in zip(self.test, winners[mode])]
            per_mode[mode] = {
                "provisional_winner_pass_rate": sum(passed) / n,
                "provisional_winner_largest_share": winners[mode].count(largest) / n,
                "jury_calls_per_task": jury.calls / n,
                "jury_tokens_per_task": jury.tokens / n,
                "jury_dollars_per_task": jury.dollars / n,
                "jury_wall_s_per_task": jury.wall_s / n,
                "round_tokens_per_task": (bid.tokens + jury.tokens) / n,
                "round_dollars_per_task": (bid.dollars + jury.dollars) / n,
                "round_wall_s_per_task": (bid.wall_s + jury.wall_s) / n,
            }
        same = sum(a == b for a, b in zip(winners[main], winners[other])) / n
        self.say(
            "jury modes: "
            + "; ".join(
                f"{m}: {s['jury_calls_per_task']:.1f} calls, {s['jury_tokens_per_task']:.0f} tokens, "
                f"${s['jury_dollars_per_task']:.3g}, {s['jury_wall_s_per_task']:.2f} s per task, "
                f"provisional winner passes {s['provisional_winner_pass_rate']:.0%}"
                for m, s in per_mode.items()
            )
            + f"; same provisional winner on {same:.0%} of {n} tasks"
        )
        return {
            "main": main,
            "modes": per_mode,
            "same_provisional_winner": same,
            "tasks": n,
            "note": "The same original bids, scored by each mode's jury; provisional winners with weights fitted on "
            "that mode's training rounds, graded by their cell of the outcome matrix (no refinement). "
            "Jury wall time is measured per task while other tasks' rounds may run alongside (--parallel).",
        }

    async def pruning_check_stage(self, weights: Weights) -> dict[str, Any]:
        """Every test task's cached round decided by the pruned jury and by the whole jury
        (fitted weights, no refinement): how often the provisional winners differ (0 when
        pruning is exact) and the jury calls, tokens and dollars each would pay."""
        n = len(self.test)
        out: dict[str, Any] = {"tasks": n}
        winners: dict[str, list[str]] = {}
        for mode in ("exact", "off"):
            settings = AuctionSettings.from_dict({**self.settings.model_dump(), "jury_pruning": mode})
            auction = Auction(self.pool, None, settings, weights)
            jury, winners[mode] = PhaseStats(), []
            for task in self.test:
                rnd, _ = await self.round_for(self.settings, task)
                if not rnd.bids:
                    winners[mode].append("")
                    continue
                result = await auction.run(task, self._env_desc(task), original=rnd)
                jury.merge(result.phases["jury"])
                winners[mode].append(result.provisional_winner)
            name = "pruned" if mode == "exact" else "full"
            out[f"jury_calls_per_task_{name}"] = jury.calls / max(n, 1)
            out[f"jury_tokens_per_task_{name}"] = jury.tokens / max(n, 1)
            out[f"jury_dollars_per_task_{name}"] = jury.dollars / max(n, 1)
        out["winner_differs"] = sum(a != b for a, b in zip(winners["exact"], winners["off"]))
        self.say(
            f"jury pruning: {out['jury_calls_per_task_pruned']:.1f} jury calls per task against "
            f"{out['jury_calls_per_task_full']:.1f}; the provisional winner differs on {out['winner_differs']} of {n} tasks"
        )
        return out

    # ------------------------------------------------------------------ the whole bench

    async def run(
        self, *, orderings: int = 5, ablations: bool = False, compare_jury: bool = False,
        variants: Sequence[str] | None = None, matrix_only: bool = False,
    ) -> dict[str, Any]:
        """Every stage; writes the report and returns the summary.json contents.

        ``variants`` names the SALE variants to run (default: the core ones, and the
        ablations with ``ablations``). ``matrix_only`` stops after the outcome matrix:
        the report holds the baselines and single agents read from it, no SALE
        variant; executions without a plan (``plan: none``) then need no bids, so no
        round is computed."""
        from sale.evaluation.report import write_report

        if orderings < 1:
            raise ConfigError(f"orderings must be at least 1, got {orderings}")
        own_orderings = variant_orderings(variants or ())
        chosen = [] if matrix_only else select_variants(None if variants is None else list(own_orderings), ablations)
        tiers = sorted({(t.domain, t.tier, t.tier_name) for t in self.tasks})
        self.say(
            f"workload: {len(self.tasks)} tasks (train {len(self.train)}, test {len(self.test)}) over "
            f"{len(tiers)} tiers; pool {', '.join(f'{a.name} ${a.unit_price:g}/M' for a in self.pool.by_price())}"
        )
        runs: dict[str, VariantRun] = {}
        own: dict[str, Weights] = {}
        jury = pruning = weights = None
        try:
            if not (matrix_only and self.execution.plan == "none"):
                await self.rounds_stage(self.settings, self.tasks, f"{self.settings.jury_mode} jury, all tasks")
            await self.matrix_stage()
            if not matrix_only:
                weights = self.weights_stage()
                for v in chosen:
                    own[v.name] = await self.variant_weights(v, weights)
                for variant in chosen:
                    count = own_orderings.get(variant.name) or orderings
                    runs[variant.name] = await self.run_variant(variant, own[variant.name], count)
            baseline_results, skipped = self.baselines_stage()
            if not matrix_only:
                jury = await self.compare_jury_stage(weights) if compare_jury else None
                pruning = await self.pruning_check_stage(weights) if not self.settings.no_jury else None
        finally:
            if self.judge is not None:
                await self.judge.close()
            self.close()

        results: dict[str, list[TaskResult]] = {name: run.results for name, run in runs.items()}
        results.update(baseline_results)
        summary = summarise(results, largest="largest", oracle="oracle", seed=self.seed)
        if matrix_only:
            extra = self._matrix_only_extra(skipped)
        else:
            extra = self._extra(runs, weights, skipped, chosen, orderings, jury, own)
            extra["splits"]["orderings_by_variant"] = {name: len(run.winners) for name, run in runs.items()}
        extra.update(self._matrix_extra())
        extra["jury_pruning"] = pruning
        paths = write_report(self.out, summary, results, extra)
        self.say(f"report: {paths['html']}")
        return json.loads(paths["summary"].read_text(encoding="utf-8"))

    def _extra(
        self,
        runs: dict[str, VariantRun],
        weights: Weights,
        skipped: dict[str, str],
        variants: list[Variant],
        orderings: int,
        jury: dict | None,
        own: dict[str, Weights],
    ) -> dict[str, Any]:
        smallest = self.pool.cheapest.name
        overhead = {}
        for name, run in runs.items():
            spent_tokens = sum(r.tokens for r in run.results)
            spent_dollars = sum(r.dollars for r in run.results)
            spent_wall = sum(r.wall_s for r in run.results)
            n = max(run.auctions, 1)
            overhead[name] = {
                p: {
                    "calls_per_task": s.calls / n,
                    "tokens_per_task": s.tokens / n,
                    "dollars_per_task": s.dollars / n,
                    "wall_s_per_task": s.wall_s / n,
                    "cached_tokens_per_task": s.cached_tokens / n,
                    "skipped_calls_per_task": s.skipped / n,
                    "token_share": s.tokens / spent_tokens if spent_tokens else None,
                    "dollar_share": s.dollars / spent_dollars if spent_dollars else None,
                    "wall_share": s.wall_s / spent_wall if spent_wall else None,
                }
                for p, s in run.phases.items()
            }
        reused = {
            "original_rounds": "Bids and jury scores of original bids were computed once per task (rounds.jsonl) "
            "and shared by every ordering and SALE variant; each auction is still charged their full cost "
            "(with exact jury pruning: the bid calls and the jury calls the pruned jury asked, whose answers "
            "it read from the cached whole jury).",
            "variant_rounds": {
                v.name: ("original bids reused; no jury calls and none charged" if v.overrides.get("no_jury")
                         else "original bids reused; its jury ("
                         + ", ".join(f"{k}={x}" for k, x in v.overrides.items() if k in ("jury", "jury_mode"))
                         + ") scored them in calls of its own")
                for v in variants if {"no_jury", "jury", "jury_mode"} & set(v.overrides)
            },  # fmt: skip
            "executions": {
                name: {
                    "from_matrix": run.executions.get("matrix", 0),
                    "from_earlier_refined_execution": run.executions.get("cache", 0),
                    "fresh": run.executions.get("fresh", 0),
                }
                for name, run in runs.items()
            },
            "note": "A winner that kept its original bid reuses that agent's outcome-matrix execution (same agent, "
            "strategy and task); a refined winning bid is executed afresh once per (task, agent, strategy) and "
            "shared by orderings and variants. Every baseline is read from the outcome matrix; frugalgpt pays for "
            "every agent its cascade ran.",
        }
        wins = {}
        for name, run in runs.items():
            halves = []
            for w in run.winners:
                mid = len(w) // 2
                first, second = w[:mid], w[mid:]
                halves.append(
                    (sum(a == smallest for a in first) / len(first) if first else None,
                     sum(a == smallest for a in second) / len(second) if second else None)
                )  # fmt: skip
            wins[name] = {
                "first_half": _mean([h[0] for h in halves]),
                "second_half": _mean([h[1] for h in halves]),
            }
        main = "sale" if "sale" in runs else next(iter(runs))  # the stream the plots follow
        return {
            "title": "SALE bench",
            "notes": reused["original_rounds"] + " " + reused["note"],
            "sale_method": main,
            "agents": [a.name for a in self.pool.by_price()],
            "smallest_agent": smallest,
            "winners": runs[main].winners,
            "smallest_agent_wins": wins,
            "splits": self._splits(orderings),
            "weights": {
                "fitted": weights.to_dict(), "default": self.default_weights.to_dict(),
                # variants fitted on their own rounds (another jury mode)
                "own_fit": {v.name: own[v.name].to_dict() for v in variants if v.own_fit and own[v.name] is not weights},
            },
            "reused": reused,
            "auction_overhead": overhead,
            "jury_modes": jury,
            "skipped": skipped,
            "variants": {v.name: v.doc for v in variants},
            "config": self._config(),
        }

    def _splits(self, orderings: int | None) -> dict[str, Any]:
        by_tier = Counter(t.tier_name for t in self.test)
        return {
            "train": len(self.train),
            "test": len(self.test),
            "test_by_tier": dict(sorted(by_tier.items())),
            "train_by_tier": dict(sorted(Counter(t.tier_name for t in self.train).items())),
            "orderings": orderings,
            "seed": self.seed,
        }

    def _config(self) -> dict[str, Any]:
        return {
            "pool": {a.name: a.unit_price for a in self.pool.by_price()},
            "auction": self.settings.model_dump(),
            "limits": asdict(self.limits),
            "action_format": self.action_format,
            "execution": self.execution.model_dump(),
            "embedder": getattr(self.embedder, "name", type(self.embedder).__name__),
            "parallel": self.parallel,
        }

    def _matrix_only_extra(self, skipped: dict[str, str]) -> dict[str, Any]:
        """The report's entries for a bench stopped after the outcome matrix."""
        return {
            "title": "SALE bench: the outcome matrix and the routers read from it (no SALE variant run)",
            "notes": "Every baseline and single agent is read from the outcome matrix; rerun without "
            "--matrix-only to run the SALE variants on this folder.",
            "agents": [a.name for a in self.pool.by_price()],
            "smallest_agent": self.pool.cheapest.name,
            "splits": self._splits(None),
            "skipped": skipped,
            "config": self._config(),
        }

    def _matrix_extra(self) -> dict[str, Any]:
        """The report's matrix entries (training solves, single agents per tier, search
        tiers under each rule) and the rule search answers were passed by."""
        from sale.evaluation.matrix_report import matrix_extra

        return {**matrix_extra(self.matrix, [t.id for t in self.train]),
                "grading": {"rule": str(self.rule) if self.rule is not None else None}}  # fmt: skip

    def close(self) -> None:
        self.rounds.close()
        self.executions.close()
        if self.matrix_store is not None:
            self.matrix_store.close()


def _check_endpoints(task: Task, dropped: Sequence[Any]) -> None:
    """Raise EndpointFailure when an agent dropped out because its endpoint failed."""
    bad = [d for d in dropped if endpoint_failed(d.reason)]
    if bad:
        shown = "; ".join(f"{d.agent} ({d.role}): {d.reason}" for d in bad[:3])
        raise EndpointFailure(f"task '{task.id}': endpoint failure, not cached (rerun to retry): {shown}")


def _mean(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return sum(vals) / len(vals) if vals else None


async def run_bench(
    pool: Pool,
    tasks_train: Sequence[Task],
    tasks_test: Sequence[Task],
    out_dir: str | Path,
    envs: dict[str, Environment],
    *,
    orderings: int = 5,
    seed: int = 0,
    ablations: bool = False,
    variants: Sequence[str] | None = None,
    jury_mode: str | None = None,
    compare_jury: bool = False,
    parallel: int = 1,
    settings: AuctionSettings | None = None,
    limits: Limits | None = None,
    action_format: str | None = None,
    embedder: Embedder | None = None,
    pull_missing: bool = False,
    say: Say = _stderr,
    progress: bool = True,
    grade: str | None = None,
    execution: dict[str, Any] | None = None,
    matrix_only: bool = False,
) -> dict[str, Any]:
    """Run the bench into ``out_dir`` and return the contents of its summary.json.

    ``pool`` is started on the first LLM call if it is not already (the caller stops
    it). ``settings`` default to the pool file's ``auction:`` section, ``limits`` and
    ``action_format`` to its ``execution:`` section. ``parallel`` bounds concurrent
    rounds and matrix executions (SALE streams run one task at a time: memory makes
    order matter). ``execution`` overrides settings of the pool's ``execution:`` section
    (``{"mode": "direct"}`` builds the outcome matrix from direct answers).
    ``matrix_only`` stops after the outcome matrix (see `Bench.run`).
    """
    bench = Bench(
        pool, tasks_train, tasks_test, out_dir, envs, settings=settings, jury_mode=jury_mode,
        limits=limits, action_format=action_format, parallel=parallel, seed=seed, embedder=embedder,
        pull_missing=pull_missing, say=say, progress=progress, grade=grade, execution=execution,
    )  # fmt: skip
    return await bench.run(
        orderings=orderings, ablations=ablations, compare_jury=compare_jury, variants=variants, matrix_only=matrix_only
    )


# ----------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sale bench``."""
    from sale.workloads.standard import DEFAULT_PER_TIER

    add = parser.add_argument
    add("--out", required=True, help="bench folder: caches, summary.json and report.html (a rerun resumes it)")
    add("--pool", help="pool file (default: the local ladder)")
    add("--data-dir", help="benchmark data folder: the standard workload is drawn from it (unless --tasks is "
        "given) and search tasks use its document collection")
    add("--tasks", nargs="+", help="FORMAT:PATH or project JSONL task files instead of the standard workload")
    add("--documents", nargs="*", default=[], help="JSONL files of {id, title, text} for search tasks")
    add("--limit", type=int, help="with --tasks: at most this many tasks from each source")
    add("--per-tier", type=int, default=DEFAULT_PER_TIER,
        help=f"standard workload: tasks per tier (default {DEFAULT_PER_TIER})")
    add("--test-fraction", type=float, default=0.5, help="share of each tier in the test split (default 0.5)")
    add("--orderings", type=int, default=5, help="task orderings SALE is replayed over (default 5)")
    add("--seed", type=int, default=0, help="seed of the workload draw, split, orderings and random baseline")
    add("--ablations", action="store_true",
        help="also run SALE without price, length, entropy or jury, and with self or peer review only")
    add("--variants", type=lambda text: [v.strip() for v in text.split(",") if v.strip()],
        help="comma-separated SALE variants to run, e.g. sale,sale-no-memory; NAME:N replays that variant over "
        "N orderings instead of --orderings, e.g. sale,sale-memory-value:3 (default: "
        + ", ".join(v.name for v in CORE_VARIANTS) + ", and the ablations with --ablations; "
        + ", ".join(v.name for v in JURY_VARIANTS + OUTCOME_VARIANTS) + " only when named)")
    add("--jury-mode", choices=("batched", "per_bid"),
        help="jury mode of the auction (default: the pool file's, else per_bid)")
    add("--compare-jury", action="store_true",
        help="also score the original bids in the other jury mode (weights fitted on its own training rounds) "
        "and compare the two: cost, agreement, and how often each mode's provisional winner passes")
    add("--parallel", type=int, default=1, help="rounds and matrix executions run at once (default 1)")
    add("--embedder", default="lexical", help="auction memory embedder: lexical (default) or minilm")
    add("--grade", metavar="RULE", help="pass rule of search answers: em, match (default), f1:T or judge; on a "
        "folder graded under another rule the executions are reused and passed again")
    add("--no-pull", dest="pull", action="store_false", help="do not fetch missing models")
    add("--constrain", choices=("auto", "grammar", "json_schema", "off"),
        help="constrain each executor step to the actions (default: the pool file's execution.constrain, else auto)")
    add("--execution-mode", choices=("agent", "direct"),
        help="how every execution runs: the tool-using loop (agent) or one direct answer (default: the pool file's, else agent)")
    add("--execution-plan", choices=("after", "before", "none"),
        help="where the executing agent's plan goes in its prompt (default: the pool file's, else after the task)")
    add("--execution-start", choices=("direct", "loop"),
        help="how a coding or search loop starts: from one direct answer (direct) or with the agent's first action (loop) "
             "(default: the pool file's, else direct)")
    add("--matrix-only", action="store_true",
        help="stop after the outcome matrix: report the baselines and single agents read from it, run no SALE "
             "variant (with --execution-plan none no bids are asked for); a later run without it goes on")


def load_workload(args: argparse.Namespace) -> tuple[list[Task], list[Path], str]:
    """The tasks, extra document files and a description, from the command line."""
    from sale.workloads.loaders import load_tasks
    from sale.workloads.standard import demo_workload, standard_workload

    if args.tasks:
        tasks = [t for spec in args.tasks for t in load_tasks(spec, limit=args.limit)]
        return tasks, [Path(p) for p in args.documents], f"{len(args.tasks)} task file(s)"
    if args.data_dir:
        tasks = standard_workload(args.data_dir, per_tier=args.per_tier, seed=args.seed)
        return tasks, [Path(p) for p in args.documents], f"standard workload from {args.data_dir}"
    tasks, documents = demo_workload()
    return tasks, [documents, *map(Path, args.documents)], "the demo workload (--data-dir or --tasks for another)"


def run_from_args(args: argparse.Namespace) -> int:
    """``sale bench``: load the workload and pool, run every stage, print the table."""
    from sale.config import default_pool_path
    from sale.llm.ledger import Ledger
    from sale.memory.embedders import get_embedder
    from sale.run import build_environments
    from sale.workloads.loaders import task_folders
    from sale.workloads.standard import split

    tasks, documents, what = load_workload(args)
    train, test = split(tasks, test_fraction=args.test_fraction, seed=args.seed)
    _stderr(f"{what}: {len(tasks)} tasks")
    # the --tasks files hold the hidden tests: model-written code must not see them (as under sale run)
    envs = build_environments(tasks, data_dir=args.data_dir, documents=documents, hide_paths=task_folders(args.tasks or []))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pool_path = args.pool or default_pool_path()
    embedder = get_embedder(args.embedder)

    async def go() -> dict[str, Any]:
        pool = Pool.from_file(pool_path, ledger=Ledger(out / "ledger.jsonl"))
        if args.constrain:
            pool.config.execution["constrain"] = args.constrain
        try:
            return await run_bench(
                pool, train, test, out, envs, orderings=args.orderings, seed=args.seed,
                ablations=args.ablations, variants=args.variants, jury_mode=args.jury_mode, compare_jury=args.compare_jury,
                parallel=args.parallel, embedder=embedder, pull_missing=args.pull, grade=args.grade,
                execution={k: v for k in ("mode", "plan", "start") if (v := getattr(args, f"execution_{k}", None))},
                matrix_only=args.matrix_only,
            )  # fmt: skip
        finally:
            await pool.stop()
            pool.ledger.close()

    from sale.evaluation.report import format_extra, format_summary

    summary = asyncio.run(go())
    print(format_summary(summary["methods"]))
    if extra := format_extra(summary.get("extra", {})):
        print("\n" + extra)
    print(f"summary: {out / 'summary.json'}\nreport: {out / 'report.html'}")
    return 0
