"""Settings: each one read from its environment variable, parsed, or refused by name."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from api.settings import Settings, SettingsError, usable_cores

VARIABLES = [f.name.upper() for f in fields(Settings)]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the shell that runs the tests."""
    for variable in VARIABLES:
        monkeypatch.delenv(variable, raising=False)


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    undocumented = [variable for variable in VARIABLES if f"`{variable}`" not in readme]
    assert undocumented == []


def test_without_variables_the_defaults_hold() -> None:
    assert Settings.from_env() == Settings()


@pytest.mark.parametrize(
    ("variable", "raw", "attribute", "value"),
    [
        ("DATABASE_URL", "postgresql+asyncpg://u:p@db/shop", "database_url", None),
        ("ELASTICSEARCH_URL", "http://search:9200", "elasticsearch_url", None),
        ("ELASTICSEARCH_URL", "http://es1:9200,https://es2", "elasticsearch_url", None),
        ("ELASTICSEARCH_SHARDS", "3", "elasticsearch_shards", 3),
        ("ELASTICSEARCH_REPLICAS", "1", "elasticsearch_replicas", 1),
        ("ELASTICSEARCH_REFRESH_INTERVAL", "30s", "elasticsearch_refresh_interval", None),
        ("ELASTICSEARCH_REFRESH_INTERVAL", "-1", "elasticsearch_refresh_interval", None),
        ("INDEX_PREFIX", "staging", "index_prefix", None),
        ("HOST", "0.0.0.0", "host", None),
        ("PORT", "8080", "port", 8080),
        ("PORT", " 8081 ", "port", 8081),
        ("FEED_BATCH_SIZE", "250", "feed_batch_size", 250),
        ("FEED_POLL_INTERVAL", "0.25", "feed_poll_interval", 0.25),
        ("CONSISTENCY_TIMEOUT", "2", "consistency_timeout", 2.0),
        ("IDEMPOTENCY_TTL_HOURS", "1.5", "idempotency_ttl_hours", 1.5),
        ("SEARCH_NODE_PORT", "9201", "search_node_port", 9201),
        ("LOG_LEVEL", "debug", "log_level", None),
        ("EMBEDDED_WORKER", "true", "embedded_worker", True),
        ("EMBEDDED_WORKER", "0", "embedded_worker", False),
        ("GRAPHIQL", "off", "graphiql", False),
        ("INTROSPECTION", "No", "introspection", False),
        ("MASK_ERRORS", " YES ", "mask_errors", True),
        ("MASK_ERRORS", "false", "mask_errors", False),
    ],
)
def test_each_variable_sets_its_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, attribute: str, value: Any
) -> None:
    monkeypatch.setenv(variable, raw)

    settings = Settings.from_env()

    expected = raw if value is None else value
    assert getattr(settings, attribute) == expected
    assert type(getattr(settings, attribute)) is type(expected)


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "on"])
def test_true_is_spelled_several_ways(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("GRAPHIQL", raw)
    monkeypatch.setenv("MASK_ERRORS", raw)

    settings = Settings.from_env()

    assert (settings.graphiql, settings.mask_errors) == (True, True)


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "off"])
def test_false_is_spelled_several_ways(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("INTROSPECTION", raw)

    assert Settings.from_env().introspection is False


def test_a_data_dir_is_an_absolute_path_with_home_expanded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DATA_DIR", "~/bicameral-data")

    settings = Settings.from_env()

    assert settings.data_dir == tmp_path.resolve() / "bicameral-data"
    assert isinstance(settings.data_dir, Path)


def test_a_relative_data_dir_is_resolved_against_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", "data")

    assert Settings.from_env().data_dir == tmp_path.resolve() / "data"


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "")
    monkeypatch.setenv("GRAPHIQL", "")

    settings = Settings.from_env()

    assert (settings.port, settings.graphiql) == (Settings.port, Settings().graphiql)


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "8080")
    monkeypatch.setenv("INDEX_PREFIX", "from-env")

    settings = Settings.from_env(port=9000)

    assert (settings.port, settings.index_prefix) == (9000, "from-env")


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("PORT", "eighty"),
        ("PORT", "80.5"),
        ("SEARCH_NODE_PORT", "9200x"),
        ("FEED_BATCH_SIZE", "lots"),
        ("FEED_POLL_INTERVAL", "soon"),
        ("CONSISTENCY_TIMEOUT", "5s"),
        ("IDEMPOTENCY_TTL_HOURS", "a day"),
        ("GRAPHIQL", "maybe"),
        ("EMBEDDED_WORKER", "2"),
        ("MASK_ERRORS", "y"),
        ("ELASTICSEARCH_SHARDS", "two"),
        ("ELASTICSEARCH_REPLICAS", "1.5"),
    ],
)
def test_an_unparsable_value_is_refused_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, raw: str
) -> None:
    monkeypatch.setenv(variable, raw)

    with pytest.raises(SettingsError) as caught:
        Settings.from_env()

    assert f"{variable}={raw!r}" in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("PORT", "-1"),
        ("PORT", "70000"),
        ("FEED_BATCH_SIZE", "0"),
        ("FEED_POLL_INTERVAL", "-1"),
        ("CONSISTENCY_TIMEOUT", "nan"),
        ("ELASTICSEARCH_SHARDS", "0"),
        ("ELASTICSEARCH_SHARDS", "5000"),
        ("ELASTICSEARCH_REPLICAS", "-1"),
    ],
)
def test_an_out_of_range_number_is_refused_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, raw: str
) -> None:
    monkeypatch.setenv(variable, raw)

    with pytest.raises(SettingsError, match=variable):
        Settings.from_env()


