"""Create the read models' indexes and aliases, and tell when one is out of date."""

from __future__ import annotations

from dataclasses import dataclass

from elasticsearch import AsyncElasticsearch, BadRequestError

from readmodel.indexes import INDEXES, IndexDefinition

__all__ = ["AliasState", "alias_state", "ensure_index", "ensure_indexes"]


@dataclass(frozen=True)
class AliasState:
    alias: str
    # The physical index the alias points at now (None: no alias yet).
    serving: str | None
    # The physical index the code's mapping asks for.
    wanted: str

    @property
    def rebuild_due(self) -> bool:
        return self.serving is not None and self.serving != self.wanted


async def alias_state(
    client: AsyncElasticsearch, prefix: str, index: IndexDefinition
) -> AliasState:
    alias = index.alias(prefix)
    serving = None
    if await client.indices.exists_alias(name=alias):
        found = await client.indices.get_alias(name=alias)
        serving = sorted(found.body)[0]
    return AliasState(alias, serving, index.physical(prefix))


async def ensure_index(
    client: AsyncElasticsearch, prefix: str, index: IndexDefinition
) -> AliasState:
    """Create the index and point the alias at it, unless the alias exists already.

    An existing alias is left alone even when its mapping is older: moving it
    is the rebuild's job, so the old index keeps serving until the new is ready.
    """
    state = await alias_state(client, prefix, index)
    if state.serving is not None:
        return state
    physical = state.wanted
    try:
        await client.indices.create(
            index=physical, mappings=index.mappings, settings=index.settings
        )
    except BadRequestError as error:
        if error.error != "resource_already_exists_exception":
            raise
    try:
        await client.indices.update_aliases(
            actions=[{"add": {"index": physical, "alias": state.alias}}]
        )
    except BadRequestError:
        pass  # another process pointed it first; re-read below
    await client.cluster.health(index=physical, wait_for_status="yellow", timeout="30s")
    return await alias_state(client, prefix, index)


async def ensure_indexes(client: AsyncElasticsearch, prefix: str) -> dict[str, AliasState]:
    return {name: await ensure_index(client, prefix, d) for name, d in INDEXES.items()}
