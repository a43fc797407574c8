"""Serving the viewer with uvicorn: in the foreground (``sale view``) or in a thread.

The socket is bound before uvicorn starts, so port 0 (any free port) works and the
URL printed is the one served.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

from sale.view import INSTALL_HINT, ViewError, create_app


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ViewError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (choose another with --port)") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _server(app: Any) -> Any:
    try:
        import uvicorn
    except ImportError as exc:
        raise ViewError(f"{INSTALL_HINT} ({exc})") from None
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))


def check_folder(folder: str | Path) -> Path:
    path = Path(folder)
    if not path.exists():
        raise ViewError(f"{path}: no such folder (give a run folder, a bench folder or a folder holding them)")
    if not path.is_dir():
        raise ViewError(f"{path}: not a folder (give a run folder, a bench folder or a folder holding them)")
    return path


def serve_forever(folder: str | Path, host: str = "127.0.0.1", port: int = 8765, say=print) -> None:
    """Serve ``folder`` until interrupted."""
    app = create_app(check_folder(folder))
    server = _server(app)
    sock = bind(host, port)
    say(f"sale view: {Path(folder).resolve()} at {url_of(sock)}/ (read-only; Ctrl-C stops)")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


class ViewServer:
    """The viewer of ``folder`` served by uvicorn in a thread, on a free loopback port.

        with ViewServer(run_dir) as url:
            ...  # GET url + "/"
    """

    def __init__(self, folder: str | Path, host: str = "127.0.0.1", port: int = 0, app: Any = None):
        self.app = app if app is not None else create_app(check_folder(folder))
        self.host, self.port = host, port
        self.url = ""

    def __enter__(self) -> str:
        self.sock = bind(self.host, self.port)
        self.url = url_of(self.sock)
        self.server = _server(self.app)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ViewError("the viewer's server did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
