"""Alembic environment: runs the migrations on the URL the caller put in the config."""

from alembic import context
from sqlalchemy import create_engine, pool

from storage._tables import metadata

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "storage.migrate sets sqlalchemy.url"
engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
