"""An operator's command whose service cannot be reached says so in one line."""

from __future__ import annotations

import pytest

from api.cli import main

# Nothing listens on port 1 of loopback: every connection is refused at once.
UNREACHABLE_DATABASE = "postgresql+asyncpg://nobody:secret@127.0.0.1:1/none"


@pytest.mark.parametrize(
    "argv",
    [
        ["readmodel", "status"],
        ["readmodel", "quarantine", "list"],
        ["readmodel", "quarantine", "drop", "--all"],
        ["migrate"],
    ],
)
def test_a_command_whose_write_database_is_down_exits_1_with_one_line(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE_DATABASE)
    monkeypatch.setenv("ELASTICSEARCH_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("LOG_LEVEL", "critical")

    assert main(argv) == 1

    err = capsys.readouterr().err
    assert "bicameral: the write database cannot be reached" in err
    assert "Traceback" not in err
    assert "secret" not in err
