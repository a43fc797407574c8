"""The HTTP face of `sale serve`: an OpenAI-compatible API on FastAPI.

    app = create_app("pool.yaml", "state/")      # then: uvicorn.run(app, port=8000)

Endpoints:

- ``POST /v1/chat/completions``: model ``sale`` routes the request's task (its key,
  `sale.serve.keys`) to the winner of its auction, held on the task's first request;
  the model set to an agent's name goes to that agent directly. ``stream: true``
  answers in server-sent events; while the auction and the call run, a comment line
  (``: keep-alive``) goes out every ``keepalive_s``. The winner's answer is complete
  before it is streamed (the upstream call itself is not streamed).
- ``POST /v1/responses``: the Responses API on the same path (`sale.serve.responses`:
  text and function tools, not streamed).
- ``GET /v1/models``, ``GET /health``, ``GET /metrics`` (Prometheus text).
- ``POST /v1/sale/auction``: decide only (winner and plan; nothing is forwarded).
- ``POST /v1/sale/outcome``: ``{"task": KEY, "passed": true}`` from the harness.
- ``GET /v1/sale/auctions/{id}``: an auction record; ``GET /v1/sale/tasks/{key}``: a
  task's binding and its dollars by phase.

Responses say who answered: ``model`` is the winner's name, and the headers
``x-sale-task``, ``x-sale-winner``, ``x-sale-auction`` (and ``x-sale-fallback`` when
the auction failed and the fallback agent took the task). A stream that holds an
auction sends its headers before the winner is known: there the winner is in each
chunk's ``model`` and in a ``: sale winner=... auction=...`` comment before the first
chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

from sale.errors import MissingExtraError
from sale.llm.client import Completion
from sale.llm.ledger import Ledger
from sale.llm.pool import Pool
from sale.serve.bindings import Binding
from sale.serve.keys import task_key
from sale.serve.metrics import ServeMetrics
from sale.serve.responses import response_json, to_chat
from sale.serve.service import ApiError, SaleService
from sale.serve.settings import ServeSettings

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
except ImportError:  # pragma: no cover - the extra is missing
    raise MissingExtraError("fastapi", "serve", "sale serve") from None

log = logging.getLogger(__name__)

#: The model name that asks for the auction.
SALE_MODEL = "sale"
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


# ----------------------------------------------------------------------------- requests


async def read_json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body: not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"request body: expected a JSON object, got {type(body).__name__}")
    return body


def _bad(param: str, why: str) -> ApiError:
    return ApiError(400, f"{param}: {why}", param=param)


def check_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "required, a non-empty list of message objects")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise _bad(f"messages[{i}]", f"expected an object, got {type(m).__name__}")
        if m.get("role") not in ROLES:
            raise _bad(f"messages[{i}].role", f"got {m.get('role')!r}; expected one of {', '.join(sorted(ROLES))}")
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise _bad(f"messages[{i}].content", f"expected a string or a list of parts, got {type(content).__name__}")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("tools", f"expected a list of tool objects, got {type(tools).__name__}")
        for i, t in enumerate(tools):
            if not isinstance(t, dict):
                raise _bad(f"tools[{i}]", f"expected an object, got {type(t).__name__}")
    return messages


def check_chat(body: dict[str, Any]) -> None:
    """400 naming the field for a malformed chat-completions request."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _bad("model", f"required, a model name ('{SALE_MODEL}' or a pool agent); got {body.get('model')!r}")
    check_messages(body)
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _bad("stream", f"expected true or false, got {body['stream']!r}")
    if body.get("n") not in (None, 1):
        raise _bad("n", f"only n=1 is served, got {body['n']!r}")
    for name in ("max_tokens", "max_completion_tokens"):
        v = body.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
            raise _bad(name, f"expected a positive integer, got {v!r}")
    t = body.get("temperature")
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float))):
        raise _bad("temperature", f"expected a number, got {t!r}")
    if "metadata" in body and body["metadata"] is not None and not isinstance(body["metadata"], dict):
        raise _bad("metadata", f"expected an object, got {type(body['metadata']).__name__}")


# ----------------------------------------------------------------------------- responses


