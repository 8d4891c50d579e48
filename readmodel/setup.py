"""Create the read models' indexes and aliases, and tell when one is out of date.

`prepare` is everything the feed needs of Elasticsearch before its first
cycle, in one call: every index and alias, the layout the settings ask for
(replicas and refresh interval, which a live index takes), and a fresh index
for a read model whose index holds another write database's documents.

A physical index is `<alias>-<digest>-<generation>` (readmodel/indexes.py).
Whether a rebuild is due is decided by the digest the serving index carries
in its mapping's `_meta`, or, for an index made before `_meta` was stored, in
its name: the generation plays no part, so a rebuilt index under the same
mapping is as current as the first one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from elasticsearch import AsyncElasticsearch, BadRequestError, NotFoundError

from readmodel.checkpoints import Checkpoints
from readmodel.indexes import INDEXES, IndexDefinition, IndexLayout
from readmodel.projections import Projection
from readmodel.published import forget_published

__all__ = [
    "AliasState",
    "alias_state",
    "apply_layout",
    "create_index",
    "ensure_index",
    "ensure_indexes",
    "forget_another_database",
    "generation_of",
    "laid_out",
    "next_generation",
    "physical_indexes",
    "prepare",
    "start_afresh",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AliasState:
    alias: str
    # The physical index the alias points at now (None: no alias yet).
    serving: str | None
    # The digest of the serving index's mapping (None: no alias, or an index we did not make).
    serving_digest: str | None
    # The digest of the mapping the code declares.
    wanted_digest: str
    # The index a rebuild is building, behind `<alias>-next` (None: no rebuild under way).
    building: str | None = None
    building_digest: str | None = None

    @property
    def rebuild_due(self) -> bool:
        return self.serving is not None and self.serving_digest != self.wanted_digest


def _name_pattern(alias: str) -> re.Pattern[str]:
    # The generation is optional: indexes made before generations existed have none.
    return re.compile(rf"{re.escape(alias)}-(?P<digest>[0-9a-f]{{10}})(?:-(?P<generation>[0-9]+))?")


def generation_of(alias: str, physical: str) -> int:
    """The generation in a physical index's name; 0 for one without (or not ours)."""
    found = _name_pattern(alias).fullmatch(physical)
    return int(found["generation"]) if found and found["generation"] else 0


async def _behind(
    client: AsyncElasticsearch, alias: str, name: str
) -> tuple[str | None, str | None]:
    """The physical index behind alias `name` and the digest it carries, or (None, None)."""
    try:
        found = await client.indices.get_mapping(index=name)
    except NotFoundError:
        return None, None
    physical = sorted(found.body)[0]
    mappings: dict[str, Any] = found.body[physical].get("mappings", {})
    digest = mappings.get("_meta", {}).get("digest")
    if digest is None:
        named = _name_pattern(alias).fullmatch(physical)
        digest = named["digest"] if named else None
    return physical, digest


async def alias_state(
    client: AsyncElasticsearch, prefix: str, index: IndexDefinition
) -> AliasState:
    alias = index.alias(prefix)
    serving, serving_digest = await _behind(client, alias, alias)
    building, building_digest = await _behind(client, alias, index.next_alias(prefix))
    return AliasState(alias, serving, serving_digest, index.digest, building, building_digest)


async def physical_indexes(
    client: AsyncElasticsearch, prefix: str, index: IndexDefinition
) -> list[str]:
    """Every physical index of this read model, whether an alias points at it or not."""
    alias = index.alias(prefix)
    found = await client.indices.get_alias(index=f"{alias}-*", expand_wildcards="all")
    pattern = _name_pattern(alias)
    return sorted(name for name in found.body if pattern.fullmatch(name))


async def next_generation(
    client: AsyncElasticsearch, prefix: str, index: IndexDefinition
) -> tuple[str, list[str]]:
    """The name one generation above every index of this read model, and those indexes."""
    alias = index.alias(prefix)
    existing = await physical_indexes(client, prefix, index)
    generation = max((generation_of(alias, name) for name in existing), default=0) + 1
    return index.physical(prefix, generation), existing


async def create_index(client: AsyncElasticsearch, index: IndexDefinition, physical: str) -> bool:
    """Create a physical index with the code's mapping; False when it existed already.

    Returns once its primary shard is allocated, so the first write does not wait.
    """
    created = True
    try:
        await client.indices.create(
            index=physical, mappings=index.mappings, settings=index.settings
        )
    except BadRequestError as error:
        if error.error != "resource_already_exists_exception":
            raise
        created = False
    await client.cluster.health(index=physical, wait_for_status="yellow", timeout="30s")
    return created


async def ensure_index(
    client: AsyncElasticsearch, prefix: str, index: IndexDefinition
) -> AliasState:
    """Create the index and point the alias at it, unless the alias exists already.

    An existing alias is left alone even when its mapping is older: moving it
    is the rebuild's job, so the old index keeps serving until the new is ready.
    The first generation has a fixed name, so processes that start together
    all create (or find) the same index and point the alias at it alone.
    """
    state = await alias_state(client, prefix, index)
    if state.serving is not None:
        return state
    physical = index.physical(prefix, 1)
    await create_index(client, index, physical)
    try:
        await client.indices.update_aliases(
            actions=[{"add": {"index": physical, "alias": state.alias}}]
        )
    except BadRequestError:
        pass  # another process pointed it first; re-read below
    return await alias_state(client, prefix, index)


