"""``DropsOnSale`` for a shop without drops (issue 14 not in yet): nothing to report, and
the dashboard says drops are not available. The drops module replaces this in bootstrap."""

from __future__ import annotations

from collections.abc import Sequence

from shop.domain.observation.model import DropFigures


class NoDrops:
    enabled = False

    async def live(self) -> Sequence[DropFigures]:
        return ()
