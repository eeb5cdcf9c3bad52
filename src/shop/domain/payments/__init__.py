"""Payments: state comes only from the payment gateway's verified webhook, never from the buyer."""
