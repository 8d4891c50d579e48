"""The persisted-query store, the request fields it reads and the trusted-documents manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from strawberry.types import ExecutionResult

from api.identity import ANONYMOUS, Identity, Role
from api.persisted import PersistedDocuments, PersistedQueryStore
from api.requests import RequestRefused
from api.settings import Settings, SettingsError
from api.trusted_documents import ManifestError, TrustedDocuments, main, manifest_from_folder

QUERY = "query Ping { readModel { indexedUpTo } }"
OTHER = "query Other { readModel { checkedAt } }"
STAFF = Identity(Role.STAFF, subject="s")
CUSTOMER = Identity(Role.CUSTOMER, subject="c", customer_id="c1")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def apq(digest: str, query: str | None = None, **more: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}},
        **more,
    }
    if query is not None:
        body["query"] = query
    return body


def refusal(call: Any) -> RequestRefused:
    with pytest.raises(RequestRefused) as caught:
        call()
    return caught.value


# --- the store ---


def test_the_store_forgets_the_least_recently_used_document_first() -> None:
    store = PersistedQueryStore(max_entries=2, max_chars=100)
    store.put("a", "A")
    store.put("b", "B")
    assert store.get("a") == "A"  # now b is the least recently used
    store.put("c", "C")
    assert "b" not in store
    assert store.get("a") == "A"
    assert store.get("c") == "C"
    assert len(store) == 2


def test_the_store_keeps_no_document_over_its_size_bound() -> None:
    store = PersistedQueryStore(max_entries=2, max_chars=5)
    with pytest.raises(ValueError, match="over 5 characters"):
        store.put("a", "x" * 6)
    assert len(store) == 0


def test_the_store_hands_back_the_one_text_it_keeps() -> None:
    store = PersistedQueryStore(max_entries=2, max_chars=100)
    first = store.put(sha(QUERY), QUERY)
    again = store.put(sha(QUERY), "".join(QUERY))  # equal text, another object
    assert again is first
    assert store.get(sha(QUERY)) is first


# --- automatic persisted queries ---


def test_an_unknown_hash_is_not_found_as_apollo_expects() -> None:
    documents = PersistedDocuments(PersistedQueryStore(10, 1000))
    error = refusal(lambda: documents.expand(apq(sha(QUERY))))
    assert (error.status_code, error.code, error.reason) == (
        404,
        "PERSISTED_QUERY_NOT_FOUND",
        "PersistedQueryNotFound",
    )
    assert error.headers["Cache-Control"] == "private, no-cache, must-revalidate"


def test_a_hash_sent_with_its_query_registers_it_for_later_hash_only_requests() -> None:
    documents = PersistedDocuments(PersistedQueryStore(10, 1000))
    first = documents.expand(apq(sha(QUERY), QUERY, variables={"x": 1}))
    assert isinstance(first, dict) and first["query"] == QUERY and first["variables"] == {"x": 1}
    later = documents.expand(apq(sha(QUERY).upper()))
    assert isinstance(later, dict) and later["query"] == QUERY


def test_a_query_that_is_not_its_hash_is_refused_and_not_registered() -> None:
    documents = PersistedDocuments(PersistedQueryStore(10, 1000))
    error = refusal(lambda: documents.expand(apq(sha(OTHER), QUERY)))
    assert (error.status_code, error.code) == (400, "PERSISTED_QUERY_HASH_MISMATCH")
    assert sha(OTHER) not in documents.store  # type: ignore[operator]


def test_a_document_over_the_bound_is_refused_with_its_own_code() -> None:
    documents = PersistedDocuments(PersistedQueryStore(10, len(QUERY) - 1))
    error = refusal(lambda: documents.expand(apq(sha(QUERY), QUERY)))
    assert (error.status_code, error.code) == (413, "PERSISTED_QUERY_TOO_LARGE")


@pytest.mark.parametrize(
    ("persisted", "code"),
    [
        ("yes", "BAD_REQUEST"),
        ({"version": 2, "sha256Hash": "0" * 64}, "PERSISTED_QUERY_VERSION_NOT_SUPPORTED"),
        ({"sha256Hash": "0" * 64}, "PERSISTED_QUERY_VERSION_NOT_SUPPORTED"),
        ({"version": 1}, "BAD_REQUEST"),
        ({"version": 1, "sha256Hash": "abc"}, "BAD_REQUEST"),
        ({"version": 1, "sha256Hash": 12}, "BAD_REQUEST"),
        ({"version": 1, "sha256Hash": "g" * 64}, "BAD_REQUEST"),
    ],
)
def test_malformed_persisted_query_fields_are_refused_with_400(
    persisted: object, code: str
) -> None:
    documents = PersistedDocuments(PersistedQueryStore(10, 1000))
    error = refusal(lambda: documents.expand({"extensions": {"persistedQuery": persisted}}))
    assert (error.status_code, error.code) == (400, code)


def test_with_the_store_off_a_hash_says_persisted_queries_are_not_supported() -> None:
    documents = PersistedDocuments(None)
    error = refusal(lambda: documents.expand(apq(sha(QUERY))))
    assert (error.code, error.reason) == (
        "PERSISTED_QUERY_NOT_SUPPORTED",
        "PersistedQueryNotSupported",
    )


@pytest.mark.parametrize("data", [None, [1], "x", {"query": QUERY}, {"extensions": None}])
def test_requests_without_persisted_fields_pass_through_unchanged(data: object) -> None:
    documents = PersistedDocuments(PersistedQueryStore(10, 1000))
    assert documents.expand(data) is data


def test_settings_size_the_store_and_zero_turns_it_off() -> None:
    documents = PersistedDocuments.from_settings(
        Settings(persisted_queries=3, persisted_query_max_chars=50)
    )
    assert documents.store is not None
    assert (documents.store.max_entries, documents.store.max_chars) == (3, 50)
    assert PersistedDocuments.from_settings(Settings(persisted_queries=0)).store is None
    with pytest.raises(SettingsError, match="PERSISTED_QUERIES"):
        Settings(persisted_queries=-1)


# --- caching of GET answers ---


def test_only_anonymous_answers_without_errors_to_persisted_gets_may_be_shared() -> None:
    documents = PersistedDocuments(PersistedQueryStore(10, 1000), max_age=7)
    ok = ExecutionResult(data={"x": 1}, errors=None)
    failed = ExecutionResult(data=None, errors=[Exception("no")])  # type: ignore[list-item]
    marked = {"persistedQuery": {"version": 1, "sha256Hash": sha(QUERY)}}
    assert documents.cache_control("GET", marked, ANONYMOUS, ok) == {
        "Cache-Control": "public, max-age=7",
        "Vary": "Authorization",
    }
    for identity in (CUSTOMER, STAFF):
        answer = documents.cache_control("GET", marked, identity, ok)
        assert answer is not None and answer["Cache-Control"] == "private, no-store"
    answer = documents.cache_control("GET", marked, ANONYMOUS, failed)
    assert answer is not None and answer["Cache-Control"] == "no-store"
    assert documents.cache_control("POST", marked, ANONYMOUS, ok) is None
    assert documents.cache_control("GET", None, ANONYMOUS, ok) is None
    assert documents.cache_control("GET", {"other": 1}, ANONYMOUS, ok) is None


# --- trusted documents ---


def trusted() -> PersistedDocuments:
    return PersistedDocuments(
        PersistedQueryStore(10, 1000), TrustedDocuments({"ping": QUERY, sha(OTHER): OTHER})
    )


def test_trusted_documents_run_by_hash_by_id_or_in_full() -> None:
    documents = trusted()
    by_hash = documents.expand(apq(sha(QUERY)))
    assert isinstance(by_hash, dict) and by_hash["query"] == QUERY
    by_id = documents.expand({"documentId": "ping"})
    assert isinstance(by_id, dict) and by_id["query"] == QUERY
    assert by_id["extensions"] == {"documentId": "ping"}
    by_prefixed_hash = documents.expand({"documentId": f"sha256:{sha(OTHER)}"})
    assert isinstance(by_prefixed_hash, dict) and by_prefixed_hash["query"] == OTHER
    for query in (QUERY, OTHER):
        documents.admit(query, ANONYMOUS)
        documents.admit(query, CUSTOMER)


def test_with_trusted_documents_any_other_document_is_refused_unless_staff() -> None:
    documents = trusted()
    stranger = "query Stranger { readModel { projections { name } } }"
    for identity in (ANONYMOUS, CUSTOMER):
        error = refusal(lambda identity=identity: documents.admit(stranger, identity))
        assert (error.status_code, error.code) == (403, "PERSISTED_QUERY_NOT_ALLOWED")
    documents.admit(stranger, STAFF)
    documents.admit(stranger, Identity(Role.ADMIN, subject="a"))


def test_with_trusted_documents_nothing_is_registered() -> None:
    documents = trusted()
    stranger = "query Stranger { readModel { projections { name } } }"
    assert documents.store is None
    passed = documents.expand(apq(sha(stranger), stranger))
    assert isinstance(passed, dict) and passed["query"] == stranger
    error = refusal(lambda: documents.expand(apq(sha(stranger))))
    assert error.code == "PERSISTED_QUERY_NOT_FOUND"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"documentId": 5}, "BAD_REQUEST"),
        ({"documentId": ""}, "BAD_REQUEST"),
        ({"documentId": "ping", "query": QUERY}, "BAD_REQUEST"),
        ({"documentId": "nope"}, "PERSISTED_QUERY_NOT_FOUND"),
        ({"documentId": "sha256:" + "0" * 64}, "PERSISTED_QUERY_NOT_FOUND"),
    ],
)
def test_a_bad_or_unknown_document_id_is_refused(body: dict[str, Any], code: str) -> None:
    documents = trusted()
    assert refusal(lambda: documents.expand(body)).code == code


def test_a_manifest_key_that_looks_like_a_hash_must_be_its_documents_hash() -> None:
    with pytest.raises(ManifestError, match="sha256"):
        TrustedDocuments({sha(OTHER): QUERY})


def test_apollos_manifest_format_is_read(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(
        json.dumps(
            {
                "format": "apollo-persisted-query-manifest",
                "version": 1,
                "operations": [{"id": sha(QUERY), "name": "Ping", "type": "query", "body": QUERY}],
            }
        )
    )
    loaded = TrustedDocuments.load(path)
    assert loaded.get(sha(QUERY)) == QUERY and loaded.allows(QUERY) and len(loaded) == 1


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[1]",
        '{"a": 1}',
        '{"a": ""}',
        '{"format": "apollo-persisted-query-manifest", "version": 2, "operations": []}',
        '{"format": "apollo-persisted-query-manifest", "version": 1, "operations": [1]}',
    ],
)
def test_a_manifest_that_cannot_be_read_stops_the_service_with_a_reason(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(content)
    with pytest.raises(ManifestError):
        PersistedDocuments.from_settings(Settings(trusted_documents=str(path)))


def test_a_trusted_documents_setting_must_name_a_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="TRUSTED_DOCUMENTS"):
        Settings(trusted_documents=str(tmp_path / "missing.json"))


def test_the_manifest_writer_keys_each_printed_document_by_its_hash(tmp_path: Path) -> None:
    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "ping.graphql").write_text(
        "# a comment\nquery Ping {\n  readModel { indexedUpTo }\n}\n"
    )
    manifest = manifest_from_folder(tmp_path / "ops")
    [(key, body)] = manifest.items()
    assert key == sha(body) and "comment" not in body and body.startswith("query Ping")
    assert main([str(tmp_path / "ops"), "-o", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text()) == manifest
    assert TrustedDocuments.load(tmp_path / "m.json").allows(body)
