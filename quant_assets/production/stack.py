"""Start, watch and stop the production profile's processes (one state folder per stack).

Services, each its own process group on 127.0.0.1, in start order: an MLflow tracking server
(database backend, artifact folder), the code server (``dagster api grpc``), dagster-webserver
and dagster-daemon (both load the code server through the profile's ``workspace.yaml``), and
the live poller (``quant ingest``) reporting runless events into the same instance. Bars,
Dagster's storage and MLflow's backend are three databases of one PostgreSQL server: the one
``QUANT_PRODUCTION_PG_URL`` names, or a throw-away server this module starts (``initdb`` in a
temp dir; removed again on ``stop``).

The state folder holds ``stack.json`` (ports, process ids; no secret), ``secrets.json`` (the
database password, mode 0600), ``logs/`` and the services' ``DAGSTER_HOME`` and ``QUANT_HOME``.
Every service carries ``QUANT_PRODUCTION_STACK=<state folder>`` in its environment, so ``stop``
also finds a process that left its group (none should) and ends it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from quant_assets.storage.ephemeral_postgres import EphemeralPostgres, create_databases, free_port

REPO = Path(__file__).resolve().parents[2]
INSTANCE_YAML = REPO / "dagster.production.yaml"
MARKER = "QUANT_PRODUCTION_STACK"
SERVER_URL_ENV = "QUANT_PRODUCTION_PG_URL"
DATABASES = {"bars": "quant", "dagster": "dagster", "mlflow": "mlflow"}
SERVICES = ("mlflow", "code_server", "webserver", "daemon", "poller")
# Slots per pool, set in the instance before the daemon starts: the pools' ``default_limit``
# alone reaches the queue only after its first pass, which may launch two runs of a pool at
# once. The names are the assets' ``pool=`` (``quant_assets.defs.partitions.BIG_TABLES_POOL``).
POOL_LIMITS = {"big_tables": 1}
LOCATION = "quant_assets"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class StackError(RuntimeError):
    """The stack could not start (the message names the service and its log)."""


@dataclass(frozen=True)
class Service:
    """One long-running process: its command line and how to tell it is ready."""

    name: str
    argv: list[str]
    ready: Callable[[], bool]


def _bin(name: str) -> str:
    """A console script of this interpreter's environment (dagster, mlflow, quant)."""
    return str(Path(sys.executable).with_name(name))


def http_ok(url: str) -> bool:
    """Whether ``url`` answers 200 (no proxy: everything is on 127.0.0.1)."""
    try:
        with _NO_PROXY.open(url, timeout=3) as response:
            return response.status == 200
    except OSError:
        return False


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs (Linux /proc).

    A killed process stays in its group as a zombie until its parent reaps it; an orphan's
    parent is init, which here reaps only every second or two. Zombies run nothing, so they
    do not count.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _parent, group = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(group) == pgid and state != "Z":
            return True
    return False


@contextlib.contextmanager
def interruptible_children() -> Iterator[None]:
    """Children started inside take SIGINT's default action, even where this process ignores it.

    A process started from a background shell (``nohup``, ``cmd &``) inherits SIGINT ignored,
    and an ignored signal stays ignored across ``exec``. Dagster stops its own child processes
    with SIGINT, so a code server or ``dagster dev`` started that way cannot stop them; a
    handled signal is reset to its default on ``exec``, hence the handler while starting.
    Only the main thread may set handlers; elsewhere the disposition is left as it is.
    """
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if not ignored or threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def marked_processes(state_dir: Path) -> list[int]:
    """Pids of live processes whose environment names this stack (Linux /proc)."""
    needle = f"{MARKER}={state_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in environ:
            found.append(int(entry.name))
    return found


