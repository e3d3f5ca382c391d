"""Sample data for ``shoal up --demo``."""

from __future__ import annotations

from actors.inventory.model import NewProduct

_CATALOGUE = [
    ("DEMO-TEA-001", "Assam breakfast tea, 250 g", 899, 500),
    ("DEMO-TEA-002", "Sencha green tea, 100 g", 1250, 300),
    ("DEMO-COF-001", "Espresso beans, 1 kg", 2499, 200),
    ("DEMO-COF-002", "Filter coffee, 500 g", 1399, 250),
    ("DEMO-MUG-001", "Stoneware mug", 1500, 120),
    ("DEMO-MUG-002", "Double-wall glass", 1899, 80),
    ("DEMO-KET-001", "Gooseneck kettle", 5900, 40),
    ("DEMO-GRD-001", "Hand grinder", 7400, 30),
    ("DEMO-FLT-001", "Paper filters, 100 pcs", 499, 1000),
    ("DEMO-CUP-001", "Travel cup", 2200, 150),
    ("DEMO-SCL-001", "Pour-over scale", 3900, 60),
    ("DEMO-HOT-001", "Hot chocolate, 400 g", 699, 400),
]


def demo_products(currency: str) -> list[NewProduct]:
    """The demo catalogue in the deployment's currency."""
    return [NewProduct(sku, name, price, currency, stock) for sku, name, price, stock in _CATALOGUE]
