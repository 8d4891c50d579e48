"""The domain is pure: it imports nothing of the database, the API or the search engine."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import domain

FORBIDDEN = {"sqlalchemy", "strawberry", "elasticsearch", "starlette"}
DOMAIN_DIR = Path(domain.__file__).parent
SOURCES = sorted(DOMAIN_DIR.rglob("*.py"))
SOURCE_IDS = [source.relative_to(DOMAIN_DIR).as_posix() for source in SOURCES]
REPO_ROOT = DOMAIN_DIR.parent


def imported_top_level_names(source: Path) -> set[str]:
    """Every top-level package a module imports, wherever in the file the import sits."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"), filename=str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def dynamic_imports(source: Path) -> list[str]:
    """Calls that import by name at run time, which a scan of import statements would miss."""
    found = []
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in {"__import__", "import_module"}:
                found.append(f"{source.name}:{node.lineno}")
    return found


def test_the_scan_finds_every_domain_module() -> None:
    names = {source.stem for source in SOURCES}

    assert {"aggregate", "commands", "customer", "errors", "events", "order", "product"} <= names
    assert {"rules", "stock"} <= names
    assert "domain" in imported_top_level_names(DOMAIN_DIR / "order.py")


@pytest.mark.parametrize("source", SOURCES, ids=SOURCE_IDS)
def test_a_domain_module_imports_no_infrastructure_package(source: Path) -> None:
    assert imported_top_level_names(source) & FORBIDDEN == set()


@pytest.mark.parametrize("source", SOURCES, ids=SOURCE_IDS)
def test_a_domain_module_imports_only_the_standard_library_and_the_domain(source: Path) -> None:
    outside = imported_top_level_names(source) - set(sys.stdlib_module_names) - {"domain"}

    assert outside == set()
    assert dynamic_imports(source) == []


IMPORT_EVERY_MODULE = """
import importlib, json, pkgutil, sys
import domain
names = [m.name for m in pkgutil.walk_packages(domain.__path__, "domain.")]
for name in names:
    importlib.import_module(name)
forbidden = sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[1:])
print(json.dumps({"modules": names, "forbidden": forbidden}))
"""


def test_importing_the_whole_domain_loads_no_infrastructure_package() -> None:
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERY_MODULE, *sorted(FORBIDDEN)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["modules"]) == len([s for s in SOURCES if s.name != "__init__.py"])
    assert report["forbidden"] == []
