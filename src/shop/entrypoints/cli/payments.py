"""``shop payments simulate PAYMENT_ID --succeed|--fail``: press the sandbox's buttons.

Does what the sandbox checkout page does: enqueues the signed webhook delivery, which the
worker (``shop up`` runs one) POSTs to the shop. For a payment whose refund is pending it
reports the refund's outcome instead.
"""

from __future__ import annotations

import uuid

import click

from shop.bootstrap import Container
from shop.entrypoints.cli.context import run_with_container, settings_or_exit


@click.group()
def payments() -> None:
    """Payments through the configured gateway (the sandbox's simulator)."""


@payments.command()
@click.argument("payment_id", type=click.UUID)
@click.option("--succeed/--fail", "succeed", required=True, help="The outcome to report.")
def simulate(payment_id: uuid.UUID, succeed: bool) -> None:
    """Make the sandbox gateway report PAYMENT_ID's outcome to the shop's webhook."""

    async def work(container: Container) -> str:
        sandbox = container.sandbox
        if sandbox is None:
            raise click.ClickException("the sandbox gateway is not the configured gateway")
        return await sandbox.simulate(payment_id, succeed=succeed)

    key = run_with_container(work)
    url = settings_or_exit().public_url.rstrip("/") + "/api/payments/webhook"
    click.echo(f"queued {key}: the worker delivers it to {url}")
