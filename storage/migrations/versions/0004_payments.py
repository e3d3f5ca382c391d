"""Wallets with a double-entry ledger, and the record of applied operations.

A wallet has no currency column: a deployment has exactly one currency (a setting).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wallets",
        sa.Column("user_id", sa.Uuid, sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("balance", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("balance >= 0", name="ck_wallets_balance_nonnegative"),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("id", sa.Uuid, nullable=False, unique=True),
        sa.Column("movement_id", sa.Uuid, nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("wallet_id", sa.Uuid, sa.ForeignKey("wallets.user_id"), nullable=True),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("balance_after", sa.BigInteger, nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reference", sa.String(255), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("amount <> 0", name="ck_ledger_entries_amount_nonzero"),
        sa.CheckConstraint(
            "(wallet_id IS NULL) = (balance_after IS NULL)", name="ck_ledger_entries_wallet_balance"
        ),
    )
    op.create_index("ix_ledger_entries_wallet_seq", "ledger_entries", ["wallet_id", "seq"])
    op.create_index("ix_ledger_entries_movement", "ledger_entries", ["movement_id"])
    op.create_table(
        "operations",
        sa.Column("key", sa.String(400), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index("ix_operations_created_at", "operations", ["created_at"])
    # Every existing user gets the empty wallet a new user gets at registration.
    op.execute("INSERT INTO wallets (user_id) SELECT id FROM users")


def downgrade() -> None:
    op.drop_table("operations")
    op.drop_table("ledger_entries")
    op.drop_table("wallets")
