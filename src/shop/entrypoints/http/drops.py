"""Drops over HTTP: the admin's drops, the public list, and the waiting room (join, poll,
server-sent events). Handlers parse, call one use case and render; rules live in
``shop.domain.drops``. Joining and polling touch Redis only."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Controller, get, patch, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.response import ServerSentEvent
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from shop.bootstrap import Container
from shop.domain.drops import services
from shop.domain.drops.model import (
    MAX_NAME,
    MAX_OPTIONS,
    MAX_SPAN,
    Drop,
    DropChanges,
    DropFigures,
    DropRules,
    DropStatus,
    QueueSettings,
)
from shop.domain.drops.queue import QueueStatus, QueueTicket
from shop.domain.errors import DomainError, InvalidInput
from shop.domain.identity.model import Principal
from shop.domain.orders.model import PaymentMethod
from shop.entrypoints.http.auth import requires_admin
from shop.entrypoints.http.bounds import NOT_BLANK, Id, PathId
from shop.entrypoints.http.openapi import raises

# Every bound a JSON Schema can state is declared here, so the OpenAPI document promises what
# is enforced (a value PostgreSQL or timedelta could not hold is a 422 here, not a 500 later).
# The domain still decides every rule (``DropRules.validated``), naming the field; what no
# schema can state (a start in the future, the end after the start) it alone refuses.
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME, pattern=NOT_BLANK)]
OptionIds = Annotated[
    list[Id],
    msgspec.Meta(min_length=1, max_length=MAX_OPTIONS, extra_json_schema={"uniqueItems": True}),
]
Count = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
Span = Annotated[int, msgspec.Meta(ge=1, le=MAX_SPAN)]
Lead = Annotated[int, msgspec.Meta(ge=0, le=MAX_SPAN)]
Methods = Annotated[list[PaymentMethod], msgspec.Meta(min_length=1)]
UNSET: Any = msgspec.UNSET


class DropIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    option_ids: OptionIds
    starts_at: datetime
    ends_at: datetime | None = None
    per_buyer_limit: Count = 1
    max_open_orders_per_buyer: Count = 1
    payment_methods: Methods = msgspec.field(default_factory=lambda: [PaymentMethod.CARD])
    payment_window_seconds: Span = 600
    queue_enabled: bool = False
    admit_per_second: Count = 10
    admission_ttl_seconds: Span = 120
    pre_queue_seconds: Lead = 600

    def to_rules(self) -> DropRules:
        _aware(self.starts_at, "starts_at")
        if self.ends_at is not None:
            _aware(self.ends_at, "ends_at")
        return DropRules(
            name=self.name,
            option_ids=tuple(self.option_ids),
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            per_buyer_limit=self.per_buyer_limit,
            max_open_orders_per_buyer=self.max_open_orders_per_buyer,
            payment_methods=frozenset(self.payment_methods),
            payment_window=timedelta(seconds=self.payment_window_seconds),
            queue=QueueSettings(
                enabled=self.queue_enabled,
                admit_per_second=self.admit_per_second,
                admission_ttl=timedelta(seconds=self.admission_ttl_seconds),
                pre_queue=timedelta(seconds=self.pre_queue_seconds),
            ),
        )


def _aware(when: datetime, field: str) -> None:
    if when.tzinfo is None:
        raise InvalidInput(f"{field} needs a UTC offset (ISO 8601)", extra={"field": field})


class DropPatchIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | msgspec.UnsetType = UNSET
    option_ids: OptionIds | msgspec.UnsetType = UNSET
    starts_at: datetime | msgspec.UnsetType = UNSET
    ends_at: datetime | msgspec.UnsetType | None = UNSET
    per_buyer_limit: Count | msgspec.UnsetType = UNSET
    max_open_orders_per_buyer: Count | msgspec.UnsetType = UNSET
    payment_methods: Methods | msgspec.UnsetType = UNSET
    payment_window_seconds: Span | msgspec.UnsetType = UNSET
    queue_enabled: bool | msgspec.UnsetType = UNSET
    admit_per_second: Count | msgspec.UnsetType = UNSET
    admission_ttl_seconds: Span | msgspec.UnsetType = UNSET
    pre_queue_seconds: Lead | msgspec.UnsetType = UNSET

    def to_changes(self) -> DropChanges:
        given: dict[str, Any] = {}
        for name in ("name", "per_buyer_limit", "max_open_orders_per_buyer"):
            if getattr(self, name) is not msgspec.UNSET:
                given[name] = getattr(self, name)
        for name in ("queue_enabled", "admit_per_second"):
            if getattr(self, name) is not msgspec.UNSET:
                given[name] = getattr(self, name)
        if self.option_ids is not msgspec.UNSET:
            given["option_ids"] = tuple(self.option_ids)
        if self.starts_at is not msgspec.UNSET:
            _aware(self.starts_at, "starts_at")
            given["starts_at"] = self.starts_at
        if self.ends_at is not msgspec.UNSET:
            if self.ends_at is not None:
                _aware(self.ends_at, "ends_at")
            given["ends_at"] = self.ends_at
        if self.payment_methods is not msgspec.UNSET:
            given["payment_methods"] = frozenset(self.payment_methods)
        if self.payment_window_seconds is not msgspec.UNSET:
            given["payment_window"] = timedelta(seconds=self.payment_window_seconds)
        if self.admission_ttl_seconds is not msgspec.UNSET:
            given["admission_ttl"] = timedelta(seconds=self.admission_ttl_seconds)
        if self.pre_queue_seconds is not msgspec.UNSET:
            given["pre_queue"] = timedelta(seconds=self.pre_queue_seconds)
        return DropChanges(**given)


class DropOut(msgspec.Struct):
    id: int
    name: str
    option_ids: list[int]
    starts_at: datetime
    ends_at: datetime | None
    status: str
    per_buyer_limit: int
    max_open_orders_per_buyer: int
    payment_methods: list[str]
    payment_window_seconds: int
    queue_enabled: bool
    admit_per_second: int
    admission_ttl_seconds: int
    pre_queue_seconds: int

    @classmethod
    def of(cls, drop: Drop, status: DropStatus) -> DropOut:
        rules = drop.rules
        return cls(
            id=drop.id,
            name=rules.name,
            option_ids=list(rules.option_ids),
            starts_at=rules.starts_at,
            ends_at=rules.ends_at,
            status=status.value,
            per_buyer_limit=rules.per_buyer_limit,
            max_open_orders_per_buyer=rules.max_open_orders_per_buyer,
            payment_methods=sorted(m.value for m in rules.payment_methods),
            payment_window_seconds=round(rules.payment_window.total_seconds()),
            queue_enabled=rules.queue.enabled,
            admit_per_second=rules.queue.admit_per_second,
            admission_ttl_seconds=round(rules.queue.admission_ttl.total_seconds()),
            pre_queue_seconds=round(rules.queue.pre_queue.total_seconds()),
        )


class FiguresOut(msgspec.Struct):
    sold: int
    held: int
    left: int
    waiting: int
    admitted: int
    admit_per_second: int

    @classmethod
    def of(cls, figures: DropFigures) -> FiguresOut:
        return msgspec.convert(figures, FiguresOut, from_attributes=True)


class AdminDropOut(msgspec.Struct):
    drop: DropOut
    figures: FiguresOut


class DropListOut(msgspec.Struct):
    items: list[DropOut]


class TicketOut(msgspec.Struct, omit_defaults=True):
    status: str
    position: int | None
    ahead: int | None
    eta_seconds: int | None
    admission_token: str | None = None
    admission_expires_at: datetime | None = None

    @classmethod
    def of(cls, ticket: QueueTicket) -> TicketOut:
        return cls(
            status=ticket.status.value,
            position=ticket.position,
            ahead=ticket.ahead,
            eta_seconds=ticket.eta_seconds,
            admission_token=ticket.admission_token,
            admission_expires_at=ticket.admission_expires_at,
        )


async def _render(drop: Drop, container: Container) -> DropOut:
    status = await services.drop_status(drop, stock=container.stock, clock=container.clock)
    return DropOut.of(drop, status)


class AdminDropController(Controller):
    path = "/api/admin/drops"
    tags = ["drops"]
    guards = [requires_admin]

    @post(
        operation_id="CreateDrop",
        summary="Announce a drop",
        status_code=HTTP_201_CREATED,
        responses=raises(409),
        description="409 when an option is in another drop not ended yet; 404 for an "
        "unknown option; 422 for a start not in the future or an end not after the start.",
    )
    async def create(
        self, data: JSONBody[DropIn], container: NamedDependency[Container]
    ) -> DropOut:
        drop = await services.create_drop(
            data.to_rules(),
            drops=container.drops,
            room=container.room,
            stock=container.stock,
            clock=container.clock,
        )
        return await _render(drop, container)

    @patch(
        "/{drop_id:int}",
        operation_id="ChangeDrop",
        summary="Change a drop's rules",
        responses=raises(409),
        description="Every rule may change until the start, then only ends_at and "
        "admit_per_second (409 naming the field); options are claimed as on create.",
    )
    async def change(
        self,
        drop_id: PathId,
        data: JSONBody[DropPatchIn],
        container: NamedDependency[Container],
    ) -> DropOut:
        drop = await services.change_drop(
            drop_id,
            data.to_changes(),
            drops=container.drops,
            room=container.room,
            stock=container.stock,
            clock=container.clock,
        )
        return await _render(drop, container)

    @get("/{drop_id:int}", operation_id="AdminGetDrop", summary="A drop with live figures")
    async def show(self, drop_id: PathId, container: NamedDependency[Container]) -> AdminDropOut:
        drop = await services.get_drop(drop_id, drops=container.drops)
        figures = await services.drop_figures(
            drop, drops=container.drops, room=container.room, stock=container.stock
        )
        return AdminDropOut(drop=await _render(drop, container), figures=FiguresOut.of(figures))


class DropController(Controller):
    path = "/api/drops"
    tags = ["drops"]

    @get(
        operation_id="ListDrops",
        summary="Scheduled and live drops, soonest first",
        exclude_from_auth=True,
    )
    async def list_drops(self, container: NamedDependency[Container]) -> DropListOut:
        listed = await services.list_drops(
            drops=container.drops, stock=container.stock, clock=container.clock
        )
        return DropListOut(items=[DropOut.of(drop, status) for drop, status in listed])

    @get("/{drop_id:int}", operation_id="GetDrop", exclude_from_auth=True)
    async def show(self, drop_id: PathId, container: NamedDependency[Container]) -> DropOut:
        drop = await services.get_drop(drop_id, drops=container.drops)
        return await _render(drop, container)

    @post(
        "/{drop_id:int}/queue",
        operation_id="JoinQueue",
        summary="Join the drop's queue (joining again keeps the place)",
        status_code=HTTP_200_OK,
    )
    async def join(
        self,
        drop_id: PathId,
        principal: NamedDependency[Principal],
        container: NamedDependency[Container],
    ) -> TicketOut:
        ticket = await services.join_queue(
            drop_id,
            principal.user_id,
            room=container.room,
            tokens=container.admissions,
            clock=container.clock,
        )
        return TicketOut.of(ticket)

    @get("/{drop_id:int}/queue", operation_id="PollQueue", summary="Where I stand in the queue")
    async def poll(
        self,
        drop_id: PathId,
        principal: NamedDependency[Principal],
        container: NamedDependency[Container],
    ) -> TicketOut:
        return TicketOut.of(await _poll(drop_id, principal.user_id, container))

    @get(
        "/{drop_id:int}/queue/events",
        operation_id="QueueEvents",
        summary="The same answers as the poll, as server-sent events (one per change)",
    )
    async def events(
        self,
        drop_id: PathId,
        principal: NamedDependency[Principal],
        container: NamedDependency[Container],
    ) -> ServerSentEvent:
        first = await _poll(drop_id, principal.user_id, container)  # 404 before streaming
        return ServerSentEvent(_stream(drop_id, principal.user_id, container, first))


async def _poll(drop_id: PathId, user_id: uuid.UUID, container: Container) -> QueueTicket:
    return await services.poll_queue(
        drop_id, user_id, room=container.room, tokens=container.admissions, clock=container.clock
    )


STREAM_INTERVAL = 1.0
STREAM_LIMIT = 3600  # polls per stream (an hour); the client reconnects after


async def _stream(
    drop_id: PathId, user_id: uuid.UUID, container: Container, first: QueueTicket
) -> AsyncIterator[str]:
    """One event per change of the answer, until admitted or ended (or the room is lost)."""
    ticket, last = first, None
    for _ in range(STREAM_LIMIT):
        body = msgspec.json.encode(TicketOut.of(ticket)).decode()
        if body != last:
            last = body
            yield body
        if ticket.status in (QueueStatus.ADMITTED, QueueStatus.ENDED):
            return
        await asyncio.sleep(STREAM_INTERVAL)
        try:
            ticket = await _poll(drop_id, user_id, container)
        except DomainError as exc:
            yield msgspec.json.encode({"status": "error", "detail": exc.message}).decode()
            return
