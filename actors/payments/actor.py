"""The wallet shard actor: a thin Ray shell around :class:`WalletService`."""

from __future__ import annotations

from actors._shell import ShardActor
from actors.payments.service import WalletService
from storage.products import SqlUnitOfWorkFactory


def wallet_actor_name(shard: int) -> str:
    """The Ray actor name of wallet shard ``shard``."""
    return f"wallet-shard-{shard}"


class WalletShardActor(ShardActor[WalletService]):
    """Single writer of one shard's wallets (read from PostgreSQL on first use)."""

    kind = "wallets"
    actor_name = staticmethod(wallet_actor_name)

    async def _build(self) -> WalletService:
        return WalletService(
            self._shard, self._partitioning, SqlUnitOfWorkFactory(self._conn.engine)
        )
