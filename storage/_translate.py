"""Driver errors become :mod:`storage.errors` here, and nowhere else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
import psycopg.errors as pg_errors
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from storage.errors import (
    ConflictError,
    SerializationFailureError,
    StorageError,
    StorageTimeoutError,
    StorageUnavailableError,
)


def translate_sql(exc: SQLAlchemyError) -> StorageError:
    """Map a SQLAlchemy/psycopg error to the storage error a caller can act on."""
    orig = getattr(exc, "orig", None)
    if isinstance(exc, IntegrityError):
        return ConflictError(type(orig).__name__ if orig else "integrity")
    if isinstance(orig, pg_errors.SerializationFailure | pg_errors.DeadlockDetected):
        return SerializationFailureError(type(orig).__name__)
    if isinstance(orig, pg_errors.QueryCanceled) or isinstance(exc, PoolTimeoutError):
        return StorageTimeoutError("database statement or pool timed out")
    lost = (
        isinstance(exc, OperationalError | InterfaceError)
        or (isinstance(exc, DBAPIError) and exc.connection_invalidated)
        or isinstance(orig, psycopg.OperationalError | psycopg.InterfaceError)  # shutdown too
    )
    if lost:
        return StorageUnavailableError("database unavailable")
    return StorageError(type(exc).__name__)


def translate_redis(exc: RedisError) -> StorageError:
    """Map a redis-py error to a storage error."""
    if isinstance(exc, RedisTimeoutError):
        return StorageTimeoutError("redis timed out")
    if isinstance(exc, RedisConnectionError):
        return StorageUnavailableError("redis unavailable")
    return StorageError(type(exc).__name__)


def redis_bytes(value: bytes | str | None) -> bytes | None:
    """A Redis reply value as bytes (clients configured to decode hand back ``str``)."""
    return value.encode() if isinstance(value, str) else value


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """Run a block whose driver errors leave as storage errors."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise translate_sql(exc) from exc
    except RedisError as exc:
        raise translate_redis(exc) from exc
    except (ConnectionError, OSError) as exc:
        raise StorageUnavailableError(type(exc).__name__) from exc
