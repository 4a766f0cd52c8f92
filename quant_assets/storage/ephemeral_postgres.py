"""A throw-away PostgreSQL server for tests and benchmarks (initdb in a temp dir, loopback only).

The server refuses to run as root, so when we are root every server command runs as the
``postgres`` user (``runuser``). The cluster uses password authentication so that tests exercise
a real password (and that it never leaks).
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from sqlalchemy.engine import URL

SERVER_USER = "postgres"


class PostgresNotInstalledError(RuntimeError):
    """The PostgreSQL server binaries (initdb, pg_ctl) are not on this machine."""


def _bin_dir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if candidates:
        return Path(candidates[-1]).parent
    raise PostgresNotInstalledError(
        "PostgreSQL server binaries not found (pg_ctl); on Debian: apt-get install postgresql"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_databases(server: URL, names: list[str]) -> None:
    """Create each database of ``names`` that the server (a URL with rights to) lacks."""
    import psycopg2

    conn = psycopg2.connect(
        host=server.host,
        port=server.port,
        user=server.username,
        password=server.password,
        dbname="postgres",
    )
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for name in names:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


class EphemeralPostgres:
    """Start with ``start()`` (or ``with``); ``url`` names the database; ``stop()`` removes all."""

    def __init__(
        self,
        database: str = "quant_test",
        port: int | None = None,
        *,
        root: Path | None = None,
        password: str | None = None,
    ) -> None:
        self.database = database
        self.port = port or free_port()
        self.password = password or secrets.token_urlsafe(12)
        self.bin_dir = _bin_dir()
        # Under the system's temp dir by default: the server user must be able to reach it.
        self.root = root or Path(tempfile.mkdtemp(prefix="quant-pg-"))
        self.data_dir = self.root / "data"
        self._as_root = os.geteuid() == 0
        self._started = False
        self._initialized = False

    @classmethod
    def attach(cls, root: Path, port: int, password: str, database: str) -> EphemeralPostgres:
        """The running server another process started (its root, port, password): to stop it."""
        server = cls(database, port, root=root, password=password)
        server._initialized = server._started = True
        return server

    @property
    def url(self) -> URL:
        """SQLAlchemy URL of the test database (contains the password: do not print it)."""
        return URL.create(
            "postgresql+psycopg2",
            username=SERVER_USER,
            password=self.password,
            host="127.0.0.1",
            port=self.port,
            database=self.database,
        )

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr[-2000:]}")

    def init(self) -> None:
        """Create the cluster (initdb); the server is not started yet."""
        pwfile = self.root / "pw"
        pwfile.write_text(self.password)
        if self._as_root:
            shutil.chown(self.root, SERVER_USER)
            shutil.chown(pwfile, SERVER_USER)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            SERVER_USER,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )
        pwfile.unlink()
        self._initialized = True

    def start(self) -> EphemeralPostgres:
        """initdb if needed, start the server on 127.0.0.1 and create the database."""
        if not self._initialized:
            self.init()
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        self._started = True
        create_databases(self.url, [self.database])
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its files."""
        if self._started:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> EphemeralPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