@pytest.mark.parametrize("raw", ["30", "1x", "0.5s", "soon", "-2", " 1s"])
def test_a_refresh_interval_that_is_no_elasticsearch_time_is_refused(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("ELASTICSEARCH_REFRESH_INTERVAL", raw)

    with pytest.raises(SettingsError, match="ELASTICSEARCH_REFRESH_INTERVAL"):
        Settings.from_env()


def test_the_index_layout_follows_the_three_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELASTICSEARCH_SHARDS", "3")
    monkeypatch.setenv("ELASTICSEARCH_REPLICAS", "2")
    monkeypatch.setenv("ELASTICSEARCH_REFRESH_INTERVAL", "30s")

    layout = Settings.from_env().index_layout

    assert (layout.shards, layout.replicas, layout.refresh_interval) == (3, 2, "30s")


def test_by_default_the_index_layout_is_one_shard_no_replica_and_elasticsearchs_refresh() -> None:
    layout = Settings().index_layout

    assert (layout.shards, layout.replicas, layout.refresh_interval) == (1, 0, None)


def test_several_elasticsearch_nodes_are_each_given_to_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ELASTICSEARCH_URL", " http://es1:9200, http://es2:9200 ,https://es3")

    hosts = Settings.from_env().elasticsearch_hosts

    assert hosts == ["http://es1:9200", "http://es2:9200", "https://es3"]


@pytest.mark.parametrize(
    "raw",
    ["search:9200", "http://es1:9200,,http://es2:9200", "http://es1:99999", "ftp://es1", ","],
)
def test_an_elasticsearch_url_with_a_node_that_is_no_url_is_refused(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("ELASTICSEARCH_URL", raw)

    with pytest.raises(SettingsError, match="ELASTICSEARCH_URL"):
        Settings.from_env()


def test_the_database_defaults_to_a_sqlite_file_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))

    settings = Settings.from_env()

    assert settings.database_url == ""
    assert settings.write_database_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/bicameral.db"
    assert settings.is_sqlite is True


def test_a_database_url_replaces_the_sqlite_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u:p@db/shop")

    settings = Settings.from_env()

    assert settings.write_database_url == "postgresql+asyncpg://u:p@db/shop"
    assert settings.is_sqlite is False


@pytest.mark.parametrize(
    ("database_url", "embedded"),
    [
        ("", True),
        ("sqlite+aiosqlite:////srv/shop.db", True),
        ("postgresql+asyncpg://u:p@db/shop", False),
    ],
    ids=["sqlite-default", "sqlite-given", "postgres"],
)
def test_the_worker_runs_embedded_on_sqlite_and_apart_on_postgres_by_default(
    monkeypatch: pytest.MonkeyPatch, database_url: str, embedded: bool
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)

    settings = Settings.from_env()

    assert settings.embedded_worker is None
    assert settings.runs_embedded_worker is embedded


