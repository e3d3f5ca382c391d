"""The PostgreSQL schema as SQLAlchemy Core tables; migrations create exactly this."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    Uuid,
    false,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY

metadata = MetaData()

products = Table(
    "products",
    metadata,
    Column("sku", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("price", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("available", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False, server_default="0"),
    Column("partition", Integer, nullable=False),
    Column("version", BigInteger, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("price > 0", name="ck_products_price_positive"),
    CheckConstraint("available >= 0", name="ck_products_available_nonnegative"),
    CheckConstraint("reserved >= 0", name="ck_products_reserved_nonnegative"),
    Index("ix_products_partition", "partition"),
)

users = Table(
    "users",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("display_name", String(100), nullable=True),
    Column("roles", ARRAY(Text), nullable=False),
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("mfa_secret", LargeBinary, nullable=True),
    Column("mfa_pending_secret", LargeBinary, nullable=True),
    Column("mfa_enabled", Boolean, nullable=False, server_default=false()),
    Column("mfa_last_step", BigInteger, nullable=True),
)

recovery_codes = Table(
    "recovery_codes",
    metadata,
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("code_hash", LargeBinary, primary_key=True),
    Column("used_at", DateTime(timezone=True), nullable=True),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_used_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("user_agent", String(256), nullable=False, server_default=""),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Index("ix_sessions_user_id", "user_id"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", LargeBinary, primary_key=True),
    Column("session_id", Uuid, ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("spent_at", DateTime(timezone=True), nullable=True),
    Index("ix_refresh_tokens_session_id", "session_id"),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("private_key", LargeBinary, nullable=False),
    Column("public_jwk", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("retired_at", DateTime(timezone=True), nullable=True),
)

# ``detail`` is a JSON string kept in a text column: the log is only appended to and listed,
# and text gives the string back byte for byte (jsonb would reorder keys and whitespace).
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("kind", String(64), nullable=False),
    Column("user_id", Uuid, nullable=True),
    Column("actor_id", Uuid, nullable=True),
    Column("trace_id", String(128), nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_audit_events_at", "at"),
)

# A wallet's currency is the deployment's one currency (a setting), so it is not stored.
wallets = Table(
    "wallets",
    metadata,
    Column("user_id", Uuid, ForeignKey("users.id"), primary_key=True),
    Column("balance", BigInteger, nullable=False, server_default="0"),
    Column("version", BigInteger, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("balance >= 0", name="ck_wallets_balance_nonnegative"),
)

# Double entry: every movement is two rows whose amounts sum to zero, one on a wallet and
# one on a system account (``system:funding``, ``system:revenue``), which has no balance.
ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("seq", BigInteger, Identity(), primary_key=True),
    Column("id", Uuid, nullable=False, unique=True),
    Column("movement_id", Uuid, nullable=False),
    Column("account", String(64), nullable=False),
    Column("wallet_id", Uuid, ForeignKey("wallets.user_id"), nullable=True),
    Column("amount", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=True),
    Column("kind", String(16), nullable=False),
    Column("reference", String(255), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("amount <> 0", name="ck_ledger_entries_amount_nonzero"),
    CheckConstraint(
        "(wallet_id IS NULL) = (balance_after IS NULL)", name="ck_ledger_entries_wallet_balance"
    ),
    Index("ix_ledger_entries_wallet_seq", "wallet_id", "seq"),
    Index("ix_ledger_entries_movement", "movement_id"),
)

# Applied operations: the outcome of every mutating command, by its idempotency key, written
# in the same transaction as the command's effect.
operations = Table(
    "operations",
    metadata,
    Column("key", String(400), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("outcome", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_operations_created_at", "created_at"),
)

# An order's lines are a JSON string (``[{sku, quantity, price}]``): written once, read whole.
orders = Table(
    "orders",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, ForeignKey("users.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("items", Text, nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("failure_reason", String(32), nullable=True),
    Column("trace_id", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("total >= 0", name="ck_orders_total_nonnegative"),
    Index("ix_orders_user_created", "user_id", "created_at"),
)

# A saga's current state; ``steps`` and ``data`` are JSON strings owned by the saga engine.
sagas = Table(
    "sagas",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("order_id", Uuid, ForeignKey("orders.id"), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("steps", Text, nullable=False),
    Column("data", Text, nullable=False),
    Column("failure_reason", String(32), nullable=True),
    Column("error", Text, nullable=True),
    Column("trace_id", String(128), nullable=False),
    Column("deadline", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_sagas_order", "order_id"),
    Index("ix_sagas_status_updated", "status", "updated_at"),
)

# Every step transition of every saga, appended before the next action runs.
saga_log = Table(
    "saga_log",
    metadata,
    Column("seq", BigInteger, Identity(), primary_key=True),
    Column("saga_id", Uuid, nullable=False),
    Column("step", String(32), nullable=False),
    Column("transition", String(32), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("detail", Text, nullable=True),
    Column("trace_id", String(128), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_saga_log_saga", "saga_id", "seq"),
)

# Events written in the transaction of the change they describe; the relay publishes them.
outbox = Table(
    "outbox",
    metadata,
    Column("seq", BigInteger, Identity(), primary_key=True),
    Column("id", Uuid, nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    Column("aggregate_id", String(128), nullable=False),
    Column("trace_id", String(128), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True), nullable=True),
    Column("stream_id", String(64), nullable=True),
)

# The events each consumer group has handled, written with the handling's effect.
inbox = Table(
    "inbox",
    metadata,
    Column("consumer", String(64), primary_key=True),
    Column("event_id", Uuid, primary_key=True),
    Column("handled_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_inbox_handled_at", "handled_at"),
)

# Read models the projector builds from events (CQRS read side); rebuilt from ``orders``.
order_views = Table(
    "order_views",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("status", String(16), nullable=False),
    Column("rank", SmallInteger, nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_order_views_user", "user_id", "created_at", "id"),
)

product_sales = Table(
    "product_sales",
    metadata,
    Column("sku", String(64), primary_key=True),
    Column("units", BigInteger, nullable=False, server_default="0"),
    Column("revenue", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Events a consumer group gave up on; the truth operators list and replay.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("consumer", String(64), nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("type", String(64), nullable=False),
    Column("aggregate_id", String(128), nullable=False),
    Column("trace_id", String(128), nullable=False),
    Column("payload", Text, nullable=False),
    Column("event_created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("error", Text, nullable=False),
    Column("deliveries", Integer, nullable=False),
    Column("dead_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("replayed_at", DateTime(timezone=True), nullable=True),
    Index("ix_dead_letters_dead_at", "dead_at", "id"),
)
