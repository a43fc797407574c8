"""Local models served by llama.cpp (the ``xllamacpp`` package) on loopback.

Each local agent gets its own server process, started and stopped by the project; the
agent then talks to it through the same HTTP client as to a remote endpoint. The
server's log goes to a file, not to the terminal.

Prompt cache: each of the server's slots (``--parallel``) keeps the tokens of its last
prompt and reuses their longest common prefix with the next one (llama.cpp's
``cache_prompt``, on by default), and a request goes to the idle slot whose cached
prompt is most alike. The auction's prompts put what an agent's calls for one task
share first, so its jury calls are mostly read from the cache; the answers report it
(``usage.prompt_tokens_details.cached_tokens``, ``timings.cache_n``).

Run directly (the project does this for you)::

    python -m sale.llm.local --model PATH --port PORT [--ctx N] [--parallel N] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from sale.errors import ModelError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """A llama.cpp server process for one GGUF file, on 127.0.0.1."""

    def __init__(self, model: Path, *, ctx: int = 4096, parallel: int = 1, threads: int | None = None, name: str = ""):
        self.model = Path(model)
        self.ctx = ctx
        self.parallel = parallel
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.name = name or self.model.stem
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 120.0) -> "LlamaServer":
        self.spawn()
        return self.wait_ready(timeout_s)

    def spawn(self) -> "LlamaServer":
        """Start the server process (it dies with this process, see `_die_with_parent`).

        Called from the thread that lives as long as the server should (the kernel's
        parent-death signal follows the thread that started the process).
        """
        if self.proc is not None:
            return self
        self.port = free_port()
        log_dir = Path(tempfile.gettempdir()) / "sale-llama-logs"
        log_dir.mkdir(exist_ok=True)
        self.log_path = log_dir / f"{self.name}-{self.port}.log"
        cmd = [
            sys.executable, "-m", "sale.llm.local",
            "--model", str(self.model), "--port", str(self.port),
            "--ctx", str(self.ctx * self.parallel), "--parallel", str(self.parallel),
            "--threads", str(self.threads), "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    def wait_ready(self, timeout_s: float = 120.0) -> "LlamaServer":
        """Wait until the spawned server answers /health; raises ModelError if it exits
        or does not answer within ``timeout_s``."""
        if self.proc is None:
            raise ModelError(f"llama.cpp server for '{self.name}' was not started")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-600:]
                self.proc = None
                raise ModelError(f"llama.cpp server for '{self.name}' ({self.model}) exited on start: {tail}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise ModelError(f"llama.cpp server for '{self.name}' did not become ready in {timeout_s:g} s (log: {self.log_path})")

    async def astart(self, timeout_s: float = 120.0) -> "LlamaServer":
        self.spawn()  # in the event loop's thread, which outlives the server
        try:
            return await asyncio.to_thread(self.wait_ready, timeout_s)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> "LlamaServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int | None) -> None:
    """Make this process die whenever its parent dies, from now on.

    The kernel's parent-death signal (Linux) kills it even while the model loads (C
    code that holds the interpreter). If the parent died before the signal was set,
    this process was already handed to another parent: it exits at once. A thread
    also watches the parent's pid, for systems without the signal.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl here
            pass
    if parent is None:
        parent = os.getppid()
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.2)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _serve(args: argparse.Namespace) -> None:
    _die_with_parent(args.parent_pid)
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.n_ctx = args.ctx
    params.n_parallel = args.parallel
    params.port = args.port
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.warmup = False
    server = xllamacpp.Server(params)  # noqa: F841 - serves until the process exits
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):  # until SIGTERM or SIGINT; the parent's death kills it (see above)
        pass
    # Exit at once: a graceful shutdown would first finish the requests still queued,
    # which nobody is waiting for any more.
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Serve one GGUF model with llama.cpp on loopback.")
    ap.add_argument("--model", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    ap.add_argument("--parent-pid", type=int, help="exit when this process is no longer the parent")
    _serve(ap.parse_args(argv))


if __name__ == "__main__":
    main()