async def start_afresh(client: AsyncElasticsearch, prefix: str, index: IndexDefinition) -> str:
    """Serve an empty next generation and drop the older ones; the new index's name.

    For a read model whose documents did not come from this write database
    (its checkpoint was never written): the feed then fills the new index from
    position 0. Two workers doing it at once create the same index, and the
    second swap finds the work done.
    """
    alias = index.alias(prefix)
    fresh, existing = await next_generation(client, prefix, index)
    await create_index(client, index, fresh)
    serving = (await alias_state(client, prefix, index)).serving
    actions: list[dict[str, Any]] = [{"add": {"index": fresh, "alias": alias}}]
    if serving is not None and serving != fresh:
        actions.append({"remove": {"index": serving, "alias": alias}})
    try:
        await client.indices.update_aliases(actions=actions)
    except (BadRequestError, NotFoundError):
        pass  # another worker swapped first: checked below
    if (await alias_state(client, prefix, index)).serving != fresh:
        raise RuntimeError(f"{alias} does not serve {fresh}; left every index as it was")
    for name in existing:
        if name != fresh:
            await client.indices.delete(index=name, ignore_unavailable=True)
    return fresh


async def ensure_indexes(
    client: AsyncElasticsearch, prefix: str, indexes: Mapping[str, IndexDefinition] = INDEXES
) -> dict[str, AliasState]:
    """Every read model's index and alias; `indexes` (name -> index) says with which
    layout the missing ones are created (see `laid_out`)."""
    return {name: await ensure_index(client, prefix, d) for name, d in indexes.items()}


def laid_out(projections: Iterable[Projection], layout: IndexLayout) -> list[Projection]:
    """The projections, each writing an index under `layout`: the composition root
    lays them out once, so that every index the feed, the rebuild or a fresh start
    creates gets the shards, replicas and refresh interval of the settings."""
    projections = list(projections)
    for projection in projections:
        projection.index = projection.index.laid_out(layout)
    return projections


async def apply_layout(
    client: AsyncElasticsearch, index: IndexDefinition, state: AliasState
) -> None:
    """Give the index serving (and one a rebuild is building) the replicas and the
    refresh interval of `index.layout`, where they differ; these change on a live
    index. The shard count does not: a different one is logged, and reaches the
    read model with its next rebuild."""
    physical = [name for name in (state.serving, state.building) if name is not None]
    if not physical:
        return
    found = await client.indices.get_settings(index=",".join(physical), name="index.*")
    wanted = index.layout
    for name, body in found.body.items():
        current = body["settings"]["index"]
        if (int(current["number_of_replicas"]), current.get("refresh_interval")) != (
            wanted.replicas,
            wanted.refresh_interval,
        ):
            await client.indices.put_settings(index=name, settings=wanted.dynamic)
            log.info("%s: replicas and refresh interval set to %s", name, wanted.dynamic)
        if int(current["number_of_shards"]) != wanted.shards:
            log.warning(
                "%s has %s primary shards where ELASTICSEARCH_SHARDS asks for %d; a shard "
                "count is fixed when an index is made: `bicameral readmodel rebuild %s` "
                "builds one with %d",
                name,
                current["number_of_shards"],
                wanted.shards,
                index.name,
                wanted.shards,
            )


async def forget_another_database(
    client: AsyncElasticsearch,
    prefix: str,
    checkpoints: Checkpoints,
    read_models: Mapping[str, IndexDefinition],
) -> None:
    """Start afresh each of `read_models` (name -> index) whose index holds
    documents although no worker ever projected it from this write database (no
    checkpoint row): a wiped SQLite file, say, beside a node that kept its data.
    Elasticsearch is never the source of truth, so the feed fills it from 0.
    Its published progress (readmodel/published.py) goes too: it was that
    other database's."""
    projected = {c.name for c in await checkpoints.all() if c.updated_at is not None}
    for name, index in read_models.items():
        if name in projected:
            continue
        await forget_published(client, prefix, [name])
        alias = index.alias(prefix)
        held = (await client.count(index=alias))["count"]
        if held:
            fresh = await start_afresh(client, prefix, index)
            log.warning(
                "%s held %d documents this write database never projected; now %s "
                "serves, filled from the outbox",
                alias,
                held,
                fresh,
            )


async def prepare(
    client: AsyncElasticsearch,
    prefix: str,
    checkpoints: Checkpoints,
    read_models: Mapping[str, IndexDefinition],
) -> None:
    """Ready Elasticsearch for a feed of `read_models` (name -> index): every
    index and alias exists, theirs are laid out as their definitions say (replicas,
    refresh interval), and none of theirs holds another database's documents."""
    states = await ensure_indexes(client, prefix, {**INDEXES, **read_models})
    for name, index in read_models.items():
        await apply_layout(client, index, states[name])
    await forget_another_database(client, prefix, checkpoints, read_models)
