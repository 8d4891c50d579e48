"""The codes a mutation's error can carry: each says what went wrong (no
generic code reaches a client) and each is in docs/graphql.md's table."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import domain
import writemodel
from domain.errors import DomainError

ROOT = Path(__file__).resolve().parents[2]
# Where mutation errors are made: the domain's rules, the command layer, the
# mutations themselves (api/'s other codes, of queries and limits, are
# documented in their own sections).
SOURCES = [ROOT / "domain", ROOT / "writemodel", ROOT / "api" / "mutations"]
# The kinds of error: a client always gets one of their specific codes instead.
GENERIC = {"DomainError", "InvalidInput", "RuleBroken", "AlreadyExists"}
GENERIC_CODES = {"DOMAIN_ERROR", "INVALID_INPUT", "RULE_BROKEN", "ALREADY_EXISTS"}


def _calls() -> list[tuple[Path, ast.Call]]:
    return [
        (path, node)
        for folder in SOURCES
        for path in sorted(folder.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Call)
    ]


def _rule_codes() -> set[str]:
    """The codes of every error class (each rule of domain/rules.py is one)."""
    for package in (domain, writemodel):
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")
    codes, todo = set(), [DomainError]
    while todo:
        kind = todo.pop()
        codes.add(kind.code)
        todo += kind.__subclasses__()
    return codes


def _given_codes() -> set[str]:
    """The codes given where an error is made: `AlreadyExists(..., code="X")`."""
    return {
        str(keyword.value.value)
        for _, call in _calls()
        for keyword in call.keywords
        if keyword.arg == "code" and isinstance(keyword.value, ast.Constant)
    }


def _documented_codes() -> set[str]:
    text = (ROOT / "docs" / "graphql.md").read_text()
    table = text.split("### Error codes", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z_]+)` \|", table, re.MULTILINE))


def test_no_error_is_made_with_only_its_kinds_generic_code() -> None:
    generic = [
        f"{path.relative_to(ROOT)}:{call.lineno}"
        for path, call in _calls()
        if isinstance(call.func, ast.Name)
        and call.func.id in GENERIC
        and not any(keyword.arg == "code" for keyword in call.keywords)
    ]
    assert generic == []


def test_every_code_a_mutation_can_answer_is_documented_and_no_other() -> None:
    assert (_rule_codes() | _given_codes()) - GENERIC_CODES == _documented_codes()
