"""``shop drops list|show`` run as an operator runs it, against the same servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shop.bootstrap import Container
from shop.domain.drops.model import DropRules, QueueSettings
from shop.domain.drops.services import create_drop
from tests.factories import make_option
from tests.integration.test_stock_cli import _shop


async def test_list_and_show_print_the_drops_with_live_figures(clean: Container) -> None:
    option = await make_option(clean, stock=12)
    drop = await create_drop(
        DropRules(
            name="Night drop",
            option_ids=(option,),
            starts_at=datetime.now(UTC) + timedelta(hours=1),
            per_buyer_limit=2,
            queue=QueueSettings(enabled=True, admit_per_second=30),
        ),
        drops=clean.drops,
        room=clean.room,
        stock=clean.stock,
        clock=clean.clock,
    )
    code, out = await _shop(clean, "drops", "list")
    assert code == 0, out
    assert "Night drop" in out and "scheduled" in out and "30/s" in out
    code, out = await _shop(clean, "drops", "show", str(drop.id))
    assert code == 0, out
    rows = {
        cells[0]: cells[-1]
        for cells in (
            [c.strip() for c in line.split("│") if c.strip()] for line in out.splitlines()
        )
        if len(cells) >= 2
    }
    assert (rows["left"], rows["sold"], rows["per buyer limit"]) == ("12", "0", "2")
    code, out = await _shop(clean, "drops", "show", "999")
    assert code != 0 and "drop not found" in out
