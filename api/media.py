"""What an HTTP answer is sent as, from the request's `Accept` (GraphQL over HTTP).

Two JSON media types: `application/json`, the one every client reads, and
`application/graphql-response+json`, under which the status code says what kind
of answer the body is. A client gets the second only when it names it (Apollo
Client 4 and GraphiQL do); `*/*`, no `Accept` or anything else gets the first.
Under `application/json` a GraphQL answer is 200 whatever its errors (as before);
under `application/graphql-response+json` a request error (one raised before
execution: a document that does not parse or validate, variables that do not
coerce, an operation the caller may not run) is 4xx and has no `data` entry.

A third, `multipart/mixed;subscriptionSpec=1.0`, asks for a subscription as a
stream of parts (api/http.py).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

__all__ = [
    "GRAPHQL_RESPONSE_JSON",
    "JSON",
    "accepts_multipart_subscription",
    "request_error_status",
    "response_media_type",
]

JSON = "application/json"
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"

# The status a request error gets under application/graphql-response+json, by its
# code; any other code is the client's to fix, 400.
_STATUS_BY_CODE = {
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "RATE_LIMITED": 429,
    "INTERNAL_SERVER_ERROR": 500,
}


def _media_ranges(accept: str) -> list[tuple[str, dict[str, str]]]:
    """`Accept`'s media ranges, lower-cased, each with its parameters (q included)."""
    ranges = []
    for part in accept.split(","):
        kind, *params = (piece.strip() for piece in part.split(";"))
        if not kind:
            continue
        named = {}
        for param in params:
            name, _, value = param.partition("=")
            named[name.strip().lower()] = value.strip().strip("\"'")
        ranges.append((kind.lower(), named))
    return ranges


def _quality(params: Mapping[str, str]) -> float:
    try:
        return min(max(float(params.get("q", "1")), 0.0), 1.0)
    except ValueError:
        return 0.0


@functools.lru_cache(maxsize=256)
def response_media_type(accept: str | None) -> str:
    """`application/graphql-response+json` when the client names it with a quality at
    least that of `application/json`; `application/json` otherwise (a wildcard is
    not a request for the newer type). Cached: clients send few distinct headers."""
    if not accept:
        return JSON
    named: float | None = None
    json = 0.0
    for kind, params in _media_ranges(accept):
        q = _quality(params)
        if kind == GRAPHQL_RESPONSE_JSON:
            named = max(named or 0.0, q)
        elif kind in (JSON, "application/*", "*/*"):
            json = max(json, q)
    if named is not None and named > 0 and named >= json:
        return GRAPHQL_RESPONSE_JSON
    return JSON


@functools.lru_cache(maxsize=256)
def accepts_multipart_subscription(accept: str | None) -> bool:
    """Whether `Accept` names the multipart subscription protocol Apollo Client speaks,
    `multipart/mixed` with `subscriptionSpec=1.0` (and our boundary, if it names one),
    anywhere in its list."""
    for kind, params in _media_ranges(accept or ""):
        if (
            kind == "multipart/mixed"
            and params.get("subscriptionspec", "").startswith("1.0")
            and params.get("boundary", "graphql") == "graphql"
            and _quality(params) > 0
        ):
            return True
    return False


def request_error_status(response: Mapping[str, Any]) -> int | None:
    """The status of a GraphQL answer that is a request error, None for any other.

    A request error has no data and no error with a `path` (every error raised while
    executing has one). A deadline is not one: the operation ran, and may have
    changed something; its `data: null` answer keeps 200."""
    errors = response.get("errors")
    if response.get("data") is not None or not errors:
        return None
    codes = set()
    for error in errors:
        if "path" in error:
            return None
        codes.add((error.get("extensions") or {}).get("code"))
    if "DEADLINE_EXCEEDED" in codes:
        return None
    return max(_STATUS_BY_CODE.get(str(code), 400) for code in codes)
