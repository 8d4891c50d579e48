"""tests/clients/run.py: a test that drives a JavaScript client fails, loudly, when
node or the folder's packages are missing, or the script fails; it is never skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.clients import run


def test_a_missing_node_fails_the_test_instead_of_skipping_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(run.shutil, "which", lambda name: None)

    with pytest.raises(pytest.fail.Exception, match="node is not installed"):
        run.run_node("audit.mjs", {})


def test_missing_packages_fail_the_test_and_say_how_to_install_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(run.shutil, "which", lambda name: "/usr/bin/node")
    monkeypatch.setattr(run, "CLIENTS", tmp_path)

    with pytest.raises(pytest.fail.Exception, match="npm ci"):
        run.run_node("audit.mjs", {})


def test_a_script_that_fails_fails_the_test_with_its_output(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if run.shutil.which("node") is None:
        pytest.fail("node is not installed (see tests/clients/run.py)")
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "broken.mjs").write_text('console.log("said"); process.exit(3);\n')
    (tmp_path / "answers.mjs").write_text(
        "const given = JSON.parse(process.argv[2]);\n"
        "console.log('noise');\n"
        "console.log(JSON.stringify({ got: given.x }));\n"
    )
    monkeypatch.setattr(run, "CLIENTS", tmp_path)

    with pytest.raises(pytest.fail.Exception, match=r"exited with 3(.|\n)*said"):
        run.run_node("broken.mjs", {})
    assert run.run_node("answers.mjs", {"x": [1, "two"]}) == {"got": [1, "two"]}
