"""A throwaway PostgreSQL server on loopback, for tests and manual runs.

`PostgresServer().start()` initialises a cluster in a fresh temporary folder,
starts it on a free port of 127.0.0.1 with durability turned off (the data is
thrown away anyway), and `stop()` removes every trace of it. PostgreSQL refuses
to run as root, so a root process runs it as an unprivileged system user.

Standard library only: the test suite and `python -m tools.pg_server` import
it before anything else is known to work. SQL goes through `psql`, which ships
with the server.
"""

from __future__ import annotations

import argparse
import atexit
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote, urlsplit, urlunsplit
from uuid import uuid4

__all__ = [
    "INSTALL_HINT",
    "PostgresServer",
    "PostgresServerError",
    "binary_version",
    "create_database",
    "drop_database",
    "find_pg_bin",
    "redact_url",
    "server_version",
    "sqlalchemy_url",
    "temporary_database",
]

INSTALL_HINT = (
    "PostgreSQL's server programs (initdb, pg_ctl, postgres) were not found under "
    "/usr/lib/postgresql/<version>/bin nor on PATH. Install them with "
    "`apt-get install postgresql` (Debian/Ubuntu; `dnf install postgresql-server` on "
    "Fedora, `brew install postgresql` on macOS), or set PG_BIN to the folder that holds them."
)

# The superuser initdb creates; trust authentication, so no password.
SUPERUSER = "postgres"
# Run as this system user when we are root and there is no `postgres` user.
FALLBACK_USER = "bicameral"

_SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")
_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    # Durability buys nothing for a cluster that is deleted afterwards.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


class PostgresServerError(RuntimeError):
    """The server could not be found, started, stopped or queried."""


