"""Watching a sale: what happened (outcomes, sweeps, expiries, payments) and what the stock
looks like now (the sale snapshot). Pure domain: metrics and dashboards are adapters."""
