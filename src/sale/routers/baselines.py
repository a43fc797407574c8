"""Baseline routers, trained on the outcome matrix of the training split.

Each baseline picks one agent per task from the task alone (its text), except the oracle
(which reads the test outcomes, by definition) and FrugalGPT (a cascade that runs
agents from the cheapest up until a scorer accepts an answer). They implement the
`Router` interface, so the evaluation treats them like the auction:

- ``single:<agent>`` and ``largest``: always the same agent.
- ``random``: a uniformly random agent, reproducible per (seed, task id).
- ``oracle``: the cheapest agent that passed the task (the cheapest when none did).
- ``wtp``: k nearest training tasks (cosine over task-text embeddings) estimate each
  agent's success probability q; choose argmax of wtp * q - mean dollars of the agent
  (RouterBench's willingness-to-pay trade-off).
- ``carrot``: per agent, a logistic model predicts quality and a ridge model predicts
  dollars from the task text; choose argmax of q - lambda * dollars / max mean dollars.
- ``to-router``: a multi-label classifier (one logistic output per agent) predicts which
  agents pass; route to the cheapest predicted to pass with probability >= threshold,
  else to the largest.
- ``frugalgpt``: run agents from cheapest to most expensive; a scorer trained on the
  training answers (task text, answer text, agent) accepts or rejects each answer; the
  last agent's answer is always accepted. It pays for every agent it runs.

Training targets come from the matrix: a task's label for an agent is whether its cell
passed. Learned models are plain numpy/scipy (L-BFGS logistic regression, closed-form
ridge, kNN by dot products) over `LexicalEmbedder` features of the task text.

`evaluate_router(router, test_tasks, matrix)` reads each routed task's outcome from the
matrix (for FrugalGPT, every cell of its cascade) and returns `TaskResult`s.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from scipy import linalg, optimize

from sale.errors import ConfigError, SaleError
from sale.evaluation.matrix import Cell, OutcomeMatrix, TaskInfo
from sale.evaluation.metrics import TaskResult
from sale.memory.embedders import Embedder, LexicalEmbedder
from sale.routers.base import Decision, register


class RouterNotFitted(SaleError):
    """A learned router was asked to route before `fit`."""


# ---------------------------------------------------------------------------
# Small learners
# ---------------------------------------------------------------------------


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class LogisticModel:
    """Binary logistic regression with an L2 penalty (bias not penalised), fitted by L-BFGS.

    Minimises mean log-loss + (l2 / 2) * |w|^2. With one class only in the labels, it
    predicts that class's smoothed rate (n_pos + 1) / (n + 2) for every input.
    """

    def __init__(self, l2: float = 1e-4, max_iter: int = 300):
        self.l2 = float(l2)
        self.max_iter = int(max_iter)
        self.w: np.ndarray | None = None
        self.b = 0.0
        self._constant: float | None = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> LogisticModel:
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        n, d = X.shape
        pos = float(y.sum())
        if pos == 0 or pos == n:
            self._constant = (pos + 1) / (n + 2)
            self.w, self.b = np.zeros(d), 0.0
            return self
        self._constant = None

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w, b = theta[:-1], theta[-1]
            z = X @ w + b
            # log(1 + e^z) - y z, computed stably
            value = np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * self.l2 * float(w @ w)
            r = (_sigmoid(z) - y) / n
            grad = np.empty_like(theta)
            grad[:-1] = X.T @ r + self.l2 * w
            grad[-1] = r.sum()
            return value, grad

        theta0 = np.zeros(d + 1)
        theta0[-1] = np.log(pos / (n - pos))
        res = optimize.minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": self.max_iter})
        self.w, self.b = res.x[:-1], float(res.x[-1])
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.w is None:
            raise RouterNotFitted("LogisticModel: fit before predicting")
        X = np.asarray(X, dtype=float)
        if self._constant is not None:
            return np.full(X.shape[0], self._constant)
        return _sigmoid(X @ self.w + self.b)


class RidgeModel:
    """Ridge regression with an unpenalised intercept, solved in closed form."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = float(alpha)
        self.w: np.ndarray | None = None
        self.b = 0.0

    def fit(self, X: np.ndarray, y: np.ndarray) -> RidgeModel:
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        mx, my = X.mean(axis=0), y.mean()
        Xc, yc = X - mx, y - my
        n, d = Xc.shape
        if n <= d:  # dual form: w = X^T (X X^T + a I)^-1 y
            K = Xc @ Xc.T + self.alpha * np.eye(n)
            self.w = Xc.T @ linalg.solve(K, yc, assume_a="pos")
        else:
            A = Xc.T @ Xc + self.alpha * np.eye(d)
            self.w = linalg.solve(A, Xc.T @ yc, assume_a="pos")
        self.b = float(my - mx @ self.w)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.w is None:
            raise RouterNotFitted("RidgeModel: fit before predicting")
        return np.asarray(X, dtype=float) @ self.w + self.b


