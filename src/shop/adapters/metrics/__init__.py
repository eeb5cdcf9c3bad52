"""Metrics adapters: the ``SaleObserver`` port on prometheus-client."""
