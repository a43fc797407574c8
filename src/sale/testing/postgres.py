"""A real Postgres server for tests and benchmarks, from the ``pgserver`` package.

``pgserver`` ships Postgres binaries with the pgvector extension as a Python wheel;
`PostgresForTests` starts one on a unix socket in a temporary folder (no TCP port),
hands out a fresh database per caller and stops the server on close.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    """No Postgres server could be started here (says why)."""


class PostgresForTests:
    def __init__(self) -> None:
        import importlib.util

        missing = [m for m in ("pgserver", "psycopg") if importlib.util.find_spec(m) is None]
        if missing:
            raise PostgresUnavailable(f"{', '.join(missing)} not installed (pip install pgserver 'psycopg[binary]')")
        self._dir = Path(tempfile.mkdtemp(prefix="sale-pg-"))
        try:
            import warnings

            with warnings.catch_warnings():  # platformdirs' note on an unset XDG_RUNTIME_DIR
                warnings.simplefilter("ignore")
                import pgserver

                self._server = pgserver.get_server(self._dir / "data", cleanup_mode="stop")
                self.url = self._server.get_uri()
        except Exception as exc:  # noqa: BLE001 - any failure to start means "unavailable"
            shutil.rmtree(self._dir, ignore_errors=True)
            raise PostgresUnavailable(f"pgserver could not start Postgres: {exc}") from exc

    def database(self) -> str:
        """The URL of a new, empty database."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return re.sub(r"/postgres(\?|$)", rf"/{name}\1", self.url, count=1)

    def close(self) -> None:
        try:
            self._server.cleanup()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
