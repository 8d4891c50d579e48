"""Persisted documents: Apollo's automatic persisted queries (APQ) and trusted documents.

APQ: a client sends `extensions.persistedQuery {version: 1, sha256Hash}` without the
query; a hash this process knows runs its document, an unknown one is answered
`PERSISTED_QUERY_NOT_FOUND` (404, Apollo's message `PersistedQueryNotFound`), and the
client sends the hash again with the query, which is checked against the hash and
remembered. The store is an LRU per process, bounded in entries and in document size:
with several processes a miss costs the client one retry, nothing more.

Trusted documents (TRUSTED_DOCUMENTS, api/trusted_documents.py): only the manifest's
documents run, asked for by hash (`extensions.persistedQuery.sha256Hash`), by id
(`documentId`) or sent in full; anything else is refused with
`PERSISTED_QUERY_NOT_ALLOWED` (403), except for staff and admin tokens (their tools,
GraphiQL among them, send documents of their own). APQ registration is off then: a
registered document would be refused anyway.

A known hash costs no parse and no validation: the store hands back the one string
it keeps, and the schema's parse and validation caches (keyed by that text) answer
it; the text is never sent, JSON-decoded or hashed again. docs/graphql.md,
"Persisted queries", says what clients send and how GET answers are cached.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from strawberry.types import ExecutionResult

from api.identity import Identity
from api.requests import RequestRefused
from api.settings import Settings
from api.trusted_documents import SHA256_HEX, TrustedDocuments, sha256_hex

__all__ = ["PersistedDocuments", "PersistedQueryStore"]

# Asked for again before a shared cache could keep it: the hash may be registered
# a moment later (by this client's retry, or on another process).
_MISS_HEADERS = {"Cache-Control": "private, no-cache, must-revalidate"}


class PersistedQueryStore:
    """sha256 -> document, least recently used first out; documents over `max_chars`
    are never kept, so the store holds at most `max_entries * max_chars` characters."""

    def __init__(self, max_entries: int, max_chars: int) -> None:
        if max_entries < 1 or max_chars < 1:
            raise ValueError("a store keeps at least one document of at least one character")
        self.max_entries = max_entries
        self.max_chars = max_chars
        self._documents: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._documents)

    def __contains__(self, digest: object) -> bool:
        return digest in self._documents

    def get(self, digest: str) -> str | None:
        document = self._documents.get(digest)
        if document is not None:
            self._documents.move_to_end(digest)
        return document

    def put(self, digest: str, document: str) -> str:
        """Remember `document` under `digest` (the caller checked that it is its sha256);
        the text kept, which is the one a later `get` returns."""
        if len(document) > self.max_chars:
            raise ValueError(f"documents over {self.max_chars} characters are not kept")
        kept = self._documents.setdefault(digest, document)
        self._documents.move_to_end(digest)
        while len(self._documents) > self.max_entries:
            self._documents.popitem(last=False)
        return kept


def _refused(status: int, code: str, message: str) -> RequestRefused:
    return RequestRefused(status, code, message)


def _not_found() -> RequestRefused:
    # Apollo's link retries with the query on this message or this code.
    return RequestRefused(
        404, "PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound", headers=_MISS_HEADERS
    )


class PersistedDocuments:
    """What a request's persisted-query fields mean, for both transports."""

    def __init__(
        self,
        store: PersistedQueryStore | None,
        trusted: TrustedDocuments | None = None,
        *,
        max_age: int = 0,
    ) -> None:
        # None: APQ is off (PERSISTED_QUERIES=0, or trusted documents on).
        self.store = None if trusted is not None else store
        self.trusted = trusted
        self.max_age = max_age

    @classmethod
    def default(cls) -> PersistedDocuments:
        """APQ with the default bounds, no manifest: a view built without settings."""
        defaults = Settings
        return cls(
            PersistedQueryStore(defaults.persisted_queries, defaults.persisted_query_max_chars),
            max_age=defaults.persisted_query_max_age,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> PersistedDocuments:
        trusted = (
            TrustedDocuments.load(settings.trusted_documents)
            if settings.trusted_documents
            else None
        )
        store = (
            PersistedQueryStore(settings.persisted_queries, settings.persisted_query_max_chars)
            if settings.persisted_queries
            else None
        )
        return cls(store, trusted, max_age=settings.persisted_query_max_age)

    # --- before the request's fields are read ---

    def expand(self, data: object) -> object:
        """The request with its `query` filled in from the store or the manifest when it
        sends a hash or an id; RequestRefused for a hash or id nobody knows, a query
        that does not match its hash, or malformed persisted-query fields. Anything
        else comes back as it came, for `request_fields` to judge."""
        if not isinstance(data, dict):
            return data
        extensions = data.get("extensions")
        persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
        if persisted is not None:
            return self._automatic(data, persisted)
        if data.get("documentId") is not None:
            return self._by_id(data, data["documentId"])
        return data

    def _automatic(self, data: dict[str, Any], persisted: object) -> dict[str, Any]:
        if not isinstance(persisted, dict):
            raise _refused(400, "BAD_REQUEST", "`extensions.persistedQuery` must be an object")
        if persisted.get("version") != 1:
            raise _refused(
                400,
                "PERSISTED_QUERY_VERSION_NOT_SUPPORTED",
                "Only version 1 of `extensions.persistedQuery` is supported",
            )
        digest = persisted.get("sha256Hash")
        if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest.lower()):
            raise _refused(
                400,
                "BAD_REQUEST",
                "`extensions.persistedQuery.sha256Hash` must be a sha256 in hexadecimal",
            )
        digest = digest.lower()
        if self.store is None and self.trusted is None:
            # Apollo's link stops sending hashes on this message.
            raise RequestRefused(
                400, "PERSISTED_QUERY_NOT_SUPPORTED", "PersistedQueryNotSupported", _MISS_HEADERS
            )
        query = data.get("query")
        if query is None or query == "":
            return {**data, "query": self._known(digest)}
        if not isinstance(query, str):
            return data  # request_fields refuses it
        if sha256_hex(query) != digest:
            raise _refused(
                400,
                "PERSISTED_QUERY_HASH_MISMATCH",
                "`extensions.persistedQuery.sha256Hash` is not the sha256 of `query`",
            )
        if self.store is None:
            return data  # trusted documents: nothing is registered; `admit` decides
        if len(query) > self.store.max_chars:
            raise _refused(
                413,
                "PERSISTED_QUERY_TOO_LARGE",
                f"Documents over {self.store.max_chars} characters are not persisted: "
                "send this one without `extensions.persistedQuery`",
            )
        return {**data, "query": self.store.put(digest, query)}

    def _known(self, digest: str) -> str:
        query = self.trusted.get(digest) if self.trusted is not None else None
        if query is None and self.store is not None:
            query = self.store.get(digest)
        if query is None:
            raise _not_found()
        return query

    def _by_id(self, data: dict[str, Any], document_id: object) -> dict[str, Any]:
        """`documentId` (the GraphQL-over-HTTP persisted documents draft): a manifest id,
        or `sha256:<hex>` for a document the manifest or the store holds."""
        if not isinstance(document_id, str) or not document_id:
            raise _refused(400, "BAD_REQUEST", "`documentId` must be a non-empty string")
        if data.get("query") not in (None, ""):
            raise _refused(400, "BAD_REQUEST", "Send either `documentId` or `query`, not both")
        query = self.trusted.get(document_id) if self.trusted is not None else None
        digest = document_id.removeprefix("sha256:").lower()
        if query is None and document_id.startswith("sha256:") and SHA256_HEX.fullmatch(digest):
            query = self._known(digest)
        if query is None:
            raise _not_found()
        extensions = data.get("extensions")
        # Marks the request as persisted for `cache_control`.
        marked = {**extensions} if isinstance(extensions, dict) else {}
        marked["documentId"] = document_id
        return {**data, "query": query, "extensions": marked}

    # --- before execution, once the caller is known ---

    def admit(self, query: str | None, identity: Identity) -> None:
        """With trusted documents on, refuse a document the manifest does not hold,
        unless the caller is staff or an admin."""
        if self.trusted is None or identity.is_staff:
            return
        if query is None or not self.trusted.allows(query):
            raise _refused(
                403,
                "PERSISTED_QUERY_NOT_ALLOWED",
                "This service runs only its trusted documents: send the document's hash "
                "in `extensions.persistedQuery.sha256Hash` (or its id in `documentId`)",
            )

    # --- after execution ---

    def cache_control(
        self,
        method: str,
        extensions: object,
        identity: Identity,
        result: ExecutionResult,
    ) -> dict[str, str] | None:
        """The Cache-Control (and Vary) of an answer to a persisted query over GET; None for other
        requests (they keep the server's default, no header).

        Shared caches may keep only what every anonymous caller would get: an answer
        without errors to a request without a token. A caller with a token gets
        `private, no-store`: what they see may be theirs alone (the policy's row
        filters), and a browser cache would show it stale after their next write."""
        if method != "GET" or not isinstance(extensions, dict):
            return None
        if "persistedQuery" not in extensions and "documentId" not in extensions:
            return None
        if not identity.is_anonymous:
            control = "private, no-store"
        elif result.errors or self.max_age <= 0:
            control = "no-store"
        else:
            control = f"public, max-age={self.max_age}"
        # A cache keeps an anonymous answer apart from what a token's holder is sent.
        return {"Cache-Control": control, "Vary": "Authorization"}
