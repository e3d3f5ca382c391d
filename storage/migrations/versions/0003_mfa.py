"""Second factor: TOTP secrets and steps on users, and single-use recovery codes.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("mfa_secret", sa.LargeBinary, nullable=True))
    op.add_column("users", sa.Column("mfa_pending_secret", sa.LargeBinary, nullable=True))
    op.add_column(
        "users", sa.Column("mfa_enabled", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.add_column("users", sa.Column("mfa_last_step", sa.BigInteger, nullable=True))
    op.create_table(
        "recovery_codes",
        sa.Column(
            "user_id",
            sa.Uuid,
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("code_hash", sa.LargeBinary, primary_key=True),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("recovery_codes")
    op.drop_column("users", "mfa_last_step")
    op.drop_column("users", "mfa_enabled")
    op.drop_column("users", "mfa_pending_secret")
    op.drop_column("users", "mfa_secret")
