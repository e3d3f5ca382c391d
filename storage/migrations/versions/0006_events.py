"""The event side: read models, dead letters, and where the relay put each event.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    default = None if nullable else sa.func.now()
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)


def upgrade() -> None:
    op.add_column("outbox", sa.Column("stream_id", sa.String(64), nullable=True))
    op.create_table(
        "order_views",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rank", sa.SmallInteger, nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        _time("created_at"),
        _time("updated_at"),
    )
    op.create_index("ix_order_views_user", "order_views", ["user_id", "created_at", "id"])
    op.create_table(
        "product_sales",
        sa.Column("sku", sa.String(64), primary_key=True),
        sa.Column("units", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("revenue", sa.BigInteger, nullable=False, server_default="0"),
        _time("updated_at"),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("consumer", sa.String(64), nullable=False),
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("aggregate_id", sa.String(128), nullable=False),
        sa.Column("trace_id", sa.String(128), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        _time("event_created_at"),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("deliveries", sa.Integer, nullable=False),
        _time("dead_at"),
        _time("replayed_at", nullable=True),
    )
    op.create_index("ix_dead_letters_dead_at", "dead_letters", ["dead_at", "id"])


def downgrade() -> None:
    op.drop_table("dead_letters")
    op.drop_table("product_sales")
    op.drop_table("order_views")
    op.drop_column("outbox", "stream_id")
