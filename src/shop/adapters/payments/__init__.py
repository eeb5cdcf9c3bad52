"""Payment gateway adapters (``PaymentGateway``) and the sandbox's webhook sender."""
