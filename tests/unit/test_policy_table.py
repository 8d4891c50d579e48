"""The policy table against the schema, the docs, and the query builders' row filters."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import GraphQLObjectType, build_schema, parse

from api.context import Context
from api.identity import ANONYMOUS, Identity, Role
from api.policy import (
    POLICY,
    Refused,
    Rule,
    allowed,
    check,
    markdown_table,
    root_fields,
    sees_contact_details,
)
from api.schema import build_schema as build_graphql_schema
from readmodel.queries import (
    MATCH_NONE,
    OrderFilter,
    ProductFilter,
    Scope,
    customer_search,
    lookup,
    order_search,
    product_by_sku,
    product_search,
)
from tests.identities import ADMIN, STAFF, customer

ROOT = Path(__file__).resolve().parents[2]


def schema_operations() -> set[tuple[str, str]]:
    schema = build_schema((ROOT / "schema.graphql").read_text())
    operations = set()
    for root in ("Query", "Mutation", "Subscription"):
        kind = schema.get_type(root)
        assert isinstance(kind, GraphQLObjectType)
        operations |= {(root, name) for name in kind.fields}
    return operations


def test_every_operation_of_the_schema_has_an_entry_in_the_policy_table() -> None:
    missing = schema_operations() - set(POLICY)
    assert not missing, f"no policy for {sorted(missing)}: add them to api/policy.py"


def test_the_policy_table_names_no_operation_the_schema_lacks() -> None:
    unknown = set(POLICY) - schema_operations()
    assert not unknown, f"api/policy.py names {sorted(unknown)}, which the schema lacks"


def test_docs_show_the_policy_table_as_the_code_has_it() -> None:
    assert markdown_table() in (ROOT / "docs" / "policy.md").read_text()


def test_a_field_without_an_entry_is_refused_to_every_role() -> None:
    for identity in (ANONYMOUS, customer("c-1"), STAFF, ADMIN):
        assert allowed(identity, "Query", "somethingNew") is None


def test_an_anonymous_caller_is_asked_to_sign_in_and_a_signed_in_one_is_forbidden() -> None:
    with pytest.raises(Refused) as anonymous:
        check(ANONYMOUS, "Query", "orders")
    with pytest.raises(Refused) as staff:
        check(STAFF, "Mutation", "eraseCustomer")

    assert anonymous.value.extensions == {"code": "UNAUTHENTICATED", "field": "orders"}
    assert staff.value.extensions == {"code": "FORBIDDEN", "field": "eraseCustomer"}


@pytest.mark.parametrize(
    ("field", "anonymous", "own"),
    [
        ("products", Rule.ACTIVE_ONLY, Rule.ACTIVE_ONLY),
        ("orders", None, Rule.OWN_ORDERS),
        ("customers", None, Rule.SELF),
        ("readModel", None, None),
    ],
)
def test_the_issues_minimum_holds_for_queries(
    field: str, anonymous: Rule | None, own: Rule | None
) -> None:
    assert allowed(ANONYMOUS, "Query", field) is anonymous
    assert allowed(customer("c-1"), "Query", field) is own
    assert allowed(STAFF, "Query", field) is Rule.ALL
    assert allowed(ADMIN, "Query", field) is Rule.ALL


def test_staff_may_not_erase_a_customer_but_the_customer_and_an_admin_may() -> None:
    assert allowed(STAFF, "Mutation", "eraseCustomer") is None
    assert allowed(customer("c-1"), "Mutation", "eraseCustomer") is Rule.SELF
    assert allowed(ADMIN, "Mutation", "eraseCustomer") is Rule.ALL


def test_only_staff_and_admins_follow_the_whole_feed() -> None:
    roles = {r for r in Role if allowed(Identity(r), "Subscription", "changes") is not None}
    assert roles == {Role.STAFF, Role.ADMIN}


def test_root_fields_are_found_through_fragments_and_introspection_is_left_out() -> None:
    document = parse(
        "query Q { __typename ...F ... on Query { orders { totalCount } } }"
        " fragment F on Query { products { totalCount } ...F }"
    )
    assert root_fields(document, "Q") == ("Query", ["products", "orders"])


def test_a_customers_order_search_carries_their_id_and_ands_with_theirs() -> None:
    body = order_search(filter=OrderFilter(customer_id="b"), scope=Scope(customer_id="a"))

    assert body["query"]["bool"]["filter"] == [
        {"term": {"customer.id": "a"}},
        {"term": {"customer.id": "b"}},
    ]


def test_a_customer_without_an_id_reaches_no_order() -> None:
    body = order_search(scope=Scope(customer_id=""))
    assert body["query"]["bool"]["filter"] == [MATCH_NONE]


def test_a_customers_customer_search_finds_only_themselves() -> None:
    body = customer_search(search="ann", scope=Scope(customer_id="a"))
    assert {"term": {"id": "a"}} in body["query"]["bool"]["filter"]


@pytest.mark.parametrize("facets", [False, True])
def test_active_only_is_in_the_query_itself_with_or_without_facets(facets: bool) -> None:
    body = product_search(
        filter=ProductFilter(statuses=("draft",)), facets=facets, scope=Scope(active_only=True)
    )
    # In the query, not the post filter: facets and totals count active products only.
    assert {"term": {"status": "active"}} in body["query"]["bool"]["filter"]


def test_a_lookup_by_id_or_sku_carries_the_scope() -> None:
    assert lookup("orders", "o-1", Scope(customer_id="a")) == {
        "query": {
            "bool": {"filter": [{"ids": {"values": ["o-1"]}}, {"term": {"customer.id": "a"}}]}
        },
        "size": 1,
    }
    assert product_by_sku("K-1", Scope(active_only=True))["query"]["bool"]["filter"] == [
        {"term": {"sku": "K-1"}},
        {"term": {"status": "active"}},
    ]


async def test_an_operation_with_one_refused_root_field_runs_none_of_them() -> None:
    schema = build_graphql_schema()
    # Refused before any resolver runs: no app is needed to answer it.
    result = await schema.execute(
        "{ products { totalCount } ...Mine } fragment Mine on Query { orders { totalCount } }",
        context_value=Context(app=None, request=None),  # type: ignore[arg-type]
    )

    assert result.data is None
    assert [e.extensions for e in result.errors or ()] == [
        {"code": "UNAUTHENTICATED", "field": "orders"}
    ]


async def test_a_refused_subscription_answers_its_one_error() -> None:
    stream = await build_graphql_schema().subscribe(
        'subscription { changes(after: "0") { id } }',
        context_value=Context(app=None, request=None, identity=customer("c-1")),  # type: ignore[arg-type]
    )
    results = [result async for result in stream]

    assert len(results) == 1
    assert [e.extensions for e in results[0].errors or ()] == [
        {"code": "FORBIDDEN", "field": "changes"}
    ]


@pytest.mark.parametrize(
    ("identity", "sees"),
    [
        (ANONYMOUS, False),
        (customer("c-2"), False),
        (customer("c-1"), True),
        (STAFF, True),
        (ADMIN, True),
    ],
)
def test_an_email_is_shown_to_its_customer_and_to_staff_only(
    identity: Identity, sees: bool
) -> None:
    context = Context(app=None, request=None, identity=identity)  # type: ignore[arg-type]
    assert sees_contact_details(context, "c-1") is sees
