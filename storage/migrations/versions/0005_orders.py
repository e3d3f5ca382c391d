"""Orders, the durable saga log, and the transactional outbox with its consumers' inbox.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _now(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("user_id", sa.Uuid, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("items", sa.Text, nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("failure_reason", sa.String(32), nullable=True),
        sa.Column("trace_id", sa.String(128), nullable=False),
        _now("created_at"),
        _now("updated_at"),
        sa.CheckConstraint("total >= 0", name="ck_orders_total_nonnegative"),
    )
    op.create_index("ix_orders_user_created", "orders", ["user_id", "created_at"])
    op.create_table(
        "sagas",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("order_id", sa.Uuid, sa.ForeignKey("orders.id"), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("steps", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("failure_reason", sa.String(32), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("trace_id", sa.String(128), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        _now("created_at"),
        _now("updated_at"),
    )
    op.create_index("ix_sagas_order", "sagas", ["order_id"])
    op.create_index("ix_sagas_status_updated", "sagas", ["status", "updated_at"])
    op.create_index(
        "ix_sagas_unfinished",
        "sagas",
        ["partition"],
        postgresql_where=sa.text("status IN ('RUNNING', 'COMPENSATING', 'STUCK')"),
    )
    op.create_table(
        "saga_log",
        sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("saga_id", sa.Uuid, nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("transition", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("trace_id", sa.String(128), nullable=False),
        _now("at"),
    )
    op.create_index("ix_saga_log_saga", "saga_log", ["saga_id", "seq"])
    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("id", sa.Uuid, nullable=False, unique=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("aggregate_id", sa.String(128), nullable=False),
        sa.Column("trace_id", sa.String(128), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        _now("created_at"),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_outbox_unpublished", "outbox", ["seq"], postgresql_where=sa.text("published_at IS NULL")
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.Uuid, primary_key=True),
        _now("handled_at"),
    )
    op.create_index("ix_inbox_handled_at", "inbox", ["handled_at"])


def downgrade() -> None:
    op.drop_table("inbox")
    op.drop_table("outbox")
    op.drop_table("saga_log")
    op.drop_table("sagas")
    op.drop_table("orders")
