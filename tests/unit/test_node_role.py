"""What a node of each role refuses (api/node_role.py), before anything runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from api.cli import _prepare_to_serve, main
from api.context import Context
from api.schema import build_schema
from api.settings import Settings, SettingsError
from tests.identities import STAFF

MUTATION = 'mutation { payOrder(input: {orderId: "o-1"}) { __typename } }'
SUBSCRIPTION = 'subscription { changes(after: "0") { id } }'


@dataclass
class NodeApp:
    """What the guard reads of the application: its settings and whether its hub runs."""

    hub_running: bool = True
    settings: Settings = field(default_factory=Settings)


def _context(app: NodeApp | None = None) -> Context:
    return Context(app=app or NodeApp(), request=None, identity=STAFF)  # type: ignore[arg-type]


def _codes(result: Any) -> list[dict[str, Any]]:
    return [error.extensions for error in result.errors or ()]


async def _subscription_codes(role: str, app: NodeApp) -> list[dict[str, Any]]:
    stream = await build_schema(role=role).subscribe(SUBSCRIPTION, context_value=_context(app))
    results = [result async for result in stream]
    assert len(results) == 1
    return _codes(results[0])


async def test_a_query_node_refuses_a_mutation_with_its_role() -> None:
    result = await build_schema(role="query").execute(MUTATION, context_value=_context())

    assert result.data is None
    assert _codes(result) == [{"code": "WRONG_NODE_ROLE", "role": "query"}]
    assert "command node" in result.errors[0].message  # type: ignore[index]


async def test_a_command_node_refuses_queries_and_subscriptions() -> None:
    result = await build_schema(role="command").execute(
        "{ __typename products(first: 1) { totalCount } }", context_value=_context()
    )

    assert result.data is None
    assert _codes(result) == [{"code": "WRONG_NODE_ROLE", "role": "command"}]
    assert await _subscription_codes("command", NodeApp()) == [
        {"code": "WRONG_NODE_ROLE", "role": "command"}
    ]


async def test_a_query_node_refuses_subscriptions_until_its_hub_runs() -> None:
    assert await _subscription_codes("query", NodeApp(hub_running=False)) == [
        {"code": "WRITE_DATABASE_UNAVAILABLE"}
    ]


@pytest.mark.parametrize("role", ["all", "query"])
async def test_queries_run_on_nodes_that_serve_them(role: str) -> None:
    result = await build_schema(role=role).execute("{ __typename }", context_value=_context())

    assert result.errors is None
    assert result.data == {"__typename": "Query"}


def test_an_unknown_role_is_refused_by_the_settings() -> None:
    with pytest.raises(SettingsError, match="NODE_ROLE"):
        Settings(node_role="reader")


# Nothing listens on port 1 of loopback: a query node must not even try it.
UNREACHABLE_DATABASE = "postgresql+asyncpg://nobody:secret@127.0.0.1:1/none"


async def test_a_query_node_prepares_to_serve_without_the_write_database() -> None:
    settings = Settings(node_role="query", database_url=UNREACHABLE_DATABASE)

    assert await _prepare_to_serve(settings, demo=False) is None
    assert "query node" in str(await _prepare_to_serve(settings, demo=True))
    # The same settings as any node: the check is skipped, not passed.
    refused = await _prepare_to_serve(Settings(database_url=UNREACHABLE_DATABASE), demo=False)
    assert refused is not None and "cannot use the write database" in refused


def test_serve_takes_only_the_three_roles(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--role", "reader"])

    assert exited.value.code == 2
    assert "--role" in capsys.readouterr().err


@pytest.mark.parametrize("role", ["query", "command", "all"])
async def test_every_role_answers_introspection_alone(role: str) -> None:
    # Codegen, GraphiQL and Apollo's possibleTypes read the schema from any node.
    query = "query Schema { __typename __schema { queryType { name } } }"
    result = await build_schema(role=role).execute(query, context_value=_context())

    assert result.errors is None
    assert result.data == {"__typename": "Query", "__schema": {"queryType": {"name": "Query"}}}
