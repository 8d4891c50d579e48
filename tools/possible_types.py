"""Write the `possibleTypes` map that Apollo Client's cache needs, from the schema.

Apollo's InMemoryCache does not know which object types make up a union or
implement an interface unless it is told: without the map, a fragment on an
abstract type (`... on Error { code field message }` in a mutation's answer)
matches nothing when the answer is read back from the cache, and the error
comes back as `{__typename}` alone. urql's graphcache needs the same facts
(`schema` or `possibleTypes`). `make schema` writes the map beside
`schema.graphql` from the same schema:

    python -m tools.possible_types [--schema schema.graphql] [--output possible-types.json]

The output is `{abstract type: [its object types]}`, every union and interface
of the schema, sorted, so that the committed file changes only when the
schema does.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from graphql import GraphQLInterfaceType, GraphQLSchema, GraphQLUnionType, build_schema

__all__ = ["possible_types", "render"]

ROOT = Path(__file__).resolve().parents[1]


def possible_types(schema: GraphQLSchema) -> dict[str, list[str]]:
    """Each union and interface with the names of the object types it can be."""
    return {
        name: sorted(kind.name for kind in schema.get_possible_types(abstract))
        for name, abstract in sorted(schema.type_map.items())
        if isinstance(abstract, GraphQLUnionType | GraphQLInterfaceType)
        and not name.startswith("__")
    }


def render(sdl: str) -> str:
    """The file's text for a schema in SDL: JSON, two-space indents, one final newline."""
    return json.dumps(possible_types(build_schema(sdl)), indent=2) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", type=Path, default=ROOT / "schema.graphql")
    parser.add_argument("--output", type=Path, default=ROOT / "possible-types.json")
    args = parser.parse_args(argv)
    args.output.write_text(render(args.schema.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"possibleTypes written to {args.output}")


if __name__ == "__main__":
    main()
