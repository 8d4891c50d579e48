"""Path f: subscription fan-out, many subscribers of one `changes` on one process.

One `bicameral serve` process (SQLite, embedded worker, as the demo runs) and a
subscribing client in its own process (`python -m bench.fanout client`, the
`websockets` library) that opens N sockets over graphql-transport-ws, each
subscribing to the same `changes` document as the same admin. When every
socket is acknowledged and its subscription has settled, the bench reads the
server's VmRSS, sends one createProduct over HTTP, and notes when its answer
(the commit) came back; the client notes when each socket received the change.
Rows per N: how many were delivered, delivery p50 and p99 from the answer to
each receipt (wall clock, same machine), and the server's RSS growth per
subscriber (VmRSS after subscribing minus before, over N).

The client runs on the same two cores as the server, as the issue measured it,
so its own reading of N frames is part of each receipt time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.mutations import http_create_product
from bench.report import Figure, Target
from bench.services import Deployment, Services
from bench.stats import percentile

__all__ = ["COUNTS", "counts", "measure"]

REPO = Path(__file__).resolve().parent.parent
CLIENTS = REPO / "tests" / "clients"  # its node_modules hold `ws` (npm ci there)

COUNTS = (1000, 5000, 10000)
SMOKE_COUNTS = (200, 1000)
GOAL_P99_S = 1.0  # the issue's goal at 10,000 subscribers
# The issue's measure before this work: about 120 KiB per subscriber.
ISSUE_KIB = 120.0

CHANGES = "subscription { changes(types: [PRODUCT]) { entityType id kind position } }"


def client_command(url: str, token: str, n: int) -> list[str]:
    """Node with `ws` when installed: its client costs the shared cores less than
    Python's; else the `websockets` client below."""
    node = shutil.which("node")
    if node and (CLIENTS / "node_modules" / "ws").is_dir():
        return [node, str(REPO / "bench" / "fanout_client.mjs"), url, token, str(n), CHANGES]
    return [sys.executable, "-m", "bench.fanout", "client", url, token, str(n)]


def counts(size: str) -> tuple[int, ...]:
    """Subscriber counts per bench size: smoke checks the path runs, the others measure."""
    return SMOKE_COUNTS if size == "smoke" else COUNTS