@pytest.mark.parametrize(
    ("database_url", "raw", "embedded"),
    [
        ("", "false", False),
        ("postgresql+asyncpg://u:p@db/shop", "true", True),
    ],
)
def test_embedded_worker_overrides_the_databases_default(
    monkeypatch: pytest.MonkeyPatch, database_url: str, raw: str, embedded: bool
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("EMBEDDED_WORKER", raw)

    assert Settings.from_env().runs_embedded_worker is embedded


# --- the production profile and the token settings ---

PRODUCTION_JWKS = {
    "BICAMERAL_ENV": "production",
    "AUTH_JWKS_URL": "https://login.example/.well-known/jwks.json",
    "AUTH_ISSUER": "https://login.example/",
    "AUTH_AUDIENCE": "bicameral",
}


def test_a_safe_production_profile_has_graphiql_and_introspection_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable, raw in PRODUCTION_JWKS.items():
        monkeypatch.setenv(variable, raw)

    settings = Settings.from_env()

    assert (settings.graphiql, settings.introspection) == (False, False)
    assert settings.is_production
    assert not settings.uses_local_signing_key


def test_in_production_graphiql_and_introspection_may_be_turned_on_explicitly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable, raw in {**PRODUCTION_JWKS, "GRAPHIQL": "true", "INTROSPECTION": "on"}.items():
        monkeypatch.setenv(variable, raw)

    settings = Settings.from_env()

    assert (settings.graphiql, settings.introspection) == (True, True)


def test_in_development_graphiql_and_introspection_are_on_by_default() -> None:
    settings = Settings()

    assert (settings.graphiql, settings.introspection) == (True, True)
    assert settings.uses_local_signing_key


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"AUTH_JWKS_URL": ""}, "AUTH_JWKS_URL"),
        ({"AUTH_JWKS_URL": "http://login.example/jwks.json"}, "AUTH_JWKS_URL"),
        ({"AUTH_ISSUER": ""}, "AUTH_ISSUER"),
        ({"AUTH_AUDIENCE": ""}, "AUTH_AUDIENCE"),
        ({"MASK_ERRORS": "false"}, "MASK_ERRORS"),
        ({"CORS_ORIGINS": "*"}, "CORS_ORIGINS"),
    ],
)
def test_production_refuses_an_unsafe_setting_and_names_it(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, str], named: str
) -> None:
    for variable, raw in {**PRODUCTION_JWKS, **changes}.items():
        monkeypatch.setenv(variable, raw)

    with pytest.raises(SettingsError, match=named):
        Settings.from_env()


def test_bicameral_serve_in_production_with_an_unsafe_setting_exits_2_with_one_line(
    tmp_path: Path,
) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "DATA_DIR": str(tmp_path), "BICAMERAL_ENV": "production"}
    env.pop("AUTH_JWKS_URL", None)
    done = subprocess.run(
        [Path(sys.executable).parent / "bicameral", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2
    assert "AUTH_JWKS_URL" in done.stderr.splitlines()[-1]
    assert not (tmp_path / "auth-signing-key.pem").exists()


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("BICAMERAL_ENV", "staging"),
        ("CORS_ORIGINS", "https://shop.example/"),
        ("CORS_ORIGINS", "shop.example"),
        ("AUTH_CLOCK_SKEW", "3600"),
        ("AUTH_DEFAULT_ROLE", "admin"),
        ("AUTH_JWKS_URL", "https://login.example/jwks.json"),
    ],
)
def test_a_token_or_origin_setting_that_cannot_work_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, raw: str
) -> None:
    monkeypatch.setenv(variable, raw)

    with pytest.raises(SettingsError) as caught:
        Settings.from_env()

    message = str(caught.value)
    assert variable in message or "AUTH_ISSUER" in message


def test_cors_origins_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "https://shop.example, http://localhost:5173")

    assert Settings.from_env().allowed_origins == ("https://shop.example", "http://localhost:5173")


@pytest.mark.parametrize(
    ("database_url", "processes"),
    [
        ("postgresql+asyncpg://u:p@db/shop", len(os.sched_getaffinity(0))),
        ("", 1),
    ],
)
def test_serve_runs_a_process_per_usable_core_on_postgres_and_one_on_sqlite_by_default(
    monkeypatch: pytest.MonkeyPatch, database_url: str, processes: int
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)

    settings = Settings.from_env()

    assert settings.web_concurrency is None
    assert settings.serve_processes == processes


@pytest.mark.parametrize("database_url", ["postgresql+asyncpg://u:p@db/shop", ""])
def test_web_concurrency_sets_the_processes_on_either_database(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("WEB_CONCURRENCY", "3")

    assert Settings.from_env().serve_processes == 3


def test_usable_cores_follow_the_processs_affinity_not_the_machine() -> None:
    assert usable_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("raw", ["0", "-2"])
def test_web_concurrency_below_one_is_refused(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", raw)

    with pytest.raises(SettingsError, match="WEB_CONCURRENCY"):
        Settings.from_env()


def test_web_concurrency_that_is_no_number_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "many")

    with pytest.raises(SettingsError, match="WEB_CONCURRENCY='many'"):
        Settings.from_env()
