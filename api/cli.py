"""`bicameral`: the one console script.

bicameral serve [--demo]     the API (and, on SQLite, the feed worker)
bicameral worker             the feed worker alone
bicameral migrate            create or upgrade the write database
bicameral search-node ...    a local Elasticsearch node (start|stop|status|logs)
bicameral readmodel status   where each read model is, and how far behind
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from api.settings import Settings, SettingsError

__all__ = ["main"]

log = logging.getLogger("bicameral")


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # One line per Elasticsearch request drowns everything else; failures still show.
    logging.getLogger("elastic_transport").setLevel(max(logging.WARNING, logging.root.level))


def _serve(settings: Settings, demo: bool) -> int:
    import uvicorn

    from api.app import create_app

    starlette = create_app(settings, load_demo=demo)
    uvicorn.run(
        starlette,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        lifespan="on",
    )
    return 0


async def _worker(settings: Settings) -> int:
    from api.bootstrap import build

    app = build(settings, embedded_worker=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    await app.start()
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
        print(
            f"{'read model':<12} {'position':>9} {'head':>9} {'lag':>7} {'lag s':>8}  "
            f"{'index':<34} {'owner'}"
        )
        for name, index in INDEXES.items():
            state = await alias_state(app.search, settings.index_prefix, index)
            lag = lags[name]
            serving = state.serving or "(none)"
            due = "  REBUILD DUE" if state.rebuild_due else ""
            print(
                f"{name:<12} {lag.position:>9} {lag.head:>9} {lag.lag_events:>7} "
                f"{lag.lag_seconds:>8.1f}  {serving:<34} {lag.owner or '-'}{due}"
            )
    finally:
        await app.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bicameral", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the API (GraphiQL at /graphql)")
    serve.add_argument("--demo", action="store_true", help="load a few demo products first")
    commands.add_parser("worker", help="run the feed worker alone")
    commands.add_parser("migrate", help="create or upgrade the write database's schema")
    node = commands.add_parser("search-node", help="a local Elasticsearch node", add_help=False)
    node.add_argument("rest", nargs=argparse.REMAINDER)
    readmodel = commands.add_parser("readmodel", help="read model status")
    readmodel.add_argument("action", choices=["status"])

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["search-node"]:
        from tools import search_node  # its own options, help included

        return search_node.main(argv[1:])
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        parser.error(str(error))
    _logging(settings.log_level)
    if args.command == "serve":
        return _serve(settings, args.demo)
    with contextlib.suppress(KeyboardInterrupt):
        if args.command == "worker":
            return asyncio.run(_worker(settings))
        if args.command == "migrate":
            return asyncio.run(_migrate(settings))
        if args.command == "readmodel":
            return asyncio.run(_readmodel_status(settings))
    return 1


if __name__ == "__main__":
    sys.exit(main())
