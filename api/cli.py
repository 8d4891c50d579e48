"""`bicameral`: the one console script.

  bicameral serve [--demo] [--workers N] [--role all|query|command]
                                      the API (and, on SQLite, the feed worker);
                                      N processes, default one per core (SQLite: one)
  bicameral worker                    the feed worker alone
  bicameral migrate                   create or upgrade the write database
  bicameral token --role ROLE [--customer ID] [--subject S] [--ttl 1h]
                                      a token signed with the local key (development)
  bicameral search-node ...           a local Elasticsearch node (start|stop|status|logs)
  bicameral readmodel status          where each read model is, and how far behind
  bicameral readmodel rebuild [NAME]  rebuild read models without downtime
  bicameral readmodel quarantine list|retry|drop [ID...|--all]
                                      documents Elasticsearch refused, set aside

Settings come from environment variables: see README.md or api/settings.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.settings import Settings, SettingsError

if TYPE_CHECKING:
    from datetime import datetime

    from readmodel.lag import ProjectionLag

__all__ = ["main"]

log = logging.getLogger("bicameral")


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # One line per Elasticsearch request drowns everything else; failures still show.
    for noisy in ("elastic_transport", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.root.level))


def _metrics_directory(settings: Settings, processes: int) -> Path | None:
    """Where the processes of this serve keep their metrics (prometheus_client's
    multiprocess mode), emptied so no figure of an earlier run is added in; None
    with one process and no PROMETHEUS_MULTIPROC_DIR set.

    Set before anything imports prometheus_client, which reads it at import."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if processes <= 1 and not given:
        return None
    directory = Path(given) if given else settings.data_dir / "metrics"
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return directory


def _serve(settings: Settings, workers: int | None) -> int:
    import uvicorn

    # uvicorn's own process model: with more than one, a supervisor starts that many
    # children on one shared socket and restarts any that dies.
    workers = workers or settings.serve_processes
    _metrics_directory(settings, workers)
    if settings.uses_local_signing_key:
        from api.auth import LocalSigningKey

        # Made here, once, before uvicorn's processes start and each wants it.
        LocalSigningKey.load_or_create(settings.data_dir)
    problem = asyncio.run(_prepare_to_serve(settings, settings.demo))
    if problem:
        print(f"bicameral serve: {problem}", file=sys.stderr)
        return 1
    if settings.demo:
        # uvicorn's processes build their app from the environment (create_app reads it).
        os.environ["DEMO"] = "true"
    os.environ["NODE_ROLE"] = settings.node_role
    _print_addresses(settings, workers)
    # An import string and a factory, so that uvicorn's own process model can run
    # several processes: each child calls `create_app()`, which reads the same
    # environment as this process did.
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        workers=workers,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        lifespan="on",
        # After SIGTERM, requests in flight get this long, then they are cancelled
        # (uvicorn waits for them forever by default).
        timeout_graceful_shutdown=settings.shutdown_timeout,
        # One WebSocket message is held to the same bound as one HTTP body.
        ws_max_size=settings.max_body_bytes,
        # No permessage-deflate: every client that offers it (browsers, Python's
        # websockets) cost the server a zlib compressor and decompressor per socket,
        # most of a subscriber's memory, and a compression per frame per socket,
        # where notifications are small and one encoded payload is shared by many
        # sockets (api/fanout.py).
        ws_per_message_deflate=False,
    )
    return 0


def _print_addresses(settings: Settings, processes: int) -> None:
    base = f"http://{settings.host}:{settings.port}"
    lines = [
        f"  processes:  {processes} (--workers N or WEB_CONCURRENCY to change)",
        f"  role:       {settings.node_role} (--role or NODE_ROLE to change)",
    ]
    if not settings.is_production:
        lines.append(f"  storefront: {base}/")
    if settings.graphiql:
        lines.append(f"  GraphiQL:   {base}/graphql")
    lines.append(f"  GraphQL:    {base}/graphql (POST, and WebSocket for subscriptions)")
    print("Serving:\n" + "\n".join(lines), flush=True)


