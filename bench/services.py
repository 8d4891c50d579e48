"""Starting and stopping what the benchmarks run against.

A throwaway PostgreSQL (`tools.pg_server`), the suite's Elasticsearch node
(`tools.search_node`, 127.0.0.1:9250, reused), and child processes: `bicameral
serve`, `bicameral worker` and the baseline Starlette app. Everything listens
on 127.0.0.1 only. Every index this run makes starts with its own prefix and is
deleted at the end; every process it starts is stopped by its pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
from elasticsearch import AsyncElasticsearch

from api.settings import Settings
from tools.pg_server import PostgresServer

__all__ = [
    "REPO",
    "ChildProcess",
    "Deployment",
    "Services",
    "cpu_seconds",
    "elasticsearch_client",
    "peak_rss_mib",
    "serving_processes",
]

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ES_PORT = 9250  # the test suite's node, shared: only our own indexes are touched
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    """Every live process below `pid` (uvicorn's workers below its supervisor)."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found


def _measured(pid: int) -> list[int]:
    """The processes a figure of `pid` adds up: a service's own children (the
    processes of `bicameral serve --workers N`, of the baseline app) are part of
    it; the bench process's are not (they are the services, measured apart)."""
    return [pid] if pid == os.getpid() else [pid, *_descendants(pid)]


def serving_processes(pid: int) -> int:
    """How many processes serve requests for the server started as `pid`: its
    workers when it supervises some, else itself. (uvicorn starts its workers
    with multiprocessing's spawn, which adds a resource tracker: not a server.)"""
    workers = 0
    for child in _descendants(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        workers += b"resource_tracker" not in command
    return workers or 1


def _peak_rss_one(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM of a live process, in MiB, added up over its processes (see
    `_measured`); None once it is gone."""
    peaks = [_peak_rss_one(p) for p in _measured(pid)]
    if peaks[0] is None:
        return None
    return sum(p for p in peaks if p is not None)


def _cpu_seconds_one(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, added up over its
    processes (see `_measured`); 0.0 once it is gone."""
    return sum(_cpu_seconds_one(p) for p in _measured(pid))


def elasticsearch_client(url: str) -> AsyncElasticsearch:
    """A client configured as the service configures its own (api/bootstrap.py)."""
    return AsyncElasticsearch(url, request_timeout=30, retry_on_timeout=True, max_retries=2)


@dataclass
class ChildProcess:
    """A child process writing to a log file; stopped by its pid, never by name."""

    label: str
    process: subprocess.Popen[bytes]
    log: Path
    url: str | None = None

    @classmethod
    def start(
        cls, label: str, command: list[str], env: Mapping[str, str], log: Path, url: str | None
    ) -> ChildProcess:
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                env=dict(env),
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return cls(label, process, log, url)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.label} exited with {self.process.returncode}:\n{self.log_tail()}"
            )

    async def wait_ready(self, path: str = "/healthz") -> None:
        assert self.url is not None
        deadline = time.monotonic() + READY_TIMEOUT
        async with httpx.AsyncClient(trust_env=False, timeout=2.0) as client:
            while True:
                self.check_alive()
                try:
                    if (await client.get(self.url + path)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.label} did not answer in {READY_TIMEOUT:.0f}s:\n{self.log_tail()}"
                    )
                await asyncio.sleep(0.1)

    def peak_rss_mib(self) -> float | None:
        return peak_rss_mib(self.pid)

    def stop(self) -> float | None:
        """SIGTERM (uvicorn and the worker shut down cleanly), then SIGKILL; the peak RSS."""
        peak = self.peak_rss_mib()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
        return peak