def raise_open_files() -> int:
    """Lift the soft limit on open files to the hard one: a socket is a file."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


async def measure(
    services: Services, deployment: Deployment, counts: tuple[int, ...] = COUNTS
) -> list[Figure]:
    raise_open_files()  # the server inherits it
    figures: list[Figure] = []
    for n in counts:
        # A fresh process for each N: memory a process has grown to it keeps, and
        # would be counted against the next N.
        api = await services.serve(deployment, embedded_worker=True, processes=1)
        try:
            print(f"  f: {n:,} subscribers ...", flush=True)
            result = await one_round(api.url or "", api.pid, services.admin_token(), n)
            # Its own deployment (index prefix), always on SQLite.
            figures += _figures("sqlite", n, result)
            api.check_alive()
        finally:
            services.stop_child(api)
    return figures


async def one_round(url: str, pid: int, token: str, n: int) -> dict[str, Any]:
    before = rss_kib(pid)
    command = client_command(url, token, n)
    client = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "CLIENTS_DIR": str(CLIENTS)},
        limit=2**24,  # the receipt times come back as one line
    )
    assert client.stdin is not None and client.stdout is not None
    try:
        ready = await client.stdout.readline()
        if not ready.startswith(b"ready"):
            raise RuntimeError(f"the fan-out client did not get ready: {ready!r}")
        subscribed = float(ready.split()[1])
        # Let the last subscriptions settle in the server before measuring it.
        await asyncio.sleep(2.0 + n / 5000)
        after = rss_kib(pid)
        headers = {"authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(headers=headers, timeout=60.0, trust_env=False) as http:
            sku = f"FANOUT-{n}-{time.time_ns()}"
            sent = time.time()
            await http_create_product(http, url, sku, n)
            answered = time.time()
        client.stdin.write(b"go\n")
        await client.stdin.drain()
        received: list[float] = json.loads(await client.stdout.readline())
    finally:
        if client.returncode is None:
            client.kill()
        await client.wait()
    return {
        "n": n,
        "client": "node ws" if "node" in Path(command[0]).name else "python websockets",
        "received": received,
        "answered": answered,
        "mutation_s": answered - sent,
        "subscribe_s": subscribed,
        "rss_before_kib": before,
        "rss_after_kib": after,
    }


def _figures(database: str, n: int, r: dict[str, Any]) -> list[Figure]:
    latencies = sorted(max(0.0, t - r["answered"]) for t in r["received"])
    p50 = percentile(latencies, 50) if latencies else float("nan")
    p99 = percentile(latencies, 99) if latencies else float("nan")
    per = (r["rss_after_kib"] - r["rss_before_kib"]) / n
    details = {
        "subscribers": n,
        "client": r["client"],
        "delivered": len(latencies),
        "subscribe_all_s": r["subscribe_s"],
        "mutation_answer_s": r["mutation_s"],
        "rss_before_mib": r["rss_before_kib"] / 1024,
        "rss_after_mib": r["rss_after_kib"] / 1024,
        "max_s": latencies[-1] if latencies else None,
    }
    side = "graphql-transport-ws, one serve process"
    return [
        Figure(
            "f",
            f"delivered of {n:,} subscribers",
            float(len(latencies)),
            float(n),
            "subscribers",
            Target(">=", 1.0),
            database,
            side,
            "every subscriber",
            details,
        ),
        Figure(
            "f",
            f"delivery p50, {n:,} subscribers",
            p50,
            GOAL_P99_S,
            "s",
            None,
            database,
            side,
            "the issue's 1 s goal",
            details,
        ),
        Figure(
            "f",
            f"delivery p99, {n:,} subscribers",
            p99,
            GOAL_P99_S,
            "s",
            Target("<=", 1.0),
            database,
            side,
            "the issue's 1 s goal",
            details,
        ),
        Figure(
            "f",
            f"server RSS per subscriber, {n:,}",
            per,
            ISSUE_KIB,
            "KiB",
            None,
            database,
            side,
            "the issue's ~120 KiB",
            details,
        ),
    ]


# ---- the subscribing client, in its own process -------------------------------------


async def _client(url: str, token: str, n: int) -> None:
    import websockets

    raise_open_files()
    ws_url = url.replace("http", "ws", 1) + "/graphql"
    received: list[float] = []
    go = asyncio.Event()
    init = json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    subscribe = json.dumps({"id": "1", "type": "subscribe", "payload": {"query": CHANGES}})
    sockets: list[Any] = []
    semaphore = asyncio.Semaphore(200)  # connect in waves, not 10,000 handshakes at once

    async def open_one() -> Any:
        async with semaphore:
            for attempt in range(5):
                try:
                    ws = await websockets.connect(
                        ws_url,
                        subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
                        max_queue=16,
                        ping_interval=None,
                        open_timeout=60,
                    )
                    break
                except (OSError, TimeoutError, websockets.exceptions.InvalidHandshake):
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.5)
            await ws.send(init)
            ack = json.loads(await ws.recv())
            if ack.get("type") != "connection_ack":
                raise RuntimeError(f"not acknowledged: {ack}")
            await ws.send(subscribe)
            return ws

    async def listen(ws: Any) -> None:
        async for message in ws:
            if '"next"' in message:
                received.append(time.time())
                return

    began = time.monotonic()
    sockets = list(await asyncio.gather(*(open_one() for _ in range(n))))
    listeners = [asyncio.ensure_future(listen(ws)) for ws in sockets]
    print(f"ready {time.monotonic() - began:.2f}", flush=True)
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), go.set)
    await go.wait()
    # Until every socket has its change, or 60 s.
    await asyncio.wait(listeners, timeout=60)
    print(json.dumps(received), flush=True)
    for task in listeners:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout")
    commands = parser.add_subparsers(dest="command", required=True)
    client = commands.add_parser("client", help="subscribe N sockets (run by the bench)")
    client.add_argument("url")
    client.add_argument("token")
    client.add_argument("n", type=int)
    alone = commands.add_parser("run", help="path f alone (SQLite), printed as JSON")
    alone.add_argument("--counts", default=",".join(str(c) for c in COUNTS))
    args = parser.parse_args(argv)
    if args.command == "client":
        asyncio.run(_client(args.url, args.token, args.n))
        return 0
    counts = tuple(int(c) for c in args.counts.split(","))
    for row in asyncio.run(_alone(counts)):
        print(f"{row['measure']}: {row['system']} {row['unit']}  {json.dumps(row['details'])}")
    return 0


async def _alone(counts: tuple[int, ...]) -> list[dict[str, Any]]:
    services = Services.create()
    try:
        services.start()
        url = await services.sqlite_database("fanout")
        figures = await measure(services, services.deployment("sqlite", url), counts)
    finally:
        await services.stop()
    return [f.as_dict() for f in figures]


if __name__ == "__main__":
    sys.exit(main())
