"""The weights of the auction's scoring rule, their defaults, files and fitting.

A bid s_i of agent a_i is scored (method.md)::

    C_i = w_c * price_i * len_i                      price in $ per million tokens
    V_i = w_h * H_i + sum_j w_j * gamma_j(s_i)       H: mean token entropy, gamma: 0..5
          (+ w_m * m_i with ``auction: memory_value``: m_i in 0..1, the bidder's past
          success on similar tasks, see sale.auction.outcomes_memory)
    winner = argmin_i (C_i - V_i)

`Weights` holds w = (w_c, w_h, w_1..w_n) and computes these terms; it is read from and
written to a small JSON file. `default_weights` gives the cold-start weights used
before any fitting. `fit_minmax` and `fit_average` fit the weights on training tasks
whose outcome is known for every agent (see `FitExample`): the target of a task is the
cheapest agent that succeeded, or the most expensive agent when none did, and the fit
asks that the target's C - V be the lowest of the task's bids.

Both fits are linear programs in w, because C - V is linear in w: for a task with
target agent g and another agent a, the constraint score_g + margin <= score_a
reads d . w <= -margin with d = phi_g - phi_a and phi = (price * len, -H, -gamma_1,
..., -gamma_n, -m), m the memory term the bid had when its auction ran (0 and unfitted,
w_memory None, where no example carries one). Each feature is divided by its standard deviation over the training
bids before fitting, so the box on the weights and the margin are in comparable
units (one unit = one standard deviation of that term); the returned weights are
converted back to the raw units the auction uses.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sale.errors import ConfigError, SaleError

#: Cold-start entropy weight: each nat of mean token entropy counts as one jury point
#: against the bid (an unsure plan is a risky plan).
DEFAULT_W_ENTROPY = -1.0
#: Cold-start cost weight when prices are not given: a 250-token bid at $0.36/M (the
#: paper's largest agent) costs 0.9 jury points, at $0.05/M 0.125 points.
DEFAULT_W_COST = 0.01
#: Cold-start memory weight (``memory_value``): m going from 0 to 1 counts like the
#: jury's mean score going from 0 to 5.
DEFAULT_W_MEMORY = 5.0
#: Typical bid length in tokens, used to put the cost term on the jury's scale.
TYPICAL_BID_TOKENS = 250


class FitError(SaleError):
    """The weights cannot be fitted from the given examples (says why)."""


def _number(value: object, where: str) -> float:
    try:
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        ok = False
    if not ok:
        raise ConfigError(f"{where} must be a finite number, got {str(value)[:40]!r}")
    return float(value)


def _jury_values(jury: Mapping[str, float | None], jurors: Sequence[str]) -> list[float]:
    """Scores by ``jurors``, in order; a missing score is the mean of the bid's others."""
    known = [float(jury[j]) for j in jurors if jury.get(j) is not None]
    fill = sum(known) / len(known) if known else 0.0
    return [float(jury[j]) if jury.get(j) is not None else fill for j in jurors]