def find_pg_bin() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres, newest version first; None if absent.

    Debian's real programs live in /usr/lib/postgresql/<version>/bin; what sits on
    PATH may be a wrapper or a symlink, so that folder wins. PG_BIN overrides both.
    """
    if explicit := os.environ.get("PG_BIN"):
        return Path(explicit) if _has_server_programs(Path(explicit)) else None
    versioned = sorted(
        (d for d in Path("/usr/lib/postgresql").glob("*/bin") if _has_server_programs(d)),
        key=lambda d: _version_key(d.parent.name),
        reverse=True,
    )
    if versioned:
        return versioned[0]
    on_path = shutil.which("pg_ctl")
    if on_path is not None:
        folder = Path(on_path).resolve().parent
        if _has_server_programs(folder):
            return folder
    return None


def _has_server_programs(folder: Path) -> bool:
    return all(os.access(folder / name, os.X_OK) for name in _SERVER_PROGRAMS)


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def binary_version(bin_dir: Path) -> str:
    """What `postgres --version` says, e.g. 'postgres (PostgreSQL) 15.14 (Debian ...)'."""
    result = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or result.stderr.strip()


def _require_pg_bin() -> Path:
    folder = find_pg_bin()
    if folder is None:
        raise PostgresServerError(INSTALL_HINT)
    return folder


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder, listening only on 127.0.0.1.

    Use as a context manager, or call `start()` and `stop()`. Trust
    authentication: any client on loopback connects as `postgres` without a password.
    """

    def __init__(self, *, bin_dir: Path | None = None, startup_timeout: float = 60.0) -> None:
        self._bin_dir = bin_dir
        self._startup_timeout = startup_timeout
        self._folder: Path | None = None
        self._port: int | None = None
        self._pid: int | None = None
        self._user: pwd.struct_passwd | None = None

    # -- lifecycle --------------------------------------------------------

    def start(self) -> Self:
        """Initialise and start the cluster; return once it accepts connections."""
        if self._folder is not None:
            raise PostgresServerError("this PostgresServer is already started")
        bin_dir = self._bin_dir or _require_pg_bin()
        self._bin_dir = bin_dir
        self._user = _service_user()
        self._folder = Path(tempfile.mkdtemp(prefix="bicameral-pg-", dir=_temp_parent(self._user)))
        atexit.register(self.stop)
        try:
            (self._folder / "sockets").mkdir()
            if self._user is not None:
                for path in (self._folder, self._folder / "sockets"):
                    os.chown(path, self._user.pw_uid, self._user.pw_gid)
            self._initdb()
            self._start_postmaster()
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown, then kill) and delete its folder. Idempotent."""
        folder = self._folder
        if folder is None:
            return
        # A failed start may still have left a postmaster behind; its pid file knows.
        pid = self._pid if self._pid is not None else self._read_pid()
        atexit.unregister(self.stop)
        try:
            if pid is not None and _alive(pid):
                self._pg_ctl("stop", "-m", "fast", "-t", "30")
                if _alive(pid):
                    _kill_group(pid)
        finally:
            self._folder = self._port = self._pid = None
            shutil.rmtree(folder, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses ----------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise PostgresServerError("the server is not running")
        return self._port

    @property
    def pid(self) -> int:
        """The postmaster's process id."""
        if self._pid is None:
            raise PostgresServerError("the server is not running")
        return self._pid

    @property
    def folder(self) -> Path:
        """The temporary folder holding the data directory, socket and log."""
        if self._folder is None:
            raise PostgresServerError("the server is not running")
        return self._folder

    @property
    def running(self) -> bool:
        return self._pid is not None and _alive(self._pid)

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq / asyncpg URL: postgresql://postgres@127.0.0.1:PORT/dbname."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    def sqlalchemy_url(self, dbname: str = "postgres") -> str:
        """The same address for SQLAlchemy's async engine (the asyncpg driver)."""
        return sqlalchemy_url(self.dsn(), dbname)

    # -- databases ----------------------------------------------------------

    def create_database(self, name: str) -> None:
        create_database(self.dsn(), name)

    def drop_database(self, name: str) -> None:
        drop_database(self.dsn(), name)

    def server_version(self) -> str:
        return server_version(self.dsn())

    # -- internals ----------------------------------------------------------

    @property
    def _data(self) -> Path:
        return self.folder / "data"

    @property
    def _log(self) -> Path:
        return self.folder / "server.log"

    def _initdb(self) -> None:
        # C.UTF-8 folds and classifies non-ASCII text like a real deployment; plain C
        # is the fallback where the C library has no such locale.
        locale = "C.UTF-8" if Path("/usr/lib/locale/C.utf8").exists() else "C"
        result = self._run(
            "initdb",
            "-D",
            str(self._data),
            "-A",
            "trust",
            "-U",
            SUPERUSER,
            "--no-sync",
            "-E",
            "UTF8",
            f"--locale={locale}",
        )
        if result.returncode != 0:
            raise PostgresServerError(f"initdb failed:\n{result.stdout}{result.stderr}")
        settings = {**_SETTINGS, "unix_socket_directories": f"'{self.folder / 'sockets'}'"}
        with (self._data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# bicameral: a throwaway cluster for tests\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _start_postmaster(self) -> None:
        # The free port can be taken between choosing and binding it; try another then.
        for attempt in range(3):
            port = _free_port()
            result = self._pg_ctl(
                "start",
                "-l",
                str(self._log),
                "-t",
                str(int(self._startup_timeout)),
                "-o",
                f"-p {port}",
            )
            if result.returncode == 0:
                self._port = port
                self._pid = self._read_pid()
                return
            log = self._log_tail()
            if "could not bind" not in log or attempt == 2:
                raise PostgresServerError(
                    f"PostgreSQL did not start (pg_ctl exit {result.returncode}):\n"
                    f"{result.stdout}{result.stderr}\n--- server log ---\n{log}"
                )

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while True:
            with socket.socket() as probe:
                probe.settimeout(1.0)
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if time.monotonic() > deadline or not self.running:
                raise PostgresServerError(
                    f"PostgreSQL does not accept connections on 127.0.0.1:{self.port}:\n"
                    f"--- server log ---\n{self._log_tail()}"
                )
            time.sleep(0.05)

    def _read_pid(self) -> int | None:
        # postmaster.pid: the first line is the postmaster's process id.
        try:
            return int((self._data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def _log_tail(self, lines: int = 40) -> str:
        try:
            text = self._log.read_text(errors="replace")
        except OSError as exc:
            return f"(no server log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def _pg_ctl(self, action: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run("pg_ctl", "-D", str(self._data), "-w", *args, action)

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        assert self._bin_dir is not None
        user = self._user
        # No PG* variable of the caller may redirect initdb or pg_ctl elsewhere.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        if user is not None:
            env.update(HOME=str(self.folder), USER=user.pw_name, LOGNAME=user.pw_name)
        return subprocess.run(
            [str(self._bin_dir / program), *args],
            cwd=self.folder,  # the user must be able to enter it, and root's home is closed
            env=env,
            user=None if user is None else user.pw_uid,
            group=None if user is None else user.pw_gid,
            extra_groups=None if user is None else [],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=self._startup_timeout + 30,
            check=False,
        )


# -- helpers for any server, started here or given by URL -----------------------


def sqlalchemy_url(url: str, dbname: str) -> str:
    """`url` (postgresql://...) pointed at `dbname`, for SQLAlchemy's asyncpg driver."""
    parts = urlsplit(url)
    return urlunsplit(
        parts._replace(scheme="postgresql+asyncpg", path="/" + quote(dbname, safe=""))
    )


def server_version(url: str) -> str:
    """The server's version, e.g. '15.14 (Debian 15.14-0+deb12u1)'."""
    return _psql(url, "SHOW server_version")


def create_database(url: str, name: str) -> None:
    """Create database `name` on the server at `url` (whose user may create databases)."""
    _psql(url, f"CREATE DATABASE {_identifier(name)}")


def drop_database(url: str, name: str) -> None:
    """Drop database `name` if it exists, disconnecting whoever is still connected."""
    _psql(url, f"DROP DATABASE IF EXISTS {_identifier(name)} WITH (FORCE)")


@contextmanager
def temporary_database(url: str, prefix: str = "test_") -> Iterator[str]:
    """A uniquely named database on the server at `url`; yields its SQLAlchemy URL."""
    name = f"{prefix}{uuid4().hex[:16]}"
    create_database(url, name)
    try:
        yield sqlalchemy_url(url, name)
    finally:
        drop_database(url, name)


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _psql(url: str, sql: str) -> str:
    bin_dir = find_pg_bin()
    local = bin_dir / "psql" if bin_dir is not None else None
    psql = str(local) if local is not None and local.exists() else shutil.which("psql")
    if psql is None:
        raise PostgresServerError(
            "psql was not found; install it with `apt-get install postgresql-client`"
        )
    env = {**os.environ, "PGCONNECT_TIMEOUT": os.environ.get("PGCONNECT_TIMEOUT", "10")}
    result = subprocess.run(
        [psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise PostgresServerError(
            f"{sql!r} failed on {redact_url(url)}: {result.stderr.strip() or result.stdout.strip()}"
        )
    return result.stdout.strip()


def redact_url(url: str) -> str:
    """`url` with its password, if any, masked: fit to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


# -- processes and users ----------------------------------------------------------


def _service_user() -> pwd.struct_passwd | None:
    """The user to run PostgreSQL as: None unless we are root, who may not run it."""
    if os.geteuid() != 0:
        return None
    for name in (SUPERUSER, FALLBACK_USER):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    created = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_USER],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        # Another process may have created it meanwhile; what counts is that it exists.
        return pwd.getpwnam(FALLBACK_USER)
    except KeyError:
        raise PostgresServerError(
            f"running as root, and could not create the system user {FALLBACK_USER!r} "
            f"to run PostgreSQL as: {created.stderr.strip()}"
        ) from None


def _temp_parent(user: pwd.struct_passwd | None) -> str | None:
    """Where to make the temporary folder: somewhere the service user can reach."""
    if user is None:
        return None
    parent = Path(tempfile.gettempdir()).resolve()
    # Every ancestor must be searchable by others (root's TMPDIR might be under /root).
    if all(p.stat().st_mode & 0o001 for p in (parent, *parent.parents)):
        return str(parent)
    return "/tmp"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # pg_ctl detaches the postmaster, so nobody here reaps it: a zombie counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _kill_group(pid: int) -> None:
    """Kill the postmaster and its children (pg_ctl made it a process-group leader)."""
    for sig in (signal.SIGQUIT, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _alive(pid):
            return


def main(argv: list[str] | None = None) -> int:
    """Start a server, print its URL, and keep it until Ctrl-C; `--help` only explains."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.pg_server",
        description="Start a throwaway PostgreSQL server on 127.0.0.1, print its URLs, "
        "and keep it until Ctrl-C (or SIGTERM), which stops it and deletes its data.",
        epilog="PG_BIN names the folder holding initdb, pg_ctl and postgres, if they are "
        "not under /usr/lib/postgresql/<version>/bin nor on PATH.",
    )
    # Parsed before anything starts: --help, or a typo, must never leave a server behind.
    parser.parse_args(sys.argv[1:] if argv is None else argv)
    # pg_ctl detaches the server from the terminal, so stop it ourselves on SIGTERM too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # A shell starts background jobs with SIGINT ignored; Ctrl-C or kill -INT must still work.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with PostgresServer() as server:
            print(f"PostgreSQL {server.server_version()} running in {server.folder}")
            print(server.dsn())
            print(f"SQLAlchemy: {server.sqlalchemy_url()}")
            print("Ctrl-C stops it and deletes its data.", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    except PostgresServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
