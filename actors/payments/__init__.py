"""Payments (the seed's Service 2): wallets and a double-entry ledger, owned by sharded actors."""
