"""The write database's tables (SQLAlchemy Core), mapped to the domain by the
repositories. Alembic migrations under `migrations/` create exactly these."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "checkpoints",
    "customers",
    "events",
    "feed_workers",
    "idempotency_keys",
    "metadata",
    "order_lines",
    "orders",
    "products",
    "quarantine",
    "stock",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BIGINT on PostgreSQL; on SQLite an INTEGER PRIMARY KEY is the rowid, which
# AUTOINCREMENT keeps strictly growing (no reuse after deletes).
_Position = BigInteger().with_variant(Integer(), "sqlite")

products = Table(
    "products",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("sku", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("category", String(100), nullable=False),
    Column("tags", JSON, nullable=False),
    Column("price", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("price > 0", name="price_positive"),
)

stock = Table(
    "stock",
    metadata,
    Column("product_id", String(36), ForeignKey("products.id"), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("on_hand", Integer, nullable=False),
    Column("reserved", Integer, nullable=False),
    Column("units_sold", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The domain enforces these; the database refuses them too, as a last line.
    CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="reserved_within_on_hand"),
)

customers = Table(
    "customers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("version", Integer, nullable=False),
    # NULL once erased; unique among the rest.
    Column("email", String(254), unique=True),
    Column("name", String(200)),
    Column("erased", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

orders = Table(
    "orders",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("customer_id", String(36), ForeignKey("customers.id"), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("placed_at", DateTime(timezone=True), nullable=False),
    Column("paid_at", DateTime(timezone=True)),
    Column("shipped_at", DateTime(timezone=True)),
    Column("cancelled_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

order_lines = Table(
    "order_lines",
    metadata,
    Column("order_id", String(36), ForeignKey("orders.id"), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("product_id", String(36), ForeignKey("products.id"), nullable=False, index=True),
    Column("sku", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", BigInteger, nullable=False),
)

# The transactional outbox: every event, in the order the feed must read it.
events = Table(
    "events",
    metadata,
    Column("position", _Position, primary_key=True, autoincrement=True),
    Column("aggregate_type", String(32), nullable=False),
    Column("aggregate_id", String(36), nullable=False),
    Column("aggregate_version", Integer, nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("correlation_id", String(64), nullable=False),
    # The audit: who caused the event (writemodel/access.py `Actor`). NULL on events
    # stored before migration 0003.
    Column("actor_role", String(16)),
    # Text: a token's `sub` has no length the write side should refuse a write for.
    Column("actor_subject", Text),
    Index(
        "ix_events_aggregate", "aggregate_type", "aggregate_id", "aggregate_version", unique=True
    ),
    sqlite_autoincrement=True,
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    # Whose key it is (`Actor.idempotency_scope`): two clients' equal keys are two keys.
    Column("scope", String(64), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("result", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

# Where each projection has got to, and which worker holds it (a lease).
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", _Position, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("owner", String(128)),
    Column("lease_until", DateTime(timezone=True)),
)

# The feed workers alive, per read model they serve: a worker renews its rows with
# its leases, so the others can count who shares a read model's partitions
# (readmodel/partitions.py), newcomers that hold none yet included.
feed_workers = Table(
    "feed_workers",
    metadata,
    Column("owner", String(128), primary_key=True),
    Column("read_model", String(64), primary_key=True),
    Column("lease_until", DateTime(timezone=True), nullable=False),
)

# Documents Elasticsearch refused for themselves (a mapping they do not fit, a
# reserved character): set aside so the feed moves on, recorded in the same
# transaction as the checkpoints that moved past them (readmodel/quarantine.py).
quarantine = Table(
    "quarantine",
    metadata,
    Column("id", _Position, primary_key=True, autoincrement=True),
    Column("read_model", String(64), nullable=False),
    # The index or alias the document was written to.
    Column("index_name", String(255), nullable=False),
    Column("document_id", String(128), nullable=False),
    # The external version of the refused write: its newest event's position.
    Column("version", BigInteger, nullable=False),
    # The positions of the transactions that produced the refused document (a
    # consistency token among them names it), and their bounds for a lookup.
    Column("positions", JSON, nullable=False),
    Column("first_position", BigInteger, nullable=False),
    Column("last_position", BigInteger, nullable=False),
    Column("error_type", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False),
    # Set when a later write of the same document went in: nothing is missing any more.
    Column("superseded_at", DateTime(timezone=True)),
    UniqueConstraint("read_model", "index_name", "document_id"),
    Index("ix_quarantine_lookup", "read_model", "last_position"),
    sqlite_autoincrement=True,
)