@dataclass(frozen=True)
class Deployment:
    """One deployment of the service: its write database and index prefix."""

    name: str  # "postgres" or "sqlite"
    database_url: str
    index_prefix: str

    def env(self, **extra: str) -> dict[str, str]:
        """The environment `bicameral` reads (api/settings.py); defaults for the rest."""
        env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTINGS_VARIABLES}
        env.update(
            DATABASE_URL=self.database_url,
            INDEX_PREFIX=self.index_prefix,
            HOST="127.0.0.1",
            # Access logs off on both sides alike (the baseline app runs at warning too).
            LOG_LEVEL="warning",
            # The load comes from one address, far over any client's query budget: a
            # budget no load reaches keeps its bookkeeping in what is measured, and
            # no answer a 429.
            BUDGET_PER_MINUTE=str(10**12),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env


# Variables api/settings.py reads: none of the caller's may leak into a child (an
# AUTH_JWKS_URL or AUTH_ISSUER, say, would refuse the tokens `admin_token` signs).
_SETTINGS_VARIABLES = {f.name.upper() for f in dataclasses.fields(Settings)}


@dataclass
class Services:
    """PostgreSQL, Elasticsearch, a work folder, and the child processes of one run."""

    workdir: Path
    run_prefix: str
    elasticsearch_url: str = ""
    postgres: PostgresServer | None = None
    children: list[ChildProcess] = field(default_factory=list)
    # Peak RSS (MiB) of each process, read just before it stopped.
    memory: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls) -> Services:
        run = uuid.uuid4().hex[:8]
        workdir = Path(tempfile.mkdtemp(prefix=f"bicameral-bench-{run}-"))
        return cls(workdir=workdir, run_prefix=f"bench-{run}")

    def start(self) -> None:
        from tools import search_node

        print("starting PostgreSQL (throwaway) ...", flush=True)
        server = PostgresServer()
        server.start()
        self.postgres = server
        self.versions["postgresql server"] = server.server_version()
        print(f"  PostgreSQL {server.server_version()} on 127.0.0.1:{server.port}", flush=True)
        print(f"ensuring Elasticsearch on 127.0.0.1:{ES_PORT} ...", flush=True)
        self.elasticsearch_url = search_node.ensure_running(
            port=ES_PORT, data_dir=REPO / ".data" / "test"
        )
        status = search_node.status(ES_PORT, REPO / ".data" / "test")
        # Not "elasticsearch": that key is the Python client's version.
        self.versions["elasticsearch server"] = str(status.get("version"))
        print(f"  Elasticsearch {status.get('version')} at {self.elasticsearch_url}", flush=True)

    def admin_token(self) -> str:
        """An admin's token that every `bicameral serve` of this run accepts: they all
        keep DATA_DIR in `workdir`, and verify with the local signing key there (made
        here if no API has made it yet; the file is created atomically)."""
        from api.auth import LocalSigningKey
        from api.identity import Role

        key = LocalSigningKey.load_or_create(self.workdir)
        # Longer than any run; the local issuer and audience, as the children's
        # environment names no other (see _SETTINGS_VARIABLES).
        return key.token(role=Role.ADMIN, subject="bench", ttl=timedelta(days=1))

    def prefix(self, name: str) -> str:
        return f"{self.run_prefix}-{name}"

    async def postgres_database(self, name: str) -> str:
        """A new, migrated database on the throwaway server; its SQLAlchemy URL."""
        server = self.postgres
        assert server is not None, "start() first"
        server.create_database(name)
        url = server.sqlalchemy_url(name)
        await _migrate(url)
        return url

    async def sqlite_database(self, name: str) -> str:
        url = f"sqlite+aiosqlite:///{self.workdir / (name + '.db')}"
        await _migrate(url)
        return url

    def deployment(self, name: str, database_url: str) -> Deployment:
        return Deployment(name, database_url, self.prefix(name))

    async def serve(
        self, deployment: Deployment, *, embedded_worker: bool, processes: int | None = None
    ) -> ChildProcess:
        """`bicameral serve`, with `processes` processes (default: its own, one per
        core on PostgreSQL and one on SQLite)."""
        port = free_port()
        env = deployment.env(
            PORT=str(port),
            DATA_DIR=str(self.workdir),
            ELASTICSEARCH_URL=self.elasticsearch_url,
            EMBEDDED_WORKER="true" if embedded_worker else "false",
            **({"WEB_CONCURRENCY": str(processes)} if processes else {}),
        )
        label = f"api ({deployment.name}{', embedded worker' if embedded_worker else ''})"
        child = self._start(
            label, [str(BIN / "bicameral"), "serve"], env, f"http://127.0.0.1:{port}"
        )
        await child.wait_ready()
        return child

    async def worker(self, deployment: Deployment) -> ChildProcess:
        env = deployment.env(DATA_DIR=str(self.workdir), ELASTICSEARCH_URL=self.elasticsearch_url)
        child = self._start(
            f"worker ({deployment.name})", [str(BIN / "bicameral"), "worker"], env, None
        )
        await asyncio.sleep(1.0)
        child.check_alive()
        return child

    async def baseline_app(self, index: str, processes: int | None = None) -> ChildProcess:
        """The bare Starlette app, with `processes` processes (default: as many as
        `bicameral serve` runs on PostgreSQL, where paths 1 and 2 run)."""
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTINGS_VARIABLES}
        command = [
            sys.executable,
            "-m",
            "bench.baseline_app",
            "--port",
            str(port),
            "--elasticsearch-url",
            self.elasticsearch_url,
            "--index",
            index,
            "--workers",
            str(processes or Settings(database_url="postgresql+asyncpg://bench").serve_processes),
        ]
        child = self._start("baseline app", command, env, f"http://127.0.0.1:{port}")
        await child.wait_ready()
        return child

    def _start(
        self, label: str, command: list[str], env: Mapping[str, str], url: str | None
    ) -> ChildProcess:
        log = self.workdir / f"{label.split()[0]}-{len(self.children)}.log"
        child = ChildProcess.start(label, command, env, log, url)
        self.children.append(child)
        return child

    def stop_child(self, child: ChildProcess) -> None:
        peak = child.stop()
        if peak is not None:
            self.memory[child.label] = max(peak, self.memory.get(child.label, 0.0))
        if child in self.children:
            self.children.remove(child)

    async def stop(self) -> None:
        for child in list(self.children):
            with contextlib.suppress(Exception):
                self.stop_child(child)
        if self.elasticsearch_url:
            client = elasticsearch_client(self.elasticsearch_url)
            try:
                await client.indices.delete(
                    index=f"{self.run_prefix}-*", ignore_unavailable=True, expand_wildcards="all"
                )
            except Exception as error:
                print(f"could not delete indexes {self.run_prefix}-*: {error}", file=sys.stderr)
            finally:
                await client.close()
        server = self.postgres
        if server is not None:
            server.stop()
            self.postgres = None
        shutil.rmtree(self.workdir, ignore_errors=True)


async def _migrate(url: str) -> None:
    from writemodel.database import create_engine
    from writemodel.migrate import migrate

    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