def completion_json(c: Completion, model: str, cid: str, created: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": c.text if (c.text or not c.tool_calls) else None}
    if c.tool_calls:
        message["tool_calls"] = [
            {"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
            for t in c.tool_calls
        ]
    finish = c.finish_reason or ("tool_calls" if c.tool_calls else "stop")
    return {
        "id": cid, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage_json(c),
    }  # fmt: skip


def usage_json(c: Completion) -> dict[str, int]:
    return {"prompt_tokens": c.input_tokens, "completion_tokens": c.output_tokens,
            "total_tokens": c.input_tokens + c.output_tokens}  # fmt: skip


def sse(data: Any) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False).encode("utf-8") + b"\n\n"


def stream_chunks(c: Completion, model: str, cid: str, created: int, include_usage: bool) -> list[bytes]:
    """The completion ``c`` as chat.completion.chunk events, ending with ``[DONE]``."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [choice]})

    out = [chunk({"role": "assistant", "content": ""})]
    if c.text:
        out.append(chunk({"content": c.text}))
    if c.tool_calls:
        out.append(chunk({"tool_calls": [
            {"index": i, "id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
            for i, t in enumerate(c.tool_calls)
        ]}))  # fmt: skip
    out.append(chunk({}, c.finish_reason or ("tool_calls" if c.tool_calls else "stop")))
    if include_usage:
        out.append(sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                        "choices": [], "usage": usage_json(c)}))  # fmt: skip
    out.append(b"data: [DONE]\n\n")
    return out


def sale_headers(key: str, binding: Binding | None = None, agent: str = "") -> dict[str, str]:
    headers = {"x-sale-task": _header_safe(key)}
    winner = binding.winner if binding else agent
    if winner:
        headers["x-sale-winner"] = winner
    if binding is not None:
        headers["x-sale-auction"] = binding.auction
        if binding.fallback:
            headers["x-sale-fallback"] = _header_safe(binding.fallback)[:300]
    return headers


def _header_safe(text: str) -> str:
    if text.isascii() and text.isprintable():
        return text
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)


def internal_error(exc: BaseException) -> ApiError:
    log.exception("sale serve: unexpected error", exc_info=exc)
    return ApiError(500, f"internal error: {type(exc).__name__}: {exc}"[:500], type="server_error")


def error_response(exc: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers={**(headers or {}), **exc.headers})


# ----------------------------------------------------------------------------- the app


def mount_viewer(app: FastAPI, state_dir: Path) -> bool:
    """Mount the web viewer at /ui when `sale.view` offers ``create_app(folder)``."""
    try:
        from sale.view import create_app as create_view  # type: ignore[attr-defined]
    except ImportError:
        return False
    try:
        app.mount("/ui", create_view(state_dir))
    except Exception as exc:  # the viewer is an extra; the API serves without it
        log.warning("the viewer was not mounted at /ui: %s", exc)
        return False
    return True


def create_app(
    pool: Pool | str | Path,
    state_dir: str | Path,
    *,
    settings: ServeSettings | None = None,
    viewer: bool = True,
) -> FastAPI:
    """The server over ``pool`` (a Pool, or a pool file whose ledger goes to
    ``state_dir/ledger.jsonl``), keeping its state in ``state_dir``. The pool is started
    when the app starts and stopped when it stops."""
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    own_ledger = not isinstance(pool, Pool)
    if own_ledger:
        from sale.config import load_pool_config

        path = Path(pool)
        pool = Pool(load_pool_config(path), ledger=Ledger(state / "ledger.jsonl"), source=str(path))
    assert isinstance(pool, Pool)
    settings = settings or ServeSettings.from_pool(pool)
    metrics = ServeMetrics(pool.ledger)
    service = SaleService(pool, state, settings, metrics=metrics)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await pool.start()
        try:
            yield
        finally:
            await pool.stop()
            service.close()
            if own_ledger:
                pool.ledger.close()

    options: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:  # FastAPI's own OpenTelemetry hooks: off
        options["telemetry"] = {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(title="sale serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None, **options)
    app.state.service = service
    app.state.metrics = metrics

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        return error_response(internal_error(exc))

    def observe(endpoint: str, status: int, started: float) -> None:
        metrics.observe(endpoint, status, time.perf_counter() - started)

    def direct_agent(model: str) -> str | None:
        """None for the auction ("sale"), the agent's name for a pool agent; 404 otherwise."""
        if model == SALE_MODEL:
            return None
        if model in pool.names:
            return model
        raise ApiError(404, f"model: no model '{model}'; use '{SALE_MODEL}' or a pool agent "
                       f"({', '.join(pool.names)})", param="model", code="model_not_found")  # fmt: skip

    async def routed(key: str, body: dict[str, Any], direct: str | None) -> tuple[Binding | None, Completion]:
        """Decide (an auction for a new key, shielded from a client that goes away) and forward."""
        if direct is not None:
            metrics.direct.labels(agent=direct).inc()
            return None, await service.forward(direct, key, body)
        decided = asyncio.ensure_future(service.decide(key, body["messages"], body.get("tools")))
        binding, new = await asyncio.shield(decided)
        if not new:
            metrics.pinned.labels(agent=binding.winner).inc()
        service.bindings.touch(key)
        return binding, await service.forward(binding.winner, key, body, binding.plan)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        started = time.perf_counter()
        key = ""
        try:
            body = await read_json(request)
            check_chat(body)
            key, _source = task_key(request.headers, body)
            direct = direct_agent(body["model"])
        except ApiError as exc:
            observe("chat", exc.status, started)
            return error_response(exc, sale_headers(key) if key else None)
        cid, created = f"chatcmpl-sale-{uuid.uuid4().hex[:20]}", int(time.time())
        if body.get("stream"):
            return stream(key, body, direct, cid, created, started)
        try:
            binding, c = await routed(key, body, direct)
        except ApiError as exc:
            observe("chat", exc.status, started)
            binding = service.bindings.get(key) if direct is None else None
            return error_response(exc, sale_headers(key, binding, direct or ""))
        observe("chat", 200, started)
        winner = direct or binding.winner  # type: ignore[union-attr]
        return JSONResponse(completion_json(c, winner, cid, created), headers=sale_headers(key, binding, direct or ""))

    def stream(key: str, body: dict[str, Any], direct: str | None, cid: str, created: int, started: float) -> Response:
        known = service.bindings.get(key) if direct is None else None
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        keepalive = settings.keepalive_s

        async def events() -> AsyncIterator[bytes]:
            status = 200
            work = asyncio.ensure_future(routed(key, body, direct))
            try:
                while True:
                    done, _ = await asyncio.wait({work}, timeout=keepalive)
                    if done:
                        break
                    yield b": keep-alive\n\n"
                try:
                    binding, c = work.result()
                except Exception as exc:  # the stream has begun: the error goes in an event
                    err = exc if isinstance(exc, ApiError) else internal_error(exc)
                    status = err.status
                    yield sse({"error": {**err.body()["error"], "status": err.status}})
                    yield b"data: [DONE]\n\n"
                    return
                winner = direct or binding.winner  # type: ignore[union-attr]
                if known is None and binding is not None:
                    yield f": sale task={_header_safe(key)} winner={winner} auction={binding.auction}\n\n".encode()
                for event in stream_chunks(c, winner, cid, created, include_usage):
                    yield event
            finally:
                if not work.done():
                    work.cancel()  # the client went away: the auction (shielded) still finishes
                observe("chat", status, started)

        headers = {**sale_headers(key, known, direct or ""), "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    @app.post("/v1/responses")
    async def responses(request: Request) -> Response:
        started = time.perf_counter()
        key, direct, binding = "", None, None
        try:
            body = await read_json(request)
            chat = to_chat(body)
            check_chat(chat)
            key, _source = task_key(request.headers, chat)
            direct = direct_agent(chat["model"])
            binding, c = await routed(key, chat, direct)
        except ApiError as exc:
            observe("responses", exc.status, started)
            if key and direct is None:
                binding = service.bindings.get(key)
            return error_response(exc, sale_headers(key, binding, direct or "") if key else None)
        observe("responses", 200, started)
        winner = direct or binding.winner  # type: ignore[union-attr]
        return JSONResponse(response_json(c, winner, body), headers=sale_headers(key, binding, direct or ""))

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = [{"id": SALE_MODEL, "object": "model", "created": 0, "owned_by": "sale"}]
        data += [{"id": a.name, "object": "model", "created": 0, "owned_by": "sale-pool"} for a in pool]
        return {"object": "list", "data": data}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "agents": pool.names, "fallback": service.fallback, "bindings": len(service.bindings)}

    @app.get("/metrics")
    async def prometheus() -> Response:
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)

    @app.post("/v1/sale/auction")
    async def auction(request: Request) -> Response:
        started = time.perf_counter()
        key = ""
        try:
            body = await read_json(request)
            check_messages(body)
            key, source = task_key(request.headers, body)
            decided = asyncio.ensure_future(service.decide(key, body["messages"], body.get("tools")))
            binding, new = await asyncio.shield(decided)
        except ApiError as exc:
            observe("auction", exc.status, started)
            return error_response(exc, sale_headers(key) if key else None)
        observe("auction", 200, started)
        return JSONResponse(
            {"task": key, "key_source": source, "winner": binding.winner, "plan": binding.plan,
             "auction": binding.auction, "fallback": binding.fallback, "new": new},
            headers=sale_headers(key, binding),
        )  # fmt: skip

    @app.post("/v1/sale/outcome")
    async def outcome(request: Request) -> Response:
        started = time.perf_counter()
        try:
            body = await read_json(request)
            key = body.get("task") or request.headers.get("x-sale-task")
            if not isinstance(key, str) or not key:
                raise _bad("task", "required, the task key (or send the X-SALE-Task header)")
            if not isinstance(body.get("passed"), bool):
                raise _bad("passed", f"required, true or false; got {body.get('passed')!r}")
            result = service.record_outcome(key, body["passed"])
        except ApiError as exc:
            observe("outcome", exc.status, started)
            return error_response(exc)
        observe("outcome", 200, started)
        return JSONResponse(result)

    @app.get("/v1/sale/auctions/{auction_id}")
    async def auction_record(auction_id: str) -> Response:
        try:
            return JSONResponse(service.auction_record(auction_id))
        except ApiError as exc:
            return error_response(exc)

    @app.get("/v1/sale/tasks/{key:path}")
    async def task(key: str) -> Response:
        try:
            return JSONResponse(service.task_view(key))
        except ApiError as exc:
            return error_response(exc)

    if viewer:
        mount_viewer(app, state)
    return app
