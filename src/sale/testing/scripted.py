"""A scripted OpenAI-compatible chat-completions server on loopback.

It speaks the real wire protocol over real HTTP, so the client, the auction, the
executor and ``sale run`` are tested exactly as they run against vLLM or llama.cpp.
Programmed per model name: completions, log-probabilities with top-k alternatives,
tool calls, HTTP errors (500, 429 with Retry-After), delays, malformed bodies and
calls that never answer. Without a script, a responder function decides the reply.

    with ScriptedServer() as srv:
        srv.script("small", Reply("plan: ..."), Reply(status=500))
        ...  # point an agent at srv.base_url with model "small"

Run as a process (used by the benchmarks, through `serve_in_process`)::

    python -m sale.testing.scripted --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from aiohttp import web

from sale.llm.local import free_port

_TOKEN = re.compile(r"\s*\S+")


@dataclass
class Reply:
    """One programmed answer.

    - ``text``: the completion; split into whitespace tokens for usage and logprobs.
    - ``top_logprobs``: the log-probabilities of the top-k alternatives at every token,
      the chosen token first (e.g. [-0.01, -5, -6] is a confident token, [-1.1]*3 an
      unsure one); truncated or padded to the k the request asks for.
    - ``alternatives``: token index -> the strings of that token's top-k alternatives
      (the chosen token first); elsewhere they are the token itself and "<altJ>".
    - ``tool_calls``: OpenAI-format tool calls ({"name":..., "arguments": {...}}).
    - ``status``/``retry_after``: an HTTP error answer; ``raw``: a body sent as is.
    - ``delay``: seconds to wait before answering; ``hang``: never answer.
    - ``usage``: (prompt_tokens, completion_tokens) to report instead of counting.
    - ``cached``: prompt tokens to report as served from the prompt cache, in the
      style ``cache_style``: "openai" (``usage.prompt_tokens_details.cached_tokens``,
      as OpenAI, vLLM and SGLang answer) or "llama.cpp" (``timings.cache_n`` beside
      ``timings.prompt_n``, llama.cpp's own count).
    """

    text: str = "ok"
    top_logprobs: list[float] = field(default_factory=lambda: [-0.05, -3.5, -4.5, -5.5, -6.5])
    alternatives: dict[int, list[str]] = field(default_factory=dict)
    tool_calls: list[dict[str, Any]] | None = None
    status: int = 200
    retry_after: float | None = None
    raw: bytes | None = None
    delay: float = 0.0
    hang: bool = False
    usage: tuple[int, int] | None = None
    finish_reason: str = "stop"
    cached: int | None = None
    cache_style: str = "openai"


Responder = Callable[[dict[str, Any]], "Reply | str"]


def prompt_text(request: dict[str, Any]) -> str:
    """All message contents of a request, joined (handy in responders)."""
    parts = []
    for m in request.get("messages", []):
        c = m.get("content")
        if isinstance(c, str):
            parts.append(c)
        elif isinstance(c, list):
            parts.extend(p.get("text", "") for p in c if isinstance(p, dict))
    return "\n".join(parts)


def _fixed_text(prompt: str) -> str:
    """The longest stretch of a prompt file that no placeholder fills (the text every
    prompt made from it contains)."""
    from sale import prompts

    parts = re.split(r"\$\{?\w+\}?", prompts.text(prompt))
    return max((p.strip() for p in parts), key=len)


def is_execution(request: dict[str, Any]) -> bool:
    """Whether a request is an executor's (handy in responders): a step of the tool-using
    loop (a system prompt first) or a direct answer (the direct mode's prompts, which a
    loop also starts from, recognised by their fixed text)."""
    messages = request.get("messages") or [{}]
    if messages[0].get("role") == "system":
        return True
    text = prompt_text(request)
    return any(_fixed_text(name) in text for name in ("direct_task.txt", "direct_search.txt"))


#: One bid of a hardened jury prompt: ``<bid-NONCE>`` (per bid) or ``<bid-NONCE k>``
#: (batched), the bid's text, ``</bid-NONCE>``.
BID_BLOCK = re.compile(r"<bid-([0-9a-f]+)(?: \d+)?>\n(.*?)\n</bid-\1>", re.S)


def jury_bids(text: str) -> list[str]:
    """The bids shown in a hardened jury prompt, in order."""
    return [bid for _, bid in BID_BLOCK.findall(text)]


def jury_answer(text: str, score: Callable[[str], float]) -> str:
    """A juror's answer to the hardened jury prompt ``text``, in the format the prompt
    asks for: ``SCORE: n`` (per bid) or one ``BID k: n`` line per bid (batched), where
    ``score`` gives a bid's score from its text."""
    bids = jury_bids(text)
    if "\nSCORE: <" in text:
        return f"SCORE: {score(bids[0])}"
    return "\n".join(f"BID {k}: {score(bid)}" for k, bid in enumerate(bids, 1))


def completion_body(request: dict[str, Any], reply: Reply) -> dict[str, Any]:
    tokens = _TOKEN.findall(reply.text)
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": reply.text},
        "finish_reason": reply.finish_reason,
    }
    if reply.tool_calls:
        choice["message"]["tool_calls"] = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": tc["name"], "arguments": json.dumps(tc.get("arguments", {}))},
            }
            for i, tc in enumerate(reply.tool_calls)
        ]
        choice["finish_reason"] = "tool_calls"
    k = int(request.get("top_logprobs") or 0)
    if request.get("logprobs"):
        dist = (reply.top_logprobs + [reply.top_logprobs[-1] - 1.0] * k)[: max(k, 1)]
        content = []
        for i, t in enumerate(tokens):
            names = reply.alternatives.get(i) or [t, *(f"<alt{j}>" for j in range(1, k))]
            alts = [{"token": name, "logprob": lp} for name, lp in zip(names, dist[:k])]
            content.append({"token": t, "logprob": dist[0], "top_logprobs": alts})
        choice["logprobs"] = {"content": content}
    if reply.usage:
        p_tok, c_tok = reply.usage
    else:
        p_tok, c_tok = max(1, len(prompt_text(request)) // 4), len(tokens)
    body = {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", ""),
        "choices": [choice],
        "usage": {"prompt_tokens": p_tok, "completion_tokens": c_tok, "total_tokens": p_tok + c_tok},
    }
    if reply.cached is not None:
        if reply.cache_style == "llama.cpp":
            body["timings"] = {"cache_n": reply.cached, "prompt_n": p_tok - reply.cached, "predicted_n": c_tok}
        else:
            body["usage"]["prompt_tokens_details"] = {"cached_tokens": reply.cached}
    return body


class ScriptedServer:
    """The server, run on its own event loop in a background thread."""

    def __init__(self, responder: Responder | None = None, *, host: str = "127.0.0.1", port: int = 0):
        self.responder = responder
        self.host = host
        self.port = port
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []  # request headers, in the order received
        # ("start" | "end", index into requests), in the order they happened: which
        # requests were open at the same time
        self.events: list[tuple[str, int]] = []
        self._scripts: dict[str, collections.deque[Reply]] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def script(self, model: str, *replies: Reply | str) -> None:
        """Queue replies for requests naming ``model``; they are used once each, in order."""
        with self._lock:
            self._scripts[model].extend(r if isinstance(r, Reply) else Reply(r) for r in replies)

    def requests_for(self, model: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("model") == model]

    def _next_reply(self, request: dict[str, Any]) -> Reply:
        with self._lock:
            queue = self._scripts.get(request.get("model", ""))
            if queue:
                return queue.popleft()
        if self.responder is None:
            return Reply("ok")
        r = self.responder(request)
        return r if isinstance(r, Reply) else Reply(r)

    async def _chat(self, http: web.Request) -> web.StreamResponse:
        try:
            request = await http.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response({"error": {"message": "body is not JSON"}}, status=400)
        with self._lock:
            self.requests.append(request)
            self.headers.append(dict(http.headers))
            index = len(self.requests) - 1
            self.events.append(("start", index))
        try:
            return await self._answer(request)
        finally:
            with self._lock:
                self.events.append(("end", index))

    def overlapping(self, key: Callable[[dict[str, Any]], Any]) -> int:
        """The most distinct ``key(request)`` values among requests open at one time
        (e.g. how many tasks had a call in flight at once)."""
        with self._lock:
            events, requests = list(self.events), list(self.requests)
        open_now: set[int] = set()
        most = 0
        for what, i in events:
            if what == "start":
                open_now.add(i)
                most = max(most, len({key(requests[j]) for j in open_now}))
            else:
                open_now.discard(i)
        return most

    async def _answer(self, request: dict[str, Any]) -> web.StreamResponse:
        reply = self._next_reply(request)
        if reply.hang:
            await asyncio.sleep(3600)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.raw is not None:
            return web.Response(body=reply.raw, status=reply.status, content_type="application/json")
        if reply.status != 200:
            headers = {"Retry-After": f"{reply.retry_after:g}"} if reply.retry_after is not None else None
            return web.json_response({"error": {"message": reply.text}}, status=reply.status, headers=headers)
        return web.json_response(completion_body(request, reply))

    async def _models(self, _http: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": m, "object": "model"} for m in self._scripts]})

    async def _health(self, _http: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        return app

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            self._runner = web.AppRunner(self._app(), access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.port)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        try:
            loop.run_until_complete(boot())
        except BaseException as exc:  # pragma: no cover - reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def start(self) -> "ScriptedServer":
        self._thread = threading.Thread(target=self._run, name="scripted-llm-server", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop and self._thread:
            loop = self._loop

            def _shutdown() -> None:
                for task in asyncio.all_tasks(loop):
                    task.cancel()
                loop.stop()

            loop.call_soon_threadsafe(_shutdown)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> "ScriptedServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def scripted_pool_yaml(base_url: str, agents: list[tuple[str, float]], **agent_fields: Any) -> str:
    """A pool file whose agents are all served by one scripted server (model = agent name)."""
    lines = ["agents:"]
    extra = "".join(f"    {k}: {json.dumps(v)}\n" for k, v in agent_fields.items())
    for name, price in agents:
        lines.append(
            f"  - name: {name}\n"
            f"    endpoint: {{base_url: \"{base_url}\", model: \"{name}\"}}\n"
            f"    price: {{input: {price}, output: {price}}}\n" + extra.rstrip("\n")
        )
    return "\n".join(l.rstrip("\n") for l in lines) + "\n"


def landmark_tasks(n: int, *, tiers: int | None = None) -> list[Any]:
    """``n`` one-document search tasks ("Where is landmark i?", answered "Paris") for runs
    against a scripted pool; with ``tiers`` they are spread over that many search tiers."""
    from sale.workloads.task import Document, Task

    spread = (lambda i: {"tier": 1 + i % tiers, "tier_name": f"search/{1 + i % tiers}"}) if tiers else (lambda i: {})
    return [
        Task(id=f"t{i}", domain="search", prompt=f"Where is landmark {i}?", grading={"answers": ["Paris"]},
             documents=[Document(id=f"d{i}", title=f"Landmark {i}", text=f"Landmark {i} is in Paris.")], **spread(i))
        for i in range(n)
    ]  # fmt: skip


@contextlib.contextmanager
def serve_in_process(
    text: str = "ok", rules: dict[str, str] | None = None, timeout_s: float = 20.0, delay: float = 0.0
) -> Iterator[str]:
    """A scripted server in a process of its own (so that it does not share the caller's
    GIL), answering ``text`` to every call, or ``rules[s]`` to a call whose prompt
    contains ``s`` (first match wins); yields its base URL (``.../v1``) and stops the
    process on exit."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sale.testing.scripted", "--port", str(port), "--text", text,
         *(arg for s, reply in (rules or {}).items() for arg in ("--rule", f"{s}={reply}")),
         *(["--delay", str(delay)] if delay else [])],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the scripted server on port {port} did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Serve scripted chat completions (echo 'ok') on loopback.")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--text", default="ok")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds to wait before each answer")
    ap.add_argument("--rule", action="append", default=[], metavar="SUBSTRING=TEXT",
                    help="answer TEXT to a call whose prompt contains SUBSTRING (repeatable; first match wins)")
    args = ap.parse_args(argv)
    rules = []
    for rule in args.rule:
        if "=" not in rule:
            ap.error(f"--rule {rule!r}: expected SUBSTRING=TEXT")
        rules.append(tuple(rule.split("=", 1)))

    def respond(request: dict[str, Any]) -> Reply:
        prompt = prompt_text(request)
        return Reply(next((reply for sub, reply in rules if sub in prompt), args.text), delay=args.delay)

    srv = ScriptedServer(respond, port=args.port)

    async def serve() -> None:
        runner = web.AppRunner(srv._app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, srv.host, args.port).start()
        print(f"listening on {srv.base_url}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
