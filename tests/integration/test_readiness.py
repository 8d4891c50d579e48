"""/readyz asks the application object (`Bicameral.readiness`) what keeps it from serving."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.bootstrap import Bicameral, build
from api.settings import Settings

pytestmark = pytest.mark.elasticsearch


async def test_an_app_over_working_databases_names_no_problem(app: Bicameral) -> None:
    assert await app.readiness() == {}


async def test_readiness_names_each_dependency_that_cannot_answer(tmp_path: Path) -> None:
    # A write database with no schema (never migrated), and nothing on the discard port.
    app = build(
        Settings(
            data_dir=tmp_path,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'unmigrated.db'}",
            elasticsearch_url="http://127.0.0.1:9",
            embedded_worker=False,
        )
    )
    try:
        problems = await app.readiness()
    finally:
        await app.stop()

    assert set(problems) == {"write_database", "elasticsearch"}
    assert "events" in problems["write_database"]
    assert all(len(problem) <= 300 for problem in problems.values())
