"""The PostgreSQL schema as SQLAlchemy Core tables; migrations create exactly this."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
)

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
