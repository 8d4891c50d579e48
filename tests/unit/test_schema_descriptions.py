"""Every element of the schema says what it is: GraphiQL's docs pane and editor
hints show nothing for an element without a description."""

from __future__ import annotations

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
)

from api.schema import schema


def _undescribed(graphql_schema: GraphQLSchema) -> list[str]:
    missing: list[str] = []
    for name, type_ in sorted(graphql_schema.type_map.items()):
        if name.startswith("__"):
            continue
        if not (type_.description or "").strip():
            missing.append(f"type {name}")
        if isinstance(type_, GraphQLObjectType | GraphQLInterfaceType):
            for field_name, field in type_.fields.items():
                if not (field.description or "").strip():
                    missing.append(f"field {name}.{field_name}")
                for arg_name, arg in field.args.items():
                    if not (arg.description or "").strip():
                        missing.append(f"argument {name}.{field_name}({arg_name})")
        elif isinstance(type_, GraphQLInputObjectType):
            for field_name, input_field in type_.fields.items():
                if not (input_field.description or "").strip():
                    missing.append(f"input field {name}.{field_name}")
        elif isinstance(type_, GraphQLEnumType):
            for value_name, value in type_.values.items():
                if not (value.description or "").strip():
                    missing.append(f"enum value {name}.{value_name}")
        elif isinstance(type_, GraphQLUnionType):
            pass  # a union's members are types, checked on their own
    for directive in graphql_schema.directives:
        if not (directive.description or "").strip():
            missing.append(f"directive @{directive.name}")
        for arg_name, arg in directive.args.items():
            if not (arg.description or "").strip():
                missing.append(f"argument @{directive.name}({arg_name})")
    return missing


def test_every_type_field_argument_and_enum_value_has_a_description() -> None:
    missing = _undescribed(schema._schema)
    assert not missing, f"{len(missing)} schema elements lack a description:\n" + "\n".join(missing)


def test_the_check_finds_an_element_without_a_description() -> None:
    import strawberry

    @strawberry.type(description="A query.")
    class Query:
        @strawberry.field
        def bare(self) -> int:
            return 1

    found = _undescribed(strawberry.Schema(query=Query)._schema)
    assert found == ["field Query.bare"]