async def _prepare_to_serve(settings: Settings, demo: bool) -> str | None:
    """Why the API cannot serve this write database, or None once it can.

    An embedded SQLite file is migrated here (it is the default set-up, and one
    process owns it); any other database must be migrated by its operator, so an
    old or empty one is named rather than half-used. Done once, before uvicorn
    starts its workers. The demo data is loaded here too, for the same reason.

    A query node never touches the write database, so nothing is checked."""
    if settings.node_role == "query":
        return "--demo writes, which a query node does not serve" if demo else None
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from api.bootstrap import build
    from api.demo import demo_customer_id
    from writemodel.database import create_engine
    from writemodel.migrate import alembic_config, migrate

    engine = create_engine(settings.write_database_url)
    url = engine.url.render_as_string(hide_password=True)
    try:
        if settings.is_sqlite:
            await migrate(engine)
        else:
            async with engine.connect() as conn:
                current = await conn.run_sync(
                    lambda sync: set(MigrationContext.configure(sync).get_current_heads())
                )
            newest = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
            if current != newest:
                state = "has no schema" if not current else "is not at the newest schema"
                return f"the write database {url} {state}; run `bicameral migrate` first"
    except Exception as error:  # one clear line, not a traceback
        return f"cannot use the write database {url}: {type(error).__name__}: {error}"[:500]
    finally:
        await engine.dispose()
    if demo:
        from api.demo import load_demo

        app = build(settings, embedded_worker=False)
        try:
            await load_demo(app)
            _print_demo_tokens(settings, await demo_customer_id(app))
        finally:
            await app.stop()
    return None


# Demo tokens last a working day; `bicameral token` makes more.
_DEMO_TOKEN_TTL = 12 * 3600


def _print_demo_tokens(settings: Settings, customer_id: str | None) -> None:
    if not settings.uses_local_signing_key:
        print("demo tokens: none, tokens come from AUTH_JWKS_URL's issuer", flush=True)
        return
    lines = [
        f"Demo tokens (valid {_DEMO_TOKEN_TTL // 3600} h), to send as "
        "`Authorization: Bearer <token>` (GraphiQL: the Headers pane):"
    ]
    if customer_id is not None:
        token = _local_token(settings, "customer", customer_id, "demo-ada", _DEMO_TOKEN_TTL)
        lines.append(f"  customer (Ada Lovelace, {customer_id}): {token}")
    for role in ("staff", "admin"):
        lines.append(
            f"  {role}: {_local_token(settings, role, None, f'demo-{role}', _DEMO_TOKEN_TTL)}"
        )
    lines.append("More: bicameral token --role customer|staff|admin [--customer ID]")
    print("\n".join(lines), flush=True)


def _local_token(
    settings: Settings, role: str, customer_id: str | None, subject: str, ttl: int
) -> str:
    from datetime import timedelta

    from api.auth import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalSigningKey
    from api.identity import Role

    key = LocalSigningKey.load_or_create(settings.data_dir)
    return key.token(
        role=Role(role),
        subject=subject,
        customer_id=customer_id,
        ttl=timedelta(seconds=ttl),
        issuer=settings.auth_issuer or LOCAL_ISSUER,
        audience=settings.auth_audience or LOCAL_AUDIENCE,
        role_claim=settings.auth_role_claim,
        customer_claim=settings.auth_customer_claim,
    )


_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _ttl(raw: str) -> int:
    """Seconds from `900`, `30m`, `12h` or `7d`; argparse's type for --ttl."""
    raw = raw.strip().lower()
    unit = _TTL_UNITS.get(raw[-1:])
    number = raw[:-1] if unit else raw
    if not number.isdigit() or int(number) == 0:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a duration like 900, 30m, 12h or 7d")
    seconds = int(number) * (unit or 1)
    if seconds > 30 * 86400:
        raise argparse.ArgumentTypeError("at most 30 days")
    return seconds


