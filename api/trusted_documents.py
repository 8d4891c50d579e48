"""Trusted documents: the manifest of the only operations a locked-down service runs.

A manifest is a JSON file in one of two shapes:

- a plain object, each key an id (any string, or a document's sha256 in hex) and each
  value the document's text: `{"9f86d08...": "query Search { ... }"}`;
- Apollo's persisted query manifest, as `@apollo/generate-persisted-query-manifest`
  writes it: `{"format": "apollo-persisted-query-manifest", "version": 1,
  "operations": [{"id": ..., "body": ..., ...}]}`.

Every document can be asked for by its key and by the sha256 of its text. A key that
looks like a sha256 must be the sha256 of its text, so a stale manifest fails at
start-up rather than answering with the wrong operation.

`python -m api.trusted_documents FOLDER [-o manifest.json]` writes a plain manifest
from a folder of `.graphql` files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from graphql import GraphQLError, parse, print_ast

from api.settings import SettingsError

__all__ = ["ManifestError", "TrustedDocuments", "manifest_from_folder", "sha256_hex"]

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_APOLLO_FORMAT = "apollo-persisted-query-manifest"


class ManifestError(SettingsError):
    """TRUSTED_DOCUMENTS names a file that is not a manifest this service reads."""


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class TrustedDocuments:
    """The allowed documents, by id and by sha256, and the set of their texts."""

    def __init__(self, documents: Mapping[Any, Any]) -> None:
        self._by_key: dict[str, str] = {}
        for key, body in documents.items():
            if not isinstance(key, str) or not key or not isinstance(body, str) or not body.strip():
                raise ManifestError(f"manifest entry {key!r}: an id and a non-empty document")
            digest = sha256_hex(body)
            if SHA256_HEX.fullmatch(key.lower()) and key.lower() != digest:
                raise ManifestError(
                    f"manifest entry {key!r}: the key looks like a sha256 but the document's "
                    f"sha256 is {digest}"
                )
            self._by_key[key] = body
            self._by_key.setdefault(digest, body)
        # The texts themselves: a request sending a trusted document in full is served.
        self._texts = frozenset(self._by_key.values())

    def __len__(self) -> int:
        return len(self._texts)

    def get(self, key: str) -> str | None:
        return self._by_key.get(key)

    def allows(self, query: str) -> bool:
        return query in self._texts

    @classmethod
    def load(cls, path: str | Path) -> TrustedDocuments:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ManifestError(f"TRUSTED_DOCUMENTS={str(path)!r} is unreadable: {error}") from None
        if not isinstance(raw, dict):
            raise ManifestError(f"TRUSTED_DOCUMENTS={str(path)!r} must hold a JSON object")
        if raw.get("format") == _APOLLO_FORMAT:
            operations = raw.get("operations")
            if raw.get("version") != 1 or not isinstance(operations, list):
                raise ManifestError(f"{path}: an Apollo manifest of version 1 with `operations`")
            documents: dict[str, str] = {}
            for operation in operations:
                key = operation.get("id") if isinstance(operation, dict) else None
                body = operation.get("body") if isinstance(operation, dict) else None
                if not isinstance(key, str) or not isinstance(body, str):
                    raise ManifestError(f"{path}: each operation has a string id and body")
                documents[key] = body
            return cls(documents)
        return cls(raw)


def manifest_from_folder(folder: Path) -> dict[str, str]:
    """A plain manifest of every `.graphql` file under `folder`, keyed by sha256.

    Each file is one document, written as graphql-core prints it (so formatting and
    comments do not change its hash); clients send the sha256 of that same text."""
    manifest: dict[str, str] = {}
    for file in sorted(folder.rglob("*.graphql")):
        try:
            body = print_ast(parse(file.read_text(encoding="utf-8"), no_location=True))
        except GraphQLError as error:
            raise ManifestError(f"{file}: {error.message}") from None
        manifest[sha256_hex(body)] = body
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m api.trusted_documents",
        description="Write a trusted-documents manifest from a folder of .graphql files.",
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    try:
        text = json.dumps(manifest_from_folder(args.folder), indent=2, sort_keys=True) + "\n"
    except ManifestError as error:
        parser.error(str(error))
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
