"""Storage: PostgreSQL tables, repositories and migrations; the Redis cache; connections.

The domain sees only :mod:`storage.records` and :mod:`storage.ports`; everything that
talks to a driver lives below them and is wired by ``cluster.bootstrap``.
"""