class TextFeatures:
    """Embeds a task's domain and prompt with an embedder, caching rows by task id."""

    def __init__(self, embedder: Embedder | None = None):
        self.embedder = embedder or LexicalEmbedder()
        self._cache: dict[str, np.ndarray] = {}

    @staticmethod
    def text(task: TaskInfo) -> str:
        return f"{task.domain}: {task.prompt}" if task.domain else task.prompt

    def __call__(self, tasks: Sequence[TaskInfo]) -> np.ndarray:
        todo = [t for t in tasks if t.id not in self._cache]
        if todo:
            rows = self.embedder.embed([self.text(t) for t in todo])
            for t, row in zip(todo, rows):
                self._cache[t.id] = np.asarray(row, dtype=float)
        if not tasks:
            return np.zeros((0, self.embedder.dim))
        return np.stack([self._cache[t.id] for t in tasks])


# ---------------------------------------------------------------------------
# The common base
# ---------------------------------------------------------------------------


def _info(task: Any, matrix: OutcomeMatrix | None = None) -> TaskInfo:
    """A TaskInfo from a Task, a TaskInfo, or a task id looked up in ``matrix``."""
    if isinstance(task, str):
        if matrix is None:
            raise ConfigError(f"task id '{task}' given without an outcome matrix to look it up")
        return matrix.task(task)
    return TaskInfo.of(task)


