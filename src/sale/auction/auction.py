"""The strategy auction for one task (method.md, steps 1-7).

    auction = Auction(pool, memory, settings, weights)
    result = await auction.run(task, env.describe(task))
    result.winner, result.strategy, result.to_dict()

1. Every agent bids a short strategy (bids.py) and the jury scores the bids
   (jury.py): this is the *original round*, which depends only on the task and the
   call settings, so `original_round` computes it alone and `run(original=...)` reuses
   it (an evaluation shares it between task orderings).
2. Each bid is scored: C_i = w_c * pi(a_i) * |s_i| and
   V_i = w_h * H(s_i) + sum_j w_j * gamma_j(s_i). The provisional winner has the
   lowest C - V (ties: the cheaper agent, then pool order).
3. If the provisional winner is not the cheapest agent of the pool, every agent
   cheaper than it retrieves the k most similar past auctions from memory and, if it
   finds contrastive pairs there, writes a refined bid (refine.py). Refined bids are
   scored the same way (the jury scores them in a stage of their own; with the batched
   jury the provisional winner's bid is judged again beside them, as the reference).
   The best refined bid wins if its C - V is lower than the provisional winner's (the
   reference's, where there is one).
4. The auction is stored in memory; the execution's outcome is added later with
   ``memory.set_outcome``.

Beyond the paper, both off by default (outcomes_memory.py): ``memory_value`` adds
w_m * m_i to each bid's value, m_i the bidder's observed success on similar past
tasks (a known term, like entropy, for exact pruning); ``gate`` sends a task whose
nearest past tasks were all passed by one agent to that agent, with its bid only.

With ``jury_pruning: exact`` (the default) the jury of steps 1 and 3 asks only the
calls that can still change the winner (pruning.py): the provisional winner among the
original bids, then the final winner among the refined bids and the bar (the
provisional winner's bid, whose jurors not yet asked may be asked then; with the
batched jury, the reference judged beside the refined bids). The winners are the
whole jury's; skipped scores are recorded with why and imputed for the record. A
reused original round holds the whole jury; the pruned jury reads the answers of the
calls it asks from it and is charged for those only (`Replay`). Over a stream the
memory stores each bid's C - V with skipped scores imputed, so a later refinement may
be shown other contrastive pairs (the strongest losing bid is chosen by C - V) than
under the whole jury.

Where the method is silent (ours):

- With jury="self" or "peer" each bid's jury term is the weighted sum over the jurors
  who scored it, times (sum of all jury weights) / (sum of the included weights): the
  weighted mean score times the full jury weight, so the term keeps the magnitude it
  has with the whole jury and the fitted or default weights stay meaningful.
- no_price uses the pool's mean price for everyone (not 1), keeping the cost term's
  scale; the refinement gate ("not the cheapest", "cheaper agents") always uses real
  prices, so each ablation changes only the term it names.
- An agent that fails (a call error, an empty bid) drops out of that role only and is
  recorded; if no bid is left, AuctionError.
- A bid without log-probabilities (an endpoint that does not return them) has entropy
  None, recorded as such, and its entropy term is 0.
- The refined bids' jury calls count in the "jury" phase (as in the ledger), the
  refine calls themselves in "refine".
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sale.auction.bids import collect_bids
from sale.auction.jury import Verdict, ask_jury, dropouts, impute, included, injection_sign, rule_reason, score_bids
from sale.auction.pruning import Candidate, Pruner, Request, run_pruned
from sale.auction.record import (
    ORIGINAL,
    REFINED,
    AuctionError,
    AuctionResult,
    Dropout,
    JuryScore,
    PhaseStats,
    Refinement,
    Round,
    ScoredBid,
)
from sale.auction.outcomes_memory import GateDecision, gate_decision, memory_terms
from sale.auction.refine import Pair, refine_bids
from sale.auction.settings import AuctionSettings
from sale.auction.weights import Weights, default_weights
from sale.llm.ledger import ledger_tags
from sale.llm.pool import Agent, Pool
from sale.memory.store import MemoryStore, contrastive_pairs
from sale.workloads.task import Task


def load_weights(pool: Pool, settings: AuctionSettings, weights: Weights | None = None) -> Weights:
    """The given weights, else the settings' weights file, else the cold-start defaults;
    checked to have a jury weight for every agent of the pool.

    A relative weights_file is read relative to the pool file it was written in.
    """
    if weights is None:
        path = settings.weights_path()
        if path is not None:
            source = Path(pool.source)
            if not path.is_absolute() and source.is_file():
                path = source.parent / path
            weights = Weights.from_file(path)
        else:
            weights = default_weights(pool.names, {a.name: a.unit_price for a in pool})
    weights.check_jurors(pool.names)
    return weights


_USAGE = ("input_tokens", "cached_tokens", "output_tokens", "dollars", "latency_s")


@dataclass
class Replay:
    """The whole jury's scores of a cached original round (bid key -> juror -> score),
    served to a pruned jury in place of calls: only the calls it asks are charged
    (their recorded usage), and the round's jury wall time in proportion to their
    recorded latency (``wall_per_latency``: the round's jury wall time over the sum of
    its calls' latencies)."""

    scores: Mapping[str, Mapping[str, JuryScore]]
    wall_per_latency: float = 0.0

    @classmethod
    def of(cls, rnd: Round) -> Replay:
        scores = {b.key: dict(b.jury) for b in rnd.bids}
        latency = sum(js.latency_s for jury in scores.values() for js in jury.values())
        wall = rnd.phases["jury"].wall_s if "jury" in rnd.phases else 0.0
        return cls(scores, wall / latency if latency > 0 else 0.0)

    def has(self, key: str, juror: str) -> bool:
        js = self.scores.get(key, {}).get(juror)
        return js is not None and js.asked


class Auction:
    """Runs auctions over one pool, with a memory (None: never refine or store)."""

    def __init__(
        self,
        pool: Pool,
        memory: MemoryStore | None = None,
        settings: AuctionSettings | None = None,
        weights: Weights | None = None,
    ):
        self.pool = pool
        self.memory = memory
        self.settings = settings or AuctionSettings()
        self.weights = load_weights(pool, self.settings, weights)
        self._order = {name: i for i, name in enumerate(pool.names)}

    # ------------------------------------------------------------------ scoring

    def price_of(self, agent: str) -> float:
        """pi(a) as the cost term sees it (the pool's mean price under no_price)."""
        if self.settings.no_price:
            return sum(a.unit_price for a in self.pool) / len(self.pool)
        return self.pool[agent].unit_price

    def jury_term(self, bid: ScoredBid) -> float:
        """sum_j w_j * gamma_j over the jurors who scored the bid, rescaled when the
        jury is a subset (see the module docstring)."""
        if self.settings.no_jury or not bid.jury:
            return 0.0
        w = self.weights.w_jury
        term = sum(w[j] * s.score for j, s in bid.jury.items())
        if self.settings.jury != "all":
            full = sum(w[name] for name in self.pool.names)
            part = sum(w[j] for j in bid.jury)
            if part != 0:
                term *= full / part
        return term

    def score(self, bid: ScoredBid) -> ScoredBid:
        """Fill in price, length, cost, value and total (C - V) of ``bid``."""
        s = self.settings
        bid.price = self.price_of(bid.agent)
        bid.length = 1.0 if s.no_length else float(bid.output_tokens)
        bid.cost = self.weights.cost(bid.price, bid.length)
        w_h = 0.0 if s.no_entropy else self.weights.w_entropy
        bid.jury_term = self.jury_term(bid)
        bid.memory_term = self.memory_term(bid)
        bid.value = w_h * (bid.entropy or 0.0) + bid.jury_term + bid.memory_term
        bid.total = bid.cost - bid.value
        return bid

    def memory_term(self, bid: ScoredBid) -> float:
        """w_m * m_i with ``memory_value`` on (m_i set on the bid by `run`), else 0."""
        if not self.settings.memory_value or bid.memory is None:
            return 0.0
        return self.weights.w_m * bid.memory

    def weighted(self) -> set[str]:
        """Jurors of nonzero weight: only their scores stand in for a missing one (jury.py)."""
        return {j for j in self.pool.names if self.weights.w_jury.get(j, 0.0) != 0}

    def reimpute(self, bids: Sequence[ScoredBid]) -> None:
        """Impute the whole jury's missing scores of ``bids`` again from the jurors of
        nonzero weight (a round is scored before any weights are known)."""
        rows = [{j: None if js.imputed else js.score for j, js in b.jury.items()} for b in bids]
        for b, filled in zip(bids, impute(rows, self.weighted())):
            b.jury = {j: replace(js, score=filled[j][0]) if js.imputed else js for j, js in b.jury.items()}

    @property
    def pruning(self) -> bool:
        """Whether the jury is pruned exactly (see pruning.py)."""
        return self.settings.jury_pruning == "exact" and not self.settings.no_jury

    def candidate(self, bid: ScoredBid) -> Candidate:
        """``bid`` as the pruner sees it: C - V = base - sum_j c_j * gamma_j, with the
        same terms as `score` (c_j: the juror's weight times the subset rescaling)."""
        s = self.settings
        length = 1.0 if s.no_length else float(bid.output_tokens)
        cost = self.weights.cost(self.price_of(bid.agent), length)
        w_h = 0.0 if s.no_entropy else self.weights.w_entropy
        w = self.weights.w_jury
        jurors = included(bid.agent, self.pool.names, s.jury)
        factor = 1.0
        if s.jury != "all":
            part = sum(w[j] for j in jurors)
            if part != 0:
                factor = sum(w[name] for name in self.pool.names) / part
        coef = {j: 0.0 if s.no_jury else factor * w[j] for j in jurors}
        base = cost - w_h * (bid.entropy or 0.0) - self.memory_term(bid)
        return Candidate(label=bid.key, base=base, coef=coef)

    async def pruned_jury(
        self,
        task_text: str,
        env_desc: str,
        bids: Sequence[ScoredBid],
        stage: str,
        *,
        replay: Replay | None = None,
        counted: Sequence[int] | None = None,
    ) -> tuple[list[Dropout], PhaseStats]:
        """Score ``bids`` with only the jury calls that can change which of them wins
        (pruning.py); sets each bid's ``jury`` (asked and skipped scores) like
        `score_bids`. Scores a bid already has from an earlier stage (``asked``) are
        kept and not asked again. ``replay``: answers of a cached whole jury served
        instead of calls. ``counted``: the bids the whole jury would score in this
        stage (default: all), for the count of skipped calls."""
        s = self.settings
        agents = {a.name: a for a in self.pool}
        cands: list[Candidate] = []
        prior: list[dict[str, JuryScore]] = []
        signs: dict[int, str] = {}
        for i, b in enumerate(bids):
            c = self.candidate(b)
            keep = {j: js for j, js in b.jury.items() if js.asked and j in c.coef}
            for j, js in keep.items():
                c.asked.add(j)
                if not js.imputed:
                    c.known[j] = js.score
            if s.jury_hardening and (sign := injection_sign(b.text)):
                signs[i] = sign
                c.known = {j: 0.0 for j in c.coef}
                c.fixed = True
            cands.append(c)
            prior.append(keep)
        w = self.weights.w_jury
        order = sorted(self.pool.names, key=lambda j: (-abs(w[j]), self._order[j]))
        pruner = Pruner(cands, order, batched=s.jury_mode == "batched")

        verdicts: dict[tuple[int, str], Verdict] = {}
        stats = PhaseStats()
        failures: dict[str, list[str]] = {}
        charged: set[str] = set()  # batched replay: jurors whose whole call was charged

        def replayed(juror: str, idx: list[int]) -> None:
            assert replay is not None
            for i in idx:
                js = replay.scores[bids[i].key][juror]
                verdicts[i, juror] = Verdict(raw=js.raw, used=None if js.imputed else js.score, why=js.reason)
            if s.jury_mode == "per_bid":
                calls = [replay.scores[bids[idx[0]].key][juror]]
            elif juror in charged:
                return
            else:  # the whole call the cached batched juror made
                charged.add(juror)
                calls = [jury[juror] for jury in replay.scores.values() if juror in jury]
            usage = {k: sum(getattr(js, k) for js in calls) for k in _USAGE}
            verdicts[idx[0], juror].usage = usage
            stats.calls += 1
            stats.failed += calls[0].reason == "call failed"
            stats.input_tokens += int(usage["input_tokens"])
            stats.cached_tokens += int(usage["cached_tokens"])
            stats.output_tokens += int(usage["output_tokens"])
            stats.dollars += usage["dollars"]
            stats.wall_s += usage["latency_s"] * replay.wall_per_latency

        async def ask(requests: list[Request]) -> dict[tuple[int, str], float | None]:
            live: list[tuple[Agent, list[int]]] = []
            for juror, idx in requests:
                if replay is not None and all(replay.has(bids[i].key, juror) for i in idx):
                    replayed(juror, idx)
                else:
                    live.append((agents[juror], idx))
            if live:
                got, wave, failed = await ask_jury(live, task_text, env_desc, bids, s)
                verdicts.update(got)
                stats.merge(wave)
                for name, reasons in failed.items():
                    failures.setdefault(name, []).extend(reasons)
            return {(i, j): verdicts[i, j].used for j, idx in requests for i in idx}

        await run_pruned(pruner, ask)

        rows = [{j: c.known.get(j) for j in c.coef} for c in cands]
        filled = impute(rows, self.weighted())
        for i, b in enumerate(bids):
            jury: dict[str, JuryScore] = {}
            for j, (score, imputed) in filled[i].items():
                if i in signs:
                    jury[j] = JuryScore(score=0.0, reason=rule_reason(signs[i]))
                elif j in prior[i]:
                    old = prior[i][j]
                    jury[j] = JuryScore(**{**old.__dict__, "score": score}) if old.imputed else old
                elif (i, j) in verdicts:
                    v = verdicts[i, j]
                    jury[j] = JuryScore(score=score, imputed=imputed, raw=v.raw, reason=v.why, **v.usage)  # type: ignore[arg-type]
                else:
                    jury[j] = JuryScore(score=score, imputed=True, asked=False, skipped=pruner.skip_reason(i, j))
            b.jury = jury
        whole = [i for i in (range(len(bids)) if counted is None else counted) if i not in signs]
        if s.jury_mode == "per_bid":
            full_calls = sum(len(cands[i].coef) for i in whole)
        else:
            full_calls = len({j for i in whole for j in cands[i].coef})
        stats.skipped = full_calls - stats.calls
        return dropouts(failures, stage), stats

    def best(self, bids: Sequence[ScoredBid]) -> ScoredBid:
        """Lowest C - V; ties go to the cheaper agent, then to pool order."""
        return min(bids, key=lambda b: (b.total, self.pool[b.agent].unit_price, self._order[b.agent]))

    # ------------------------------------------------------------------ rounds

    async def original_round(self, task: Task, env_desc: str, *, jury: bool = True) -> Round:
        """Bids of every agent and the whole jury's scores of them (no weights
        involved); ``jury=False``: the bids only (a pruned jury scores them later)."""
        with ledger_tags(task=task.id):
            agents = list(self.pool)
            bids, dropped, bid_stats = await collect_bids(agents, task.prompt, env_desc, self.settings)
            jury_stats = PhaseStats()
            if bids and jury and not self.settings.no_jury:
                jury_dropped, jury_stats = await score_bids(
                    agents, task.prompt, env_desc, bids, self.settings, ORIGINAL
                )
                dropped += jury_dropped
        return Round(
            task_id=task.id, bids=bids, dropped=dropped,
            phases={"bid": bid_stats, "jury": jury_stats}, settings=self.settings.round_key(),
        )  # fmt: skip

    def _check_round(self, task: Task, original: Round) -> Round:
        if original.task_id != task.id:
            raise AuctionError(f"task '{task.id}': the original round given is for task '{original.task_id}'")
        want = self.settings.round_key()
        diff = sorted(k for k in want if original.settings.get(k) != want[k])
        if diff:
            shown = ", ".join(f"{k}={original.settings.get(k)!r} (now {want[k]!r})" for k in diff)
            raise AuctionError(f"task '{task.id}': the original round was made with other settings: {shown}")
        unknown = sorted({b.agent for b in original.bids} - set(self.pool.names))
        if unknown:
            raise AuctionError(f"task '{task.id}': the original round has bids of agents not in the pool: {unknown}")
        return original.copy()

    # ------------------------------------------------------------------ refinement

    def _gather_pairs(self, task: Task, agents: Sequence[Agent], refinement: Refinement) -> dict[str, list[Pair]]:
        assert self.memory is not None
        records = self.memory.nearest(task.prompt, k=self.settings.refine_k, exclude_task_id=task.id)
        refinement.retrieved = [r.task_id for r in records]
        pairs = {
            a.name: contrastive_pairs(records, a.name, require_success=self.settings.refine_require_success)
            for a in agents
        }
        refinement.pairs = {name: len(p) for name, p in pairs.items()}
        return pairs

    async def _refine(
        self, task: Task, env_desc: str, provisional: ScoredBid, phases: dict[str, PhaseStats], dropped: list[Dropout],
        originals: list[ScoredBid], replay: Replay | None = None,
    ) -> tuple[Refinement, list[ScoredBid], ScoredBid | None]:
        """Refined bids of the agents cheaper than the provisional winner, scored by the
        jury, and the reference (see `Refinement`): with the batched jury the provisional
        winner's bid is judged again beside the refined bids, so that each juror scores
        challengers and the bid they must beat on one scale (judged alone, a plan gets
        scores a juror would not give it beside others)."""
        refinement = Refinement()
        winner_price = self.pool[provisional.agent].unit_price
        cheaper = [a for a in self.pool if a.unit_price < winner_price]
        refinement.agents = [a.name for a in cheaper]
        if self.settings.no_memory:
            refinement.reason = "no_memory ablation"
        elif self.memory is None:
            refinement.reason = "no memory store"
        elif not cheaper:
            refinement.reason = "the provisional winner is the cheapest agent"
        if refinement.reason:
            return refinement, [], None
        pairs = self._gather_pairs(task, cheaper, refinement)
        if not any(pairs.values()):
            refinement.reason = "no contrastive pairs in memory for the cheaper agents"
            return refinement, [], None
        refinement.ran = True
        refinement.reason = "the provisional winner is not the cheapest agent"
        own = {b.agent: b.text for b in originals}
        bids, refine_dropped, stats = await refine_bids(cheaper, task.prompt, env_desc, pairs, self.settings, own)
        remembered = {b.agent: b.memory for b in originals}
        for b in bids:  # the memory term is the bidder's, whichever bid it writes
            b.memory = remembered.get(b.agent)
        phases["refine"] = stats
        dropped += refine_dropped
        refinement.refined = [b.agent for b in bids]
        reference = None
        if bids and self.pruning:
            served = None
            if self.settings.jury_mode == "batched":
                reference = ScoredBid.from_dict({**provisional.to_dict(), "jury": {}})
                judged, counted = [reference, *bids], None
            else:  # the provisional winner's unasked jurors may be asked now
                judged, counted = [provisional, *bids], range(1, len(bids) + 1)
                if replay is not None:
                    served = Replay({provisional.key: replay.scores.get(provisional.key, {})}, replay.wall_per_latency)
            jury_dropped, jury_stats = await self.pruned_jury(
                task.prompt, env_desc, judged, REFINED, replay=served, counted=counted
            )
            dropped += jury_dropped
            phases["jury"].merge(jury_stats)
        elif bids and not self.settings.no_jury:
            judged = bids
            if self.settings.jury_mode == "batched":
                reference = ScoredBid.from_dict({**provisional.to_dict(), "jury": {}})
                judged = [reference, *bids]
            jury_dropped, jury_stats = await score_bids(
                list(self.pool), task.prompt, env_desc, judged, self.settings, REFINED
            )
            dropped += jury_dropped
            self.reimpute(judged)
            phases["jury"].merge(jury_stats)
        return refinement, bids, reference

    # ------------------------------------------------------------------ the auction

    def gate(self, task: Task) -> GateDecision | None:
        """The gate's decision for ``task`` (None: the gate is off)."""
        g = self.settings.gate
        if g is None:
            return None
        prices = {a.name: a.unit_price for a in self.pool}
        return gate_decision(
            self.memory, task.id, task.prompt, prices,
            k=g.k, min_similarity=g.min_similarity, min_agreement=g.min_agreement, explore=g.explore,
        )  # fmt: skip

    def _memory_evidence(self, task: Task, bids: Sequence[ScoredBid]) -> dict | None:
        """Set each bid's m_i (``memory_value``) and return the evidence for the record."""
        if not self.settings.memory_value:
            return None
        s = self.settings
        terms = memory_terms(self.memory, task.prompt, self.pool.names, k=s.memory_k, strength=s.memory_prior,
                             exclude=task.id)  # fmt: skip
        for b in bids:
            b.memory = terms[b.agent].value
        return {
            "k": s.memory_k, "prior_strength": s.memory_prior, "w_memory": self.weights.w_m,
            "agents": {a: t.to_dict() for a, t in terms.items()},
        }  # fmt: skip

    async def _gated(
        self, task: Task, env_desc: str, decision: GateDecision, original: Round | None, started: float
    ) -> AuctionResult | None:
        """The auction of a gated task: the agreed agent's bid only, no jury (None: its
        bid failed, and the full auction runs)."""
        agent = decision.agent
        assert agent is not None
        bid_stats = PhaseStats()
        if original is not None:  # its bid from the cached round, charged as one call
            rnd = self._check_round(task, original)
            bids = [b for b in rnd.bids if b.agent == agent]
            whole = rnd.phases.get("bid", PhaseStats())
            if bids:
                b = bids[0]
                per_call_input = whole.input_tokens // whole.calls if whole.calls else 0
                bid_stats = PhaseStats(calls=1, input_tokens=per_call_input, output_tokens=b.output_tokens,
                                       dollars=b.dollars, wall_s=whole.wall_s)  # fmt: skip
            dropped = [d for d in rnd.dropped if d.agent == agent and d.role == "bidder"]
        else:
            bids, dropped, bid_stats = await collect_bids([self.pool[agent]], task.prompt, env_desc, self.settings)
        if not bids:
            decision.reason += "; its bid failed, so the full auction ran"
            return None
        bid = bids[0]
        bid.jury = {}
        evidence = self._memory_evidence(task, [bid])
        self.score(bid)
        result = AuctionResult(
            task_id=task.id, bids=[bid], provisional_winner=agent, winner=agent, winner_kind=bid.kind,
            refinement=Refinement(reason="gated: no auction"), dropped=list(dropped),
            phases={"bid": bid_stats, "jury": PhaseStats(), "refine": PhaseStats()},
            settings=self.settings.model_dump(), weights=self.weights.to_dict(),
            original_reused=original is not None, memory_value=evidence, gate=decision.to_dict(),
        )  # fmt: skip
        if self.memory is not None:
            self.memory.add(result.memory_record(task.prompt))
        result.wall_s = time.perf_counter() - started
        return result

    async def run(self, task: Task, env_desc: str, *, original: Round | None = None) -> AuctionResult:
        """One auction of ``task``; reuses ``original`` (a Round of this task) if given."""
        started = time.perf_counter()
        decision = self.gate(task)
        if decision is not None and decision.gated:
            with ledger_tags(task=task.id):
                gated = await self._gated(task, env_desc, decision, original, started)
            if gated is not None:
                return gated
            decision.gated = False
        with ledger_tags(task=task.id):
            reused = original is not None
            if reused:
                rnd = self._check_round(task, original)
            else:
                rnd = await self.original_round(task, env_desc, jury=not self.pruning)
            bids = rnd.bids
            dropped = list(rnd.dropped)
            phases = {name: PhaseStats.from_dict(p.to_dict()) for name, p in rnd.phases.items()}
            phases.setdefault("bid", PhaseStats())
            phases.setdefault("jury", PhaseStats())
            phases.setdefault("refine", PhaseStats())
            if not bids:
                reasons = "; ".join(f"{d.agent}: {d.reason}" for d in dropped if d.role == "bidder") or "no agents"
                raise AuctionError(f"task '{task.id}': no bid survived ({reasons})")
            evidence = self._memory_evidence(task, bids)
            replay = None
            if self.pruning:
                if reused:  # the cached whole jury answers the calls the pruned jury asks
                    replay = Replay.of(rnd)
                    for b in bids:
                        b.jury = {}
                jury_dropped, phases["jury"] = await self.pruned_jury(
                    task.prompt, env_desc, bids, ORIGINAL, replay=replay
                )
                dropped += jury_dropped
            else:
                self.reimpute(bids)
            for b in bids:
                self.score(b)
            provisional = self.best(bids)
            refinement, refined, reference = await self._refine(
                task, env_desc, provisional, phases, dropped, bids, replay
            )
            for b in refined:
                self.score(b)
            self.score(provisional)  # a pruned per-bid jury may have asked more of its jurors
            bar = provisional.total
            if reference is not None:
                self.score(reference)
                bar = reference.total
                refinement.reference = {
                    "jury": {j: s.score for j, s in reference.jury.items()},
                    "jury_term": reference.jury_term, "total": reference.total,
                }  # fmt: skip
            final = provisional
            if refined:
                challenger = self.best(refined)
                if challenger.total < bar:
                    final = challenger
            result = AuctionResult(
                task_id=task.id,
                bids=bids + refined,
                provisional_winner=provisional.agent,
                winner=final.agent,
                winner_kind=final.kind,
                refinement=refinement,
                dropped=dropped,
                phases=phases,
                settings=self.settings.model_dump(),
                weights=self.weights.to_dict(),
                original_reused=reused,
                memory_value=evidence,
                gate=decision.to_dict() if decision is not None else None,
            )
            if self.memory is not None:
                self.memory.add(result.memory_record(task.prompt))
        result.wall_s = time.perf_counter() - started
        return result
