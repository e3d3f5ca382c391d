"""Inventory (the seed's Service 1): products and stock, owned by sharded actors."""