class MatrixRouter:
    """Base of the baselines: `fit` on training cells, `choose` an agent per task.

    `route` wraps `choose` in a `Decision` (baselines have no strategy text). Subclasses
    implement `_fit(tasks, matrix)` (tasks: the complete training tasks) and `choose`.
    """

    name = "baseline"
    learned = False

    def __init__(self) -> None:
        self.agents: list[str] = []
        self.by_price: list[str] = []
        self.prices: dict[str, float] = {}
        self.fitted = False

    @property
    def largest(self) -> str:
        self._check_fitted()
        return self.by_price[-1]

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RouterNotFitted(f"router '{self.name}': call fit(train_tasks, matrix) before routing")

    def fit(self, train_tasks: Iterable[Any], matrix: OutcomeMatrix) -> MatrixRouter:
        """Learn from the cells of ``train_tasks`` (Tasks, TaskInfos or ids) in ``matrix``.

        Tasks missing a cell for some agent are left out; a learned router with no
        complete training task raises ConfigError.
        """
        self.agents = list(matrix.agents)
        self.by_price = list(matrix.by_price)
        self.prices = dict(matrix.prices)
        tasks = []
        for t in train_tasks:
            info = _info(t, matrix)
            if info.id in matrix and matrix.is_complete(info.id):
                if not info.prompt:  # a bare id: take the stored fields
                    info = matrix.task(info.id)
                tasks.append(info)
        if self.learned and not tasks:
            raise ConfigError(f"router '{self.name}': no training task has a cell for every agent")
        self._fit(tasks, matrix)
        self.fitted = True
        return self

    def _fit(self, tasks: list[TaskInfo], matrix: OutcomeMatrix) -> None:
        pass

    def choose(self, task: Any) -> str:
        """The agent this router sends ``task`` to."""
        raise NotImplementedError

    async def route(self, task: Any, env: Any = None) -> Decision:
        agent = self.choose(task)
        return Decision(agent=agent, strategy="", info={"router": self.name})

    def observe(self, task: Any, decision: Decision, passed: bool | None) -> None:
        """Baselines do not learn online."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


@register("single")
class SingleAgentRouter(MatrixRouter):
    """Always the same agent (``single:<agent>``; registered as "single" with ``agent=``)."""

    def __init__(self, agent: str):
        super().__init__()
        if not agent:
            raise ConfigError("single-agent router: name the agent, e.g. 'single:small'")
        self.agent = agent
        self.name = f"single:{agent}"
        self.fitted = True  # needs nothing to route

    def _fit(self, tasks: list[TaskInfo], matrix: OutcomeMatrix) -> None:
        if self.agent not in matrix.prices:
            raise ConfigError(f"router '{self.name}': agent '{self.agent}' is not in the pool {matrix.agents}")

    def choose(self, task: Any) -> str:
        return self.agent


@register("largest")
class LargestRouter(MatrixRouter):
    """Always the most expensive agent of the pool."""

    name = "largest"

    def choose(self, task: Any) -> str:
        return self.largest


@register("random")
class RandomRouter(MatrixRouter):
    """A uniformly random agent; the draw depends only on (seed, task id), not on order."""

    name = "random"

    def __init__(self, seed: int = 0):
        super().__init__()
        self.seed = int(seed)

    def choose(self, task: Any) -> str:
        self._check_fitted()
        return random.Random(f"{self.seed}:{_info(task).id}").choice(self.agents)


@register("oracle")
class OracleRouter(MatrixRouter):
    """The cheapest agent that passed the task, read from the outcome matrix.

    Where no agent passed, the cheapest agent (the task is lost whichever runs it). The
    oracle reads the matrix given to `fit` (or to `evaluate_router`), which must hold the
    test tasks' cells.
    """

    name = "oracle"

    def __init__(self) -> None:
        super().__init__()
        self.matrix: OutcomeMatrix | None = None

    def _fit(self, tasks: list[TaskInfo], matrix: OutcomeMatrix) -> None:
        self.matrix = matrix

    def choose(self, task: Any) -> str:
        self._check_fitted()
        assert self.matrix is not None
        tid = _info(task).id
        return self.matrix.oracle_agent(tid) or self.matrix.cheapest


class _LearnedRouter(MatrixRouter):
    learned = True

    def __init__(self, embedder: Embedder | None = None):
        super().__init__()
        self.features = TextFeatures(embedder)

    def _labels(self, tasks: list[TaskInfo], matrix: OutcomeMatrix) -> np.ndarray:
        """(tasks, agents in pool order) success of the training cells, as floats."""
        return matrix.success_matrix([t.id for t in tasks]).astype(float)

    def _x(self, task: Any) -> np.ndarray:
        self._check_fitted()
        return self.features([_info(task)])


@register("wtp")
class WTPRouter(_LearnedRouter):
    """kNN success estimates traded off against price with a willingness to pay.

    Score of agent a: ``wtp * q_a - mean_dollars_a``, where q_a is the similarity-weighted
    success rate of agent a on the ``k`` most similar training tasks. ``wtp`` is in
    dollars per solved task; left as None it is ``wtp_scale`` times the largest agent's
    mean dollars per task (by default: paying the largest agent's whole cost is worth a
    10-point gain in success probability).
    """

    name = "wtp"

    def __init__(self, wtp: float | None = None, *, k: int = 10, wtp_scale: float = 10.0, embedder: Embedder | None = None):
        super().__init__(embedder)
        if k < 1:
            raise ConfigError(f"wtp router: k must be at least 1, got {k}")
        self.wtp = wtp
        self.k = int(k)
        self.wtp_scale = float(wtp_scale)

    def _fit(self, tasks: list[TaskInfo], matrix: OutcomeMatrix) -> None:
        self.X = self.features(tasks)
        self.Y = self._labels(tasks, matrix)
        self.mean_dollars = matrix.dollars_matrix([t.id for t in tasks]).mean(axis=0)
        largest = self.agents.index(self.by_price[-1])
        self.wtp_value = float(self.wtp) if self.wtp is not None else self.wtp_scale * float(self.mean_dollars[largest])

    def quality(self, task: Any) -> np.ndarray:
        """Estimated success probability per agent (pool order)."""
        sims = (self.X @ self._x(task)[0]).ravel()
        k = min(self.k, sims.size)
        top = np.argpartition(-sims, k - 1)[:k]
        w = np.clip(sims[top], 0.0, None) + 1e-6
        return (w @ self.Y[top]) / w.sum()

    def choose(self, task: Any) -> str:
        self._check_fitted()
        score = self.wtp_value * self.quality(task) - self.mean_dollars
        return _argmax_cheapest(score, self.agents, self.prices)


def _argmax_cheapest(score: np.ndarray, agents: list[str], prices: dict[str, float]) -> str:
    """The agent with the highest score; ties go to the cheaper agent."""
    best = max(range(len(agents)), key=lambda i: (round(float(score[i]), 12), -prices[agents[i]], -i))
    return agents[best]


@register("carrot")
class CarrotRouter(_LearnedRouter):
    """Per-agent quality (logistic) and cost (ridge, or the training mean) from task text.

    Score of agent a: ``q_a - lam * c_a / c_max`` where c_a is the predicted dollars
    (clipped at 0) and c_max the highest mean training dollars of any agent, so cost
    lies on the same 0..1 scale as quality.
    """

    name = "carrot"

    def __init__(
        self,
        lam: float = 0.2,
        *,
        cost_model: str = "ridge",
        l2: float = 1e-4,
        ridge_alpha: float = 1.0,
        embedder: Embedder | None = None,
    ):
        super().__init__(embedder)
        if cost_model not in ("ridge", "mean"):
            raise ConfigError(f"carrot router: cost_model must be 'ridge' or 'mean', got {cost_model!r}")
        self.lam = float(lam)
        self.cost_model = cost_model
        self.l2 = l2
        self.ridge_alpha = ridge_alpha

    def _fit(self, tasks: list[TaskInfo], matrix: OutcomeMatrix) -> None:
        X = self.features(tasks)
        Y = self._labels(tasks, matrix)
        D = matrix.dollars_matrix([t.id for t in tasks])
        self.quality_models = [LogisticModel(self.l2).fit(X, Y[:, j]) for j in range(len(self.agents))]
        self.mean_dollars = D.mean(axis=0)
        self.cost_models = (
            [RidgeModel(self.ridge_alpha).fit(X, D[:, j]) for j in range(len(self.agents))]
            if self.cost_model == "ridge"
            else None
        )
        self.cost_scale = float(self.mean_dollars.max()) or 1.0

    def quality(self, task: Any) -> np.ndarray:
        x = self._x(task)
        return np.array([m.predict_proba(x)[0] for m in self.quality_models])

    def cost(self, task: Any) -> np.ndarray:
        """Predicted dollars per agent (pool order)."""
        if self.cost_models is None:
            self._check_fitted()
            return self.mean_dollars.copy()
        x = self._x(task)
        return np.clip(np.array([m.predict(x)[0] for m in self.cost_models]), 0.0, None)

    def choose(self, task: Any) -> str:
        score = self.quality(task) - self.lam * self.cost(task) / self.cost_scale
        return _argmax_cheapest(score, self.agents, self.prices)


@register("to-router")
class TORouter(_LearnedRouter):
    """Multi-label classification of which agents pass (one logistic output per agent).

    Routes to the cheapest agent whose predicted probability of passing is at least
    ``threshold``, else to the largest.
    """

    name = "to-router"

    def __init__(self, threshold: float = 0.5, *, l2: float = 1e-4, embedder: Embedder | None = None):
        super().__init__(embedder)
        if not 0 <= threshold <= 1:
            raise ConfigError(f"to-router: threshold must be in [0, 1], got {threshold}")
        self.threshold = float(threshold)
        self.l2 = l2

    def _fit(self, tasks: list[TaskInfo], matrix: OutcomeMatrix) -> None:
        X = self.features(tasks)
        Y = self._labels(tasks, matrix)
        self.models = [LogisticModel(self.l2).fit(X, Y[:, j]) for j in range(len(self.agents))]

    def predict(self, task: Any) -> dict[str, float]:
        """Agent -> predicted probability of passing."""
        x = self._x(task)
        return {a: float(m.predict_proba(x)[0]) for a, m in zip(self.agents, self.models)}

    def choose(self, task: Any) -> str:
        probs = self.predict(task)
        return next((a for a in self.by_price if probs[a] >= self.threshold), self.by_price[-1])


@register("frugalgpt")
class FrugalGPTRouter(_LearnedRouter):
    """A cascade from the cheapest agent up, stopping at the first accepted answer.

    The scorer is a logistic model over [task text embedding, answer text embedding,
    one-hot agent, log answer length, empty answer], trained on every training cell to
    predict whether the answer passed. An answer is accepted when its score is at least
    the threshold (one number, or a dict agent -> threshold); the most expensive agent's
    answer is always accepted. Its cost on a task is every agent it ran.

    For a live run: `route` names the first agent; after each execution `accept` says
    whether to stop, and `next_agent` which agent to run next.
    """

    name = "frugalgpt"

    def __init__(
        self,
        threshold: float | dict[str, float] = 0.5,
        *,
        l2: float = 1e-4,
        embedder: Embedder | None = None,
    ):
        super().__init__(embedder)
        self.threshold = threshold
        self.l2 = l2
        self._answer_features = TextFeatures(self.features.embedder)

    def _answer_row(self, task: TaskInfo, agent: str, answer: str | None) -> np.ndarray:
        text = answer or ""
        emb = self._answer_features.embedder.embed([text])[0].astype(float)
        onehot = np.array([a == agent for a in self.agents], dtype=float)
        extra = np.array([np.log1p(len(text)) / 10.0, float(not text.strip())])
        return np.concatenate([self.features([task])[0], emb, onehot, extra])

    def _fit(self, tasks: list[TaskInfo], matrix: OutcomeMatrix) -> None:
        rows, labels = [], []
        for t in tasks:
            for a in self.agents:
                cell = matrix.get(t.id, a)
                rows.append(self._answer_row(t, a, cell.answer))
                labels.append(float(cell.passed))
        self.scorer = LogisticModel(self.l2).fit(np.stack(rows), np.array(labels))

    def _threshold(self, agent: str) -> float:
        if isinstance(self.threshold, dict):
            return float(self.threshold.get(agent, 0.5))
        return float(self.threshold)

    def score(self, task: Any, agent: str, answer: str | None) -> float:
        """The scorer's probability that ``agent``'s ``answer`` to ``task`` passes."""
        self._check_fitted()
        return float(self.scorer.predict_proba(self._answer_row(_info(task), agent, answer)[None, :])[0])

    def accept(self, task: Any, agent: str, answer: str | None) -> bool:
        """Stop the cascade at this answer? Always true for the most expensive agent."""
        if agent == self.largest:
            return True
        return self.score(task, agent, answer) >= self._threshold(agent)

    def next_agent(self, agent: str) -> str | None:
        """The agent after ``agent`` in the cascade; None after the last."""
        self._check_fitted()
        i = self.by_price.index(agent)
        return self.by_price[i + 1] if i + 1 < len(self.by_price) else None

    def choose(self, task: Any) -> str:
        """The first agent of the cascade (the cheapest)."""
        self._check_fitted()
        return self.by_price[0]

    async def route(self, task: Any, env: Any = None) -> Decision:
        return Decision(agent=self.choose(task), strategy="", info={"router": self.name, "cascade": list(self.by_price)})

    def cascade(self, task: Any, matrix: OutcomeMatrix) -> tuple[list[str], str]:
        """Replay the cascade on recorded cells: (agents run in order, agent whose answer counts)."""
        info = _info(task, matrix)
        run: list[str] = []
        agent: str | None = self.choose(info)
        while agent is not None:
            run.append(agent)
            cell = matrix.get(info.id, agent)
            if self.accept(info, agent, cell.answer):
                break
            agent = self.next_agent(agent)
        return run, run[-1]


# ---------------------------------------------------------------------------
# Registry and evaluation on the matrix
# ---------------------------------------------------------------------------

#: Baseline name -> factory taking the router's keyword options.
BASELINES: dict[str, Callable[..., MatrixRouter]] = {
    "largest": LargestRouter,
    "random": RandomRouter,
    "oracle": OracleRouter,
    "wtp": WTPRouter,
    "carrot": CarrotRouter,
    "to-router": TORouter,
    "frugalgpt": FrugalGPTRouter,
}


def make_baseline(name: str, **options: Any) -> MatrixRouter:
    """Build a baseline by name (``single:<agent>`` or a key of `BASELINES`)."""
    key = name.strip()
    if key.startswith("single:"):
        return SingleAgentRouter(key.split(":", 1)[1], **options)
    try:
        factory = BASELINES[key.lower()]
    except KeyError:
        known = ", ".join(["single:<agent>", *BASELINES])
        raise ConfigError(f"unknown baseline '{name}'; choose one of: {known}") from None
    return factory(**options)


def _result(info: TaskInfo, method: str, run: list[str], matrix: OutcomeMatrix) -> TaskResult:
    cells: list[Cell] = [matrix.get(info.id, a) for a in run]
    last = cells[-1]
    largest = matrix.largest
    return TaskResult(
        task_id=info.id,
        tier_name=info.tier_name,
        domain=info.domain,
        method=method,
        agent=last.agent,
        passed=bool(last.passed),
        dollars=float(sum(c.dollars for c in cells)),
        tokens=int(sum(c.tokens for c in cells)),
        largest_used=largest in run,
        largest_tokens=int(sum(c.tokens for c in cells if c.agent == largest)),
        wall_s=float(sum(c.wall_s for c in cells)),
        reused=True,
        tier=info.tier,
        agents_run=list(run),
    )


def _task_infos(tasks: Iterable[Any], matrix: OutcomeMatrix) -> list[TaskInfo]:
    out = []
    for t in tasks:
        info = _info(t, matrix)
        if info.id not in matrix:
            raise ConfigError(f"test task '{info.id}' is not in the outcome matrix")
        stored = matrix.task(info.id)
        # Fill fields a bare id or a partial record lacks from the stored task.
        out.append(info if info.prompt else stored)
    return out


def _run_of(router: MatrixRouter, info: TaskInfo, matrix: OutcomeMatrix) -> list[str]:
    if isinstance(router, FrugalGPTRouter):
        return router.cascade(info, matrix)[0]
    return [router.choose(info)]


def _prepare(router: Any, test_tasks: Iterable[Any], matrix: OutcomeMatrix, method: str | None):
    infos = _task_infos(test_tasks, matrix)
    if isinstance(router, OracleRouter):
        router.matrix = matrix
    return infos, method or getattr(router, "name", type(router).__name__)


def evaluate_router(
    router: Any, test_tasks: Iterable[Any], matrix: OutcomeMatrix, *, method: str | None = None
) -> list[TaskResult]:
    """Route each test task and read its outcome from the matrix (reused executions).

    ``test_tasks`` are Tasks, TaskInfos or ids of tasks in ``matrix``. For FrugalGPT the
    result is the last agent of its cascade, with dollars and tokens summed over every
    agent it ran. An oracle is pointed at ``matrix``. ``method`` names the results
    (default: the router's name). A router that is not a baseline is asked through its
    async `route` (use `evaluate_router_async` from inside an event loop).
    """
    if not isinstance(router, MatrixRouter):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(evaluate_router_async(router, test_tasks, matrix, method=method))
        raise SaleError("evaluate_router: inside a running event loop; await evaluate_router_async instead")
    infos, name = _prepare(router, test_tasks, matrix, method)
    return [_result(info, name, _run_of(router, info, matrix), matrix) for info in infos]


async def evaluate_router_async(
    router: Any, test_tasks: Iterable[Any], matrix: OutcomeMatrix, *, method: str | None = None
) -> list[TaskResult]:
    """`evaluate_router` for any `Router`, awaiting its `route` (env None) per task."""
    infos, name = _prepare(router, test_tasks, matrix, method)
    results = []
    for info in infos:
        if isinstance(router, MatrixRouter):
            run = _run_of(router, info, matrix)
        else:
            run = [(await router.route(info, None)).agent]
        results.append(_result(info, name, run, matrix))
    return results
