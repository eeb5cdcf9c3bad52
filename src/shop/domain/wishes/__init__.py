"""The wish list: products a customer keeps an eye on (per product, not per option)."""
