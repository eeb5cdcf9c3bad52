"""shop: a first-come-first-served (flash sale) store backend."""

__version__ = "0.1.0"