@dataclass
class Weights:
    """w = (w_cost, w_entropy, one jury weight per juror); ``meta`` records provenance.

    ``w_memory`` weighs the memory term (used only with ``auction: memory_value``);
    None: not given (not fitted, or fitted without the term), `w_m` is then the
    cold-start DEFAULT_W_MEMORY."""

    w_cost: float
    w_entropy: float
    w_jury: dict[str, float]
    meta: dict = field(default_factory=dict)
    w_memory: float | None = None

    @property
    def w_m(self) -> float:
        """The memory weight the auction uses."""
        return DEFAULT_W_MEMORY if self.w_memory is None else self.w_memory

    # -- the scoring rule -------------------------------------------------

    def cost(self, price: float, length: float) -> float:
        """C = w_c * price ($ per million tokens) * length (tokens)."""
        return self.w_cost * price * length

    def value(self, entropy: float | None, jury: Mapping[str, float | None], memory: float | None = None) -> float:
        """V = w_h * H + sum_j w_j * gamma_j.

        ``jury`` maps juror name to score; a juror with a weight but no score is given
        the mean of the bid's other scores (a failed jury call neither helps nor hurts).
        A juror without a weight raises ConfigError. ``entropy`` None (an endpoint
        without log-probabilities) contributes nothing, as does ``memory`` None (the
        memory term off).
        """
        unknown = sorted(set(jury) - set(self.w_jury))
        if unknown:
            raise ConfigError(
                f"weights have no jury weight for juror(s) {', '.join(unknown)} "
                f"(weighted jurors: {', '.join(sorted(self.w_jury)) or 'none'})"
            )
        jurors = sorted(self.w_jury)
        gammas = _jury_values(jury, jurors) if jury else [0.0] * len(jurors)
        entropy_term = self.w_entropy * entropy if entropy is not None else 0.0
        memory_term = self.w_m * memory if memory is not None else 0.0
        return entropy_term + memory_term + sum(self.w_jury[j] * g for j, g in zip(jurors, gammas))

    def score(
        self, price: float, length: float, entropy: float | None, jury: Mapping[str, float | None],
        memory: float | None = None,
    ) -> float:
        """C - V: lower is better."""
        return self.cost(price, length) - self.value(entropy, jury, memory)

    def check_jurors(self, names: Sequence[str]) -> None:
        """Raise ConfigError unless every juror in ``names`` has a weight."""
        missing = [n for n in names if n not in self.w_jury]
        if missing:
            raise ConfigError(f"weights have no jury weight for {', '.join(missing)}; refit or use default weights")

    # -- files ------------------------------------------------------------

    def to_dict(self) -> dict:
        data = {"w_cost": self.w_cost, "w_entropy": self.w_entropy, "w_jury": dict(self.w_jury)}
        if self.w_memory is not None:
            data["w_memory"] = self.w_memory
        if self.meta:
            data["meta"] = self.meta
        return data

    @classmethod
    def from_dict(cls, data: object, source: str = "weights") -> Weights:
        """Validate ``data``; errors name ``source`` and the field at fault."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object with w_cost, w_entropy, w_jury")
        allowed = {"w_cost", "w_entropy", "w_jury", "meta", "w_memory"}
        for key in data:
            if key not in allowed:
                raise ConfigError(
                    f"{source}: unknown field '{key}' (expected w_cost, w_entropy, w_jury, w_memory, meta)"
                )
        for key in ("w_cost", "w_entropy", "w_jury"):
            if key not in data:
                raise ConfigError(f"{source}: field '{key}' is missing")
        jury = data["w_jury"]
        if not isinstance(jury, dict):
            raise ConfigError(f"{source}: field 'w_jury' must be an object mapping juror name to weight")
        meta = data.get("meta", {})
        if not isinstance(meta, dict):
            raise ConfigError(f"{source}: field 'meta' must be an object")
        return cls(
            w_cost=_number(data["w_cost"], f"{source}: field 'w_cost'"),
            w_entropy=_number(data["w_entropy"], f"{source}: field 'w_entropy'"),
            w_jury={str(k): _number(v, f"{source}: field 'w_jury.{k}'") for k, v in jury.items()},
            meta=meta,
            w_memory=None if data.get("w_memory") is None else _number(data["w_memory"], f"{source}: field 'w_memory'"),
        )

    def to_file(self, path: str | Path) -> None:
        """Write the weights as JSON (atomically: a reader never sees half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(self.to_dict(), fh, indent=2, sort_keys=True)
                fh.write("\n")
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)

    @classmethod
    def from_file(cls, path: str | Path) -> Weights:
        """Read a weights file; a missing or malformed file raises ConfigError."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read weights file ({exc.strerror or exc})") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start + 1})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
        except (ValueError, RecursionError) as exc:  # a huge number, deep nesting
            raise ConfigError(f"{path}: not usable JSON ({exc})") from None
        return cls.from_dict(data, str(path))


def default_weights(
    agent_names: Sequence[str],
    prices: Mapping[str, float] | None = None,
    *,
    typical_bid_tokens: float = TYPICAL_BID_TOKENS,
) -> Weights:
    """Cold-start weights, on the scale of one jury point.

    - Jury: every juror weighs 1/n, so the jury term is the mean score (0..5).
    - Entropy: -1, so each nat of mean token entropy costs one jury point (high
      entropy is an unsure plan and counts against the bid).
    - Cost: price ($/M tokens) * length (tokens) is about 12 for a 250-token bid at
      $0.05/M and 90 at $0.36/M. With ``prices``, w_c makes the most expensive
      agent's typical bid (``typical_bid_tokens``) cost exactly one jury point;
      without, w_c = 0.01 (0.9 points for that bid at the paper's top price).

    So a larger agent wins when its bid's jury mean is higher by more than its extra
    cost, about one point at most.
    """
    names = list(agent_names)
    if not names:
        raise ConfigError("default_weights: the pool has no agents")
    w_cost = DEFAULT_W_COST
    if prices:
        top = max(float(prices[n]) for n in names if n in prices) if any(n in prices for n in names) else 0.0
        if top > 0:
            w_cost = 1.0 / (top * typical_bid_tokens)
    return Weights(
        w_cost=w_cost,
        w_entropy=DEFAULT_W_ENTROPY,
        w_jury={n: 1.0 / len(names) for n in names},
        meta={"method": "default"},
    )


# ---------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BidFeatures:
    """What the scoring rule sees of one bid."""

    price: float  # dollars per million tokens
    length: float  # bid length in tokens
    entropy: float  # mean per-token entropy (nats)
    jury: Mapping[str, float]  # juror name -> score 0..5
    memory: float | None = None  # the memory term m (0..1) when the auction ran; None: off


@dataclass
class FitExample:
    """One training task: every agent's bid features and which agents succeeded.

    ``target`` overrides the rule of `target_agent` when given.
    """

    bids: Mapping[str, BidFeatures]
    succeeded: frozenset[str] | set[str] = frozenset()
    task_id: str = ""
    target: str | None = None

    def target_agent(self) -> str:
        """The cheapest agent that succeeded, else the most expensive agent."""
        if not self.bids:
            raise FitError(f"task '{self.task_id}': no bids")
        if self.target is not None:
            if self.target not in self.bids:
                raise FitError(f"task '{self.task_id}': target '{self.target}' has no bid")
            return self.target
        winners = [a for a in self.bids if a in self.succeeded]
        if winners:
            return min(winners, key=lambda a: (self.bids[a].price, a))
        return max(self.bids, key=lambda a: (self.bids[a].price, a))


@dataclass(frozen=True)
class FitBounds:
    """Box on the weights, in units of one standard deviation of each term.

    A scaled weight of 1 means the term can move a bid's score by one standard
    deviation of that feature over the training bids. Cost and jury weights default
    to non-negative (a higher price never helps, a higher jury score never hurts);
    the entropy weight's sign is left to the fit. The memory weight is non-negative
    (a better record on similar tasks never hurts).
    """

    cost: tuple[float, float] = (0.0, 1.0)
    entropy: tuple[float, float] = (-1.0, 1.0)
    jury: tuple[float, float] = (0.0, 1.0)
    memory: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        for name in ("cost", "entropy", "jury", "memory"):
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
                raise ConfigError(f"fit bounds: '{name}' must be a finite (low, high) with low <= high, got {(lo, hi)}")


def select(weights: Weights, bids: Mapping[str, BidFeatures]) -> str:
    """The agent whose bid has the lowest C - V (ties: cheaper price, then name)."""
    return min(bids, key=lambda a: (weights.score(bids[a].price, bids[a].length, bids[a].entropy, bids[a].jury,
                                                  bids[a].memory), bids[a].price, a))


def selection_accuracy(weights: Weights, examples: Sequence[FitExample]) -> float:
    """Share of examples where the weights select the target agent."""
    if not examples:
        return 0.0
    return sum(select(weights, ex.bids) == ex.target_agent() for ex in examples) / len(examples)


@dataclass
class _Problem:
    """The fitting problem in scaled units: one difference row per (task, other agent)."""

    jurors: list[str]
    diffs: np.ndarray  # (rows, p): phi_target - phi_other, scaled
    task_of_row: np.ndarray  # (rows,) index of the task each row belongs to
    n_tasks: int
    scale: np.ndarray  # (p,) feature standard deviations
    bounds: list[tuple[float, float]]  # (p,) box on the scaled weights
    memory: bool = False  # some bid has a memory term (the last feature)


def _phi(bid: BidFeatures, jurors: Sequence[str]) -> list[float]:
    return [bid.price * bid.length, -bid.entropy, *(-g for g in _jury_values(bid.jury, jurors)), -(bid.memory or 0.0)]


def _problem(examples: Sequence[FitExample], bounds: FitBounds) -> _Problem:
    if not examples:
        raise FitError("no training examples")
    jurors = sorted({j for ex in examples for b in ex.bids.values() for j in b.jury})
    all_phi: list[list[float]] = []
    rows: list[np.ndarray] = []
    task_of_row: list[int] = []
    n_tasks = 0
    for ex in examples:
        target = ex.target_agent()
        phis = {a: np.array(_phi(b, jurors)) for a, b in ex.bids.items()}
        all_phi.extend(phis.values())
        others = [a for a in ex.bids if a != target]
        if not others:
            continue  # a task with one bidder constrains nothing
        for a in others:
            rows.append(phis[target] - phis[a])
            task_of_row.append(n_tasks)
        n_tasks += 1
    if not rows:
        raise FitError("no training task has more than one bid")
    phi_mat = np.array(all_phi)
    if not np.all(np.isfinite(phi_mat)):
        raise FitError("bid features contain NaN or infinite values")
    scale = phi_mat.std(axis=0)
    scale[~(scale > 1e-12)] = 1.0
    diffs = np.array(rows) / scale
    box = [bounds.cost, bounds.entropy] + [bounds.jury] * len(jurors) + [bounds.memory]
    # A feature that never differs between bids of a task carries no signal: weight 0.
    silent = np.all(np.abs(diffs) < 1e-12, axis=0)
    box = [(0.0, 0.0) if silent[i] else box[i] for i in range(len(box))]
    memory = any(b.memory is not None for ex in examples for b in ex.bids.values())
    return _Problem(jurors, diffs, np.array(task_of_row), n_tasks, scale, box, memory)


def _weights(prob: _Problem, w_scaled: np.ndarray, meta: dict) -> Weights:
    w = np.asarray(w_scaled[: len(prob.scale)]) / prob.scale
    return Weights(
        w_cost=float(w[0]),
        w_entropy=float(w[1]),
        w_jury={j: float(w[2 + i]) for i, j in enumerate(prob.jurors)},
        meta=meta,
        w_memory=float(w[2 + len(prob.jurors)]) if prob.memory else None,
    )


def _minmax_lp(prob: _Problem, rows: np.ndarray) -> tuple[np.ndarray, float]:
    """Weights maximising the smallest margin over ``rows`` (min of max violation t)."""
    from scipy.optimize import linprog

    d = prob.diffs[rows]
    p = d.shape[1]
    c = np.zeros(p + 1)
    c[-1] = 1.0
    a_ub = np.hstack([d, -np.ones((len(d), 1))])  # d . w - t <= 0
    res = linprog(c, A_ub=a_ub, b_ub=np.zeros(len(d)), bounds=[*prob.bounds, (None, None)], method="highs")
    if res.status != 0:
        raise FitError(f"min-max LP failed: {res.message}")
    return res.x[:p], float(res.x[-1])


@contextlib.contextmanager
def _native_stdout_silenced() -> Iterator[None]:
    """Send file descriptor 1 to /dev/null for the duration (HiGHS's MIP solver can
    print debugging lines from native code that no option turns off)."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _fewest_errors_mip(prob: _Problem, margin: float, big_m: float | None, time_limit: float) -> tuple[np.ndarray, str]:
    """Mask of tasks a box weight can get right by ``margin``, as many as possible.

    Binary z_t gives up task t: d_r . w - M_r z_t <= -margin for each row r of t,
    minimise sum z_t. M_r defaults to the tightest valid bound, margin plus the
    largest |d_r . w| over the box; ``big_m`` fixes one constant (the paper: 1e4).
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    d, tasks, n = prob.diffs, prob.task_of_row, prob.n_tasks
    p = d.shape[1]
    reach = np.array([max(abs(lo), abs(hi)) for lo, hi in prob.bounds])
    m = np.full(len(d), float(big_m)) if big_m is not None else margin + np.abs(d) @ reach
    z_block = np.zeros((len(d), n))
    z_block[np.arange(len(d)), tasks] = -m
    constraint = LinearConstraint(np.hstack([d, z_block]), -np.inf, -margin)
    lo = [b[0] for b in prob.bounds] + [0.0] * n
    hi = [b[1] for b in prob.bounds] + [1.0] * n
    with _native_stdout_silenced():
        res = milp(
            c=np.concatenate([np.zeros(p), np.ones(n)]),
            constraints=[constraint],
            integrality=np.concatenate([np.zeros(p), np.ones(n)]),
            bounds=Bounds(lo, hi),
            options={"time_limit": time_limit, "disp": False},
        )
    if res.x is None:
        raise FitError(f"fewest-errors MIP found no solution: {res.message}")
    status = "optimal" if res.status == 0 else "time limit (best found)"
    return res.x[p:] < 0.5, status


def fit_minmax(
    examples: Sequence[FitExample],
    bounds: FitBounds = FitBounds(),
    *,
    margin: float = 0.01,
    big_m: float | None = None,
    time_limit: float = 60.0,
) -> Weights:
    """Fit w so the target wins on the worst task (robust, the paper's choice).

    1. LP: minimise t subject to score_target - score_other <= t for every task and
       other agent, w in the box, t free; that maximises the smallest winning margin.
       If the worst margin is at least ``margin`` (scaled units), every task is right
       and this is the answer.
    2. Otherwise a single task no weights can get right would dictate the min-max
       solution, so a mixed-integer program (big-M, HiGHS) first finds the largest
       set of tasks that can be won by ``margin``, giving up as few as possible
       (the number of wrong tasks is minimised; ``time_limit`` seconds, after which
       the best set found is used).
    3. LP again: the min-max over the tasks kept.

    ``meta`` records the method, the share of tasks right, the tasks given up and the
    worst margin over the kept tasks (in scaled units).
    """
    prob = _problem(examples, bounds)
    every_row = np.arange(len(prob.diffs))
    w, t = _minmax_lp(prob, every_row)
    meta: dict = {"method": "minmax", "tasks": prob.n_tasks, "tasks_given_up": 0}
    if t >= -1e-9:  # some task is not strictly won
        keep_task, status = _fewest_errors_mip(prob, margin, big_m, time_limit)
        meta["tasks_given_up"] = int((~keep_task).sum())
        meta["mip"] = status
        rows = every_row[keep_task[prob.task_of_row]]
        if len(rows):
            w, t = _minmax_lp(prob, rows)
    meta["worst_margin"] = -t
    weights = _weights(prob, w, meta)
    weights.meta["train_accuracy"] = selection_accuracy(weights, examples)
    return weights


def fit_average(
    examples: Sequence[FitExample],
    bounds: FitBounds = FitBounds(),
    *,
    margin: float = 0.1,
) -> Weights:
    """Fit w minimising the mean hinge loss over tasks (the average-loss alternative).

    Each task's loss is max(0, margin + score_target - min over other agents of
    score_other), in scaled units; the LP minimises the mean loss, w in the box.
    Unlike `fit_minmax`, a few hard tasks cannot dominate, but many easy ones can
    outvote a rare kind of task.
    """
    from scipy.optimize import linprog

    prob = _problem(examples, bounds)
    d, tasks, n = prob.diffs, prob.task_of_row, prob.n_tasks
    p = d.shape[1]
    slack = np.zeros((len(d), n))
    slack[np.arange(len(d)), tasks] = -1.0  # d . w - xi_t <= -margin
    c = np.concatenate([np.zeros(p), np.full(n, 1.0 / n)])
    res = linprog(
        c,
        A_ub=np.hstack([d, slack]),
        b_ub=np.full(len(d), -margin),
        bounds=[*prob.bounds] + [(0.0, None)] * n,
        method="highs",
    )
    if res.status != 0:
        raise FitError(f"average-loss LP failed: {res.message}")
    weights = _weights(prob, res.x, {"method": "average", "tasks": n, "mean_hinge": float(res.fun)})
    weights.meta["train_accuracy"] = selection_accuracy(weights, examples)
    return weights
