"""The live sale dashboard: ``/admin/`` (HTML + one script, no external asset) and the JSON
it polls every second, ``GET /api/admin/dashboard`` (admin only).

The page itself holds no data and needs no token: it signs the admin in through
``POST /api/auth/login`` and keeps the tokens in ``sessionStorage`` (gone with the tab).
Every figure comes from the sale snapshots the worker records (``observe_sale``), so a room
full of operators refreshing every second costs Redis reads, never ledger queries.
"""

from __future__ import annotations

import time
from importlib.resources import files

import msgspec
from litestar import Controller, MediaType, Response, get
from litestar.di import NamedDependency

from shop.bootstrap import Container
from shop.domain.observation.services import HISTORY, DropTrend, SaleDashboard, sale_dashboard
from shop.entrypoints.http.auth import requires_admin

_PAGE = files("shop.entrypoints.http") / "admin_page"
# The page may load only what the shop serves: a stray CDN link would fail loudly.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'"
)


class OptionOut(msgspec.Struct):
    option_id: int
    on_sale: int
    sold: int
    held: int
    left: int
    drift: int
    oversold: int
    sold_per_second: float
    left_history: list[int]


class DropOut(msgspec.Struct):
    """A drop's panel: status and countdown, its options' totals, queue and admissions.

    ``status`` is the drops module's verdict at the snapshot's time (``scheduled``, ``live``,
    ``sold_out``): for up to one snapshot interval after the start it may still say
    ``scheduled`` while ``starts_in_seconds`` reads 0."""

    drop_id: int
    name: str
    status: str
    starts_at: float
    ends_at: float | None
    starts_in_seconds: float
    option_ids: list[int]
    on_sale: int
    sold: int
    held: int
    left: int
    queue_length: int
    queue_length_history: list[int]
    admitted: int
    admitted_per_second: float
    admission_rate: float

    @classmethod
    def of(cls, trend: DropTrend, now: float) -> DropOut:
        drop = trend.figures
        return cls(
            drop_id=drop.drop_id,
            name=drop.name,
            status=drop.status,
            starts_at=drop.starts_at,
            ends_at=drop.ends_at,
            starts_in_seconds=max(0.0, drop.starts_at - now),
            option_ids=list(drop.option_ids),
            on_sale=trend.on_sale,
            sold=trend.sold,
            held=trend.held,
            left=trend.left,
            queue_length=drop.queue_length,
            queue_length_history=list(trend.queue_history),
            admitted=drop.admitted,
            admitted_per_second=round(trend.admitted_per_second, 2),
            admission_rate=drop.admission_rate,
        )


class DashboardOut(msgspec.Struct):
    taken_at: float | None
    fresh: bool
    strategy: str | None
    drift: int
    oversold: int
    sold_per_second: float
    sold_per_second_history: list[float]
    # Order lines written per second (a purchase of several options counts once per option).
    purchases_per_second: float
    purchases_per_second_history: list[float]
    options: list[OptionOut]
    # ``drops_enabled`` says whether a drops source is wired (``DropsOnSale.enabled``);
    # ``drops`` then carries each live drop's countdown, queue and admissions.
    drops_enabled: bool
    drops: list[DropOut]

    @classmethod
    def of(cls, board: SaleDashboard, now: float, *, drops_enabled: bool) -> DashboardOut:
        return cls(
            taken_at=board.taken_at,
            fresh=board.fresh,
            strategy=board.strategy,
            drift=board.drift,
            oversold=board.oversold,
            sold_per_second=round(board.sold_per_second, 2),
            sold_per_second_history=[round(rate, 2) for rate in board.sold_per_second_history],
            purchases_per_second=round(board.purchases_per_second, 2),
            purchases_per_second_history=[
                round(rate, 2) for rate in board.purchases_per_second_history
            ],
            options=[
                OptionOut(
                    option_id=trend.figures.option_id,
                    on_sale=trend.figures.on_sale,
                    sold=trend.figures.sold,
                    held=trend.figures.held,
                    left=trend.figures.left,
                    drift=trend.figures.drift,
                    oversold=trend.figures.oversold,
                    sold_per_second=round(trend.sold_per_second, 2),
                    left_history=list(trend.left_history),
                )
                for trend in board.options
            ],
            drops_enabled=drops_enabled,
            drops=[DropOut.of(drop, now) for drop in board.drops],
        )


class DashboardController(Controller):
    path = "/api/admin/dashboard"
    tags = ["operations", "admin"]
    guards = [requires_admin]

    @get(operation_id="SaleDashboard", cache=False, summary="The live sale, for /admin/")
    async def dashboard(self, container: NamedDependency[Container]) -> DashboardOut:
        ports = container.observation
        recent = await ports.snapshots.recent(HISTORY)
        now = time.time()
        stale_after = max(5.0, 5 * container.settings.sale_snapshot_interval)
        board = sale_dashboard(recent, now=now, stale_after=stale_after)
        return DashboardOut.of(board, now, drops_enabled=ports.drops.enabled)


class AdminPageController(Controller):
    path = "/admin"
    include_in_schema = False

    @get(["/", "/index.html"], exclude_from_auth=True, media_type=MediaType.HTML, cache=False)
    async def page(self) -> Response[bytes]:
        return Response(
            (_PAGE / "dashboard.html").read_bytes(),
            media_type=MediaType.HTML,
            headers={"Content-Security-Policy": CSP},
        )

    @get("/dashboard.js", exclude_from_auth=True, media_type="text/javascript")
    async def script(self) -> Response[bytes]:
        return Response(
            (_PAGE / "dashboard.js").read_bytes(),
            media_type="text/javascript",
            headers={"Cache-Control": "no-cache"},
        )