class ProductionStack:
    """The stack whose state lives in ``state_dir``; ``start``, ``status``, ``stop``."""

    def __init__(self, state_dir: Path, poller_tickers: Sequence[str] | None = None) -> None:
        """``poller_tickers``: the live poller's share of the universe (default all of it)."""
        self.state_dir = state_dir.resolve()
        self.poller_tickers = tuple(poller_tickers) if poller_tickers else None
        self.logs = self.state_dir / "logs"
        self.dagster_home = self.state_dir / "dagster"
        self.quant_home = self.state_dir / "home"
        self._state_file = self.state_dir / "stack.json"
        self._secrets_file = self.state_dir / "secrets.json"

    # --- state -----------------------------------------------------------------------------
    def state(self) -> dict:
        """What ``start`` recorded (empty when nothing is started)."""
        if not self._state_file.exists():
            return {}
        return json.loads(self._state_file.read_text())

    def _save(self, state: dict) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self._state_file)

    def _server_url(self) -> URL:
        """The PostgreSQL server (a URL with its password; never print it)."""
        return make_url(json.loads(self._secrets_file.read_text())["server"])

    def database_url(self, which: str, driver: str = "postgresql+psycopg2") -> URL:
        """The URL of the bars, dagster or mlflow database (contains the password)."""
        return self._server_url().set(drivername=driver, database=DATABASES[which])

    @property
    def webserver_url(self) -> str:
        return f"http://127.0.0.1:{self.state()['ports']['webserver']}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.state()['ports']['mlflow']}"

    def env(self) -> dict[str, str]:
        """The environment every service runs with (holds the password: do not log it)."""
        server = self._server_url()
        return {
            **os.environ,
            MARKER: str(self.state_dir),
            "DAGSTER_HOME": str(self.dagster_home),
            "QUANT_HOME": str(self.quant_home),
            "QUANT_DATABASE_URL": self.database_url("bars").render_as_string(hide_password=False),
            "DAGSTER_PG_HOST": str(server.host),
            "DAGSTER_PG_PORT": str(server.port or 5432),
            "DAGSTER_PG_USER": str(server.username),
            "DAGSTER_PG_PASSWORD": str(server.password or ""),
            "DAGSTER_PG_DB": DATABASES["dagster"],
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "QUANT_MLFLOW_UI_URL": self.mlflow_url,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            # dagster-postgres opens a connection per stored event; with batching on, a run's
            # materializations of many partitions go in one INSERT (a 45-day daily_tables run
            # measured 1.63x its stages' time without, 1.36x with: benchmarks/derived_tables.py).
            "DAGSTER_EVENT_BATCH_SIZE": os.environ.get("DAGSTER_EVENT_BATCH_SIZE", "1000"),
        }

    # --- start -----------------------------------------------------------------------------
    def start(self, timeout_s: float = 300) -> None:
        """Start every service and wait until each is ready; on failure stop what started."""
        if self.state().get("pids"):
            raise StackError(f"a stack is already recorded in {self.state_dir}: stop it first")
        for folder in (self.logs, self.dagster_home, self.quant_home):
            folder.mkdir(parents=True, exist_ok=True)
        try:
            self._start_postgres()
            self._write_instance_files()
            self._set_pool_limits()
            deadline = time.monotonic() + timeout_s
            services = self._services()
            for group in (("mlflow", "code_server"), ("webserver", "daemon", "poller")):
                for name in group:
                    self._launch(services[name])
                for name in group:
                    self._wait_ready(services[name], deadline)
            self._wait_daemons(deadline)
        except BaseException:
            self.stop()
            raise

    def _start_postgres(self) -> None:
        configured = os.environ.get(SERVER_URL_ENV)
        ports = {name: free_port() for name in ("mlflow", "code_server", "webserver")}
        state: dict = {"ports": ports, "pids": {}}
        if configured:
            server = make_url(configured).set(drivername="postgresql", database="postgres")
            state["postgres"] = {"managed": False}
        else:
            pg = EphemeralPostgres(database="postgres")
            try:
                pg.start()
            except BaseException:
                pg.stop()  # not recorded yet: remove the half-made cluster here
                raise
            server = pg.url.set(drivername="postgresql")
            state["postgres"] = {"managed": True, "root": str(pg.root), "port": pg.port}
        self._secrets_file.touch(mode=0o600)
        self._secrets_file.write_text(
            json.dumps({"server": server.render_as_string(hide_password=False)})
        )
        self._save(state)
        create_databases(server, list(DATABASES.values()))

    def _write_instance_files(self) -> None:
        shutil.copyfile(INSTANCE_YAML, self.dagster_home / "dagster.yaml")
        port = self.state()["ports"]["code_server"]
        (self.state_dir / "workspace.yaml").write_text(
            "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
            f"      port: {port}\n      location_name: {LOCATION}\n"
        )

    def _set_pool_limits(self) -> None:
        """``dagster instance concurrency set`` for each pool (creates the storage, too)."""
        for pool, limit in POOL_LIMITS.items():
            argv = [_bin("dagster"), "instance", "concurrency", "set", pool, str(limit)]
            done = subprocess.run(
                argv,
                cwd=self.state_dir,
                env=self.env(),
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise StackError(f"setting the pool {pool} failed: {done.stderr[-500:]}")

    def _services(self) -> dict[str, Service]:
        ports = self.state()["ports"]
        workspace = str(self.state_dir / "workspace.yaml")
        artifacts = self.state_dir / "mlflow-artifacts"
        services = [
            Service(
                "mlflow",
                [
                    _bin("mlflow"),
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(ports["mlflow"]),
                    "--workers",
                    "1",
                    "--artifacts-destination",
                    str(artifacts),
                ],
                lambda: http_ok(f"{self.mlflow_url}/health"),
            ),
            Service(
                "code_server",
                [
                    _bin("dagster"),
                    "api",
                    "grpc",
                    "-m",
                    "quant_assets.definitions",
                    "-d",
                    str(REPO),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(ports["code_server"]),
                    "--location-name",
                    LOCATION,
                ],
                lambda: port_open(ports["code_server"]),
            ),
            Service(
                "webserver",
                [
                    _bin("dagster-webserver"),
                    "-w",
                    workspace,
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(ports["webserver"]),
                ],
                lambda: http_ok(f"{self.webserver_url}/server_info"),
            ),
            Service("daemon", [_bin("dagster-daemon"), "run", "-w", workspace], lambda: True),
            Service("poller", self._poller_argv(), lambda: True),
        ]
        return {s.name: s for s in services}

    def _poller_argv(self) -> list[str]:
        argv = [_bin("quant"), "ingest", "--dagster", "on", "--score"]
        return [*argv, "--tickers", ",".join(self.poller_tickers)] if self.poller_tickers else argv

    def _launch(self, service: Service) -> None:
        env = self.env()
        if service.name == "mlflow":  # only MLflow sees its backend's URL
            env["MLFLOW_BACKEND_STORE_URI"] = self.database_url(
                "mlflow", "postgresql"
            ).render_as_string(hide_password=False)
            env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no job runner processes
        with (self.logs / f"{service.name}.log").open("ab") as log, interruptible_children():
            process = subprocess.Popen(
                service.argv,
                cwd=self.state_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as one
            )
        state = self.state()
        state["pids"][service.name] = process.pid
        self._save(state)

    def _wait_ready(self, service: Service, deadline: float) -> None:
        pid = self.state()["pids"][service.name]
        while not service.ready():
            if not group_alive(pid) or _exited(pid):
                raise StackError(f"{service.name} exited; see {self.logs / service.name}.log")
            if time.monotonic() > deadline:
                raise StackError(f"{service.name} not ready in time; see its log in {self.logs}")
            time.sleep(1)

    def _wait_daemons(self, deadline: float) -> None:
        """Until the daemon's sensor, schedule, run-queue and backfill loops beat."""
        while True:
            unhealthy = self.unhealthy_daemons()
            if not unhealthy:
                return
            if _exited(self.state()["pids"]["daemon"]):
                raise StackError(f"dagster-daemon exited; see {self.logs}/daemon.log")
            if time.monotonic() > deadline:
                raise StackError(f"daemons not healthy in time: {unhealthy}")
            time.sleep(2)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        """POST a GraphQL query to the webserver; its ``data``."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.webserver_url}/graphql",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with _NO_PROXY.open(request, timeout=30) as response:
            answer = json.loads(response.read())
        if answer.get("errors"):
            raise StackError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def unhealthy_daemons(self) -> list[str]:
        """The required daemons that have not sent a heartbeat recently (per the webserver)."""
        try:
            data = self.graphql(
                "{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy "
                "} } } }"
            )
        except (OSError, StackError):
            return ["webserver unreachable"]
        statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]
        return [s["daemonType"] for s in statuses if s["required"] and not s["healthy"]]

    # --- status and stop -------------------------------------------------------------------
    def status(self) -> dict[str, str]:
        """Each service: ``running``, ``stopped`` or ``not ready``; plus PostgreSQL's."""
        state = self.state()
        if not state:
            return {}
        out: dict[str, str] = {}
        services = self._services() if "ports" in state else {}
        for name, pid in state.get("pids", {}).items():
            if _exited(pid) or not group_alive(pid):
                out[name] = "stopped"
            else:
                out[name] = "running" if services[name].ready() else "not ready"
        pg = state.get("postgres", {})
        if pg.get("managed"):
            out["postgres"] = "running" if port_open(pg["port"]) else "stopped"
        return out

    def stop(self, grace_s: float = 20) -> list[str]:
        """Stop every service (SIGTERM, then SIGKILL after ``grace_s``), the throw-away
        PostgreSQL and any process left with this stack's marker. The names killed hard."""
        state = self.state()
        killed = []
        pids = state.get("pids", {})
        for name in reversed([n for n in SERVICES if n in pids]):
            if not _stop_group(pids[name], grace_s):
                killed.append(name)
        for pid in marked_processes(self.state_dir):
            killed.append(f"stray pid {pid}")
            _kill(pid)
        pg = state.get("postgres", {})
        if pg.get("managed"):
            secret = self._server_url()
            EphemeralPostgres.attach(
                Path(pg["root"]), pg["port"], str(secret.password), "postgres"
            ).stop()
        for path in (self._state_file, self._secrets_file):
            path.unlink(missing_ok=True)
        return killed


def _exited(pid: int) -> bool:
    """Reap ``pid`` if it is our child and has exited; whether it has."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child (another command started it)
        return not Path(f"/proc/{pid}").exists()
    return done == pid


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _stop_group(pgid: int, grace_s: float) -> bool:
    """SIGTERM the group, wait, SIGKILL what is left; True when it ended within the grace."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        _exited(pgid)
        if not group_alive(pgid):
            return True
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    for _ in range(50):
        _exited(pgid)
        if not group_alive(pgid):
            break
        time.sleep(0.1)
    return False
