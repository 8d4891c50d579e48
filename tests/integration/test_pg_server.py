"""The suite's PostgreSQL: a real server that answers, databases that come and go,
and a throwaway server (tools.pg_server) that leaves nothing behind."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tools import pg_server
from tools.pg_server import PostgresServer

pytestmark = pytest.mark.postgres


async def test_the_server_answers_select_version(postgres_server_url: str) -> None:
    connection = await asyncpg.connect(postgres_server_url)
    try:
        version = await connection.fetchval("select version()")
    finally:
        await connection.close()

    assert version.startswith("PostgreSQL ")


async def test_a_fresh_database_is_usable_through_sqlalchemy(fresh_postgres_database: str) -> None:
    engine = create_async_engine(fresh_postgres_database)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("create table t (id int primary key, name text)"))
            await connection.execute(text("insert into t values (1, 'één')"))
        async with engine.connect() as connection:
            name = await connection.scalar(text("select name from t where id = 1"))
            database = await connection.scalar(text("select current_database()"))
    finally:
        await engine.dispose()

    assert name == "één"
    assert database == _database_name(fresh_postgres_database)


async def test_a_temporary_database_is_dropped_even_while_a_client_holds_it(
    postgres_server_url: str,
) -> None:
    with pg_server.temporary_database(postgres_server_url) as url:
        name = _database_name(url)
        # Still connected at the end: the drop must force it out rather than fail.
        holder = await asyncpg.connect(postgres_server_url, database=name)
        assert name in await _database_names(postgres_server_url)

    try:
        assert name not in await _database_names(postgres_server_url)
    finally:
        await holder.close()


def test_a_stopped_server_leaves_no_process_and_no_folder_behind() -> None:
    with PostgresServer() as server:
        pid, folder, port = server.pid, server.folder, server.port
        assert server.running
        assert server.server_version()
        assert folder.is_dir()

    assert not server.running
    assert not folder.exists()
    assert not _process_alive(pid)
    assert not _processes_mentioning(str(folder))
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("option", ["--help", "-h"])
def test_asking_the_entry_point_for_help_prints_usage_and_starts_no_server(option: str) -> None:
    code, out, err = _run_entry_point(option)

    assert code == 0, err
    assert out.startswith("usage: python -m tools.pg_server")
    assert "Ctrl-C" in out
    assert "running in" not in out


def test_an_unknown_option_is_refused_before_any_server_starts() -> None:
    code, out, err = _run_entry_point("--port=5432")

    assert code == 2
    assert "unrecognized arguments: --port=5432" in err
    assert "running in" not in out


def _run_entry_point(*args: str) -> tuple[int, str, str]:
    """`python -m tools.pg_server ARGS`; one that is still running after 30 s started a
    server: it is stopped by SIGTERM (which deletes the server) and the test fails."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.pg_server", *args],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        pytest.fail(f"`python -m tools.pg_server {' '.join(args)}` kept running:\n{out}{err}")
    return process.returncode, out, err


def _database_name(url: str) -> str:
    return unquote(urlsplit(url).path.lstrip("/"))


async def _database_names(url: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("select datname from pg_database")
    finally:
        await connection.close()
    return {row["datname"] for row in rows}


def _process_alive(pid: int) -> bool:
    # The postmaster is not our child, so a zombie of it may linger until init reaps it.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _processes_mentioning(needle: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(entry.name))
    return found