def _token(settings: Settings, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from domain.errors import InvalidInput
    from domain.rules import IdMustBeWellFormed

    if not settings.uses_local_signing_key:
        parser.error(
            "token: the local signing key is not used when AUTH_JWKS_URL is set "
            "(get tokens from that issuer)"
        )
    if args.customer is not None:
        if args.role != "customer":
            parser.error("token: --customer goes with --role customer")
        try:
            IdMustBeWellFormed.check(args.customer, "--customer")
        except InvalidInput as error:
            parser.error(f"token: {error}")
    subject = args.subject or (
        f"customer-{args.customer}" if args.customer else f"local-{args.role}"
    )
    print(_local_token(settings, args.role, args.customer, subject, args.ttl))
    return 0


async def _worker(settings: Settings) -> int:
    from api.bootstrap import build
    from api.telemetry import instrument

    if settings.worker_metrics_port:
        from prometheus_client import start_http_server

        # A thread of its own: a scrape never waits for the feed's event loop.
        start_http_server(settings.worker_metrics_port, addr=settings.host)
    # The worker is no query or command node, whatever NODE_ROLE the shared
    # environment sets: it needs both databases, and publishes the progress.
    app = build(dataclasses.replace(settings, node_role="all"), embedded_worker=True)
    instrument(app)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    await app.start(subscriptions=False)
    try:
        await stopped.wait()
    finally:
        await app.stop()
    return 0


async def _migrate(settings: Settings) -> int:
    from writemodel.database import create_engine
    from writemodel.migrate import migrate

    engine = create_engine(settings.write_database_url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    print(f"write database at the newest schema: {engine.url.render_as_string(hide_password=True)}")
    return 0


async def _readmodel_status(settings: Settings) -> int:
    from api.bootstrap import build
    from readmodel.indexes import INDEXES
    from readmodel.setup import alias_state

    app = build(settings, embedded_worker=False)
    try:
        lags = {lag.name: lag for lag in await app.lag()}
        quarantined = await app.quarantine.counts()
        rows = [("read model", "position", "head", "lag", "lag s", "quarantined", "index", "owner")]
        notes = []
        for name, index in INDEXES.items():
            state = await alias_state(app.search, settings.index_prefix, index)
            lag = lags[name]
            rows.append(
                (
                    name,
                    str(lag.position),
                    str(lag.head),
                    str(lag.lag_events),
                    f"{lag.lag_seconds:.1f}",
                    str(quarantined.get(name, 0)),
                    state.serving or "(none)",
                    lag.owner or "-",
                )
            )
            if state.rebuild_due:
                notes.append(f"{name}: the mapping in the code changed; a rebuild is due")
            if state.building:
                notes.append(f"{name}: a rebuild into {state.building} is under way or interrupted")
            if quarantined.get(name):
                notes.append(
                    f"{name}: {quarantined[name]} documents refused by Elasticsearch and set "
                    "aside; see `bicameral readmodel quarantine list`"
                )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print(
                "  ".join(
                    cell.ljust(w) if i in (0, 6, 7) else cell.rjust(w)
                    for i, (cell, w) in enumerate(zip(row, widths, strict=True))
                )
            )
        _print_partitions(list(lags.values()), app.now())
        for note in notes:
            print(note)
    finally:
        await app.stop()
    return 0


def _print_partitions(lags: list[ProjectionLag], now: datetime) -> None:
    """Each read model's partitions (FEED_PARTITIONS): position, lag and owner; an
    owner whose lease ran out is marked, another worker takes it at its next look."""
    rows = [("partition", "position", "lag", "owner", "lease s")]
    for lag in lags:
        for part in lag.partitions:
            left = None if part.lease_until is None else (part.lease_until - now).total_seconds()
            owner = part.owner or "-"
            if part.owner is not None and left is not None and left < 0:
                owner += " (expired)"
            rows.append(
                (
                    part.name,
                    str(part.position),
                    str(part.lag_events),
                    owner,
                    "-" if left is None else f"{left:.1f}",
                )
            )
    if len(rows) == 1:
        return
    print()
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(
                cell.ljust(w) if i in (0, 3) else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )


async def _readmodel_rebuild(settings: Settings, names: list[str]) -> int:
    from api.bootstrap import build
    from api.progress import RebuildProgress
    from readmodel.indexes import INDEXES
    from readmodel.rebuild import RebuildError, rebuild

    unknown = [n for n in names if n not in INDEXES]
    if unknown:
        print(
            f"unknown read model {unknown[0]!r}; choose from {', '.join(INDEXES)}",
            file=sys.stderr,
        )
        return 2
    app = build(settings, embedded_worker=False)
    try:
        for name in names or list(INDEXES):
            try:
                with RebuildProgress(name) as show:
                    result = await rebuild(
                        name,
                        engine=app.engine,
                        client=app.search,
                        prefix=settings.index_prefix,
                        worker=app.worker,
                        checkpoints=app.checkpoints,
                        progress=show,
                    )
            except RebuildError as error:
                print(f"{name}: {error}; {name} keeps serving from its current index")
                return 1
            refused = (
                f", {result.quarantined} refused by Elasticsearch and quarantined "
                "(see `bicameral readmodel quarantine list`)"
                if result.quarantined
                else ""
            )
            print(
                f"{name}: {result.documents} documents in {result.seconds:.1f}s{refused}; "
                f"now serving {result.new_index} (was {result.old_index})"
            )
    finally:
        await app.stop()
    return 0


def _positions(positions: list[int]) -> str:
    if len(positions) <= 3:
        return ",".join(map(str, positions))
    return f"{positions[0]}..{positions[-1]} ({len(positions)})"


async def _readmodel_quarantine(settings: Settings, action: str, ids: list[int] | None) -> int:
    from api.bootstrap import build
    from readmodel.bulk import BulkError

    app = build(settings, embedded_worker=False)
    store = app.quarantine
    try:
        if action == "list":
            entries = await store.entries()
            if not entries:
                print("no documents in quarantine")
                return 0
            for e in entries:
                state = (
                    "quarantined" if e.active else f"superseded {e.superseded_at:%Y-%m-%d %H:%M}"
                )
                print(
                    f"{e.id}  {e.read_model}/{e.document_id}  {state}  index {e.index_name}  "
                    f"positions {_positions(e.positions)}  version {e.version}  "
                    f"attempts {e.attempts}  first {e.first_seen:%Y-%m-%d %H:%M:%S}  "
                    f"last {e.last_seen:%Y-%m-%d %H:%M:%S}\n    {e.error_type}: {e.reason}"
                )
            return 0
        if action == "drop":
            print(f"dropped {await store.drop(ids)} entries")
            return 0
        try:
            result = await store.retry(
                ids,
                projections=app.worker.projections,
                writer=app.worker.writer,
                prefix=settings.index_prefix,
                now=app.now(),
            )
        except BulkError as error:
            print(f"Elasticsearch did not take the retry ({error}); entries kept", file=sys.stderr)
            return 1
        if not (result.cleared or result.refused or result.skipped):
            print("no such entries in quarantine")
        for e in result.cleared:
            print(f"{e.id}  {e.read_model}/{e.document_id}: written, entry cleared")
        for e in result.refused:
            print(f"{e.id}  {e.read_model}/{e.document_id}: refused again, entry kept")
        for e in result.skipped:
            print(f"{e.id}  {e.read_model}/{e.document_id}: no such read model, entry kept")
        return 1 if result.refused else 0
    finally:
        await app.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bicameral", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the API (GraphiQL at /graphql)")
    serve.add_argument("--demo", action="store_true", help="load a few demo products first")
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="API processes (default: WEB_CONCURRENCY, else one per core on PostgreSQL "
        "and one on SQLite; see README.md)",
    )
    serve.add_argument(
        "--role",
        choices=["all", "query", "command"],
        help="serve reads without the write database (query), writes without "
        "Elasticsearch (command), or both (all); default: NODE_ROLE, else all",
    )
    commands.add_parser("worker", help="run the feed worker alone")
    commands.add_parser("migrate", help="create or upgrade the write database's schema")
    token = commands.add_parser(
        "token",
        help="print a token signed with the local key in DATA_DIR (development only)",
    )
    token.add_argument("--role", required=True, choices=["customer", "staff", "admin"])
    token.add_argument(
        "--customer", metavar="ID", help="the customer's id (default: derived from the subject)"
    )
    token.add_argument("--subject", help="the token's `sub` (default: local-ROLE)")
    token.add_argument(
        "--ttl", type=_ttl, default=3600, help="how long it lasts: 900, 30m, 12h, 7d (default 1h)"
    )
    node = commands.add_parser("search-node", help="a local Elasticsearch node", add_help=False)
    node.add_argument("rest", nargs=argparse.REMAINDER)
    readmodel = commands.add_parser(
        "readmodel", help="read model status, or a rebuild without downtime"
    )
    actions = readmodel.add_subparsers(dest="action", required=True)
    actions.add_parser("status", help="position, head, lag, index and owner of each")
    rebuild_parser = actions.add_parser(
        "rebuild",
        help="build a new index from the write database while the old one serves, "
        "then swap; safe to interrupt, run again to resume",
    )
    rebuild_parser.add_argument("names", nargs="*", metavar="NAME", help="default: all")
    quarantine = actions.add_parser(
        "quarantine", help="documents Elasticsearch refused for themselves, set aside"
    )
    verbs = quarantine.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", help="every entry: document, positions, reason, attempts")
    for verb, text in (
        ("retry", "write the documents again from the write database; taken ones are cleared"),
        ("drop", "forget entries (the documents stay as the index has them)"),
    ):
        chosen = verbs.add_parser(verb, help=text)
        chosen.add_argument("ids", nargs="*", type=int, metavar="ID", help="entry ids (see list)")
        chosen.add_argument("--all", action="store_true", help="every entry")

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["search-node"]:
        from tools import search_node  # its own options, help included

        return search_node.main(argv[1:])
    args = parser.parse_args(argv)
    if getattr(args, "verb", "list") != "list" and bool(args.ids) == args.all:
        parser.error(f"readmodel quarantine {args.verb}: give entry ids or --all")
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        parser.error(str(error))
    _logging(settings.log_level)
    if args.command == "token":
        return _token(settings, args, parser)
    if args.command == "serve":
        if args.workers is not None and args.workers < 1:
            parser.error("--workers must be at least 1")
        if args.demo:
            try:
                settings = dataclasses.replace(settings, demo=True)
            except SettingsError as error:
                parser.error(str(error))
        if args.role is not None:
            settings = dataclasses.replace(settings, node_role=args.role)
        return _serve(settings, args.workers)
    with contextlib.suppress(KeyboardInterrupt):
        if args.command == "worker":
            return asyncio.run(_worker(settings))
        if args.command == "migrate":
            return _one_shot(_migrate(settings))
        if args.command == "readmodel" and args.action == "status":
            return _one_shot(_readmodel_status(settings))
        if args.command == "readmodel" and args.action == "rebuild":
            return _one_shot(_readmodel_rebuild(settings, args.names))
        if args.command == "readmodel" and args.action == "quarantine":
            ids = None if args.verb == "list" or args.all else args.ids
            return _one_shot(_readmodel_quarantine(settings, args.verb, ids))
    return 1


def _one_shot(command: Coroutine[Any, Any, int]) -> int:
    """Run an operator's command; a service it cannot reach is one line on stderr
    and exit status 1, not a traceback."""
    from elastic_transport import ConnectionError as SearchUnreachable

    from writemodel.database import is_database_fault
    from writemodel.unit_of_work import WriteDatabaseUnavailable

    try:
        return asyncio.run(command)
    except SearchUnreachable as error:
        print(f"bicameral: Elasticsearch cannot be reached: {error}", file=sys.stderr)
    except Exception as error:
        if not (isinstance(error, WriteDatabaseUnavailable) or is_database_fault(error)):
            raise
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"bicameral: the write database cannot be reached: {reason}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
